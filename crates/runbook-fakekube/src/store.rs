//! The object store: unstructured objects keyed by kind, namespace and name,
//! the global `resourceVersion` counter, and the change feed that watches
//! read (a bounded history for resuming from a version, plus a broadcast
//! channel for live changes).

use crate::resources::Kind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many changes are kept for watches that resume from an older version.
const HISTORY: usize = 20_000;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change, as watches see it.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) kind: Kind,
    pub(crate) resource_version: u64,
    pub(crate) change: ChangeType,
    pub(crate) object: Value,
    /// The object before a modification, so a watch with a selector can turn
    /// "no longer matches" into DELETED and "now matches" into ADDED.
    pub(crate) previous: Option<Value>,
}

type Key = (String, String);

/// All stored objects.
pub(crate) struct Store {
    objects: BTreeMap<Kind, BTreeMap<Key, Value>>,
    resource_version: u64,
    history: VecDeque<Arc<Change>>,
    feed: broadcast::Sender<Arc<Change>>,
}

pub(crate) fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

pub(crate) fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub(crate) fn uid_of(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

#[cfg(test)]
pub(crate) fn resource_version_of(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// Objects compare equal for change detection when they differ only in
/// `resourceVersion`.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

impl Store {
    pub(crate) fn new() -> Self {
        let (feed, _) = broadcast::channel(4096);
        Self {
            objects: BTreeMap::new(),
            resource_version: 1,
            history: VecDeque::new(),
            feed,
        }
    }

    /// The current global resource version.
    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub(crate) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Objects of a kind, in one namespace or (with `None`) in all, ordered
    /// by namespace and name.
    pub(crate) fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(&kind)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                    .map(|(_, v)| v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Owned copies of [`Store::list`], for code that writes while iterating.
    pub(crate) fn list_owned(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.list(kind, namespace).into_iter().cloned().collect()
    }

    fn commit(&mut self, kind: Kind, change: ChangeType, object: Value, previous: Option<Value>) {
        let change = Arc::new(Change {
            kind,
            resource_version: self.resource_version,
            change,
            object,
            previous,
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        // Nobody listening is normal: watches come and go.
        let _ = self.feed.send(change);
    }

    fn stamp(&mut self, object: &mut Value) {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
    }

    /// Stores a new object (the caller checked it does not exist) and returns it.
    pub(crate) fn insert(&mut self, kind: Kind, mut object: Value) -> Value {
        self.stamp(&mut object);
        let key = (
            namespace_of(&object).to_owned(),
            name_of(&object).to_owned(),
        );
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        self.commit(kind, ChangeType::Added, object.clone(), None);
        object
    }

    /// Replaces an existing object when its content changed; returns the
    /// stored object either way.
    pub(crate) fn update(&mut self, kind: Kind, mut object: Value) -> Value {
        let key = (
            namespace_of(&object).to_owned(),
            name_of(&object).to_owned(),
        );
        let previous = self.objects.get(&kind).and_then(|m| m.get(&key)).cloned();
        if let Some(previous) = &previous
            && same_content(previous, &object)
        {
            return previous.clone();
        }
        self.stamp(&mut object);
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.commit(kind, change, object.clone(), previous);
        object
    }

    /// Removes an object and returns it as last seen.
    pub(crate) fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(&kind)?
            .remove(&(namespace.to_owned(), name.to_owned()))?;
        self.stamp(&mut object);
        self.commit(kind, ChangeType::Deleted, object.clone(), None);
        Some(object)
    }

    /// Changes of a kind after `after`, plus a receiver for the ones to come.
    /// Taken together under the cluster lock so none falls in between.
    pub(crate) fn changes_since(
        &self,
        kind: Kind,
        after: u64,
    ) -> (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>) {
        let past = self
            .history
            .iter()
            .filter(|c| c.kind == kind && c.resource_version > after)
            .cloned()
            .collect();
        (past, self.feed.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, value: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "data": value})
    }

    #[test]
    fn versions_increase_and_noop_updates_are_skipped() {
        let mut store = Store::new();
        let a = store.insert(Kind::ConfigMap, object("a", 1));
        let rv1 = resource_version_of(&a).expect("stamped");
        let same = store.update(Kind::ConfigMap, a.clone());
        assert_eq!(resource_version_of(&same), Some(rv1));
        let changed = store.update(Kind::ConfigMap, object("a", 2));
        assert!(resource_version_of(&changed).expect("stamped") > rv1);
        let (past, _) = store.changes_since(Kind::ConfigMap, rv1);
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].change, ChangeType::Modified);
        assert_eq!(
            past[0].previous.as_ref().map(|p| p["data"].clone()),
            Some(json!(1))
        );
        store.remove(Kind::ConfigMap, "ns", "a").expect("exists");
        assert!(store.get(Kind::ConfigMap, "ns", "a").is_none());
        let (past, _) = store.changes_since(Kind::ConfigMap, 0);
        assert_eq!(past.len(), 3);
    }
}
