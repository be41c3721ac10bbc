//! Shared helpers for the http-check tests: steps loaded from real runbook
//! YAML, contexts with a hand-built template context, and a real HTTP server
//! on 127.0.0.1.

#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use runbook_engine::{Outputs, StepContextBuilder, StepFailure, StepOutcome};
use runbook_model::Step;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Loads the step `check` from a runbook whose `check` step has `fields`
/// (YAML lines at step-field level, without indentation). The runbook
/// declares the params and the `login` step the templates may read.
pub fn step(fields: &str) -> Step {
    let mut text = String::from(
        "version: 1\nname: http-test\nparams:\n  service:\n    default: omendb\n  api_key:\n    default: k3y-from-params\n    secret: true\n  replicas:\n    type: integer\n    default: 3\nsteps:\n  login:\n    type: shell\n    run: echo '{\"token\":\"abc\"}'\n  check:\n    type: http-check\n    needs: login\n",
    );
    for line in fields.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    let loaded = runbook_model::load(std::path::Path::new("test.yaml"), &text);
    let runbook = loaded
        .runbook
        .unwrap_or_else(|| panic!("test runbook is invalid: {:#?}\n{text}", loaded.diagnostics));
    runbook
        .steps
        .get("check")
        .cloned()
        .expect("the runbook has a `check` step")
}

/// The template context the engine would build at the `check` step.
pub fn template_context() -> Value {
    json!({
        "params": {"service": "omendb", "api_key": "k3y-from-params", "replicas": 3},
        "env": {},
        "steps": {
            "login": {
                "status": "succeeded",
                "succeeded": true,
                "failed": false,
                "skipped": false,
                "error": null,
                "attempts": 1,
                "duration_ms": 5,
                "outputs": {
                    "stdout": "{\"token\":\"t0ken-from-login\"}\n",
                    "stderr": "",
                    "exit_code": 0,
                    "json": {"token": "t0ken-from-login"},
                    "lines": ["{\"token\":\"t0ken-from-login\"}"]
                }
            }
        },
        "run": {"id": "r1", "name": "http-test", "started_at": "", "dry_run": false}
    })
}

/// A context builder with [`template_context`].
pub fn context() -> StepContextBuilder {
    StepContextBuilder::new("check").context(template_context())
}

/// The outputs of a successful attempt.
pub fn succeeded(outcome: StepOutcome) -> Outputs {
    match outcome {
        StepOutcome::Succeeded(outputs) => outputs,
        other => panic!("expected success, got {other:?}"),
    }
}

/// The failure of a failed attempt.
pub fn failed(outcome: StepOutcome) -> StepFailure {
    match outcome {
        StepOutcome::Failed(failure) => failure,
        other => panic!("expected failure, got {other:?}"),
    }
}

/// The test server's shared state.
#[derive(Default)]
pub struct ServerState {
    /// Requests seen by `/flaky`.
    pub flaky_hits: AtomicUsize,
    /// Requests seen by any route.
    pub hits: AtomicUsize,
}

/// A running test server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub state: Arc<ServerState>,
}

impl Server {
    /// A URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts the test application on 127.0.0.1 (a random port).
pub async fn start() -> Server {
    let state = Arc::new(ServerState::default());
    let app = app(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("test server");
    });
    Server { addr, state }
}

/// Returns 503 for the first `FLAKY_FAILURES` requests, then 200.
pub const FLAKY_FAILURES: usize = 2;

/// The size of `/huge`: far more than the executor may keep.
pub const HUGE_BYTES: usize = 200 * 1024 * 1024;

const HUGE_CHUNK: usize = 64 * 1024;
static CHUNK: [u8; HUGE_CHUNK] = [b'x'; HUGE_CHUNK];

fn app(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/ok",
            get(|| async {
                axum::Json(json!({"status": "ok", "version": "1.2.3", "count": 3, "replicas": 3}))
            }),
        )
        .route(
            "/metrics",
            get(|| async { "omendb_up 1\nomendb_queries_total 42\n" }),
        )
        .route("/status/{code}", any(status))
        .route("/flaky", get(flaky))
        .route("/slow", get(slow))
        .route("/redirect/{n}", get(redirect))
        .route("/loop", get(|| async { redirect_to("/loop") }))
        .route("/to", any(redirect_anywhere))
        .route("/echo", any(echo))
        .route("/multi", get(multi))
        .route("/huge", get(huge))
        .route("/login", post(login))
        .route("/say", get(say))
        .route("/edge", get(edge))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_hits,
        ))
        .with_state(state)
}

async fn count_hits(
    State(state): State<Arc<ServerState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

/// `text` as the body, with status `status` (200 by default).
async fn say(Query(query): Query<HashMap<String, String>>) -> Response {
    let code = query
        .get("status")
        .and_then(|s| s.parse().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    (code, query.get("text").cloned().unwrap_or_default()).into_response()
}

/// A body whose text `s` starts `off` bytes before the 1 MiB the executor
/// keeps, so that the limit cuts it.
async fn edge(Query(query): Query<HashMap<String, String>>) -> Response {
    let off: usize = query.get("off").and_then(|s| s.parse().ok()).unwrap_or(0);
    let secret = query.get("s").cloned().unwrap_or_default();
    let mut body = "A".repeat(runbook_step_http::BODY_LIMIT - off);
    body.push_str(&secret);
    body.push_str(&"B".repeat(100));
    body.into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, format!("status {code}")).into_response()
}

async fn flaky(State(state): State<Arc<ServerState>>) -> Response {
    let seen = state.flaky_hits.fetch_add(1, Ordering::SeqCst);
    if seen < FLAKY_FAILURES {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("warming up (request {})", seen + 1),
        )
            .into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn slow(Query(query): Query<HashMap<String, u64>>) -> Response {
    let ms = query.get("ms").copied().unwrap_or(2000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (StatusCode::OK, "finally").into_response()
}

fn redirect_to(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn redirect(Path(n): Path<u32>) -> Response {
    if n == 0 {
        (StatusCode::OK, "arrived").into_response()
    } else {
        redirect_to(&format!("/redirect/{}", n - 1))
    }
}

/// A redirect with status `status` (302 by default) to `url`.
async fn redirect_anywhere(Query(query): Query<HashMap<String, String>>) -> Response {
    let code = query
        .get("status")
        .and_then(|s| s.parse().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::FOUND);
    let url = query.get("url").cloned().unwrap_or_default();
    (code, [(header::LOCATION, url)]).into_response()
}

/// Hands out credentials in response headers, and one harmless header.
async fn login() -> Response {
    (
        StatusCode::OK,
        // Appended: an array of pairs would keep only the last `set-cookie`.
        axum::response::AppendHeaders([
            ("x-session-token", "t0ken-from-server"),
            ("x-api-key", "k3y-from-server"),
            ("set-cookie", "sid=c00kie-from-server; Path=/; HttpOnly"),
            ("x-request-id", "visible-request-id"),
            ("x-cache-key", "true"),
            ("set-cookie", "region=us-east-1; Path=/"),
        ]),
        "welcome, your token is t0ken-from-server, healthy: true, region us-east-1",
    )
        .into_response()
}

/// Echoes the request as JSON, and the `x-api-key` header back as a
/// response header, the way a careless debug endpoint does.
async fn echo(method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let mut seen = serde_json::Map::new();
    for (name, value) in &headers {
        seen.insert(
            name.as_str().to_string(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut response = axum::Json(json!({
        "method": method.as_str(),
        "headers": seen,
        "body": text,
        "json": parsed,
    }))
    .into_response();
    if let Some(key) = headers.get("x-api-key") {
        response.headers_mut().insert("x-echo-api-key", key.clone());
    }
    response
}

async fn multi() -> Response {
    let mut response = "two values".into_response();
    response
        .headers_mut()
        .append("x-multi", header::HeaderValue::from_static("a"));
    response
        .headers_mut()
        .append("x-multi", header::HeaderValue::from_static("b"));
    response
}

/// 200 MB of `x`, produced chunk by chunk as the client reads.
async fn huge() -> Response {
    let chunks = HUGE_BYTES / HUGE_CHUNK;
    let stream =
        futures::stream::iter((0..chunks).map(|_| Ok::<_, Infallible>(Bytes::from_static(&CHUNK))));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .expect("huge response")
}
