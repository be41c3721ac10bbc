//! The runbook interpreter.
//!
//! A run flows through: param resolution (model crate) → [`Engine::run`]
//! (one dispatcher task owning all run state) → step executors (one crate
//! per step kind, each implementing [`StepExecutor`]) → [`Event`]s, which the
//! reporters (human, JSON, [`Journal`]) render through an [`EventSink`]. The
//! engine never links a step kind's heavy dependency (reqwest, kube); it only
//! knows the trait.

mod backoff;
mod event;
mod identity;
mod journal;
mod redact;
mod resume;
mod run;
mod runner;
mod step;
mod template;

pub use event::{CollectingSink, Event, EventKind, EventSink, EventStatus, Phase};
pub use identity::current_user;
pub use journal::{
    Journal, JournalContents, JournalError, ReadJournalError, RunDir, RunLock, TornLine,
    read_journal, read_journal_without_outputs, runs_dir, state_dir,
};
pub use redact::Redactor;
pub use resume::{ResumeError, ResumePoint};
pub use run::{
    DEFAULT_LIVE_LINES_PER_SECOND, DEFAULT_MAX_PARALLEL, Engine, RollbackRecord, RollbackStatus,
    RunOptions, RunStatus, RunSummary, StepRecord, StepStatus, StopSignals,
};
pub use runner::format_duration;
pub use step::{
    Approvals, Decision, GateRequest, Outputs, ParseRendered, Question, StepContext,
    StepContextBuilder, StepExecutor, StepFailure, StepMessage, StepOutcome, Stream,
    deadline_after,
};
pub use template::{RenderFailure, Templates};
