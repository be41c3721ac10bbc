//! Simulated kubelet and scheduler: places pods on nodes, runs each
//! container through a small state machine decided by the scenario's pod
//! rules (healthy, crash loop, OOM kill, image pull failure, never Ready),
//! keeps per-container logs, answers `exec` from scripts, and reports usage
//! for metrics.k8s.io.

use crate::cluster::{Cluster, memory_limit, parse_timestamp, timestamp};
use crate::error::ApiError;
use crate::quantity::{df_human, format_cpu_nanos, format_memory_ki, parse_quantity, quantity_of};
use crate::resources::Kind;
use crate::scenario::{Behaviour, ExecRule, PodRule, Usage};
use crate::store::{name_of, namespace_of, uid_of};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Simulation state that is not part of any API object.
#[derive(Default)]
pub(crate) struct Sim {
    pub(crate) pods: BTreeMap<(String, String), PodSim>,
    /// Filesystem usage per PVC (namespace, name).
    pub(crate) disks: BTreeMap<(String, String), Disk>,
    /// Uids of the ReplicaSets that were current when the scenario started.
    pub(crate) initial_replicasets: BTreeSet<String>,
    /// While seeding, pods may land on any node: the scenario describes the
    /// moment after a node failed, with pods already placed.
    pub(crate) seeding: bool,
    /// While seeding writes history, controllers only create ReplicaSets and
    /// nothing scales or starts.
    pub(crate) hold: bool,
    ip_counter: u32,
}

/// The filesystem on a PVC.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    pub(crate) used: f64,
    pub(crate) reclaimable: f64,
}

#[derive(Debug, Clone)]
struct Terminated {
    reason: &'static str,
    exit_code: i32,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    container_id: String,
}

#[derive(Debug, Clone)]
enum State {
    Creating { since: DateTime<Utc> },
    PullError { since: DateTime<Utc> },
    PullBackOff { until: DateTime<Utc> },
    Running { started: DateTime<Utc> },
    CrashBackOff { until: DateTime<Utc>, seconds: i64 },
}

#[derive(Debug, Clone)]
struct ContainerSim {
    name: String,
    image: String,
    state: State,
    restarts: u32,
    last_terminated: Option<Terminated>,
    ever_started: bool,
    pull_failures: u32,
    logs: Vec<(DateTime<Utc>, String)>,
    previous_logs: Option<Vec<(DateTime<Utc>, String)>>,
    ready: bool,
    last_unhealthy: Option<DateTime<Utc>>,
    container_id: String,
}

/// Per-pod simulation state.
#[derive(Debug, Clone)]
pub(crate) struct PodSim {
    containers: Vec<ContainerSim>,
    conditions: BTreeMap<&'static str, (bool, DateTime<Utc>)>,
    pod_ip: String,
    start_time: Option<DateTime<Utc>>,
    last_failed_scheduling: Option<DateTime<Utc>>,
}

/// A rule resolved for one container at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    behaviour: Behaviour,
    run_seconds: i64,
    exit_code: i32,
    ready_after: i64,
    logs: Vec<String>,
    usage: Usage,
    message: Option<String>,
}

/// The result of a scripted `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecOutcome {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) exit_code: i32,
}

/// Options of the `log` subresource.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogQuery {
    pub(crate) container: Option<String>,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) since_seconds: Option<i64>,
    pub(crate) timestamps: bool,
    pub(crate) previous: bool,
    pub(crate) limit_bytes: Option<usize>,
}

type PendingEvent = (&'static str, &'static str, String);

/// `*` matches any run of characters.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Matches argv against a pattern whose final `**` swallows the rest.
pub(crate) fn argv_matches(pattern: &[String], argv: &[String]) -> bool {
    match pattern.split_last() {
        Some((last, head)) if last == "**" => {
            argv.len() >= head.len() && head.iter().zip(argv).all(|(p, a)| glob(p, a))
        }
        _ => pattern.len() == argv.len() && pattern.iter().zip(argv).all(|(p, a)| glob(p, a)),
    }
}

/// Go's duration format for whole seconds (`40s`, `5m0s`).
fn go_duration(seconds: i64) -> String {
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

fn crash_backoff(restarts: u32) -> i64 {
    (10i64 << restarts.saturating_sub(1).min(5)).min(300)
}

/// Whether a pod's Ready condition is True.
pub(crate) fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

pub(crate) fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The uid of the object's controller owner, if any.
pub(crate) fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .and_then(|o| o["uid"].as_str())
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl Cluster {
    fn node_ready(&self, node: &str) -> bool {
        self.store
            .get(Kind::Node, "", node)
            .and_then(|n| condition(n, "Ready"))
            .is_some_and(|c| c["status"] == "True")
    }

    pub(crate) fn pvc_capacity(&self, ns: &str, claim: &str) -> Option<f64> {
        let pvc = self.store.get(Kind::PersistentVolumeClaim, ns, claim)?;
        quantity_of(&pvc["status"]["capacity"]["storage"])
            .or_else(|| quantity_of(&pvc["spec"]["resources"]["requests"]["storage"]))
    }

    /// (claim, mount path) of every PVC volume the pod mounts.
    fn pod_claims(pod: &Value) -> Vec<(String, String)> {
        let volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mounts: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        volumes
            .iter()
            .filter_map(|v| {
                let claim = v["persistentVolumeClaim"]["claimName"].as_str()?;
                let mount = mounts
                    .iter()
                    .find(|m| m["name"] == v["name"])
                    .and_then(|m| m["mountPath"].as_str())
                    .unwrap_or("/data");
                Some((claim.to_owned(), mount.to_owned()))
            })
            .collect()
    }

    fn disk_full(&self, pod: &Value) -> bool {
        let ns = namespace_of(pod);
        Self::pod_claims(pod).iter().any(|(claim, _)| {
            let used = self
                .sim
                .disks
                .get(&(ns.to_owned(), claim.clone()))
                .map(|d| d.used)
                .unwrap_or(0.0);
            self.pvc_capacity(ns, claim).is_some_and(|cap| used >= cap)
        })
    }

    fn rule_matches(&self, rule: &PodRule, pod: &Value, container: &Value) -> bool {
        let m = &rule.matcher;
        let image = container["image"].as_str().unwrap_or_default();
        m.image.as_deref().is_none_or(|p| glob(p, image))
            && m.container
                .as_deref()
                .is_none_or(|c| container["name"] == c)
            && m.memory_limit_below.as_deref().is_none_or(|q| {
                let below = parse_quantity(q).unwrap_or(0.0);
                memory_limit(container).is_some_and(|l| l < below)
            })
            && m.initial_replicaset.is_none_or(|want| {
                controller_uid(pod).is_some_and(|u| self.sim.initial_replicasets.contains(u))
                    == want
            })
            && m.disk_full.is_none_or(|want| self.disk_full(pod) == want)
            && m.node
                .as_deref()
                .is_none_or(|n| pod["spec"]["nodeName"] == n)
            && m.labels
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"][k] == v.as_str())
    }

    /// Decides what a container does right now.
    pub(crate) fn resolve(&self, pod: &Value, container: &Value) -> Resolved {
        let name = container["name"].as_str().unwrap_or_default();
        let default_logs = self
            .scenario
            .logs
            .get(name)
            .or_else(|| self.scenario.logs.get("*"))
            .cloned()
            .unwrap_or_else(|| vec![format!("{name} started")]);
        match self
            .scenario
            .pod_rules
            .iter()
            .find(|r| self.rule_matches(r, pod, container))
        {
            Some(rule) => Resolved {
                behaviour: rule.behaviour,
                run_seconds: rule.run_seconds as i64,
                exit_code: if rule.behaviour == Behaviour::OomKilled {
                    137
                } else {
                    rule.exit_code
                },
                ready_after: rule.ready_after_seconds as i64,
                logs: rule.logs.clone().unwrap_or(default_logs),
                usage: rule
                    .metrics
                    .clone()
                    .unwrap_or_else(|| self.scenario.metrics.clone()),
                message: rule.message.clone(),
            },
            None => Resolved {
                behaviour: Behaviour::Healthy,
                run_seconds: 0,
                exit_code: 0,
                ready_after: 2,
                logs: default_logs,
                usage: self.scenario.metrics.clone(),
                message: None,
            },
        }
    }

    fn pick_node(&self) -> Option<String> {
        let pods = self.store.list(Kind::Pod, None);
        self.store
            .list(Kind::Node, None)
            .into_iter()
            .filter(|n| {
                self.sim.seeding
                    || (self.node_ready(name_of(n)) && n["spec"]["unschedulable"] != true)
            })
            .map(|n| {
                let load = pods
                    .iter()
                    .filter(|p| p["spec"]["nodeName"] == name_of(n))
                    .count();
                (load, name_of(n).to_owned())
            })
            .min()
            .map(|(_, name)| name)
    }

    fn new_pod_sim(&mut self, pod: &Value) -> PodSim {
        self.sim.ip_counter += 1;
        let n = self.sim.ip_counter;
        let containers = pod["spec"]["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| ContainerSim {
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        image: c["image"].as_str().unwrap_or_default().to_owned(),
                        state: State::Creating { since: self.now },
                        restarts: 0,
                        last_terminated: None,
                        ever_started: false,
                        pull_failures: 0,
                        logs: Vec::new(),
                        previous_logs: None,
                        ready: false,
                        last_unhealthy: None,
                        container_id: String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PodSim {
            containers,
            conditions: BTreeMap::new(),
            pod_ip: format!("10.52.{}.{}", n / 250, n % 250 + 2),
            start_time: None,
            last_failed_scheduling: None,
        }
    }

    /// Advances every pod by the current clock.
    pub(crate) fn tick_pods(&mut self) {
        for pod in self.store.list_owned(Kind::Pod, None) {
            let key = (namespace_of(&pod).to_owned(), name_of(&pod).to_owned());
            let mut sim = match self.sim.pods.remove(&key) {
                Some(sim) => sim,
                None => self.new_pod_sim(&pod),
            };
            let pod = self.step_pod(pod, &mut sim);
            self.sim.pods.insert(key, sim);
            self.store.update(Kind::Pod, pod);
        }
    }

    fn step_pod(&mut self, mut pod: Value, sim: &mut PodSim) -> Value {
        let mut events: Vec<PendingEvent> = Vec::new();
        let now = self.now;
        if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
            match self.pick_node() {
                Some(node) => {
                    pod["spec"]["nodeName"] = json!(node);
                    sim.start_time = Some(now);
                    events.push((
                        "Normal",
                        "Scheduled",
                        format!(
                            "Successfully assigned {}/{} to {node}",
                            namespace_of(&pod),
                            name_of(&pod)
                        ),
                    ));
                }
                None => {
                    if sim
                        .last_failed_scheduling
                        .is_none_or(|t| now - t >= Duration::seconds(60))
                    {
                        sim.last_failed_scheduling = Some(now);
                        let total = self.store.list(Kind::Node, None).len();
                        events.push(("Warning", "FailedScheduling", format!(
                            "0/{total} nodes are available: {total} node(s) were unschedulable or not ready. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.")));
                    }
                }
            }
        }
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let scheduled = !node.is_empty();
        let node_ready = scheduled && self.node_ready(&node);
        if sim.start_time.is_none() && scheduled {
            sim.start_time = Some(now);
        }
        let specs: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if scheduled {
            for (i, spec) in specs.iter().enumerate() {
                let Some(mut c) = sim.containers.get(i).cloned() else {
                    continue;
                };
                // A kubelet on a NotReady node reports nothing; its pods freeze.
                if node_ready {
                    let resolved = self.resolve(&pod, spec);
                    self.step_container(&pod, &node, &mut c, &resolved, &mut events);
                } else {
                    c.ready = false;
                }
                sim.containers[i] = c;
            }
        }
        pod["status"] = self.pod_status(&pod, sim, scheduled, node_ready);
        for (kind, reason, message) in events {
            self.record_event(
                &pod,
                kind,
                reason,
                &message,
                if reason.contains("Scheduling") || reason == "Scheduled" {
                    "default-scheduler"
                } else {
                    "kubelet"
                },
            );
        }
        pod
    }

    fn step_container(
        &mut self,
        pod: &Value,
        node: &str,
        c: &mut ContainerSim,
        r: &Resolved,
        events: &mut Vec<PendingEvent>,
    ) {
        let now = self.now;
        let image = c.image.clone();
        let pulls = r.behaviour == Behaviour::ImagePullBackOff;
        match c.state.clone() {
            State::Creating { since } => {
                if now - since >= Duration::seconds(1) {
                    if pulls {
                        self.fail_pull(c, r, events);
                    } else {
                        self.start_container(pod, node, c, r, events);
                    }
                }
            }
            State::PullError { since } => {
                if !pulls {
                    c.state = State::Creating { since: now };
                } else if now - since >= Duration::seconds(1) {
                    let wait = crash_backoff(c.pull_failures);
                    c.state = State::PullBackOff {
                        until: now + Duration::seconds(wait),
                    };
                    events.push((
                        "Normal",
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    ));
                    events.push(("Warning", "Failed", "Error: ImagePullBackOff".into()));
                }
            }
            State::PullBackOff { until } => {
                if !pulls {
                    c.state = State::Creating { since: now };
                } else if now >= until {
                    self.fail_pull(c, r, events);
                }
            }
            State::Running { started } => {
                let ran = (now - started).num_seconds();
                match r.behaviour {
                    Behaviour::Healthy | Behaviour::ImagePullBackOff => {
                        c.ready = ran >= r.ready_after
                    }
                    Behaviour::NeverReady => {
                        c.ready = false;
                        if ran >= r.ready_after
                            && c.last_unhealthy
                                .is_none_or(|t| now - t >= Duration::seconds(10))
                        {
                            c.last_unhealthy = Some(now);
                            let message = r.message.clone().unwrap_or_else(|| {
                                "Readiness probe failed: HTTP probe failed with statuscode: 503"
                                    .into()
                            });
                            events.push(("Warning", "Unhealthy", message));
                        }
                    }
                    Behaviour::CrashLoop | Behaviour::OomKilled => {
                        c.ready = false;
                        if ran >= r.run_seconds {
                            let oom = r.behaviour == Behaviour::OomKilled;
                            c.last_terminated = Some(Terminated {
                                reason: if oom { "OOMKilled" } else { "Error" },
                                exit_code: r.exit_code,
                                started,
                                finished: now,
                                container_id: c.container_id.clone(),
                            });
                            c.restarts += 1;
                            let wait = crash_backoff(c.restarts);
                            c.state = State::CrashBackOff {
                                until: now + Duration::seconds(wait),
                                seconds: wait,
                            };
                            if oom {
                                let limit = pod["spec"]["containers"]
                                    .as_array()
                                    .and_then(|cs| cs.iter().find(|x| x["name"] == c.name.as_str()))
                                    .and_then(memory_limit)
                                    .unwrap_or(0.0);
                                events.push(("Warning", "OOMKilling", format!(
                                    "Memory cgroup out of memory: Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, file-rss:0kB, shmem-rss:0kB",
                                    4000 + c.restarts, c.name, (limit / 1024.0 * 1.3) as u64, (limit / 1024.0) as u64)));
                            }
                            events.push((
                                "Warning",
                                "BackOff",
                                format!(
                                    "Back-off restarting failed container {} in pod {}_{}({})",
                                    c.name,
                                    name_of(pod),
                                    namespace_of(pod),
                                    uid_of(pod)
                                ),
                            ));
                        }
                    }
                }
            }
            State::CrashBackOff { until, .. } => {
                c.ready = false;
                if now >= until {
                    self.start_container(pod, node, c, r, events);
                }
            }
        }
    }

    fn fail_pull(&mut self, c: &mut ContainerSim, r: &Resolved, events: &mut Vec<PendingEvent>) {
        c.pull_failures += 1;
        c.state = State::PullError { since: self.now };
        let detail = r.message.clone().unwrap_or_else(|| {
            format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{}\": not found", c.image)
        });
        events.push((
            "Normal",
            "Pulling",
            format!("Pulling image \"{}\"", c.image),
        ));
        events.push((
            "Warning",
            "Failed",
            format!("Failed to pull image \"{}\": {detail}", c.image),
        ));
        events.push(("Warning", "Failed", "Error: ErrImagePull".into()));
    }

    fn start_container(
        &mut self,
        pod: &Value,
        node: &str,
        c: &mut ContainerSim,
        r: &Resolved,
        events: &mut Vec<PendingEvent>,
    ) {
        let now = self.now;
        if c.ever_started {
            events.push((
                "Normal",
                "Pulled",
                format!("Container image \"{}\" already present on machine", c.image),
            ));
            c.previous_logs = Some(std::mem::take(&mut c.logs));
        } else {
            events.push((
                "Normal",
                "Pulling",
                format!("Pulling image \"{}\"", c.image),
            ));
            events.push(("Normal", "Pulled", format!(
                "Successfully pulled image \"{}\" in 1.204s (1.204s including waiting). Image size: 183462912 bytes.", c.image)));
        }
        events.push((
            "Normal",
            "Created",
            format!("Created container: {}", c.name),
        ));
        events.push(("Normal", "Started", format!("Started container {}", c.name)));
        c.ever_started = true;
        c.container_id = format!(
            "containerd://{:016x}{:016x}{:016x}{:016x}",
            self.random(),
            self.random(),
            self.random(),
            self.random()
        );
        let vars = [
            ("pod", name_of(pod).to_owned()),
            ("namespace", namespace_of(pod).to_owned()),
            ("container", c.name.clone()),
            ("image", c.image.clone()),
            ("node", node.to_owned()),
            ("restart", c.restarts.to_string()),
        ];
        c.logs = r
            .logs
            .iter()
            .enumerate()
            .map(|(i, line)| {
                (
                    now + Duration::milliseconds(40 * i as i64),
                    render(line, &vars),
                )
            })
            .collect();
        c.ready = false;
        c.state = State::Running { started: now };
    }

    fn pod_status(
        &mut self,
        pod: &Value,
        sim: &mut PodSim,
        scheduled: bool,
        node_ready: bool,
    ) -> Value {
        let now = self.now;
        let all_started =
            !sim.containers.is_empty() && sim.containers.iter().all(|c| c.ever_started);
        let containers_ready = !sim.containers.is_empty() && sim.containers.iter().all(|c| c.ready);
        let ready = containers_ready && node_ready;
        let mut set = |kind: &'static str, status: bool| {
            let entry = sim.conditions.entry(kind).or_insert((status, now));
            if entry.0 != status {
                *entry = (status, now);
            }
            *entry
        };
        let mut conditions = Vec::new();
        if scheduled {
            for (kind, status) in [
                ("PodReadyToStartContainers", true),
                ("Initialized", true),
                ("Ready", ready),
                ("ContainersReady", containers_ready),
                ("PodScheduled", true),
            ] {
                let (s, t) = set(kind, status);
                let mut c = json!({"type": kind, "status": if s { "True" } else { "False" },
                    "lastProbeTime": null, "lastTransitionTime": timestamp(t)});
                if !s && (kind == "Ready" || kind == "ContainersReady") {
                    let not_ready: Vec<&str> = sim
                        .containers
                        .iter()
                        .filter(|c| !c.ready)
                        .map(|c| c.name.as_str())
                        .collect();
                    if not_ready.is_empty() {
                        c["reason"] = json!("PodCompleted");
                    } else {
                        c["reason"] = json!("ContainersNotReady");
                        c["message"] = json!(format!(
                            "containers with unready status: [{}]",
                            not_ready.join(" ")
                        ));
                    }
                }
                conditions.push(c);
            }
        } else {
            let (_, t) = set("PodScheduled", false);
            conditions.push(
                json!({"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                "lastTransitionTime": timestamp(t), "reason": "Unschedulable",
                "message": "0/3 nodes are available: node(s) were unschedulable or not ready."}),
            );
        }
        let statuses: Vec<Value> = sim
            .containers
            .iter()
            .map(|c| {
                let state = match &c.state {
                    State::Creating { .. } => json!({"waiting": {"reason": "ContainerCreating"}}),
                    State::PullError { .. } => json!({"waiting": {"reason": "ErrImagePull",
                        "message": format!("failed to pull and unpack image \"{}\": not found", c.image)}}),
                    State::PullBackOff { .. } => json!({"waiting": {"reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{}\"", c.image)}}),
                    State::Running { started } => json!({"running": {"startedAt": timestamp(*started)}}),
                    State::CrashBackOff { seconds, .. } => json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off {} restarting failed container={} pod={}_{}({})",
                            go_duration(*seconds), c.name, name_of(pod), namespace_of(pod), uid_of(pod))}}),
                };
                let last = c.last_terminated.as_ref().map_or_else(|| json!({}), |t| json!({"terminated": {
                    "exitCode": t.exit_code, "reason": t.reason, "startedAt": timestamp(t.started),
                    "finishedAt": timestamp(t.finished), "containerID": t.container_id}}));
                let mut status = json!({
                    "name": c.name, "state": state, "lastState": last, "ready": c.ready,
                    "restartCount": c.restarts, "image": c.image,
                    "imageID": "", "started": matches!(c.state, State::Running { .. }),
                });
                if c.ever_started {
                    status["imageID"] = json!(format!("{}@sha256:{:064x}", c.image.split(':').next().unwrap_or_default(), c.image.len()));
                    status["containerID"] = json!(c.container_id);
                }
                status
            })
            .collect();
        let mut status = json!({
            "phase": if scheduled && all_started { "Running" } else { "Pending" },
            "conditions": conditions,
            "qosClass": qos_class(pod),
        });
        if scheduled {
            status["hostIP"] = json!("10.128.0.10");
            status["podIP"] = json!(sim.pod_ip);
            status["podIPs"] = json!([{"ip": sim.pod_ip}]);
            status["startTime"] = json!(timestamp(sim.start_time.unwrap_or(now)));
            status["containerStatuses"] = json!(statuses);
        }
        status
    }

    /// A pod is going away: the kubelet stops its containers.
    pub(crate) fn pod_stopping(&mut self, pod: &Value) {
        let key = (namespace_of(pod).to_owned(), name_of(pod).to_owned());
        if let Some(sim) = self.sim.pods.remove(&key) {
            for c in sim
                .containers
                .iter()
                .filter(|c| matches!(c.state, State::Running { .. }))
            {
                self.record_event(
                    pod,
                    "Normal",
                    "Killing",
                    &format!("Stopping container {}", c.name),
                    "kubelet",
                );
            }
        }
    }

    /// Whether the pod has been Ready for at least `min_ready_seconds`.
    pub(crate) fn pod_available(&self, pod: &Value, min_ready_seconds: i64) -> bool {
        condition(pod, "Ready").is_some_and(|c| {
            c["status"] == "True"
                && parse_timestamp(&c["lastTransitionTime"])
                    .is_some_and(|t| self.now - t >= Duration::seconds(min_ready_seconds))
        })
    }

    fn pick_container<'a>(
        &self,
        pod: &'a Value,
        wanted: Option<&str>,
    ) -> Result<&'a Value, ApiError> {
        let containers = pod["spec"]["containers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let name = name_of(pod);
        match wanted {
            Some(w) => containers.iter().find(|c| c["name"] == w).ok_or_else(|| {
                ApiError::bad_request(format!("container {w} is not valid for pod {name}"))
            }),
            None => {
                let default =
                    pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
                        .as_str();
                if let Some(d) = default
                    && let Some(c) = containers.iter().find(|c| c["name"] == d)
                {
                    return Ok(c);
                }
                match containers {
                    [only] => Ok(only),
                    _ => Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers
                            .iter()
                            .filter_map(|c| c["name"].as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))),
                }
            }
        }
    }

    fn container_sim(&self, pod: &Value, container: &str) -> Option<&ContainerSim> {
        self.sim
            .pods
            .get(&(namespace_of(pod).to_owned(), name_of(pod).to_owned()))?
            .containers
            .iter()
            .find(|c| c.name == container)
    }

    /// The `log` subresource.
    pub(crate) fn pod_logs(&self, ns: &str, name: &str, q: &LogQuery) -> Result<String, ApiError> {
        let pod = self.get(Kind::Pod.info(), ns, name)?;
        let container = self.pick_container(&pod, q.container.as_deref())?;
        let cname = container["name"].as_str().unwrap_or_default();
        let sim = self.container_sim(&pod, cname);
        let lines = match sim {
            Some(c) if q.previous => c.previous_logs.clone().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "previous terminated container \"{cname}\" in pod \"{name}\" not found"
                ))
            })?,
            Some(c) if c.ever_started => c.logs.clone(),
            other => {
                let reason = match other.map(|c| &c.state) {
                    Some(State::PullError { .. } | State::PullBackOff { .. }) => {
                        "trying and failing to pull image"
                    }
                    _ => "ContainerCreating",
                };
                return Err(ApiError::bad_request(format!(
                    "container \"{cname}\" in pod \"{name}\" is waiting to start: {reason}"
                )));
            }
        };
        let since = q.since_seconds.map(|s| self.now - Duration::seconds(s));
        let mut selected: Vec<String> = lines
            .into_iter()
            .filter(|(t, _)| since.is_none_or(|s| *t >= s))
            .map(|(t, line)| {
                if q.timestamps {
                    format!(
                        "{} {line}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    )
                } else {
                    line
                }
            })
            .collect();
        if let Some(tail) = q.tail_lines {
            let skip = selected.len().saturating_sub(tail);
            selected.drain(..skip);
        }
        let mut text: String = selected.into_iter().map(|l| l + "\n").collect();
        if let Some(limit) = q.limit_bytes
            && text.len() > limit
        {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Ok(text)
    }

    fn df(&self, pod: &Value) -> String {
        let gi = 1024f64.powi(3);
        let mut rows = vec![
            ("overlay".to_owned(), 95.0 * gi, 12.3 * gi, "/".to_owned()),
            (
                "tmpfs".to_owned(),
                64.0 * 1024.0 * 1024.0,
                0.0,
                "/dev".to_owned(),
            ),
        ];
        for (i, (claim, mount)) in Self::pod_claims(pod).into_iter().enumerate() {
            let ns = namespace_of(pod);
            let size = self.pvc_capacity(ns, &claim).unwrap_or(0.0);
            let used = self
                .sim
                .disks
                .get(&(ns.to_owned(), claim))
                .map(|d| d.used)
                .unwrap_or(0.0)
                .min(size);
            rows.push((
                format!("/dev/sd{}", (b'b' + i as u8) as char),
                size,
                used,
                mount,
            ));
        }
        let mut out = String::from("Filesystem      Size  Used Avail Use% Mounted on\n");
        for (fs, size, used, mount) in rows {
            let pct = if size > 0.0 {
                (used * 100.0 / size).ceil() as u64
            } else {
                0
            };
            out.push_str(&format!(
                "{fs:<15} {:>5} {:>5} {:>5} {:>3}% {mount}\n",
                df_human(size),
                df_human(used),
                df_human(size - used),
                pct
            ));
        }
        out
    }

    fn exec_rule_applies(
        &self,
        rule: &ExecRule,
        pod: &Value,
        container: &str,
        argv: &[String],
    ) -> bool {
        rule.container.as_deref().is_none_or(|c| c == container)
            && argv_matches(&rule.argv, argv)
            && rule
                .when
                .pod_ready
                .is_none_or(|want| pod_ready(pod) == want)
            && rule
                .when
                .disk_full
                .is_none_or(|want| self.disk_full(pod) == want)
    }

    /// Checks that `exec` can reach a running container; returns its name.
    pub(crate) fn exec_target(
        &self,
        ns: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<String, ApiError> {
        let pod = self.get(Kind::Pod.info(), ns, name)?;
        let cname = self.pick_container(&pod, container)?["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let running = self
            .container_sim(&pod, &cname)
            .is_some_and(|c| matches!(c.state, State::Running { .. }));
        if running {
            Ok(cname)
        } else {
            Err(ApiError::bad_request(format!(
                "unable to upgrade connection: container not found (\"{cname}\")"
            )))
        }
    }

    /// Runs a scripted command in a pod's container.
    pub(crate) fn exec(
        &mut self,
        ns: &str,
        name: &str,
        container: Option<&str>,
        argv: &[String],
    ) -> Result<ExecOutcome, ApiError> {
        let cname = self.exec_target(ns, name, container)?;
        let pod = self.get(Kind::Pod.info(), ns, name)?;
        if argv.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        let rule = self
            .scenario
            .exec
            .iter()
            .find(|r| self.exec_rule_applies(r, &pod, &cname, argv))
            .cloned();
        let Some(rule) = rule else {
            return Ok(builtin_command(name, argv));
        };
        if let Some(amount) = rule.free_disk.as_deref().and_then(parse_quantity)
            && let Some((claim, _)) = Self::pod_claims(&pod).into_iter().next()
            && let Some(disk) = self.sim.disks.get_mut(&(ns.to_owned(), claim))
        {
            let freed = amount.min(disk.reclaimable).min(disk.used);
            disk.used -= freed;
            disk.reclaimable -= freed;
        }
        let vars = [
            ("pod", name.to_owned()),
            ("namespace", ns.to_owned()),
            ("container", cname.clone()),
            (
                "node",
                pod["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            ("df", self.df(&pod)),
        ];
        Ok(ExecOutcome {
            stdout: render(&rule.stdout, &vars),
            stderr: render(&rule.stderr, &vars),
            exit_code: rule.exit_code,
        })
    }

    fn usage_of(&self, pod: &Value) -> Option<Vec<(String, f64, f64)>> {
        let key = (namespace_of(pod).to_owned(), name_of(pod).to_owned());
        let sim = self.sim.pods.get(&key)?;
        let specs = pod["spec"]["containers"].as_array()?;
        // Deterministic per-pod jitter, so `top` does not show identical rows.
        let jitter = 0.9 + (name_of(pod).bytes().map(u64::from).sum::<u64>() % 20) as f64 / 100.0;
        let usage: Vec<(String, f64, f64)> = specs
            .iter()
            .filter(|spec| {
                sim.containers
                    .iter()
                    .any(|c| c.name == spec["name"] && matches!(c.state, State::Running { .. }))
            })
            .map(|spec| {
                let u = self.resolve(pod, spec).usage;
                (
                    spec["name"].as_str().unwrap_or_default().to_owned(),
                    parse_quantity(&u.cpu).unwrap_or(0.0) * jitter,
                    parse_quantity(&u.memory).unwrap_or(0.0) * jitter,
                )
            })
            .collect();
        (!usage.is_empty()).then_some(usage)
    }

    /// PodMetrics for a running pod (metrics-server skips the others).
    pub(crate) fn pod_metrics(&self, pod: &Value, api_version: &str) -> Option<Value> {
        let usage = self.usage_of(pod)?;
        let containers: Vec<Value> = usage
            .iter()
            .map(|(name, cpu, mem)| json!({"name": name, "usage": {"cpu": format_cpu_nanos(*cpu), "memory": format_memory_ki(*mem)}}))
            .collect();
        Some(json!({
            "kind": "PodMetrics", "apiVersion": api_version,
            "metadata": {"name": name_of(pod), "namespace": namespace_of(pod), "creationTimestamp": self.now_ts(),
                "labels": pod["metadata"]["labels"]},
            "timestamp": self.now_ts(), "window": "15s", "containers": containers,
        }))
    }

    /// NodeMetrics for a Ready node: its base usage plus its pods'.
    pub(crate) fn node_metrics(&self, node: &Value, api_version: &str) -> Option<Value> {
        let name = name_of(node);
        if !self.node_ready(name) {
            return None;
        }
        let spec = self.scenario.nodes.iter().find(|n| n.name == name);
        let (mut cpu, mut mem) = spec
            .map(|s| {
                (
                    parse_quantity(&s.usage.cpu).unwrap_or(0.0),
                    parse_quantity(&s.usage.memory).unwrap_or(0.0),
                )
            })
            .unwrap_or((0.2, 1024f64.powi(3)));
        for pod in self
            .store
            .list(Kind::Pod, None)
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == name)
        {
            for (_, c, m) in self.usage_of(pod).unwrap_or_default() {
                cpu += c;
                mem += m;
            }
        }
        Some(json!({
            "kind": "NodeMetrics", "apiVersion": api_version,
            "metadata": {"name": name, "creationTimestamp": self.now_ts(), "labels": node["metadata"]["labels"]},
            "timestamp": self.now_ts(), "window": "20s",
            "usage": {"cpu": format_cpu_nanos(cpu), "memory": format_memory_ki(mem)},
        }))
    }
}

/// Commands every container understands when no scenario rule matches.
fn builtin_command(pod: &str, argv: &[String]) -> ExecOutcome {
    let ok = |stdout: String| ExecOutcome {
        stdout,
        stderr: String::new(),
        exit_code: 0,
    };
    match argv[0].as_str() {
        "echo" => ok(format!("{}\n", argv[1..].join(" "))),
        "true" => ok(String::new()),
        "false" => ExecOutcome {
            stdout: String::new(),
            stderr: String::new(),
            exit_code: 1,
        },
        "hostname" => ok(format!("{pod}\n")),
        "sh" | "bash" if argv.get(1).map(String::as_str) == Some("-c") && argv.len() == 3 => {
            match argv[2]
                .strip_prefix("exit ")
                .and_then(|n| n.trim().parse().ok())
            {
                Some(code) => ExecOutcome {
                    stdout: String::new(),
                    stderr: String::new(),
                    exit_code: code,
                },
                None => ExecOutcome {
                    stdout: String::new(),
                    stderr: format!("sh: 1: {}: not found\n", argv[2]),
                    exit_code: 127,
                },
            }
        }
        other => ExecOutcome {
            stdout: String::new(),
            stderr: format!(
                "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{other}\": executable file not found in $PATH: unknown\n"
            ),
            exit_code: 127,
        },
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for r in ["cpu", "memory"] {
            let limit = &c["resources"]["limits"][r];
            let request = &c["resources"]["requests"][r];
            any |= !limit.is_null() || !request.is_null();
            let effective_request = if request.is_null() { limit } else { request };
            guaranteed &= !limit.is_null() && quantity_of(limit) == quantity_of(effective_request);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn globs_and_argv_patterns() {
        assert!(glob(
            "ghcr.io/omendb/*:0.10.*",
            "ghcr.io/omendb/omendb:0.10.0"
        ));
        assert!(!glob(
            "ghcr.io/omendb/*:0.10.*",
            "ghcr.io/omendb/omendb:0.9.1"
        ));
        assert!(glob("/var/lib/omendb/tmp*", "/var/lib/omendb/tmp/*"));
        assert!(argv_matches(
            &argv(&["df", "**"]),
            &argv(&["df", "-h", "/var/lib/omendb"])
        ));
        assert!(argv_matches(&argv(&["df", "**"]), &argv(&["df"])));
        assert!(!argv_matches(
            &argv(&["curl", "-f", "localhost:3000/ready"]),
            &argv(&["curl", "localhost:3000/ready"])
        ));
    }

    #[test]
    fn crash_backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (1..=7).map(crash_backoff).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(go_duration(40), "40s");
        assert_eq!(go_duration(300), "5m0s");
    }

    #[test]
    fn builtin_commands_cover_the_basics() {
        assert_eq!(
            builtin_command("p", &argv(&["echo", "hi", "there"])).stdout,
            "hi there\n"
        );
        assert_eq!(
            builtin_command("p", &argv(&["sh", "-c", "exit 3"])).exit_code,
            3
        );
        assert_eq!(builtin_command("p", &argv(&["nope"])).exit_code, 127);
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}})
            )),
            "Burstable"
        );
    }
}
