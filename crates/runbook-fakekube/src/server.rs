//! The HTTP surface: routing of apiserver paths, content negotiation
//! (JSON or Table), LIST and chunked WATCH, subresources, the exec
//! WebSocket, metrics.k8s.io, fault injection and the request journal.

use crate::cluster::{Cluster, Sub};
use crate::error::ApiError;
use crate::fault::{self, Injected, JournalEntry, RequestInfo};
use crate::patch::PatchKind;
use crate::pods::{ExecOutcome, LogQuery};
use crate::resources::{self, Kind, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeType, namespace_of};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// State shared by all handlers.
pub(crate) struct Shared {
    pub(crate) cluster: Mutex<Cluster>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// A poisoned lock means a handler panicked mid-update; the fake keeps
    /// serving whatever state is there rather than failing every request.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Query parameters in order, tolerant of kube-rs's leading `?&`.
struct Params(Vec<(String, String)>);

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(decoded) => {
                    out.push(decoded);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Params {
    fn parse(query: &str) -> Self {
        Self(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList(String, String),
    Object {
        rt: &'static ResourceType,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    Metrics {
        version: String,
        namespace: Option<String>,
        plural: String,
        name: Option<String>,
    },
    Unknown,
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, ..] if !matches!(*plural, "status" | "finalize") => {
            (Some((*ns).to_owned()), &rest[2..])
        }
        _ => (None, rest),
    };
    let Some((plural, tail)) = rest.split_first() else {
        return Route::Unknown;
    };
    let Some(rt) = ResourceType::find(group, version, plural) else {
        return Route::Unknown;
    };
    if tail.len() > 2 || (!rt.namespaced && namespace.is_some()) {
        return Route::Unknown;
    }
    Route::Object {
        rt,
        namespace,
        name: tail.first().map(|s| (*s).to_owned()),
        sub: tail.get(1).map(|s| (*s).to_owned()),
    }
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::ResourceList(String::new(), "v1".into()),
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_owned()),
        ["apis", group, version] => Route::ResourceList((*group).to_owned(), (*version).to_owned()),
        [
            "apis",
            "metrics.k8s.io",
            version @ ("v1beta1" | "v1"),
            rest @ ..,
        ] => {
            let (namespace, rest) = match rest {
                ["namespaces", ns, tail @ ..] => (Some((*ns).to_owned()), tail),
                _ => (None, rest),
            };
            match rest {
                [plural @ ("pods" | "nodes")] => Route::Metrics {
                    version: (*version).to_owned(),
                    namespace,
                    plural: (*plural).to_owned(),
                    name: None,
                },
                [plural @ ("pods" | "nodes"), name] => Route::Metrics {
                    version: (*version).to_owned(),
                    namespace,
                    plural: (*plural).to_owned(),
                    name: Some((*name).to_owned()),
                },
                _ => Route::Unknown,
            }
        }
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::Unknown,
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut response = (code, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response {
    let mut response = json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    );
    if let Some(seconds) = error.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn result_response(code: StatusCode, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(value) => json_response(code, &value),
        Err(e) => error_response(&e),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn verb_of(method: &Method, route: &Route, params: &Params) -> &'static str {
    let named = matches!(
        route,
        Route::Object { name: Some(_), .. } | Route::Metrics { name: Some(_), .. }
    );
    match *method {
        Method::GET if matches!(route, Route::Object { sub: Some(s), .. } if s == "exec") => {
            "create"
        }
        Method::GET if named => "get",
        Method::GET if params.flag("watch") => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "get",
    }
}

fn request_info(route: &Route, verb: &'static str) -> Option<RequestInfo> {
    match route {
        Route::Object {
            rt,
            namespace,
            name,
            sub,
        } => Some(RequestInfo {
            verb,
            resource: match sub {
                Some(s) => format!("{}/{s}", rt.plural),
                None => rt.plural.to_owned(),
            },
            group: rt.group.to_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        Route::Metrics {
            namespace,
            plural,
            name,
            ..
        } => Some(RequestInfo {
            verb,
            resource: plural.clone(),
            group: "metrics.k8s.io".into(),
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        _ => None,
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "failed to read the request body: {e}"
            )));
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let params = Params::parse(&query);
    let content_type = header_text(&parts.headers, header::CONTENT_TYPE);
    let accept = header_text(&parts.headers, header::ACCEPT).unwrap_or_default();
    let route = route(&path);
    let verb = verb_of(&parts.method, &route, &params);
    let injected = {
        let mut cluster = shared.lock();
        cluster.journal.push(JournalEntry {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        request_info(&route, verb).and_then(|info| fault::take(&mut cluster.faults, &info))
    };
    match injected {
        Some(Injected::Fail(e)) => return error_response(&e),
        Some(Injected::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let method = parts.method.clone();
    match route {
        Route::Version => {
            let git_version = shared.lock().git_version.clone();
            json_response(StatusCode::OK, &version_document(&git_version))
        }
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::CoreVersions => json_response(StatusCode::OK, &resources::core_versions()),
        Route::Groups => json_response(StatusCode::OK, &resources::group_list()),
        Route::Group(g) => match resources::group_document(&g) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => error_response(&ApiError::path_not_found(&path)),
        },
        Route::ResourceList(g, v) => match resources::resource_list(&g, &v) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => error_response(&ApiError::path_not_found(&path)),
        },
        Route::Metrics {
            version,
            namespace,
            plural,
            name,
        } => metrics(
            &shared,
            &version,
            namespace.as_deref(),
            &plural,
            name.as_deref(),
            &params,
        ),
        Route::Unknown => error_response(&ApiError::path_not_found(&path)),
        Route::Object {
            rt,
            namespace,
            name,
            sub,
        } => {
            let ns = namespace.unwrap_or_default();
            match (method, name, sub.as_deref()) {
                (Method::GET, None, None) if params.flag("watch") => {
                    watch_response(&shared, rt, &ns, &params)
                }
                (Method::GET, None, None) => list(&shared, rt, &ns, &params, &accept),
                (Method::POST, None, None) => {
                    let result = serde_json::from_slice::<Value>(&body)
                        .map_err(|e| {
                            ApiError::bad_request(format!(
                                "the request body is not valid JSON: {e}"
                            ))
                        })
                        .and_then(|v| shared.lock().create(rt, &ns, v, params.dry_run()));
                    result_response(StatusCode::CREATED, result)
                }
                (Method::GET, Some(name), Some("log")) if rt.kind == Kind::Pod => {
                    logs(&shared, &ns, &name, &params)
                }
                (Method::GET | Method::POST, Some(name), Some("exec")) if rt.kind == Kind::Pod => {
                    exec(&shared, &mut parts, &ns, &name, &params).await
                }
                (Method::POST, Some(name), Some("eviction")) if rt.kind == Kind::Pod => {
                    let result = shared.lock().delete(rt, &ns, &name, params.dry_run()).map(|_| {
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
                    });
                    result_response(StatusCode::CREATED, result)
                }
                (method, Some(name), sub) => {
                    let sub = match sub {
                        None => Sub::Main,
                        Some("status") => Sub::Status,
                        Some("scale") if matches!(rt.kind, Kind::Deployment | Kind::ReplicaSet) => {
                            Sub::Scale
                        }
                        Some(_) => return error_response(&ApiError::path_not_found(&path)),
                    };
                    object(
                        &shared,
                        rt,
                        &ns,
                        &name,
                        sub,
                        &method,
                        &body,
                        content_type.as_deref(),
                        &params,
                        &accept,
                    )
                }
                (method, None, _) => error_response(&ApiError::method_not_allowed(method.as_str())),
            }
        }
    }
}

fn version_document(git_version: &str) -> Value {
    let numbers: Vec<&str> = git_version
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .collect();
    json!({
        "major": numbers.first().copied().unwrap_or("1"),
        "minor": numbers.get(1).copied().unwrap_or("32"),
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[allow(clippy::too_many_arguments)]
fn object(
    shared: &Shared,
    rt: &'static ResourceType,
    ns: &str,
    name: &str,
    sub: Sub,
    method: &Method,
    body: &Bytes,
    content_type: Option<&str>,
    params: &Params,
    accept: &str,
) -> Response {
    // DeleteOptions travel in the request body (kubectl `--dry-run=server`
    // and kube-rs put `dryRun: ["All"]` there), other writes in the query.
    let dry_run = params.dry_run() || (*method == Method::DELETE && body_requests_dry_run(body));
    match *method {
        Method::GET => {
            let cluster = shared.lock();
            match cluster.get_sub(rt, ns, name, sub) {
                Ok(o) if accept.contains("as=Table") && sub == Sub::Main => json_response(
                    StatusCode::OK,
                    &crate::table::table(
                        rt.kind,
                        &[&o],
                        cluster.now,
                        params.get("includeObject").unwrap_or_default(),
                        cluster.store.resource_version(),
                    ),
                ),
                other => result_response(StatusCode::OK, other),
            }
        }
        Method::PUT => {
            let result = serde_json::from_slice::<Value>(body)
                .map_err(|e| {
                    ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
                })
                .and_then(|v| shared.lock().replace(rt, ns, name, sub, v, dry_run));
            result_response(StatusCode::OK, result)
        }
        Method::PATCH => {
            let content_type = content_type.unwrap_or_default();
            let Some(kind) = PatchKind::from_content_type(content_type) else {
                return error_response(&ApiError::unsupported_media_type(content_type));
            };
            result_response(
                StatusCode::OK,
                shared.lock().patch(rt, ns, name, sub, kind, body, dry_run),
            )
        }
        Method::DELETE if sub == Sub::Main => {
            let result = shared.lock().delete(rt, ns, name, dry_run);
            match result {
                Ok(o) if rt.kind == Kind::Pod => json_response(StatusCode::OK, &o),
                Ok(o) => {
                    let mut details =
                        json!({"name": name, "kind": rt.plural, "uid": o["metadata"]["uid"]});
                    if !rt.group.is_empty() {
                        details["group"] = json!(rt.group);
                    }
                    json_response(
                        StatusCode::OK,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "details": details}),
                    )
                }
                Err(e) => error_response(&e),
            }
        }
        _ => error_response(&ApiError::method_not_allowed(method.as_str())),
    }
}

/// The selectors and namespace a LIST or WATCH applies.
struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn from_params(rt: &ResourceType, ns: &str, params: &Params) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(params.get("fieldSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(field) = fields.unsupported_field(rt.kind) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {field}"
            )));
        }
        Ok(Self {
            namespace: (!ns.is_empty()).then(|| ns.to_owned()),
            labels,
            fields,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| namespace_of(object) == ns)
            && self.labels.matches_object(object)
            && self.fields.matches(object)
    }

    /// How a change looks to this watcher, if it sees it at all.
    fn translate(&self, change: &Change) -> Option<(&'static str, Value)> {
        let now = self.matches(&change.object);
        let kind = match change.change {
            ChangeType::Added | ChangeType::Deleted => now.then_some(change.change),
            ChangeType::Modified => match (
                change.previous.as_ref().is_some_and(|p| self.matches(p)),
                now,
            ) {
                (true, true) => Some(ChangeType::Modified),
                (false, true) => Some(ChangeType::Added),
                (true, false) => Some(ChangeType::Deleted),
                (false, false) => None,
            },
        }?;
        Some((kind.as_str(), change.object.clone()))
    }
}

fn list(
    shared: &Shared,
    rt: &'static ResourceType,
    ns: &str,
    params: &Params,
    accept: &str,
) -> Response {
    let filter = match Filter::from_params(rt, ns, params) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let cluster = shared.lock();
    let objects: Vec<&Value> = cluster
        .store
        .list(rt.kind, (!ns.is_empty()).then_some(ns))
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let rv = cluster.store.resource_version();
    if accept.contains("as=Table") {
        return json_response(
            StatusCode::OK,
            &crate::table::table(
                rt.kind,
                &objects,
                cluster.now,
                params.get("includeObject").unwrap_or_default(),
                rv,
            ),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", rt.kind_name),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": objects,
        }),
    )
}

struct WatchState {
    queue: VecDeque<Bytes>,
    feed: broadcast::Receiver<Arc<Change>>,
    filter: Filter,
    kind: Kind,
    deadline: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_response(
    shared: &Shared,
    rt: &'static ResourceType,
    ns: &str,
    params: &Params,
) -> Response {
    let filter = match Filter::from_params(rt, ns, params) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let requested: Option<u64> = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let mut queue = VecDeque::new();
    let feed = {
        let cluster = shared.lock();
        let since = match requested {
            Some(v) => v,
            None => {
                // Without a version a watch starts with the current state.
                for o in cluster.store.list(rt.kind, (!ns.is_empty()).then_some(ns)) {
                    if filter.matches(o) {
                        queue.push_back(watch_line("ADDED", o));
                    }
                }
                cluster.store.resource_version()
            }
        };
        let (past, feed) = cluster.store.changes_since(rt.kind, since);
        for change in past {
            if let Some((kind, object)) = filter.translate(&change) {
                queue.push_back(watch_line(kind, &object));
            }
        }
        feed
    };
    let state = WatchState {
        queue,
        feed,
        filter,
        kind: rt.kind,
        // A client may ask for any number of seconds; a day is forever here.
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout.min(86_400)),
        shutdown: shared.shutdown.clone(),
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.queue.pop_front() {
                return Some((Ok::<Bytes, std::convert::Infallible>(line), st));
            }
            if *st.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep_until(st.deadline) => return None,
                changed = st.shutdown.changed() => if changed.is_err() || *st.shutdown.borrow() { return None },
                message = st.feed.recv() => match message {
                    Ok(change) if change.kind == st.kind => {
                        if let Some((kind, object)) = st.filter.translate(&change) {
                            st.queue.push_back(watch_line(kind, &object));
                        }
                    }
                    Ok(_) => {}
                    // A watcher that fell behind is closed; clients re-list,
                    // as they do when a real apiserver drops a watch.
                    Err(_) => return None,
                },
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn logs(shared: &Shared, ns: &str, name: &str, params: &Params) -> Response {
    let query = LogQuery {
        container: params.get("container").map(str::to_owned),
        tail_lines: params
            .get("tailLines")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|n| n.max(0) as usize),
        since_seconds: params.get("sinceSeconds").and_then(|v| v.parse().ok()),
        timestamps: params.flag("timestamps"),
        previous: params.flag("previous"),
        limit_bytes: params.get("limitBytes").and_then(|v| v.parse().ok()),
    };
    match shared.lock().pod_logs(ns, name, &query) {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        Err(e) => error_response(&e),
    }
}

async fn exec(
    shared: &Shared,
    parts: &mut axum::http::request::Parts,
    ns: &str,
    name: &str,
    params: &Params,
) -> Response {
    if let Err(e) = shared.lock().exec_target(ns, name, params.get("container")) {
        return error_response(&e);
    }
    let ws = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(ws) => ws,
        Err(_) => {
            return error_response(&ApiError::bad_request(
                "Upgrade request required: the fake apiserver only supports WebSocket exec (v5.channel.k8s.io, v4.channel.k8s.io)",
            ));
        }
    };
    let argv = params.all("command");
    let outcome = shared.lock().exec(ns, name, params.get("container"), &argv);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    let streams = (
        params.get("stdout") != Some("false"),
        params.get("stderr") != Some("false"),
    );
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| exec_session(socket, outcome, argv, streams))
}

/// How long the fake's "container runtime" takes to start an exec'd
/// process. A real one takes tens of milliseconds; a fake that answers at
/// once loses a race inside kubectl (client-go starts reading the socket
/// before it has registered its stdout/stderr/error streams, and discards
/// frames for streams it does not know yet, then fails with "closed all
/// streams"). The CI failure this prevents happened on a loaded 2-core machine.
const EXEC_START_LATENCY: Duration = Duration::from_millis(50);

/// The v4/v5 channel protocol: stdout on 1, stderr on 2, the final
/// metav1.Status on 3, then a normal close (code 1000), without which
/// kubectl reports "close 1005".
async fn exec_session(
    mut socket: WebSocket,
    outcome: ExecOutcome,
    argv: Vec<String>,
    (stdout, stderr): (bool, bool),
) {
    let frame = |channel: u8, data: &[u8]| {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(Bytes::from(bytes))
    };
    let status = if outcome.exit_code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {}", argv.join(" "), outcome.exit_code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": outcome.exit_code.to_string()}]}})
    };
    let mut messages = Vec::new();
    if stdout && !outcome.stdout.is_empty() {
        messages.push(frame(1, outcome.stdout.as_bytes()));
    }
    if stderr && !outcome.stderr.is_empty() {
        messages.push(frame(2, outcome.stderr.as_bytes()));
    }
    messages.push(frame(3, status.to_string().as_bytes()));
    messages.push(Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    })));
    tokio::time::sleep(EXEC_START_LATENCY).await;
    for message in messages {
        if socket.send(message).await.is_err() {
            return;
        }
    }
    // Wait briefly for the client's close reply so the close handshake completes.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn metrics(
    shared: &Shared,
    version: &str,
    ns: Option<&str>,
    plural: &str,
    name: Option<&str>,
    params: &Params,
) -> Response {
    let api_version = format!("metrics.k8s.io/{version}");
    let cluster = shared.lock();
    let labels = match LabelSelector::parse(params.get("labelSelector").unwrap_or_default()) {
        Ok(l) => l,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let (kind, list_kind, items): (Kind, &str, Vec<Value>) = if plural == "pods" {
        let pods = cluster.store.list(Kind::Pod, ns);
        (
            Kind::Pod,
            "PodMetricsList",
            pods.into_iter()
                .filter(|p| {
                    name.is_none_or(|n| crate::store::name_of(p) == n) && labels.matches_object(p)
                })
                .filter_map(|p| cluster.pod_metrics(p, &api_version))
                .collect(),
        )
    } else {
        let nodes = cluster.store.list(Kind::Node, None);
        (
            Kind::Node,
            "NodeMetricsList",
            nodes
                .into_iter()
                .filter(|n| {
                    name.is_none_or(|want| crate::store::name_of(n) == want)
                        && labels.matches_object(n)
                })
                .filter_map(|n| cluster.node_metrics(n, &api_version))
                .collect(),
        )
    };
    match name {
        Some(n) => match items.into_iter().next() {
            Some(item) => json_response(StatusCode::OK, &item),
            None => {
                let what = if kind == Kind::Pod {
                    "podmetrics"
                } else {
                    "nodemetrics"
                };
                error_response(&ApiError::new(
                    404,
                    "NotFound",
                    format!("{what}.metrics.k8s.io \"{n}\" not found"),
                ))
            }
        },
        None => json_response(
            StatusCode::OK,
            &json!({"kind": list_kind, "apiVersion": api_version,
            "metadata": {}, "items": items}),
        ),
    }
}

/// Whether a DeleteOptions body asks for a dry run (`"dryRun": ["All"]`).
fn body_requests_dry_run(body: &Bytes) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|options| {
        options["dryRun"]
            .as_array()
            .is_some_and(|modes| modes.iter().any(|m| m == "All"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_tolerate_empty_segments_and_decode() {
        let p = Params::parse(
            "&labelSelector=app%3Domendb%2Ctier+in+%28a%29&&watch=true&command=ls&command=-l",
        );
        assert_eq!(p.get("labelSelector"), Some("app=omendb,tier in (a)"));
        assert!(p.flag("watch"));
        assert_eq!(p.all("command"), vec!["ls", "-l"]);
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn routes_cover_namespaced_cluster_and_subresources() {
        assert!(matches!(route("/api/v1/namespaces/ns/pods/p/log"),
            Route::Object { rt, namespace: Some(_), name: Some(_), sub: Some(s) } if rt.kind == Kind::Pod && s == "log"));
        assert!(
            matches!(route("/api/v1/namespaces/ns"), Route::Object { rt, name: Some(_), .. } if rt.kind == Kind::Namespace)
        );
        assert!(
            matches!(route("/api/v1/nodes"), Route::Object { rt, name: None, .. } if rt.kind == Kind::Node)
        );
        assert!(
            matches!(route("/apis/apps/v1/namespaces/ns/deployments/d/scale"), Route::Object { sub: Some(s), .. } if s == "scale")
        );
        assert!(matches!(
            route("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods"),
            Route::Metrics { .. }
        ));
        assert!(matches!(route("/apis/batch/v1/jobs"), Route::Unknown));
        assert!(matches!(
            route("/api/v1/namespaces/ns/nodes"),
            Route::Unknown
        ));
    }
}
