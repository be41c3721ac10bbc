//! The simulated `omendb` service and the webhook sinks.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Tells whether the simulated deployment is healthy right now.
pub(crate) type HealthProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// A message received by a webhook sink.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookMessage {
    /// `status-page` or `chat`.
    pub hook: String,
    /// The JSON body as received.
    pub body: serde_json::Value,
}

#[derive(Clone)]
struct AppState {
    health: HealthProbe,
    points: Arc<Mutex<BTreeMap<i64, f64>>>,
    messages: Arc<Mutex<Vec<WebhookMessage>>>,
}

pub(crate) struct Handle {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Handle {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub(crate) async fn start(
    health: HealthProbe,
    messages: Arc<Mutex<Vec<WebhookMessage>>>,
) -> std::io::Result<Handle> {
    let state = AppState {
        health,
        points: Arc::new(Mutex::new(BTreeMap::new())),
        messages,
    };
    let app = Router::new()
        .route("/health", get(health_endpoint))
        .route("/ready", get(health_endpoint))
        .route("/metrics", get(metrics))
        .route("/insert", post(insert))
        .route("/query", get(query))
        .route("/admin/rebuild-index", post(rebuild_index))
        .route("/admin/integrity-check", get(integrity_check))
        .route("/hooks/{hook}", post(webhook))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Handle { addr, stop, task })
}

async fn health_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    if (state.health)() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"status": "unavailable", "reason": "no ready replicas behind the load balancer"}),
            ),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if !(state.health)() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream unavailable\n".to_string(),
        );
    }
    let points = lock(&state.points).len();
    (
        StatusCode::OK,
        format!(
            "# TYPE omendb_up gauge\nomendb_up 1\n# TYPE omendb_points_total counter\nomendb_points_total {points}\n# TYPE omendb_query_duration_seconds summary\nomendb_query_duration_seconds{{quantile=\"0.95\"}} 0.012\n"
        ),
    )
}

#[derive(Deserialize)]
struct Point {
    timestamp: i64,
    value: f64,
    #[allow(dead_code)]
    series_id: Option<i64>,
}

async fn insert(State(state): State<AppState>, Json(point): Json<Point>) -> impl IntoResponse {
    if !(state.health)() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "unavailable"})),
        );
    }
    lock(&state.points).insert(point.timestamp, point.value);
    (StatusCode::OK, Json(serde_json::json!({"inserted": 1})))
}

#[derive(Deserialize)]
struct Range {
    start: i64,
    end: i64,
}

async fn query(State(state): State<AppState>, Query(range): Query<Range>) -> impl IntoResponse {
    if !(state.health)() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "unavailable"})),
        );
    }
    let points: Vec<serde_json::Value> = lock(&state.points)
        .range(range.start..=range.end)
        .map(|(t, v)| serde_json::json!({"timestamp": t, "value": v}))
        .collect();
    (StatusCode::OK, Json(serde_json::json!({"points": points})))
}

async fn rebuild_index(State(state): State<AppState>) -> impl IntoResponse {
    if (state.health)() {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"status": "rebuilding"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "unavailable"})),
        )
    }
}

async fn integrity_check(State(state): State<AppState>) -> impl IntoResponse {
    let points = lock(&state.points).len();
    Json(serde_json::json!({"status": "ok", "points": points, "corrupt_segments": 0}))
}

async fn webhook(
    State(state): State<AppState>,
    axum::extract::Path(hook): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    lock(&state.messages).push(WebhookMessage { hook, body });
    (StatusCode::OK, Json(serde_json::json!({"ok": true})))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
