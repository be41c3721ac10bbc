//! Shared test harness: a fake cluster (runbook-fakekube) on 127.0.0.1, a
//! kubeconfig for it in a temp dir, and helpers that build a
//! `kubectl-action` step from YAML and run it through the executor.

#![allow(dead_code)]

use runbook_engine::{
    Outputs, StepContext, StepContextBuilder, StepExecutor, StepMessage, StepOutcome,
};
use runbook_fakekube::{FakeCluster, JournalEntry, Kind, RunningFake, Scenario};
use runbook_model::Step;
use runbook_step_kubectl::KubectlExecutor;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// The scenarios' namespace and deployment.
pub const NS: &str = "omendb-prod";
/// The deployment every scenario has.
pub const DEPLOY: &str = "prod-omendb";

/// A fake cluster with a kubeconfig.
pub struct Env {
    /// The fake (shared so a test can advance its clock from a task).
    pub fake: Arc<RunningFake>,
    /// Holds the kubeconfig.
    pub dir: tempfile::TempDir,
    /// The kubeconfig path.
    pub kubeconfig: PathBuf,
    /// One executor, as in a run (its client cache is shared by steps).
    pub exec: KubectlExecutor,
}

/// A fixed virtual start, so two instances of a scenario are identical.
pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-26T18:00:00Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc)
}

/// Starts `scenario` and writes a kubeconfig for it.
pub async fn env(scenario: &str) -> Env {
    let fake = FakeCluster::builder(Scenario::builtin(scenario).expect("built-in scenario"))
        .start_time(start_time())
        .start()
        .await
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    Env {
        fake: Arc::new(fake),
        dir,
        kubeconfig,
        exec: KubectlExecutor::new(),
    }
}

/// Builds the step `s` from the YAML body of a `kubectl-action` step
/// (indented by four spaces inside the runbook). `KUBECONFIG` in the body is
/// replaced by `kubeconfig`.
pub fn step(body: &str, kubeconfig: &Path) -> Step {
    let body = body.replace("KUBECONFIG", &kubeconfig.display().to_string());
    let indented: String = body
        .trim_matches('\n')
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let text = format!("version: 1\nname: t\nsteps:\n  s:\n    type: kubectl-action\n{indented}");
    let loaded = runbook_model::load(Path::new("t.yaml"), &text);
    let runbook = loaded
        .runbook
        .unwrap_or_else(|| panic!("runbook does not load:\n{text}\n{:?}", loaded.diagnostics));
    runbook.steps.get("s").cloned().expect("step s exists")
}

/// A context for one attempt.
pub fn ctx(dry_run: bool) -> (StepContext, UnboundedReceiver<StepMessage>) {
    StepContextBuilder::new("s").dry_run(dry_run).build()
}

impl Env {
    /// A step with `kubeconfig` and `namespace` set.
    pub fn step(&self, body: &str) -> Step {
        step(
            &format!("kubeconfig: KUBECONFIG\nnamespace: {NS}\n{body}"),
            &self.kubeconfig,
        )
    }

    /// Runs a step body to its outcome.
    pub async fn run(&self, body: &str) -> StepOutcome {
        let (ctx, _rx) = ctx(false);
        self.exec.run(&self.step(body), &ctx).await
    }

    /// Runs a step body under `--dry-run`.
    pub async fn run_dry(&self, body: &str) -> StepOutcome {
        let (ctx, _rx) = ctx(true);
        self.exec.run(&self.step(body), &ctx).await
    }

    /// Runs a step body that must succeed, returning its outputs.
    pub async fn ok(&self, body: &str) -> Outputs {
        expect_ok(self.run(body).await)
    }

    /// Runs a step body that must fail, returning the message and outputs.
    pub async fn fails(&self, body: &str) -> (String, Outputs) {
        expect_failed(self.run(body).await)
    }

    /// The deployment.
    pub fn deployment(&self) -> Value {
        self.fake
            .get(Kind::Deployment, NS, DEPLOY)
            .expect("deployment exists")
    }

    /// Journal entries with this method.
    pub fn requests(&self, method: &str) -> Vec<JournalEntry> {
        self.fake
            .journal()
            .into_iter()
            .filter(|e| e.method == method)
            .collect()
    }
}

/// The outputs of a successful outcome.
pub fn expect_ok(outcome: StepOutcome) -> Outputs {
    match outcome {
        StepOutcome::Succeeded(o) => o,
        other => panic!("expected success, got {other:?}"),
    }
}

/// The message and outputs of a failed outcome.
pub fn expect_failed(outcome: StepOutcome) -> (String, Outputs) {
    match outcome {
        StepOutcome::Failed(f) => (f.message, f.outputs),
        other => panic!("expected failure, got {other:?}"),
    }
}

/// The deployment's pod template, without what a rollback legitimately
/// leaves behind.
pub fn template(deployment: &Value) -> Value {
    deployment["spec"]["template"].clone()
}

/// Removes what differs between two equivalent objects: timestamps,
/// resourceVersion, uid, managedFields, generation-driven status.
pub fn comparable(object: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for key in [
                    "resourceVersion",
                    "uid",
                    "managedFields",
                    "creationTimestamp",
                    "lastTransitionTime",
                    "lastUpdateTime",
                    "lastProbeTime",
                    "startedAt",
                    "finishedAt",
                    "startTime",
                    "kubectl.kubernetes.io/restartedAt",
                ] {
                    m.remove(key);
                }
                for value in m.values_mut() {
                    strip(value);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out = object.clone();
    strip(&mut out);
    out
}

/// The JSON Pointers where two values differ (for readable assertion messages).
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{at}/{k}"),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, format!("{at}/{i}"), out);
                }
            }
            _ if a != b => out.push(format!("{at}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}
