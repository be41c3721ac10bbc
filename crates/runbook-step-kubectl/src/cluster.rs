//! One cluster connection: a kube-rs client, the endpoint for messages, the
//! context's default namespace and a lazily filled discovery cache, with the
//! few generic API calls the actions need (objects as JSON, errors
//! classified with the call that failed).

use crate::discovery::{self, ResourceType};
use crate::error::{ApiOp, Endpoint, KubectlError};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use std::collections::HashMap;
use tokio::sync::Mutex;

/// A cluster the executor talks to.
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// Server and context, for messages.
    pub endpoint: Endpoint,
    /// The context's namespace, else `default`.
    pub default_namespace: String,
    discovery: Mutex<DiscoveryCache>,
}

#[derive(Default)]
struct DiscoveryCache {
    /// The core group's types, once loaded.
    core: Option<Vec<ResourceType>>,
    /// (group, preferred group/version, every version in server order).
    groups: Option<Vec<(String, String, Vec<String>)>>,
    /// Each loaded group's types.
    by_group: HashMap<String, Vec<ResourceType>>,
}

fn discovery_op() -> ApiOp {
    ApiOp {
        verb: "get",
        group: String::new(),
        resource: "API discovery".to_string(),
        noun: "API discovery".to_string(),
        ..Default::default()
    }
}

impl Cluster {
    /// Wraps a client.
    pub fn new(client: Client, endpoint: Endpoint, default_namespace: String) -> Self {
        Cluster {
            client,
            endpoint,
            default_namespace,
            discovery: Mutex::new(DiscoveryCache::default()),
        }
    }

    /// Classifies an error of `op`.
    pub fn error(&self, error: kube::Error, op: &ApiOp) -> KubectlError {
        KubectlError::from_kube(error, op, &self.endpoint)
    }

    /// Describes a call on `rt`.
    pub fn op(
        &self,
        verb: &'static str,
        rt: &ResourceType,
        namespace: &str,
        name: Option<&str>,
        subresource: Option<&'static str>,
    ) -> ApiOp {
        ApiOp {
            verb,
            group: rt.group.clone(),
            resource: rt.plural.clone(),
            subresource,
            noun: rt.noun(),
            namespace: rt.namespaced.then(|| namespace.to_string()),
            name: name.map(str::to_string),
        }
    }

    async fn groups(
        &self,
        cache: &mut DiscoveryCache,
    ) -> Result<Vec<(String, String, Vec<String>)>, KubectlError> {
        if let Some(groups) = &cache.groups {
            return Ok(groups.clone());
        }
        let list = self
            .client
            .list_api_groups()
            .await
            .map_err(|e| self.error(e, &discovery_op()))?;
        let groups: Vec<(String, String, Vec<String>)> = list
            .groups
            .iter()
            .filter_map(|g| {
                let preferred = g
                    .preferred_version
                    .as_ref()
                    .map(|v| v.group_version.clone())
                    .or_else(|| g.versions.first().map(|v| v.group_version.clone()))?;
                let versions = g.versions.iter().map(|v| v.version.clone()).collect();
                Some((g.name.clone(), preferred, versions))
            })
            .collect();
        cache.groups = Some(groups.clone());
        Ok(groups)
    }

    /// Resolves a kind (`deploy`, `pvc`, `deployments.apps`) by discovery:
    /// the core group first, then the named groups in the server's order
    /// (its priority order), loading each group's document only when the
    /// groups before it did not match, and caching what was loaded.
    pub async fn resolve(&self, query: &str) -> Result<ResourceType, KubectlError> {
        let mut cache = self.discovery.lock().await;
        let wanted_group = discovery::wanted_group(query);
        if wanted_group
            .as_deref()
            .is_none_or(|g| g == "core" || g.is_empty())
        {
            if cache.core.is_none() {
                let list = self
                    .client
                    .list_core_api_resources("v1")
                    .await
                    .map_err(|e| self.error(e, &discovery_op()))?;
                cache.core = Some(discovery::types_of("", &list));
            }
            if let Some(t) = cache
                .core
                .as_deref()
                .and_then(|types| discovery::find(types, query))
            {
                return Ok(t.clone());
            }
        }
        for (group, group_version, _) in self.groups(&mut cache).await? {
            if wanted_group.as_deref().is_some_and(|g| g != group) {
                continue;
            }
            if !cache.by_group.contains_key(&group) {
                let list = self
                    .client
                    .list_api_group_resources(&group_version)
                    .await
                    .map_err(|e| self.error(e, &discovery_op()))?;
                cache
                    .by_group
                    .insert(group.clone(), discovery::types_of(&group, &list));
            }
            if let Some(t) = cache
                .by_group
                .get(&group)
                .and_then(|types| discovery::find(types, query))
            {
                return Ok(t.clone());
            }
        }
        Err(KubectlError::Invalid(format!(
            "the server doesn't have a resource type \"{query}\" ({})",
            self.endpoint
        )))
    }

    /// The version of `group` to use among `supported`, in the server's
    /// order (`top` takes the first of v1/v1beta1 that metrics.k8s.io serves).
    pub async fn group_version(
        &self,
        group: &str,
        supported: &[&str],
    ) -> Result<Option<String>, KubectlError> {
        let mut cache = self.discovery.lock().await;
        Ok(self
            .groups(&mut cache)
            .await?
            .into_iter()
            .find(|(name, _, _)| name == group)
            .and_then(|(_, _, versions)| {
                versions
                    .into_iter()
                    .find(|v| supported.contains(&v.as_str()))
            }))
    }

    /// The dynamic API of `rt` in `namespace` (ignored for cluster scope).
    pub fn api(&self, rt: &ResourceType, namespace: &str) -> Api<DynamicObject> {
        let ar = rt.api_resource();
        if rt.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    /// GETs one object as JSON.
    pub async fn get(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, KubectlError> {
        let op = self.op("get", rt, namespace, Some(name), None);
        let obj = self
            .api(rt, namespace)
            .get(name)
            .await
            .map_err(|e| self.error(e, &op))?;
        Ok(to_json(&obj, rt))
    }

    /// LISTs objects as JSON, with optional label and field selectors.
    pub async fn list(
        &self,
        rt: &ResourceType,
        namespace: &str,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<Value>, KubectlError> {
        let op = self.op("list", rt, namespace, None, None);
        let mut lp = ListParams::default();
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        let list = self
            .api(rt, namespace)
            .list(&lp)
            .await
            .map_err(|e| self.error(e, &op))?;
        Ok(list.items.iter().map(|o| to_json(o, rt)).collect())
    }

    /// PATCHes an object (or its `subresource`) and returns the result.
    pub async fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&'static str>,
        patch: &Patch<Value>,
        params: &PatchParams,
    ) -> Result<Value, KubectlError> {
        let op = self.op("patch", rt, namespace, Some(name), subresource);
        let api = self.api(rt, namespace);
        let result = match subresource {
            None => api
                .patch(name, params, patch)
                .await
                .map(|o| to_json(&o, rt)),
            Some("scale") => api
                .patch_scale(name, params, patch)
                .await
                .map(|s| serde_json::to_value(&s).unwrap_or(Value::Null)),
            Some(sub) => api
                .patch_subresource(sub, name, params, patch)
                .await
                .map(|o| to_json(&o, rt)),
        };
        result.map_err(|e| self.error(e, &op))
    }

    /// DELETEs an object (background propagation, as kubectl). Under dry
    /// run, `dryRun=All` goes in the DeleteOptions body (what the API server
    /// reads when a body is present, and what kubectl sends) and in the query
    /// as well, so a server that only looks at the query (an older proxy, a
    /// fake) cannot turn a dry run into a real deletion.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<(), KubectlError> {
        let op = self.op("delete", rt, namespace, Some(name), None);
        let mut dp = DeleteParams::background();
        dp.dry_run = dry_run;
        let api = self.api(rt, namespace);
        let request = kube::core::Request::new(api.resource_url())
            .delete(name, &dp)
            .map_err(|e| KubectlError::Invalid(format!("cannot build the delete request: {e}")))?;
        let (mut parts, body) = request.into_parts();
        if dry_run {
            let uri = parts.uri.to_string();
            let separator = if uri.contains('?') { "&" } else { "?" };
            parts.uri = format!("{uri}{separator}dryRun=All")
                .parse()
                .map_err(|e| KubectlError::Invalid(format!("cannot build the delete URL: {e}")))?;
        }
        self.client
            .request_text(http::Request::from_parts(parts, body))
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &op))
    }
}

/// An object as JSON, with `apiVersion`/`kind` filled in (list items come
/// without them).
pub fn to_json(obj: &DynamicObject, rt: &ResourceType) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        if !m.get("apiVersion").is_some_and(Value::is_string) {
            m.insert("apiVersion".into(), Value::String(rt.api_version()));
        }
        if !m.get("kind").is_some_and(Value::is_string) {
            m.insert("kind".into(), Value::String(rt.kind.clone()));
        }
    }
    v
}
