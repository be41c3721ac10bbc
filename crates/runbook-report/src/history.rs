//! Run history for `runbook runs`: one line per run directory, newest first.
//!
//! Each journal is read on its own, so one that cannot be read is listed
//! with the reason and never hides the others.

use crate::report::{Report, build_report};
use runbook_engine::RunDir;
use runbook_engine::{ReadJournalError, read_journal_without_outputs, runs_dir};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One run in the history. Also the `--format json` structure of
/// `runbook runs` (inside `{"runs": [...]}`).
#[derive(Clone, Debug, Serialize)]
pub struct RunEntry {
    /// The run id.
    pub id: String,
    /// The runbook's name.
    pub runbook: Option<String>,
    /// The runbook file.
    pub file: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, `running`, `stopped` (the engine
    /// died; `runbook resume` continues it), `incomplete` (the engine could
    /// not write all of its journal, so it cannot be resumed; see `error`),
    /// or `unreadable` (see `error`).
    pub status: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// When it finished; for a stopped run its last event; `None` while it
    /// runs.
    pub ended_at: Option<String>,
    /// From start to `ended_at`; `None` while it runs.
    pub duration_ms: Option<u64>,
    /// Whether it is a `--dry-run`; `None` when the journal cannot say.
    pub dry_run: Option<bool>,
    /// Who started it.
    pub started_by: Option<Runner>,
    /// Who resumed it, in order.
    pub resumed_by: Vec<Runner>,
    /// Why it failed, or why its journal could not be read.
    pub error: Option<String>,
}

/// Who ran (or resumed) a run, and when.
#[derive(Clone, Debug, Serialize)]
pub struct Runner {
    /// The user.
    pub user: Option<String>,
    /// The machine.
    pub host: Option<String>,
    /// When their engine started.
    pub at: String,
}

impl Runner {
    /// `user@host`.
    pub fn who(&self) -> String {
        crate::report::who(self.user.as_deref(), self.host.as_deref())
    }
}

/// Why the history could not be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The runs directory exists but cannot be read.
    // The cause is the error's source, which callers print after it.
    #[error("cannot read `{path}`")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Every run under `state_dir`, newest first (run ids sort by start time).
/// A state directory without runs gives an empty list.
pub fn list_runs(state_dir: &Path) -> Result<Vec<RunEntry>, HistoryError> {
    let runs = runs_dir(state_dir);
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(HistoryError::ReadDir { path: runs, source }),
    };
    let ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    let mut runs: Vec<RunEntry> = ids
        .into_iter()
        .filter_map(|id| {
            let run_dir = RunDir::open(state_dir, &id)?;
            let mut entry = match read_journal_without_outputs(&run_dir.journal_path()) {
                Ok(contents) => summarize(&build_report(&id, &contents, run_dir.is_live())),
                Err(error) => unreadable(&id, &error),
            };
            // A journal its engine could not finish writing looks like one
            // whose engine died, but `resume` must not be offered for it.
            // Nor for one left unreadable by whatever emptied or deleted it
            // during the run: the marker says what happened.
            if let Some(why) = run_dir.journal_incomplete()
                && matches!(entry.status.as_str(), "stopped" | "unreadable")
            {
                entry.status = "incomplete".into();
                entry.error = Some(why);
            }
            Some(entry)
        })
        .collect();
    // The id holds the start to the second only (then a random suffix), so
    // runs of the same second are ordered by their recorded start.
    runs.sort_by(|a, b| started(b).cmp(&started(a)).then_with(|| b.id.cmp(&a.id)));
    Ok(runs)
}

/// When a run started, comparable across runs: `started_at` (RFC 3339 in
/// UTC, milliseconds), else the second its id was made in.
fn started(run: &RunEntry) -> String {
    if let Some(at) = &run.started_at {
        return at.clone();
    }
    // Any directory under `runs/` is listed, so its name may be anything:
    // only `YYYYMMDD-HHMMSS…` in ASCII digits is read as a time.
    let id = run.id.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        id.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if digits(0..8) && id.get(8) == Some(&b'-') && digits(9..15) {
        let (date, time) = (&run.id[..8], &run.id[9..15]);
        return format!(
            "{}-{}-{}T{}:{}:{}",
            &date[..4],
            &date[4..6],
            &date[6..],
            &time[..2],
            &time[2..4],
            &time[4..]
        );
    }
    String::new()
}

/// The history line of a run, from its report.
pub fn summarize(report: &Report) -> RunEntry {
    let runner = |s: &crate::report::Session| Runner {
        user: s.user.clone(),
        host: s.host.clone(),
        at: s.started_at.clone(),
    };
    RunEntry {
        id: report.run_id.clone(),
        runbook: report.runbook.clone(),
        file: report.file.clone(),
        // A journal without its first event (the engine died at once, or
        // the line was lost) names no runbook and no start.
        status: if report.sessions.is_empty() {
            "unreadable".into()
        } else {
            report.status.as_str().into()
        },
        started_at: report.started_at.clone(),
        ended_at: report.ended_at.clone(),
        duration_ms: report.duration_ms,
        dry_run: (!report.sessions.is_empty()).then_some(report.dry_run),
        started_by: report.sessions.first().map(runner),
        resumed_by: report.sessions.iter().skip(1).map(runner).collect(),
        error: if report.sessions.is_empty() {
            Some("the journal has no run_started event".into())
        } else {
            report.error.clone()
        },
    }
}

fn unreadable(id: &str, error: &ReadJournalError) -> RunEntry {
    let reason = match error {
        ReadJournalError::Parse { line, .. } | ReadJournalError::Invalid { line, .. } => {
            format!("journal line {line} is not a valid event")
        }
        ReadJournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "no journal (events.jsonl is missing)".to_string()
        }
        ReadJournalError::Io { source, .. } => format!("cannot read the journal: {source}"),
    };
    RunEntry {
        id: id.to_string(),
        runbook: None,
        file: None,
        status: "unreadable".into(),
        started_at: None,
        ended_at: None,
        duration_ms: None,
        dry_run: None,
        started_by: None,
        resumed_by: Vec::new(),
        error: Some(reason),
    }
}
