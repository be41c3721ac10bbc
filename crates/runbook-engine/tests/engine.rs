//! The dispatcher's semantics (spec section 3) with fake executors and paused
//! time: every wait is virtual, so the timings asserted here are exact and
//! the tests take milliseconds.
//!
//! The fake shell executor interprets its `run` text as a tiny script of
//! `;`-separated commands (after rendering it as a template):
//! `sleep DUR`, `hang`, `fail MESSAGE`, `fail-attempts N`, `out KEY VALUE`,
//! `print LINE`, `secret VALUE`, `side-effect` (would-run under dry run).

use async_trait::async_trait;
use runbook_engine::{
    Approvals, CollectingSink, Decision, Engine, Event, EventKind, GateRequest, Outputs, Question,
    RunDir, RunOptions, RunStatus, RunSummary, StepContext, StepExecutor, StepFailure, StepOutcome,
    StepStatus, Stream,
};
use runbook_model::params::{ParamSource, ResolvedParam};
use runbook_model::{ParamValue, Step, StepKind};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What happened when, in virtual time since the test started.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Entry>>>);

/// Step id, what happened (`start`, `end`, `auto-rollback`), and when.
type Entry = (String, &'static str, Duration);

impl Log {
    fn push(&self, step: &str, what: &'static str, origin: Instant) {
        self.0
            .lock()
            .expect("log lock")
            .push((step.to_string(), what, origin.elapsed()));
    }

    fn entries(&self) -> Vec<Entry> {
        self.0.lock().expect("log lock").clone()
    }

    fn at(&self, step: &str, what: &str) -> Vec<Duration> {
        self.entries()
            .into_iter()
            .filter(|(s, w, _)| s == step && *w == what)
            .map(|(_, _, t)| t)
            .collect()
    }

    fn order(&self, what: &str) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|(_, w, _)| *w == what)
            .map(|(s, _, _)| s)
            .collect()
    }

    /// Most steps running at the same time.
    fn max_concurrency(&self) -> usize {
        let mut running = 0usize;
        let mut max = 0;
        for (_, what, _) in self.entries() {
            match what {
                "start" => {
                    running += 1;
                    max = max.max(running);
                }
                "end" => running -= 1,
                _ => {}
            }
        }
        max
    }
}

struct FakeShell {
    log: Log,
    origin: Instant,
}

#[async_trait]
impl StepExecutor for FakeShell {
    fn kind(&self) -> &'static str {
        "shell"
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        let StepKind::Shell(shell) = &step.kind else {
            return StepOutcome::Failed(StepFailure::new("not a shell step"));
        };
        let script = match ctx.render("run", &shell.run) {
            Ok(s) => s,
            Err(f) => return StepOutcome::Failed(f),
        };
        self.log.push(ctx.step_id(), "start", self.origin);
        let outcome = self.interpret(&script, ctx).await;
        self.log.push(ctx.step_id(), "end", self.origin);
        outcome
    }

    async fn rollback_auto(
        &self,
        step: &Step,
        outputs: &Outputs,
        ctx: &StepContext,
    ) -> StepOutcome {
        self.log.push(&step.id.value, "auto-rollback", self.origin);
        let mut out = outputs.clone();
        out.insert("undone".into(), json!(true));
        let _ = ctx;
        StepOutcome::Succeeded(out)
    }
}

impl FakeShell {
    async fn interpret(&self, script: &str, ctx: &StepContext) -> StepOutcome {
        let mut outputs = Outputs::new();
        for command in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
            match verb {
                "sleep" => {
                    let d = runbook_model::parse_duration(rest).expect("test duration");
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = ctx.cancelled().cancelled() => {
                            return StepOutcome::Failed(StepFailure::with_outputs("stopped", outputs));
                        }
                    }
                }
                "hang" => {
                    ctx.cancelled().cancelled().await;
                    return StepOutcome::Failed(StepFailure::with_outputs("stopped", outputs));
                }
                // Holds its worker thread inside one poll until the step is
                // told to stop: the stop then arrives in the middle of the
                // executor's poll, as it can on a busy worker.
                "block-until-stopped" => {
                    let start = std::time::Instant::now();
                    while !ctx.cancelled().is_cancelled() {
                        assert!(start.elapsed() < Duration::from_secs(30), "never stopped");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    return StepOutcome::Failed(StepFailure::new("saw the stop"));
                }
                "fail" => {
                    return StepOutcome::Failed(StepFailure::with_outputs(rest, outputs));
                }
                "fail-attempts" => {
                    let n: u32 = rest.parse().expect("count");
                    if ctx.attempt() <= n {
                        return StepOutcome::Failed(StepFailure::new(format!(
                            "attempt {} fails",
                            ctx.attempt()
                        )));
                    }
                }
                "out" => {
                    let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                    outputs.insert(k.to_string(), Value::String(v.to_string()));
                }
                "print" => ctx.output_line(Stream::Stdout, rest),
                "secret" => ctx.add_secret(rest),
                "side-effect" => {
                    if ctx.dry_run() {
                        return StepOutcome::WouldRun(format!("would run `{script}`"));
                    }
                }
                // A step's own `dry_run` on what cannot be sent as a dry
                // run (a kubectl `exec`): it only would have run, in any run.
                "only-would" => return StepOutcome::WouldRun("would exec".to_string()),
                other => panic!("unknown fake command {other}"),
            }
        }
        StepOutcome::Succeeded(outputs)
    }
}

/// A gate that asks the run's approvals, as the real one does.
struct FakeGate;

#[async_trait]
impl StepExecutor for FakeGate {
    fn kind(&self) -> &'static str {
        "gate"
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        let StepKind::Gate(gate) = &step.kind else {
            return StepOutcome::Failed(StepFailure::new("not a gate"));
        };
        let message = match ctx.render("message", &gate.message) {
            Ok(m) => m,
            Err(f) => return StepOutcome::Failed(f),
        };
        if ctx.dry_run() {
            return StepOutcome::WouldRun(format!("would ask for approval: {message}"));
        }
        let request = GateRequest {
            run_id: ctx.run_id().to_string(),
            gate: ctx.step_id().to_string(),
            message,
            timeout: ctx.timeout(),
            question: Question::Approval,
        };
        let decision = ctx.approvals().decide(&request, ctx.cancelled()).await;
        let (approved, by) = match decision {
            Some(d) => (d.approved, d.decided_by),
            None => (false, "timeout".to_string()),
        };
        let mut outputs = Outputs::new();
        outputs.insert("approved".into(), json!(approved));
        outputs.insert("decided_by".into(), json!(by));
        outputs.insert("decided_at".into(), json!("now"));
        if approved {
            StepOutcome::Succeeded(outputs)
        } else {
            StepOutcome::Failed(StepFailure::with_outputs("rejected", outputs))
        }
    }
}

struct ApproveAll;

#[async_trait]
impl Approvals for ApproveAll {
    async fn decide(&self, _: &GateRequest, _: &CancellationToken) -> Option<Decision> {
        Some(Decision {
            approved: true,
            decided_by: "test".into(),
        })
    }
}

struct Outcome {
    summary: RunSummary,
    events: Vec<Event>,
    lines: Vec<(String, String)>,
    log: Log,
    elapsed: Duration,
}

impl Outcome {
    fn step(&self, id: &str) -> &runbook_engine::StepRecord {
        self.summary
            .steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id}"))
    }

    fn events_of(&self, kind: EventKind) -> Vec<&Event> {
        self.events.iter().filter(|e| e.event == kind).collect()
    }
}

fn load(yaml: &str) -> runbook_model::Runbook {
    let loaded = runbook_model::load(Path::new("test.yaml"), yaml);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    loaded
        .runbook
        .unwrap_or_else(|| panic!("invalid test runbook: {errors:?}"))
}

async fn run_with(yaml: &str, tweak: impl FnOnce(&mut RunOptions)) -> Outcome {
    let runbook = load(yaml);
    let log = Log::default();
    let origin = Instant::now();
    let engine = Engine::new()
        .with_executor(Arc::new(FakeShell {
            log: log.clone(),
            origin,
        }))
        .with_executor(Arc::new(FakeGate));
    let dir = RunDir {
        id: "20260101-000000-abcdef".into(),
        path: std::env::temp_dir(),
    };
    let mut options = RunOptions::new(&dir);
    options.env = vec![("HOME_TEST".into(), "/home/test".into())];
    tweak(&mut options);
    let mut sink = CollectingSink::default();
    let summary = engine.run(&runbook, options, &mut sink).await;
    Outcome {
        summary,
        events: sink.events,
        lines: sink.lines,
        log,
        elapsed: origin.elapsed(),
    }
}

async fn run(yaml: &str) -> Outcome {
    run_with(yaml, |_| {}).await
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn dependencies_run_first() {
    let o = run(r#"
version: 1
name: t
steps:
  c: {type: shell, run: "sleep 1s", needs: [b]}
  b: {type: shell, run: "sleep 1s", needs: [a]}
  a: {type: shell, run: "sleep 1s"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Succeeded);
    assert_eq!(o.log.order("start"), ["a", "b", "c"]);
    assert_eq!(o.log.at("c", "start"), [secs(2.0)]);
    assert_eq!(o.elapsed, secs(3.0));
}

#[tokio::test(start_paused = true)]
async fn independent_steps_run_in_parallel_up_to_max_parallel() {
    let yaml = r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s"}
  b: {type: shell, run: "sleep 1s"}
  c: {type: shell, run: "sleep 1s"}
  d: {type: shell, run: "sleep 1s"}
  e: {type: shell, run: "sleep 1s"}
  f: {type: shell, run: "sleep 1s"}
"#;
    let all = run(yaml).await;
    assert_eq!(all.elapsed, secs(1.0), "critical path, not the sum");
    assert_eq!(all.log.max_concurrency(), 6);
    let two = run_with(yaml, |o| o.max_parallel = 2).await;
    assert_eq!(two.elapsed, secs(3.0));
    assert_eq!(two.log.max_concurrency(), 2);
}

#[tokio::test(start_paused = true)]
async fn ready_steps_start_in_file_order() {
    let o = run_with(
        r#"
version: 1
name: t
steps:
  zulu: {type: shell, run: "sleep 1s"}
  alpha: {type: shell, run: "sleep 1s"}
  mike: {type: shell, run: "sleep 1s"}
  late: {type: shell, run: "sleep 1s", needs: [zulu]}
  early: {type: shell, run: "sleep 1s"}
"#,
        |o| o.max_parallel = 1,
    )
    .await;
    // `late` becomes ready after zulu, but `alpha`, `mike` and `early` are
    // earlier in the file... except that `late` precedes `early`.
    assert_eq!(
        o.log.order("start"),
        ["zulu", "alpha", "mike", "late", "early"]
    );
}

#[tokio::test(start_paused = true)]
async fn skips_propagate_with_reasons() {
    let o = run(r#"
version: 1
name: t
steps:
  a: {type: shell, run: "fail boom", continue_on_failure: true}
  b: {type: shell, run: "sleep 1s", needs: [a]}
  c: {type: shell, run: "sleep 1s", needs: [b]}
  d: {type: shell, run: "sleep 1s"}
"#)
    .await;
    assert_eq!(
        o.summary.status,
        RunStatus::Succeeded,
        "a continues on failure"
    );
    assert_eq!(o.step("a").status, StepStatus::Failed);
    assert_eq!(o.step("b").status, StepStatus::Skipped);
    assert_eq!(o.step("b").reason.as_deref(), Some("needs a which failed"));
    assert_eq!(o.step("c").reason.as_deref(), Some("needs b which skipped"));
    assert_eq!(o.step("d").status, StepStatus::Succeeded);
    let skipped = o.events_of(EventKind::StepSkipped);
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0].outputs, Some(Outputs::new()));
}

#[tokio::test(start_paused = true)]
async fn when_decides_alone_even_after_a_failure() {
    let o = run(r#"
version: 1
name: t
steps:
  check: {type: shell, run: "out exit_code 503; fail unhealthy", continue_on_failure: true}
  fix:
    type: shell
    needs: [check]
    when: "{{and steps.check.failed (eq steps.check.outputs.exit_code \"503\")}}"
    run: "print fixing after {{steps.check.error}}"
  celebrate:
    type: shell
    needs: [check]
    when: "{{steps.check.succeeded}}"
    run: "print yay"
  after-skip:
    type: shell
    needs: [celebrate]
    when: "{{eq steps.celebrate.status \"skipped\"}}"
    run: "print ran after a skip"
"#)
    .await;
    assert_eq!(o.step("fix").status, StepStatus::Succeeded);
    assert_eq!(
        o.step("celebrate").reason.as_deref(),
        Some("when was false")
    );
    assert_eq!(o.step("after-skip").status, StepStatus::Succeeded);
    assert!(
        o.lines
            .contains(&("fix".into(), "fixing after unhealthy".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_when_that_does_not_render_fails_the_step() {
    let o = run(r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s"}
  b: {type: shell, needs: [a], when: "{{steps.a.outputs.stdout}}", run: "sleep 1s"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    let b = o.step("b");
    assert_eq!(b.status, StepStatus::Failed);
    assert_eq!(b.attempts, 0);
    assert!(b.error.as_deref().unwrap_or("").contains("`when`"), "{b:?}");
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff() {
    let o = run(r#"
version: 1
name: t
defaults:
  retry: {attempts: 2, delay: 5s}
steps:
  flaky:
    type: shell
    run: "fail-attempts 3"
    retry: {attempts: 5, delay: 1s, backoff: exponential, max_delay: 3s}
  default-policy: {type: shell, run: "fail-attempts 1"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Succeeded);
    assert_eq!(o.step("flaky").attempts, 4);
    // Waits of 1s, 2s, 3s (capped) between the four attempts.
    assert_eq!(
        o.log.at("flaky", "start"),
        [secs(0.0), secs(1.0), secs(3.0), secs(6.0)]
    );
    assert_eq!(o.step("default-policy").attempts, 2);
    assert_eq!(o.log.at("default-policy", "start"), [secs(0.0), secs(5.0)]);
    let starts: Vec<_> = o
        .events_of(EventKind::StepStarted)
        .into_iter()
        .filter(|e| e.step.as_deref() == Some("flaky"))
        .map(|e| (e.attempt, e.reason.clone()))
        .collect();
    assert_eq!(starts.len(), 4);
    assert_eq!(
        starts[1],
        (Some(2), Some("attempt 1 failed: attempt 1 fails".into()))
    );
}

/// What a template reads is fixed for the run: a step whose template does
/// not render would fail the same way at every attempt, after every delay.
#[tokio::test(start_paused = true)]
async fn a_template_that_does_not_render_is_not_retried() {
    let o = run(r#"
version: 1
name: t
params:
  opt: {required: false}
steps:
  tpl: {type: shell, run: "print {{params.opt}}", retry: {attempts: 3, delay: 10s}}
"#)
    .await;
    let tpl = o.step("tpl");
    assert_eq!(tpl.status, StepStatus::Failed);
    assert_eq!(tpl.attempts, 1);
    assert!(
        tpl.error.as_deref().unwrap_or("").contains("params.opt"),
        "{tpl:?}"
    );
    assert_eq!(o.elapsed, secs(0.0));
}

#[tokio::test(start_paused = true)]
async fn a_step_fails_when_its_last_attempt_fails() {
    let o = run(r#"
version: 1
name: t
steps:
  bad: {type: shell, run: "fail nope", retry: {attempts: 3, delay: 1s, backoff: fixed}}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.step("bad").attempts, 3);
    assert_eq!(o.step("bad").error.as_deref(), Some("nope"));
    assert_eq!(o.summary.reason.as_deref(), Some("step `bad` failed"));
    let finished = o.events_of(EventKind::StepFinished);
    assert_eq!(finished[0].attempts, Some(3));
    assert_eq!(finished[0].duration_ms, Some(2000));
}

#[tokio::test(start_paused = true)]
async fn each_attempt_has_its_own_timeout() {
    let o = run(r#"
version: 1
name: t
steps:
  stuck: {type: shell, run: "hang", timeout: 2s, retry: {attempts: 2, delay: 1s}}
"#)
    .await;
    let stuck = o.step("stuck");
    assert_eq!(stuck.status, StepStatus::Failed);
    assert_eq!(stuck.attempts, 2);
    assert_eq!(o.log.at("stuck", "start"), [secs(0.0), secs(3.0)]);
    assert!(
        stuck
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("timed out after 2s"),
        "{stuck:?}"
    );
    assert_eq!(o.elapsed, secs(5.0));
}

#[tokio::test(start_paused = true)]
async fn a_failure_cancels_running_steps_and_skips_the_rest() {
    let o = run(r#"
version: 1
name: t
steps:
  slow: {type: shell, run: "sleep 1h"}
  bad: {type: shell, run: "sleep 1s; fail broken"}
  after-slow: {type: shell, run: "sleep 1s", needs: [slow]}
  after-bad: {type: shell, run: "sleep 1s", needs: [bad], when: "true"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.step("slow").status, StepStatus::Cancelled);
    assert_eq!(
        o.step("slow").error.as_deref(),
        Some("cancelled: step `bad` failed (stopped)")
    );
    for id in ["after-slow", "after-bad"] {
        assert_eq!(o.step(id).status, StepStatus::Skipped, "{id}");
        assert_eq!(
            o.step(id).reason.as_deref(),
            Some("run stopped: step `bad` failed")
        );
    }
    assert_eq!(o.elapsed, secs(1.0));
}

#[tokio::test(start_paused = true)]
async fn continue_on_failure_from_defaults() {
    let o = run(r#"
version: 1
name: t
defaults: {continue_on_failure: true}
steps:
  a: {type: shell, run: "fail meh"}
  b: {type: shell, run: "sleep 1s"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Succeeded);
    assert!(o.step("a").continue_on_failure);
}

const ROLLBACKS: &str = r#"
version: 1
name: t
steps:
  one:
    type: shell
    run: "sleep 1s; out stdout t-1"
    rollback: {type: shell, run: "print undo one {{steps.one.outputs.stdout}}"}
  two:
    type: shell
    run: "sleep 2s"
    rollback: {type: shell, run: "fail cannot undo two"}
  three:
    type: shell
    needs: [one]
    run: "sleep 2s"
    rollback: {type: shell, run: "print undo three; sleep 1s"}
  no-rollback: {type: shell, run: "sleep 1s"}
  breaks:
    type: shell
    needs: [three, two]
    run: "fail broken"
on_failure:
  page: {type: shell, run: "print paging about {{steps.breaks.error}}"}
finally:
  cleanup: {type: shell, run: "print cleanup"}
"#;

#[tokio::test(start_paused = true)]
async fn rollbacks_run_in_reverse_completion_order_then_on_failure_then_finally() {
    let o = run(ROLLBACKS).await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    // Completion order: one (1s), two (2s), three (3s); so three, two, one.
    let order: Vec<_> = o
        .summary
        .rollbacks
        .iter()
        .map(|r| r.step.as_str())
        .collect();
    assert_eq!(order, ["three", "two", "one"]);
    let statuses: Vec<_> = o.summary.rollbacks.iter().map(|r| r.status).collect();
    use runbook_engine::RollbackStatus::{Failed, Succeeded};
    assert_eq!(statuses, [Succeeded, Failed, Succeeded]);
    assert_eq!(
        o.summary.rollbacks[1].error.as_deref(),
        Some("cannot undo two")
    );
    // The rollback saw its own step's outputs; on_failure saw the failure.
    let lines: Vec<_> = o.lines.iter().map(|(s, l)| format!("{s}: {l}")).collect();
    assert_eq!(
        lines,
        [
            "three.rollback: undo three",
            "one.rollback: undo one t-1",
            "page: paging about broken",
            "cleanup: cleanup",
        ]
    );
    let kinds: Vec<_> = o
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                EventKind::RollbackStarted | EventKind::RollbackFinished
            )
        })
        .map(|e| (e.event.as_str(), e.step.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kinds.len(), 6);
    assert_eq!(kinds[0], ("rollback_started", "three".to_string()));
    assert_eq!(
        o.events.last().map(|e| e.event),
        Some(EventKind::RunFinished)
    );
}

#[tokio::test(start_paused = true)]
async fn no_rollback_skips_rollbacks_but_not_cleanup() {
    let o = run_with(ROLLBACKS, |o| o.no_rollback = true).await;
    assert!(
        o.summary
            .rollbacks
            .iter()
            .all(|r| r.status == runbook_engine::RollbackStatus::Skipped
                && r.reason.as_deref() == Some("--no-rollback"))
    );
    assert_eq!(o.step("page").status, StepStatus::Succeeded);
    assert_eq!(o.step("cleanup").status, StepStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_successful_run_skips_on_failure_and_runs_finally() {
    let o = run(r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s", rollback: {type: shell, run: "print never"}}
on_failure:
  page: {type: shell, run: "print never"}
finally:
  tidy: {type: shell, run: "print tidy"}
  tidy-more: {type: shell, run: "print tidy more", needs: [tidy]}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Succeeded);
    assert!(o.summary.rollbacks.is_empty());
    assert_eq!(o.step("page").status, StepStatus::Skipped);
    assert_eq!(
        o.step("page").reason.as_deref(),
        Some("the main steps did not fail")
    );
    assert_eq!(o.step("tidy-more").status, StepStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_failing_finally_step_fails_the_run() {
    let o = run(r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s"}
finally:
  bad: {type: shell, run: "fail oops"}
  other: {type: shell, run: "print still runs"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.summary.reason.as_deref(), Some("step `bad` failed"));
    assert_eq!(o.step("other").status, StepStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_fails_the_run() {
    let o = run(r#"
version: 1
name: t
timeout: 3s
steps:
  done: {type: shell, run: "sleep 1s", rollback: {type: shell, run: "print undo"}}
  forever: {type: shell, run: "hang", needs: [done]}
  never: {type: shell, run: "sleep 1s", needs: [forever]}
finally:
  tidy: {type: shell, run: "sleep 10s"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.summary.reason.as_deref(), Some("deadline exceeded"));
    assert_eq!(o.step("forever").status, StepStatus::Cancelled);
    assert_eq!(
        o.step("never").reason.as_deref(),
        Some("run stopped: deadline exceeded")
    );
    assert_eq!(o.summary.rollbacks.len(), 1);
    assert_eq!(
        o.step("tidy").status,
        StepStatus::Succeeded,
        "the deadline is for main steps"
    );
    assert_eq!(o.elapsed, secs(13.0));
}

/// Stop signals that get one interrupt `after` the run starts.
fn interrupted_after(after: Duration) -> runbook_engine::StopSignals {
    let stop = runbook_engine::StopSignals::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        trigger.interrupt();
    });
    stop
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cancels_then_cleans_up() {
    let stop = interrupted_after(secs(2.5));
    let o = run_with(
        r#"
version: 1
name: t
steps:
  first: {type: shell, run: "sleep 1s", rollback: {type: shell, run: "print undo first"}}
  second: {type: shell, run: "sleep 1h", needs: [first]}
  third: {type: shell, run: "sleep 1s", needs: [second]}
on_failure:
  page: {type: shell, run: "print page"}
finally:
  tidy: {type: shell, run: "print tidy"}
"#,
        |o| o.stop = stop,
    )
    .await;
    assert_eq!(o.summary.status, RunStatus::Interrupted);
    assert_eq!(o.summary.reason.as_deref(), Some("interrupted"));
    assert_eq!(o.step("second").status, StepStatus::Cancelled);
    assert_eq!(
        o.step("third").reason.as_deref(),
        Some("run stopped: interrupted")
    );
    assert_eq!(
        o.summary.rollbacks[0].status,
        runbook_engine::RollbackStatus::Succeeded
    );
    assert_eq!(o.step("page").status, StepStatus::Succeeded);
    assert_eq!(o.step("tidy").status, StepStatus::Succeeded);
    assert_eq!(o.elapsed, secs(2.5));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_a_retry_wait_keeps_the_last_failure() {
    let stop = interrupted_after(secs(1.5));
    let o = run_with(
        r#"
version: 1
name: t
steps:
  flaky: {type: shell, run: "fail nope", retry: {attempts: 3, delay: 10s}}
"#,
        |o| o.stop = stop,
    )
    .await;
    let flaky = o.step("flaky");
    assert_eq!(flaky.status, StepStatus::Cancelled);
    assert_eq!(
        flaky.error.as_deref(),
        Some("cancelled: interrupted (while waiting to retry; attempt 1 failed: nope)")
    );
    assert_eq!(o.elapsed, secs(1.5));
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_abandons_the_rollbacks() {
    let stop = runbook_engine::StopSignals::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(3.5)).await;
        trigger.interrupt();
        tokio::time::sleep(secs(2.0)).await;
        trigger.interrupt();
    });
    let o = run_with(
        r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s", rollback: {type: shell, run: "print undo a"}}
  b: {type: shell, run: "sleep 1s", needs: [a], rollback: {type: shell, run: "sleep 1h"}}
  c: {type: shell, run: "sleep 1h", needs: [b]}
finally:
  tidy: {type: shell, run: "print tidy"}
"#,
        |o| o.stop = stop,
    )
    .await;
    use runbook_engine::RollbackStatus::{Cancelled, Skipped};
    assert_eq!(o.summary.status, RunStatus::Interrupted);
    let rollbacks: Vec<_> = o
        .summary
        .rollbacks
        .iter()
        .map(|r| (r.step.as_str(), r.status))
        .collect();
    assert_eq!(rollbacks, [("b", Cancelled), ("a", Skipped)]);
    assert_eq!(
        o.summary.rollbacks[1].reason.as_deref(),
        Some("abandoned by a second interrupt")
    );
    assert_eq!(o.step("tidy").status, StepStatus::Skipped);
    assert!(
        o.lines.is_empty(),
        "no rollback or cleanup output: {:?}",
        o.lines
    );
    assert_eq!(o.elapsed, secs(5.5));
}

#[tokio::test(start_paused = true)]
async fn secrets_never_reach_events_or_output() {
    let o = run_with(
        r#"
version: 1
name: t
params:
  token: {secret: true}
  region: {default: eu-west-1}
steps:
  leak:
    type: shell
    run: "print using {{params.token}}; out header Bearer {{params.token}}; secret runtime-secret-value; print also runtime-secret-value"
  fails: {type: shell, run: "fail bad token {{params.token}}", needs: [leak]}
"#,
        |o| {
            o.params.insert(
                "token".into(),
                ResolvedParam {
                    value: ParamValue::String("hunter2-very-secret".into()),
                    source: ParamSource::CommandLine,
                    secret: true,
                },
            );
            o.params.insert(
                "region".into(),
                ResolvedParam {
                    value: ParamValue::String("eu-west-1".into()),
                    source: ParamSource::Default,
                    secret: false,
                },
            );
        },
    )
    .await;
    let everything = format!(
        "{}\n{:?}\n{:?}",
        o.events
            .iter()
            .map(Event::to_json_line)
            .collect::<Vec<_>>()
            .join("\n"),
        o.lines,
        o.summary
    );
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(!everything.contains("runtime-secret-value"), "{everything}");
    assert!(everything.contains("using ***"));
    assert!(everything.contains("bad token ***"));
    let started = &o.events[0];
    assert_eq!(started.event, EventKind::RunStarted);
    let params = started.params.as_ref().expect("params");
    assert_eq!(params["token"], json!("***"));
    assert_eq!(params["region"], json!("eu-west-1"));
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_side_effects_and_gates() {
    let o = run_with(
        r#"
version: 1
name: t
steps:
  look: {type: shell, run: "out seen yes"}
  change: {type: shell, run: "side-effect", needs: [look]}
  ask: {type: gate, message: "Proceed after {{steps.change.status}}?", needs: [change]}
  after: {type: shell, run: "print stdout was [{{steps.change.outputs.stdout}}]", needs: [ask]}
"#,
        |o| o.dry_run = true,
    )
    .await;
    assert_eq!(o.summary.status, RunStatus::Succeeded);
    assert_eq!(o.step("look").would_run, None);
    assert_eq!(o.step("change").status, StepStatus::Succeeded);
    assert_eq!(
        o.step("change").would_run.as_deref(),
        Some("would run `side-effect`")
    );
    assert_eq!(
        o.step("ask").would_run.as_deref(),
        Some("would ask for approval: Proceed after succeeded?")
    );
    assert!(o.events_of(EventKind::GateWaiting).is_empty());
    // `after` reads what `change` printed, which a dry run does not have:
    // planned, not run with an empty value in its place.
    assert!(o.lines.is_empty(), "{:?}", o.lines);
    assert_eq!(
        o.step("after").would_run.as_deref(),
        Some(
            "would run; not tried in this dry run, as it reads the outputs of `change`, which did not run"
        )
    );
    let finished = o.events_of(EventKind::StepFinished);
    assert_eq!(
        finished[1].would_run.as_deref(),
        Some("would run `side-effect`")
    );
}

/// A rollback that reads the outputs of a step that only would have run
/// is skipped with the reason, rather than run on their nulls.
#[tokio::test(start_paused = true)]
async fn a_rollback_reading_what_only_would_have_run_is_skipped() {
    let o = run(r#"
version: 1
name: t
steps:
  probe: {type: shell, run: "only-would"}
  change:
    type: shell
    run: "print changed"
    rollback: {type: shell, run: "print undo {{steps.probe.outputs.stdout}}"}
  fail: {type: shell, needs: [change], run: "fail boom"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    let finished = o.events_of(EventKind::RollbackFinished);
    assert_eq!(finished.len(), 1);
    assert_eq!(
        finished[0].reason.as_deref(),
        Some("reads the outputs of `probe`, which only would have run (its `dry_run`)")
    );
    assert!(
        !o.lines.iter().any(|(_, line)| line.starts_with("undo")),
        "{:?}",
        o.lines
    );
}

/// Under `--dry-run`, a step whose `when` reads a step that only would
/// have run is planned, even when another of its needs failed: with a
/// `when`, the expression alone decides, and it cannot be decided here.
#[tokio::test(start_paused = true)]
async fn a_when_on_planned_outputs_is_planned_whatever_the_needs_ended_as() {
    let o = run_with(
        r#"
version: 1
name: t
steps:
  health: {type: shell, run: "fail down", continue_on_failure: true}
  probe: {type: shell, run: "side-effect"}
  remedy:
    type: shell
    needs: [health, probe]
    when: "{{and steps.health.failed (eq steps.probe.outputs.stdout \"full\")}}"
    run: "print cleaning"
"#,
        |o| o.dry_run = true,
    )
    .await;
    assert_eq!(o.step("remedy").status, StepStatus::Succeeded);
    assert_eq!(
        o.step("remedy").would_run.as_deref(),
        Some(
            "would run; not tried in this dry run, as it reads the outputs of `probe`, which did not run"
        )
    );
}

/// A step that only would have run in a real run (its own `dry_run`) has
/// null outputs: a step reading them, `when` or not, is skipped rather
/// than run on the nulls, and the steps that need it are skipped too.
#[tokio::test(start_paused = true)]
async fn outputs_of_a_step_that_only_would_have_run_are_not_read_in_a_real_run() {
    let o = run(r#"
version: 1
name: t
steps:
  probe: {type: shell, run: "only-would"}
  judge: {type: shell, run: "print exit was [{{steps.probe.outputs.exit_code}}]", needs: [probe]}
  verify: {type: shell, when: "{{eq steps.probe.outputs.exit_code 0}}", run: "print verified", needs: [probe]}
  act: {type: shell, run: "print acted", needs: [verify]}
  other: {type: shell, run: "print runs", needs: [probe]}
"#)
    .await;
    assert_eq!(o.step("probe").would_run.as_deref(), Some("would exec"));
    for id in ["judge", "verify"] {
        assert_eq!(o.step(id).status, StepStatus::Skipped, "{id}");
        assert_eq!(
            o.step(id).reason.as_deref(),
            Some("reads the outputs of `probe`, which only would have run (its `dry_run`)"),
            "{id}"
        );
    }
    assert_eq!(o.step("act").status, StepStatus::Skipped);
    assert_eq!(o.lines, vec![("other".to_string(), "runs".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn gates_report_waiting_and_decisions() {
    let o = run_with(
        r#"
version: 1
name: t
steps:
  ask: {type: gate, message: "Restart {{params.svc}}?"}
  go: {type: shell, run: "print approved by {{steps.ask.outputs.decided_by}}", needs: [ask]}
params:
  svc: {default: api}
"#,
        |o| {
            o.approvals = Arc::new(ApproveAll);
            o.params.insert(
                "svc".into(),
                ResolvedParam {
                    value: ParamValue::String("api".into()),
                    source: ParamSource::Default,
                    secret: false,
                },
            );
        },
    )
    .await;
    let waiting = o.events_of(EventKind::GateWaiting);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].message.as_deref(), Some("Restart api?"));
    assert_eq!(
        waiting[0].timeout_ms,
        Some(1_800_000),
        "gates default to 30m"
    );
    let decided = o.events_of(EventKind::GateDecided);
    assert_eq!(decided[0].approved, Some(true));
    assert_eq!(decided[0].decided_by.as_deref(), Some("test"));
    assert_eq!(
        o.lines,
        [("go".to_string(), "approved by test".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_gate_fails_at_its_timeout() {
    let o = run(r#"
version: 1
name: t
steps:
  ask: {type: gate, message: "ok?", timeout: 1m}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    let decided = o.events_of(EventKind::GateDecided);
    assert_eq!(decided[0].approved, Some(false));
    assert!(
        o.elapsed >= secs(60.0) && o.elapsed <= secs(61.0),
        "{:?}",
        o.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn template_context_has_steps_params_env_and_run() {
    let o = run(r#"
version: 1
name: ctx-test
steps:
  a: {type: shell, run: "out stdout 1; fail-attempts 1", retry: {attempts: 2, delay: 1s}}
  b:
    type: shell
    needs: [a]
    run: "print {{steps.a.status}} {{steps.a.succeeded}} {{steps.a.attempts}} {{steps.a.duration_ms}} {{steps.a.outputs.stdout}} {{run.name}} {{run.dry_run}} {{env.HOME_TEST}}"
  c: {type: shell, run: "sleep 5s"}
finally:
  f: {type: shell, run: "print {{steps.c.status}} {{steps.c.attempts}}"}
"#)
    .await;
    assert_eq!(
        o.lines,
        [
            (
                "b".to_string(),
                "succeeded true 2 1000 1 ctx-test false /home/test".to_string()
            ),
            ("f".to_string(), "succeeded 1".to_string())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn automatic_rollbacks_call_the_executor_inverse() {
    // `rollback: auto` is only valid on kubectl actions, so a fake executor
    // for that kind stands in for the real one.
    struct FakeKube(Log, Instant);
    #[async_trait]
    impl StepExecutor for FakeKube {
        fn kind(&self) -> &'static str {
            "kubectl-action"
        }
        async fn run(&self, _: &Step, _: &StepContext) -> StepOutcome {
            let mut o = Outputs::new();
            o.insert("previous_replicas".into(), json!(3));
            o.insert("replicas".into(), json!(0));
            StepOutcome::Succeeded(o)
        }
        async fn rollback_auto(
            &self,
            step: &Step,
            outputs: &Outputs,
            _: &StepContext,
        ) -> StepOutcome {
            self.0.push(&step.id.value, "auto-rollback", self.1);
            assert_eq!(outputs["previous_replicas"], json!(3));
            StepOutcome::Succeeded(Outputs::new())
        }
    }
    let runbook = load(
        r#"
version: 1
name: t
steps:
  scale: {type: kubectl-action, action: scale, resource: deployment/x, replicas: 0, rollback: auto}
  boom: {type: shell, run: "fail boom", needs: [scale]}
"#,
    );
    let log = Log::default();
    let origin = Instant::now();
    let engine = Engine::new()
        .with_executor(Arc::new(FakeShell {
            log: log.clone(),
            origin,
        }))
        .with_executor(Arc::new(FakeKube(log.clone(), origin)));
    let dir = RunDir {
        id: "r".into(),
        path: std::env::temp_dir(),
    };
    let mut sink = CollectingSink::default();
    let summary = engine.run(&runbook, RunOptions::new(&dir), &mut sink).await;
    assert_eq!(summary.rollbacks.len(), 1);
    assert_eq!(
        summary.rollbacks[0].status,
        runbook_engine::RollbackStatus::Succeeded
    );
    assert_eq!(log.order("auto-rollback"), ["scale"]);
}

#[tokio::test(start_paused = true)]
async fn a_step_kind_without_executor_fails_clearly() {
    let o = run(r#"
version: 1
name: t
steps:
  check: {type: http-check, url: "http://127.0.0.1:1/"}
"#)
    .await;
    assert_eq!(o.step("check").status, StepStatus::Failed);
    assert!(
        o.step("check")
            .error
            .as_deref()
            .unwrap_or("")
            .contains("cannot run `http-check` steps")
    );
}

#[tokio::test(start_paused = true)]
async fn every_event_has_the_common_fields() {
    let o = run(ROLLBACKS).await;
    let allowed = [
        "run_started",
        "step_started",
        "step_finished",
        "step_skipped",
        "gate_waiting",
        "gate_decided",
        "rollback_started",
        "rollback_finished",
        "run_finished",
    ];
    for event in &o.events {
        let value: Value = serde_json::from_str(&event.to_json_line()).expect("json");
        assert!(
            value["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{value}"
        );
        assert!(
            allowed.contains(&value["event"].as_str().unwrap_or("")),
            "{value}"
        );
        assert_eq!(value["run_id"], json!("20260101-000000-abcdef"));
    }
    assert_eq!(o.events[0].event, EventKind::RunStarted);
    let last = o.events.last().expect("events");
    assert_eq!(last.status, Some(runbook_engine::EventStatus::Failed));
}

#[tokio::test(start_paused = true)]
async fn on_failure_runs_when_the_failing_step_has_dependents() {
    // The steps after `broken` are skipped when the run stops; that must not
    // leave them queued where the on_failure phase would trip over them.
    let o = run(r#"
version: 1
name: t
steps:
  broken: {type: shell, run: "fail nope"}
  after: {type: shell, run: "print after", needs: [broken]}
  later: {type: shell, run: "print later", needs: [after]}
on_failure:
  page: {type: shell, run: "print paging"}
finally:
  cleanup: {type: shell, run: "print cleanup"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.step("after").status, runbook_engine::StepStatus::Skipped);
    assert_eq!(o.step("page").status, runbook_engine::StepStatus::Succeeded);
    assert_eq!(
        o.step("cleanup").status,
        runbook_engine::StepStatus::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_cannot_start_is_reported_and_the_next_one_runs() {
    // No executor is registered for http-check in these tests.
    let o = run(r#"
version: 1
name: t
steps:
  one: {type: shell, run: "sleep 1s", rollback: {type: shell, run: "print undo one"}}
  two:
    type: shell
    run: "sleep 1s"
    needs: [one]
    rollback: {type: http-check, url: "http://127.0.0.1:1/"}
  boom: {type: shell, run: "fail boom", needs: [two]}
"#)
    .await;
    use runbook_engine::RollbackStatus::{Failed, Succeeded};
    let rollbacks: Vec<_> = o
        .summary
        .rollbacks
        .iter()
        .map(|r| (r.step.as_str(), r.status, r.attempts))
        .collect();
    assert_eq!(rollbacks, [("two", Failed, 0), ("one", Succeeded, 1)]);
    assert_eq!(
        o.lines,
        [("one.rollback".to_string(), "undo one".to_string())]
    );
}

const RESUMABLE: &str = r#"
version: 1
name: t
steps:
  one:
    type: shell
    run: "out stdout 1"
    rollback: {type: shell, run: "print undo one {{steps.one.outputs.stdout}}"}
  two: {type: shell, run: "fail broken", needs: [one]}
  three: {type: shell, run: "out x", needs: [two]}
on_failure:
  page: {type: shell, run: "print paging about {{steps.two.error}}"}
finally:
  tidy: {type: shell, run: "print tidy"}
"#;

/// The events of a whole run of `RESUMABLE`, cut just after the first
/// event matching `cut` (as if the engine died there), resumed.
async fn resumed_after(cut: impl Fn(&Event) -> bool) -> Outcome {
    let full = run(RESUMABLE).await;
    let end = full.events.iter().position(cut).expect("cut point") + 1;
    let point = runbook_engine::ResumePoint::from_events(&full.events[..end]).expect("resumable");
    run_with(RESUMABLE, |o| o.resume = Some(point)).await
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_after_a_failure_goes_straight_to_cleanup_with_restored_outputs() {
    let o =
        resumed_after(|e| e.event == EventKind::StepFinished && e.step.as_deref() == Some("two"))
            .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(
        o.log.order("start"),
        ["one.rollback", "page", "tidy"],
        "no main step runs again"
    );
    let lines: Vec<_> = o.lines.iter().map(|(s, l)| format!("{s}: {l}")).collect();
    assert_eq!(
        lines,
        [
            "one.rollback: undo one 1",
            "page: paging about broken",
            "tidy: tidy"
        ]
    );
    assert_eq!(o.events[0].resumed, Some(true));
    // Restored steps are not reported again.
    assert_eq!(
        o.events_of(EventKind::StepFinished).len(),
        2,
        "page and tidy"
    );
    let three = o
        .summary
        .steps
        .iter()
        .find(|s| s.id == "three")
        .expect("three");
    assert_eq!(three.status, StepStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn a_finished_rollback_is_not_run_again_and_an_unfinished_one_is() {
    let done = resumed_after(|e| e.event == EventKind::RollbackFinished).await;
    assert!(
        !done.lines.iter().any(|(s, _)| s == "one.rollback"),
        "{:?}",
        done.lines
    );
    assert_eq!(done.summary.rollbacks.len(), 1, "the restored record");
    assert_eq!(done.summary.status, RunStatus::Failed);

    let started = resumed_after(|e| e.event == EventKind::RollbackStarted).await;
    assert!(started.lines.iter().any(|(s, _)| s == "one.rollback"));
    assert_eq!(started.log.order("start"), ["one.rollback", "page", "tidy"]);
}

#[tokio::test(start_paused = true)]
async fn a_journal_cut_at_any_byte_reads_back_and_resumes_without_repeating_finished_steps() {
    let full = run(RESUMABLE).await;
    let text: String = full
        .events
        .iter()
        .map(|e| e.to_json_line() + "\n")
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.jsonl");
    for cut in 0..=text.len() {
        std::fs::write(&path, &text.as_bytes()[..cut]).expect("write prefix");
        let contents = runbook_engine::read_journal(&path)
            .unwrap_or_else(|e| panic!("cut at byte {cut}: {e}"));
        let whole_lines = text[..cut].matches('\n').count();
        assert_eq!(contents.events.len(), whole_lines, "cut at byte {cut}");
        assert_eq!(
            contents.torn.is_some(),
            !text[..cut].ends_with('\n') && cut > 0
        );
        let resumable = runbook_engine::ResumePoint::from_events(&contents.events);
        // Only at line boundaries does the prefix change; resume there.
        if contents.torn.is_some() || cut == 0 {
            continue;
        }
        let Ok(point) = resumable else {
            assert!(whole_lines == full.events.len() || whole_lines == 0);
            continue;
        };
        let finished_before: Vec<String> = contents
            .events
            .iter()
            .filter(|e| e.event == EventKind::StepFinished)
            .filter_map(|e| e.step.clone())
            .collect();
        let o = run_with(RESUMABLE, |opts| opts.resume = Some(point)).await;
        for step in &finished_before {
            assert!(
                !o.log.order("start").contains(step),
                "cut after line {whole_lines}: `{step}` had finished but ran again"
            );
        }
        assert_eq!(
            o.summary.status,
            RunStatus::Failed,
            "cut after line {whole_lines}"
        );
        assert_eq!(
            o.events.last().map(|e| e.event),
            Some(EventKind::RunFinished)
        );
    }
}

/// Records events and flushes in the order the dispatcher makes them.
#[derive(Default)]
struct FlushingSink {
    calls: Vec<String>,
}

impl runbook_engine::EventSink for FlushingSink {
    fn event(&mut self, event: &Event) {
        let step = event.step.as_deref().unwrap_or("-");
        self.calls.push(format!("{} {step}", event.event.as_str()));
    }

    fn flush(&mut self) {
        self.calls.push("flush".into());
    }
}

#[tokio::test(start_paused = true)]
async fn events_are_flushed_at_every_step_boundary_and_at_the_end() {
    let runbook = load(
        r#"
version: 1
name: t
steps:
  a: {type: shell, run: "sleep 1s"}
  b: {type: shell, run: "sleep 1s", needs: [a]}
finally:
  c: {type: shell, run: "sleep 1s"}
"#,
    );
    let engine = Engine::new().with_executor(Arc::new(FakeShell {
        log: Log::default(),
        origin: Instant::now(),
    }));
    let dir = RunDir {
        id: "20260101-000000-abcdef".into(),
        path: std::env::temp_dir(),
    };
    let mut sink = FlushingSink::default();
    let summary = engine.run(&runbook, RunOptions::new(&dir), &mut sink).await;
    assert_eq!(summary.status, RunStatus::Succeeded);
    let calls = sink.calls;
    assert_eq!(calls.last().map(String::as_str), Some("flush"), "{calls:?}");
    // Whatever was reported before a step's 1 s of work is flushed before
    // the engine waits for it: its start, and the previous step's end.
    for step in ["a", "b", "c"] {
        let started = calls
            .iter()
            .position(|c| *c == format!("step_started {step}"))
            .unwrap_or_else(|| panic!("{step} started: {calls:?}"));
        let finished = calls
            .iter()
            .position(|c| *c == format!("step_finished {step}"))
            .unwrap_or_else(|| panic!("{step} finished: {calls:?}"));
        assert!(
            calls[started..finished].iter().any(|c| c == "flush"),
            "{step}: {calls:?}"
        );
    }
    for (i, call) in calls.iter().enumerate() {
        if call.starts_with("step_finished") {
            assert!(
                calls[i..].iter().any(|c| c == "flush"),
                "{call} never flushed: {calls:?}"
            );
        }
    }
}

/// A stop that reaches a step while its executor is being polled, and that
/// the executor returns on, is the step's cancellation, not its failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_seen_in_the_middle_of_a_poll_is_a_cancellation() {
    let o = run(r#"
version: 1
name: t
steps:
  victim: {type: shell, run: "block-until-stopped"}
  boom: {type: shell, run: "sleep 50ms; fail boom"}
"#)
    .await;
    assert_eq!(o.summary.status, RunStatus::Failed);
    assert_eq!(o.step("boom").status, StepStatus::Failed);
    assert_eq!(o.step("victim").status, StepStatus::Cancelled);
}
