//! The report of one run, built from its journal: the run's header, its
//! engine sessions (the first run and every `resume`), every step with its
//! attempts, gate decisions and outputs worth reading, the rollbacks, and a
//! chronological timeline. This structure is also the `--format json`
//! output, so its field names are a stable interface ([`REPORT_VERSION`]).

use crate::outputs::{OutputView, worth_reading};
use crate::time::{between, format_duration};
use runbook_engine::JournalContents;
use runbook_engine::Phase;
use runbook_engine::{Event, EventKind, EventStatus};
use serde::Serialize;
use serde_json::{Map, Value};

/// The version of the JSON structure. It grows only by new fields; a
/// change to an existing field's meaning bumps it. Version 2: a running
/// run's `ended_at` and `duration_ms` are `null` (they were its last
/// event), and `last_event_at` is new.
pub const REPORT_VERSION: u32 = 2;

/// Everything a report shows about one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub report_version: u32,
    /// The run id.
    pub run_id: String,
    /// The runbook's name.
    pub runbook: Option<String>,
    /// The runbook file, as recorded when the run started.
    pub file: Option<String>,
    /// SHA-256 of the runbook file when the run started.
    pub runbook_sha256: Option<String>,
    /// How the run ended, or where it is.
    pub status: RunStatus,
    /// Why the run failed or was interrupted.
    pub error: Option<String>,
    /// The first `run_started`.
    pub started_at: Option<String>,
    /// The `run_finished`; for a stopped run, its last event (the engine
    /// died some time after it); `None` while the run is running.
    pub ended_at: Option<String>,
    /// Wall-clock time from `started_at` to `ended_at`, including any time
    /// the engine was stopped before a resume.
    pub duration_ms: Option<u64>,
    /// The journal's last event, whatever the run's state.
    pub last_event_at: Option<String>,
    /// Whether this was a `--dry-run`.
    pub dry_run: bool,
    /// The resolved params (secrets already `***` in the journal).
    pub params: Map<String, Value>,
    /// The engines that ran it: the first run, then one per resume.
    pub sessions: Vec<Session>,
    /// Every step the journal mentions, in the order it first appears.
    pub steps: Vec<StepReport>,
    /// Every rollback, in the order they ran.
    pub rollbacks: Vec<RollbackReport>,
    /// What happened, in order: the "timeline of events" of a review.
    pub timeline: Vec<TimelineEntry>,
    /// About the journal itself.
    pub journal: JournalInfo,
    /// For a stopped run, the command that continues it (`runbook resume
    /// RUN_ID`, or what [`Report::set_resume_command`] says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_command: Option<String>,
}

impl Report {
    /// Says how the reader continues a stopped run when the plain
    /// `runbook resume RUN_ID` would not find it (the run lives in a state
    /// directory given with `--state-dir`), in the report's notes and its
    /// timeline alike. Nothing changes for a run that is not stopped.
    pub fn set_resume_command(&mut self, command: &str) {
        let Some(old) = self.resume_command.replace(command.to_string()) else {
            self.resume_command = None;
            return;
        };
        for entry in &mut self.timeline {
            if entry.kind == TimelineKind::EngineStopped && entry.text.ends_with(&old) {
                let kept = entry.text.len() - old.len();
                entry.text.truncate(kept);
                entry.text.push_str(command);
            }
        }
    }
}

/// The status of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Finished, succeeded.
    Succeeded,
    /// Finished, failed (after rollbacks, `on_failure`, `finally`).
    Failed,
    /// Finished after SIGINT or SIGTERM.
    Interrupted,
    /// Not finished, and an engine holds the run's lock now.
    Running,
    /// Not finished, and no engine runs it: the engine died (`resume` it).
    Stopped,
    /// `run_finished` with a status this version does not know.
    Unknown,
}

impl RunStatus {
    /// The word used in every format.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Running => "running",
            RunStatus::Stopped => "stopped",
            RunStatus::Unknown => "unknown",
        }
    }

    fn of(status: Option<EventStatus>) -> RunStatus {
        match status {
            Some(EventStatus::Succeeded) => RunStatus::Succeeded,
            Some(EventStatus::Failed) => RunStatus::Failed,
            Some(EventStatus::Interrupted) => RunStatus::Interrupted,
            _ => RunStatus::Unknown,
        }
    }
}

/// One engine's stretch of the run: the first `run`, or a `resume`.
#[derive(Clone, Debug, Serialize)]
pub struct Session {
    /// Its `run_started`.
    pub started_at: String,
    /// Who ran it.
    pub user: Option<String>,
    /// On which machine.
    pub host: Option<String>,
    /// Whether it is a `resume`.
    pub resumed: bool,
    /// A note of the resume (such as a torn journal line it cut).
    pub note: Option<String>,
    /// Its `run_finished`, or its last event when it did not finish.
    pub ended_at: Option<String>,
    /// How it ended.
    pub end: SessionEnd,
}

/// How an engine session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// It wrote `run_finished`.
    Finished,
    /// It stopped without `run_finished` (killed, crashed, power lost);
    /// `ended_at` is its last journaled event.
    EngineStopped,
    /// It is still running.
    Running,
}

/// The status of a step in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Succeeded (or, after a resume, confirmed completed by a person).
    Succeeded,
    /// Failed (last attempt failed or timed out, or a gate was rejected).
    Failed,
    /// Cancelled while running.
    Cancelled,
    /// Did not run, with a reason.
    Skipped,
    /// Was running when the engine stopped, and has not finished since.
    Interrupted,
    /// Running now.
    Running,
    /// A status this version does not know.
    Unknown,
}

impl StepStatus {
    /// The word used in every format.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "interrupted",
            StepStatus::Running => "running",
            StepStatus::Unknown => "unknown",
        }
    }

    fn of(status: Option<EventStatus>) -> StepStatus {
        match status {
            Some(EventStatus::Succeeded) => StepStatus::Succeeded,
            Some(EventStatus::Failed) => StepStatus::Failed,
            Some(EventStatus::Cancelled) => StepStatus::Cancelled,
            Some(EventStatus::Skipped) => StepStatus::Skipped,
            _ => StepStatus::Unknown,
        }
    }
}

/// One step of the run.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// The step id.
    pub id: String,
    /// `steps`, `on_failure` or `finally` (null if the journal never said).
    pub phase: Option<String>,
    /// Where it ended.
    pub status: StepStatus,
    /// Its first `step_started`.
    pub started_at: Option<String>,
    /// Its `step_finished` or `step_skipped`.
    pub finished_at: Option<String>,
    /// The engine's measure of the step (all attempts and waits; after a
    /// resume, the resumed engine's part).
    pub duration_ms: Option<u64>,
    /// Attempts made (from `step_finished`).
    pub attempts: Option<u32>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Why it was skipped, or how a resume settled it.
    pub reason: Option<String>,
    /// Under `--dry-run`: what it would have done.
    pub would_run: Option<String>,
    /// Each attempt as a stretch of time; a resume starts new ones.
    pub attempt_log: Vec<AttemptSpan>,
    /// Decisions asked of people or conditions: a gate's, or a resume's
    /// "did this step complete?".
    pub decisions: Vec<Decision>,
    /// The outputs worth reading, trimmed (see [`crate::outputs`]).
    pub outputs: Vec<OutputView>,
}

/// One attempt of a step.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptSpan {
    /// The attempt number (restarts at 1 after a resume).
    pub attempt: u32,
    /// Which session (index into `sessions`) ran it.
    pub session: usize,
    /// Its `step_started`.
    pub started_at: String,
    /// When it ended, as far as the journal knows.
    pub ended_at: Option<String>,
    /// How it ended.
    pub end: AttemptEnd,
    /// Why this attempt was made (the retry reason of its `step_started`).
    pub retry_reason: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptEnd {
    /// It failed and another attempt followed.
    Retried,
    /// It was the step's last attempt (the step's status says how).
    Finished,
    /// The engine stopped while it ran; `ended_at` is the engine's last event.
    EngineStopped,
    /// It is running now.
    Running,
}

/// A decision about a step.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// What was decided.
    pub kind: DecisionKind,
    /// What the person was asked.
    pub message: Option<String>,
    /// When it started waiting (null for a gate decided by its condition
    /// or in advance).
    pub waiting_since: Option<String>,
    /// How long it would wait.
    pub timeout_ms: Option<u64>,
    /// When it was decided (null while waiting, or if the engine stopped).
    pub decided_at: Option<String>,
    /// The decision.
    pub approved: Option<bool>,
    /// Who decided (`alice (terminal)`, `--approve-all`, `condition`, `timeout`…).
    pub decided_by: Option<String>,
}

/// What a decision was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// A gate step's approval.
    Gate,
    /// After a resume: whether a step marked `idempotent: false`, which the
    /// engine stopped during, had completed (approved: it is not re-run).
    Confirmation,
}

/// One rollback.
#[derive(Clone, Debug, Serialize)]
pub struct RollbackReport {
    /// The main step it undoes.
    pub step: String,
    /// `succeeded`, `failed`, `cancelled`, `skipped` (did not run: see
    /// `reason`), or `interrupted`/`running` when it has not finished.
    pub status: String,
    /// Its `rollback_started` (null when it did not run).
    pub started_at: Option<String>,
    /// Its `rollback_finished`.
    pub finished_at: Option<String>,
    /// How long it took.
    pub duration_ms: Option<u64>,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it did not run (`--no-rollback`, abandoned by a second interrupt).
    pub reason: Option<String>,
    /// Under `--dry-run`: what it would have done.
    pub would_run: Option<String>,
    /// Its outputs worth reading.
    pub outputs: Vec<OutputView>,
}

/// One line of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    /// When (the event's timestamp).
    pub ts: String,
    /// Milliseconds since the run started.
    pub offset_ms: Option<u64>,
    /// What kind of thing happened (see [`TimelineKind`]).
    pub kind: TimelineKind,
    /// The step concerned.
    pub step: Option<String>,
    /// A sentence for people.
    pub text: String,
}

/// Kinds of timeline entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// The run started.
    RunStarted,
    /// The engine stopped without finishing the run (its last event).
    EngineStopped,
    /// `runbook resume` continued the run.
    RunResumed,
    /// A step began (attempt 1).
    StepStarted,
    /// A step began another attempt.
    StepRetried,
    /// A step ended: succeeded.
    StepSucceeded,
    /// A step ended: failed.
    StepFailed,
    /// A step ended: cancelled (or a status this version does not know).
    StepCancelled,
    /// A step was skipped.
    StepSkipped,
    /// A gate or a resume confirmation began waiting for a person.
    DecisionWaiting,
    /// A gate or a resume confirmation was decided.
    Decided,
    /// A rollback began.
    RollbackStarted,
    /// A rollback ended (or did not run).
    RollbackFinished,
    /// The run ended.
    RunFinished,
}

/// About the journal the report was read from.
#[derive(Clone, Debug, Serialize)]
pub struct JournalInfo {
    /// Complete events read.
    pub events: usize,
    /// The incomplete last line, if the engine died while writing it.
    pub torn_line: Option<TornInfo>,
}

/// An incomplete last line of the journal.
#[derive(Clone, Debug, Serialize)]
pub struct TornInfo {
    /// Its line number.
    pub line: usize,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Builds the report of run `run_id` from its journal. `live` says whether
/// an engine holds the run's lock now ([`runbook_engine::RunDir::is_live`]):
/// a journal without `run_finished` is then `running`, else `stopped`.
pub fn build_report(run_id: &str, contents: &JournalContents, live: bool) -> Report {
    let mut builder = Builder::new(run_id);
    for event in &contents.events {
        builder.event(event);
    }
    builder.finish(contents, live)
}

struct Builder {
    report: Report,
    /// The last event's timestamp: where a stopped engine's story ends.
    last_ts: Option<String>,
    /// Steps that were running when an engine stopped and have not started
    /// again since: a decision about one of them is a resume confirmation.
    awaiting_confirmation: Vec<String>,
    finished: bool,
}

impl Builder {
    fn new(run_id: &str) -> Self {
        Builder {
            report: Report {
                report_version: REPORT_VERSION,
                run_id: run_id.to_string(),
                runbook: None,
                file: None,
                runbook_sha256: None,
                status: RunStatus::Unknown,
                error: None,
                started_at: None,
                ended_at: None,
                duration_ms: None,
                last_event_at: None,
                dry_run: false,
                params: Map::new(),
                sessions: Vec::new(),
                steps: Vec::new(),
                rollbacks: Vec::new(),
                timeline: Vec::new(),
                journal: JournalInfo {
                    events: 0,
                    torn_line: None,
                },
                resume_command: None,
            },
            last_ts: None,
            awaiting_confirmation: Vec::new(),
            finished: false,
        }
    }

    fn step(&mut self, id: &str, phase: Option<Phase>) -> &mut StepReport {
        let index = match self.report.steps.iter().position(|s| s.id == id) {
            Some(index) => index,
            None => {
                self.report.steps.push(StepReport {
                    id: id.to_string(),
                    phase: None,
                    status: StepStatus::Unknown,
                    started_at: None,
                    finished_at: None,
                    duration_ms: None,
                    attempts: None,
                    error: None,
                    reason: None,
                    would_run: None,
                    attempt_log: Vec::new(),
                    decisions: Vec::new(),
                    outputs: Vec::new(),
                });
                self.report.steps.len() - 1
            }
        };
        let step = &mut self.report.steps[index];
        if step.phase.is_none() {
            step.phase = phase.map(|p| p.key().to_string());
        }
        step
    }

    fn note(&mut self, ts: &str, kind: TimelineKind, step: Option<&str>, text: String) {
        let offset_ms = self
            .report
            .started_at
            .as_deref()
            .and_then(|start| between(start, ts));
        self.report.timeline.push(TimelineEntry {
            ts: ts.to_string(),
            offset_ms,
            kind,
            step: step.map(str::to_string),
            text,
        });
    }

    fn event(&mut self, e: &Event) {
        let step_id = e.step.clone().unwrap_or_default();
        match e.event {
            EventKind::RunStarted => self.run_started(e),
            EventKind::StepStarted => {
                self.awaiting_confirmation.retain(|s| *s != step_id);
                let session = self.report.sessions.len().saturating_sub(1);
                let resumed_here = self.report.sessions.last().is_some_and(|s| s.resumed);
                let step = self.step(&step_id, e.phase);
                let attempt = e.attempt.unwrap_or(1);
                if let Some(open) = step.attempt_log.last_mut().filter(|a| a.ended_at.is_none()) {
                    open.ended_at = Some(e.ts.clone());
                    open.end = AttemptEnd::Retried;
                }
                let again = step
                    .attempt_log
                    .iter()
                    .any(|a| a.end == AttemptEnd::EngineStopped);
                step.started_at.get_or_insert_with(|| e.ts.clone());
                step.status = StepStatus::Running;
                step.attempt_log.push(AttemptSpan {
                    attempt,
                    session,
                    started_at: e.ts.clone(),
                    ended_at: None,
                    end: AttemptEnd::Running,
                    retry_reason: e.reason.clone(),
                });
                let (kind, text) = if attempt > 1 {
                    let why = e
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    (
                        TimelineKind::StepRetried,
                        format!("{step_id}: attempt {attempt} started{why}"),
                    )
                } else if again && resumed_here {
                    (
                        TimelineKind::StepStarted,
                        format!("{step_id} started again after the resume"),
                    )
                } else {
                    (TimelineKind::StepStarted, format!("{step_id} started"))
                };
                self.note(&e.ts, kind, Some(&step_id), text);
            }
            EventKind::GateWaiting => {
                let kind = self.decision_kind(&step_id);
                let step = self.step(&step_id, e.phase);
                step.decisions.push(Decision {
                    kind,
                    message: e.message.clone(),
                    waiting_since: Some(e.ts.clone()),
                    timeout_ms: e.timeout_ms,
                    decided_at: None,
                    approved: None,
                    decided_by: None,
                });
                let message = e.message.as_deref().unwrap_or("");
                let text = match kind {
                    DecisionKind::Gate => {
                        format!("{step_id}: gate waiting for approval: {message}")
                    }
                    DecisionKind::Confirmation => {
                        format!("{step_id}: resume asks whether it completed: {message}")
                    }
                };
                self.note(&e.ts, TimelineKind::DecisionWaiting, Some(&step_id), text);
            }
            EventKind::GateDecided => {
                let kind = self.decision_kind(&step_id);
                let step = self.step(&step_id, e.phase);
                // A question asked before the step's latest start (by an
                // engine that then died) was never answered: this decision
                // is the new run's, and did not wait across the downtime.
                let latest_start = step.attempt_log.last().map(|a| a.started_at.clone());
                let open = step.decisions.iter().rposition(|d| {
                    d.decided_at.is_none()
                        && match (&d.waiting_since, &latest_start) {
                            (Some(asked), Some(started)) => asked >= started,
                            _ => true,
                        }
                });
                let decision = match open {
                    Some(index) => &mut step.decisions[index],
                    None => {
                        step.decisions.push(Decision {
                            kind,
                            message: None,
                            waiting_since: None,
                            timeout_ms: None,
                            decided_at: None,
                            approved: None,
                            decided_by: None,
                        });
                        let last = step.decisions.len() - 1;
                        &mut step.decisions[last]
                    }
                };
                decision.decided_at = Some(e.ts.clone());
                if decision.message.is_none() {
                    decision.message = e.message.clone();
                }
                decision.approved = e.approved.or(match e.status {
                    Some(EventStatus::Approved) => Some(true),
                    Some(EventStatus::Rejected) => Some(false),
                    _ => None,
                });
                decision.decided_by = e.decided_by.clone();
                let (verdict, then) = match (decision.kind, decision.approved) {
                    (DecisionKind::Gate, Some(true)) => ("gate approved", ""),
                    (DecisionKind::Gate, Some(false)) => ("gate rejected", ""),
                    (DecisionKind::Confirmation, Some(true)) => {
                        ("confirmed completed", "; it is not run again")
                    }
                    (DecisionKind::Confirmation, Some(false)) => {
                        ("not confirmed as completed", "; it runs again")
                    }
                    (_, None) => ("decided", ""),
                };
                let by = decision
                    .decided_by
                    .as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default();
                let after = decision
                    .waiting_since
                    .as_deref()
                    .and_then(|w| between(w, &e.ts))
                    .map(|ms| format!(" after {}", format_duration(ms)))
                    .unwrap_or_default();
                let text = format!("{step_id}: {verdict}{by}{after}{then}");
                self.note(&e.ts, TimelineKind::Decided, Some(&step_id), text);
            }
            EventKind::StepFinished => {
                self.awaiting_confirmation.retain(|s| *s != step_id);
                let step = self.step(&step_id, e.phase);
                if let Some(open) = step.attempt_log.last_mut().filter(|a| a.ended_at.is_none()) {
                    open.ended_at = Some(e.ts.clone());
                    open.end = AttemptEnd::Finished;
                }
                step.status = StepStatus::of(e.status);
                step.finished_at = Some(e.ts.clone());
                step.duration_ms = e
                    .duration_ms
                    .or_else(|| step.started_at.as_deref().and_then(|s| between(s, &e.ts)));
                step.attempts = e.attempts;
                step.error = e.error.clone();
                step.reason = e.reason.clone();
                step.would_run = e.would_run.clone();
                let is_gate = step.decisions.iter().any(|d| d.kind == DecisionKind::Gate)
                    || e.outputs.as_ref().is_some_and(|o| {
                        o.contains_key("approved") && o.contains_key("decided_by")
                    });
                step.outputs = e
                    .outputs
                    .as_ref()
                    .map(|o| worth_reading(o, is_gate))
                    .unwrap_or_default();
                let mut text = format!("{step_id} {}", step.status.as_str());
                // A step settled by a resume confirmation did not run in
                // this engine: its zero duration would only mislead.
                let ran = step
                    .attempt_log
                    .last()
                    .is_none_or(|a| a.end == AttemptEnd::Finished);
                if let Some(ms) = step.duration_ms.filter(|_| ran) {
                    text.push_str(&format!(" in {}", format_duration(ms)));
                }
                if let Some(n) = step.attempts.filter(|&n| n > 1) {
                    text.push_str(&format!(" after {n} attempts"));
                }
                if let Some(would) = &step.would_run {
                    text.push_str(&format!(" (dry run: {})", crate::words::would(would)));
                }
                if let Some(reason) = &step.reason {
                    text.push_str(&format!(" ({reason})"));
                }
                if let Some(error) = &step.error {
                    text.push_str(&format!(": {}", first_line(error)));
                }
                let kind = match step.status {
                    StepStatus::Succeeded => TimelineKind::StepSucceeded,
                    StepStatus::Failed => TimelineKind::StepFailed,
                    _ => TimelineKind::StepCancelled,
                };
                self.note(&e.ts, kind, Some(&step_id), text);
            }
            EventKind::StepSkipped => {
                let step = self.step(&step_id, e.phase);
                step.status = StepStatus::Skipped;
                step.finished_at = Some(e.ts.clone());
                step.reason = e.reason.clone();
                let why = e
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.note(
                    &e.ts,
                    TimelineKind::StepSkipped,
                    Some(&step_id),
                    format!("{step_id} skipped{why}"),
                );
            }
            EventKind::RollbackStarted => {
                self.report.rollbacks.push(RollbackReport {
                    step: step_id.clone(),
                    status: "running".into(),
                    started_at: Some(e.ts.clone()),
                    finished_at: None,
                    duration_ms: None,
                    attempts: None,
                    error: None,
                    reason: None,
                    would_run: None,
                    outputs: Vec::new(),
                });
                self.note(
                    &e.ts,
                    TimelineKind::RollbackStarted,
                    Some(&step_id),
                    format!("rollback of {step_id} started"),
                );
            }
            EventKind::RollbackFinished => {
                let open = self.report.rollbacks.iter().rposition(|r| {
                    r.step == step_id && r.finished_at.is_none() && r.status == "running"
                });
                let index = match open {
                    Some(index) => index,
                    None => {
                        self.report.rollbacks.push(RollbackReport {
                            step: step_id.clone(),
                            status: String::new(),
                            started_at: None,
                            finished_at: None,
                            duration_ms: None,
                            attempts: None,
                            error: None,
                            reason: None,
                            would_run: None,
                            outputs: Vec::new(),
                        });
                        self.report.rollbacks.len() - 1
                    }
                };
                let rollback = &mut self.report.rollbacks[index];
                rollback.status = e
                    .status
                    .map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string());
                rollback.finished_at = Some(e.ts.clone());
                rollback.duration_ms = e.duration_ms;
                rollback.attempts = e.attempts;
                rollback.error = e.error.clone();
                rollback.reason = e.reason.clone();
                rollback.would_run = e.would_run.clone();
                rollback.outputs = e
                    .outputs
                    .as_ref()
                    .map(|o| worth_reading(o, false))
                    .unwrap_or_default();
                let mut text = format!("rollback of {step_id} {}", rollback.status);
                if let Some(ms) = rollback
                    .duration_ms
                    .filter(|_| rollback.started_at.is_some())
                {
                    text.push_str(&format!(" in {}", format_duration(ms)));
                }
                if let Some(would) = &rollback.would_run {
                    text.push_str(&format!(" (dry run: {})", crate::words::would(would)));
                }
                if let Some(reason) = &rollback.reason {
                    text.push_str(&format!(" ({reason})"));
                }
                if let Some(error) = &rollback.error {
                    text.push_str(&format!(": {}", first_line(error)));
                }
                self.note(&e.ts, TimelineKind::RollbackFinished, Some(&step_id), text);
                // A rollback that is a gate has a row of its own, made by its
                // gate events: it ends with the rollback, not `unknown`.
                let gate_id = format!("{step_id}.rollback");
                if let Some(gate) = self.report.steps.iter_mut().find(|s| s.id == gate_id) {
                    gate.status = StepStatus::of(e.status);
                    gate.started_at = gate
                        .decisions
                        .first()
                        .and_then(|d| d.waiting_since.clone())
                        .or_else(|| Some(e.ts.clone()));
                    gate.finished_at = Some(e.ts.clone());
                    gate.duration_ms = e.duration_ms;
                    gate.attempts = e.attempts;
                    gate.error = e.error.clone();
                }
            }
            EventKind::RunFinished => {
                self.finished = true;
                self.report.status = RunStatus::of(e.status);
                self.report.error = e.error.clone();
                self.report.ended_at = Some(e.ts.clone());
                if let Some(session) = self.report.sessions.last_mut() {
                    session.ended_at = Some(e.ts.clone());
                    session.end = SessionEnd::Finished;
                }
                let mut text = format!("run {}", self.report.status.as_str());
                if let Some(error) = &self.report.error {
                    text.push_str(&format!(": {}", first_line(error)));
                }
                self.note(&e.ts, TimelineKind::RunFinished, None, text);
            }
        }
        self.last_ts = Some(e.ts.clone());
    }

    fn decision_kind(&self, step: &str) -> DecisionKind {
        if self.awaiting_confirmation.iter().any(|s| s == step) {
            DecisionKind::Confirmation
        } else {
            DecisionKind::Gate
        }
    }

    fn run_started(&mut self, e: &Event) {
        let first = self.report.sessions.is_empty();
        if first {
            self.report.runbook = e.runbook.clone();
            self.report.file = e.file.clone();
            self.report.runbook_sha256 = e.runbook_sha256.clone();
            self.report.started_at = Some(e.ts.clone());
            self.report.dry_run = e.dry_run.unwrap_or(false);
            self.report.params = e.params.clone().unwrap_or_default();
        } else {
            // The previous engine's story ends at its last event.
            if !self.finished {
                let rolling_back = self.rollbacks_running();
                let running = self.stop_engine(SessionEnd::EngineStopped);
                let at = self.last_ts.clone().unwrap_or_else(|| e.ts.clone());
                let text = stopped_text(&running, &rolling_back, None);
                self.note(&at, TimelineKind::EngineStopped, None, text);
                self.awaiting_confirmation.extend(running);
            }
            self.finished = false;
            self.report.status = RunStatus::Unknown;
            self.report.error = None;
            self.report.ended_at = None;
        }
        let who = who(e.user.as_deref(), e.host.as_deref());
        let resumed = e.resumed.unwrap_or(false) || !first;
        self.report.sessions.push(Session {
            started_at: e.ts.clone(),
            user: e.user.clone(),
            host: e.host.clone(),
            resumed,
            note: e.reason.clone(),
            ended_at: None,
            end: SessionEnd::Running,
        });
        let text = if resumed {
            let note = e
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("run resumed by {who}{note}")
        } else {
            let dry = if self.report.dry_run {
                " (dry run)"
            } else {
                ""
            };
            format!("run started by {who}{dry}")
        };
        let kind = if resumed {
            TimelineKind::RunResumed
        } else {
            TimelineKind::RunStarted
        };
        self.note(&e.ts, kind, None, text);
    }

    /// Ends the current session without `run_finished`: its open attempts,
    /// decisions and rollbacks end with it. Returns the steps that were
    /// running.
    /// The main steps whose rollbacks had started and not finished.
    fn rollbacks_running(&self) -> Vec<String> {
        self.report
            .rollbacks
            .iter()
            .filter(|r| r.finished_at.is_none() && r.status == "running")
            .map(|r| r.step.clone())
            .collect()
    }

    fn stop_engine(&mut self, end: SessionEnd) -> Vec<String> {
        let at = self.last_ts.clone();
        if let Some(session) = self.report.sessions.last_mut() {
            session.ended_at = at.clone();
            session.end = end;
        }
        let (attempt_end, step_status, rollback_status) = match end {
            SessionEnd::Running => (AttemptEnd::Running, StepStatus::Running, "running"),
            SessionEnd::EngineStopped | SessionEnd::Finished => (
                AttemptEnd::EngineStopped,
                StepStatus::Interrupted,
                "interrupted",
            ),
        };
        let mut running = Vec::new();
        for step in &mut self.report.steps {
            let open = step
                .attempt_log
                .last_mut()
                .filter(|a| a.ended_at.is_none() && a.end == AttemptEnd::Running);
            let waiting = step.decisions.iter().any(|d| d.decided_at.is_none());
            if let Some(open) = open {
                if attempt_end != AttemptEnd::Running {
                    open.ended_at = at.clone();
                }
                open.end = attempt_end;
                step.status = step_status;
                running.push(step.id.clone());
            } else if waiting && step.finished_at.is_none() {
                // A confirmation that was never answered.
                step.status = step_status;
                running.push(step.id.clone());
            }
        }
        for rollback in &mut self.report.rollbacks {
            if rollback.finished_at.is_none() && rollback.status == "running" {
                rollback.status = rollback_status.into();
            }
        }
        running
    }

    fn finish(mut self, contents: &JournalContents, live: bool) -> Report {
        if !self.finished && !self.report.sessions.is_empty() {
            let end = if live {
                SessionEnd::Running
            } else {
                SessionEnd::EngineStopped
            };
            let rolling_back = self.rollbacks_running();
            let running = self.stop_engine(end);
            // A live run has not ended: when it will is unknown.
            self.report.ended_at = if live { None } else { self.last_ts.clone() };
            self.report.status = if live {
                RunStatus::Running
            } else {
                RunStatus::Stopped
            };
            if !live {
                let command = format!("runbook resume {}", self.report.run_id);
                if let Some(at) = self.last_ts.clone() {
                    let text = stopped_text(&running, &rolling_back, Some(&command));
                    self.note(&at, TimelineKind::EngineStopped, None, text);
                }
                self.report.resume_command = Some(command);
            }
        }
        if self.report.sessions.is_empty() && live {
            // The engine has not written its first event yet.
            self.report.status = RunStatus::Running;
        }
        self.report.duration_ms = match (&self.report.started_at, &self.report.ended_at) {
            (Some(start), Some(end)) => between(start, end),
            _ => None,
        };
        self.report.last_event_at = self.last_ts.clone();
        self.report.journal = JournalInfo {
            events: contents.events.len(),
            torn_line: contents.torn.as_ref().map(|t| TornInfo {
                line: t.line,
                bytes: t.bytes,
            }),
        };
        self.report
    }
}

fn stopped_text(
    running: &[String],
    rolling_back: &[String],
    resume_command: Option<&str>,
) -> String {
    let mut text = "engine stopped without finishing the run (last journaled event)".to_string();
    let mut then: Vec<String> = running.to_vec();
    then.extend(
        rolling_back
            .iter()
            .map(|step| format!("the rollback of {step}")),
    );
    if !then.is_empty() {
        text.push_str(&format!("; running then: {}", then.join(", ")));
    }
    // No backticks around the command: this text reaches the Markdown
    // timeline escaped, like all journal text, where they would show.
    if let Some(command) = resume_command {
        text.push_str(&format!("; to continue it: {command}"));
    }
    text
}

/// `user@host`, with whatever is known.
pub(crate) fn who(user: Option<&str>, host: Option<&str>) -> String {
    match (user, host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (Some(u), None) => u.to_string(),
        (None, Some(h)) => format!("?@{h}"),
        (None, None) => "unknown".to_string(),
    }
}

/// The first line of a message, for one-line contexts.
pub(crate) fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: &str, kind: EventKind, step: Option<&str>) -> Event {
        let mut e = Event::new(kind, "r1");
        e.ts = ts.to_string();
        e.step = step.map(str::to_string);
        e
    }

    /// Gate `g` decided at `ts`.
    fn gate_decided(ts: &str, approved: bool, by: &str) -> Event {
        let mut e = event(ts, EventKind::GateDecided, Some("g"));
        e.approved = Some(approved);
        e.decided_by = Some(by.into());
        e
    }

    fn contents(events: Vec<Event>) -> JournalContents {
        JournalContents { events, torn: None }
    }

    /// A gate asked by an engine that died, then approved in advance in
    /// the resumed run: two decisions, the first never answered, the
    /// second without a wait across the downtime.
    #[test]
    fn a_gate_asked_before_the_engine_died_is_not_the_one_decided_after_the_resume() {
        let mut waiting = event(
            "2026-11-26T10:00:01.000Z",
            EventKind::GateWaiting,
            Some("g"),
        );
        waiting.message = Some("go?".into());
        let mut resumed = event("2026-11-26T10:05:00.000Z", EventKind::RunStarted, None);
        resumed.resumed = Some(true);
        let decided = gate_decided("2026-11-26T10:05:00.200Z", true, "--approve");
        let report = build_report(
            "r1",
            &contents(vec![
                event("2026-11-26T10:00:00.000Z", EventKind::RunStarted, None),
                event(
                    "2026-11-26T10:00:00.500Z",
                    EventKind::StepStarted,
                    Some("g"),
                ),
                waiting,
                resumed,
                event(
                    "2026-11-26T10:05:00.100Z",
                    EventKind::StepStarted,
                    Some("g"),
                ),
                decided,
            ]),
            false,
        );
        let decisions = &report.steps[0].decisions;
        assert_eq!(decisions.len(), 2, "{decisions:?}");
        assert_eq!(decisions[0].decided_at, None);
        assert_eq!(decisions[1].waiting_since, None);
        assert_eq!(decisions[1].approved, Some(true));
    }

    #[test]
    fn a_condition_gate_is_a_decision_without_a_wait() {
        let decided = gate_decided("2026-11-26T10:00:01.000Z", false, "condition");
        let mut finished = event(
            "2026-11-26T10:00:01.000Z",
            EventKind::StepFinished,
            Some("g"),
        );
        finished.status = Some(EventStatus::Failed);
        let report = build_report(
            "r1",
            &contents(vec![
                event("2026-11-26T10:00:00.000Z", EventKind::RunStarted, None),
                event(
                    "2026-11-26T10:00:00.500Z",
                    EventKind::StepStarted,
                    Some("g"),
                ),
                decided,
                finished,
            ]),
            false,
        );
        let gate = &report.steps[0];
        assert_eq!(gate.decisions.len(), 1);
        assert_eq!(gate.decisions[0].kind, DecisionKind::Gate);
        assert_eq!(gate.decisions[0].waiting_since, None);
        assert_eq!(gate.decisions[0].approved, Some(false));
        assert_eq!(
            report.status,
            RunStatus::Stopped,
            "no run_finished, no engine"
        );
    }

    #[test]
    fn a_rollback_gate_ends_with_its_rollback() {
        let mut waiting = event(
            "2026-11-26T10:00:02.000Z",
            EventKind::GateWaiting,
            Some("change.rollback"),
        );
        waiting.phase = Some(Phase::Rollback);
        let mut decided = event(
            "2026-11-26T10:00:05.000Z",
            EventKind::GateDecided,
            Some("change.rollback"),
        );
        decided.phase = Some(Phase::Rollback);
        decided.approved = Some(false);
        decided.decided_by = Some("alice (runbook approve)".into());
        let mut finished = event(
            "2026-11-26T10:00:05.000Z",
            EventKind::RollbackFinished,
            Some("change"),
        );
        finished.status = Some(EventStatus::Failed);
        finished.duration_ms = Some(3000);
        let report = build_report(
            "r1",
            &contents(vec![
                event("2026-11-26T10:00:00.000Z", EventKind::RunStarted, None),
                event(
                    "2026-11-26T10:00:02.000Z",
                    EventKind::RollbackStarted,
                    Some("change"),
                ),
                waiting,
                decided,
                finished,
            ]),
            false,
        );
        let gate = report
            .steps
            .iter()
            .find(|s| s.id == "change.rollback")
            .expect("the gate's row");
        assert_eq!(gate.status, StepStatus::Failed);
        assert_eq!(gate.phase.as_deref(), Some("rollback"));
        assert_eq!(gate.started_at.as_deref(), Some("2026-11-26T10:00:02.000Z"));
        assert_eq!(gate.duration_ms, Some(3000));
        assert_eq!(gate.decisions[0].approved, Some(false));
        assert_eq!(report.rollbacks[0].status, "failed");
    }

    #[test]
    fn an_empty_journal_is_unknown_or_running() {
        assert_eq!(
            build_report("r1", &contents(vec![]), false).status,
            RunStatus::Unknown
        );
        assert_eq!(
            build_report("r1", &contents(vec![]), true).status,
            RunStatus::Running
        );
    }

    #[test]
    fn unparseable_timestamps_do_not_break_the_report() {
        let report = build_report(
            "r1",
            &contents(vec![
                event("yesterday", EventKind::RunStarted, None),
                event("later", EventKind::StepStarted, Some("a")),
            ]),
            false,
        );
        assert_eq!(report.duration_ms, None);
        assert_eq!(report.timeline[1].offset_ms, None);
        assert!(crate::render_html(&report).contains("<svg"));
    }
}
