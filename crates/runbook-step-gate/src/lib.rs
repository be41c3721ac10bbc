//! `type: gate`: a step that waits for a decision.
//!
//! With a `condition`, the gate decides by itself (`true` approves, `false`
//! rejects). Without one it asks [`StepContext::approvals`]; in a real run
//! that is a [`FileApprovals`], which combines `--approve ID`,
//! `--approve-all`, `runbook approve RUN_ID GATE_ID [--reject]` from another
//! shell (the [`approval_file`] protocol) and an optional terminal prompt.
//!
//! A rejected gate is a failed step. Outputs: `approved` (bool),
//! `decided_by` (`condition`, `--approve`, `--approve-all`, `timeout`, or
//! who answered, such as `alice (runbook approve)`) and `decided_at`
//! (RFC 3339).
//!
//! Timeout versus cancellation: the gate keeps its own timer of
//! `ctx.timeout()` (the engine's timer for a gate runs a moment longer, so
//! that the gate's `on_timeout` decision is what gets reported). When its
//! timer fires, `on_timeout` applies. When `ctx.cancelled()` fires first,
//! however close to the timeout, the run was cancelled and the gate fails
//! without a decision: a Ctrl-C in a gate's last second must not approve it
//! by `on_timeout: approve`.

pub mod approval_file;
mod approvals;

pub use approval_file::{
    ApprovalError, DecisionRecord, POLL_INTERVAL, WaitingGate, WaitingGuard, approver_name,
    gates_dir, mark_waiting, read_decision, wait_for_decision, waiting_gates, write_decision,
};
pub use approvals::{FileApprovals, Prompt, WarningSink};

use async_trait::async_trait;
use runbook_engine::{
    GateRequest, Outputs, Question, StepContext, StepExecutor, StepFailure, StepOutcome,
};
use runbook_model::{GateStep, OnTimeout, Step, StepKind};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `type: gate` steps. Stateless; one instance serves every step.
#[derive(Clone, Copy, Debug, Default)]
pub struct GateExecutor;

impl GateExecutor {
    /// The executor.
    pub fn new() -> Self {
        GateExecutor
    }
}

#[async_trait]
impl StepExecutor for GateExecutor {
    fn kind(&self) -> &'static str {
        "gate"
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        let StepKind::Gate(gate) = &step.kind else {
            return StepOutcome::Failed(StepFailure::new(format!(
                "step `{}` is a `{}` step, not `gate`",
                step.id.value,
                step.kind.type_name()
            )));
        };
        match run_gate(gate, ctx).await {
            Ok(outcome) => outcome,
            Err(failure) => StepOutcome::Failed(failure),
        }
    }
}

async fn run_gate(gate: &GateStep, ctx: &StepContext) -> Result<StepOutcome, StepFailure> {
    let message = ctx.render("message", &gate.message)?;
    if let Some(condition) = &gate.condition {
        // A condition only reads the run's state, so it is evaluated under
        // --dry-run too.
        let approved = ctx.render_condition("condition", condition)?;
        ctx.approvals().decided_alone(&GateRequest {
            run_id: ctx.run_id().to_string(),
            gate: ctx.step_id().to_string(),
            message,
            timeout: ctx.timeout(),
            question: Question::Approval,
        });
        return Ok(decided(
            approved,
            "condition",
            "rejected: condition was false",
        ));
    }
    // Rendered before the wait: a template that fails must not fail the
    // gate only once its whole timeout has passed.
    let on_timeout = gate
        .on_timeout
        .as_ref()
        .map(|t| ctx.render_typed("on_timeout", t))
        .transpose()?
        .unwrap_or(OnTimeout::Reject);
    if ctx.dry_run() {
        // Nothing to approve in a rehearsal, and nobody should be made to
        // wait for one.
        return Ok(StepOutcome::WouldRun(format!(
            "would wait for a decision: {message}"
        )));
    }

    let request = GateRequest {
        run_id: ctx.run_id().to_string(),
        gate: ctx.step_id().to_string(),
        message,
        timeout: ctx.timeout(),
        question: Question::Approval,
    };
    // Fires at the gate's own timeout, or with the attempt's token.
    let waiting = ctx.cancelled().child_token();
    let timed_out = AtomicBool::new(false);
    let timer = async {
        tokio::time::sleep(ctx.timeout()).await;
        timed_out.store(true, Ordering::SeqCst);
        waiting.cancel();
        // Leave the approvals source to notice and return by itself.
        std::future::pending::<()>().await;
    };
    let decision = tokio::select! {
        decision = ctx.approvals().decide(&request, &waiting) => decision,
        () = timer => None,
    };
    if let Some(decision) = decision {
        let rejection = format!("rejected by {}", decision.decided_by);
        return Ok(decided(decision.approved, &decision.decided_by, &rejection));
    }
    if !waiting.is_cancelled() {
        return Err(StepFailure::new(
            "no decision could be obtained for this gate",
        ));
    }
    if !timed_out.load(Ordering::SeqCst) {
        return Err(StepFailure::new("cancelled while waiting for a decision"));
    }
    let waited = humantime::format_duration(ctx.timeout());
    Ok(match on_timeout {
        OnTimeout::Reject => decided(
            false,
            "timeout",
            &format!("no decision within {waited}; rejected (on_timeout: reject)"),
        ),
        OnTimeout::Approve => {
            ctx.progress(&format!(
                "no decision within {waited}; approved (on_timeout: approve)"
            ));
            decided(true, "timeout", "")
        }
    })
}

/// The outcome of a decision; `rejection` is the failure message.
fn decided(approved: bool, decided_by: &str, rejection: &str) -> StepOutcome {
    let mut outputs = Outputs::new();
    outputs.insert("approved".into(), Value::Bool(approved));
    outputs.insert("decided_by".into(), Value::String(decided_by.to_string()));
    outputs.insert(
        "decided_at".into(),
        Value::String(approval_file::now_rfc3339()),
    );
    if approved {
        StepOutcome::Succeeded(outputs)
    } else {
        StepOutcome::Failed(StepFailure::with_outputs(rejection, outputs))
    }
}
