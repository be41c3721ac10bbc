//! Run history and incident timeline reports, read from run journals.
//!
//! Every `runbook run` journals its events to
//! `STATE_DIR/runs/RUN_ID/events.jsonl`. This crate reads them back after
//! the fact: [`list_runs`] for `runbook runs` (the history, newest first),
//! [`load_report`] and [`build_report`] for `runbook report` (one run's
//! timeline), and the renderers [`render_markdown`], [`render_json`] and
//! [`render_html`]. Secrets are redacted by the engine before anything is
//! journaled, so nothing here needs them.

mod history;
pub mod html;
mod markdown;
pub mod outputs;
mod report;
pub mod time;
mod words;

pub use history::{HistoryError, RunEntry, Runner, list_runs, summarize};
pub use html::render_html;
pub use markdown::render_markdown;
pub use report::{
    AttemptEnd, AttemptSpan, Decision, DecisionKind, JournalInfo, REPORT_VERSION, Report,
    RollbackReport, RunStatus, Session, SessionEnd, StepReport, StepStatus, TimelineEntry,
    TimelineKind, TornInfo, build_report,
};

use runbook_engine::RunDir;
use runbook_engine::{ReadJournalError, read_journal, runs_dir};
use std::path::{Path, PathBuf};

/// Why a run's report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such run in the state directory.
    #[error("no run `{id}` in {} (is --state-dir or $RUNBOOK_STATE_DIR the same as the run's? `runbook runs` lists them)", runs.display())]
    UnknownRun {
        /// The id asked for.
        id: String,
        /// The directory searched.
        runs: PathBuf,
    },
    /// The journal could not be read, or has a bad line (not the torn
    /// last line, which is reported in the report instead).
    #[error(transparent)]
    Journal(#[from] ReadJournalError),
}

/// Reads the journal of run `id` under `state_dir` and builds its report.
/// Whether the run is still going is asked of its lock.
pub fn load_report(state_dir: &Path, id: &str) -> Result<Report, ReportError> {
    let run_dir = RunDir::open(state_dir, id).ok_or_else(|| ReportError::UnknownRun {
        id: id.to_string(),
        runs: runs_dir(state_dir),
    })?;
    let contents = read_journal(&run_dir.journal_path())?;
    Ok(build_report(&run_dir.id, &contents, run_dir.is_live()))
}

/// The report as pretty-printed JSON (the structure of [`Report`]), with a
/// final newline.
pub fn render_json(report: &Report) -> String {
    // A tree of strings, numbers and maps always serializes.
    let mut json = serde_json::to_string_pretty(report).unwrap_or_default();
    json.push('\n');
    json
}
