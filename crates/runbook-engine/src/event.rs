//! What a run reports: the events of the NDJSON stream and the journal, and
//! the [`EventSink`] trait through which reporters receive them.
//!
//! Every event is one flat struct so that it serializes to one JSON object
//! per line with only the fields that apply. The dispatcher redacts secrets
//! before a sink sees anything, so sinks never need the secret values.

use crate::step::{Outputs, Stream};
pub use runbook_model::Phase;
use serde::{Deserialize, Serialize};

/// The kinds of event (spec section 7). No other kind is ever written, so a
/// consumer written against the spec's list sees every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run began (first event).
    RunStarted,
    /// An attempt of a step began (one per attempt, with `attempt`).
    StepStarted,
    /// A step reached `succeeded`, `failed` or `cancelled`.
    StepFinished,
    /// A step was skipped, with `reason`.
    StepSkipped,
    /// A manual gate is waiting for a decision.
    GateWaiting,
    /// A gate was decided (by a person, a flag, its condition or its timeout).
    GateDecided,
    /// A rollback began.
    RollbackStarted,
    /// A rollback ended (or did not run: `status` `skipped`, with `reason`).
    RollbackFinished,
    /// The run ended (last event).
    RunFinished,
}

impl EventKind {
    /// The name written in the `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run_started",
            EventKind::StepStarted => "step_started",
            EventKind::StepFinished => "step_finished",
            EventKind::StepSkipped => "step_skipped",
            EventKind::GateWaiting => "gate_waiting",
            EventKind::GateDecided => "gate_decided",
            EventKind::RollbackStarted => "rollback_started",
            EventKind::RollbackFinished => "rollback_finished",
            EventKind::RunFinished => "run_finished",
        }
    }
}

/// The `status` of an event: how a step, rollback or run ended
/// (`step_finished`, `step_skipped`, `rollback_finished`, `run_finished`),
/// or a gate's decision (`gate_decided`). Which apply to which kind is
/// checked when a journal is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// It ran and succeeded (a run: every step that had to succeed did).
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It did not run.
    Skipped,
    /// It was stopped because the run was stopping.
    Cancelled,
    /// A run stopped by SIGINT or SIGTERM.
    Interrupted,
    /// A gate approved.
    Approved,
    /// A gate rejected.
    Rejected,
}

impl EventStatus {
    /// The name written in the `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Succeeded => "succeeded",
            EventStatus::Failed => "failed",
            EventStatus::Skipped => "skipped",
            EventStatus::Cancelled => "cancelled",
            EventStatus::Interrupted => "interrupted",
            EventStatus::Approved => "approved",
            EventStatus::Rejected => "rejected",
        }
    }
}

/// One event. Fields that do not apply are `None` and left out of the JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, RFC 3339 in UTC with milliseconds.
    pub ts: String,
    /// What happened.
    pub event: EventKind,
    /// The run.
    pub run_id: String,
    /// The step (for rollback events: the main step being rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Which map the step belongs to: `steps`, `on_failure`, `finally` or
    /// `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// How a step, rollback or run ended, or a gate's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EventStatus>,
    /// The attempt number (1-based) of `step_started`; on `step_finished` and
    /// `rollback_finished`, the last attempt's (the spec's field list names
    /// `attempt`; `attempts` says the same as a count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Attempts made, on `step_finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Elapsed time of a step (all attempts and waits), rollback or run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The error of a failed or cancelled step, or why a run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A finished step's outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    /// The outputs in which a secret was masked (`***`): what the journal
    /// holds of them is not what the step produced, so a resume does not
    /// hand it to later steps as if it were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_outputs: Option<Vec<String>>,
    /// Why a step was skipped, why an attempt is retried, or why a rollback
    /// did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Under `--dry-run`: what the step would have done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_run: Option<String>,
    /// A gate's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long a gate waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A gate's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    /// Who decided a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// `run_started`: the runbook's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// `run_started`: the runbook file, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `run_started`: SHA-256 of the file's content (for `resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_sha256: Option<String>,
    /// `run_started`: who ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `run_started`: on which machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `run_started`: the resolved params, secrets as `***`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// `run_started`: whether this is a `--dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// `run_started`: `true` when the run was started with `--no-rollback`
    /// (absent otherwise), so a resume keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_rollback: Option<bool>,
    /// `run_started` written by `runbook resume`: the same run continues
    /// after its engine stopped (`user` and `host` are the resumer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
}

impl Event {
    /// An event of `kind` for `run_id`, stamped now.
    pub fn new(kind: EventKind, run_id: &str) -> Self {
        Event {
            ts: now_rfc3339(),
            event: kind,
            run_id: run_id.to_string(),
            step: None,
            phase: None,
            status: None,
            attempt: None,
            attempts: None,
            duration_ms: None,
            error: None,
            outputs: None,
            masked_outputs: None,
            reason: None,
            would_run: None,
            message: None,
            timeout_ms: None,
            approved: None,
            decided_by: None,
            runbook: None,
            file: None,
            runbook_sha256: None,
            user: None,
            host: None,
            params: None,
            dry_run: None,
            no_rollback: None,
            resumed: None,
        }
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The current time as RFC 3339 in UTC with milliseconds.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Receives what a run reports, already redacted. The dispatcher calls it
/// from its own task, in order; an implementation must not block for long
/// (it would hold up the whole run).
pub trait EventSink: Send {
    /// An event (written to NDJSON output and the journal).
    fn event(&mut self, event: &Event);

    /// A line of a step's live output. Not an event: it goes to people only
    /// (the step's outputs keep the tail for machines).
    fn output(&mut self, step: &str, stream: Stream, line: &str) {
        let _ = (step, stream, line);
    }

    /// Several lines of a step's live output, in order: `text` holds each
    /// line followed by `\n`. The default shows them one by one through
    /// [`Self::output`]; a sink that writes somewhere costly overrides it to
    /// write the whole batch at once.
    fn output_lines(&mut self, step: &str, stream: Stream, text: &str) {
        for line in text.split_terminator('\n') {
            self.output(step, stream, line);
        }
    }

    /// A step's progress note ("waiting for 2 of 3 replicas").
    fn progress(&mut self, step: &str, message: &str) {
        let _ = (step, message);
    }

    /// An attempt failed and the step will be retried after `delay`. The
    /// next `step_started` carries the same information in its `reason`.
    fn attempt_failed(
        &mut self,
        step: &str,
        attempt: u32,
        error: &str,
        delay: std::time::Duration,
    ) {
        let _ = (step, attempt, error, delay);
    }

    /// `count` lines of `step`'s live output were left out here, because it
    /// printed more lines a second than live output shows
    /// ([`crate::RunOptions::live_lines_per_second`]) or faster than the
    /// sinks took them. Called where the lines were left out: before the
    /// next line shown, or when the step (or its rollback) ends.
    fn output_dropped(&mut self, step: &str, count: u64) {
        let _ = (step, count);
    }

    /// The dispatcher is about to wait, or the run is over: make the events
    /// so far durable (the journal syncs them to disk). Called once per
    /// turn of the dispatcher's loop, so at every step boundary, and
    /// after the last event.
    fn flush(&mut self) {}
}

/// A sink that keeps every event in memory (tests, embedding).
#[derive(Debug, Default)]
pub struct CollectingSink {
    /// The events, in order.
    pub events: Vec<Event>,
    /// Live output lines, as `(step, line)`.
    pub lines: Vec<(String, String)>,
}

impl EventSink for CollectingSink {
    fn event(&mut self, event: &Event) {
        self.events.push(event.clone());
    }

    fn output(&mut self, step: &str, _: Stream, line: &str) {
        self.lines.push((step.to_string(), line.to_string()));
    }
}
