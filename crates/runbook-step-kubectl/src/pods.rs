//! What kubectl decides about pods, as pure functions on pod JSON: the
//! one-line summary of `get pods` (phase, readiness, restarts, reasons), the
//! pod `exec` and `logs` pick for a workload, and a pod's default container.
//!
//! The orderings follow kubectl's `podutils.ActivePods` (exec: most active
//! first, through `sort.Reverse`) and `podutils.ByLogging` (logs).

use crate::json::{as_str, get_i64, get_path, get_str};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::cmp::Ordering;

/// Annotation naming the container that `logs`/`exec` use by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The summary row of a pod: `{name, phase, ready, restarts, reasons}`.
///
/// `reasons` lists, without duplicates and in container order, the pod's own
/// `status.reason` (such as `Evicted`), then each container's current waiting
/// or terminated reason and its last termination reason, so a container that
/// was `OOMKilled` and is running again still shows `OOMKilled`.
pub fn summary(pod: &Value) -> Value {
    let mut reasons: Vec<String> = Vec::new();
    let mut push = |reason: Option<&str>| {
        if let Some(r) = reason.filter(|r| !r.is_empty())
            && !reasons.iter().any(|seen| seen == r)
        {
            reasons.push(r.to_string());
        }
    };
    push(get_str(pod, "/status/reason"));
    let mut restarts = 0i64;
    for status in container_statuses(pod, "initContainerStatuses")
        .chain(container_statuses(pod, "containerStatuses"))
    {
        push(get_str(status, "/state/waiting/reason"));
        push(get_str(status, "/state/terminated/reason"));
        push(get_str(status, "/lastState/terminated/reason"));
    }
    for status in container_statuses(pod, "containerStatuses") {
        restarts += get_i64(status, "/restartCount").unwrap_or(0);
    }
    json!({
        "name": get_str(pod, "/metadata/name").unwrap_or_default(),
        "phase": get_str(pod, "/status/phase").unwrap_or("Unknown"),
        "ready": is_ready(pod),
        "restarts": restarts,
        "reasons": reasons,
    })
}

fn container_statuses<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    get_path(pod, &format!("/status/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    get_path(pod, "/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| get_str(c, "/type") == Some("Ready") && get_str(c, "/status") == Some("True"))
}

fn ready_time(pod: &Value) -> Option<DateTime<Utc>> {
    ready_condition(pod).and_then(|c| timestamp(c, "/lastTransitionTime"))
}

/// Parses an RFC 3339 timestamp at `pointer`.
pub fn timestamp(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    get_str(value, pointer)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn max_restarts(pod: &Value) -> i64 {
    container_statuses(pod, "containerStatuses")
        .filter_map(|s| get_i64(s, "/restartCount"))
        .max()
        .unwrap_or(0)
}

fn phase_rank(pod: &Value, order: [&str; 3]) -> usize {
    let phase = get_str(pod, "/status/phase").unwrap_or("");
    // Phases outside the three (Succeeded, Failed) rank like Go's zero value
    // for a missing map key, which is the same as the first entry.
    order.iter().position(|p| *p == phase).unwrap_or(0)
}

fn assigned(pod: &Value) -> bool {
    get_str(pod, "/spec/nodeName").is_some_and(|n| !n.is_empty())
}

/// Go's `afterOrZero(t1, t2)`: a zero (missing) time counts as after any
/// real one.
fn after_or_zero(t1: Option<DateTime<Utc>>, t2: Option<DateTime<Utc>>) -> bool {
    match (t1, t2) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a > b,
    }
}

fn less_to_ordering(less: impl Fn(&Value, &Value) -> bool, a: &Value, b: &Value) -> Ordering {
    if less(a, b) {
        Ordering::Less
    } else if less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// kubectl's `ActivePods.Less`: "less active" sorts first.
fn active_less(a: &Value, b: &Value) -> bool {
    if assigned(a) != assigned(b) {
        return !assigned(a);
    }
    let order = ["Pending", "Unknown", "Running"];
    let (ra, rb) = (phase_rank(a, order), phase_rank(b, order));
    if ra != rb {
        return ra < rb;
    }
    if is_ready(a) != is_ready(b) {
        return !is_ready(a);
    }
    let deleting = |p: &Value| get_path(p, "/metadata/deletionTimestamp").is_some();
    if deleting(a) != deleting(b) {
        return deleting(a);
    }
    if is_ready(a) && is_ready(b) && ready_time(a) != ready_time(b) {
        return after_or_zero(ready_time(a), ready_time(b));
    }
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    let (ca, cb) = (
        timestamp(a, "/metadata/creationTimestamp"),
        timestamp(b, "/metadata/creationTimestamp"),
    );
    if ca != cb {
        return after_or_zero(ca, cb);
    }
    false
}

/// kubectl's `ByLogging.Less`: the pod whose logs are most useful sorts first.
fn logging_less(a: &Value, b: &Value) -> bool {
    if assigned(a) != assigned(b) {
        return assigned(a);
    }
    let order = ["Running", "Unknown", "Pending"];
    let (ra, rb) = (phase_rank(a, order), phase_rank(b, order));
    if ra != rb {
        return ra < rb;
    }
    if is_ready(a) != is_ready(b) {
        return is_ready(a);
    }
    if is_ready(a) && is_ready(b) && ready_time(a) != ready_time(b) {
        return after_or_zero(ready_time(b), ready_time(a));
    }
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    let (ca, cb) = (
        timestamp(a, "/metadata/creationTimestamp"),
        timestamp(b, "/metadata/creationTimestamp"),
    );
    if ca != cb {
        return after_or_zero(cb, ca);
    }
    false
}

/// Sorts pods for `exec`: the most active first (assigned, Running, Ready,
/// ready longest, fewest restarts, oldest), as kubectl's
/// `sort.Reverse(ActivePods)`. The sort is stable, so ties keep list order.
pub fn sort_for_exec(pods: &mut [Value]) {
    pods.sort_by(|a, b| less_to_ordering(active_less, b, a));
}

/// Sorts pods for `logs` of a workload, as kubectl's `ByLogging`.
pub fn sort_for_logs(pods: &mut [Value]) {
    pods.sort_by(|a, b| less_to_ordering(logging_less, a, b));
}

/// The container that `logs`/`exec` use when none is named: the one in the
/// `kubectl.kubernetes.io/default-container` annotation if the pod has it,
/// else the first. `Err` when the pod has no containers.
pub fn default_container(pod: &Value) -> Result<String, String> {
    let names = container_names(pod);
    let annotated = get_path(pod, "/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(as_str);
    if let Some(name) = annotated
        && names.iter().any(|n| n == name)
    {
        return Ok(name.to_string());
    }
    names.into_iter().next().ok_or_else(|| {
        format!(
            "pod \"{}\" has no containers",
            get_str(pod, "/metadata/name").unwrap_or_default()
        )
    })
}

/// The names of the pod's regular containers, in order.
pub fn container_names(pod: &Value) -> Vec<String> {
    get_path(pod, "/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| get_str(c, "/name").map(str::to_string))
        .collect()
}

/// Every container name of the pod (init, regular, ephemeral), for messages.
pub fn all_container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            get_path(pod, &format!("/spec/{field}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| get_str(c, "/name").map(str::to_string))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, restarts: i64, created: &str) -> Value {
        json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                "lastTransitionTime": created}],
                "containerStatuses": [{"name": "app", "restartCount": restarts}],
            },
        })
    }

    fn names(pods: &[Value]) -> Vec<&str> {
        pods.iter()
            .map(|p| get_str(p, "/metadata/name").unwrap_or_default())
            .collect()
    }

    #[test]
    fn reasons_include_last_termination_and_deduplicate() {
        let p = json!({
            "metadata": {"name": "omendb-1"},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "omendb", "restartCount": 3,
                     "state": {"running": {}},
                     "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}},
                    {"name": "sidecar", "restartCount": 2,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"reason": "OOMKilled"}}},
                ],
            },
        });
        let s = summary(&p);
        assert_eq!(s["reasons"], json!(["OOMKilled", "CrashLoopBackOff"]));
        assert_eq!(s["restarts"], json!(5));
        assert_eq!(s["ready"], json!(false));
        assert_eq!(s["phase"], json!("Running"));
        assert_eq!(s["name"], json!("omendb-1"));
    }

    #[test]
    fn reasons_include_pod_reason_and_init_containers() {
        let p = json!({
            "metadata": {"name": "x"},
            "status": {
                "phase": "Failed", "reason": "Evicted",
                "initContainerStatuses": [{"name": "init", "state": {"terminated": {"reason": "Error"}}}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        });
        assert_eq!(
            summary(&p)["reasons"],
            json!(["Evicted", "Error", "PodInitializing"])
        );
    }

    #[test]
    fn summary_of_an_empty_pod_does_not_panic() {
        let s = summary(&json!({}));
        assert_eq!(s["phase"], json!("Unknown"));
        assert_eq!(s["reasons"], json!([]));
    }

    #[test]
    fn exec_prefers_running_ready_then_fewer_restarts_then_older() {
        let mut pods = vec![
            pod("pending", "Pending", false, 0, "2026-01-01T00:00:00Z"),
            pod("notready", "Running", false, 0, "2026-01-01T00:00:00Z"),
            pod("ready-restarty", "Running", true, 5, "2026-01-01T00:00:00Z"),
            pod("ready-new", "Running", true, 0, "2026-01-02T00:00:00Z"),
            pod("ready-old", "Running", true, 0, "2026-01-01T00:00:00Z"),
        ];
        sort_for_exec(&mut pods);
        // ready-old has been ready longest (its ready time is older).
        assert_eq!(
            names(&pods),
            [
                "ready-old",
                "ready-restarty",
                "ready-new",
                "notready",
                "pending"
            ]
        );
    }

    #[test]
    fn exec_prefers_assigned_pods() {
        let mut unassigned = pod("unassigned", "Running", true, 0, "2026-01-01T00:00:00Z");
        unassigned["spec"]["nodeName"] = json!("");
        let mut pods = vec![
            unassigned,
            pod("assigned", "Pending", false, 0, "2026-01-01T00:00:00Z"),
        ];
        sort_for_exec(&mut pods);
        assert_eq!(names(&pods), ["assigned", "unassigned"]);
    }

    #[test]
    fn logs_prefer_running_ready_and_crashing_pods() {
        let mut pods = vec![
            pod("pending", "Pending", false, 0, "2026-01-01T00:00:00Z"),
            pod("calm", "Running", false, 0, "2026-01-01T00:00:00Z"),
            pod("crashing", "Running", false, 7, "2026-01-01T00:00:00Z"),
            pod("ready", "Running", true, 0, "2026-01-03T00:00:00Z"),
        ];
        sort_for_logs(&mut pods);
        assert_eq!(names(&pods), ["ready", "crashing", "calm", "pending"]);
    }

    #[test]
    fn default_container_uses_annotation_when_valid() {
        let mut p = json!({
            "metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER_ANNOTATION: "omendb"}},
            "spec": {"containers": [{"name": "proxy"}, {"name": "omendb"}]},
        });
        assert_eq!(default_container(&p), Ok("omendb".to_string()));
        p["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION] = json!("missing");
        assert_eq!(default_container(&p), Ok("proxy".to_string()));
        p["metadata"]["annotations"] = json!({});
        assert_eq!(default_container(&p), Ok("proxy".to_string()));
        assert!(default_container(&json!({"metadata": {"name": "e"}})).is_err());
    }
}
