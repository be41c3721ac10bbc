//! The three patch formats kubectl and kube-rs send: strategic merge patch
//! (the subset that matters for the core/apps types the fake serves), JSON
//! merge patch (RFC 7386) and JSON patch (RFC 6902).
//!
//! Strategic merge keys are looked up by field name rather than by full type
//! path: within Deployments, ReplicaSets, Pods, Nodes and PVCs each of these
//! names means one thing, which keeps the table small.

use serde_json::{Map, Value};

/// The patch formats, identified by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Strategic,
    Merge,
    Json,
    Apply,
}

impl PatchKind {
    /// Maps a `Content-Type` (parameters ignored) to a patch kind.
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PatchError {
    #[error("{0}")]
    Body(String),
    #[error("{0}")]
    JsonPatch(String),
}

/// Applies `body` of the given kind to `document`.
pub(crate) fn apply(kind: PatchKind, document: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    match kind {
        PatchKind::Strategic => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| PatchError::Body(e.to_string()))?;
            strategic_merge(document, &patch)
        }
        PatchKind::Merge => {
            let patch: Value =
                serde_json::from_slice(body).map_err(|e| PatchError::Body(e.to_string()))?;
            json_patch::merge(document, &patch);
            Ok(())
        }
        PatchKind::Json => {
            let patch: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| PatchError::Body(e.to_string()))?;
            json_patch::patch(document, &patch).map_err(|e| PatchError::JsonPatch(e.to_string()))
        }
        PatchKind::Apply => {
            // Server-side apply is approximated as a merge patch: the fake keeps
            // no managedFields, so field ownership cannot be modelled anyway.
            let text = std::str::from_utf8(body).map_err(|e| PatchError::Body(e.to_string()))?;
            let patch: Value =
                serde_saphyr::from_str(text).map_err(|e| PatchError::Body(e.to_string()))?;
            json_patch::merge(document, &patch);
            Ok(())
        }
    }
}

/// The merge key of a list field, or `None` when the list is replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars that are merged as sets rather than replaced.
fn is_primitive_merge_list(field: &str) -> bool {
    field == "finalizers"
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// Whether a key is a patch directive the fake deliberately ignores: the
/// element order and retained keys only affect ordering and pruning details.
fn ignored_directive(key: &str) -> bool {
    key.starts_with("$setElementOrder/") || key == "$retainKeys"
}

/// Applies a strategic merge patch in place.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match patch {
        Value::Object(patch_map) => {
            if directive(patch_map) == Some("delete") {
                *target = Value::Object(Map::new());
                return Ok(());
            }
            if !target.is_object() || directive(patch_map) == Some("replace") {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_map) = target {
                merge_map(target_map, patch_map)?;
            }
            Ok(())
        }
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    for (key, value) in patch {
        if key == "$patch" || ignored_directive(key) {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (target.get_mut(field), value.as_array())
            {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child_patch) => {
                if directive(child_patch) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                let child = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                strategic_merge(child, value)?;
            }
            Value::Array(items) => {
                let merged = match (target.remove(key), merge_key(key)) {
                    (Some(Value::Array(existing)), Some(mk)) => {
                        merge_list_by_key(existing, items, mk)?
                    }
                    (Some(Value::Array(mut existing)), None) if is_primitive_merge_list(key) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                        existing
                    }
                    (_, Some(mk)) => merge_list_by_key(Vec::new(), items, mk)?,
                    (_, None) => items.iter().map(clean).collect(),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_list_by_key(
    mut existing: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    let replaces = patch
        .iter()
        .any(|item| item.as_object().and_then(directive) == Some("replace"));
    if replaces {
        return Ok(patch
            .iter()
            .filter(|item| item.as_object().and_then(directive) != Some("replace"))
            .map(clean)
            .collect());
    }
    for item in patch {
        let Some(item_map) = item.as_object() else {
            // A scalar in a keyed list is not a valid strategic patch; the
            // apiserver replaces the list in that case, and so do we.
            return Ok(patch.iter().map(clean).collect());
        };
        let Some(key_value) = item_map.get(key) else {
            return Err(PatchError::Body(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let position = existing.iter().position(|e| e.get(key) == Some(key_value));
        match (directive(item_map), position) {
            (Some("delete"), Some(index)) => {
                existing.remove(index);
            }
            (Some("delete"), None) => {}
            (_, Some(index)) => strategic_merge(&mut existing[index], item)?,
            (_, None) => existing.push(clean(item)),
        }
    }
    Ok(existing)
}

/// Removes directives and nulls from a value that is inserted rather than
/// merged, so they never reach the stored object.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut target: Value, patch: Value) -> Value {
        strategic_merge(&mut target, &patch).expect("patch applies");
        target
    }

    #[test]
    fn containers_merge_by_name() {
        let target = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let out = smp(
            target,
            json!({"spec": {"containers": [
                {"name": "b", "image": "b:2"},
                {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1", "ports": null}
            ]}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "b", "image": "b:2"},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn resources_and_ports_merge() {
        let target = json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {"limits": {"memory": "4Gi", "cpu": "1"}}}]});
        let out = smp(
            target,
            json!({"containers": [{"name": "a",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}],
            "resources": {"limits": {"memory": "16Gi"}}}]}),
        );
        assert_eq!(
            out["containers"][0]["resources"]["limits"],
            json!({"memory": "16Gi", "cpu": "1"})
        );
        assert_eq!(
            out["containers"][0]["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 9090}
            ])
        );
    }

    #[test]
    fn delete_and_replace_directives() {
        let target = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumes": [{"name": "v1"}], "labels": {"a": "1", "b": "2"}, "gone": {"x": 1}});
        let out = smp(
            target,
            json!({
                "env": [{"name": "A", "$patch": "delete"}],
                "volumes": [{"$patch": "replace"}, {"name": "v2"}],
                "labels": {"$patch": "replace", "c": "3"},
                "gone": {"$patch": "delete"},
                "$setElementOrder/env": [{"name": "B"}],
                "$retainKeys": ["env"]
            }),
        );
        assert_eq!(
            out,
            json!({"env": [{"name": "B", "value": "2"}], "volumes": [{"name": "v2"}],
            "labels": {"c": "3"}})
        );
    }

    #[test]
    fn unkeyed_lists_are_replaced_and_nulls_delete() {
        let target = json!({"args": ["a", "b"], "tolerations": [{"key": "x"}], "keep": 1, "drop": 2,
            "finalizers": ["f1"]});
        let out = smp(
            target,
            json!({"args": ["c"], "tolerations": [{"key": "y"}], "drop": null,
            "finalizers": ["f2", "f1"]}),
        );
        assert_eq!(
            out,
            json!({"args": ["c"], "tolerations": [{"key": "y"}], "keep": 1,
            "finalizers": ["f1", "f2"]})
        );
    }

    #[test]
    fn restart_annotation_patch_lands_in_template() {
        let target = json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
        let out = smp(
            target,
            json!({"spec": {"template": {"metadata": {"annotations":
            {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["app"], "x");
    }

    #[test]
    fn keyed_item_without_key_is_an_error() {
        let mut target = json!({"containers": []});
        assert!(strategic_merge(&mut target, &json!({"containers": [{"image": "x"}]})).is_err());
    }

    #[test]
    fn content_types_map_to_kinds() {
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchKind::Strategic)
        );
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            Some(PatchKind::Json)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }

    #[test]
    fn json_and_merge_patches_apply() {
        let mut doc = json!({"spec": {"replicas": 3, "paused": true}});
        apply(
            PatchKind::Merge,
            &mut doc,
            br#"{"spec":{"replicas":5,"paused":null}}"#,
        )
        .expect("merge applies");
        assert_eq!(doc, json!({"spec": {"replicas": 5}}));
        apply(
            PatchKind::Json,
            &mut doc,
            br#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
        )
        .expect("json patch applies");
        assert_eq!(doc["spec"]["replicas"], 1);
        assert!(
            apply(
                PatchKind::Json,
                &mut doc,
                br#"[{"op":"remove","path":"/nope"}]"#
            )
            .is_err()
        );
    }
}
