//! Simulated controllers: the deployment controller (new ReplicaSet per
//! template, revision numbering and reuse for rollbacks, rolling updates
//! within maxSurge/maxUnavailable, status and conditions, history pruning),
//! the ReplicaSet controller, PVC binding and expansion, and garbage
//! collection of orphans. Also the virtual clock's tick and scenario seeding.

use crate::cluster::{Cluster, parse_timestamp, timestamp};
use crate::pods::{Disk, controller_uid};
use crate::quantity::parse_quantity;
use crate::resources::Kind;
use crate::store::{name_of, namespace_of, uid_of};
use chrono::Duration;
use serde_json::{Map, Value, json};

pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a reused ReplicaSet had before, comma-separated.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
pub(crate) const HASH_LABEL: &str = "pod-template-hash";

/// Drops nulls, empty maps and empty lists, so templates that differ only in
/// how "nothing" is spelled compare equal (kubectl sends
/// `"creationTimestamp": null` and `"resources": {}`).
fn normalize(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let cleaned: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!cleaned.is_empty()).then_some(Value::Object(cleaned))
        }
        Value::Array(items) => (!items.is_empty()).then(|| {
            Value::Array(
                items
                    .iter()
                    .map(|v| normalize(v).unwrap_or(Value::Null))
                    .collect(),
            )
        }),
        other => Some(other.clone()),
    }
}

fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    t
}

/// Whether two pod templates are the same apart from `pod-template-hash`.
pub(crate) fn templates_equal(a: &Value, b: &Value) -> bool {
    normalize(&without_hash(a)) == normalize(&without_hash(b))
}

/// A stable, name-safe hash of a pod template (ignoring `pod-template-hash`).
pub(crate) fn template_hash(template: &Value, collisions: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = normalize(&without_hash(template))
        .unwrap_or(Value::Null)
        .to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes().chain(collisions.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Resolves an int-or-percent against `total` (`25%` of 3 is 1 rounded up, 0 down).
pub(crate) fn int_or_percent(value: &Value, total: i64, round_up: bool) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if round_up => (p * total + 99) / 100,
            Some(p) => p * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) for a deployment, never both zero.
pub(crate) fn surge_and_unavailable(deployment: &Value) -> (i64, i64) {
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    if deployment["spec"]["strategy"]["type"] == "Recreate" {
        return (0, replicas);
    }
    let ru = &deployment["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&ru["maxSurge"], replicas, true);
    let unavailable = int_or_percent(&ru["maxUnavailable"], replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub(crate) fn revision_of(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// kubectl's rollout-complete rule (from its deployment status viewer).
pub fn rollout_complete(deployment: &Value) -> bool {
    let spec_replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &deployment["status"];
    int(&deployment["metadata"]["generation"]) <= int(&status["observedGeneration"])
        && int(&status["updatedReplicas"]) >= spec_replicas
        && int(&status["replicas"]) <= int(&status["updatedReplicas"])
        && int(&status["availableReplicas"]) >= int(&status["updatedReplicas"])
}

/// Healthy: the rollout is complete, every desired replica is ready and
/// available, and the progress deadline has not been exceeded.
pub fn deployment_healthy(deployment: &Value) -> bool {
    let spec_replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &deployment["status"];
    let deadline_exceeded = crate::pods::condition(deployment, "Progressing")
        .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
    rollout_complete(deployment)
        && int(&status["readyReplicas"]) >= spec_replicas
        && int(&status["availableReplicas"]) >= spec_replicas
        && !deadline_exceeded
}

/// Sets a condition the way the controller's helper does: the transition
/// time only moves when the status flips.
fn set_condition(
    status: &mut Value,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let existing = conditions.iter().position(|c| c["type"] == kind);
    let transition = match existing {
        Some(i) if conditions[i]["status"] == value => {
            if conditions[i]["reason"] == reason && conditions[i]["message"] == message {
                return;
            }
            conditions[i]["lastTransitionTime"].clone()
        }
        _ => json!(now),
    };
    let condition = json!({"type": kind, "status": value, "lastUpdateTime": now,
        "lastTransitionTime": transition, "reason": reason, "message": message});
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let uid = uid_of(owner);
    objects
        .iter()
        .filter(|o| controller_uid(o) == Some(uid))
        .collect()
}

impl Cluster {
    /// One step of virtual time.
    pub(crate) fn tick(&mut self, step: Duration) {
        self.now += step;
        self.reconcile();
    }

    /// Runs every controller once at the current virtual time. Writes call
    /// this too, so a new ReplicaSet appears as promptly as with a real
    /// controller.
    pub(crate) fn reconcile(&mut self) {
        if self.sim.hold {
            return;
        }
        self.collect_garbage();
        self.sync_pvcs();
        self.tick_pods();
        self.sync_replica_set_status();
        for d in self.store.list_owned(Kind::Deployment, None) {
            self.sync_deployment(d);
        }
        self.sync_replica_set_pods();
        self.sync_replica_set_status();
        for d in self.store.list_owned(Kind::Deployment, None) {
            self.sync_deployment_status(&d);
        }
    }

    fn collect_garbage(&mut self) {
        for (kind, owner_kind) in [
            (Kind::ReplicaSet, Kind::Deployment),
            (Kind::Pod, Kind::ReplicaSet),
        ] {
            let owners: Vec<String> = self
                .store
                .list(owner_kind, None)
                .iter()
                .map(|o| uid_of(o).to_owned())
                .collect();
            for object in self.store.list_owned(kind, None) {
                let orphaned = object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter().any(|r| {
                            r["kind"] == owner_kind.info().kind_name
                                && !owners.iter().any(|u| r["uid"] == u.as_str())
                        })
                    });
                if orphaned {
                    if kind == Kind::Pod {
                        self.pod_stopping(&object);
                    }
                    self.store
                        .remove(kind, namespace_of(&object), name_of(&object));
                }
            }
        }
    }

    fn sync_pvcs(&mut self) {
        for mut pvc in self.store.list_owned(Kind::PersistentVolumeClaim, None) {
            let requested = pvc["spec"]["resources"]["requests"]["storage"].clone();
            let key = (namespace_of(&pvc).to_owned(), name_of(&pvc).to_owned());
            self.sim.disks.entry(key).or_insert(Disk {
                used: 0.0,
                reclaimable: 0.0,
            });
            if pvc["status"]["phase"] != "Bound" {
                pvc["spec"]["volumeName"] = json!(format!("pvc-{}", uid_of(&pvc)));
                pvc["status"] = json!({"phase": "Bound", "accessModes": pvc["spec"]["accessModes"],
                    "capacity": {"storage": requested}});
                self.store.update(Kind::PersistentVolumeClaim, pvc);
                continue;
            }
            let current = crate::quantity::quantity_of(&pvc["status"]["capacity"]["storage"]);
            if crate::quantity::quantity_of(&requested) > current {
                pvc["status"]["capacity"]["storage"] = requested.clone();
                let pvc = self.store.update(Kind::PersistentVolumeClaim, pvc);
                self.record_event(
                    &pvc,
                    "Normal",
                    "FileSystemResizeSuccessful",
                    &format!(
                        "MountVolume.NodeExpandVolume succeeded for volume \"{}\"",
                        pvc["spec"]["volumeName"].as_str().unwrap_or_default()
                    ),
                    "kubelet",
                );
            }
        }
    }

    fn sync_replica_set_status(&mut self) {
        let pods = self.store.list_owned(Kind::Pod, None);
        for mut rs in self.store.list_owned(Kind::ReplicaSet, None) {
            let owned = owned_by(&pods, &rs);
            let min_ready = int(&rs["spec"]["minReadySeconds"]);
            let ready = owned.iter().filter(|p| crate::pods::pod_ready(p)).count();
            let available = owned
                .iter()
                .filter(|p| self.pod_available(p, min_ready))
                .count();
            rs["status"] = json!({
                "replicas": owned.len(),
                "fullyLabeledReplicas": owned.len(),
                "readyReplicas": ready,
                "availableReplicas": available,
                "observedGeneration": rs["metadata"]["generation"],
            });
            self.store.update(Kind::ReplicaSet, rs);
        }
    }

    fn sync_replica_set_pods(&mut self) {
        for rs in self.store.list_owned(Kind::ReplicaSet, None) {
            let pods = self.store.list_owned(Kind::Pod, Some(namespace_of(&rs)));
            let owned: Vec<Value> = owned_by(&pods, &rs).into_iter().cloned().collect();
            let want = int(&rs["spec"]["replicas"]).max(0) as usize;
            if owned.len() < want {
                for _ in owned.len()..want {
                    let pod = self.pod_from_replica_set(&rs);
                    let pod = self.store.insert(Kind::Pod, pod);
                    self.record_event(
                        &rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name_of(&pod)),
                        "replicaset-controller",
                    );
                }
            } else if owned.len() > want {
                // Delete the least useful pods first: unscheduled, then not
                // Ready, then the youngest, like the ReplicaSet controller.
                let mut ranked = owned;
                ranked.sort_by_key(|p| {
                    (
                        !p["spec"]["nodeName"].as_str().is_none_or(str::is_empty),
                        crate::pods::pod_ready(p),
                        std::cmp::Reverse(
                            p["metadata"]["creationTimestamp"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        ),
                        name_of(p).to_owned(),
                    )
                });
                for pod in ranked.into_iter().take(owned_len_excess(want, &pods, &rs)) {
                    self.pod_stopping(&pod);
                    self.store
                        .remove(Kind::Pod, namespace_of(&pod), name_of(&pod));
                    self.record_event(
                        &rs,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", name_of(&pod)),
                        "replicaset-controller",
                    );
                }
            }
        }
    }

    fn pod_from_replica_set(&mut self, rs: &Value) -> Value {
        let template = &rs["spec"]["template"];
        let name = format!("{}-{}", name_of(rs), self.name_suffix(5));
        let uid = self.new_uid();
        let mut metadata = json!({
            "name": name,
            "generateName": format!("{}-", name_of(rs)),
            "namespace": namespace_of(rs),
            "uid": uid,
            "creationTimestamp": self.now_ts(),
            "labels": template["metadata"]["labels"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name_of(rs),
                "uid": uid_of(rs), "controller": true, "blockOwnerDeletion": true}],
        });
        if template["metadata"]["annotations"].is_object() {
            metadata["annotations"] = template["metadata"]["annotations"].clone();
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"],
            "status": {"phase": "Pending", "qosClass": "BestEffort"}})
    }

    fn scale_replica_set(&mut self, deployment: &Value, rs: &mut Value, replicas: i64) {
        let old = int(&rs["spec"]["replicas"]);
        let (surge, _) = surge_and_unavailable(deployment);
        let desired = int(&deployment["spec"]["replicas"]);
        let annotations = &mut rs["metadata"]["annotations"];
        annotations[DESIRED] = json!(desired.to_string());
        annotations[MAX] = json!((desired + surge).to_string());
        if old == replicas {
            *rs = self.store.update(Kind::ReplicaSet, rs.clone());
            return;
        }
        rs["spec"]["replicas"] = json!(replicas);
        let generation = int(&rs["metadata"]["generation"]);
        rs["metadata"]["generation"] = json!(generation + 1);
        *rs = self.store.update(Kind::ReplicaSet, rs.clone());
        let direction = if replicas > old { "up" } else { "down" };
        self.record_event(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            &format!(
                "Scaled {direction} replica set {} from {old} to {replicas}",
                name_of(rs)
            ),
            "deployment-controller",
        );
    }

    fn create_replica_set(&mut self, deployment: &Value, revision: i64) -> Value {
        let ns = namespace_of(deployment).to_owned();
        let template = deployment["spec"]["template"].clone();
        let mut collisions = 0;
        let (name, hash) = loop {
            let hash = template_hash(&template, collisions);
            let name = format!("{}-{hash}", name_of(deployment));
            if self.store.get(Kind::ReplicaSet, &ns, &name).is_none() {
                break (name, hash);
            }
            collisions += 1;
        };
        let mut rs_template = template;
        rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = deployment["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut annotations = json!({REVISION: revision.to_string()});
        if let Some(cause) = deployment["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
            annotations[CHANGE_CAUSE] = json!(cause);
        }
        let mut labels = rs_template["metadata"]["labels"].clone();
        labels[HASH_LABEL] = json!(hash);
        let uid = self.new_uid();
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": self.now_ts(),
                "generation": 1, "labels": labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name_of(deployment),
                    "uid": uid_of(deployment), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 0, "minReadySeconds": int(&deployment["spec"]["minReadySeconds"]),
                "selector": selector, "template": rs_template},
            "status": {"replicas": 0},
        });
        self.store.insert(Kind::ReplicaSet, rs)
    }

    fn sync_deployment(&mut self, deployment: Value) {
        let mut deployment = deployment;
        let ns = namespace_of(&deployment).to_owned();
        let all = self.store.list_owned(Kind::ReplicaSet, Some(&ns));
        let mut rses: Vec<Value> = owned_by(&all, &deployment).into_iter().cloned().collect();
        rses.sort_by_key(|rs| {
            (
                rs["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                name_of(rs).to_owned(),
            )
        });
        let paused = deployment["spec"]["paused"] == true;
        let max_revision = rses.iter().map(revision_of).max().unwrap_or(0);
        let template = deployment["spec"]["template"].clone();
        let mut new_index = rses
            .iter()
            .position(|rs| templates_equal(&rs["spec"]["template"], &template));
        if !paused {
            match new_index {
                None => {
                    let rs = self.create_replica_set(&deployment, max_revision + 1);
                    let message = format!("Created new replica set \"{}\"", name_of(&rs));
                    set_condition(
                        &mut deployment["status"],
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &message,
                        &self.now_ts(),
                    );
                    rses.push(rs);
                    new_index = Some(rses.len() - 1);
                }
                Some(i) if revision_of(&rses[i]) < max_revision => {
                    // Reusing an older ReplicaSet is how a rollback works: it
                    // takes the next revision number, and the old one moves
                    // to its revision history, as the deployment controller
                    // keeps it (`SetNewReplicaSetAnnotations`).
                    let rs = &mut rses[i];
                    let old = revision_of(rs).to_string();
                    let history = match rs["metadata"]["annotations"][REVISION_HISTORY].as_str() {
                        Some(h) if !h.is_empty() => format!("{h},{old}"),
                        _ => old,
                    };
                    rs["metadata"]["annotations"][REVISION_HISTORY] = json!(history);
                    rs["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
                    if let Some(cause) =
                        deployment["metadata"]["annotations"][CHANGE_CAUSE].as_str()
                    {
                        rs["metadata"]["annotations"][CHANGE_CAUSE] = json!(cause);
                    }
                    rses[i] = self.store.update(Kind::ReplicaSet, rses[i].clone());
                    let message = format!("Found new replica set \"{}\"", name_of(&rses[i]));
                    set_condition(
                        &mut deployment["status"],
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &message,
                        &self.now_ts(),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(i) = new_index {
            deployment["metadata"]["annotations"][REVISION] =
                json!(revision_of(&rses[i]).to_string());
        }
        deployment = self.store.update(Kind::Deployment, deployment);
        if self.sim.hold {
            return;
        }
        let desired = int(&deployment["spec"]["replicas"]);
        let Some(new_i) = new_index else { return };
        let old_active = rses
            .iter()
            .enumerate()
            .any(|(i, rs)| i != new_i && int(&rs["spec"]["replicas"]) > 0);
        if paused {
            if !old_active {
                let mut rs = rses[new_i].clone();
                self.scale_replica_set(&deployment, &mut rs, desired);
            }
            return;
        }
        if deployment["spec"]["strategy"]["type"] == "Recreate" {
            self.recreate(&deployment, &mut rses, new_i, desired);
        } else {
            self.rolling_update(&deployment, &mut rses, new_i, desired);
        }
        self.prune_history(&deployment, &rses, new_i);
    }

    fn recreate(&mut self, deployment: &Value, rses: &mut [Value], new_i: usize, desired: i64) {
        let mut old_pods = 0;
        for i in (0..rses.len()).filter(|i| *i != new_i) {
            old_pods += int(&rses[i]["status"]["replicas"]);
            if int(&rses[i]["spec"]["replicas"]) > 0 {
                let mut rs = rses[i].clone();
                self.scale_replica_set(deployment, &mut rs, 0);
                rses[i] = rs;
            }
        }
        if old_pods == 0 {
            let mut rs = rses[new_i].clone();
            self.scale_replica_set(deployment, &mut rs, desired);
            rses[new_i] = rs;
        }
    }

    /// The rolling-update arithmetic of the real controller, in one pass:
    /// scale the new ReplicaSet up within maxSurge, then scale old ones down
    /// (unhealthy pods first) without going below minAvailable.
    fn rolling_update(
        &mut self,
        deployment: &Value,
        rses: &mut [Value],
        new_i: usize,
        desired: i64,
    ) {
        let (surge, unavailable) = surge_and_unavailable(deployment);
        let total: i64 = rses.iter().map(|rs| int(&rs["spec"]["replicas"])).sum();
        let new_replicas = int(&rses[new_i]["spec"]["replicas"]);
        let target = new_rs_target(new_replicas, total, desired, surge);
        if target != new_replicas {
            let mut rs = rses[new_i].clone();
            self.scale_replica_set(deployment, &mut rs, target);
            rses[new_i] = rs;
        }
        let all_pods: i64 = rses.iter().map(|rs| int(&rs["spec"]["replicas"])).sum();
        let min_available = desired - unavailable;
        let new_unavailable = int(&rses[new_i]["spec"]["replicas"])
            - int(&rses[new_i]["status"]["availableReplicas"]);
        let mut budget = all_pods - min_available - new_unavailable;
        if budget <= 0 {
            return;
        }
        let old: Vec<usize> = (0..rses.len()).filter(|i| *i != new_i).collect();
        for &i in &old {
            if budget <= 0 {
                break;
            }
            let spec = int(&rses[i]["spec"]["replicas"]);
            let unhealthy = spec - int(&rses[i]["status"]["availableReplicas"]).min(spec);
            let cut = unhealthy.min(budget);
            if cut > 0 {
                budget -= cut;
                let mut rs = rses[i].clone();
                self.scale_replica_set(deployment, &mut rs, spec - cut);
                rses[i] = rs;
            }
        }
        let available: i64 = rses
            .iter()
            .map(|rs| int(&rs["status"]["availableReplicas"]).min(int(&rs["spec"]["replicas"])))
            .sum();
        let mut can_remove = available - min_available;
        for &i in &old {
            if can_remove <= 0 {
                break;
            }
            let spec = int(&rses[i]["spec"]["replicas"]);
            let cut = spec.min(can_remove);
            if cut > 0 {
                can_remove -= cut;
                let mut rs = rses[i].clone();
                self.scale_replica_set(deployment, &mut rs, spec - cut);
                rses[i] = rs;
            }
        }
    }

    fn prune_history(&mut self, deployment: &Value, rses: &[Value], new_i: usize) {
        let limit = deployment["spec"]["revisionHistoryLimit"]
            .as_i64()
            .unwrap_or(10)
            .max(0) as usize;
        let mut idle: Vec<&Value> = rses
            .iter()
            .enumerate()
            .filter(|(i, rs)| {
                *i != new_i
                    && int(&rs["spec"]["replicas"]) == 0
                    && int(&rs["status"]["replicas"]) == 0
            })
            .map(|(_, rs)| rs)
            .collect();
        if idle.len() <= limit {
            return;
        }
        idle.sort_by_key(|rs| revision_of(rs));
        let excess = idle.len() - limit;
        for rs in idle.into_iter().take(excess) {
            self.store
                .remove(Kind::ReplicaSet, namespace_of(rs), name_of(rs));
        }
    }

    fn sync_deployment_status(&mut self, deployment: &Value) {
        let Some(mut deployment) = self
            .store
            .get(
                Kind::Deployment,
                namespace_of(deployment),
                name_of(deployment),
            )
            .cloned()
        else {
            return;
        };
        let all = self
            .store
            .list_owned(Kind::ReplicaSet, Some(namespace_of(&deployment)));
        let rses = owned_by(&all, &deployment);
        let template = &deployment["spec"]["template"];
        let new_rs = rses
            .iter()
            .find(|rs| templates_equal(&rs["spec"]["template"], template));
        let desired = int(&deployment["spec"]["replicas"]);
        let sum = |field: &str| -> i64 { rses.iter().map(|rs| int(&rs["status"][field])).sum() };
        let replicas = sum("replicas");
        let updated = new_rs.map(|rs| int(&rs["status"]["replicas"])).unwrap_or(0);
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let total_spec: i64 = rses.iter().map(|rs| int(&rs["spec"]["replicas"])).sum();
        let old = deployment["status"].clone();
        let mut status = old.clone();
        if !status.is_object() {
            status = json!({});
        }
        status["observedGeneration"] = deployment["metadata"]["generation"].clone();
        status["replicas"] = json!(replicas);
        status["updatedReplicas"] = json!(updated);
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(available);
        status["unavailableReplicas"] = json!((total_spec - available).max(0));
        for zero_is_absent in [
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ] {
            if status[zero_is_absent] == 0
                && let Some(m) = status.as_object_mut()
            {
                m.remove(zero_is_absent);
            }
        }
        let now = self.now_ts();
        let (_, unavailable) = surge_and_unavailable(&deployment);
        if available >= desired - unavailable {
            set_condition(
                &mut status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now,
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now,
            );
        }
        let rs_name = new_rs.map(|rs| name_of(rs).to_owned()).unwrap_or_default();
        if deployment["spec"]["paused"] == true {
            set_condition(
                &mut status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &now,
            );
        } else if deployment["spec"]["progressDeadlineSeconds"].is_i64() {
            let progressing =
                crate::pods::condition(&json!({"status": status.clone()}), "Progressing").cloned();
            if progressing
                .as_ref()
                .is_some_and(|c| c["reason"] == "DeploymentPaused")
            {
                set_condition(
                    &mut status,
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed",
                    &now,
                );
            }
            let reason = |c: &Option<Value>| {
                c.as_ref()
                    .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
            };
            let current =
                crate::pods::condition(&json!({"status": status.clone()}), "Progressing").cloned();
            let complete_before = replicas == updated
                && reason(&current).as_deref() == Some("NewReplicaSetAvailable");
            if !complete_before {
                let complete = updated == desired && replicas == desired && available == desired;
                let old_old = int(&old["replicas"]) - int(&old["updatedReplicas"]);
                let progressed = updated > int(&old["updatedReplicas"])
                    || (replicas - updated) < old_old
                    || ready > int(&old["readyReplicas"])
                    || available > int(&old["availableReplicas"]);
                if complete {
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                        &now,
                    );
                } else if progressed {
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{rs_name}\" is progressing."),
                        &now,
                    );
                } else {
                    let deadline = int(&deployment["spec"]["progressDeadlineSeconds"]);
                    let timed_out = match reason(&current).as_deref() {
                        Some("ProgressDeadlineExceeded") => false,
                        Some(_) => current
                            .as_ref()
                            .and_then(|c| parse_timestamp(&c["lastUpdateTime"]))
                            .is_some_and(|t| {
                                // Past chrono's range, a deadline never comes.
                                Duration::try_seconds(deadline)
                                    .and_then(|d| t.checked_add_signed(d))
                                    .is_some_and(|end| end < self.now)
                            }),
                        None => false,
                    };
                    if timed_out {
                        set_condition(
                            &mut status,
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                            &now,
                        );
                    }
                }
            }
        }
        // Conditions are listed Available first, then Progressing, as the
        // controller creates them.
        if let Some(conditions) = status["conditions"].as_array_mut() {
            conditions.sort_by_key(|c| c["type"] != "Available");
        }
        if status != old {
            deployment["status"] = status;
            self.store.update(Kind::Deployment, deployment);
        }
    }

    /// Creates the scenario's objects and simulates its warm-up.
    pub(crate) fn seed(&mut self) -> Result<(), crate::error::ApiError> {
        let scenario = self.scenario.clone();
        self.sim.seeding = true;
        self.sim.hold = true;
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            scenario.namespace.as_str(),
        ] {
            if self.store.get(Kind::Namespace, "", ns).is_none() {
                self.create(
                    Kind::Namespace.info(),
                    "",
                    json!({"metadata": {"name": ns}}),
                    false,
                )?;
            }
        }
        for node in &scenario.nodes {
            let ready = if node.ready { "True" } else { "Unknown" };
            let (reason, message) = if node.ready {
                ("KubeletReady", "kubelet is posting ready status")
            } else {
                ("NodeStatusUnknown", "Kubelet stopped posting node status.")
            };
            let now = self.now_ts();
            let mut object = json!({
                "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "n2-standard-8"}},
                "spec": {"podCIDR": "10.52.0.0/24"},
                "status": {
                    "capacity": {"cpu": node.cpu, "memory": node.memory, "pods": "110"},
                    "allocatable": {"cpu": node.cpu, "memory": node.memory, "pods": "110"},
                    "conditions": [
                        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                            "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                            "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                            "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                        {"type": "Ready", "status": ready, "reason": reason, "message": message,
                            "lastHeartbeatTime": now, "lastTransitionTime": now},
                    ],
                    "addresses": [{"type": "InternalIP", "address": "10.128.0.10"}, {"type": "Hostname", "address": node.name}],
                    "nodeInfo": {"kubeletVersion": self.git_version, "kubeProxyVersion": self.git_version,
                        "containerRuntimeVersion": "containerd://1.7.24", "osImage": "Container-Optimized OS from Google",
                        "kernelVersion": "6.6.56+", "operatingSystem": "linux", "architecture": "amd64"},
                },
            });
            if node.unschedulable {
                object["spec"]["unschedulable"] = json!(true);
            }
            if !node.ready {
                object["spec"]["taints"] = json!([
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now},
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now}]);
            }
            let created = self.create(Kind::Node.info(), "", object, false)?;
            if !node.ready {
                self.record_event(
                    &created,
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {} status is now: NodeNotReady", node.name),
                    "node-controller",
                );
            }
        }
        let ns = scenario.namespace.clone();
        for cm in &scenario.config_maps {
            self.create(
                Kind::ConfigMap.info(),
                &ns,
                json!({"metadata": {"name": cm.name}, "data": cm.data}),
                false,
            )?;
        }
        for pvc in &scenario.persistent_volume_claims {
            self.create(Kind::PersistentVolumeClaim.info(), &ns, json!({
                "metadata": {"name": pvc.name},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": pvc.storage_class,
                    "resources": {"requests": {"storage": pvc.capacity}}},
            }), false)?;
            self.sim.disks.insert(
                (ns.clone(), pvc.name.clone()),
                Disk {
                    used: parse_quantity(&pvc.disk_used).unwrap_or(0.0),
                    reclaimable: parse_quantity(&pvc.reclaimable).unwrap_or(0.0),
                },
            );
        }
        for spec in &scenario.deployments {
            self.seed_deployment(&ns, spec)?;
        }
        self.sim.hold = false;
        self.reconcile();
        let warmup = scenario.warmup_seconds;
        for _ in 0..warmup {
            self.tick(Duration::seconds(1));
        }
        self.sim.seeding = false;
        Ok(())
    }

    fn seed_deployment(
        &mut self,
        ns: &str,
        spec: &crate::scenario::DeploymentSpec,
    ) -> Result<(), crate::error::ApiError> {
        let rt = Kind::Deployment.info();
        let revisions = spec.revisions.len() as i64;
        let mut created: Option<Value> = None;
        for (i, revision) in spec.revisions.iter().enumerate() {
            let template = pod_template(spec, revision);
            let mut annotations = json!({});
            if let Some(cause) = &revision.change_cause {
                annotations[CHANGE_CAUSE] = json!(cause);
            }
            let deployment = match created.take() {
                None => {
                    let body = json!({
                        "metadata": {"name": spec.name, "labels": spec.labels, "annotations": annotations},
                        "spec": {"replicas": spec.replicas, "selector": {"matchLabels": spec.labels}, "template": template},
                    });
                    self.create(rt, ns, body, false)?
                }
                Some(mut d) => {
                    d["spec"]["template"] = template;
                    match annotations.get(CHANGE_CAUSE) {
                        Some(cause) => d["metadata"]["annotations"][CHANGE_CAUSE] = cause.clone(),
                        None => {
                            if let Some(a) = d["metadata"]["annotations"].as_object_mut() {
                                a.remove(CHANGE_CAUSE);
                            }
                        }
                    }
                    self.replace(rt, ns, &spec.name, crate::cluster::Sub::Main, d, false)?
                }
            };
            self.sync_deployment(deployment.clone());
            // Older revisions were rolled out days ago and scaled away.
            let age = Duration::days(revisions - i as i64);
            for mut rs in self.store.list_owned(Kind::ReplicaSet, Some(ns)) {
                if controller_uid(&rs) == Some(uid_of(&deployment))
                    && revision_of(&rs) == i as i64 + 1
                {
                    rs["metadata"]["creationTimestamp"] = json!(timestamp(self.now - age));
                    if i + 1 < spec.revisions.len() {
                        rs["spec"]["replicas"] = json!(0);
                    }
                    self.store.update(Kind::ReplicaSet, rs);
                }
            }
            created = Some(self.get(rt, ns, &spec.name)?);
        }
        let Some(mut deployment) = created else {
            return Ok(());
        };
        // The current revision finished rolling out before the scenario
        // starts; its Progressing condition says so, as a real one would.
        let past = timestamp(self.now - Duration::hours(1));
        deployment["metadata"]["creationTimestamp"] =
            json!(timestamp(self.now - Duration::days(revisions + 1)));
        deployment["status"] = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": spec.replicas, "updatedReplicas": spec.replicas,
            "readyReplicas": spec.replicas, "availableReplicas": spec.replicas,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": past, "lastTransitionTime": past,
                    "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": past, "lastTransitionTime": past,
                    "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed."},
            ],
        });
        let deployment = self.store.update(Kind::Deployment, deployment);
        for mut rs in self.store.list_owned(Kind::ReplicaSet, Some(ns)) {
            if controller_uid(&rs) == Some(uid_of(&deployment)) && revision_of(&rs) == revisions {
                rs["spec"]["replicas"] = json!(spec.replicas);
                self.sim.initial_replicasets.insert(uid_of(&rs).to_owned());
                self.store.update(Kind::ReplicaSet, rs);
            }
        }
        Ok(())
    }
}

fn owned_len_excess(want: usize, pods: &[Value], rs: &Value) -> usize {
    owned_by(pods, rs).len().saturating_sub(want)
}

/// The new ReplicaSet's size under maxSurge (`NewRSNewReplicas`).
pub(crate) fn new_rs_target(current: i64, total: i64, desired: i64, surge: i64) -> i64 {
    if current >= desired {
        return desired;
    }
    let max_total = desired + surge;
    if total >= max_total {
        return current;
    }
    current + (max_total - total).min(desired - current)
}

fn pod_template(
    spec: &crate::scenario::DeploymentSpec,
    revision: &crate::scenario::RevisionSpec,
) -> Value {
    let mut container = json!({
        "name": spec.container,
        "image": revision.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": spec.port}, "periodSeconds": 5},
    });
    let mut resources = json!({});
    if let Some(q) = &revision.cpu_request {
        resources["requests"]["cpu"] = json!(q);
    }
    if let Some(q) = &revision.memory_request {
        resources["requests"]["memory"] = json!(q);
    }
    if let Some(q) = &revision.memory_limit {
        resources["limits"]["memory"] = json!(q);
    }
    container["resources"] = resources;
    if !revision.env.is_empty() {
        container["env"] = revision
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
    }
    if let Some(cm) = &spec.config_map {
        container["envFrom"] = json!([{"configMapRef": {"name": cm}}]);
    }
    let mut pod_spec = json!({"containers": [container]});
    if let Some(volume) = &spec.volume {
        pod_spec["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": volume.mount_path}]);
        pod_spec["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": volume.claim}}]);
    }
    json!({"metadata": {"labels": spec.labels}, "spec": pod_spec})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compare_semantically() {
        let stored = json!({"metadata": {"labels": {"app": "x", HASH_LABEL: "abc"}},
            "spec": {"containers": [{"name": "x", "image": "x:1", "resources": {}}]}});
        let from_kubectl = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "x", "image": "x:1"}]}});
        assert!(templates_equal(&stored, &from_kubectl));
        let changed = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x:2"}]}});
        assert!(!templates_equal(&stored, &changed));
        assert_eq!(template_hash(&stored, 0), template_hash(&from_kubectl, 0));
        assert_ne!(template_hash(&stored, 0), template_hash(&changed, 0));
        assert_ne!(template_hash(&stored, 0), template_hash(&stored, 1));
        assert_eq!(template_hash(&stored, 0).len(), 10);
    }

    #[test]
    fn surge_and_unavailable_round_like_the_controller() {
        let d = |replicas: i64, surge: Value, unavailable: Value| {
            json!({"spec": {"replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
        };
        assert_eq!(
            surge_and_unavailable(&d(3, json!("25%"), json!("25%"))),
            (1, 0)
        );
        assert_eq!(
            surge_and_unavailable(&d(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(surge_and_unavailable(&d(3, json!(0), json!(0))), (0, 1));
        assert_eq!(
            surge_and_unavailable(
                &json!({"spec": {"replicas": 4, "strategy": {"type": "Recreate"}}})
            ),
            (0, 4)
        );
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        assert_eq!(new_rs_target(0, 3, 3, 1), 1);
        assert_eq!(new_rs_target(1, 4, 3, 1), 1);
        assert_eq!(new_rs_target(1, 3, 3, 1), 2);
        assert_eq!(new_rs_target(5, 5, 3, 1), 3);
        assert_eq!(new_rs_target(0, 0, 3, 1), 3);
    }

    fn deployment(generation: i64, status: Value) -> Value {
        json!({"metadata": {"generation": generation}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn rollout_status_matches_kubectl() {
        let done = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3});
        assert!(rollout_complete(&deployment(2, done.clone())));
        assert!(deployment_healthy(&deployment(2, done.clone())));
        assert!(
            !rollout_complete(&deployment(3, done.clone())),
            "a newer generation is not observed yet"
        );
        let surging = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3});
        assert!(!rollout_complete(&deployment(2, surging)));
        let crashing = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 0});
        assert!(!deployment_healthy(&deployment(2, crashing)));
        let mut exceeded = done;
        exceeded["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert!(!deployment_healthy(&deployment(2, exceeded)));
    }

    #[test]
    fn conditions_keep_transition_time_while_status_holds() {
        let mut status = json!({});
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "a",
            "t1",
        );
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            "b",
            "t2",
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t1");
        assert_eq!(status["conditions"][0]["lastUpdateTime"], "t2");
        set_condition(
            &mut status,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            "c",
            "t3",
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t3");
    }
}
