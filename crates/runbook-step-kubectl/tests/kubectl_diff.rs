//! Differential tests: the same operation done by the executor on one fake
//! cluster and by the real kubectl on another, identical one (same scenario,
//! seed and virtual start), comparing the objects they leave behind
//! (ignoring timestamps, resourceVersion, uid, managedFields) and the
//! verdicts.
//!
//! kubectl is `/usr/bin/kubectl` (or `$KUBECTL`). Without it the tests pass
//! with a loud skip message, unless `KUBECTL_REQUIRED=1`, where they fail.

mod common;

use common::*;
use runbook_fakekube::{FakeCluster, Kind, RunningFake, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

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
        "\n!!!!! SKIPPED: kubectl not found at {}; the differential tests did not run \
         (set KUBECTL, or KUBECTL_REQUIRED=1 to make this fatal) !!!!!\n",
        path.display()
    );
    None
}

/// Two identical fakes: `ours` for the executor, `theirs` for kubectl.
struct Pair {
    ours: Env,
    theirs: RunningFake,
    kubectl: PathBuf,
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Pair {
    async fn start(scenario: &str) -> Option<Pair> {
        let kubectl = kubectl_binary()?;
        let ours = env(scenario).await;
        let theirs = FakeCluster::builder(Scenario::builtin(scenario).expect("scenario"))
            .start_time(start_time())
            .start()
            .await
            .expect("second fake starts");
        let dir = tempfile::tempdir().expect("temp dir");
        theirs
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig");
        Some(Pair {
            ours,
            theirs,
            kubectl,
            dir,
        })
    }

    async fn kubectl(&self, args: &[&str]) -> Run {
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(self.dir.path().join("kubeconfig"))
                .arg("--cache-dir")
                .arg(self.dir.path().join("cache"))
                .args(["-n", NS])
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl finishes within two minutes")
        .expect("kubectl runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args).await;
        assert_eq!(
            run.code, 0,
            "kubectl {args:?}: {}{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    fn advance(&self, by: Duration) {
        self.ours.fake.advance(by);
        self.theirs.advance(by);
    }

    fn theirs_deployment(&self) -> Value {
        self.theirs
            .get(Kind::Deployment, NS, DEPLOY)
            .expect("deployment")
    }

    /// Asserts the two deployments are the same, modulo volatile fields.
    fn same_deployment(&self, what: &str) {
        // Condition messages name ReplicaSets, whose hash covers the
        // restartedAt annotation: two restarts a second apart differ there.
        let strip = |mut d: Value| {
            if let Some(conditions) = d
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
            {
                for c in conditions {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("message");
                    }
                }
            }
            comparable(&d)
        };
        let diff = differences(
            &strip(self.ours.deployment()),
            &strip(self.theirs_deployment()),
        );
        assert!(
            diff.is_empty(),
            "{what}: the executor and kubectl left different deployments: {diff:#?}"
        );
    }

    /// `{revision: change-cause}` from the ReplicaSets of the deployment.
    fn revisions(fake: &RunningFake) -> BTreeMap<i64, String> {
        fake.list(Kind::ReplicaSet, Some(NS))
            .iter()
            .filter_map(|rs| {
                let a = &rs["metadata"]["annotations"];
                let rev = a["deployment.kubernetes.io/revision"]
                    .as_str()?
                    .parse()
                    .ok()?;
                Some((
                    rev,
                    a["kubernetes.io/change-cause"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_status_history_and_undo_match_kubectl() {
    let Some(p) = Pair::start("bad-deploy").await else {
        return;
    };
    // restart
    p.ours
        .ok("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    let out = p
        .kubectl_ok(&["rollout", "restart", "deployment/prod-omendb"])
        .await;
    assert!(out.contains("restarted"), "{out}");
    p.same_deployment("rollout restart");
    let ours = p.ours.deployment();
    assert!(
        ours["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    // status: both give up at the progress deadline of the crashing rollout.
    p.advance(Duration::from_secs(700));
    let (msg, _) = p
        .ours
        .fails("action: rollout-status\nresource: deployment/prod-omendb")
        .await;
    let run = p
        .kubectl(&[
            "rollout",
            "status",
            "deployment/prod-omendb",
            "--timeout=20s",
        ])
        .await;
    assert_ne!(run.code, 0, "kubectl should fail too: {}", run.stdout);
    assert!(
        run.stderr.contains(&msg),
        "ours: {msg}\nkubectl: {}",
        run.stderr
    );
    // history
    let history = p
        .ours
        .ok("action: rollout-history\nresource: deployment/prod-omendb")
        .await;
    let out = p
        .kubectl_ok(&["rollout", "history", "deployment/prod-omendb"])
        .await;
    let theirs: Vec<i64> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let ours: Vec<i64> = history["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert_eq!(ours, theirs, "{out}");
    assert_eq!(Pair::revisions(&p.ours.fake), Pair::revisions(&p.theirs));
    // undo to a named revision, then to the previous one.
    p.ours
        .ok("action: rollout-undo\nresource: deployment/prod-omendb\nto_revision: 2")
        .await;
    p.kubectl_ok(&[
        "rollout",
        "undo",
        "deployment/prod-omendb",
        "--to-revision=2",
    ])
    .await;
    p.same_deployment("rollout undo --to-revision=2");
    p.advance(Duration::from_secs(30));
    p.ours
        .ok("action: rollout-undo\nresource: deployment/prod-omendb")
        .await;
    p.kubectl_ok(&["rollout", "undo", "deployment/prod-omendb"])
        .await;
    p.same_deployment("rollout undo");
    assert_eq!(Pair::revisions(&p.ours.fake), Pair::revisions(&p.theirs));
    // A missing revision: both refuse.
    let (msg, _) = p
        .ours
        .fails("action: rollout-undo\nresource: deployment/prod-omendb\nto_revision: 42")
        .await;
    let run = p
        .kubectl(&[
            "rollout",
            "undo",
            "deployment/prod-omendb",
            "--to-revision=42",
        ])
        .await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&msg),
        "ours: {msg}\nkubectl: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_success_matches_kubectl() {
    let Some(p) = Pair::start("healthy").await else {
        return;
    };
    let out = p
        .ours
        .ok("action: rollout-status\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(out["revision"], 2);
    let stdout = p
        .kubectl_ok(&[
            "rollout",
            "status",
            "deployment/prod-omendb",
            "--timeout=20s",
        ])
        .await;
    assert!(stdout.contains("successfully rolled out"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_three_patch_types_match_kubectl() {
    let Some(p) = Pair::start("healthy").await else {
        return;
    };
    p.ours
        .ok("action: scale\nresource: deployment/prod-omendb\nreplicas: 5")
        .await;
    p.kubectl_ok(&["scale", "deployment/prod-omendb", "--replicas=5"])
        .await;
    p.same_deployment("scale");
    p.advance(Duration::from_secs(20));
    p.same_deployment("scale, after the controller ran");
    let patches = [
        (
            "patch: '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"omendb\",\"resources\":{\"limits\":{\"memory\":\"32Gi\"}}}]}}}}'",
            vec![
                "patch",
                "deployment/prod-omendb",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"omendb","resources":{"limits":{"memory":"32Gi"}}}]}}}}"#,
            ],
        ),
        (
            "patch_type: merge\npatch: '{\"metadata\":{\"labels\":{\"incident\":\"sev1\"}},\"spec\":{\"minReadySeconds\":5}}'",
            vec![
                "patch",
                "deployment/prod-omendb",
                "--type=merge",
                "-p",
                r#"{"metadata":{"labels":{"incident":"sev1"}},"spec":{"minReadySeconds":5}}"#,
            ],
        ),
        (
            "patch_type: json\npatch: '[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":2}]'",
            vec![
                "patch",
                "deployment/prod-omendb",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
            ],
        ),
    ];
    for (ours, theirs) in patches {
        p.ours
            .ok(&format!(
                "action: patch\nresource: deployment/prod-omendb\n{ours}"
            ))
            .await;
        p.kubectl_ok(&theirs).await;
        p.same_deployment(ours);
    }
    p.advance(Duration::from_secs(60));
    p.same_deployment("after the patches rolled out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_events_and_top_match_kubectl() {
    let Some(p) = Pair::start("healthy").await else {
        return;
    };
    // logs -l app=omendb --tail=100: the same lines (kubectl interleaves
    // pods in its own order, so compare sorted).
    let out = p
        .ours
        .ok("action: logs\nselector: app=omendb\ntail: 100")
        .await;
    let mut ours: Vec<String> = out["by_pod"]
        .as_object()
        .expect("by_pod")
        .values()
        .flat_map(|t| {
            t.as_str()
                .unwrap_or("")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut theirs: Vec<String> = p
        .kubectl_ok(&["logs", "-l", "app=omendb", "--tail=100"])
        .await
        .lines()
        .map(str::to_string)
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    // events: the same events.
    let out = p.ours.ok("action: events").await;
    let theirs: Value =
        serde_json::from_str(&p.kubectl_ok(&["get", "events", "-o", "json"]).await).expect("json");
    let key =
        |reason: &Value, object: String| format!("{}|{object}", reason.as_str().unwrap_or(""));
    let mut ours: Vec<String> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| key(&e["reason"], e["object"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut theirs: Vec<String> = theirs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            key(
                &e["reason"],
                format!(
                    "{}/{}",
                    e["involvedObject"]["kind"].as_str().unwrap_or(""),
                    e["involvedObject"]["name"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    ours.sort();
    theirs.sort();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
    // top pods: kubectl prints millicores and MiB.
    let out = p.ours.ok("action: top\nresource: pods").await;
    let table = p.kubectl_ok(&["top", "pods"]).await;
    let theirs: BTreeMap<String, (i64, i64)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cpu = f.get(1)?.strip_suffix('m')?.parse().ok()?;
            let mem = f.get(2)?.strip_suffix("Mi")?.parse().ok()?;
            Some((f[0].to_string(), (cpu, mem)))
        })
        .collect();
    let ours: BTreeMap<String, (i64, i64)> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("").to_string(),
                (
                    i["cpu_millicores"].as_i64().unwrap_or(-1),
                    i["memory_bytes"].as_i64().unwrap_or(-1) / (1024 * 1024),
                ),
            )
        })
        .collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_logs_of_a_starting_pod_match_kubectl() {
    let Some(p) = Pair::start("node-not-ready").await else {
        return;
    };
    // One pod's container has not started: kubectl logs -l fails, and so
    // does the step (keeping the logs it did read).
    let (msg, out) = p.ours.fails("action: logs\nselector: app=omendb").await;
    assert!(msg.contains("is waiting to start"), "{msg}");
    assert!(!out["by_pod"].as_object().expect("by_pod").is_empty());
    let run = p.kubectl(&["logs", "-l", "app=omendb"]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("is waiting to start"), "{}", run.stderr);
    // get nodes: readiness as kubectl's STATUS column shows it.
    let out = p.ours.ok("action: get\nresource: nodes").await;
    let ours: BTreeMap<String, bool> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect();
    let table = p.kubectl_ok(&["get", "nodes"]).await;
    let theirs: BTreeMap<String, bool> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), *f.get(1)? == "Ready"))
        })
        .collect();
    assert_eq!(ours, theirs, "{table}");
    assert_eq!(ours.values().filter(|r| !**r).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_matches_kubectl_output_and_exit_codes() {
    let Some(p) = Pair::start("healthy").await else {
        return;
    };
    let out = p
        .ours
        .ok("action: exec\nresource: deployment/prod-omendb\ncommand: [omendb-ctl, status]")
        .await;
    let run = p
        .kubectl(&[
            "exec",
            "deployment/prod-omendb",
            "--",
            "omendb-ctl",
            "status",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(out["stdout"], run.stdout.as_str());
    assert_eq!(out["exit_code"], 0);
    let (_, out) = p
        .ours
        .fails("action: exec\nresource: deployment/prod-omendb\ncommand: [sh, -c, \"exit 3\"]")
        .await;
    let run = p
        .kubectl(&["exec", "deployment/prod-omendb", "--", "sh", "-c", "exit 3"])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(out["exit_code"], 3);
    // Both picked the same pod: the exec requests name it.
    let ours: Vec<String> = p
        .ours
        .requests("GET")
        .into_iter()
        .filter(|e| e.path.ends_with("/exec"))
        .map(|e| e.path)
        .collect();
    let theirs: Vec<String> = p
        .theirs
        .journal()
        .into_iter()
        .filter(|e| e.path.ends_with("/exec"))
        .map(|e| e.path)
        .collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
}
