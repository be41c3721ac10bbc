//! The runbook interpreter.
//!
//! A run flows through: param resolution (model crate) → [`Engine::run`]
//! (one dispatcher task owning all run state) → step executors (one crate
//! per step kind, each implementing [`StepExecutor`]) → events, which the
//! reporters (human, JSON, journal) render. The engine never links a step
//! kind's heavy dependency (reqwest, kube); it only knows the trait.

pub mod redact;
pub mod step;
pub mod template;

pub use redact::Redactor;
pub use step::{
    Approvals, Decision, GateRequest, Outputs, ParseRendered, StepContext, StepContextBuilder,
    StepExecutor, StepFailure, StepMessage, StepOutcome, Stream,
};
