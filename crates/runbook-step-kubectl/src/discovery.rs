//! Resolving a kind as kubectl does (`deploy`, `pvc`, `po`, `deployments`,
//! `deployment`, `Deployment`, `deployments.apps`) against the server's
//! discovery documents, and parsing the `resource` field.
//!
//! Discovery is lazy and cached per client: the core group first, then the
//! named groups in the server's order (which is its priority order), each at
//! its preferred version, stopping at the first match.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

/// One resource type the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Subresources (`scale`, `status`, `log`, `exec`).
    pub subresources: Vec<String>,
}

impl ResourceType {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The lower-case singular name used in kubectl-like messages
    /// (`deployment "x" not found`).
    pub fn noun(&self) -> String {
        if self.singular.is_empty() {
            self.kind.to_lowercase()
        } else {
            self.singular.clone()
        }
    }

    /// Whether `name` (already lower-cased) names this type.
    pub fn matches(&self, name: &str) -> bool {
        self.plural == name
            || self.noun() == name
            || self.kind.to_lowercase() == name
            || self.short_names.iter().any(|s| s == name)
    }

    /// The `kube` dynamic-API descriptor.
    pub fn api_resource(&self) -> kube::discovery::ApiResource {
        kube::discovery::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// The resource types of one discovery document (subresources folded into
/// their parents).
pub fn types_of(group: &str, list: &APIResourceList) -> Vec<ResourceType> {
    let version = list
        .group_version
        .rsplit_once('/')
        .map_or(list.group_version.as_str(), |(_, v)| v)
        .to_string();
    let mut out: Vec<ResourceType> = Vec::new();
    for r in &list.resources {
        if r.name.contains('/') {
            continue;
        }
        out.push(ResourceType {
            group: group.to_string(),
            version: version.clone(),
            kind: r.kind.clone(),
            plural: r.name.clone(),
            singular: r.singular_name.clone(),
            short_names: r.short_names.clone().unwrap_or_default(),
            namespaced: r.namespaced,
            subresources: Vec::new(),
        });
    }
    for r in &list.resources {
        if let Some((parent, sub)) = r.name.split_once('/')
            && let Some(t) = out.iter_mut().find(|t| t.plural == parent)
        {
            t.subresources.push(sub.to_string());
        }
    }
    out
}

/// A kind query split into name and optional group: `deployments.apps` →
/// (`deployments`, `apps`), `deploy` → (`deploy`, none).
pub fn split_kind(query: &str) -> (String, Option<String>) {
    let lower = query.trim().to_lowercase();
    match lower.split_once('.') {
        Some((name, group)) => (name.to_string(), Some(group.to_string())),
        None => (lower, None),
    }
}

/// The API group a kind query asks for, without the version of the
/// `NAME.VERSION.GROUP` form: `deployments.v1.apps` → `apps`, `pods.v1` →
/// `` (the core group), `deploy` → none (any group).
pub fn wanted_group(query: &str) -> Option<String> {
    let (_, group) = split_kind(query);
    group.map(|g| match g.split_once('.') {
        Some((first, rest)) if is_version(first) => rest.to_string(),
        _ if is_version(&g) => String::new(),
        _ => g,
    })
}

/// The first type in `types` that `query` names.
///
/// Like kubectl it takes `NAME`, `NAME.GROUP` and `NAME.VERSION.GROUP`
/// (`deployments.v1.apps`; `pods.v1` for the core group).
pub fn find<'a>(types: &'a [ResourceType], query: &str) -> Option<&'a ResourceType> {
    let (name, group) = split_kind(query);
    let (version, group) = match group
        .as_deref()
        .map(|g| g.split_once('.').unwrap_or((g, "")))
    {
        Some((first, rest)) if is_version(first) => {
            (Some(first.to_string()), Some(rest.to_string()))
        }
        _ => (None, group),
    };
    types.iter().find(|t| {
        t.matches(&name)
            && group.as_deref().is_none_or(|g| {
                t.group == g || ((g == "core" || g.is_empty()) && t.group.is_empty())
            })
            && version.as_deref().is_none_or(|v| t.version == v)
    })
}

/// `v1`, `v2beta1`, `v1alpha3`: an API version, not a group's first label.
fn is_version(label: &str) -> bool {
    let Some(rest) = label.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    digits > 0
        && (tail.is_empty()
            || ["alpha", "beta"].iter().any(|stage| {
                tail.strip_prefix(stage)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            }))
}

/// The `resource` field: `kind/name` (one object) or `kind` (a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The kind as written (`deploy`, `pods`).
    pub kind: String,
    /// The object's name, for `kind/name`.
    pub name: Option<String>,
}

/// Parses `kind/name` or `kind`. Also accepts kubectl's `kind name`.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let text = text.trim();
    let (kind, name) = match text.split_once('/') {
        Some((k, n)) => (k.trim(), Some(n.trim())),
        None => match text.split_once(char::is_whitespace) {
            Some((k, n)) => (k.trim(), Some(n.trim())),
            None => (text, None),
        },
    };
    if kind.is_empty() {
        return Err(format!(
            "`resource: {text}` has no kind; write it like `deployment/prod-omendb` or `pods`"
        ));
    }
    if let Some(n) = name
        && (n.is_empty() || n.contains('/') || n.contains(char::is_whitespace))
    {
        return Err(format!(
            "`resource: {text}` is not `kind/name`; write it like `deployment/prod-omendb`"
        ));
    }
    Ok(Target {
        kind: kind.to_string(),
        name: name.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(
        name: &str,
        kind: &str,
        singular: &str,
        short: &[&str],
        namespaced: bool,
    ) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            singular_name: singular.into(),
            short_names: Some(short.iter().map(|s| s.to_string()).collect()),
            namespaced,
            verbs: vec!["get".into()],
            ..Default::default()
        }
    }

    fn sample() -> Vec<ResourceType> {
        let core = APIResourceList {
            group_version: "v1".into(),
            resources: vec![
                resource("pods", "Pod", "pod", &["po"], true),
                resource("pods/log", "Pod", "", &[], true),
                resource("nodes", "Node", "", &["no"], false),
                resource(
                    "persistentvolumeclaims",
                    "PersistentVolumeClaim",
                    "persistentvolumeclaim",
                    &["pvc"],
                    true,
                ),
                resource("events", "Event", "event", &["ev"], true),
            ],
        };
        let apps = APIResourceList {
            group_version: "apps/v1".into(),
            resources: vec![
                resource("deployments", "Deployment", "deployment", &["deploy"], true),
                resource("deployments/scale", "Scale", "", &[], true),
                resource("deployments/status", "Deployment", "", &[], true),
            ],
        };
        let events = APIResourceList {
            group_version: "events.k8s.io/v1".into(),
            resources: vec![resource("events", "Event", "event", &["ev"], true)],
        };
        let mut all = types_of("", &core);
        all.extend(types_of("apps", &apps));
        all.extend(types_of("events.k8s.io", &events));
        all
    }

    #[test]
    fn resolves_short_plural_singular_kind_and_group_forms() {
        let types = sample();
        for q in [
            "deploy",
            "deployments",
            "deployment",
            "Deployment",
            "deployments.apps",
            "DEPLOY",
        ] {
            let t = find(&types, q).unwrap_or_else(|| panic!("{q} not found"));
            assert_eq!(
                (t.group.as_str(), t.plural.as_str()),
                ("apps", "deployments"),
                "{q}"
            );
            assert_eq!(t.subresources, ["scale", "status"]);
        }
        assert_eq!(find(&types, "po").map(|t| t.plural.as_str()), Some("pods"));
        assert_eq!(
            find(&types, "pvc").map(|t| t.kind.as_str()),
            Some("PersistentVolumeClaim")
        );
        let node = find(&types, "no").expect("nodes");
        assert!(!node.namespaced);
        // An empty singular name falls back to the kind.
        assert_eq!(find(&types, "node").map(|t| t.noun()), Some("node".into()));
        assert_eq!(
            find(&types, "pods").map(|t| t.subresources.clone()),
            Some(vec!["log".into()])
        );
        // Core wins for an ambiguous name, a group picks the other.
        assert_eq!(find(&types, "events").map(|t| t.group.as_str()), Some(""));
        assert_eq!(
            find(&types, "events.events.k8s.io").map(|t| t.group.as_str()),
            Some("events.k8s.io")
        );
        // kubectl's NAME.VERSION.GROUP form.
        assert_eq!(
            find(&types, "deployments.v1.apps").map(|t| t.group.as_str()),
            Some("apps")
        );
        assert_eq!(
            find(&types, "pods.v1").map(|t| t.plural.as_str()),
            Some("pods")
        );
        assert!(find(&types, "deployments.v2.apps").is_none());
        // The group that discovery must load for each form.
        assert_eq!(wanted_group("deployments.v1.apps").as_deref(), Some("apps"));
        assert_eq!(wanted_group("pods.v1").as_deref(), Some(""));
        assert_eq!(wanted_group("deployments.apps").as_deref(), Some("apps"));
        assert_eq!(wanted_group("deploy"), None);
        assert!(find(&types, "widgets").is_none());
        assert!(find(&types, "deployments.batch").is_none());
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            parse_target("deployment/prod-omendb"),
            Ok(Target {
                kind: "deployment".into(),
                name: Some("prod-omendb".into())
            })
        );
        assert_eq!(
            parse_target("pods"),
            Ok(Target {
                kind: "pods".into(),
                name: None
            })
        );
        assert_eq!(
            parse_target("pvc omendb-data"),
            Ok(Target {
                kind: "pvc".into(),
                name: Some("omendb-data".into())
            })
        );
        assert!(parse_target("/x").is_err());
        assert!(parse_target("deploy/").is_err());
        assert!(parse_target("a/b/c").is_err());
    }
}
