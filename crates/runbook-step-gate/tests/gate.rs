//! Gates deciding by condition, by flag, by `runbook approve` from "another
//! process" (a concurrent task using the file protocol), by a prompt, and by
//! timeout.

use async_trait::async_trait;
use runbook_engine::{
    Decision, GateRequest, StepContext, StepContextBuilder, StepExecutor, StepMessage, StepOutcome,
};
use runbook_model::Step;
use runbook_step_gate::{
    ApprovalError, FileApprovals, GateExecutor, Prompt, waiting_gates, write_decision,
};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A gate step `g` from the YAML lines of its mapping (indented by 4).
fn step(fields: &str) -> Step {
    let text = format!(
        "version: 1\nname: t\nparams:\n  env:\n    default: prod\nsteps:\n  g:\n    type: gate\n{fields}"
    );
    let loaded = runbook_model::load(Path::new("t.yaml"), &text);
    assert!(!loaded.has_errors(), "{:#?}\n{text}", loaded.diagnostics);
    let mut runbook = loaded.runbook.expect("valid runbook");
    runbook.steps.shift_remove("g").expect("step g")
}

fn manual() -> Step {
    step("    message: \"Restart {{params.env}}?\"\n")
}

fn context(run_dir: &Path) -> StepContextBuilder {
    StepContextBuilder::new("g")
        .run_id("run-1")
        .run_dir(run_dir.to_path_buf())
        .context(json!({
            "params": {"env": "prod"},
            "env": {},
            "steps": {},
            "run": {"id": "run-1", "name": "t", "started_at": "", "dry_run": false},
        }))
}

async fn run(step: &Step, ctx: &StepContext) -> StepOutcome {
    GateExecutor::new().run(step, ctx).await
}

fn succeeded(outcome: StepOutcome) -> Map<String, Value> {
    match outcome {
        StepOutcome::Succeeded(outputs) => {
            check_shape(&outputs);
            outputs
        }
        other => panic!("expected success, got {other:?}"),
    }
}

fn failed(outcome: StepOutcome) -> (String, Map<String, Value>) {
    match outcome {
        StepOutcome::Failed(failure) => (failure.message, failure.outputs),
        other => panic!("expected failure, got {other:?}"),
    }
}

/// Exactly the three outputs, with `decided_at` in RFC 3339.
fn check_shape(outputs: &Map<String, Value>) {
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    assert_eq!(names, ["approved", "decided_by", "decided_at"]);
    let at = outputs["decided_at"].as_str().expect("string");
    chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
}

/// Cancels `token` after `after`, as the engine does at a timeout.
fn cancel_after(token: &CancellationToken, after: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
}

#[tokio::test]
async fn a_true_condition_approves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let step = step("    message: go?\n    condition: \"{{eq params.env \\\"prod\\\"}}\"\n");
    let (ctx, _messages) = context(dir.path()).build();
    let outputs = succeeded(run(&step, &ctx).await);
    assert_eq!(outputs["approved"], json!(true));
    assert_eq!(outputs["decided_by"], json!("condition"));
}

#[tokio::test]
async fn a_false_condition_rejects_even_in_a_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let step = step("    message: go?\n    condition: \"{{eq params.env \\\"dev\\\"}}\"\n");
    let (ctx, _messages) = context(dir.path()).dry_run(true).build();
    let (message, outputs) = failed(run(&step, &ctx).await);
    assert_eq!(message, "rejected: condition was false");
    check_shape(&outputs);
    assert_eq!(outputs["approved"], json!(false));
    assert_eq!(outputs["decided_by"], json!("condition"));
}

#[tokio::test]
async fn a_condition_that_is_not_a_boolean_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Not just `{{params.env}}`, which `load` already refuses with its
    // default `prod`.
    let step = step("    message: go?\n    condition: \"{{lower params.env}}\"\n");
    let (ctx, _messages) = context(dir.path()).build();
    let (message, _) = failed(run(&step, &ctx).await);
    assert!(
        message.contains("`condition`") && message.contains("rendered to `prod`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_manual_gate_is_not_waited_for_in_a_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ctx, _messages) = context(dir.path()).dry_run(true).build();
    match run(&manual(), &ctx).await {
        StepOutcome::WouldRun(text) => {
            assert_eq!(text, "would wait for a decision: Restart prod?")
        }
        other => panic!("expected WouldRun, got {other:?}"),
    }
}

#[tokio::test]
async fn pre_approved_gates_pass_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvals = FileApprovals::new(dir.path()).approve(["other", "g"]);
    let (ctx, _messages) = context(dir.path()).approvals(Arc::new(approvals)).build();
    let outputs = succeeded(run(&manual(), &ctx).await);
    assert_eq!(outputs["approved"], json!(true));
    assert_eq!(outputs["decided_by"], json!("--approve"));

    let approvals = FileApprovals::new(dir.path()).approve_all(true);
    let (ctx, _messages) = context(dir.path()).approvals(Arc::new(approvals)).build();
    let outputs = succeeded(run(&manual(), &ctx).await);
    assert_eq!(outputs["decided_by"], json!("--approve-all"));
    // Neither touched the gate folder.
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
}

/// Plays `runbook approve` from another shell: waits for the gate to be
/// listed as waiting, checks what it shows, then decides.
async fn approve_from_elsewhere(run_dir: &Path, approved: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = waiting_gates(run_dir).expect("list");
        if let Some((gate, info)) = waiting.first() {
            assert_eq!(gate, "g");
            assert_eq!(info.message, "Restart prod?");
            assert_eq!(info.timeout, "10m");
            chrono::DateTime::parse_from_rfc3339(&info.since).expect("RFC 3339");
            break;
        }
        assert!(Instant::now() < deadline, "the gate never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_decision(run_dir, "g", approved, "alice (runbook approve)").expect("decision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_approve_from_another_process_approves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ctx, _messages) = context(dir.path())
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    let approver = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { approve_from_elsewhere(&dir, true).await }
    });
    let outputs = succeeded(run(&manual(), &ctx).await);
    approver.await.expect("approver");
    assert_eq!(outputs["approved"], json!(true));
    assert_eq!(outputs["decided_by"], json!("alice (runbook approve)"));
    // Decided: no longer waiting, and a second decision is refused.
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
    let error = write_decision(dir.path(), "g", false, "bob").expect_err("not waiting");
    assert!(matches!(error, ApprovalError::NotWaiting { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_approve_reject_from_another_process_rejects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ctx, _messages) = context(dir.path())
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    let approver = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { approve_from_elsewhere(&dir, false).await }
    });
    let (message, outputs) = failed(run(&manual(), &ctx).await);
    approver.await.expect("approver");
    assert_eq!(message, "rejected by alice (runbook approve)");
    check_shape(&outputs);
    assert_eq!(outputs["approved"], json!(false));
}

/// The request of gate `g` of `run-1`, waiting for a person for 30 s.
fn waiting_request() -> GateRequest {
    GateRequest {
        run_id: "run-1".into(),
        gate: "g".into(),
        message: "Restart prod?".into(),
        timeout: Duration::from_secs(30),
        question: runbook_engine::Question::Approval,
    }
}

/// The engine journals `gate_waiting` when a gate announces itself; a
/// script that answers that event with `runbook approve` must find the gate
/// waiting, not race the waiting file.
#[tokio::test]
async fn a_gate_is_announced_only_once_runbook_approve_can_reach_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvals = FileApprovals::new(dir.path());
    let request = waiting_request();
    let answered_at_announcement = std::sync::Mutex::new(None);
    let announce = || {
        let answer = write_decision(dir.path(), "g", false, "script (runbook approve)");
        *answered_at_announcement.lock().expect("lock") = Some(answer.is_ok());
    };
    let cancel = CancellationToken::new();
    let decide =
        runbook_engine::Approvals::decide_announced(&approvals, &request, &cancel, &announce);
    let decision = tokio::time::timeout(Duration::from_secs(10), decide)
        .await
        .ok()
        .flatten();
    assert_eq!(
        *answered_at_announcement.lock().expect("lock"),
        Some(true),
        "the waiting file existed when the gate was announced"
    );
    let decision = decision.expect("the decision written at the announcement");
    assert!(!decision.approved);
    assert_eq!(decision.decided_by, "script (runbook approve)");
}

/// Approvers racing for one gate: exactly one decision is accepted, and
/// every other approver is told so, never told its decision went through.
#[test]
fn of_racing_approvers_exactly_one_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let waiting = runbook_step_gate::WaitingGate {
        message: "Restart prod?".into(),
        since: "2026-11-27T00:00:00.000Z".into(),
        timeout: "10m".into(),
    };
    let _guard = runbook_step_gate::mark_waiting(dir.path(), "g", &waiting).expect("waiting");
    let barrier = std::sync::Barrier::new(12);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (barrier, dir) = (&barrier, dir.path());
                scope.spawn(move || {
                    barrier.wait();
                    write_decision(dir, "g", i % 2 == 0, &format!("approver-{i}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(error, ApprovalError::AlreadyDecided { .. }),
                "{error}"
            );
        }
    }
    let kept = runbook_step_gate::read_decision(dir.path(), "g")
        .expect("read")
        .expect("a decision");
    assert_eq!(&&kept, winners.first().expect("winner"));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(runbook_step_gate::gates_dir(dir.path()))
        .expect("gates dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// `runbook approve` accepted a decision just before the gate stopped
/// waiting (its timeout), between two of the gate's polls: the decision is
/// honoured, not dropped with the gate's files.
#[tokio::test]
async fn a_decision_written_just_before_the_wait_ends_is_honoured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvals = FileApprovals::new(dir.path());
    let request = waiting_request();
    let cancel = CancellationToken::new();
    let decide = runbook_engine::Approvals::decide(&approvals, &request, &cancel);
    let decider = async {
        // After the gate's first poll, well before its second.
        tokio::time::sleep(Duration::from_millis(50)).await;
        write_decision(dir.path(), "g", true, "alice (runbook approve)").expect("decision");
        cancel.cancel();
    };
    let (decision, ()) = tokio::join!(decide, decider);
    let decision = decision.expect("the decision accepted before the wait ended");
    assert!(decision.approved);
    assert_eq!(decision.decided_by, "alice (runbook approve)");
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
}

#[tokio::test]
async fn no_decision_before_the_timeout_rejects_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ctx, _messages) = context(dir.path())
        .timeout(Duration::from_millis(400))
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    // The gate keeps its own timer: nothing cancels the token.
    let started = Instant::now();
    let (message, outputs) = failed(run(&manual(), &ctx).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
    assert_eq!(
        message,
        "no decision within 400ms; rejected (on_timeout: reject)"
    );
    check_shape(&outputs);
    assert_eq!(outputs["approved"], json!(false));
    assert_eq!(outputs["decided_by"], json!("timeout"));
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
}

#[tokio::test]
async fn no_decision_before_the_timeout_approves_when_asked_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let step = step("    message: go?\n    on_timeout: approve\n");
    let (ctx, mut messages) = context(dir.path())
        .timeout(Duration::from_millis(400))
        .build();
    let outputs = succeeded(run(&step, &ctx).await);
    assert_eq!(outputs["approved"], json!(true));
    assert_eq!(outputs["decided_by"], json!("timeout"));
    match messages.try_recv() {
        Ok(StepMessage::Progress { message, .. }) => {
            assert_eq!(
                message,
                "no decision within 400ms; approved (on_timeout: approve)"
            )
        }
        other => panic!("expected a progress note, got {other:?}"),
    }
}

#[tokio::test]
async fn a_run_cancelled_even_just_before_the_timeout_does_not_apply_on_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let step = step("    message: go?\n    on_timeout: approve\n");
    let cancel = CancellationToken::new();
    let (ctx, _messages) = context(dir.path())
        .timeout(Duration::from_secs(2))
        .cancel(cancel.clone())
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    // A Ctrl-C in the gate's last moments is not a decision to approve
    // (it once was, within half a second of a 2 s timeout).
    cancel_after(&cancel, Duration::from_millis(1_600));
    let (message, outputs) = failed(run(&step, &ctx).await);
    assert_eq!(message, "cancelled while waiting for a decision");
    assert!(outputs.is_empty());
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
}

/// A prompt that answers at once, or never (input closed).
struct FixedPrompt(Option<bool>);

#[async_trait]
impl Prompt for FixedPrompt {
    async fn ask(&self, gate: &GateRequest) -> Option<Decision> {
        assert_eq!(gate.message, "Restart prod?");
        assert_eq!(gate.run_id, "run-1");
        self.0.map(|approved| Decision {
            approved,
            decided_by: "carol@host (terminal)".to_string(),
        })
    }
}

#[tokio::test]
async fn a_prompt_answer_decides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvals = FileApprovals::new(dir.path()).prompt(Arc::new(FixedPrompt(Some(false))));
    let (ctx, _messages) = context(dir.path()).approvals(Arc::new(approvals)).build();
    let (message, _) = failed(run(&manual(), &ctx).await);
    assert_eq!(message, "rejected by carol@host (terminal)");
    assert!(waiting_gates(dir.path()).expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_that_cannot_answer_leaves_runbook_approve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvals = FileApprovals::new(dir.path()).prompt(Arc::new(FixedPrompt(None)));
    let (ctx, _messages) = context(dir.path()).approvals(Arc::new(approvals)).build();
    let approver = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { approve_from_elsewhere(&dir, true).await }
    });
    let outputs = succeeded(run(&manual(), &ctx).await);
    approver.await.expect("approver");
    assert_eq!(outputs["decided_by"], json!("alice (runbook approve)"));
}

#[tokio::test]
async fn a_gate_folder_that_cannot_be_written_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A file where the run directory should be: `gates/` cannot be created.
    let run_dir = dir.path().join("not-a-dir");
    std::fs::write(&run_dir, "").expect("file");
    let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let warnings = warnings.clone();
        Arc::new(move |w: String| warnings.lock().expect("lock").push(w))
    };
    let approvals = FileApprovals::new(&run_dir).warnings(sink);
    let (ctx, _messages) = context(&run_dir)
        .timeout(Duration::from_millis(300))
        .approvals(Arc::new(approvals))
        .build();
    let (message, _) = failed(run(&manual(), &ctx).await);
    assert!(message.starts_with("no decision within 300ms"), "{message}");
    let warnings = warnings.lock().expect("lock");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("`runbook approve` cannot reach it"),
        "{warnings:?}"
    );
}

/// The spec allows a template in every string value: `on_timeout` decided
/// by a param (approve by itself out of hours, say).
#[tokio::test]
async fn on_timeout_may_be_a_template() {
    let dir = tempfile::tempdir().expect("temp dir");
    let step = step(
        "    message: go?\n    on_timeout: \"{{#if (eq params.env \\\"prod\\\")}}reject{{else}}approve{{/if}}\"\n",
    );
    let (ctx, _messages) = context(dir.path())
        .timeout(Duration::from_millis(200))
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    let (message, _) = failed(run(&step, &ctx).await);
    assert_eq!(
        message,
        "no decision within 200ms; rejected (on_timeout: reject)"
    );

    let (ctx, _messages) = context(dir.path())
        .context(json!({
            "params": {"env": "staging"},
            "env": {},
            "steps": {},
            "run": {"id": "run-1", "name": "t", "started_at": "", "dry_run": false},
        }))
        .timeout(Duration::from_millis(200))
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    let outputs = succeeded(run(&step, &ctx).await);
    assert_eq!(outputs["decided_by"], json!("timeout"));
}

/// A template that renders to neither word fails the gate at once, not
/// after the whole wait.
#[tokio::test]
async fn an_on_timeout_that_renders_to_neither_word_fails_before_the_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Not a bare `{{params.X}}`, which `validate` would check.
    let step = step("    message: go?\n    on_timeout: \"{{lower params.env}}\"\n");
    let (ctx, _messages) = context(dir.path())
        .timeout(Duration::from_secs(3600))
        .approvals(Arc::new(FileApprovals::new(dir.path())))
        .build();
    let started = Instant::now();
    let (message, _) = failed(run(&step, &ctx).await);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        message.contains("`on_timeout` (line")
            && message.contains("rendered to `prod`, which is not `reject` or `approve`"),
        "{message}"
    );
}
