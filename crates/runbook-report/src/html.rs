//! The HTML report: one self-contained file (inline CSS, an inline SVG
//! chart, no script, nothing fetched) that opens in any browser without
//! network access, for attaching to an incident ticket.
//!
//! The chart is drawn here, server-side, as SVG: one row per step and per
//! rollback, a bar per attempt coloured by how it ended, gate waits in
//! amber, and vertical markers where an engine stopped and where a resume
//! continued. It needs no JavaScript, so it also renders where scripts are
//! blocked, and a Content-Security-Policy forbids loading anything at all.

use crate::outputs::OutputView;
use crate::report::{AttemptEnd, DecisionKind, Report, RunStatus, SessionEnd, StepStatus, who};
use crate::time::{between, format_datetime, format_duration, format_offset, format_time_of_day};
use crate::words;
use std::fmt::Write;

/// Bar colour of a succeeded step or attempt.
pub const COLOR_SUCCEEDED: &str = "#2da44e";
/// Bar colour of a failed step (its last attempt).
pub const COLOR_FAILED: &str = "#cf222e";
/// Bar colour of an attempt that failed and was retried.
pub const COLOR_RETRIED: &str = "#ff8182";
/// Bar colour of a cancelled step.
pub const COLOR_CANCELLED: &str = "#8250df";
/// Marker colour of a skipped step.
pub const COLOR_SKIPPED: &str = "#8c959f";
/// Bar colour of an attempt the engine stopped during.
pub const COLOR_INTERRUPTED: &str = "#e16f24";
/// Bar colour of a step running now.
pub const COLOR_RUNNING: &str = "#0969da";
/// Bar colour of a gate (or resume confirmation) waiting for a person.
pub const COLOR_WAITING: &str = "#d4a72c";

const LABEL_W: f64 = 230.0;
const CHART_W: f64 = 900.0;
const RIGHT_PAD: f64 = 30.0;
const ROW_H: f64 = 24.0;
const BAR_H: f64 = 16.0;
const TOP: f64 = 34.0;

/// Renders the report as one self-contained HTML document.
pub fn render_html(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_page(&mut out, report);
    out
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;padding:24px 32px;color:#1f2328;background:#fff;font-size:14px;line-height:1.45}
main{max-width:1200px;margin:0 auto}
h1{font-size:22px;margin:0 0 12px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;margin:4px 0 8px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.meta th{width:160px}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-word;margin:4px 0 10px}
.badge{display:inline-block;padding:0 7px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.s-succeeded{background:#2da44e}.s-failed{background:#cf222e}.s-cancelled{background:#8250df}
.s-skipped{background:#8c959f}.s-interrupted,.s-stopped{background:#e16f24}.s-running{background:#0969da}
.s-unknown,.s-unreadable{background:#57606a}.s-interrupted-run{background:#9a6700}
.note{border-left:4px solid #d4a72c;background:#fff8c5;padding:6px 10px;margin:8px 0}
.chart{overflow-x:auto}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif;font-size:12px;fill:#1f2328}
svg .mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
svg .axis{fill:#57606a;font-size:11px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.muted{color:#57606a}
"#;

fn write_page(out: &mut String, r: &Report) -> std::fmt::Result {
    let name = r.runbook.as_deref().unwrap_or("unknown runbook");
    let start = r.started_at.as_deref();
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    // Nothing may be fetched or run: the report is an archive, and every
    // string in it came from commands and people.
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(
        out,
        "<title>Run {} of {}: {}</title>",
        esc(&r.run_id),
        esc(name),
        r.status.as_str()
    )?;
    writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>\n<main>")?;
    writeln!(
        out,
        "<h1>Run <code>{}</code> of {} {}</h1>",
        esc(&r.run_id),
        esc(name),
        run_badge(r.status)
    )?;

    writeln!(out, "<table class=\"meta\">")?;
    meta(out, "Runbook", &format!("<code>{}</code>", esc(name)))?;
    if let Some(file) = &r.file {
        meta(out, "File", &format!("<code>{}</code>", esc(file)))?;
    }
    if let Some(sha) = &r.runbook_sha256 {
        meta(
            out,
            "Runbook SHA-256",
            &format!("<code>{}</code>", esc(sha)),
        )?;
    }
    let mut status = run_badge(r.status);
    if let Some(error) = r.error.as_ref().filter(|e| e.as_str() != r.status.as_str()) {
        write!(status, " {}", esc(error))?;
    }
    meta(out, "Status", &status)?;
    for (i, session) in r.sessions.iter().enumerate() {
        let label = if i == 0 { "Started" } else { "Resumed" };
        meta(out, label, &esc(&words::session(session)))?;
    }
    if let Some(end) = r.ended_at.as_ref().or(r.last_event_at.as_ref()) {
        meta(out, words::end_label(r.status), &esc(&format_datetime(end)))?;
    }
    if let Some(ms) = r.duration_ms {
        meta(out, "Duration", &format_duration(ms))?;
    }
    meta(out, "Dry run", if r.dry_run { "yes" } else { "no" })?;
    if !r.params.is_empty() {
        let params: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<code>{}</code> = <code>{}</code>",
                    esc(k),
                    esc(&words::param_value(v))
                )
            })
            .collect();
        meta(out, "Params", &params.join("<br>"))?;
    }
    writeln!(out, "</table>")?;

    if let Some(torn) = &r.journal.torn_line {
        writeln!(
            out,
            "<p class=\"note\">The journal ends with an incomplete line (line {}, {} bytes): the engine stopped while writing it. Everything before it is complete and shown here.</p>",
            torn.line, torn.bytes
        )?;
    }
    if let Some(command) = &r.resume_command {
        writeln!(
            out,
            "<p class=\"note\">The engine stopped before the run finished. <code>{}</code> continues it.</p>",
            esc(command)
        )?;
    }

    writeln!(out, "<h2>Timeline</h2>\n<div class=\"chart\">")?;
    write_chart(out, r)?;
    writeln!(out, "</div>")?;
    write_legend(out)?;

    writeln!(out, "<h2>Timeline of events</h2>\n<table class=\"events\">")?;
    writeln!(
        out,
        "<tr><th>Time (UTC)</th><th>Since start</th><th>Event</th></tr>"
    )?;
    for entry in &r.timeline {
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&format_time_of_day(&entry.ts, start)),
            entry.offset_ms.map(format_offset).unwrap_or_default(),
            esc(&entry.text)
        )?;
    }
    writeln!(out, "</table>")?;

    if !r.steps.is_empty() {
        writeln!(out, "<h2>Steps</h2>\n<table class=\"steps\">")?;
        writeln!(
            out,
            "<tr><th>Step</th><th>Phase</th><th>Status</th><th>Started</th><th>Ended</th><th>Duration</th><th>Attempts</th><th>Notes</th></tr>"
        )?;
        for step in &r.steps {
            let cells = words::step_row(step, start);
            writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&step.id),
                esc(&cells.phase),
                badge(step.status.as_str()),
                esc(&cells.started),
                esc(&cells.ended),
                cells.duration,
                cells.attempts,
                esc(&cells.note),
            )?;
        }
        writeln!(out, "</table>")?;
    }

    let decisions = words::decision_rows(r, start);
    if !decisions.is_empty() {
        writeln!(out, "<h2>Decisions</h2>\n<table class=\"decisions\">")?;
        writeln!(
            out,
            "<tr><th>Step</th><th>Question</th><th>Asked</th><th>Decided</th><th>Decision</th><th>By</th><th>Waited</th></tr>"
        )?;
        for d in decisions {
            writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.step.id),
                esc(&d.question),
                esc(&d.asked),
                esc(&d.decided),
                d.verdict,
                esc(&d.by),
                d.waited,
            )?;
        }
        writeln!(out, "</table>")?;
    }

    if !r.rollbacks.is_empty() {
        writeln!(out, "<h2>Rollbacks</h2>\n<table class=\"rollbacks\">")?;
        writeln!(
            out,
            "<tr><th>Rolled back step</th><th>Status</th><th>Started</th><th>Ended</th><th>Duration</th><th>Notes</th></tr>"
        )?;
        for rb in &r.rollbacks {
            let cells = words::rollback_row(rb, start);
            writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&rb.step),
                badge(&rb.status),
                esc(&cells.started),
                esc(&cells.ended),
                cells.duration,
                esc(&cells.note),
            )?;
        }
        writeln!(out, "</table>")?;
    }

    let failed_steps: Vec<_> = r.steps.iter().filter(|s| s.error.is_some()).collect();
    let failed_rollbacks: Vec<_> = r.rollbacks.iter().filter(|rb| rb.error.is_some()).collect();
    if !failed_steps.is_empty() || !failed_rollbacks.is_empty() {
        writeln!(out, "<h2>Failures</h2>")?;
        for step in failed_steps {
            writeln!(
                out,
                "<h3><code>{}</code> {}</h3>",
                esc(&step.id),
                badge(step.status.as_str())
            )?;
            writeln!(
                out,
                "<pre>{}</pre>",
                esc(step.error.as_deref().unwrap_or(""))
            )?;
        }
        for rb in failed_rollbacks {
            writeln!(
                out,
                "<h3>rollback of <code>{}</code> {}</h3>",
                esc(&rb.step),
                badge(&rb.status)
            )?;
            writeln!(out, "<pre>{}</pre>", esc(rb.error.as_deref().unwrap_or("")))?;
        }
    }

    let with_outputs: Vec<_> = r.steps.iter().filter(|s| !s.outputs.is_empty()).collect();
    let rollback_outputs: Vec<_> = r
        .rollbacks
        .iter()
        .filter(|rb| !rb.outputs.is_empty())
        .collect();
    if !with_outputs.is_empty() || !rollback_outputs.is_empty() {
        writeln!(out, "<h2>Outputs</h2>")?;
        writeln!(out, "<p class=\"muted\">{}</p>", words::OUTPUTS_NOTE)?;
        for step in with_outputs {
            writeln!(out, "<h3><code>{}</code></h3>", esc(&step.id))?;
            write_outputs(out, &step.outputs)?;
        }
        for rb in rollback_outputs {
            writeln!(out, "<h3>rollback of <code>{}</code></h3>", esc(&rb.step))?;
            write_outputs(out, &rb.outputs)?;
        }
    }
    writeln!(
        out,
        "<p class=\"muted\">{} Times are UTC. Secrets were redacted by the engine before they were journaled.</p>",
        words::journal_summary(r)
    )?;
    writeln!(out, "</main>\n</body>\n</html>")
}

fn meta(out: &mut String, label: &str, value_html: &str) -> std::fmt::Result {
    writeln!(out, "<tr><th>{label}</th><td>{value_html}</td></tr>")
}

fn badge(status: &str) -> String {
    let class: String = status
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("<span class=\"badge s-{class}\">{}</span>", esc(status))
}

fn run_badge(status: RunStatus) -> String {
    match status {
        RunStatus::Interrupted => format!(
            "<span class=\"badge s-interrupted-run\">{}</span>",
            status.as_str()
        ),
        other => badge(other.as_str()),
    }
}

fn write_outputs(out: &mut String, views: &[OutputView]) -> std::fmt::Result {
    let inline: Vec<_> = views.iter().filter(|v| !v.block).collect();
    if !inline.is_empty() {
        writeln!(out, "<table class=\"outputs\">")?;
        for view in inline {
            let trimmed = view
                .trimmed
                .as_deref()
                .map(|t| format!(" <span class=\"muted\">({})</span>", esc(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "<tr><th><code>{}</code></th><td><code>{}</code>{trimmed}</td></tr>",
                esc(&view.name),
                esc(&view.text)
            )?;
        }
        writeln!(out, "</table>")?;
    }
    for view in views.iter().filter(|v| v.block) {
        let trimmed = view
            .trimmed
            .as_deref()
            .map(|t| format!(" <span class=\"muted\">({})</span>", esc(t)))
            .unwrap_or_default();
        writeln!(out, "<div><code>{}</code>{trimmed}</div>", esc(&view.name))?;
        writeln!(out, "<pre>{}</pre>", esc(&view.text))?;
    }
    Ok(())
}

fn write_legend(out: &mut String) -> std::fmt::Result {
    write!(out, "<p class=\"legend\">")?;
    for (color, label) in [
        (COLOR_SUCCEEDED, "succeeded"),
        (COLOR_FAILED, "failed"),
        (COLOR_RETRIED, "attempt failed, retried"),
        (COLOR_CANCELLED, "cancelled"),
        (COLOR_INTERRUPTED, "interrupted by the engine stopping"),
        (COLOR_RUNNING, "running"),
        (COLOR_WAITING, "waiting for a decision"),
        (COLOR_SKIPPED, "skipped"),
    ] {
        write!(
            out,
            "<span><i style=\"background:{color}\"></i>{label}</span>"
        )?;
    }
    writeln!(out, "</p>")
}

/// One row of the chart.
struct Row {
    label: String,
    title: String,
    bars: Vec<Bar>,
    /// A point event (a skip): time and colour.
    marks: Vec<(u64, &'static str, String)>,
}

struct Bar {
    from: u64,
    to: u64,
    color: &'static str,
    /// Drawn thinner, over the others (gate waits).
    overlay: bool,
    title: String,
}

fn status_color(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => COLOR_SUCCEEDED,
        StepStatus::Failed => COLOR_FAILED,
        StepStatus::Cancelled => COLOR_CANCELLED,
        StepStatus::Skipped => COLOR_SKIPPED,
        StepStatus::Interrupted => COLOR_INTERRUPTED,
        StepStatus::Running => COLOR_RUNNING,
        StepStatus::Unknown => COLOR_SKIPPED,
    }
}

fn rollback_color(status: &str) -> &'static str {
    match status {
        "succeeded" => COLOR_SUCCEEDED,
        "failed" => COLOR_FAILED,
        "cancelled" => COLOR_CANCELLED,
        "interrupted" => COLOR_INTERRUPTED,
        "running" => COLOR_RUNNING,
        _ => COLOR_SKIPPED,
    }
}

fn rows(r: &Report, at: &dyn Fn(Option<&str>) -> Option<u64>, end: u64) -> Vec<Row> {
    let start = r.started_at.as_deref();
    let mut rows = Vec::new();
    for step in &r.steps {
        let mut bars = Vec::new();
        let mut marks = Vec::new();
        for span in &step.attempt_log {
            let Some(from) = at(Some(&span.started_at)) else {
                continue;
            };
            let to = at(span.ended_at.as_deref()).unwrap_or(end).max(from);
            let (color, how) = match span.end {
                AttemptEnd::Retried => (COLOR_RETRIED, "failed, retried".to_string()),
                AttemptEnd::Finished => {
                    (status_color(step.status), step.status.as_str().to_string())
                }
                AttemptEnd::EngineStopped => (
                    COLOR_INTERRUPTED,
                    "interrupted: the engine stopped".to_string(),
                ),
                AttemptEnd::Running => (COLOR_RUNNING, "running".to_string()),
            };
            bars.push(Bar {
                from,
                to,
                color,
                overlay: false,
                title: format!(
                    "{}: attempt {}, {} to {} ({}), {how}",
                    step.id,
                    span.attempt,
                    format_time_of_day(&span.started_at, start),
                    span.ended_at
                        .as_deref()
                        .map(|t| format_time_of_day(t, start))
                        .unwrap_or_else(|| "now".into()),
                    format_duration(to - from),
                ),
            });
        }
        for d in &step.decisions {
            let Some(from) = at(d.waiting_since.as_deref()) else {
                continue;
            };
            let to = at(d.decided_at.as_deref()).unwrap_or(end).max(from);
            let what = match d.kind {
                DecisionKind::Gate => "waiting for approval",
                DecisionKind::Confirmation => "resume asks whether it completed",
            };
            let verdict = match d.approved {
                Some(true) => format!(", approved by {}", d.decided_by.as_deref().unwrap_or("?")),
                Some(false) => format!(", rejected by {}", d.decided_by.as_deref().unwrap_or("?")),
                None => ", undecided".to_string(),
            };
            bars.push(Bar {
                from,
                to,
                color: COLOR_WAITING,
                overlay: !step.attempt_log.is_empty(),
                title: format!(
                    "{}: {what} for {}{verdict}",
                    step.id,
                    format_duration(to - from)
                ),
            });
        }
        if step.status == StepStatus::Skipped
            && let Some(t) = at(step.finished_at.as_deref())
        {
            let why = step.reason.as_deref().unwrap_or("");
            marks.push((t, COLOR_SKIPPED, format!("{} skipped: {why}", step.id)));
        }
        let phase = match step.phase.as_deref() {
            Some("on_failure") => " (on_failure)",
            Some("finally") => " (finally)",
            _ => "",
        };
        rows.push(Row {
            label: format!("{}{phase}", step.id),
            title: format!("{}: {}", step.id, step.status.as_str()),
            bars,
            marks,
        });
    }
    for rb in &r.rollbacks {
        let mut bars = Vec::new();
        let mut marks = Vec::new();
        match at(rb.started_at.as_deref()) {
            Some(from) => {
                let to = at(rb.finished_at.as_deref()).unwrap_or(end).max(from);
                bars.push(Bar {
                    from,
                    to,
                    color: rollback_color(&rb.status),
                    overlay: false,
                    title: format!(
                        "rollback of {}: {} ({})",
                        rb.step,
                        rb.status,
                        format_duration(to - from)
                    ),
                });
            }
            None => {
                if let Some(t) = at(rb.finished_at.as_deref()) {
                    let why = rb.reason.as_deref().unwrap_or("");
                    marks.push((
                        t,
                        COLOR_SKIPPED,
                        format!("rollback of {} {}: {why}", rb.step, rb.status),
                    ));
                }
            }
        }
        rows.push(Row {
            label: format!("↩ rollback of {}", rb.step),
            title: format!("rollback of {}: {}", rb.step, rb.status),
            bars,
            marks,
        });
    }
    rows
}

/// A tick interval giving at most about eight ticks over `total` ms.
fn tick_step(total: u64) -> u64 {
    const STEPS: &[u64] = &[
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| total / s <= 8)
        .unwrap_or(total.div_ceil(8).max(1))
}

fn tick_label(ms: u64, step: u64) -> String {
    if step < 1_000 {
        format!("T+{}.{}s", ms / 1_000, (ms % 1_000) / 100)
    } else {
        format_offset(ms)
    }
}

fn write_chart(out: &mut String, r: &Report) -> std::fmt::Result {
    let Some(t0) = r.started_at.as_deref() else {
        return writeln!(
            out,
            "<p class=\"muted\">No run_started event: nothing to draw.</p>"
        );
    };
    let at = |ts: Option<&str>| ts.and_then(|ts| between(t0, ts));
    let last = r
        .timeline
        .iter()
        .filter_map(|e| at(Some(&e.ts)))
        .max()
        .unwrap_or(0);
    let end = at(r.ended_at.as_deref()).unwrap_or(0).max(last).max(1);
    let rows = rows(r, &at, end);
    let scale = CHART_W / end as f64;
    let x = |ms: u64| LABEL_W + ms as f64 * scale;
    let height = TOP + rows.len().max(1) as f64 * ROW_H + 16.0;
    let width = LABEL_W + CHART_W + RIGHT_PAD;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"Gantt chart of the run's steps\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    )?;
    // Alternate row shading, so a bar is easy to follow to its label.
    for (i, _) in rows.iter().enumerate() {
        if i % 2 == 1 {
            writeln!(
                out,
                "<rect x=\"0\" y=\"{:.1}\" width=\"{width}\" height=\"{ROW_H}\" fill=\"#f6f8fa\"/>",
                TOP + i as f64 * ROW_H
            )?;
        }
    }
    let step = tick_step(end);
    let mut tick = 0;
    while tick <= end {
        let tx = x(tick);
        writeln!(
            out,
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#d0d7de\" stroke-width=\"1\"/>",
            TOP - 6.0,
            height - 16.0
        )?;
        writeln!(
            out,
            "<text class=\"axis\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP - 10.0,
            tick_label(tick, step)
        )?;
        tick += step;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        let bar_y = y + (ROW_H - BAR_H) / 2.0;
        let label: String = if row.label.chars().count() > 32 {
            format!("{}…", row.label.chars().take(31).collect::<String>())
        } else {
            row.label.clone()
        };
        writeln!(
            out,
            "<text class=\"mono\" x=\"8\" y=\"{:.1}\"><title>{}</title>{}</text>",
            y + ROW_H / 2.0 + 4.0,
            esc(&row.title),
            esc(&label)
        )?;
        for bar in row.bars.iter().filter(|b| !b.overlay) {
            let (bx, bw) = (x(bar.from), ((bar.to - bar.from) as f64 * scale).max(3.0));
            writeln!(
                out,
                "<rect x=\"{bx:.1}\" y=\"{bar_y:.1}\" width=\"{bw:.1}\" height=\"{BAR_H}\" rx=\"2\" fill=\"{}\"><title>{}</title></rect>",
                bar.color,
                esc(&bar.title)
            )?;
        }
        // Attempt boundaries: a thin white gap where one attempt ends and
        // the next begins.
        for pair in row
            .bars
            .iter()
            .filter(|b| !b.overlay)
            .collect::<Vec<_>>()
            .windows(2)
        {
            let bx = x(pair[1].from);
            writeln!(
                out,
                "<line x1=\"{bx:.1}\" y1=\"{bar_y:.1}\" x2=\"{bx:.1}\" y2=\"{:.1}\" stroke=\"#fff\" stroke-width=\"2\"/>",
                bar_y + BAR_H
            )?;
        }
        for bar in row.bars.iter().filter(|b| b.overlay) {
            let (bx, bw) = (x(bar.from), ((bar.to - bar.from) as f64 * scale).max(3.0));
            writeln!(
                out,
                "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                bar_y + BAR_H * 0.25,
                BAR_H * 0.5,
                bar.color,
                esc(&bar.title)
            )?;
        }
        for (t, color, title) in &row.marks {
            let (mx, my) = (x(*t), y + ROW_H / 2.0);
            writeln!(
                out,
                "<path d=\"M{:.1} {my:.1} L{mx:.1} {:.1} L{:.1} {my:.1} L{mx:.1} {:.1} Z\" fill=\"{color}\"><title>{}</title></path>",
                mx - 5.0,
                my - 5.0,
                mx + 5.0,
                my + 5.0,
                esc(title)
            )?;
        }
    }
    // Engine stops and resumes, over everything.
    let bottom = height - 16.0;
    for (i, session) in r.sessions.iter().enumerate() {
        if session.resumed
            && let Some(t) = at(Some(&session.started_at))
        {
            let mx = x(t);
            let by = who(session.user.as_deref(), session.host.as_deref());
            writeln!(
                out,
                "<line x1=\"{mx:.1}\" y1=\"{:.1}\" x2=\"{mx:.1}\" y2=\"{bottom:.1}\" stroke=\"{COLOR_RUNNING}\" stroke-width=\"2\"><title>resumed by {}</title></line>",
                TOP - 4.0,
                esc(&by)
            )?;
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{COLOR_RUNNING}\" style=\"fill:{COLOR_RUNNING}\" font-size=\"11\">resumed</text>",
                mx + 3.0,
                bottom + 12.0
            )?;
        }
        if session.end == SessionEnd::EngineStopped
            && let Some(t) = at(session.ended_at.as_deref())
        {
            let mx = x(t);
            let anchor = if i + 1 < r.sessions.len() {
                "end"
            } else {
                "start"
            };
            let dx = if anchor == "end" { -3.0 } else { 3.0 };
            writeln!(
                out,
                "<line x1=\"{mx:.1}\" y1=\"{:.1}\" x2=\"{mx:.1}\" y2=\"{bottom:.1}\" stroke=\"{COLOR_INTERRUPTED}\" stroke-width=\"2\" stroke-dasharray=\"5 3\"><title>engine stopped (last journaled event)</title></line>",
                TOP - 4.0
            )?;
            writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" style=\"fill:{COLOR_INTERRUPTED}\" font-size=\"11\">engine stopped</text>",
                mx + dx,
                bottom + 12.0
            )?;
        }
    }
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn ticks_are_few_and_round() {
        assert_eq!(tick_step(4_000), 500);
        assert_eq!(tick_step(60_000), 10_000);
        assert_eq!(tick_step(3_600_000), 600_000);
        assert!(tick_step(10 * 86_400_000) >= 86_400_000);
    }
}
