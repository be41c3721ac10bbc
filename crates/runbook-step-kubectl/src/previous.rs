//! `previous` for the `patch` action: the values a patch is about to change,
//! shaped so that applying `previous` with the same patch type restores them
//! (this is what `rollback: auto` sends).
//!
//! * merge (RFC 7386): a document with the patch's shape holding the old
//!   values; a field the patch adds is `null` (merge-patch deletion); lists
//!   are atomic, so the whole old list is recorded.
//! * strategic: the same, except that lists with a merge key (containers by
//!   `name`, ports by `containerPort`, ...) are merged element-wise: each
//!   patched element is recorded by its key with its old values, and an
//!   element the patch adds is recorded as `{key, "$patch": "delete"}`. A
//!   list from which the patch deletes an element is recorded whole, with
//!   a `{"$patch": "replace"}` element, so the element returns to its place.
//! * json (RFC 6902): the inverse operations, in the order that undoes the
//!   patch (`previous` is itself a JSON patch).

use crate::json::{escape_token, split_pointer};
use serde_json::{Map, Value, json};

/// Why `previous` could not be computed (the patch does not fit the object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PreviousError(pub String);

/// The merge key of a strategic-merge list, by field name and its parent
/// field (ports of a container merge by `containerPort`, ports of a service
/// by `port`). `None`: the list is atomic (replaced whole).
pub fn merge_key(parent: Option<&str>, field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "hostAliases" => Some("ip"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => match parent {
            Some("containers" | "initContainers" | "ephemeralContainers") => Some("containerPort"),
            _ => Some("port"),
        },
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// Whether a key is a strategic-merge directive rather than a field.
fn is_directive(key: &str) -> bool {
    key.starts_with('$')
}

/// `previous` of a merge or strategic patch (`strategic` picks list merging).
pub fn previous_for_merge(
    patch: &Value,
    object: &Value,
    strategic: bool,
) -> Result<Value, PreviousError> {
    match patch {
        Value::Object(_) => Ok(merge_prev(patch, object, strategic, None)),
        _ => Err(PreviousError(
            "a merge or strategic patch must be a JSON object".to_string(),
        )),
    }
}

fn merge_prev(patch: &Value, current: &Value, strategic: bool, parent: Option<&str>) -> Value {
    let (Value::Object(p), Some(cur)) = (patch, current.as_object()) else {
        // The patch puts an object where there was none (or a scalar): the
        // old value is the whole old value.
        return current.clone();
    };
    if strategic && p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut whole = current.clone();
        if let Some(m) = whole.as_object_mut() {
            m.insert("$patch".into(), json!("replace"));
        }
        return whole;
    }
    let mut out = Map::new();
    for (key, value) in p {
        if is_directive(key) {
            continue;
        }
        let old = cur.get(key).cloned().unwrap_or(Value::Null);
        let prev = match (value, &old) {
            (_, Value::Null) => Value::Null,
            (Value::Object(_), Value::Object(_)) => merge_prev(value, &old, strategic, Some(key)),
            (Value::Array(items), Value::Array(old_items)) if strategic => {
                match merge_key(parent, key) {
                    Some(mk) if items.iter().all(Value::is_object) => {
                        if deletes_an_element(items, old_items, mk) {
                            // Merged back, a deleted element would land at
                            // the end of the list: another pod template
                            // (a new rollout instead of the old ReplicaSet)
                            // and another default container. The whole old
                            // list, replacing the list, puts it back in
                            // place.
                            let mut whole = old_items.clone();
                            whole.push(json!({"$patch": "replace"}));
                            Value::Array(whole)
                        } else {
                            Value::Array(list_prev(items, old_items, mk, strategic, key))
                        }
                    }
                    _ => old.clone(),
                }
            }
            _ => old.clone(),
        };
        out.insert(key.clone(), prev);
    }
    Value::Object(out)
}

/// Whether the patch's list `items` deletes an element of `old_items`.
fn deletes_an_element(items: &[Value], old_items: &[Value], key: &str) -> bool {
    items.iter().any(|item| {
        item.get("$patch").and_then(Value::as_str) == Some("delete")
            && item
                .get(key)
                .is_some_and(|id| old_items.iter().any(|old| old.get(key) == Some(id)))
    })
}

fn list_prev(
    items: &[Value],
    old_items: &[Value],
    key: &str,
    strategic: bool,
    field: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    for item in items {
        let Some(id) = item.get(key) else {
            continue;
        };
        let old = old_items.iter().find(|o| o.get(key) == Some(id));
        let directive = item.get("$patch").and_then(Value::as_str);
        match (old, directive) {
            // Deleting an element: restoring means adding it back whole.
            (Some(old), Some("delete")) => out.push(old.clone()),
            (None, Some("delete")) => {}
            (Some(old), _) => {
                let mut prev = merge_prev(item, old, strategic, Some(field));
                if let Some(m) = prev.as_object_mut() {
                    m.insert(key.to_string(), id.clone());
                }
                out.push(prev);
            }
            (None, _) => out.push(json!({key: id, "$patch": "delete"})),
        }
    }
    out
}

/// `previous` of a JSON patch: the inverse operations. Applies the patch to
/// a copy of `object` one operation at a time, recording before each how to
/// undo it; fails like the server would when an operation does not apply.
pub fn previous_for_json(patch: &Value, object: &Value) -> Result<Value, PreviousError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PreviousError("a json patch must be a list of operations".to_string()))?;
    let mut doc = object.clone();
    let mut undo: Vec<Vec<Value>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let fail = |why: String| PreviousError(format!("json patch operation {i}: {why}"));
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("missing `op`".into()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("missing `path`".into()))?;
        let inverse = match name {
            "add" => inverse_of_add(&doc, path).map_err(fail)?,
            "remove" | "replace" => {
                let old = doc
                    .pointer(path)
                    .ok_or_else(|| fail(format!("path `{path}` does not exist")))?;
                let back = if name == "remove" { "add" } else { "replace" };
                vec![json!({"op": back, "path": path, "value": old})]
            }
            "copy" => inverse_of_add(&doc, path).map_err(fail)?,
            "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail("missing `from`".into()))?;
                let mut inv = vec![json!({"op": "move", "from": path, "path": from})];
                if let Some(old) = doc.pointer(path)
                    && !parent_is_array(&doc, path)
                {
                    inv.push(json!({"op": "add", "path": path, "value": old}));
                }
                inv
            }
            "test" => Vec::new(),
            other => return Err(fail(format!("unknown op `{other}`"))),
        };
        let one: json_patch::Patch = serde_json::from_value(Value::Array(vec![op.clone()]))
            .map_err(|e| fail(e.to_string()))?;
        json_patch::patch(&mut doc, &one).map_err(|e| fail(e.to_string()))?;
        undo.push(inverse);
    }
    Ok(Value::Array(undo.into_iter().rev().flatten().collect()))
}

fn parent_is_array(doc: &Value, path: &str) -> bool {
    let Some(tokens) = split_pointer(path) else {
        return false;
    };
    let parent = parent_pointer(&tokens);
    doc.pointer(&parent).is_some_and(Value::is_array)
}

fn parent_pointer(tokens: &[String]) -> String {
    tokens[..tokens.len().saturating_sub(1)]
        .iter()
        .map(|t| format!("/{}", escape_token(t)))
        .collect()
}

/// How to undo `add` (or `copy`) at `path`: remove what it inserts into an
/// array, restore what it overwrites in an object, or remove what it creates.
fn inverse_of_add(doc: &Value, path: &str) -> Result<Vec<Value>, String> {
    let tokens = split_pointer(path).ok_or_else(|| format!("`{path}` is not a JSON pointer"))?;
    let Some(last) = tokens.last() else {
        // Replacing the whole document.
        return Ok(vec![json!({"op": "replace", "path": "", "value": doc})]);
    };
    let parent = parent_pointer(&tokens);
    match doc.pointer(&parent) {
        Some(Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("`{last}` is not an array index"))?
            };
            Ok(vec![
                json!({"op": "remove", "path": format!("{parent}/{index}")}),
            ])
        }
        Some(Value::Object(map)) => Ok(match map.get(last) {
            Some(old) => vec![json!({"op": "replace", "path": path, "value": old})],
            None => vec![json!({"op": "remove", "path": path})],
        }),
        _ => Err(format!("the parent of `{path}` does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [
                    {"name": "proxy", "image": "envoy:1"},
                    {"name": "omendb", "image": "omendb:1",
                     "resources": {"limits": {"memory": "8Gi", "cpu": "2"}},
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                ]}},
            },
        })
    }

    fn strategic_apply(object: &Value, patch: &Value) -> Value {
        // A small strategic-merge applier for the cases in these tests, so
        // that round trips (patch, then previous) can be checked.
        fn apply(target: &mut Value, patch: &Value, parent: Option<&str>) {
            let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
                *target = patch.clone();
                return;
            };
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                match v {
                    Value::Null => {
                        t.remove(k);
                    }
                    Value::Array(items)
                        if items.iter().any(|i| {
                            i.get("$patch").and_then(Value::as_str) == Some("replace")
                        }) =>
                    {
                        let kept = items.iter().filter(|i| i.get("$patch").is_none());
                        t.insert(k.clone(), Value::Array(kept.cloned().collect()));
                    }
                    Value::Array(items) if merge_key(parent, k).is_some() => {
                        let mk = merge_key(parent, k).expect("checked");
                        let list = t.entry(k.clone()).or_insert_with(|| json!([]));
                        let arr = list.as_array_mut().expect("list");
                        for item in items {
                            let pos = arr.iter().position(|o| o.get(mk) == item.get(mk));
                            let delete =
                                item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, delete) {
                                (Some(i), true) => {
                                    arr.remove(i);
                                }
                                (None, true) => {}
                                (Some(i), false) => apply(&mut arr[i], item, Some(k)),
                                (None, false) => arr.push(item.clone()),
                            }
                        }
                    }
                    Value::Object(_) => {
                        let entry = t.entry(k.clone()).or_insert_with(|| json!({}));
                        if !entry.is_object() {
                            *entry = json!({});
                        }
                        apply(entry, v, Some(k));
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut out = object.clone();
        apply(&mut out, patch, None);
        out
    }

    #[test]
    fn merge_previous_records_old_values_and_nulls_for_new_fields() {
        let patch = json!({"spec": {"replicas": 5, "paused": true},
                           "metadata": {"labels": {"tier": "db"}}});
        let prev = previous_for_merge(&patch, &deployment(), false).expect("previous");
        assert_eq!(
            prev,
            json!({"spec": {"replicas": 3, "paused": null},
                   "metadata": {"labels": {"tier": null}}})
        );
        // Merge lists are atomic: the whole old list.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}});
        let prev = previous_for_merge(&patch, &deployment(), false).expect("previous");
        assert_eq!(
            prev["spec"]["template"]["spec"]["containers"],
            deployment()["spec"]["template"]["spec"]["containers"]
        );
    }

    #[test]
    fn strategic_previous_records_matching_list_elements_by_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "omendb", "resources": {"limits": {"memory": "16Gi"}},
             "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
            {"name": "debug", "image": "busybox"},
        ]}}}});
        let before = deployment();
        let prev = previous_for_merge(&patch, &before, true).expect("previous");
        assert_eq!(
            prev,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "omendb", "resources": {"limits": {"memory": "8Gi"}},
                 "env": [{"name": "B", "value": "2"}, {"name": "C", "$patch": "delete"}]},
                {"name": "debug", "$patch": "delete"},
            ]}}}})
        );
        let after = strategic_apply(&before, &patch);
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"]["memory"],
            "16Gi"
        );
        assert_eq!(strategic_apply(&after, &prev), before);
    }

    #[test]
    fn strategic_previous_of_an_element_deletion_re_adds_it() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "proxy", "$patch": "delete"}]}}}});
        let before = deployment();
        let prev = previous_for_merge(&patch, &before, true).expect("previous");
        let mut whole = before["spec"]["template"]["spec"]["containers"].clone();
        if let Some(list) = whole.as_array_mut() {
            list.push(json!({"$patch": "replace"}));
        }
        assert_eq!(prev["spec"]["template"]["spec"]["containers"], whole);
        // Back in its place, not appended: the same pod template as before.
        let after = strategic_apply(&before, &patch);
        assert_eq!(strategic_apply(&after, &prev), before);
    }

    #[test]
    fn merge_key_table() {
        assert_eq!(merge_key(Some("spec"), "containers"), Some("name"));
        assert_eq!(
            merge_key(Some("containers"), "ports"),
            Some("containerPort")
        );
        assert_eq!(merge_key(Some("spec"), "ports"), Some("port"));
        assert_eq!(
            merge_key(Some("containers"), "volumeMounts"),
            Some("mountPath")
        );
        assert_eq!(merge_key(Some("spec"), "hostAliases"), Some("ip"));
        assert_eq!(merge_key(Some("containers"), "args"), None);
        assert_eq!(merge_key(Some("spec"), "tolerations"), None);
    }

    #[test]
    fn previous_rejects_non_object_merge_patch() {
        assert!(previous_for_merge(&json!([1]), &deployment(), true).is_err());
    }

    #[test]
    fn json_previous_inverts_every_op() {
        let before = deployment();
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/spec/paused", "value": true},
            {"op": "add", "path": "/metadata/labels/app", "value": "other"},
            {"op": "add", "path": "/spec/template/spec/containers/1/env/-", "value": {"name": "C"}},
            {"op": "add", "path": "/spec/template/spec/containers/0", "value": {"name": "first"}},
            {"op": "remove", "path": "/spec/template/spec/containers/2/resources"},
            {"op": "test", "path": "/spec/replicas", "value": 5},
            {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/moved"},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
        ]);
        let prev = previous_for_json(&patch, &before).expect("previous");
        let ops: json_patch::Patch = serde_json::from_value(patch).expect("patch");
        let mut after = before.clone();
        json_patch::patch(&mut after, &ops).expect("applies");
        assert_ne!(after, before);
        let undo: json_patch::Patch = serde_json::from_value(prev).expect("inverse is a patch");
        json_patch::patch(&mut after, &undo).expect("inverse applies");
        assert_eq!(after, before);
    }

    #[test]
    fn json_previous_reports_a_path_that_does_not_exist() {
        let err = previous_for_json(
            &json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
            &deployment(),
        )
        .expect_err("missing path");
        assert!(err.0.contains("/spec/nope/x"), "{err}");
        assert!(previous_for_json(&json!({"op": "add"}), &deployment()).is_err());
    }
}
