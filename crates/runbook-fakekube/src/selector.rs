//! Label and field selectors as they arrive in `labelSelector=` and
//! `fieldSelector=` query parameters, and the conversion of a workload's
//! structured `spec.selector` into the same form.

use crate::resources::Kind;
use serde_json::Value;
use std::collections::BTreeMap;

/// A selector that cannot be parsed; the server answers 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

/// Splits on commas that are not inside `( … )`, because set-based values
/// (`env in (a,b)`) use commas too.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(key: &str, rest: &str, whole: &str) -> Result<(String, Vec<String>), SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError(whole.to_owned()))?;
    let values = inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    Ok((key.to_owned(), values))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses `app=omendb,tier!=cache,env in (a,b),!legacy`.
    pub(crate) fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let requirement = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::NotExists(key.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                LabelRequirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                LabelRequirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, rest)) = part.split_once(" notin ") {
                let (key, values) = parse_set(key.trim(), rest, part)?;
                LabelRequirement::NotIn(key, values)
            } else if let Some((key, rest)) = part.split_once(" in ") {
                let (key, values) = parse_set(key.trim(), rest, part)?;
                LabelRequirement::In(key, values)
            } else {
                LabelRequirement::Exists(part.to_owned())
            };
            let key = match &requirement {
                LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _)
                | LabelRequirement::Exists(k)
                | LabelRequirement::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(SelectorError(part.to_owned()));
            }
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from a `metav1.LabelSelector` object
    /// (`matchLabels` and `matchExpressions`).
    pub(crate) fn from_object(selector: &Value) -> Self {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                requirements.push(LabelRequirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for expr in exprs {
                let key = expr["key"].as_str().unwrap_or_default().to_owned();
                let values: Vec<String> = expr["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                match expr["operator"].as_str().unwrap_or_default() {
                    "In" => requirements.push(LabelRequirement::In(key, values)),
                    "NotIn" => requirements.push(LabelRequirement::NotIn(key, values)),
                    "Exists" => requirements.push(LabelRequirement::Exists(key)),
                    "DoesNotExist" => requirements.push(LabelRequirement::NotExists(key)),
                    _ => {}
                }
            }
        }
        Self { requirements }
    }

    /// Whether the labels satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// Whether the object's `metadata.labels` satisfy the selector.
    pub(crate) fn matches_object(&self, object: &Value) -> bool {
        self.matches(&labels_of(object))
    }

    /// The selector in query-string syntax, as `Scale.status.selector` shows it.
    pub(crate) fn to_query(&self) -> String {
        self.requirements
            .iter()
            .map(|r| match r {
                LabelRequirement::Equals(k, v) => format!("{k}={v}"),
                LabelRequirement::NotEquals(k, v) => format!("{k}!={v}"),
                LabelRequirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                LabelRequirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                LabelRequirement::Exists(k) => k.clone(),
                LabelRequirement::NotExists(k) => format!("!{k}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The object's labels as an ordered map; absent labels are an empty map.
pub(crate) fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `=`, `==` and `!=` terms separated by commas.
    pub(crate) fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let (key, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(SelectorError(part.to_owned()));
            };
            requirements.push((key.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { requirements })
    }

    /// The first field the real API server would not select `kind` by
    /// (it answers 400 "field label not supported"), if any.
    pub(crate) fn unsupported_field(&self, kind: Kind) -> Option<&str> {
        self.requirements
            .iter()
            .map(|(field, _, _)| field.as_str())
            .find(|field| !field_label_supported(kind, field))
    }

    /// Whether the object satisfies every term; a missing field reads as the
    /// empty string, the way the apiserver's field sets treat unset values.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, equal, expected)| {
            let actual = field_value(object, path);
            (actual == *expected) == *equal
        })
    }
}

/// The fields each resource can be selected by, as the API server's
/// registry declares them (`ToSelectableFields` of pods, events, replica
/// sets, nodes and namespaces); every resource has the two metadata ones.
fn field_label_supported(kind: Kind, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match kind {
        Kind::Pod => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.podIPs"
                | "status.nominatedNodeName"
        ),
        Kind::Event => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        Kind::ReplicaSet => field == "status.replicas",
        Kind::Node => field == "spec.unschedulable",
        Kind::Namespace => field == "status.phase",
        Kind::ConfigMap | Kind::PersistentVolumeClaim | Kind::Deployment => false,
    }
}

fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_and_inequality() {
        let sel = LabelSelector::parse("app=omendb,tier!=cache").expect("valid selector");
        assert!(sel.matches(&labels(&[("app", "omendb")])));
        assert!(sel.matches(&labels(&[("app", "omendb"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[("app", "omendb"), ("tier", "cache")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        let double = LabelSelector::parse("app==omendb").expect("valid selector");
        assert!(double.matches(&labels(&[("app", "omendb")])));
    }

    #[test]
    fn set_based_and_existence() {
        let sel = LabelSelector::parse("env in (prod, staging),tier notin (cache),owner,!legacy")
            .expect("valid selector");
        assert!(sel.matches(&labels(&[("env", "prod"), ("owner", "x")])));
        assert!(!sel.matches(&labels(&[("env", "dev"), ("owner", "x")])));
        assert!(!sel.matches(&labels(&[("env", "prod"), ("owner", "x"), ("legacy", "1")])));
        assert!(!sel.matches(&labels(&[
            ("env", "prod"),
            ("owner", "x"),
            ("tier", "cache")
        ])));
        assert!(!sel.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn empty_selector_matches_everything_and_bad_ones_fail() {
        assert!(
            LabelSelector::parse("")
                .expect("empty is valid")
                .matches(&labels(&[]))
        );
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn structured_selector_round_trips_to_query() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "omendb"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["cache"]}]
        }));
        assert_eq!(sel.to_query(), "app=omendb,tier notin (cache)");
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "omendb"}}})));
    }

    #[test]
    fn field_selectors_read_nested_fields() {
        let event = json!({
            "metadata": {"name": "e1", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "p1", "uid": "u1"},
            "type": "Warning"
        });
        let sel = FieldSelector::parse(
            "involvedObject.name=p1,involvedObject.kind==Pod,metadata.namespace=ns",
        )
        .expect("valid selector");
        assert!(sel.matches(&event));
        let other = FieldSelector::parse("involvedObject.name!=p1").expect("valid selector");
        assert!(!other.matches(&event));
        let missing = FieldSelector::parse("status.phase=").expect("valid selector");
        assert!(missing.matches(&event));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
