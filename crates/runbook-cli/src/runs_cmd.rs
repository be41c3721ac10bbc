//! `runbook runs`: the run history of a state directory, newest first.

use crate::exit::ExitCode;
use crate::run_cmd::command_hint;
use anyhow::Context;
use runbook_engine::{runs_dir, state_dir};
use runbook_report::time::format_duration;
use runbook_report::{RunEntry, list_runs};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `runbook runs`.
#[derive(clap::Args)]
pub struct RunsArgs {
    /// Output format: a table for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = RunsFormat::Human)]
    pub format: RunsFormat,
    /// Where runs are recorded (default: $RUNBOOK_STATE_DIR,
    /// $XDG_STATE_HOME/runbook, ~/.local/state/runbook).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Formats of `runbook runs`.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum RunsFormat {
    /// One aligned line per run, start times in local time.
    Human,
    /// `{"state_dir": …, "runs": [{id, runbook, status, started_at, …}]}`.
    Json,
}

pub fn run(args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir.as_deref(), &|name| std::env::var(name).ok())?;
    let runs = list_runs(&state)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        RunsFormat::Json => {
            let doc = serde_json::json!({
                "state_dir": state.display().to_string(),
                "runs": runs,
            });
            let text = serde_json::to_string_pretty(&doc).context("cannot encode the run list")?;
            writeln!(stdout, "{text}")?;
        }
        RunsFormat::Human if runs.is_empty() => {
            errln!(
                "no runs recorded in {} yet (`runbook run` records every run there; is --state-dir or $RUNBOOK_STATE_DIR the one you ran with?)",
                runs_dir(&state).display()
            );
        }
        RunsFormat::Human => {
            write!(stdout, "{}", table(&runs))?;
            let stopped: Vec<&str> = runs
                .iter()
                .filter(|r| r.status == "stopped")
                .map(|r| r.id.as_str())
                .collect();
            if !stopped.is_empty() {
                // With one, a command that can be pasted as it is.
                let id = match stopped.as_slice() {
                    [one] => one,
                    _ => "RUN_ID",
                };
                errln!(
                    "a stopped run's engine died before it finished; `{}` continues it",
                    command_hint("resume", id, args.state_dir.as_deref())
                );
            }
            if runs.iter().any(|r| r.status == "incomplete") {
                errln!(
                    "an incomplete run's journal could not all be written (a full disk): it does not say everything that ran, so it is not resumed"
                );
            }
        }
    }
    stdout.flush()?;
    Ok(ExitCode::Success)
}

/// The human listing: aligned columns, the last one (who) left ragged.
fn table(runs: &[RunEntry]) -> String {
    let header = ["RUN", "RUNBOOK", "STARTED", "DURATION", "STATUS", "BY"];
    let rows: Vec<[String; 6]> = runs.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}

fn row(run: &RunEntry) -> [String; 6] {
    let started = run
        .started_at
        .as_deref()
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into());
    // The journal knows a run until its last event: a live run has been
    // going since it started, and a stopped one ran for an unknown while
    // after its last event (a step that had started, the engine's death).
    let since_start = run
        .started_at
        .as_deref()
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .and_then(|t| u64::try_from((chrono::Utc::now() - t.to_utc()).num_milliseconds()).ok());
    let duration = match (run.duration_ms, run.status.as_str()) {
        (_, "running") => match since_start {
            Some(ms) => format!("{} so far", format_duration(ms)),
            None => "-".into(),
        },
        // A lower bound is not rounded up.
        (Some(ms), "stopped" | "incomplete") => {
            format!("at least {}", format_duration(shown_precision_floor(ms)))
        }
        (Some(ms), _) => format_duration(ms),
        (None, _) => "-".into(),
    };
    let mut status = run.status.clone();
    if run.dry_run == Some(true) {
        status.push_str(" (dry run)");
    }
    let by = if run.status == "unreadable" {
        run.error.clone().unwrap_or_default()
    } else {
        let mut by = run
            .started_by
            .as_ref()
            .map(|r| r.who())
            .unwrap_or_else(|| "-".into());
        for resumer in &run.resumed_by {
            by.push_str(&format!(", resumed by {}", resumer.who()));
        }
        by
    };
    [
        run.id.clone(),
        run.runbook.clone().unwrap_or_else(|| "-".into()),
        started,
        duration,
        status,
        by,
    ]
}

/// `ms` cut down to the last digit `format_duration` shows (ms, tenths of a
/// second, seconds, minutes), so that it rounds to nothing above `ms`.
fn shown_precision_floor(ms: u64) -> u64 {
    let unit = match ms {
        0..1_000 => 1,
        1_000..60_000 => 100,
        60_000..3_600_000 => 1_000,
        _ => 60_000,
    };
    ms - ms % unit
}

#[cfg(test)]
mod tests {
    use super::shown_precision_floor;
    use runbook_report::time::format_duration;

    #[test]
    fn a_lower_bound_is_never_shown_above_itself() {
        for (ms, shown) in [
            (999, "999ms"),
            (1_449, "1.4s"),
            (1_460, "1.4s"),
            (59_960, "59.9s"),
            (119_999, "1m 59s"),
            (3_599_600, "59m 59s"),
            (7_199_999, "1h 59m"),
        ] {
            assert_eq!(format_duration(shown_precision_floor(ms)), shown, "{ms}");
        }
    }
}
