//! Deployment revisions as kubectl reads them (`rollout history`), and the
//! `rollout undo` decision: which ReplicaSet to restore, whether it is
//! already current, and the JSON patch that restores it.
//!
//! A revision is a ReplicaSet *controlled* by the deployment (its controller
//! ownerReference has the deployment's uid: the label selector alone can
//! match another deployment's sets) carrying `deployment.kubernetes.io/revision`.

use crate::json::{get_path, get_str};
use serde_json::{Map, Value, json};

/// ReplicaSet/Deployment annotation holding the revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation recording why a revision was made.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label the controller adds to a ReplicaSet's pod template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations an undo keeps from the deployment instead of
/// copying them from the ReplicaSet (kubectl's `annotationsToSkip`).
pub const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// An object's revision annotation, when it is a valid integer.
pub fn revision_of(object: &Value) -> Option<i64> {
    get_path(object, "/metadata/annotations")
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|v| v.trim().parse().ok())
}

/// The ReplicaSets of `list` whose controller is `deployment`.
pub fn controlled_by<'a>(deployment: &Value, list: &'a [Value]) -> Vec<&'a Value> {
    let Some(uid) = get_str(deployment, "/metadata/uid") else {
        return Vec::new();
    };
    list.iter()
        .filter(|rs| {
            get_path(rs, "/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|o| {
                    o.get("controller").and_then(Value::as_bool) == Some(true)
                        && o.get("uid").and_then(Value::as_str) == Some(uid)
                })
        })
        .collect()
}

/// One line of `rollout history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The revision number.
    pub revision: i64,
    /// `kubernetes.io/change-cause` of the ReplicaSet (else of its pod
    /// template), if any.
    pub change_cause: Option<String>,
}

/// The revisions of the controlled ReplicaSets, ascending. When two sets
/// claim one number (which the controller avoids), the later in list order
/// wins, as in kubectl's map.
pub fn revisions(replica_sets: &[&Value]) -> Vec<Revision> {
    let mut by_revision: std::collections::BTreeMap<i64, Option<String>> = Default::default();
    for rs in replica_sets {
        let Some(revision) = revision_of(rs) else {
            continue;
        };
        let cause = annotation(rs, "/metadata/annotations")
            .or_else(|| annotation(rs, "/spec/template/metadata/annotations"));
        by_revision.insert(revision, cause);
    }
    by_revision
        .into_iter()
        .map(|(revision, change_cause)| Revision {
            revision,
            change_cause,
        })
        .collect()
}

fn annotation(object: &Value, pointer: &str) -> Option<String> {
    get_path(object, pointer)
        .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Annotation on a ReplicaSet that a rollback reused: the revision numbers
/// it had before, comma-separated (the deployment controller keeps them).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";

/// The revision that the ReplicaSet which was revision `old` has now. A
/// rollback to an old revision renumbers its ReplicaSet (revision 9 comes
/// back as 11, with `9` in its revision history), so a revision number
/// recorded before a rollback names nothing after it.
pub fn revision_now(replica_sets: &[&Value], old: i64) -> Option<i64> {
    replica_sets.iter().find_map(|rs| {
        let now = revision_of(rs)?;
        let was = get_path(rs, "/metadata/annotations")
            .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
            .and_then(Value::as_str)
            .is_some_and(|history| {
                history
                    .split(',')
                    .any(|r| r.trim().parse::<i64>() == Ok(old))
            });
        (now == old || was).then_some(now)
    })
}

/// Why no revision could be chosen for an undo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UndoTargetError {
    /// `to_revision` is not among the deployment's revisions.
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
    /// There is no previous revision to go back to.
    #[error("no rollout history found for deployment \"{0}\"")]
    NoHistory(String),
}

/// The ReplicaSet an undo restores: the one with revision `to_revision`, or
/// (`to_revision` 0 or absent) the one with the second-highest revision.
pub fn undo_target<'a>(
    deployment_name: &str,
    replica_sets: &[&'a Value],
    to_revision: Option<i64>,
) -> Result<&'a Value, UndoTargetError> {
    let wanted = to_revision.unwrap_or(0);
    if wanted < 0 {
        return Err(UndoTargetError::RevisionNotFound(wanted));
    }
    let mut latest: Option<(i64, &Value)> = None;
    let mut previous: Option<(i64, &Value)> = None;
    for rs in replica_sets {
        let Some(v) = revision_of(rs) else { continue };
        if wanted > 0 {
            if v == wanted {
                return Ok(rs);
            }
            continue;
        }
        if latest.is_none_or(|(l, _)| l < v) {
            previous = latest;
            latest = Some((v, rs));
        } else if previous.is_none_or(|(p, _)| p < v) {
            previous = Some((v, rs));
        }
    }
    if wanted > 0 {
        return Err(UndoTargetError::RevisionNotFound(wanted));
    }
    previous
        .map(|(_, rs)| rs)
        .ok_or_else(|| UndoTargetError::NoHistory(deployment_name.to_string()))
}

/// Removes `null`s, empty maps and empty lists, recursively, so that two
/// templates compare like Go's semantic equality (where unset, nil and empty
/// are the same).
fn normalize(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let out: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let out: Vec<Value> = items
                .iter()
                .map(|v| normalize(v).unwrap_or(Value::Null))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// A pod template without the controller's `pod-template-hash` label.
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

/// Whether two pod templates are equal once the hash label is ignored.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    normalize(&without_hash(a)) == normalize(&without_hash(b))
}

/// The annotations a deployment gets when rolled back to `replica_set`:
/// the skip-listed ones kept from the deployment, every other one copied
/// from the ReplicaSet (so annotations added since are dropped, as kubectl does).
pub fn undo_annotations(deployment: &Value, replica_set: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let empty = Map::new();
    let current = get_path(deployment, "/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(v) = current.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    let from_rs = get_path(replica_set, "/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (k, v) in from_rs {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// kubectl's undo patch: a JSON patch replacing `/spec/template` with the
/// ReplicaSet's template (minus the hash label) and `/metadata/annotations`
/// with [`undo_annotations`].
pub fn undo_patch(deployment: &Value, replica_set: &Value) -> Value {
    let template = get_path(replica_set, "/spec/template")
        .map(without_hash)
        .unwrap_or_else(|| json!({}));
    json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations",
         "value": Value::Object(undo_annotations(deployment, replica_set))},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, revision: Option<&str>, owner_uid: &str, image: &str) -> Value {
        let mut annotations = json!({"deployment.kubernetes.io/desired-replicas": "3"});
        if let Some(r) = revision {
            annotations[REVISION_ANNOTATION] = json!(r);
        }
        json!({
            "metadata": {
                "name": name,
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                      "uid": owner_uid, "controller": true}],
            },
            "spec": {"template": {
                "metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: format!("h-{name}")}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }},
        })
    }

    fn deployment(image: &str) -> Value {
        json!({
            "metadata": {"name": "web", "uid": "u-1", "annotations": {
                REVISION_ANNOTATION: "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "team": "db",
            }},
            "spec": {"template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {"containers": [{"name": "app", "image": image, "resources": {}}]},
            }},
        })
    }

    #[test]
    fn only_controlled_sets_count() {
        let list = vec![
            rs("a", Some("1"), "u-1", "v1"),
            rs("b", Some("2"), "other", "v2"),
            {
                let mut r = rs("c", Some("3"), "u-1", "v3");
                r["metadata"]["ownerReferences"][0]["controller"] = json!(false);
                r
            },
        ];
        let owned = controlled_by(&deployment("v1"), &list);
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0]["metadata"]["name"], "a");
    }

    #[test]
    fn revisions_ascending_with_change_cause() {
        let mut a = rs("a", Some("10"), "u-1", "v1");
        a["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!("bump to v1");
        let b = rs("b", Some("2"), "u-1", "v2");
        let c = rs("c", None, "u-1", "v3");
        let mut d = rs("d", Some("3"), "u-1", "v3");
        d["spec"]["template"]["metadata"]["annotations"] =
            json!({CHANGE_CAUSE_ANNOTATION: "from template"});
        let revs = revisions(&[&a, &b, &c, &d]);
        assert_eq!(
            revs,
            vec![
                Revision {
                    revision: 2,
                    change_cause: None
                },
                Revision {
                    revision: 3,
                    change_cause: Some("from template".into())
                },
                Revision {
                    revision: 10,
                    change_cause: Some("bump to v1".into())
                },
            ]
        );
    }

    #[test]
    fn undo_target_is_second_highest_or_named() {
        let a = rs("a", Some("1"), "u-1", "v1");
        let b = rs("b", Some("3"), "u-1", "v3");
        let c = rs("c", Some("2"), "u-1", "v2");
        let x = rs("x", Some("junk"), "u-1", "vx");
        let sets = [&a, &b, &x, &c];
        let name = |r: &Value| r["metadata"]["name"].as_str().map(str::to_string);
        assert_eq!(
            undo_target("web", &sets, None).map(name),
            Ok(Some("c".into()))
        );
        assert_eq!(
            undo_target("web", &sets, Some(0)).map(name),
            Ok(Some("c".into()))
        );
        assert_eq!(
            undo_target("web", &sets, Some(1)).map(name),
            Ok(Some("a".into()))
        );
        assert_eq!(
            undo_target("web", &sets, Some(7)),
            Err(UndoTargetError::RevisionNotFound(7))
        );
        assert_eq!(
            undo_target("web", &sets, Some(-1)),
            Err(UndoTargetError::RevisionNotFound(-1))
        );
        assert_eq!(
            undo_target("web", &[&a], None),
            Err(UndoTargetError::NoHistory("web".into()))
        );
        assert_eq!(
            UndoTargetError::NoHistory("web".into()).to_string(),
            "no rollout history found for deployment \"web\""
        );
    }

    #[test]
    fn template_equality_ignores_hash_and_empty_fields() {
        let d = deployment("v1");
        let r = rs("a", Some("1"), "u-1", "v1");
        assert!(equal_ignore_hash(
            &d["spec"]["template"],
            &r["spec"]["template"]
        ));
        let r2 = rs("b", Some("2"), "u-1", "v2");
        assert!(!equal_ignore_hash(
            &d["spec"]["template"],
            &r2["spec"]["template"]
        ));
    }

    #[test]
    fn undo_patch_replaces_template_and_merges_annotations() {
        let d = deployment("v2");
        let mut r = rs("a", Some("1"), "u-1", "v1");
        r["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!("initial");
        let patch = undo_patch(&d, &r);
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "v1"}]},
                }},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    REVISION_ANNOTATION: "3",
                    CHANGE_CAUSE_ANNOTATION: "initial",
                }},
            ])
        );
        // The patch is valid RFC 6902 and applies to the deployment.
        let ops: json_patch::Patch =
            serde_json::from_value(patch).expect("undo patch is a JSON patch");
        let mut applied = d.clone();
        json_patch::patch(&mut applied, &ops).expect("patch applies");
        assert_eq!(
            applied["spec"]["template"]["spec"]["containers"][0]["image"],
            "v1"
        );
        assert!(applied["metadata"]["annotations"].get("team").is_none());
    }
}
