//! Picking a run up where its engine stopped: what the journal says already
//! happened, read into a [`ResumePoint`] that [`crate::RunOptions::resume`]
//! hands to the dispatcher.
//!
//! Choices where the spec is silent:
//!
//! - A step is finished when its last record is a `step_finished` that
//!   `succeeded` or `failed`, or a `step_skipped`. Its status, outputs,
//!   error and attempts are restored for templates and are not reported
//!   again.
//! - A step that started and never finished was interrupted by the engine's
//!   death. So was a `cancelled` step, and a step skipped only because the
//!   run was stopping: all three run again (after a person's answer, for a
//!   step marked `idempotent: false`).
//! - Once the journal shows cleanup (a rollback, an `on_failure` or a
//!   `finally` step), the main steps are over: the resumed run finishes the
//!   cleanup and starts no main step. A rollback that finished is not run
//!   again; one that started and never finished is.
//! - A run that was stopping (interrupted, or past its `timeout`) when its
//!   engine died is still stopping: its main steps are over, the resumed
//!   run finishes its cleanup. The journal shows a stop only once a step
//!   ends because of it, so the engine also leaves [`STOPPING_FILE`] in the
//!   run directory the moment it starts stopping.
//! - A journal that ends with `run_finished` cannot be resumed.

use crate::event::{Event, EventKind, EventStatus};
use crate::run::{RollbackRecord, RollbackStatus, StepStatus};
use crate::step::Outputs;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The skip reason of steps that never started because the run was
/// interrupted; such skips are undone by a resume.
pub(crate) const SKIPPED_BY_INTERRUPT: &str = "run stopped: interrupted";
/// The skip reason after a second interrupt.
pub(crate) const SKIPPED_BY_ABANDON: &str = "abandoned by a second interrupt";

/// The file in a run's directory saying why its engine began to stop the
/// main steps (`interrupted`, `deadline exceeded`, `step \`x\` failed`),
/// written when it begins: an engine killed in the grace of its last
/// running step journals nothing of an interrupt.
pub(crate) const STOPPING_FILE: &str = "stopping";

/// What a run's journal says happened before its engine stopped.
#[derive(Clone, Debug, Default)]
pub struct ResumePoint {
    /// The `run_started` event that began the run.
    pub first_start: Option<Event>,
    /// Why the journal needed repair, for the resumed `run_started`
    /// (`reason`); set by the caller.
    pub note: Option<String>,
    pub(crate) finished: HashMap<String, Recorded>,
    /// Steps whose last record is `cancelled`, or `skipped` because of the
    /// interrupt: run again, unless cleanup had begun (then they stay as
    /// recorded, and are not reported twice).
    pub(crate) cancelled: HashMap<String, Recorded>,
    /// The last attempt number each step started.
    pub(crate) attempts_started: HashMap<String, u32>,
    /// Steps whose rollback had started and not finished.
    pub(crate) rollbacks_running: BTreeSet<String>,
    pub(crate) interrupted: BTreeSet<String>,
    pub(crate) rollbacks: HashMap<String, RollbackRecord>,
    pub(crate) cleanup_began: bool,
    pub(crate) was_interrupted: bool,
    /// Why the run was stopping, from [`STOPPING_FILE`].
    pub(crate) stopping: Option<String>,
}

/// A finished step as the journal recorded it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) status: StepStatus,
    pub(crate) attempts: u32,
    pub(crate) duration: Duration,
    pub(crate) outputs: Outputs,
    /// Outputs left out of `outputs`: a secret was masked in them.
    pub(crate) masked: Vec<String>,
    pub(crate) error: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) would_run: Option<String>,
    /// Position in the journal (rollbacks run in reverse completion order).
    pub(crate) seq: u64,
}

/// Why a journal cannot be resumed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    /// No `run_started`: not a run's journal, or one cut before its first
    /// event.
    #[error("the journal has no `run_started` event, so there is nothing to resume")]
    NotStarted,
    /// The run ended.
    #[error("run {run_id} already finished ({status}); there is nothing to resume")]
    AlreadyFinished {
        /// The run.
        run_id: String,
        /// How it ended.
        status: String,
    },
}

impl ResumePoint {
    /// Reads the events of a journal, in order.
    pub fn from_events(events: &[Event]) -> Result<ResumePoint, ResumeError> {
        let mut point = ResumePoint::default();
        let mut last_finish = None;
        for (seq, event) in (1u64..).zip(events) {
            match event.event {
                EventKind::RunStarted => {
                    if point.first_start.is_none() {
                        point.first_start = Some(event.clone());
                    }
                    last_finish = None;
                }
                EventKind::RunFinished => last_finish = Some(event),
                EventKind::StepStarted => {
                    let Some(step) = &event.step else { continue };
                    if is_cleanup(event) {
                        point.cleanup_began = true;
                    }
                    point.finished.remove(step);
                    point.cancelled.remove(step);
                    point.interrupted.insert(step.clone());
                    point
                        .attempts_started
                        .insert(step.clone(), event.attempt.unwrap_or(1));
                }
                EventKind::StepFinished | EventKind::StepSkipped => {
                    let Some(step) = &event.step else { continue };
                    if is_cleanup(event) {
                        point.cleanup_began = true;
                    }
                    let status = match (event.event, event.status) {
                        (EventKind::StepSkipped, _) => StepStatus::Skipped,
                        (_, Some(EventStatus::Succeeded)) => StepStatus::Succeeded,
                        (_, Some(EventStatus::Failed)) => StepStatus::Failed,
                        _ => StepStatus::Cancelled,
                    };
                    let stopped_by_interrupt = status == StepStatus::Cancelled
                        || matches!(
                            event.reason.as_deref(),
                            Some(SKIPPED_BY_INTERRUPT | SKIPPED_BY_ABANDON)
                        );
                    let record = Recorded {
                        status,
                        attempts: event.attempts.unwrap_or(0),
                        duration: Duration::from_millis(event.duration_ms.unwrap_or(0)),
                        outputs: restorable_outputs(event),
                        masked: event.masked_outputs.clone().unwrap_or_default(),
                        error: event.error.clone(),
                        reason: event.reason.clone(),
                        would_run: event.would_run.clone(),
                        seq,
                    };
                    point.finished.remove(step);
                    point.cancelled.remove(step);
                    if stopped_by_interrupt {
                        point.was_interrupted |= event.phase == Some(runbook_model::Phase::Main);
                        if status == StepStatus::Cancelled {
                            point.interrupted.insert(step.clone());
                        }
                        point.cancelled.insert(step.clone(), record);
                        continue;
                    }
                    point.interrupted.remove(step);
                    point.finished.insert(step.clone(), record);
                }
                EventKind::RollbackStarted => {
                    point.cleanup_began = true;
                    if let Some(step) = &event.step {
                        point.rollbacks_running.insert(step.clone());
                    }
                }
                EventKind::RollbackFinished => {
                    point.cleanup_began = true;
                    let Some(step) = &event.step else { continue };
                    point.rollbacks_running.remove(step);
                    let status = match event.status {
                        Some(EventStatus::Succeeded) => RollbackStatus::Succeeded,
                        Some(EventStatus::Failed) => RollbackStatus::Failed,
                        Some(EventStatus::Skipped) => RollbackStatus::Skipped,
                        _ => RollbackStatus::Cancelled,
                    };
                    // A rollback stopped part-way did not finish its work.
                    if status == RollbackStatus::Cancelled {
                        point.rollbacks.remove(step);
                        continue;
                    }
                    point.rollbacks.insert(
                        step.clone(),
                        RollbackRecord {
                            step: step.clone(),
                            status,
                            attempts: event.attempts.unwrap_or(0),
                            duration: Duration::from_millis(event.duration_ms.unwrap_or(0)),
                            error: event.error.clone(),
                            reason: event.reason.clone(),
                            would_run: event.would_run.clone(),
                        },
                    );
                }
                EventKind::GateWaiting | EventKind::GateDecided => {}
            }
        }
        let Some(first) = &point.first_start else {
            return Err(ResumeError::NotStarted);
        };
        if let Some(finish) = last_finish {
            return Err(ResumeError::AlreadyFinished {
                run_id: first.run_id.clone(),
                status: finish
                    .status
                    .map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string()),
            });
        }
        Ok(point)
    }

    /// Reads the `stopping` file of the run in `run_dir`, left there if its
    /// engine began to stop: the resumed run then continues the stop.
    pub fn read_stopping(&mut self, run_dir: &std::path::Path) {
        self.stopping = std::fs::read_to_string(run_dir.join(STOPPING_FILE))
            .ok()
            .map(|text| text.trim().to_string())
            .filter(|why| !why.is_empty());
    }

    /// Steps that were running when the engine stopped, by id.
    pub fn interrupted_steps(&self) -> impl Iterator<Item = &str> {
        self.interrupted.iter().map(String::as_str)
    }

    /// Why the run was stopping when its engine died, if it was.
    pub fn stopping(&self) -> Option<&str> {
        self.stopping.as_deref()
    }

    /// Steps whose rollback was running when the engine stopped.
    pub fn interrupted_rollbacks(&self) -> impl Iterator<Item = &str> {
        self.rollbacks_running.iter().map(String::as_str)
    }

    /// Records that `step` had started although the journal does not say
    /// so: its processes outlived the engine, and the journal's last line,
    /// its `step_started`, was torn or never reached the disk. The step is
    /// then treated as interrupted (an `idempotent: false` one is asked
    /// about, not run again blindly). A step the journal records as
    /// finished stays finished.
    pub fn started_unrecorded(&mut self, step: &str) {
        if self.finished.contains_key(step) || self.interrupted.contains(step) {
            return;
        }
        self.cancelled.remove(step);
        self.interrupted.insert(step.to_string());
        self.attempts_started.entry(step.to_string()).or_insert(1);
    }

    /// How many steps the journal records as finished.
    pub fn finished_steps(&self) -> usize {
        self.finished.len()
    }
}

fn is_cleanup(event: &Event) -> bool {
    matches!(
        event.phase,
        Some(runbook_model::Phase::OnFailure | runbook_model::Phase::Finally)
    )
}

/// A finished step's outputs as the journal has them, less those in which
/// a secret was masked: `***` handed to a later step's command in place of
/// the real value would run it with the wrong argument, where a missing
/// output fails the template and says which one.
fn restorable_outputs(event: &Event) -> Outputs {
    let mut outputs = event.outputs.clone().unwrap_or_default();
    for name in event.masked_outputs.iter().flatten() {
        outputs.shift_remove(name);
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, step: Option<&str>, status: Option<EventStatus>) -> Event {
        let mut event = Event::new(kind, "r1");
        event.step = step.map(str::to_string);
        event.phase = step.map(|_| runbook_model::Phase::Main);
        event.status = status;
        event
    }

    #[test]
    fn finished_steps_are_kept_and_running_ones_are_interrupted() {
        let events = [
            event(EventKind::RunStarted, None, None),
            event(EventKind::StepStarted, Some("a"), None),
            event(
                EventKind::StepFinished,
                Some("a"),
                Some(EventStatus::Succeeded),
            ),
            event(EventKind::StepStarted, Some("b"), None),
            event(EventKind::StepStarted, Some("c"), None),
            event(
                EventKind::StepFinished,
                Some("c"),
                Some(EventStatus::Cancelled),
            ),
        ];
        let point = ResumePoint::from_events(&events).expect("resumable");
        assert_eq!(point.finished_steps(), 1);
        assert_eq!(point.interrupted_steps().collect::<Vec<_>>(), ["b", "c"]);
        assert!(!point.cleanup_began);
    }

    #[test]
    fn a_finished_run_or_an_empty_journal_cannot_be_resumed() {
        assert_eq!(
            ResumePoint::from_events(&[]).expect_err("empty"),
            ResumeError::NotStarted
        );
        let events = [
            event(EventKind::RunStarted, None, None),
            event(EventKind::RunFinished, None, Some(EventStatus::Failed)),
        ];
        assert!(matches!(
            ResumePoint::from_events(&events),
            Err(ResumeError::AlreadyFinished { status, .. }) if status == "failed"
        ));
    }

    #[test]
    fn rollbacks_that_finished_are_not_run_again() {
        let mut started = event(EventKind::RollbackStarted, Some("a"), None);
        started.phase = Some(runbook_model::Phase::Rollback);
        let mut done = event(
            EventKind::RollbackFinished,
            Some("a"),
            Some(EventStatus::Succeeded),
        );
        done.phase = Some(runbook_model::Phase::Rollback);
        let events = [event(EventKind::RunStarted, None, None), started, done];
        let point = ResumePoint::from_events(&events).expect("resumable");
        assert!(point.cleanup_began);
        assert!(point.rollbacks.contains_key("a"));
    }
}
