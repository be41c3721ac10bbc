//! Fidelity tests: the real `kubectl` against the fake, asserting on its exit
//! code and output and on the objects it leaves behind.
//!
//! kubectl is `/usr/bin/kubectl` (or `$KUBECTL`). Without it these tests
//! pass with a loud skip message, unless `KUBECTL_REQUIRED=1`, where they fail.

use runbook_fakekube::{FakeCluster, Fault, Kind, RunningFake, Scenario};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const NS: &str = "omendb-prod";
const DEPLOY: &str = "prod-omendb";

fn kubectl_binary() -> Option<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map_or_else(|| PathBuf::from("/usr/bin/kubectl"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("KUBECTL_REQUIRED").as_deref() != Ok("1"),
        "KUBECTL_REQUIRED=1 but kubectl was not found at {}",
        path.display()
    );
    eprintln!(
        "\n!!!!! SKIPPED: kubectl not found at {}; set KUBECTL or install it (KUBECTL_REQUIRED=1 makes this fatal) !!!!!\n",
        path.display()
    );
    None
}

/// A started fake plus a kubeconfig and cache dir for kubectl.
struct Harness {
    fake: RunningFake,
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Harness {
    async fn start(scenario: &str) -> Option<Self> {
        Self::start_with(FakeCluster::builder(
            Scenario::builtin(scenario).expect("built-in scenario"),
        ))
        .await
    }

    async fn start_with(builder: runbook_fakekube::Builder) -> Option<Self> {
        let kubectl = kubectl_binary()?;
        let fake = builder.start().await.expect("fake starts");
        let dir = tempfile::tempdir().expect("temp dir");
        fake.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        Some(Self { fake, kubectl, dir })
    }

    async fn run(&self, args: &[&str]) -> Run {
        let output: Output = tokio::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl and insists on success.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(
            run.code, 0,
            "kubectl {args:?} failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    fn deployment(&self) -> Value {
        self.fake
            .get(Kind::Deployment, NS, DEPLOY)
            .expect("deployment exists")
    }

    fn pods(&self) -> Vec<Value> {
        self.fake.list(Kind::Pod, Some(NS))
    }
}

fn image(deployment: &Value) -> &str {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_nodes_and_pods_show_the_not_ready_node() {
    let Some(h) = Harness::start("node-not-ready").await else {
        return;
    };
    let nodes = h.ok(&["get", "nodes"]).await;
    assert!(
        nodes.contains("gke-omendb-prod-pool-1-b51d   NotReady"),
        "{nodes}"
    );
    assert_eq!(nodes.matches(" Ready ").count(), 2, "{nodes}");
    let pods = h.ok(&["get", "pods", "-o", "wide"]).await;
    let bad: Vec<&str> = pods.lines().filter(|l| l.contains("b51d")).collect();
    assert_eq!(bad.len(), 1, "{pods}");
    assert!(bad[0].contains("0/1"), "{pods}");
    assert!(!h.fake.deployment_healthy(NS, DEPLOY));
    // Remedy: delete the stuck pod; its replacement avoids the NotReady node.
    let name = bad[0].split_whitespace().next().expect("pod name");
    h.ok(&["delete", "pod", name]).await;
    h.fake.advance(Duration::from_secs(10));
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
    assert!(
        h.pods()
            .iter()
            .all(|p| p["spec"]["nodeName"] != "gke-omendb-prod-pool-1-b51d")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_fixes_crashloop() {
    let Some(h) = Harness::start("crashloop").await else {
        return;
    };
    let pods = h.ok(&["get", "pods"]).await;
    assert_eq!(pods.matches("CrashLoopBackOff").count(), 3, "{pods}");
    assert!(!h.fake.deployment_healthy(NS, DEPLOY));
    let out = h
        .ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    assert!(
        out.contains("deployment.apps/prod-omendb restarted"),
        "{out}"
    );
    let patch = h
        .fake
        .journal()
        .into_iter()
        .rfind(|e| e.method == "PATCH")
        .expect("a PATCH was sent");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert!(
        patch.body.contains("kubectl.kubernetes.io/restartedAt"),
        "{}",
        patch.body
    );
    h.fake
        .start_ticker(Duration::from_millis(5), Duration::from_secs(1));
    let status = h
        .ok(&[
            "rollout",
            "status",
            "deployment/prod-omendb",
            "--timeout=60s",
        ])
        .await;
    assert!(
        status.contains("deployment \"prod-omendb\" successfully rolled out"),
        "{status}"
    );
    h.fake.stop_ticker();
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
    let history = h
        .ok(&["rollout", "history", "deployment/prod-omendb"])
        .await;
    assert!(history.lines().any(|l| l.starts_with("3 ")), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_reports_the_progress_deadline() {
    let Some(h) = Harness::start("unrecoverable").await else {
        return;
    };
    h.ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    h.fake
        .start_ticker(Duration::from_millis(2), Duration::from_secs(2));
    let run = h
        .run(&[
            "rollout",
            "status",
            "deployment/prod-omendb",
            "--timeout=60s",
        ])
        .await;
    h.fake.stop_ticker();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("deployment \"prod-omendb\" exceeded its progress deadline"),
        "{}",
        run.stderr
    );
    let progressing = h.deployment()["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing").cloned())
        .expect("Progressing condition");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_times_out_while_pods_crash() {
    let Some(h) = Harness::start("crashloop").await else {
        return;
    };
    let run = h
        .run(&[
            "rollout",
            "status",
            "deployment/prod-omendb",
            "--timeout=2s",
        ])
        .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("0 of 3 updated replicas are available"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("timed out waiting for the condition"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_fixes_bad_deploy_and_restart_does_not() {
    let Some(h) = Harness::start("bad-deploy").await else {
        return;
    };
    let history = h
        .ok(&["rollout", "history", "deployment/prod-omendb"])
        .await;
    assert!(
        history.contains("3         deploy omendb 0.10.0"),
        "{history}"
    );
    h.ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    h.fake.advance(Duration::from_secs(180));
    assert!(
        !h.fake.deployment_healthy(NS, DEPLOY),
        "a restart keeps the bad image"
    );
    // After the restart the previous revision is the bad one, so name the good one.
    let out = h
        .ok(&[
            "rollout",
            "undo",
            "deployment/prod-omendb",
            "--to-revision=2",
        ])
        .await;
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(image(&h.deployment()), "ghcr.io/omendb/omendb:0.9.1");
    let undo = h
        .fake
        .journal()
        .into_iter()
        .rfind(|e| e.method == "PATCH")
        .expect("undo PATCH");
    assert_eq!(
        undo.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    h.fake
        .start_ticker(Duration::from_millis(5), Duration::from_secs(1));
    h.ok(&[
        "rollout",
        "status",
        "deployment/prod-omendb",
        "--timeout=60s",
    ])
    .await;
    h.fake.stop_ticker();
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
    // The reused ReplicaSet took the next revision; 2 left the history.
    let history = h
        .ok(&["rollout", "history", "deployment/prod-omendb"])
        .await;
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, vec!["1", "3", "4", "5"], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_rollout_undo_and_server_dry_run() {
    let Some(h) = Harness::start("bad-deploy").await else {
        return;
    };
    let before = h.deployment();
    let out = h
        .ok(&[
            "rollout",
            "undo",
            "deployment/prod-omendb",
            "--dry-run=server",
        ])
        .await;
    assert!(out.contains("(server dry run)"), "{out}");
    assert_eq!(
        h.deployment()["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert!(
        h.fake
            .journal()
            .iter()
            .any(|e| e.method == "PATCH" && e.query.contains("dryRun=All"))
    );
    h.ok(&["rollout", "undo", "deployment/prod-omendb"]).await;
    assert_eq!(image(&h.deployment()), "ghcr.io/omendb/omendb:0.9.1");
    h.fake.advance(Duration::from_secs(120));
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_the_three_patch_types() {
    let Some(h) = Harness::start("healthy").await else {
        return;
    };
    let out = h
        .ok(&["scale", "deployment/prod-omendb", "--replicas=5"])
        .await;
    assert!(out.contains("scaled"), "{out}");
    let scale = h
        .fake
        .journal()
        .into_iter()
        .rfind(|e| e.method == "PATCH")
        .expect("scale PATCH");
    assert!(
        scale.path.ends_with("/deployments/prod-omendb/scale"),
        "{}",
        scale.path
    );
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    h.fake.advance(Duration::from_secs(10));
    assert_eq!(h.pods().len(), 5);
    assert!(h.fake.deployment_healthy(NS, DEPLOY));

    h.ok(&[
        "patch",
        "deployment",
        "prod-omendb",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
    ])
    .await;
    assert_eq!(h.deployment()["spec"]["replicas"], 2);
    h.ok(&[
        "patch",
        "deployment",
        "prod-omendb",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"team":"db"}}}"#,
    ])
    .await;
    assert_eq!(h.deployment()["metadata"]["labels"]["team"], "db");
    let generation = h.deployment()["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    h.ok(&["patch", "deployment", "prod-omendb", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"omendb","env":[{"name":"MODE","value":"safe"}]}]}}}}"#]).await;
    let d = h.deployment();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["name"], "MODE");
    assert_eq!(
        container["image"], "ghcr.io/omendb/omendb:0.9.1",
        "strategic merge keeps the rest of the container"
    );
    assert_eq!(d["metadata"]["generation"].as_i64(), Some(generation + 1));

    let before = h.deployment();
    h.ok(&[
        "patch",
        "deployment",
        "prod-omendb",
        "--dry-run=server",
        "-p",
        r#"{"spec":{"replicas":9}}"#,
    ])
    .await;
    assert_eq!(
        h.deployment(),
        before,
        "a server-side dry run stores nothing"
    );

    let bad = h
        .run(&[
            "patch",
            "deployment",
            "prod-omendb",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":-1}}"#,
        ])
        .await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains(
            "The Deployment \"prod-omendb\" is invalid: spec.replicas: Invalid value: -1"
        ),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_the_memory_limit_fixes_oomkilled() {
    let Some(h) = Harness::start("oomkilled").await else {
        return;
    };
    let pod = h.pods()[0]["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_owned();
    let describe = h.ok(&["describe", "pod", &pod]).await;
    assert!(describe.contains("OOMKilled"), "{describe}");
    assert!(describe.contains("Exit Code:    137"), "{describe}");
    assert!(
        describe.contains("BackOff"),
        "events are listed: {describe}"
    );
    h.ok(&["patch", "deployment", "prod-omendb", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"omendb","resources":{"limits":{"memory":"16Gi"}}}]}}}}"#]).await;
    h.fake
        .start_ticker(Duration::from_millis(5), Duration::from_secs(1));
    h.ok(&[
        "rollout",
        "status",
        "deployment/prod-omendb",
        "--timeout=60s",
    ])
    .await;
    h.fake.stop_ticker();
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_events_and_top() {
    let Some(h) = Harness::start("crashloop").await else {
        return;
    };
    let logs = h.ok(&["logs", "-l", "app=omendb", "--tail=2"]).await;
    assert_eq!(logs.lines().count(), 6, "{logs}");
    assert_eq!(logs.matches("stale lock file").count(), 3, "{logs}");
    let log_requests: Vec<_> = h
        .fake
        .journal()
        .into_iter()
        .filter(|e| e.path.ends_with("/log"))
        .collect();
    assert_eq!(log_requests.len(), 3);
    assert!(
        log_requests
            .iter()
            .all(|e| e.query.contains("container=omendb") && e.query.contains("tailLines=2"))
    );
    let bad = h
        .run(&["logs", "deployment/prod-omendb", "-c", "nope"])
        .await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("container nope is not valid"),
        "{}",
        bad.stderr
    );

    // Field selectors: one the API server has for events, one it has not.
    let backoff = h
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=BackOff",
            "-o",
            "name",
        ])
        .await;
    assert!(!backoff.trim().is_empty(), "{backoff}");
    let unsupported = h
        .run(&["get", "deployments", "--field-selector", "spec.replicas=3"])
        .await;
    assert_eq!(unsupported.code, 1);
    assert!(
        unsupported
            .stderr
            .contains("Error from server (BadRequest)")
            && unsupported
                .stderr
                .contains("field label not supported: spec.replicas"),
        "{}",
        unsupported.stderr
    );

    let events = h.ok(&["get", "events"]).await;
    assert!(
        events.contains("BackOff")
            && events.contains("Back-off restarting failed container omendb"),
        "{events}"
    );
    assert!(
        events.contains("ScalingReplicaSet") || events.contains("SuccessfulCreate"),
        "{events}"
    );

    // Crash-looping containers are mostly not running, so heal the pods first.
    h.ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    h.fake.advance(Duration::from_secs(120));
    let top = h.ok(&["top", "pods"]).await;
    assert_eq!(
        top.lines()
            .filter(|l| l.starts_with("prod-omendb-"))
            .count(),
        3,
        "{top}"
    );
    assert!(top.contains("Mi"), "{top}");
    let nodes = h.ok(&["top", "nodes"]).await;
    assert_eq!(nodes.lines().count(), 4, "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_propagates_exit_codes_and_disk_cleanup_fixes_disk_full() {
    let Some(h) = Harness::start("disk-full").await else {
        return;
    };
    let curl = h
        .run(&[
            "exec",
            "deployment/prod-omendb",
            "--",
            "curl",
            "-f",
            "localhost:3000/ready",
        ])
        .await;
    assert_eq!(curl.code, 7, "{}\n{}", curl.stdout, curl.stderr);
    assert!(curl.stderr.contains("Failed to connect"), "{}", curl.stderr);
    let df = h
        .ok(&["exec", "deployment/prod-omendb", "--", "df", "-h"])
        .await;
    assert!(
        df.lines()
            .any(|l| l.contains("/var/lib/omendb") && l.contains("100%")),
        "{df}"
    );
    let exec = h
        .fake
        .journal()
        .into_iter()
        .rfind(|e| e.path.ends_with("/exec"))
        .expect("exec request");
    assert!(exec.query.contains("command=df"), "{}", exec.query);
    h.ok(&[
        "exec",
        "deployment/prod-omendb",
        "--",
        "rm",
        "-rf",
        "/var/lib/omendb/tmp",
    ])
    .await;
    let df = h
        .ok(&["exec", "deployment/prod-omendb", "--", "df", "-h"])
        .await;
    assert!(
        df.lines()
            .any(|l| l.contains("/var/lib/omendb") && l.contains("55%")),
        "{df}"
    );
    h.fake.advance(Duration::from_secs(10));
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
    let curl = h
        .run(&[
            "exec",
            "deployment/prod-omendb",
            "--",
            "curl",
            "-f",
            "localhost:3000/ready",
        ])
        .await;
    assert_eq!(curl.code, 0, "{}", curl.stderr);
    assert!(curl.stdout.contains("ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanding_the_pvc_fixes_disk_full() {
    let Some(h) = Harness::start("disk-full").await else {
        return;
    };
    h.ok(&[
        "patch",
        "pvc",
        "omendb-data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"200Gi"}}}}"#,
    ])
    .await;
    h.fake.advance(Duration::from_secs(10));
    assert!(h.fake.deployment_healthy(NS, DEPLOY));
    let pvc = h.ok(&["get", "pvc"]).await;
    assert!(pvc.contains("200Gi"), "{pvc}");
    let shrink = h
        .run(&[
            "patch",
            "pvc",
            "omendb-data",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"10Gi"}}}}"#,
        ])
        .await;
    assert_eq!(shrink.code, 1);
    assert!(
        shrink
            .stderr
            .contains("can not be less than previous value"),
        "{}",
        shrink.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_forbidden_reaches_kubectl() {
    let Some(h) = Harness::start("healthy").await else {
        return;
    };
    h.fake.inject_fault(
        Fault::new(Fault::forbidden())
            .verb("patch")
            .resource("deployments")
            .times(1),
    );
    let run = h
        .run(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("deployments.apps \"prod-omendb\" is forbidden: User \"system:serviceaccount:omendb-prod:runbook\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"omendb-prod\""),
        "{}", run.stderr);
    h.ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_minor_version_works() {
    for minor in 27..=33 {
        let builder = FakeCluster::builder(Scenario::builtin("healthy").expect("built-in"))
            .git_version(format!("v1.{minor}.3"));
        let Some(h) = Harness::start_with(builder).await else {
            return;
        };
        let out = h.ok(&["get", "deployment", "prod-omendb"]).await;
        assert!(out.contains("3/3"), "kubectl 1.{minor}: {out}");
        let version = h.ok(&["version", "-o", "json"]).await;
        assert!(
            version.contains(&format!("\"gitVersion\": \"v1.{minor}.3\"")),
            "{version}"
        );
        let history = h
            .ok(&["rollout", "history", "deployment/prod-omendb"])
            .await;
        assert!(
            history.contains("deploy omendb 0.9.1"),
            "kubectl 1.{minor}: {history}"
        );
    }
}
