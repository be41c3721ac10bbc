//! One step's life in its own task: attempts, the per-attempt timeout,
//! retry waits, and the wait for an executor to clean up after it was told
//! to stop.
//!
//! The runner never decides what a failure means for the run; it reports
//! how the step ended and the dispatcher takes it from there.

use crate::backoff::Delays;
use crate::redact::Redactor;
use crate::step::{
    Approvals, Backlog, Decision, GateRequest, LiveBudget, Outputs, Question, StepContext,
    StepExecutor, StepMessage, StepOutcome,
};
use crate::template::Templates;
use async_trait::async_trait;
use runbook_model::{Retry, Step, StepKind};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What every job of a run shares.
pub(crate) struct Shared {
    pub(crate) run_id: String,
    pub(crate) dry_run: bool,
    pub(crate) templates: Arc<Templates>,
    pub(crate) redactor: Redactor,
    pub(crate) run_dir: PathBuf,
    pub(crate) approvals: Arc<dyn Approvals>,
    pub(crate) messages: mpsc::UnboundedSender<StepMessage>,
    pub(crate) internal: mpsc::UnboundedSender<Internal>,
    pub(crate) pending: Arc<AtomicUsize>,
}

/// Which record a job belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum JobKey {
    /// A step of `steps`, `on_failure` or `finally`, by global index.
    Step(usize),
    /// The rollback of the main step with this index.
    Rollback(usize),
}

/// What to call on the executor.
pub(crate) enum JobMode {
    /// `run` on the step.
    Run,
    /// `rollback_auto` on the step, with its outputs.
    RollbackAuto(Outputs),
    /// Ask whether the step, interrupted by the engine's death, completed
    /// (`runbook resume`, `idempotent: false`). Succeeds with `approved`
    /// and `decided_by`; fails when nobody answers in time.
    ConfirmCompleted,
}

/// Everything a step task needs; owned, so the task is `'static`.
pub(crate) struct Job {
    pub(crate) key: JobKey,
    /// The id the step sees (`X`, or `X.rollback`).
    pub(crate) ctx_id: String,
    pub(crate) step: Arc<Step>,
    pub(crate) mode: JobMode,
    pub(crate) executor: Arc<dyn StepExecutor>,
    pub(crate) retry: Retry,
    pub(crate) timeout: Duration,
    /// How long to wait for the executor to return once told to stop.
    pub(crate) stop_grace: Duration,
    pub(crate) context: Arc<Value>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) token: CancellationToken,
    pub(crate) budget: Arc<LiveBudget>,
    pub(crate) shared: Arc<Shared>,
}

/// Messages from step tasks (and the gate wrapper) to the dispatcher.
pub(crate) enum Internal {
    AttemptStarted {
        key: JobKey,
        attempt: u32,
        reason: Option<String>,
    },
    AttemptFailed {
        key: JobKey,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    GateWaiting(GateRequest),
    /// A step's last attempt ran out of time. The step has failed (spec
    /// section 3.4) although its process may take its grace to stop: the
    /// run stops starting steps now, not when the process is gone.
    LastAttemptTimedOut {
        key: JobKey,
    },
    /// A gate's rendered message, whether anyone is asked or not: it goes
    /// with the gate's decision (`gate_decided`).
    GateAsked(GateRequest),
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Succeeded,
    Failed,
    /// Stopped because the run was stopping (not a timeout).
    Cancelled,
}

/// A finished job.
pub(crate) struct JobResult {
    pub(crate) key: JobKey,
    pub(crate) ended: Ended,
    pub(crate) attempts: u32,
    pub(crate) outputs: Outputs,
    pub(crate) error: Option<String>,
    pub(crate) would_run: Option<String>,
}

enum Attempt {
    Succeeded(Outputs),
    WouldRun(String),
    Failed {
        error: String,
        outputs: Outputs,
        /// No other attempt could do better (see `StepFailure::permanent`).
        permanent: bool,
    },
    Cancelled {
        detail: Option<String>,
        outputs: Outputs,
    },
}

/// Runs every attempt of `job` until one succeeds, the attempts run out, or
/// the job's token is cancelled.
pub(crate) async fn run_job(job: Job) -> JobResult {
    let mut delays = Delays::new(&job.retry);
    let mut attempt = 0;
    let mut reason = None;
    loop {
        attempt += 1;
        // The dispatcher reports the first attempt itself when it starts
        // the job, so that starts appear in the order steps were started.
        if attempt > 1 {
            let _ = job.shared.internal.send(Internal::AttemptStarted {
                key: job.key,
                attempt,
                reason: reason.take(),
            });
        }
        let result = |ended, outputs, error, would_run| JobResult {
            key: job.key,
            ended,
            attempts: attempt,
            outputs,
            error,
            would_run,
        };
        let last = delays.is_exhausted();
        match run_attempt(&job, attempt, last).await {
            Attempt::Succeeded(outputs) => return result(Ended::Succeeded, outputs, None, None),
            Attempt::WouldRun(text) => {
                let outputs = would_run_outputs(&job.step);
                return result(Ended::Succeeded, outputs, None, Some(text));
            }
            Attempt::Cancelled { detail, outputs } => {
                return result(Ended::Cancelled, outputs, detail, None);
            }
            Attempt::Failed {
                error,
                outputs,
                permanent,
            } => {
                let Some(delay) = delays.next().filter(|_| !permanent) else {
                    return result(Ended::Failed, outputs, Some(error), None);
                };
                let _ = job.shared.internal.send(Internal::AttemptFailed {
                    key: job.key,
                    attempt,
                    error: error.clone(),
                    delay,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = job.token.cancelled() => {
                        // The attempts' failures are reported to the
                        // terminal only; the journal keeps the last one.
                        let detail = format!("while waiting to retry; attempt {attempt} failed: {error}");
                        return result(Ended::Cancelled, outputs, Some(detail), None);
                    }
                }
                reason = Some(format!("attempt {attempt} failed: {error}"));
            }
        }
    }
}

/// Under `--dry-run` a step that did not run still gets every output name it
/// declares (as null), so the templates of its dependents render and the
/// whole plan is walked.
pub(crate) fn would_run_outputs(step: &Step) -> Outputs {
    step.kind
        .output_names()
        .iter()
        .map(|name| (name.to_string(), Value::Null))
        .collect()
}

enum Stop {
    TimedOut,
    Cancelled,
}

async fn run_attempt(job: &Job, attempt: u32, last: bool) -> Attempt {
    let shared = &job.shared;
    let attempt_token = job.token.child_token();
    let ctx = StepContext {
        step_id: job.ctx_id.clone(),
        attempt,
        run_id: shared.run_id.clone(),
        dry_run: shared.dry_run,
        timeout: job.timeout,
        context: job.context.clone(),
        env: job.env.clone(),
        templates: shared.templates.clone(),
        redactor: shared.redactor.clone(),
        cancel: attempt_token.clone(),
        messages: shared.messages.clone(),
        backlog: Some(Backlog {
            pending: shared.pending.clone(),
            budget: job.budget.clone(),
        }),
        run_dir: shared.run_dir.clone(),
        approvals: shared.approvals.clone(),
        settled: Default::default(),
    };
    let is_gate =
        matches!(job.step.kind, StepKind::Gate(_)) || matches!(job.mode, JobMode::ConfirmCompleted);
    let work = async {
        match &job.mode {
            JobMode::Run => job.executor.run(&job.step, &ctx).await,
            JobMode::RollbackAuto(outputs) => {
                job.executor.rollback_auto(&job.step, outputs, &ctx).await
            }
            JobMode::ConfirmCompleted => confirm_completed(&ctx).await,
        }
    };
    tokio::pin!(work);
    // A gate applies its own `on_timeout` when its time is up; the engine's
    // timer runs a moment longer so that the gate's decision, not a bare
    // timeout, is what gets reported.
    // Saturating: `timeout: 18446744073709551615s` is a valid duration.
    let timer = job.timeout.saturating_add(if is_gate {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    });
    // Biased, cancellation first: an executor that returns because it saw
    // the cancellation must be reported as cancelled, not as failed.
    let mut stop = tokio::select! {
        biased;
        () = job.token.cancelled() => Stop::Cancelled,
        outcome = &mut work => {
            // On a worker thread the token can be cancelled between the
            // check above and the executor's poll, which then returns
            // because it saw the cancellation: the same outcome as had the
            // check seen it first.
            if job.token.is_cancelled() {
                return cancelled(outcome);
            }
            return finished(outcome);
        }
        () = tokio::time::sleep(timer) => Stop::TimedOut,
    };
    if let Stop::TimedOut = stop
        && ctx.is_settled()
    {
        // Decided in time; only its output was still being collected
        // (which the executor bounds itself).
        let outcome = tokio::select! {
            biased;
            () = job.token.cancelled() => None,
            outcome = &mut work => Some(outcome),
        };
        match outcome {
            Some(outcome) => return finished(outcome),
            None => stop = Stop::Cancelled,
        }
    }
    if matches!(stop, Stop::TimedOut) && last && !is_gate {
        let _ = job
            .shared
            .internal
            .send(Internal::LastAttemptTimedOut { key: job.key });
    }
    attempt_token.cancel();
    // The executor now stops its work (a shell step signals its process
    // group, waits out its grace, then kills it). Waiting for that keeps
    // children from outliving the run; past the grace the future is dropped,
    // whose guards kill what is left.
    let late = tokio::time::timeout(job.stop_grace, &mut work).await;
    let abandoned = format!(
        "it did not stop within {} and was abandoned",
        format_duration(job.stop_grace)
    );
    match stop {
        Stop::TimedOut => {
            let base = format!("timed out after {}", format_duration(job.timeout));
            match late {
                // A gate's timeout is its `on_timeout` decision, which the
                // gate reports itself.
                Ok(outcome) if is_gate => finished(outcome),
                // A timeout is worth another attempt, whatever the step
                // said as it stopped.
                Ok(StepOutcome::Failed(failure)) => Attempt::Failed {
                    error: with_detail(base, &failure.message),
                    outputs: failure.outputs,
                    permanent: false,
                },
                Ok(StepOutcome::Succeeded(outputs)) => Attempt::Failed {
                    error: base,
                    outputs,
                    permanent: false,
                },
                Ok(StepOutcome::WouldRun(_)) => Attempt::Failed {
                    error: base,
                    outputs: Outputs::new(),
                    permanent: false,
                },
                Err(_) => Attempt::Failed {
                    error: format!("{base}; {abandoned}"),
                    outputs: Outputs::new(),
                    permanent: false,
                },
            }
        }
        Stop::Cancelled => match late {
            Ok(outcome) => cancelled(outcome),
            Err(_) => Attempt::Cancelled {
                detail: Some(abandoned),
                outputs: Outputs::new(),
            },
        },
    }
}

/// The attempt of an executor that returned after its step was told to
/// stop. Work that completed although it was asked to stop did happen: it
/// is recorded (and so rolled back) as succeeded; a failure is the stop.
fn cancelled(outcome: StepOutcome) -> Attempt {
    match outcome {
        StepOutcome::Succeeded(outputs) => Attempt::Succeeded(outputs),
        StepOutcome::WouldRun(text) => Attempt::WouldRun(text),
        // Decided from what the step was given (a template that does not
        // render), not by the cancellation it may not even have seen.
        StepOutcome::Failed(failure) if failure.permanent => finished(StepOutcome::Failed(failure)),
        StepOutcome::Failed(failure) => Attempt::Cancelled {
            detail: (!failure.message.is_empty()).then_some(failure.message),
            outputs: failure.outputs,
        },
    }
}

/// Asks whether the step of `ctx` completed before the engine stopped.
async fn confirm_completed(ctx: &StepContext) -> StepOutcome {
    let request = GateRequest {
        run_id: ctx.run_id().to_string(),
        gate: ctx.step_id().to_string(),
        message: format!(
            "step `{}` is marked `idempotent: false` and was running when the engine stopped. \
             Did it complete? Approve if it did (it is not run again); reject if it did not (it runs again).",
            ctx.step_id()
        ),
        timeout: ctx.timeout(),
        question: Question::Completed,
    };
    let waiting = ctx.cancelled().child_token();
    let mut timed_out = false;
    let decision = tokio::select! {
        decision = ctx.approvals().decide(&request, &waiting) => decision,
        () = tokio::time::sleep(ctx.timeout()) => {
            waiting.cancel();
            timed_out = true;
            None
        }
    };
    match decision {
        Some(decision) => {
            let mut outputs = Outputs::new();
            outputs.insert("approved".into(), Value::Bool(decision.approved));
            outputs.insert("decided_by".into(), Value::String(decision.decided_by));
            StepOutcome::Succeeded(outputs)
        }
        None if !timed_out => StepOutcome::Failed(crate::step::StepFailure::new(
            "stopped before anyone said whether it completed",
        )),
        None => StepOutcome::Failed(crate::step::StepFailure::new(format!(
            "nobody said within {} whether it completed before the engine stopped, so it was neither run again nor assumed done",
            format_duration(ctx.timeout())
        ))),
    }
}

fn finished(outcome: StepOutcome) -> Attempt {
    match outcome {
        StepOutcome::Succeeded(outputs) => Attempt::Succeeded(outputs),
        StepOutcome::WouldRun(text) => Attempt::WouldRun(text),
        StepOutcome::Failed(failure) => Attempt::Failed {
            error: failure.message,
            outputs: failure.outputs,
            permanent: failure.permanent,
        },
    }
}

fn with_detail(base: String, detail: &str) -> String {
    if detail.is_empty() {
        base
    } else {
        format!("{base} ({detail})")
    }
}

/// A duration the way runbooks write them, for messages: `250ms`, `1.5s`,
/// `30s`, `2m`, `1m30s`, `1h`. Whole seconds read back with
/// `parse_duration`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if !ms.is_multiple_of(1000) {
        if ms < 1000 {
            return format!("{ms}ms");
        }
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Wraps the run's [`Approvals`] so that the dispatcher hears when a gate
/// starts waiting (the `gate_waiting` event), whichever gate implementation
/// asks.
/// The message is redacted on the way: whatever shows it (a prompt, the
/// waiting file that `runbook approve` lists) never sees a secret.
pub(crate) struct ReportingApprovals {
    pub(crate) inner: Arc<dyn Approvals>,
    pub(crate) internal: mpsc::UnboundedSender<Internal>,
    pub(crate) redactor: Redactor,
}

#[async_trait]
impl Approvals for ReportingApprovals {
    async fn decide(&self, gate: &GateRequest, cancel: &CancellationToken) -> Option<Decision> {
        let mut request = gate.clone();
        request.message = self.redactor.redact(&request.message);
        let _ = self.internal.send(Internal::GateAsked(request.clone()));
        let announce = || {
            let _ = self.internal.send(Internal::GateWaiting(request.clone()));
        };
        self.inner
            .decide_announced(&request, cancel, &announce)
            .await
    }

    fn decided_alone(&self, gate: &GateRequest) {
        let mut request = gate.clone();
        request.message = self.redactor.redact(&request.message);
        let _ = self.internal.send(Internal::GateAsked(request));
    }
}

#[cfg(test)]
mod tests {
    use super::{Attempt, cancelled, format_duration};
    use crate::step::{StepFailure, StepOutcome};
    use std::time::Duration;

    /// Two steps failing their own templates at once: whichever ends second
    /// finds the run stopping, and still failed by itself.
    #[test]
    fn a_permanent_failure_seen_after_a_cancellation_is_a_failure() {
        let own = StepOutcome::Failed(StepFailure::permanent("template in `run`: no"));
        assert!(matches!(
            cancelled(own),
            Attempt::Failed { ref error, permanent: true, .. } if error == "template in `run`: no"
        ));
        let stopped = StepOutcome::Failed(StepFailure::new("stopped with SIGTERM"));
        assert!(matches!(cancelled(stopped), Attempt::Cancelled { .. }));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
