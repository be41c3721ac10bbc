//! Scenarios: the data that decides what the fake cluster contains and how
//! its pods behave. A scenario is YAML (the format is documented in the
//! crate docs and the README); seven are built in and selectable by name.
//!
//! A scenario may say `extends: NAME` to start from another one: the child
//! is applied to the parent as a JSON merge patch, so maps merge and lists
//! are replaced whole.

use crate::error::Error;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Built-in scenarios, embedded at compile time: (name, YAML).
const BUILTINS: &[(&str, &str)] = &[
    ("healthy", include_str!("../scenarios/healthy.yaml")),
    ("crashloop", include_str!("../scenarios/crashloop.yaml")),
    ("bad-deploy", include_str!("../scenarios/bad-deploy.yaml")),
    ("oomkilled", include_str!("../scenarios/oomkilled.yaml")),
    ("disk-full", include_str!("../scenarios/disk-full.yaml")),
    (
        "node-not-ready",
        include_str!("../scenarios/node-not-ready.yaml"),
    ),
    (
        "unrecoverable",
        include_str!("../scenarios/unrecoverable.yaml"),
    ),
];

/// A complete scenario: the seeded objects and the behaviour rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// What the scenario shows, for people.
    #[serde(default)]
    pub description: String,
    /// Which operations fix it, for people (the tests prove them).
    #[serde(default)]
    pub remedy: String,
    /// The parent scenario; resolved while loading, so always `None` after.
    #[serde(default)]
    pub extends: Option<String>,
    /// The namespace holding the scenario's namespaced objects.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Seeds names and uids, so a scenario always produces the same objects.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Virtual seconds simulated before the server starts, so pods have
    /// settled (or crashed a few times) when the first request arrives.
    #[serde(default = "default_warmup")]
    pub warmup_seconds: u64,
    /// Cluster nodes.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// ConfigMaps in the scenario namespace.
    #[serde(default)]
    pub config_maps: Vec<ConfigMapSpec>,
    /// PersistentVolumeClaims in the scenario namespace, with disk usage.
    #[serde(default)]
    pub persistent_volume_claims: Vec<PvcSpec>,
    /// Deployments with their revision history.
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// Pod behaviour rules, evaluated per pod and container every tick;
    /// the first match wins, no match means healthy.
    #[serde(default)]
    pub pod_rules: Vec<PodRule>,
    /// Log lines a healthy container prints at start, by container name
    /// (`*` for any container).
    #[serde(default)]
    pub logs: BTreeMap<String, Vec<String>>,
    /// Resource usage each running container reports to metrics.k8s.io.
    #[serde(default)]
    pub metrics: Usage,
    /// Scripted `exec` results; the first match wins.
    #[serde(default)]
    pub exec: Vec<ExecRule>,
}

/// A node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// The Ready condition; `false` shows `NotReady`.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Cordoned (`SchedulingDisabled`).
    #[serde(default)]
    pub unschedulable: bool,
    /// Allocatable CPU.
    #[serde(default = "default_node_cpu")]
    pub cpu: String,
    /// Allocatable memory.
    #[serde(default = "default_node_memory")]
    pub memory: String,
    /// Usage of the node's system daemons, added to its pods' usage in NodeMetrics.
    #[serde(default)]
    pub usage: Usage,
}

/// A ConfigMap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMapSpec {
    /// Name.
    pub name: String,
    /// Data entries.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// A PersistentVolumeClaim and the filesystem on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvcSpec {
    /// Name.
    pub name: String,
    /// Requested and bound capacity.
    pub capacity: String,
    /// What `df` reports as used on the volume.
    #[serde(default = "zero")]
    pub disk_used: String,
    /// How much a scripted cleanup (`free_disk`) can release in total.
    #[serde(default = "zero")]
    pub reclaimable: String,
    /// Storage class.
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
}

/// A Deployment with a single-container pod template per revision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Name.
    pub name: String,
    /// Labels of the deployment, its selector and its pods.
    pub labels: BTreeMap<String, String>,
    /// The container's name.
    pub container: String,
    /// Desired replicas.
    #[serde(default = "default_replicas")]
    pub replicas: i64,
    /// The container's HTTP port, probed at `/ready`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// A ConfigMap loaded with `envFrom`.
    #[serde(default)]
    pub config_map: Option<String>,
    /// A PVC mounted into the container.
    #[serde(default)]
    pub volume: Option<VolumeSpec>,
    /// Revisions, oldest first; the last one is current. At least one.
    pub revisions: Vec<RevisionSpec>,
}

/// A PVC mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// The claim.
    pub claim: String,
    /// Where it is mounted.
    pub mount_path: String,
}

/// One revision of a deployment's pod template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionSpec {
    /// Container image.
    pub image: String,
    /// `resources.limits.memory`.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// `resources.requests.memory`.
    #[serde(default)]
    pub memory_request: Option<String>,
    /// `resources.requests.cpu`.
    #[serde(default)]
    pub cpu_request: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The `kubernetes.io/change-cause` annotation shown by `rollout history`.
    #[serde(default)]
    pub change_cause: Option<String>,
}

/// A pod behaviour rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRule {
    /// Conditions that must all hold; empty matches every container.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// What a matching container does.
    pub behaviour: Behaviour,
    /// Seconds a crashing container runs before it exits.
    #[serde(default = "default_run_seconds")]
    pub run_seconds: u64,
    /// Exit code of a crashing container (`oom-killed` always uses 137).
    #[serde(default = "default_exit_code")]
    pub exit_code: i32,
    /// Seconds after start before a healthy container is Ready.
    #[serde(default = "default_ready_after")]
    pub ready_after_seconds: u64,
    /// Log lines printed at each start, replacing the scenario's `logs`.
    #[serde(default)]
    pub logs: Option<Vec<String>>,
    /// Usage reported while running, replacing the scenario's `metrics`.
    #[serde(default)]
    pub metrics: Option<Usage>,
    /// Readiness-probe failure or image-pull error text for events.
    #[serde(default)]
    pub message: Option<String>,
}

/// The conditions of a [`PodRule`]; every given one must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// The container image; a `*` matches any run of characters.
    #[serde(default)]
    pub image: Option<String>,
    /// The container name.
    #[serde(default)]
    pub container: Option<String>,
    /// The container's memory limit is set and below this quantity.
    #[serde(default)]
    pub memory_limit_below: Option<String>,
    /// The pod belongs (or, with `false`, does not belong) to a ReplicaSet
    /// that was its deployment's current one when the scenario started.
    #[serde(default)]
    pub initial_replicaset: Option<bool>,
    /// A PVC the pod mounts is (or is not) full.
    #[serde(default)]
    pub disk_full: Option<bool>,
    /// The pod runs on this node.
    #[serde(default)]
    pub node: Option<String>,
    /// The pod has all these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What a container does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Starts and becomes Ready.
    Healthy,
    /// Exits with `exit_code` after `run_seconds`, restarts with back-off.
    CrashLoop,
    /// Like `crash-loop`, with last state `OOMKilled` and exit code 137.
    OomKilled,
    /// The image cannot be pulled: `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullBackOff,
    /// Runs but its readiness probe never passes.
    NeverReady,
}

/// CPU and memory usage as quantities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// CPU, e.g. `250m`.
    pub cpu: String,
    /// Memory, e.g. `1536Mi`.
    pub memory: String,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            cpu: "250m".into(),
            memory: "1Gi".into(),
        }
    }
}

/// A scripted exec result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRule {
    /// The command to match, token by token: `*` inside a token matches any
    /// characters, a final `**` matches any remaining tokens.
    pub argv: Vec<String>,
    /// Only in this container.
    #[serde(default)]
    pub container: Option<String>,
    /// Only in this pod state.
    #[serde(default)]
    pub when: ExecWhen,
    /// Standard output; placeholders are listed in the crate docs.
    #[serde(default)]
    pub stdout: String,
    /// Standard error, with the same placeholders.
    #[serde(default)]
    pub stderr: String,
    /// Exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// Releases up to this much of the mounted PVC's reclaimable space.
    #[serde(default)]
    pub free_disk: Option<String>,
}

/// State conditions of an [`ExecRule`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecWhen {
    /// The pod is (or is not) Ready.
    #[serde(default)]
    pub pod_ready: Option<bool>,
    /// A mounted PVC is (or is not) full.
    #[serde(default)]
    pub disk_full: Option<bool>,
}

fn default_namespace() -> String {
    "default".into()
}
fn default_seed() -> u64 {
    1
}
fn default_warmup() -> u64 {
    120
}
fn yes() -> bool {
    true
}
fn zero() -> String {
    "0".into()
}
fn default_node_cpu() -> String {
    "8".into()
}
fn default_node_memory() -> String {
    "32Gi".into()
}
fn default_storage_class() -> String {
    "standard-rwo".into()
}
fn default_replicas() -> i64 {
    1
}
fn default_port() -> u16 {
    8080
}
fn default_run_seconds() -> u64 {
    4
}
fn default_exit_code() -> i32 {
    1
}
fn default_ready_after() -> u64 {
    2
}

fn parse_document(name: &str, text: &str) -> Result<Value, Error> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| Error::InvalidScenario {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

fn resolve(name: &str, mut document: Value, depth: usize) -> Result<Value, Error> {
    let Some(parent) = document
        .get("extends")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(document);
    };
    if depth > 8 {
        return Err(Error::InvalidScenario {
            name: name.to_owned(),
            message: "`extends` chain is too deep".into(),
        });
    }
    let (_, parent_text) =
        BUILTINS
            .iter()
            .find(|(n, _)| *n == parent)
            .ok_or_else(|| Error::InvalidScenario {
                name: name.to_owned(),
                message: format!(
                    "`extends: {parent}` names no built-in scenario ({})",
                    Scenario::builtin_names().join(", ")
                ),
            })?;
    let mut base = resolve(&parent, parse_document(&parent, parent_text)?, depth + 1)?;
    if let Some(map) = document.as_object_mut() {
        map.remove("extends");
    }
    json_patch::merge(&mut base, &document);
    Ok(base)
}

impl Scenario {
    /// The names of the built-in scenarios.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTINS.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let (_, text) =
            BUILTINS
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::UnknownScenario {
                    name: name.to_owned(),
                    known: Self::builtin_names().join(", "),
                })?;
        Self::from_yaml(name, text)
    }

    /// Parses a scenario document; `origin` names it in errors.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, Error> {
        let document = resolve(origin, parse_document(origin, text)?, 0)?;
        let scenario: Scenario =
            serde_json::from_value(document).map_err(|e| Error::InvalidScenario {
                name: origin.to_owned(),
                message: e.to_string(),
            })?;
        scenario.check(origin)?;
        Ok(scenario)
    }

    /// A built-in name, or else a path to a YAML file.
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        if BUILTINS.iter().any(|(n, _)| *n == name_or_path) {
            return Self::builtin(name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::UnknownScenario {
                name: name_or_path.to_owned(),
                known: Self::builtin_names().join(", "),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadScenario {
            path: name_or_path.to_owned(),
            source,
        })?;
        Self::from_yaml(name_or_path, &text)
    }

    fn check(&self, origin: &str) -> Result<(), Error> {
        let invalid = |message: String| Error::InvalidScenario {
            name: origin.to_owned(),
            message,
        };
        for d in &self.deployments {
            if d.revisions.is_empty() {
                return Err(invalid(format!("deployment `{}` has no revisions", d.name)));
            }
            if d.labels.is_empty() {
                return Err(invalid(format!("deployment `{}` has no labels", d.name)));
            }
        }
        let quantities = self
            .persistent_volume_claims
            .iter()
            .flat_map(|p| [&p.capacity, &p.disk_used, &p.reclaimable])
            .chain(
                self.pod_rules
                    .iter()
                    .filter_map(|r| r.matcher.memory_limit_below.as_ref()),
            )
            .chain(self.exec.iter().filter_map(|r| r.free_disk.as_ref()))
            .chain(
                self.nodes
                    .iter()
                    .flat_map(|n| [&n.cpu, &n.memory, &n.usage.cpu, &n.usage.memory]),
            )
            .chain([&self.metrics.cpu, &self.metrics.memory]);
        for q in quantities {
            if crate::quantity::parse_quantity(q).is_none() {
                return Err(invalid(format!("`{q}` is not a quantity")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_loads() {
        for name in Scenario::builtin_names() {
            let s = Scenario::builtin(name).expect("built-in scenario parses");
            assert_eq!(s.name, name);
            assert_eq!(s.namespace, "omendb-prod");
            assert_eq!(s.nodes.len(), 3, "{name}");
            let d = &s.deployments[0];
            assert_eq!(
                (d.name.as_str(), d.container.as_str(), d.replicas),
                ("prod-omendb", "omendb", 3)
            );
            assert!(d.revisions.len() >= 2, "{name} needs history");
            assert!(!s.remedy.is_empty(), "{name} documents its remedy");
        }
    }

    #[test]
    fn extends_merges_and_unknown_keys_fail() {
        let s = Scenario::from_yaml("t", "extends: healthy\nname: mine\nwarmup_seconds: 5\n")
            .expect("valid");
        assert_eq!(
            (s.name.as_str(), s.warmup_seconds, s.deployments.len()),
            ("mine", 5, 1)
        );
        let err = Scenario::from_yaml("t", "name: x\nbogus: 1\n").expect_err("unknown key");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = Scenario::from_yaml("t", "extends: nope\nname: x\n").expect_err("unknown parent");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(Scenario::load("no-such-scenario").is_err());
    }
}
