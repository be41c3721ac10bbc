//! API-level tests over raw HTTP: request shapes kube-rs sends (leading
//! `?&`), watch streaming, optimistic concurrency, media types, dry run,
//! error bodies and fault injection.

use runbook_fakekube::{FakeCluster, Fault, FaultKind, Kind, RunningFake, Scenario};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        raw = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(
    fake: &RunningFake,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(fake.addr())
        .await
        .expect("connect to the fake");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(body.as_bytes()).await.expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read reply");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let lower = headers.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers: lower,
        body,
    }
}

async fn start(name: &str) -> RunningFake {
    FakeCluster::start(Scenario::builtin(name).expect("built-in scenario"))
        .await
        .expect("fake starts")
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/omendb-prod/deployments/prod-omendb";

#[tokio::test]
async fn kube_rs_style_queries_and_discovery() {
    let fake = start("healthy").await;
    let pods = request(
        &fake,
        "GET",
        "/api/v1/namespaces/omendb-prod/pods?&labelSelector=app%3Domendb",
        None,
        "",
    )
    .await;
    assert_eq!(pods.status, 200);
    let pods = pods.json();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(3));
    let none = request(
        &fake,
        "GET",
        "/api/v1/namespaces/omendb-prod/pods?labelSelector=app%20notin%20(omendb)",
        None,
        "",
    )
    .await;
    assert_eq!(none.json()["items"].as_array().map(Vec::len), Some(0));
    let version = request(&fake, "GET", "/version", None, "").await.json();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
    let apps = request(&fake, "GET", "/apis/apps/v1", None, "")
        .await
        .json();
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for wanted in [
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let core = request(&fake, "GET", "/api/v1", None, "").await.json();
    assert!(
        core["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["name"] == "pods/exec")
    );
    let scale = request(&fake, "GET", &format!("{DEPLOY}/scale"), None, "")
        .await
        .json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["status"]["selector"], "app=omendb");
    let metrics = request(
        &fake,
        "GET",
        "/apis/metrics.k8s.io/v1/namespaces/omendb-prod/pods",
        None,
        "",
    )
    .await
    .json();
    assert_eq!(metrics["items"].as_array().map(Vec::len), Some(3));
    let events = request(&fake, "GET", "/api/v1/namespaces/omendb-prod/events?fieldSelector=involvedObject.kind%3DReplicaSet,reason%3DSuccessfulCreate&limit=500", None, "").await.json();
    assert!(!events["items"].as_array().expect("items").is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn errors_are_statuses_with_apiserver_wording() {
    let fake = start("healthy").await;
    let missing = request(
        &fake,
        "GET",
        "/apis/apps/v1/namespaces/omendb-prod/deployments/nope",
        None,
        "",
    )
    .await;
    assert_eq!(missing.status, 404);
    let status = missing.json();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    assert_eq!(status["message"], "deployments.apps \"nope\" not found");

    // A field the API server cannot select by is refused, not matched as
    // empty; metadata fields and each resource's own are accepted.
    let unsupported = request(
        &fake,
        "GET",
        "/apis/apps/v1/namespaces/omendb-prod/deployments?fieldSelector=spec.replicas%3D3",
        None,
        "",
    )
    .await;
    assert_eq!(unsupported.status, 400);
    assert_eq!(
        unsupported.json()["message"],
        "field label not supported: spec.replicas"
    );
    let watch = request(&fake, "GET", "/api/v1/namespaces/omendb-prod/pods?watch=true&fieldSelector=status.phase%3DRunning,spec.nodeName%3Dx,reason%3DBackOff", None, "").await;
    assert_eq!(watch.status, 400);
    assert_eq!(watch.json()["message"], "field label not supported: reason");
    let pods = request(&fake, "GET", "/api/v1/namespaces/omendb-prod/pods?fieldSelector=status.phase%3DRunning,metadata.namespace%3Domendb-prod", None, "").await;
    assert_eq!(pods.status, 200);

    let current = request(&fake, "GET", DEPLOY, None, "").await.json();
    let mut stale = current.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let conflict = request(
        &fake,
        "PUT",
        DEPLOY,
        Some("application/json"),
        &stale.to_string(),
    )
    .await;
    assert_eq!(conflict.status, 409);
    assert!(
        conflict.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the object has been modified")
    );
    let mut fresh = current;
    fresh["spec"]["replicas"] = json!(4);
    let ok = request(
        &fake,
        "PUT",
        DEPLOY,
        Some("application/json"),
        &fresh.to_string(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json()["metadata"]["generation"],
        3,
        "a spec change bumps the generation"
    );

    let unsupported = request(&fake, "PATCH", DEPLOY, Some("application/json"), "{}").await;
    assert_eq!(unsupported.status, 415);
    assert_eq!(unsupported.json()["reason"], "UnsupportedMediaType");

    let exists = request(
        &fake,
        "POST",
        "/api/v1/namespaces/omendb-prod/configmaps",
        Some("application/json"),
        r#"{"metadata":{"name":"omendb-config"}}"#,
    )
    .await;
    assert_eq!(exists.status, 409);
    assert_eq!(
        exists.json()["message"],
        "configmaps \"omendb-config\" already exists"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn dry_run_stores_nothing_on_any_write() {
    let fake = start("healthy").await;
    let created = request(
        &fake,
        "POST",
        "/api/v1/namespaces/omendb-prod/configmaps?dryRun=All",
        Some("application/json"),
        r#"{"metadata":{"name":"scratch"},"data":{"a":"b"}}"#,
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["metadata"]["name"], "scratch");
    assert!(
        fake.get(Kind::ConfigMap, "omendb-prod", "scratch")
            .is_none()
    );
    let pod = fake.list(Kind::Pod, Some("omendb-prod"))[0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_owned();
    let deleted = request(
        &fake,
        "DELETE",
        &format!("/api/v1/namespaces/omendb-prod/pods/{pod}?dryRun=All"),
        None,
        "",
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert!(fake.get(Kind::Pod, "omendb-prod", &pod).is_some());
    // kubectl and kube-rs send DeleteOptions in the body instead.
    let deleted = request(
        &fake,
        "DELETE",
        &format!("/api/v1/namespaces/omendb-prod/pods/{pod}"),
        Some("application/json"),
        r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#,
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert!(fake.get(Kind::Pod, "omendb-prod", &pod).is_some());
    let before = fake.get(Kind::Deployment, "omendb-prod", "prod-omendb");
    let patched = request(
        &fake,
        "PATCH",
        &format!("{DEPLOY}/scale?dryRun=All"),
        Some("application/merge-patch+json"),
        r#"{"spec":{"replicas":7}}"#,
    )
    .await;
    assert_eq!(patched.json()["spec"]["replicas"], 7);
    assert_eq!(
        fake.get(Kind::Deployment, "omendb-prod", "prod-omendb"),
        before
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn watch_streams_changes_after_the_given_version() {
    let fake = start("healthy").await;
    let list = request(&fake, "GET", "/apis/apps/v1/namespaces/omendb-prod/deployments?fieldSelector=metadata.name%3Dprod-omendb", None, "").await.json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list version")
        .to_owned();
    let path = format!(
        "/apis/apps/v1/namespaces/omendb-prod/deployments?&watch=true&resourceVersion={rv}&timeoutSeconds=2&fieldSelector=metadata.name%3Dprod-omendb"
    );
    let watcher = {
        let url_path = path.clone();
        let addr = fake.addr();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(
                    format!("GET {url_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .expect("send");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("read");
            String::from_utf8_lossy(&raw).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scaled = request(
        &fake,
        "PATCH",
        &format!("{DEPLOY}/scale"),
        Some("application/merge-patch+json"),
        r#"{"spec":{"replicas":4}}"#,
    )
    .await;
    assert_eq!(scaled.status, 200, "{}", scaled.body);
    let started = Instant::now();
    let raw = watcher.await.expect("watcher finishes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeoutSeconds ends the watch"
    );
    let body = dechunk(raw.split_once("\r\n\r\n").expect("separator").1);
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "MODIFIED" && e["object"]["metadata"]["name"] == "prod-omendb")
    );
    assert!(events.iter().any(|e| e["object"]["spec"]["replicas"] == 4));

    // Without a version a watch starts with the current objects.
    let fresh = request(
        &fake,
        "GET",
        "/api/v1/nodes?watch=1&timeoutSeconds=1",
        None,
        "",
    )
    .await;
    assert_eq!(
        fresh
            .body
            .lines()
            .filter(|l| l.contains("\"ADDED\""))
            .count(),
        3
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_fail_or_delay_requests_then_wear_off() {
    let fake = start("healthy").await;
    fake.inject_fault(
        Fault::new(FaultKind::TooManyRequests)
            .verb("get")
            .resource("deployments")
            .times(1),
    );
    let limited = request(&fake, "GET", DEPLOY, None, "").await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains("retry-after: 1"));
    assert_eq!(request(&fake, "GET", DEPLOY, None, "").await.status, 200);
    fake.inject_fault(
        Fault::new(FaultKind::InternalError)
            .verb("list")
            .resource("pods")
            .times(2),
    );
    assert_eq!(
        request(
            &fake,
            "GET",
            "/api/v1/namespaces/omendb-prod/pods",
            None,
            ""
        )
        .await
        .status,
        500
    );
    assert_eq!(
        request(
            &fake,
            "GET",
            "/api/v1/namespaces/omendb-prod/pods",
            None,
            ""
        )
        .await
        .status,
        500
    );
    assert_eq!(
        request(
            &fake,
            "GET",
            "/api/v1/namespaces/omendb-prod/pods",
            None,
            ""
        )
        .await
        .status,
        200
    );
    fake.inject_fault(
        Fault::new(FaultKind::Conflict)
            .verb("patch")
            .name("prod-omendb")
            .times(1),
    );
    let conflict = request(
        &fake,
        "PATCH",
        DEPLOY,
        Some("application/merge-patch+json"),
        "{}",
    )
    .await;
    assert_eq!(conflict.status, 409);
    fake.inject_fault(Fault::new(FaultKind::Latency(Duration::from_millis(300))).resource("nodes"));
    let started = Instant::now();
    assert_eq!(
        request(&fake, "GET", "/api/v1/nodes", None, "")
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    fake.clear_faults();
    let journal = fake.journal();
    assert!(journal.iter().any(|e| e.method == "PATCH"
        && e.content_type.as_deref() == Some("application/merge-patch+json")));
    fake.shutdown().await;
}

#[tokio::test]
async fn logs_subresource_honours_its_options() {
    let fake = start("healthy").await;
    let pod = fake.list(Kind::Pod, Some("omendb-prod"))[0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_owned();
    let base = format!("/api/v1/namespaces/omendb-prod/pods/{pod}/log");
    let all = request(&fake, "GET", &base, None, "").await;
    assert_eq!(all.status, 200);
    assert!(all.headers.contains("content-type: text/plain"));
    assert_eq!(all.body.lines().count(), 5);
    let tail = request(
        &fake,
        "GET",
        &format!("{base}?tailLines=1&timestamps=true"),
        None,
        "",
    )
    .await;
    let line = tail.body.lines().next().expect("one line");
    assert!(
        line.ends_with("ready: serving queries") && line.contains('T') && line.contains('Z'),
        "{line}"
    );
    let since = request(&fake, "GET", &format!("{base}?sinceSeconds=1"), None, "").await;
    assert_eq!(since.body, "", "the lines were logged during warm-up");
    let previous = request(&fake, "GET", &format!("{base}?previous=true"), None, "").await;
    assert_eq!(previous.status, 400);
    let wrong = request(&fake, "GET", &format!("{base}?container=nope"), None, "").await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.json()["message"],
        format!("container nope is not valid for pod {pod}")
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn image_pull_failures_from_a_custom_scenario() {
    let yaml = r#"
extends: healthy
name: pull
pod_rules:
  - match: {image: "ghcr.io/omendb/omendb:0.9.*"}
    behaviour: image-pull-back-off
"#;
    let scenario = Scenario::from_yaml("pull.yaml", yaml).expect("scenario parses");
    let fake = FakeCluster::start(scenario).await.expect("fake starts");
    let pods = fake.list(Kind::Pod, Some("omendb-prod"));
    let reasons: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons
            .iter()
            .all(|r| *r == "ImagePullBackOff" || *r == "ErrImagePull"),
        "{reasons:?}"
    );
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Pending"));
    assert!(!fake.deployment_healthy("omendb-prod", "prod-omendb"));
    let name = pods[0]["metadata"]["name"].as_str().expect("pod");
    let logs = request(
        &fake,
        "GET",
        &format!("/api/v1/namespaces/omendb-prod/pods/{name}/log"),
        None,
        "",
    )
    .await;
    assert_eq!(logs.status, 400);
    assert!(
        logs.body
            .contains("is waiting to start: trying and failing to pull image"),
        "{}",
        logs.body
    );
    fake.shutdown().await;
}
