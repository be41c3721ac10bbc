//! The resource types the fake serves, their API coordinates, and the
//! discovery documents (`/api`, `/apis`, `APIResourceList`s) built from them.

use serde_json::{Value, json};

/// A stored kind. The order is the order objects are listed in dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Namespace (cluster-scoped).
    Namespace,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// core/v1 Pod.
    Pod,
    /// core/v1 Event.
    Event,
}

/// Static facts about one resource type.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub(crate) kind: Kind,
    pub(crate) kind_name: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    /// Whether writes to the main resource keep the stored status, and
    /// `/status` writes keep the stored spec.
    pub(crate) status_subresource: bool,
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub(crate) const RESOURCES: &[ResourceType] = &[
    ResourceType {
        kind: Kind::Namespace,
        kind_name: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["ns"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::Node,
        kind_name: "Node",
        plural: "nodes",
        singular: "node",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["no"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::ConfigMap,
        kind_name: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["cm"],
        status_subresource: false,
    },
    ResourceType {
        kind: Kind::PersistentVolumeClaim,
        kind_name: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["pvc"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::Deployment,
        kind_name: "Deployment",
        plural: "deployments",
        singular: "deployment",
        group: "apps",
        version: "v1",
        namespaced: true,
        short_names: &["deploy"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::ReplicaSet,
        kind_name: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        group: "apps",
        version: "v1",
        namespaced: true,
        short_names: &["rs"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::Pod,
        kind_name: "Pod",
        plural: "pods",
        singular: "pod",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["po"],
        status_subresource: true,
    },
    ResourceType {
        kind: Kind::Event,
        kind_name: "Event",
        plural: "events",
        singular: "event",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["ev"],
        status_subresource: false,
    },
];

impl Kind {
    /// The static description of this kind.
    pub(crate) fn info(self) -> &'static ResourceType {
        // The table lists every variant exactly once, in declaration order.
        &RESOURCES[self as usize]
    }

    /// Finds a kind by plural, singular, short name or kind name, ignoring
    /// case (`deployments`, `deploy`, `Deployment`).
    pub fn lookup(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let lower = lower.split('.').next().unwrap_or_default();
        RESOURCES
            .iter()
            .find(|r| {
                r.plural == lower
                    || r.singular == lower
                    || r.kind_name.eq_ignore_ascii_case(lower)
                    || r.short_names.contains(&lower)
            })
            .map(|r| r.kind)
    }
}

impl ResourceType {
    /// `apps/v1` or `v1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`, as the apiserver names resources in messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Finds the type served at `group`/`version` under `plural`.
    pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }
}

fn resource_entry(r: &ResourceType) -> Value {
    let mut entry = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind_name,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if r.kind == Kind::Deployment || r.kind == Kind::ReplicaSet || r.kind == Kind::Pod {
        entry["categories"] = json!(["all"]);
    }
    entry
}

fn subresource(name: &str, namespaced: bool, kind: &str, verbs: &[&str]) -> Value {
    json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs})
}

fn scale_subresource(name: &str) -> Value {
    json!({"name": name, "singularName": "", "namespaced": true, "group": "autoscaling",
        "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
}

/// `GET /api`.
pub(crate) fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// The groups served under `/apis`, with their versions, preferred first.
const GROUPS: &[(&str, &[&str])] = &[
    ("apps", &["v1"]),
    ("autoscaling", &["v1"]),
    ("policy", &["v1"]),
    ("metrics.k8s.io", &["v1beta1", "v1"]),
];

/// `GET /apis`.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(name, versions)| group(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group(name: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": entries, "preferredVersion": entries[0]})
}

/// `GET /apis/{group}`, or `None` for an unknown group.
pub(crate) fn group_document(name: &str) -> Option<Value> {
    GROUPS
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(g, versions)| {
            let mut doc = group(g, versions);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

/// The `APIResourceList` for a group version, or `None` if it is not served.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources: Vec<Value> = Vec::new();
    match (group, version) {
        ("", "v1") | ("apps", "v1") => {
            for r in RESOURCES.iter().filter(|r| r.group == group) {
                resources.push(resource_entry(r));
                if r.status_subresource {
                    resources.push(subresource(
                        &format!("{}/status", r.plural),
                        r.namespaced,
                        r.kind_name,
                        &["get", "patch", "update"],
                    ));
                }
                match r.kind {
                    Kind::Deployment | Kind::ReplicaSet => {
                        resources.push(scale_subresource(&format!("{}/scale", r.plural)));
                    }
                    Kind::Pod => {
                        resources.push(subresource("pods/log", true, "Pod", &["get"]));
                        resources.push(subresource(
                            "pods/exec",
                            true,
                            "PodExecOptions",
                            &["create", "get"],
                        ));
                        let mut eviction =
                            subresource("pods/eviction", true, "Eviction", &["create"]);
                        eviction["group"] = json!("policy");
                        eviction["version"] = json!("v1");
                        resources.push(eviction);
                    }
                    _ => {}
                }
            }
        }
        ("autoscaling", "v1") | ("policy", "v1") => {}
        ("metrics.k8s.io", "v1beta1" | "v1") => {
            resources.push(
                json!({"name": "nodes", "singularName": "", "namespaced": false,
                "kind": "NodeMetrics", "verbs": ["get", "list"]}),
            );
            resources.push(
                json!({"name": "pods", "singularName": "", "namespaced": true,
                "kind": "PodMetrics", "verbs": ["get", "list"]}),
            );
        }
        _ => return None,
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_enum() {
        for (i, r) in RESOURCES.iter().enumerate() {
            assert_eq!(r.kind as usize, i, "{} is out of order", r.kind_name);
        }
    }

    #[test]
    fn lookup_accepts_kubectl_spellings() {
        assert_eq!(Kind::lookup("deploy"), Some(Kind::Deployment));
        assert_eq!(Kind::lookup("Deployment"), Some(Kind::Deployment));
        assert_eq!(Kind::lookup("deployments.apps"), Some(Kind::Deployment));
        assert_eq!(Kind::lookup("pvc"), Some(Kind::PersistentVolumeClaim));
        assert_eq!(Kind::lookup("widgets"), None);
    }

    #[test]
    fn apps_discovery_lists_scale_as_autoscaling() {
        let list = resource_list("apps", "v1").expect("apps/v1 is served");
        let scale = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("deployments/scale listed");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(resource_list("batch", "v1").is_none());
    }
}
