//! Events as the `events` action reports them: one row per core/v1 Event,
//! sorted oldest first by the time kubectl uses (`kubectl events`'s
//! `eventTime`: the series' last observation, else `lastTimestamp`, else
//! `eventTime`), falling back to `firstTimestamp` and `creationTimestamp`.

use crate::json::{get_i64, get_str};
use crate::pods::timestamp;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The time an event last happened.
pub fn event_time(event: &Value) -> Option<DateTime<Utc>> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| timestamp(event, p))
}

/// `{type, reason, message, object, count, last_timestamp}` for one event;
/// `object` is `Kind/name` of the involved object.
pub fn row(event: &Value) -> Value {
    let object = format!(
        "{}/{}",
        get_str(event, "/involvedObject/kind").unwrap_or_default(),
        get_str(event, "/involvedObject/name").unwrap_or_default()
    );
    let count = get_i64(event, "/count")
        .or_else(|| get_i64(event, "/series/count"))
        .unwrap_or(1);
    json!({
        "type": get_str(event, "/type").unwrap_or("Normal"),
        "reason": get_str(event, "/reason").unwrap_or_default(),
        "message": get_str(event, "/message").unwrap_or_default(),
        "object": object,
        "count": count,
        "last_timestamp": event_time(event).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
    })
}

/// Rows for `events`, oldest first; events without any time come first, and
/// ties keep the server's order.
pub fn rows(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by_key(event_time);
    events.iter().map(row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_the_time_kubectl_uses() {
        let events = vec![
            json!({"reason": "late", "lastTimestamp": "2026-01-01T00:00:30Z",
                   "involvedObject": {"kind": "Pod", "name": "p"}, "count": 4, "type": "Warning",
                   "message": "Back-off restarting failed container"}),
            json!({"reason": "series", "eventTime": "2026-01-01T00:00:00Z",
                   "series": {"lastObservedTime": "2026-01-01T00:00:20Z", "count": 9}}),
            json!({"reason": "micro", "eventTime": "2026-01-01T00:00:10.123456Z"}),
            json!({"reason": "created-only", "metadata": {"creationTimestamp": "2026-01-01T00:00:05Z"}}),
            json!({"reason": "timeless"}),
        ];
        let out = rows(events);
        let reasons: Vec<&str> = out
            .iter()
            .map(|r| r["reason"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            reasons,
            ["timeless", "created-only", "micro", "series", "late"]
        );
        assert_eq!(
            out[4],
            json!({"type": "Warning", "reason": "late", "message": "Back-off restarting failed container",
                   "object": "Pod/p", "count": 4, "last_timestamp": "2026-01-01T00:00:30Z"})
        );
        assert_eq!(out[3]["count"], 9);
        assert_eq!(out[0]["count"], 1);
        assert_eq!(out[0]["last_timestamp"], Value::Null);
    }
}
