//! Small accessors for Kubernetes objects held as JSON.
//!
//! Objects stay `serde_json::Value` inside this crate (as kubectl's
//! unstructured objects do) so that fields newer than the compiled-in
//! k8s-openapi structs survive a round trip, and so the decision logic can be
//! table-tested on literal JSON.

use serde_json::Value;

/// The value at a JSON Pointer (`/metadata/name`).
pub fn get_path<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

/// The string at a JSON Pointer.
pub fn get_str<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    get_path(value, pointer).and_then(Value::as_str)
}

/// The integer at a JSON Pointer.
pub fn get_i64(value: &Value, pointer: &str) -> Option<i64> {
    get_path(value, pointer).and_then(Value::as_i64)
}

/// The boolean at a JSON Pointer (`false` when absent).
pub fn get_bool(value: &Value, pointer: &str) -> bool {
    get_path(value, pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A string value.
pub fn as_str(value: &Value) -> Option<&str> {
    value.as_str()
}

/// Escapes one reference token of a JSON Pointer (RFC 6901).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Splits a JSON Pointer into unescaped tokens; `None` if it does not start
/// with `/` (the empty pointer is the whole document: no tokens).
pub fn split_pointer(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// A `LabelSelector` (`matchLabels` + `matchExpressions`) as the string form
/// the API's `labelSelector` parameter takes (`app=web,tier in (a,b),!x`).
/// `None` when the selector is missing or empty (which would select every
/// object: callers must not list with it).
pub fn label_selector_string(selector: &Value) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = get_path(selector, "/matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in get_path(selector, "/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = get_str(expr, "/key").unwrap_or_default();
        let values: Vec<&str> = get_path(expr, "/values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match get_str(expr, "/operator").unwrap_or_default() {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_strings() {
        assert_eq!(
            label_selector_string(&json!({"matchLabels": {"app": "omendb", "tier": "db"}})),
            Some("app=omendb,tier=db".into())
        );
        assert_eq!(
            label_selector_string(&json!({"matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "x", "operator": "Exists"},
                {"key": "y", "operator": "NotIn", "values": ["a"]},
            ]})),
            Some("env in (prod,stage),!canary,x,y notin (a)".into())
        );
        assert_eq!(label_selector_string(&json!({})), None);
    }

    #[test]
    fn pointers() {
        assert_eq!(
            split_pointer("/a~1b/c~0d"),
            Some(vec!["a/b".into(), "c~d".into()])
        );
        assert_eq!(split_pointer(""), Some(vec![]));
        assert_eq!(split_pointer("x"), None);
        assert_eq!(escape_token("a/b~"), "a~1b~0");
    }
}
