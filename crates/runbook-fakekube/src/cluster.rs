//! The fake apiserver's state and its write semantics: defaulting,
//! validation, optimistic concurrency, subresources (`status`, `scale`),
//! server-side dry run, and Event recording. Controllers live in
//! [`crate::controller`] and pods in [`crate::pods`]; both act on this state.

use crate::error::ApiError;
use crate::fault::{Fault, JournalEntry};
use crate::patch::{self, PatchKind};
use crate::pods::Sim;
use crate::quantity::quantity_of;
use crate::resources::{Kind, ResourceType};
use crate::scenario::Scenario;
use crate::selector::LabelSelector;
use crate::store::{Store, name_of, namespace_of, uid_of};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Which part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    Main,
    Status,
    Scale,
}

/// Formats a timestamp the way the apiserver does (seconds, `Z`).
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an apiserver timestamp.
pub(crate) fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The whole fake cluster, guarded by one mutex in the server.
pub(crate) struct Cluster {
    pub(crate) store: Store,
    pub(crate) now: DateTime<Utc>,
    rng: u64,
    pub(crate) scenario: Scenario,
    pub(crate) sim: Sim,
    pub(crate) faults: Vec<Fault>,
    pub(crate) journal: Vec<JournalEntry>,
    pub(crate) git_version: String,
    /// (involved uid, reason, message) → (namespace, event name), so repeated
    /// events bump `count` the way the kubelet's event correlator does.
    event_index: BTreeMap<(String, String, String), (String, String)>,
}

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Cluster {
    pub(crate) fn new(scenario: Scenario, now: DateTime<Utc>, git_version: String) -> Self {
        Self {
            store: Store::new(),
            now,
            rng: scenario.seed ^ 0x9e37_79b9_7f4a_7c15,
            sim: Sim::default(),
            scenario,
            faults: Vec::new(),
            journal: Vec::new(),
            git_version,
            event_index: BTreeMap::new(),
        }
    }

    /// splitmix64: deterministic per scenario seed, so names repeat run to run.
    pub(crate) fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn new_uid(&mut self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// A random name suffix from the apiserver's vowel-free alphabet.
    pub(crate) fn name_suffix(&mut self, len: usize) -> String {
        let mut n = self.random();
        (0..len)
            .map(|_| {
                let c = SAFE_ALPHABET[(n % SAFE_ALPHABET.len() as u64) as usize] as char;
                n /= SAFE_ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    pub(crate) fn now_ts(&self) -> String {
        timestamp(self.now)
    }

    // ----- reads -------------------------------------------------------------

    pub(crate) fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.store
            .get(rt.kind, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub(crate) fn get_sub(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Sub,
    ) -> Result<Value, ApiError> {
        let object = self.get(rt, ns, name)?;
        Ok(match sub {
            Sub::Scale => to_scale(&object),
            Sub::Main | Sub::Status => object,
        })
    }

    pub(crate) fn require_namespace(&self, ns: &str) -> Result<(), ApiError> {
        if self.store.get(Kind::Namespace, "", ns).is_some() {
            Ok(())
        } else {
            Err(ApiError::namespace_not_found(ns))
        }
    }

    // ----- writes ------------------------------------------------------------

    /// POST: create an object.
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if rt.namespaced {
            self.require_namespace(ns)?;
            match body["metadata"]["namespace"].as_str() {
                Some(given) if given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => body["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
        if name_of(&body).is_empty() {
            let Some(prefix) = body["metadata"]["generateName"].as_str().map(str::to_owned) else {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            };
            let suffix = self.name_suffix(5);
            body["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
        }
        let name = name_of(&body).to_owned();
        if self
            .store
            .get(rt.kind, if rt.namespaced { ns } else { "" }, &name)
            .is_some()
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind_name);
        let uid = self.new_uid();
        let meta = body["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(timestamp(self.now)));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        if matches!(rt.kind, Kind::Deployment | Kind::ReplicaSet) {
            meta.insert("generation".into(), json!(1));
        }
        crate::defaults::apply(rt.kind, &mut body);
        crate::defaults::validate(rt, None, &body)?;
        if dry_run {
            return Ok(body);
        }
        let stored = self.store.insert(rt.kind, body);
        self.reconcile();
        Ok(stored)
    }

    /// PUT: replace an object (or its status or scale) with optimistic concurrency.
    pub(crate) fn replace(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Sub,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name)?;
        let Some(given) = body["metadata"]["resourceVersion"].as_str() else {
            return Err(ApiError::invalid(
                rt,
                name,
                &[(
                    "metadata.resourceVersion".into(),
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            ));
        };
        if Some(given) != current["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(rt, name));
        }
        self.commit(rt, name, sub, current, body, dry_run)
    }

    /// PATCH in any of the supported formats.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Sub,
        kind: PatchKind,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name)?;
        let mut document = match sub {
            Sub::Scale => to_scale(&current),
            Sub::Main | Sub::Status => current.clone(),
        };
        patch::apply(kind, &mut document, body).map_err(|e| match e {
            patch::PatchError::Body(m) => ApiError::bad_request(m),
            patch::PatchError::JsonPatch(m) => ApiError::new(422, "Invalid", m),
        })?;
        if let Some(wanted) = document["metadata"]["resourceVersion"].as_str()
            && Some(wanted) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(rt, name));
        }
        self.commit(rt, name, sub, current, document, dry_run)
    }

    /// The shared tail of PUT and PATCH.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rt: &ResourceType,
        name: &str,
        sub: Sub,
        current: Value,
        document: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if name_of(&document) != name && !(sub == Sub::Scale && name_of(&document).is_empty()) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&document)
            )));
        }
        let mut updated = match sub {
            Sub::Scale => {
                let replicas = &document["spec"]["replicas"];
                let Some(n) = replicas.as_i64() else {
                    return Err(ApiError::invalid(
                        rt,
                        name,
                        &[(
                            "spec.replicas".into(),
                            format!("Invalid value: {replicas}: must be an integer"),
                        )],
                    ));
                };
                if n < 0 {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
                        ),
                    ));
                }
                let mut o = current.clone();
                o["spec"]["replicas"] = json!(n);
                o
            }
            Sub::Status => {
                let mut o = current.clone();
                o["status"] = document.get("status").cloned().unwrap_or(Value::Null);
                o
            }
            Sub::Main => {
                let mut o = document;
                if rt.status_subresource {
                    match current.get("status") {
                        Some(status) => o["status"] = status.clone(),
                        None => {
                            if let Some(m) = o.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                o
            }
        };
        // Identity and server-owned metadata always come from the stored object.
        for key in [
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "namespace",
            "name",
        ] {
            match current["metadata"].get(key) {
                Some(v) => updated["metadata"][key] = v.clone(),
                None => {
                    if let Some(m) = updated["metadata"].as_object_mut() {
                        m.remove(key);
                    }
                }
            }
        }
        updated["apiVersion"] = json!(rt.api_version());
        updated["kind"] = json!(rt.kind_name);
        crate::defaults::apply(rt.kind, &mut updated);
        crate::defaults::validate(rt, Some(&current), &updated)?;
        if updated.get("spec") != current.get("spec")
            && current["metadata"].get("generation").is_some()
        {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            updated["metadata"]["generation"] = json!(generation + 1);
        }
        let result = if dry_run {
            updated
        } else {
            let stored = self.store.update(rt.kind, updated);
            self.reconcile();
            // Return what the controllers left, as a real apiserver response
            // would not include their later writes: use the stored write.
            stored
        };
        Ok(match sub {
            Sub::Scale => to_scale(&result),
            Sub::Main | Sub::Status => result,
        })
    }

    /// DELETE one object; namespaces and owners take their dependents along.
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(rt, ns, name)?;
        if dry_run {
            return Ok(current);
        }
        if rt.kind == Kind::Pod {
            self.pod_stopping(&current);
        }
        let removed = self
            .store
            .remove(rt.kind, ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if rt.kind == Kind::Namespace {
            for r in crate::resources::RESOURCES.iter().filter(|r| r.namespaced) {
                for object in self.store.list_owned(r.kind, Some(name)) {
                    self.store.remove(r.kind, name, name_of(&object));
                }
            }
        }
        self.reconcile();
        Ok(removed)
    }

    // ----- events ------------------------------------------------------------

    /// Records a core/v1 Event about `involved`, aggregating repeats.
    pub(crate) fn record_event(
        &mut self,
        involved: &Value,
        event_type: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = match namespace_of(involved) {
            "" => "default".to_owned(),
            ns => ns.to_owned(),
        };
        let key = (
            uid_of(involved).to_owned(),
            reason.to_owned(),
            message.to_owned(),
        );
        let now = self.now_ts();
        if let Some((ens, ename)) = self.event_index.get(&key).cloned()
            && let Some(existing) = self.store.get(Kind::Event, &ens, &ename).cloned()
        {
            let mut event = existing;
            let count = event["count"].as_i64().unwrap_or(1);
            event["count"] = json!(count + 1);
            event["lastTimestamp"] = json!(now);
            self.store.update(Kind::Event, event);
            return;
        }
        let name = format!("{}.{:016x}", name_of(involved), self.random() >> 1);
        let uid = self.new_uid();
        let host = involved["spec"]["nodeName"].as_str().map(str::to_owned);
        let mut source = json!({"component": component});
        if let Some(host) = &host {
            source["host"] = json!(host);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": now},
            "involvedObject": {
                "kind": involved["kind"],
                "namespace": involved["metadata"]["namespace"],
                "name": name_of(involved),
                "uid": uid_of(involved),
                "apiVersion": involved["apiVersion"],
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": event_type,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": host.unwrap_or_default(),
        });
        let mut event = event;
        if involved["metadata"]["namespace"].is_null()
            && let Some(io) = event["involvedObject"].as_object_mut()
        {
            io.remove("namespace");
        }
        self.store.insert(Kind::Event, event);
        self.event_index.insert(key, (ns, name));
    }
}

/// The autoscaling/v1 Scale view of a deployment or replica set.
pub(crate) fn to_scale(object: &Value) -> Value {
    let selector = LabelSelector::from_object(&object["spec"]["selector"]).to_query();
    let mut metadata = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = object["metadata"].get(key) {
            metadata.insert(key.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The memory limit of a container spec in bytes, if set.
pub(crate) fn memory_limit(container: &Value) -> Option<f64> {
    quantity_of(&container["resources"]["limits"]["memory"])
}
