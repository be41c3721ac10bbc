//! The executor against the fake API server: every action's outputs, the
//! requests it sends (from the fake's journal), server-side dry run, every
//! `rollback: auto`, rollout waits, exec exit codes and error messages.

mod common;

use common::*;
use runbook_engine::{StepContextBuilder, StepExecutor, StepMessage, StepOutcome};
use runbook_fakekube::{Fault, FaultKind, Kind};
use serde_json::{Value, json};
use std::time::Duration;

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn get_one_object_a_list_and_short_names() {
    let env = env("healthy").await;
    let out = env
        .ok("action: get\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(out["object"]["metadata"]["name"], DEPLOY);
    assert_eq!(out["count"], 1);
    assert_eq!(out["pods"], Value::Null);
    let out = env.ok("action: get\nresource: deploy").await;
    assert_eq!(out["count"], 1);
    assert_eq!(out["object"], Value::Null);
    assert_eq!(out["items"][0]["kind"], "Deployment");
    let out = env.ok("action: get\nresource: pvc/omendb-data").await;
    assert_eq!(out["object"]["kind"], "PersistentVolumeClaim");
    let out = env.ok("action: get\nresource: no").await;
    assert_eq!(out["count"], 3);
    let out = env
        .ok("action: get\nresource: pods\nselector: app=omendb")
        .await;
    assert_eq!(out["count"], 3);
    let pods = out["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 3);
    for p in pods {
        assert_eq!(p["phase"], "Running");
        assert_eq!(p["ready"], true);
        assert_eq!(p["restarts"], 0);
        assert_eq!(p["reasons"], json!([]));
    }
    let lists: Vec<_> = env
        .requests("GET")
        .into_iter()
        .filter(|e| e.path == format!("/api/v1/namespaces/{NS}/pods"))
        .collect();
    assert!(
        lists
            .iter()
            .any(|e| e.query.contains("labelSelector=app%3Domendb")),
        "{lists:?}"
    );
    let (msg, _) = env.fails("action: get\nresource: widgets").await;
    assert!(
        msg.contains("doesn't have a resource type \"widgets\""),
        "{msg}"
    );
}

#[tokio::test]
async fn pod_reasons_show_oomkilled_after_restart_and_crashloop() {
    let env = env("oomkilled").await;
    env.fake.advance(Duration::from_secs(60));
    let out = env
        .ok("action: get\nresource: po\nselector: app=omendb")
        .await;
    let reasons: Vec<String> = out["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .flat_map(|p| strs(&p["reasons"]))
        .collect();
    assert!(reasons.iter().any(|r| r == "OOMKilled"), "{reasons:?}");
    let env = common::env("crashloop").await;
    env.fake.advance(Duration::from_secs(60));
    let out = env.ok("action: get\nresource: pods").await;
    let pods = out["pods"].as_array().expect("pods");
    assert!(
        pods.iter().all(|p| p["restarts"].as_i64() > Some(0)),
        "{pods:?}"
    );
    assert!(
        pods.iter()
            .any(|p| strs(&p["reasons"]).contains(&"CrashLoopBackOff".to_string())),
        "{pods:?}"
    );
}

#[tokio::test]
async fn logs_by_selector_prefix_lines_and_default_tail() {
    let env = env("healthy").await;
    let out = env.ok("action: logs\nselector: app=omendb").await;
    let by_pod = out["by_pod"].as_object().expect("by_pod");
    assert_eq!(by_pod.len(), 3);
    let text = out["text"].as_str().expect("text");
    for name in by_pod.keys() {
        assert!(
            text.contains(&format!("[pod/{name}/omendb] ready: serving queries")),
            "{text}"
        );
    }
    let logs: Vec<_> = env
        .requests("GET")
        .into_iter()
        .filter(|e| e.path.ends_with("/log"))
        .collect();
    assert_eq!(logs.len(), 3);
    for e in &logs {
        assert!(e.query.contains("tailLines=10"), "{e:?}");
        assert!(e.query.contains("container=omendb"), "{e:?}");
    }
    env.fake.clear_journal();
    let out = env
        .ok("action: logs\nresource: deployment/prod-omendb\ntail: 2")
        .await;
    assert_eq!(out["by_pod"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(
        out["text"],
        "loaded 42 segments (12.4 GiB) in 1.8s\nlistening on 0.0.0.0:3000\nready: serving queries\n"
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let (msg, _) = env
        .fails("action: logs\nselector: app=omendb\ncontainer: nope")
        .await;
    assert!(msg.contains("container nope is not valid"), "{msg}");
}

#[tokio::test]
async fn events_sorted_and_filtered_by_object() {
    let env = env("crashloop").await;
    env.fake.advance(Duration::from_secs(30));
    let out = env.ok("action: events").await;
    let items = out["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert_eq!(out["count"], items.len());
    let times: Vec<&str> = items
        .iter()
        .filter_map(|i| i["last_timestamp"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert!(items.iter().any(|i| i["reason"] == "BackOff"), "{items:?}");
    let deploy_events = env.ok("action: events\nfor: deployment/prod-omendb").await;
    for i in deploy_events["items"].as_array().expect("items") {
        assert_eq!(i["object"], "Deployment/prod-omendb");
    }
    let q = env
        .requests("GET")
        .into_iter()
        .filter(|e| e.path.ends_with("/events"))
        .map(|e| e.query)
        .collect::<Vec<_>>();
    assert!(
        q.iter()
            .any(|q| q.contains("involvedObject.kind%3DDeployment")
                && q.contains("involvedObject.name%3Dprod-omendb")),
        "{q:?}"
    );
}

/// A `resource` rendered to a kind other than pods next to a selector is
/// refused at run time, as a literal one is by validate: the selector
/// reads pods, and the kind would be ignored.
#[tokio::test]
async fn logs_with_a_selector_refuses_a_rendered_kind_that_is_not_pods() {
    let env = env("healthy").await;
    let (msg, _) = env
        .fails("action: logs\nresource: '{{lower \"Deployments\"}}'\nselector: app=omendb")
        .await;
    assert_eq!(
        msg,
        "`logs` with a `selector` reads the selected pods, not deployments; drop `resource`"
    );
    env.ok("action: logs\nresource: pods\nselector: app=omendb")
        .await;
}

/// Pods that exist but have no metrics (crash-looping, not running) fail
/// the step, as `kubectl top` fails: an empty list would pass a later
/// "every pod under its limit" check.
#[tokio::test]
async fn top_fails_when_no_pod_it_selects_has_metrics() {
    let env = env("crashloop").await;
    let (msg, _) = env
        .fails("action: top\nresource: pods\nselector: app=omendb")
        .await;
    assert!(
        msg.starts_with(&format!("metrics not available for pod {NS}/prod-omendb-")),
        "{msg}"
    );
    // A selector that matches no pod is an empty table, as in kubectl.
    let out = env
        .ok("action: top\nresource: pods\nselector: app=nothing-here")
        .await;
    assert_eq!(out["items"], serde_json::json!([]));
}

#[tokio::test]
async fn top_pods_and_nodes_parse_quantities() {
    let env = env("healthy").await;
    // The raw metrics, through the group-qualified kind (the fake reports
    // CPU in nanocores and memory in KiB, like metrics-server).
    let raw = env.ok("action: get\nresource: pods.metrics.k8s.io").await;
    let mut expected = std::collections::BTreeMap::new();
    for item in raw["items"].as_array().expect("items") {
        let (mut cpu, mut mem) = (0i64, 0i64);
        for c in item["containers"].as_array().expect("containers") {
            let nanos: i64 = c["usage"]["cpu"]
                .as_str()
                .and_then(|s| s.strip_suffix('n'))
                .and_then(|s| s.parse().ok())
                .expect("nanocores");
            let ki: i64 = c["usage"]["memory"]
                .as_str()
                .and_then(|s| s.strip_suffix("Ki"))
                .and_then(|s| s.parse().ok())
                .expect("KiB");
            cpu += (nanos + 999_999) / 1_000_000;
            mem += ki * 1024;
        }
        expected.insert(
            item["metadata"]["name"].as_str().expect("name").to_string(),
            (cpu, mem),
        );
    }
    assert_eq!(expected.len(), 3);
    let out = env.ok("action: top\nresource: pods").await;
    let items = out["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    for i in items {
        let (cpu, mem) = expected[i["name"].as_str().expect("name")];
        assert_eq!(i["cpu_millicores"], cpu, "{i}");
        assert_eq!(i["memory_bytes"], mem, "{i}");
        // 320m and 6Gi per container, give or take the fake's jitter.
        assert!((288..=352).contains(&cpu), "{i}");
    }
    let out = env.ok("action: top\nresource: nodes").await;
    let nodes = out["items"].as_array().expect("items");
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|n| n["cpu_millicores"].as_i64() > Some(350)),
        "{nodes:?}"
    );
    assert!(
        env.fake
            .journal()
            .iter()
            .any(|e| e.path.starts_with("/apis/metrics.k8s.io/"))
    );
}

#[tokio::test]
async fn scale_patches_the_scale_subresource_and_rolls_back() {
    let env = env("healthy").await;
    let step =
        env.step("action: scale\nresource: deployment/prod-omendb\nreplicas: 5\nrollback: auto");
    let (ctx, _rx) = ctx(false);
    let out = expect_ok(env.exec.run(&step, &ctx).await);
    assert_eq!(out["previous_replicas"], 3);
    assert_eq!(out["replicas"], 5);
    assert_eq!(env.deployment()["spec"]["replicas"], 5);
    let patches = env.requests("PATCH");
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].path,
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOY}/scale")
    );
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&patches[0].body).expect("json"),
        json!({"spec": {"replicas": 5}})
    );
    let back = expect_ok(env.exec.rollback_auto(&step, &out, &ctx).await);
    assert_eq!(back["previous_replicas"], 5);
    assert_eq!(back["replicas"], 3);
    assert_eq!(env.deployment()["spec"]["replicas"], 3);
}

#[tokio::test]
async fn dry_run_sends_dry_run_all_on_every_mutation_and_changes_nothing() {
    let env = env("healthy").await;
    env.fake.advance(Duration::from_secs(5));
    let before = env.deployment();
    let pods_before = env.fake.list(Kind::Pod, Some(NS)).len();
    let pod = env.fake.list(Kind::Pod, Some(NS))[0]["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_string();
    let bodies = [
        "action: scale\nresource: deployment/prod-omendb\nreplicas: 7".to_string(),
        "action: rollout-restart\nresource: deployment/prod-omendb".to_string(),
        "action: rollout-undo\nresource: deployment/prod-omendb".to_string(),
        "action: patch\nresource: deployment/prod-omendb\npatch: {spec: {replicas: 9}}".to_string(),
        "action: patch\nresource: deployment/prod-omendb\npatch_type: merge\npatch: {metadata: {labels: {x: y}}}"
            .to_string(),
        "action: patch\nresource: deployment/prod-omendb\npatch_type: json\npatch: [{op: replace, path: /spec/replicas, value: 1}]"
            .to_string(),
        format!("action: delete\nresource: pod/{pod}"),
    ];
    for body in &bodies {
        let (ctx, mut messages) = ctx(true);
        let out = expect_ok(env.exec.run(&env.step(body), &ctx).await);
        assert_eq!(
            out.get("dry_run"),
            Some(&Value::Bool(true)),
            "{body}: {out:?}"
        );
        // Its ✓ must not read as a change made.
        drop(ctx);
        let mut said = Vec::new();
        while let Ok(message) = messages.try_recv() {
            if let StepMessage::Progress { message, .. } = message {
                said.push(message);
            }
        }
        assert!(
            said.iter()
                .any(|m| m.starts_with("sent as a server-side dry run")),
            "{body}: {said:?}"
        );
    }
    // The step-level flag does the same without --dry-run.
    let out = env
        .ok("action: scale\nresource: deployment/prod-omendb\nreplicas: 4\ndry_run: true")
        .await;
    assert_eq!(out["replicas"], 4, "the would-be result");
    assert_eq!(out["previous_replicas"], 3);
    let writes: Vec<_> = env
        .fake
        .journal()
        .into_iter()
        .filter(|e| matches!(e.method.as_str(), "PATCH" | "DELETE" | "POST" | "PUT"))
        .collect();
    assert_eq!(writes.len(), bodies.len() + 1);
    for w in &writes {
        assert!(w.query.contains("dryRun=All"), "{w:?}");
        // A DELETE also carries it in the DeleteOptions body, which is what
        // the API server reads when a body is present.
        if w.method == "DELETE" {
            assert!(w.body.contains("\"dryRun\":[\"All\"]"), "{w:?}");
        }
    }
    assert!(
        env.fake.get(Kind::Pod, NS, &pod).is_some(),
        "pod {pod} still exists"
    );
    assert_eq!(env.fake.list(Kind::Pod, Some(NS)).len(), pods_before);
    assert_eq!(comparable(&env.deployment()), comparable(&before));
    // exec has no server-side dry run: it is not run.
    match env
        .run_dry("action: exec\nresource: deployment/prod-omendb\ncommand: [rm, -rf, /tmp/x]")
        .await
    {
        StepOutcome::WouldRun(text) => assert!(text.contains("rm"), "{text}"),
        other => panic!("expected WouldRun, got {other:?}"),
    }
}

#[tokio::test]
async fn rollout_restart_sends_kubectls_patch_and_rolls_back_to_the_previous_revision() {
    let env = env("healthy").await;
    let before = env.deployment();
    let step =
        env.step("action: rollout-restart\nresource: deployment/prod-omendb\nrollback: auto");
    let (ctx, _rx) = ctx(false);
    let out = expect_ok(env.exec.run(&step, &ctx).await);
    assert_eq!(out["previous_revision"], 2);
    let at = out["restarted_at"]
        .as_str()
        .expect("restarted_at")
        .to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "{at}");
    let d = env.deployment();
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        at
    );
    let patch = env.requests("PATCH").pop().expect("a patch");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert!(
        patch.query.contains("fieldManager=kubectl-rollout"),
        "{patch:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&patch.body).expect("json"),
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
    );
    env.fake.advance(Duration::from_secs(60));
    let history = env
        .ok("action: rollout-history\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(history["current_revision"], 3);
    // rollback: auto → undo to revision 2, restoring the template.
    let back = expect_ok(env.exec.rollback_auto(&step, &out, &ctx).await);
    assert_eq!(back["to_revision"], 2);
    assert_eq!(back["from_revision"], 3);
    let undo = env.requests("PATCH").pop().expect("undo patch");
    assert_eq!(
        undo.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    let ops: Value = serde_json::from_str(&undo.body).expect("json");
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    assert_eq!(ops[1]["path"], "/metadata/annotations");
    assert_eq!(template(&env.deployment()), template(&before));
}

#[tokio::test]
async fn a_restarts_rollback_after_an_undo_finds_the_renumbered_revision() {
    // The remedy ladder of the spec: restart (rollback: auto), then undo,
    // then something fails and the restart's rollback runs.
    let env = env("healthy").await;
    let before = env.deployment();
    let restart =
        env.step("action: rollout-restart\nresource: deployment/prod-omendb\nrollback: auto");
    let (ctx, _rx) = ctx(false);
    let out = expect_ok(env.exec.run(&restart, &ctx).await);
    assert_eq!(out["previous_revision"], 2);
    env.fake.advance(Duration::from_secs(60));
    let undo = env
        .ok("action: rollout-undo\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(undo["to_revision"], 2);
    env.fake.advance(Duration::from_secs(60));
    // Revision 2 came back as 4; the pre-restart template is current.
    let history = env
        .ok("action: rollout-history\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(history["current_revision"], 4);
    let back = expect_ok(env.exec.rollback_auto(&restart, &out, &ctx).await);
    assert_eq!(back["skipped"], true, "{back:?}");
    assert_eq!(back["to_revision"], 4);
    assert_eq!(template(&env.deployment()), template(&before));
}

#[tokio::test]
async fn rollout_restart_refuses_a_paused_deployment() {
    let env = env("healthy").await;
    env.ok("action: patch\nresource: deployment/prod-omendb\npatch: {spec: {paused: true}}")
        .await;
    let (msg, _) = env
        .fails("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    assert!(msg.contains("is paused"), "{msg}");
    let (msg, _) = env
        .fails("action: rollout-undo\nresource: deployment/prod-omendb")
        .await;
    assert!(msg.contains("is paused"), "{msg}");
}

#[tokio::test]
async fn rollout_status_completes_when_the_rollout_does() {
    let env = env("healthy").await;
    let out = env
        .ok("action: rollout-status\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(out["ready_replicas"], 3);
    assert_eq!(out["updated_replicas"], 3);
    assert_eq!(out["revision"], 2);
    env.ok("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    env.fake
        .start_ticker(Duration::from_millis(20), Duration::from_secs(2));
    let (ctx, mut rx) = ctx(false);
    let step = env.step("action: rollout-status\nresource: deployment/prod-omendb");
    let out = expect_ok(
        tokio::time::timeout(Duration::from_secs(60), env.exec.run(&step, &ctx))
            .await
            .expect("finishes within a minute"),
    );
    env.fake.stop_ticker();
    assert_eq!(out["revision"], 3);
    assert_eq!(out["updated_replicas"], 3);
    let mut progress = Vec::new();
    while let Ok(m) = rx.try_recv() {
        if let StepMessage::Progress { message, .. } = m {
            progress.push(message);
        }
    }
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("Waiting for deployment")),
        "{progress:?}"
    );
    assert_eq!(
        progress.last().map(String::as_str),
        Some("deployment \"prod-omendb\" successfully rolled out")
    );
    // It watched rather than polled.
    assert!(
        env.fake
            .journal()
            .iter()
            .any(|e| e.query.contains("watch=true")),
        "no watch request"
    );
}

/// Under `--dry-run` the wait is for a rollout the dry-run changes never
/// started: the status is read once, and an incomplete rollout is what the
/// real run would wait for, not a failure.
#[tokio::test]
async fn rollout_status_under_dry_run_reads_once_and_does_not_wait() {
    let env = env("bad-deploy").await;
    let started = std::time::Instant::now();
    let body = "action: rollout-status\nresource: deployment/prod-omendb";
    match env.run_dry(body).await {
        StepOutcome::WouldRun(text) => assert!(
            text.starts_with("would wait for deployment \"prod-omendb\" to roll out; now: "),
            "{text}"
        ),
        other => panic!("expected would-run, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        !env.fake
            .journal()
            .iter()
            .any(|e| e.query.contains("watch=true")),
        "a dry run does not watch"
    );
    let healthy = self::env("healthy").await;
    let out = expect_ok(healthy.run_dry(body).await);
    assert_eq!(out["ready_replicas"], 3);
    assert_eq!(out["dry_run"], true);
}

#[tokio::test]
async fn rollout_status_fails_on_progress_deadline_and_stops_when_cancelled() {
    let env = env("bad-deploy").await;
    let (ctx, _rx) = ctx(false);
    let cancel = tokio_util_token(&ctx);
    let step = env.step("action: rollout-status\nresource: deployment/prod-omendb");
    let started = std::time::Instant::now();
    let waiting = env.exec.run(&step, &ctx);
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(waiting, canceller);
    let (msg, out) = expect_failed(outcome);
    assert!(msg.contains("stopped waiting for deployment"), "{msg}");
    assert!(out.contains_key("updated_replicas"));
    assert!(started.elapsed() < Duration::from_secs(20));
    // A new rollout of the crashing image never becomes available; after
    // progressDeadlineSeconds (600) the controller gives up.
    env.ok("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    env.fake.advance(Duration::from_secs(700));
    let (msg, out) = env
        .fails("action: rollout-status\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(
        msg,
        "deployment \"prod-omendb\" exceeded its progress deadline"
    );
    assert_eq!(out["revision"], 4);
}

/// Runs `body` and stops it after `after`, as the step's timeout would.
async fn stopped_after(env: &Env, body: &str, after: Duration) -> String {
    let (ctx, _rx) = ctx(false);
    let cancel = tokio_util_token(&ctx);
    let step = env.step(body);
    let running = env.exec.run(&step, &ctx);
    let canceller = async {
        tokio::time::sleep(after).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(running, canceller);
    expect_failed(outcome).0
}

/// A server that stops answering is named, whether a plain call or a
/// rollout's watch was waiting on it: the record of the incident must not
/// blame the rollout for a lost API server.
#[tokio::test]
async fn a_wait_on_a_server_that_stopped_answering_says_so() {
    let slow = env("bad-deploy").await;
    slow.fake.inject_fault(
        Fault::new(FaultKind::Latency(Duration::from_secs(60)))
            .verb("get")
            .resource("deployments"),
    );
    let msg = stopped_after(
        &slow,
        "action: get\nresource: deployment/prod-omendb",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        msg,
        format!(
            "cancelled before the Kubernetes API call finished (talking to context \"fakekube\", server {})",
            slow.fake.url()
        )
    );
    let watching = env("bad-deploy").await;
    watching.fake.inject_fault(
        Fault::new(FaultKind::InternalError)
            .verb("watch")
            .resource("deployments")
            .times(1000),
    );
    let (ctx, _rx) = ctx(false);
    let cancel = tokio_util_token(&ctx);
    let step = watching.step("action: rollout-status\nresource: deployment/prod-omendb");
    let running = watching.exec.run(&step, &ctx);
    // Once the wait has read the deployment, reads fail too: the server
    // is gone for the watch and for a fresh read alike.
    let fake = &watching.fake;
    let later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fake.inject_fault(
            Fault::new(FaultKind::InternalError)
                .verb("get")
                .resource("deployments")
                .times(1000),
        );
        // The watch retries after a backoff of about a second.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(running, later);
    let msg = expect_failed(outcome).0;
    assert!(
        msg.starts_with(
            "stopped waiting for deployment \"prod-omendb\" to roll out; last status: "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("; after it, the watch and fresh reads of the deployment were failing ("),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("server {})", watching.fake.url())),
        "{msg}"
    );
}

/// A watch that keeps failing (a proxy that refuses watches) does not
/// hide a rollout that completes: the deployment is read afresh after
/// each failure, as kubectl relists.
#[tokio::test]
async fn a_rollout_completes_even_when_every_watch_fails() {
    let env = env("healthy").await;
    env.ok("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    env.fake.inject_fault(
        Fault::new(FaultKind::InternalError)
            .verb("watch")
            .resource("deployments")
            .times(1000),
    );
    env.fake
        .start_ticker(Duration::from_millis(20), Duration::from_secs(2));
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        env.ok("action: rollout-status\nresource: deployment/prod-omendb"),
    )
    .await
    .expect("the rollout is seen complete");
    assert_eq!(out["ready_replicas"], 3, "{out:?}");
}

fn tokio_util_token(ctx: &runbook_engine::StepContext) -> tokio_util::sync::CancellationToken {
    ctx.cancelled().clone()
}

#[tokio::test]
async fn rollout_history_lists_controlled_revisions() {
    let env = env("bad-deploy").await;
    let out = env
        .ok("action: rollout-history\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(
        out["revisions"],
        json!([
            {"revision": 1, "change_cause": "deploy omendb 0.9.0"},
            {"revision": 2, "change_cause": "deploy omendb 0.9.1"},
            {"revision": 3, "change_cause": "deploy omendb 0.10.0"},
        ])
    );
    assert_eq!(out["current_revision"], 3);
}

#[tokio::test]
async fn rollout_undo_previous_named_missing_and_already_current() {
    let env = env("bad-deploy").await;
    let out = env
        .ok("action: rollout-undo\nresource: deployment/prod-omendb")
        .await;
    assert_eq!(out["from_revision"], 3);
    assert_eq!(out["to_revision"], 2);
    let image = |d: &Value| d["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image(&env.deployment()), "ghcr.io/omendb/omendb:0.9.1");
    let (msg, _) = env
        .fails("action: rollout-undo\nresource: deployment/prod-omendb\nto_revision: 99")
        .await;
    assert_eq!(msg, "unable to find specified revision 99 in history");
    env.fake.advance(Duration::from_secs(5));
    let out = env
        .ok("action: rollout-undo\nresource: deployment/prod-omendb\nto_revision: 1")
        .await;
    assert_eq!(out["to_revision"], 1);
    assert_eq!(image(&env.deployment()), "ghcr.io/omendb/omendb:0.9.0");
    env.fake.advance(Duration::from_secs(5));
    // Revision 1 was reused and renumbered; undoing to the current template skips.
    let history = env
        .ok("action: rollout-history\nresource: deployment/prod-omendb")
        .await;
    let current = history["current_revision"].as_i64().expect("current");
    let patches = env.requests("PATCH").len();
    let out = env
        .ok(&format!(
            "action: rollout-undo\nresource: deployment/prod-omendb\nto_revision: {current}"
        ))
        .await;
    assert_eq!(out["skipped"], true);
    assert_eq!(env.requests("PATCH").len(), patches, "nothing was sent");
}

#[tokio::test]
async fn patch_three_types_record_previous_and_roll_back() {
    let cases = [
        (
            "patch: {spec: {template: {spec: {containers: [{name: omendb, resources: {limits: {memory: 32Gi}}}]}}}}",
            "application/strategic-merge-patch+json",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "omendb", "resources": {"limits": {"memory": "16Gi"}}}]}}}}),
        ),
        (
            "patch_type: merge\npatch: {metadata: {labels: {incident: sev1}}, spec: {minReadySeconds: 5}}",
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"incident": null}}, "spec": {"minReadySeconds": null}}),
        ),
        (
            "patch_type: json\npatch: '[{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 4}, {\"op\": \"add\", \"path\": \"/metadata/labels/incident\", \"value\": \"sev1\"}]'",
            "application/json-patch+json",
            json!([
                {"op": "remove", "path": "/metadata/labels/incident"},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
            ]),
        ),
    ];
    for (patch, content_type, previous) in cases {
        let env = env("healthy").await;
        let before = env.deployment();
        let step = env.step(&format!(
            "action: patch\nresource: deployment/prod-omendb\nrollback: auto\n{patch}"
        ));
        let (ctx, _rx) = ctx(false);
        let out = expect_ok(env.exec.run(&step, &ctx).await);
        assert_eq!(out["previous"], previous, "{patch}");
        assert_ne!(
            comparable(&env.deployment()),
            comparable(&before),
            "{patch}"
        );
        assert_eq!(out["object"]["metadata"]["name"], DEPLOY);
        let sent = env.requests("PATCH").pop().expect("patch sent");
        assert_eq!(sent.content_type.as_deref(), Some(content_type));
        assert!(
            sent.query.contains("fieldManager=kubectl-patch"),
            "{sent:?}"
        );
        expect_ok(env.exec.rollback_auto(&step, &out, &ctx).await);
        let after = env.deployment();
        assert_eq!(template(&after), template(&before), "{patch}");
        assert_eq!(
            after["spec"]["replicas"], before["spec"]["replicas"],
            "{patch}"
        );
        assert_eq!(
            after["metadata"]["labels"], before["metadata"]["labels"],
            "{patch}"
        );
        assert_eq!(
            after["spec"].get("minReadySeconds"),
            before["spec"].get("minReadySeconds"),
            "{patch}"
        );
    }
}

/// Step `s` of the runbook `text`.
fn step_s(text: &str) -> runbook_model::Step {
    let loaded = runbook_model::load(std::path::Path::new("t.yaml"), text);
    loaded
        .runbook
        .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
        .steps
        .get("s")
        .cloned()
        .expect("step s")
}

/// A patch value that is only a reference keeps the referenced value's
/// type: `replicas: "{{params.replicas}}"` sends the number, which the API
/// server accepts, not the string "7", which it refuses.
#[tokio::test]
async fn a_templated_patch_value_keeps_its_type() {
    let env = env("healthy").await;
    let text = format!(
        "version: 1\nname: t\nparams:\n  replicas: {{type: integer, default: 7}}\nsteps:\n  s:\n    type: kubectl-action\n    kubeconfig: {}\n    namespace: {NS}\n    action: patch\n    resource: deployment/{DEPLOY}\n    patch_type: merge\n    patch: {{spec: {{replicas: \"{{{{params.replicas}}}}\"}}}}\n",
        env.kubeconfig.display()
    );
    let step = step_s(&text);
    let (ctx, _rx) = StepContextBuilder::new("s")
        .context(json!({
            "params": {"replicas": 7},
            "env": {},
            "steps": {},
            "run": {"id": "r1", "name": "t", "started_at": "", "dry_run": false},
        }))
        .build();
    expect_ok(env.exec.run(&step, &ctx).await);
    let patches = env.requests("PATCH");
    let sent: Value = serde_json::from_str(&patches[0].body).expect("json");
    assert_eq!(sent, json!({"spec": {"replicas": 7}}));
    assert_eq!(env.deployment()["spec"]["replicas"], json!(7));
}

/// `patch_type` is a string value, so it may be a template too.
#[tokio::test]
async fn a_templated_patch_type_is_rendered_before_the_patch_is_sent() {
    let env = env("healthy").await;
    let text = format!(
        "version: 1\nname: t\nparams:\n  how: {{default: merge}}\nsteps:\n  s:\n    type: kubectl-action\n    kubeconfig: {}\n    namespace: {NS}\n    action: patch\n    resource: deployment/{DEPLOY}\n    patch_type: \"{{{{params.how}}}}\"\n    patch: {{metadata: {{labels: {{incident: sev1}}}}}}\n",
        env.kubeconfig.display()
    );
    let step = step_s(&text);
    let context = |how: &str| {
        StepContextBuilder::new("s")
            .context(json!({
                "params": {"how": how},
                "env": {},
                "steps": {},
                "run": {"id": "r1", "name": "t", "started_at": "", "dry_run": false},
            }))
            .build()
    };
    let (ctx, _rx) = context("merge");
    expect_ok(env.exec.run(&step, &ctx).await);
    let sent = env.requests("PATCH").pop().expect("patch sent");
    assert_eq!(
        sent.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(env.deployment()["metadata"]["labels"]["incident"], "sev1");

    let (ctx, _rx) = context("apply");
    let patches = env.requests("PATCH").len();
    match env.exec.run(&step, &ctx).await {
        StepOutcome::Failed(failure) => assert!(
            failure
                .message
                .contains("rendered to `apply`, which is not `strategic`, `merge` or `json`"),
            "{}",
            failure.message
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(env.requests("PATCH").len(), patches, "nothing was sent");
}

#[tokio::test]
async fn a_json_patch_rollback_restores_what_it_can_when_a_path_is_gone() {
    let env = env("healthy").await;
    let before = env.deployment();
    let step = env.step(
        "action: patch\nresource: deployment/prod-omendb\nrollback: auto\npatch_type: json\npatch: '[{\"op\": \"replace\", \"path\": \"/spec/replicas\", \"value\": 4}, {\"op\": \"add\", \"path\": \"/metadata/labels/incident\", \"value\": \"sev1\"}]'",
    );
    let (ctx, _rx) = ctx(false);
    let out = expect_ok(env.exec.run(&step, &ctx).await);
    // Something else removes the label before the rollback: the inverse's
    // `remove` of it can no longer apply, and as one JSON patch it would
    // take the replicas' restore down with it.
    env.ok("action: patch\nresource: deployment/prod-omendb\npatch_type: merge\npatch: {metadata: {labels: {incident: null}}}")
        .await;
    let back = expect_ok(env.exec.rollback_auto(&step, &out, &ctx).await);
    assert_eq!(back["already_gone"], json!(["/metadata/labels/incident"]));
    let after = env.deployment();
    assert_eq!(after["spec"]["replicas"], before["spec"]["replicas"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
}

#[tokio::test]
async fn patch_of_a_pvc_and_bad_patches() {
    let env = env("disk-full").await;
    let out = env
        .ok("action: patch\nresource: pvc/omendb-data\npatch: '{\"spec\":{\"resources\":{\"requests\":{\"storage\":\"200Gi\"}}}}'")
        .await;
    assert_eq!(
        out["object"]["spec"]["resources"]["requests"]["storage"],
        "200Gi"
    );
    assert_eq!(
        out["previous"],
        json!({"spec": {"resources": {"requests": {"storage": "100Gi"}}}})
    );
    let (msg, _) = env
        .fails(
            "action: patch\nresource: deployment/prod-omendb\npatch: '{{#if true}}not json{{/if}}'",
        )
        .await;
    assert!(msg.contains("not valid JSON"), "{msg}");
    let (msg, _) = env
        .fails("action: patch\nresource: deployment/prod-omendb\npatch_type: json\npatch: [{op: replace, path: /spec/nope/x, value: 1}]")
        .await;
    assert!(msg.contains("/spec/nope/x"), "{msg}");
}

#[tokio::test]
async fn delete_a_pod_and_a_missing_one() {
    let env = env("node-not-ready").await;
    let pod = env.fake.list(Kind::Pod, Some(NS))[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let out = env
        .ok(&format!("action: delete\nresource: pod/{pod}"))
        .await;
    assert_eq!(out["deleted"], true);
    let del = env.requests("DELETE").pop().expect("delete sent");
    assert!(del.path.ends_with(&format!("/pods/{pod}")));
    assert!(del.body.contains("Background"), "{del:?}");
    let (msg, _) = env.fails("action: delete\nresource: pod/ghost").await;
    assert!(
        msg.starts_with(&format!("pod \"ghost\" not found in namespace \"{NS}\"")),
        "{msg}"
    );
}

#[tokio::test]
async fn a_selector_next_to_a_rendered_object_name_is_refused_before_any_request() {
    let env = env("healthy").await;
    let pod = env.fake.list(Kind::Pod, Some(NS))[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    // A literal `pod/NAME` with a selector is RB109 at validation; a
    // rendered one is caught when the step runs.
    let (msg, _) = env
        .fails(&format!(
            "action: delete\nresource: '{{{{concat \"pod/\" \"{pod}\"}}}}'\nselector: app=nothing"
        ))
        .await;
    assert!(
        msg.starts_with(&format!(
            "`selector` cannot be used with the named object `pod/{pod}`"
        )),
        "{msg}"
    );
    assert!(env.requests("DELETE").is_empty(), "nothing was deleted");
    assert!(
        env.fake.get(Kind::Pod, NS, &pod).is_some(),
        "the pod is still there"
    );
}

#[tokio::test]
async fn a_rendered_replica_count_beyond_int32_is_refused_before_any_request() {
    let env = env("healthy").await;
    let (msg, _) = env
        .fails(&format!(
            "action: scale\nresource: deployment/{DEPLOY}\nreplicas: '{{{{to_int \"2147483648\"}}}}'"
        ))
        .await;
    assert_eq!(
        msg,
        "`replicas` must be from 0 to 2147483647, got 2147483648"
    );
    assert!(env.requests("PATCH").is_empty() && env.requests("PUT").is_empty());
}

#[tokio::test]
async fn plural_version_group_names_resolve_like_kubectl() {
    let env = env("healthy").await;
    for kind in ["deployments.v1.apps", "deployment.apps", "deploy"] {
        let out = env
            .ok(&format!("action: get\nresource: {kind}/{DEPLOY}"))
            .await;
        assert_eq!(out["object"]["metadata"]["name"], DEPLOY, "{kind}");
    }
    let out = env.ok("action: get\nresource: pods.v1").await;
    assert!(out["count"].as_u64().is_some_and(|n| n > 0), "{out:?}");
}

#[tokio::test]
async fn exec_picks_a_ready_pod_and_reports_exit_codes() {
    let env = env("healthy").await;
    let out = env
        .ok("action: exec\nresource: deployment/prod-omendb\ncommand: [curl, -f, \"localhost:3000/ready\"]")
        .await;
    assert_eq!(out["stdout"], "{\"status\":\"ready\"}\n");
    assert_eq!(out["stderr"], "");
    assert_eq!(out["exit_code"], 0);
    let execs: Vec<_> = env
        .requests("GET")
        .into_iter()
        .filter(|e| e.path.ends_with("/exec"))
        .collect();
    assert_eq!(execs.len(), 1);
    assert!(execs[0].query.contains("container=omendb"), "{execs:?}");
    let (msg, out) = env
        .fails("action: exec\nresource: deployment/prod-omendb\ncommand: [sh, -c, \"exit 3\"]")
        .await;
    assert_eq!(out["exit_code"], 3);
    assert!(msg.contains("exited with code 3"), "{msg}");
    let env = common::env("disk-full").await;
    env.fake.advance(Duration::from_secs(30));
    let (msg, out) = env
        .fails("action: exec\nresource: deployment/prod-omendb\ncommand: [curl, -f, \"localhost:3000/ready\"]")
        .await;
    assert_eq!(out["exit_code"], 7);
    assert!(
        out["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("Couldn't connect"))
    );
    assert!(msg.contains("exited with code 7"), "{msg}");
}

#[tokio::test]
async fn forbidden_names_the_rbac_rule() {
    let env = env("healthy").await;
    env.fake.inject_fault(
        Fault::new(Fault::forbidden())
            .verb("patch")
            .resource("deployments/scale"),
    );
    let (msg, _) = env
        .fails("action: scale\nresource: deployment/prod-omendb\nreplicas: 1")
        .await;
    assert!(
        msg.contains(
            "not allowed to patch deployments/scale \"prod-omendb\" in namespace \"omendb-prod\""
        ),
        "{msg}"
    );
    assert!(
        msg.contains(
            "apiGroups: [\"apps\"], resources: [\"deployments/scale\"], verbs: [\"patch\"]"
        ),
        "{msg}"
    );
    assert!(msg.contains(&env.fake.url()), "{msg}");
    assert!(msg.contains("context \"fakekube\""), "{msg}");
}

#[tokio::test]
async fn not_found_and_unreachable_messages() {
    let env = env("healthy").await;
    let (msg, _) = env
        .fails("action: rollout-status\nresource: deployment/nope")
        .await;
    assert!(
        msg.starts_with("deployment \"nope\" not found in namespace \"omendb-prod\""),
        "{msg}"
    );
    // A server that refuses connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: down\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\ncontexts:\n- name: down\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: x}}\n"
        ),
    )
    .expect("write");
    let step = step("kubeconfig: KUBECONFIG\naction: get\nresource: pods", &path);
    let (ctx, _rx) = ctx(false);
    let (msg, _) = expect_failed(env.exec.run(&step, &ctx).await);
    assert!(
        msg.starts_with(&format!(
            "cannot reach the Kubernetes API server http://127.0.0.1:{port} (context \"down\")"
        )),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

/// A kubeconfig credential plugin that waits (for a login, say) holds up
/// neither the steps on other clusters nor its own step's stop.
#[tokio::test]
async fn a_credential_plugin_that_does_not_return_holds_up_nothing() {
    let env = env("healthy").await;
    let dir = tempfile::tempdir().expect("dir");
    let pid_file = dir.path().join("plugin.pid");
    let plugin = dir.path().join("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho $$ >> {}\nexec sleep 30\n",
            pid_file.display()
        ),
    )
    .expect("write plugin");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: sso\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:1'}}\ncontexts:\n- name: sso\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}}}\n",
            plugin.display()
        ),
    )
    .expect("write kubeconfig");
    let waiting = step("kubeconfig: KUBECONFIG\naction: get\nresource: pods", &path);
    let (waiting_ctx, _rx) = ctx(false);
    let stop = waiting_ctx.cancelled().clone();
    // On this test's single thread, a plugin waited for in place would
    // stop the other step from running at all.
    let (waited, other) = tokio::join!(env.exec.run(&waiting, &waiting_ctx), async {
        let outputs = env
            .ok("action: get\nresource: deployment/prod-omendb")
            .await;
        stop.cancel();
        outputs
    });
    assert_eq!(other["object"]["metadata"]["name"], "prod-omendb");
    let (msg, _) = expect_failed(waited);
    assert_eq!(
        msg,
        "stopped while setting up the Kubernetes client (reading the kubeconfig, or waiting for its credential plugin)"
    );
    // A later step on that cluster waits for the same plugin rather than
    // starting a second one.
    let (again_ctx, _rx) = ctx(false);
    let stop_again = again_ctx.cancelled().clone();
    let (again, ()) = tokio::join!(env.exec.run(&waiting, &again_ctx), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_again.cancel();
    });
    expect_failed(again);
    let pids = std::fs::read_to_string(&pid_file).unwrap_or_default();
    for pid in pids.lines() {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(pids.lines().count(), 1, "plugins started: {pids:?}");
}

#[tokio::test]
async fn a_conflict_is_retried_once_then_reported() {
    let env = env("healthy").await;
    env.fake.inject_fault(
        Fault::new(FaultKind::Conflict)
            .verb("patch")
            .resource("deployments/scale")
            .times(1),
    );
    let out = env
        .ok("action: scale\nresource: deployment/prod-omendb\nreplicas: 2")
        .await;
    assert_eq!(out["replicas"], 2);
    env.fake.inject_fault(
        Fault::new(FaultKind::Conflict)
            .verb("patch")
            .resource("deployments")
            .times(2),
    );
    let (msg, _) = env
        .fails("action: rollout-restart\nresource: deployment/prod-omendb")
        .await;
    assert!(msg.contains("conflict"), "{msg}");
    assert!(msg.contains("retried once"), "{msg}");
    let gets = env
        .requests("GET")
        .into_iter()
        .filter(|e| e.path.ends_with(&format!("/deployments/{DEPLOY}")))
        .count();
    assert!(
        gets >= 4,
        "each attempt read the deployment afresh ({gets})"
    );
}

/// A rollback undoes a change on the cluster the step changed, even after
/// a later step pointed the kubeconfig at another cluster.
#[tokio::test]
async fn a_rollback_acts_on_the_cluster_its_step_changed() {
    let first = env("healthy").await;
    let second = env("healthy").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("kubeconfig");
    std::fs::copy(&first.kubeconfig, &shared).expect("copy the kubeconfig");
    let scale = step(
        &format!(
            "kubeconfig: KUBECONFIG\nnamespace: {NS}\naction: scale\nresource: deployment/{DEPLOY}\nreplicas: 5"
        ),
        &shared,
    );
    let (ctx, _rx) = ctx(false);
    let out = expect_ok(first.exec.run(&scale, &ctx).await);
    assert_eq!(first.deployment()["spec"]["replicas"], 5);
    std::fs::copy(&second.kubeconfig, &shared).expect("switch the kubeconfig");
    let back = expect_ok(first.exec.rollback_auto(&scale, &out, &ctx).await);
    assert_eq!(back["replicas"], 3);
    assert_eq!(first.deployment()["spec"]["replicas"], 3);
    assert_eq!(second.deployment()["spec"]["replicas"], 3);
    assert!(
        second.requests("PATCH").is_empty(),
        "the other cluster was changed"
    );
    // After a resume the engine never saw where the step acted: the
    // `server` output says, and the undo is refused rather than sent to
    // the cluster the kubeconfig now names.
    std::fs::copy(&first.kubeconfig, &shared).expect("point back at the first");
    let out = expect_ok(first.exec.run(&scale, &ctx).await);
    assert_eq!(out["server"], json!(first.fake.url()));
    std::fs::copy(&second.kubeconfig, &shared).expect("switch the kubeconfig");
    let resumed = runbook_step_kubectl::KubectlExecutor::new();
    let (msg, _) = expect_failed(resumed.rollback_auto(&scale, &out, &ctx).await);
    assert!(
        msg.starts_with(&format!(
            "not undone: step `s` changed the cluster at {}, and its kubeconfig now points at",
            first.fake.url()
        )),
        "{msg}"
    );
    assert_eq!(first.deployment()["spec"]["replicas"], 5);
    assert_eq!(second.deployment()["spec"]["replicas"], 3);
}

/// A step that switches the kubeconfig's current context sends the next
/// steps to the new cluster, as kubectl would: the client is not kept
/// past a change of the file.
#[tokio::test]
async fn a_changed_kubeconfig_is_read_again() {
    let first = env("healthy").await;
    let second = env("crashloop").await;
    let path = first.kubeconfig.display().to_string();
    let before = first
        .exec
        .cluster(Some(&path), None)
        .await
        .expect("cluster");
    let again = first
        .exec
        .cluster(Some(&path), None)
        .await
        .expect("cluster");
    assert!(std::sync::Arc::ptr_eq(&before, &again), "unchanged: reused");
    std::fs::copy(&second.kubeconfig, &first.kubeconfig).expect("switch the kubeconfig");
    let after = first
        .exec
        .cluster(Some(&path), None)
        .await
        .expect("cluster");
    assert_ne!(before.endpoint.server, after.endpoint.server);
    assert_eq!(after.endpoint.server, second.fake.url());
}

#[tokio::test]
async fn clients_are_cached_per_kubeconfig_and_context() {
    let env = env("healthy").await;
    let a = env
        .exec
        .cluster(Some(&env.kubeconfig.display().to_string()), None)
        .await
        .expect("cluster");
    let b = env
        .exec
        .cluster(Some(&env.kubeconfig.display().to_string()), None)
        .await
        .expect("cluster");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(a.default_namespace, NS);
    env.ok("action: get\nresource: deploy").await;
    env.ok("action: get\nresource: deploy").await;
    let discovery = env
        .fake
        .journal()
        .iter()
        .filter(|e| e.path == "/apis")
        .count();
    assert_eq!(discovery, 1, "discovery is cached");
    // Without `namespace`, the context's namespace is used.
    let s = step(
        "kubeconfig: KUBECONFIG\naction: get\nresource: deployment/prod-omendb",
        &env.kubeconfig,
    );
    let (ctx, _rx) = StepContextBuilder::new("s").build();
    expect_ok(env.exec.run(&s, &ctx).await);
}
