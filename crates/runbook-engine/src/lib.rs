//! The runbook interpreter.
//!
//! A run flows through: param resolution (model crate) → [`Engine::run`]
//! (one dispatcher task owning all run state) → step executors (one crate
//! per step kind, each implementing [`StepExecutor`]) → [`Event`]s, which the
//! reporters (human, JSON, [`Journal`]) render through an [`EventSink`]. The
//! engine never links a step kind's heavy dependency (reqwest, kube); it only
//! knows the trait.

pub mod backoff;
pub mod event;
pub mod identity;
pub mod journal;
pub mod redact;
pub mod resume;
pub mod run;
mod runner;
pub mod step;
pub mod template;

pub use event::{CollectingSink, Event, EventKind, EventSink, EventStatus};
pub use journal::{Journal, JournalError, RunDir, RunLock};
pub use redact::Redactor;
pub use resume::{ResumeError, ResumePoint};
pub use run::{
    Engine, RollbackRecord, RollbackStatus, RunOptions, RunStatus, RunSummary, StepRecord,
    StepStatus, StopSignals,
};
pub use runner::format_duration;
pub use step::{
    Approvals, Decision, GateRequest, Outputs, ParseRendered, Question, StepContext,
    StepContextBuilder, StepExecutor, StepFailure, StepMessage, StepOutcome, Stream,
    deadline_after,
};
