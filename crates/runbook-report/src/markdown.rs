//! The Markdown report: a header table, the timeline of events, the steps,
//! gate decisions, rollbacks, failures and the outputs worth reading, ready
//! to paste into a post-incident review document.

use crate::outputs::OutputView;
use crate::report::Report;
use crate::time::{format_datetime, format_duration, format_offset, format_time_of_day};
use crate::words;
use std::fmt::Write;

/// Renders the report as Markdown (GitHub-flavoured tables). Every text
/// from the journal is escaped, so a command's output cannot inject markup.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

fn write_report(out: &mut String, r: &Report) -> std::fmt::Result {
    let start = r.started_at.as_deref();
    let name = r.runbook.as_deref().unwrap_or("unknown runbook");
    writeln!(
        out,
        "# Run {}: {} ({})\n",
        r.run_id,
        inline(name),
        r.status.as_str()
    )?;
    writeln!(out, "| | |\n|---|---|")?;
    row(out, "Runbook", &code(name))?;
    if let Some(file) = &r.file {
        row(out, "File", &code(file))?;
    }
    if let Some(sha) = &r.runbook_sha256 {
        row(out, "Runbook SHA-256", &code(sha))?;
    }
    row(out, "Run id", &code(&r.run_id))?;
    // The engine's error of an interrupted run is often just "interrupted".
    let status = match r.error.as_ref().filter(|e| e.as_str() != r.status.as_str()) {
        Some(error) => format!("**{}**: {}", r.status.as_str(), inline(error)),
        None => format!("**{}**", r.status.as_str()),
    };
    row(out, "Status", &status)?;
    for (i, session) in r.sessions.iter().enumerate() {
        let label = if i == 0 { "Started" } else { "Resumed" };
        row(out, label, &inline(&words::session(session)))?;
    }
    if let Some(end) = r.ended_at.as_ref().or(r.last_event_at.as_ref()) {
        row(out, words::end_label(r.status), &format_datetime(end))?;
    }
    if let Some(ms) = r.duration_ms {
        row(out, "Duration", &format_duration(ms))?;
    }
    row(out, "Dry run", if r.dry_run { "yes" } else { "no" })?;
    writeln!(out)?;

    if let Some(torn) = &r.journal.torn_line {
        writeln!(
            out,
            "> **Note:** the journal ends with an incomplete line (line {}, {} bytes): the engine stopped while writing it. Everything before it is complete and shown here.\n",
            torn.line, torn.bytes
        )?;
    }
    if let Some(command) = &r.resume_command {
        writeln!(
            out,
            "> **Note:** the engine stopped before the run finished. `{command}` continues it.\n",
        )?;
    }

    if !r.params.is_empty() {
        writeln!(out, "## Params\n\n| Param | Value |\n|---|---|")?;
        for (name, value) in &r.params {
            writeln!(
                out,
                "| {} | {} |",
                code(name),
                code(&words::param_value(value))
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Timeline of events\n")?;
    writeln!(out, "| Time (UTC) | Since start | Event |\n|---|---|---|")?;
    for entry in &r.timeline {
        writeln!(
            out,
            "| {} | {} | {} |",
            format_time_of_day(&entry.ts, start),
            entry.offset_ms.map(format_offset).unwrap_or_default(),
            inline(&entry.text)
        )?;
    }
    writeln!(out)?;

    if !r.steps.is_empty() {
        writeln!(out, "## Steps\n")?;
        writeln!(
            out,
            "| Step | Phase | Status | Started | Ended | Duration | Attempts | Notes |\n|---|---|---|---|---|---|---|---|"
        )?;
        for step in &r.steps {
            let cells = words::step_row(step, start);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                code(&step.id),
                cells.phase,
                step.status.as_str(),
                cells.started,
                cells.ended,
                cells.duration,
                cells.attempts,
                inline(&cells.note),
            )?;
        }
        writeln!(out)?;
    }

    let decisions = words::decision_rows(r, start);
    if !decisions.is_empty() {
        writeln!(out, "## Decisions\n")?;
        writeln!(
            out,
            "| Step | Question | Asked | Decided | Decision | By | Waited |\n|---|---|---|---|---|---|---|"
        )?;
        for d in decisions {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                code(&d.step.id),
                inline(&d.question),
                d.asked,
                d.decided,
                d.verdict,
                inline(&d.by),
                d.waited,
            )?;
        }
        writeln!(out)?;
    }

    if !r.rollbacks.is_empty() {
        writeln!(out, "## Rollbacks\n")?;
        writeln!(
            out,
            "| Rolled back step | Status | Started | Ended | Duration | Notes |\n|---|---|---|---|---|---|"
        )?;
        for rb in &r.rollbacks {
            let cells = words::rollback_row(rb, start);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                code(&rb.step),
                inline(&rb.status),
                cells.started,
                cells.ended,
                cells.duration,
                inline(&cells.note),
            )?;
        }
        writeln!(out)?;
    }

    let failed_steps: Vec<_> = r.steps.iter().filter(|s| s.error.is_some()).collect();
    let failed_rollbacks: Vec<_> = r.rollbacks.iter().filter(|rb| rb.error.is_some()).collect();
    if !failed_steps.is_empty() || !failed_rollbacks.is_empty() {
        writeln!(out, "## Failures\n")?;
        for step in failed_steps {
            writeln!(
                out,
                "### {} {}\n",
                code_span(&step.id),
                step.status.as_str()
            )?;
            block(out, step.error.as_deref().unwrap_or(""))?;
        }
        for rb in failed_rollbacks {
            writeln!(
                out,
                "### rollback of {} {}\n",
                code(&rb.step),
                inline(&rb.status)
            )?;
            block(out, rb.error.as_deref().unwrap_or(""))?;
        }
    }

    let with_outputs: Vec<_> = r.steps.iter().filter(|s| !s.outputs.is_empty()).collect();
    let rollback_outputs: Vec<_> = r
        .rollbacks
        .iter()
        .filter(|rb| !rb.outputs.is_empty())
        .collect();
    if !with_outputs.is_empty() || !rollback_outputs.is_empty() {
        writeln!(out, "## Outputs\n")?;
        writeln!(out, "{}\n", words::OUTPUTS_NOTE)?;
        for step in with_outputs {
            writeln!(out, "### {}\n", code_span(&step.id))?;
            outputs(out, &step.outputs)?;
        }
        for rb in rollback_outputs {
            writeln!(out, "### rollback of {}\n", code_span(&rb.step))?;
            outputs(out, &rb.outputs)?;
        }
    }
    writeln!(out, "---\n{} Times are UTC.", words::journal_summary(r))?;
    Ok(())
}

fn outputs(out: &mut String, views: &[OutputView]) -> std::fmt::Result {
    for view in views.iter().filter(|v| !v.block) {
        let trimmed = view
            .trimmed
            .as_deref()
            .map(|t| format!(" ({})", inline(t)))
            .unwrap_or_default();
        writeln!(
            out,
            "- {}: {}{}",
            code_span(&view.name),
            code_span(&view.text),
            trimmed
        )?;
    }
    if views.iter().any(|v| !v.block) {
        writeln!(out)?;
    }
    for view in views.iter().filter(|v| v.block) {
        let trimmed = view
            .trimmed
            .as_deref()
            .map(|t| format!(" ({})", inline(t)))
            .unwrap_or_default();
        writeln!(out, "{}{}:\n", code_span(&view.name), trimmed)?;
        block(out, &view.text)?;
    }
    Ok(())
}

fn row(out: &mut String, label: &str, value: &str) -> std::fmt::Result {
    writeln!(out, "| {label} | {value} |")
}

/// Escapes text for a Markdown paragraph or table cell: markup characters
/// are backslash-escaped, HTML is neutralised, and newlines become `<br>`
/// so a cell stays one table row.
pub(crate) fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A code span for a table cell: as [`code_span`], with `|` escaped, since
/// a table row ends its cell at any `|` (GitHub unescapes it inside code).
pub(crate) fn code(text: &str) -> String {
    code_span(&text.replace('|', "\\|"))
}

/// A code span that holds any text, outside a table: the fence is longer
/// than any run of backticks inside. Nothing is escaped, since a backslash
/// inside a code span is shown as it is.
pub(crate) fn code_span(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    let longest = longest_backtick_run(&one_line);
    let fence = "`".repeat(longest + 1);
    let pad = if one_line.starts_with('`') || one_line.ends_with('`') || longest > 0 {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{one_line}{pad}{fence}")
}

/// A fenced block that holds any text (the fence outgrows any backtick run).
fn block(out: &mut String, text: &str) -> std::fmt::Result {
    let fence = "`".repeat((longest_backtick_run(text) + 1).max(3));
    writeln!(
        out,
        "{fence}text\n{}\n{fence}\n",
        text.trim_end_matches('\n')
    )
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_cannot_break_out() {
        assert_eq!(inline("a|b <script>\nx*y"), "a\\|b &lt;script&gt;<br>x\\*y");
        assert_eq!(code("ls | wc"), "`ls \\| wc`");
        assert_eq!(code("a `b` c"), "`` a `b` c ``");
        assert_eq!(code_span("ls | wc"), "`ls | wc`");
        let mut out = String::new();
        block(&mut out, "```\ninside\n```").expect("write");
        assert!(out.starts_with("````text\n"), "{out}");
        assert!(out.ends_with("\n````\n\n"), "{out}");
    }
}
