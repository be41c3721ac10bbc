//! Reading actions: `get`, `events`, `top` and `logs`. They run normally
//! under `--dry-run`.

use super::{ActionResult, Call, Failure};
use crate::discovery::{ResourceType, parse_target};
use crate::error::KubectlError;
use crate::json::{get_path, get_str};
use crate::{events, pods, quantity};
use kube::api::{Api, LogParams};
use runbook_engine::{Outputs, Stream};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `get`: one object (`kind/name`) or a list (`kind`, with selectors).
pub async fn get(call: &Call<'_>) -> ActionResult {
    let target = call.target()?;
    let rt = call.cluster.resolve(&target.kind).await?;
    let is_pod = rt.group.is_empty() && rt.kind == "Pod";
    let mut out = Outputs::new();
    let items = match &target.name {
        Some(name) => {
            let obj = call.cluster.get(&rt, &call.namespace, name).await?;
            out.insert("object".into(), obj.clone());
            vec![obj]
        }
        None => {
            let items = call
                .cluster
                .list(
                    &rt,
                    &call.namespace,
                    call.fields.selector.as_deref(),
                    call.fields.field_selector.as_deref(),
                )
                .await?;
            out.insert("object".into(), Value::Null);
            items
        }
    };
    out.insert("count".into(), json!(items.len()));
    out.insert(
        "pods".into(),
        if is_pod {
            Value::Array(items.iter().map(pods::summary).collect())
        } else {
            Value::Null
        },
    );
    out.insert("items".into(), Value::Array(items));
    Ok(out)
}

/// `events`: the namespace's events, or those of the `for` resource, oldest
/// first.
pub async fn events(call: &Call<'_>) -> ActionResult {
    let events_rt = call.cluster.resolve("events").await?;
    let mut selectors: Vec<String> = Vec::new();
    if let Some(for_resource) = &call.fields.for_resource {
        let target = parse_target(for_resource).map_err(KubectlError::Invalid)?;
        let Some(name) = target.name else {
            return Err(KubectlError::Invalid(format!(
                "`for: {for_resource}` must name one object, such as `pod/omendb-0`"
            ))
            .into());
        };
        let rt = call.cluster.resolve(&target.kind).await?;
        // The same three terms as `kubectl events --for`.
        selectors.push(format!("involvedObject.kind={}", rt.kind));
        selectors.push(format!("involvedObject.apiVersion={}", rt.api_version()));
        selectors.push(format!("involvedObject.name={name}"));
    }
    if let Some(f) = &call.fields.field_selector {
        selectors.push(f.clone());
    }
    let fields = (!selectors.is_empty()).then(|| selectors.join(","));
    let list = call
        .cluster
        .list(
            &events_rt,
            &call.namespace,
            call.fields.selector.as_deref(),
            fields.as_deref(),
        )
        .await?;
    let rows = events::rows(list);
    let mut out = Outputs::new();
    out.insert("count".into(), json!(rows.len()));
    out.insert("items".into(), Value::Array(rows));
    Ok(out)
}

/// The metrics versions `top` understands, as kubectl (v1 since 1.34).
const METRICS_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// `top`: CPU (millicores) and memory (bytes) of pods or nodes, from
/// metrics.k8s.io; a pod's usage is the sum of its containers'.
pub async fn top(call: &Call<'_>) -> ActionResult {
    let target = match &call.fields.resource {
        Some(r) => parse_target(r).map_err(KubectlError::Invalid)?,
        None => parse_target("pods").map_err(KubectlError::Invalid)?,
    };
    let kind = call.cluster.resolve(&target.kind).await?;
    let nodes = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => false,
        ("", "Node") => true,
        _ => {
            return Err(KubectlError::Invalid(format!(
                "`top` works on pods or nodes, not {}",
                kind.plural
            ))
            .into());
        }
    };
    let version = call
        .cluster
        .group_version("metrics.k8s.io", &METRICS_VERSIONS)
        .await?
        .ok_or_else(|| {
            KubectlError::Refused(format!(
                "Metrics API not available: the server does not serve metrics.k8s.io v1 or v1beta1 \
                 (is metrics-server installed?) ({})",
                call.cluster.endpoint
            ))
        })?;
    let rt = ResourceType {
        group: "metrics.k8s.io".into(),
        version,
        kind: if nodes { "NodeMetrics" } else { "PodMetrics" }.into(),
        plural: if nodes { "nodes" } else { "pods" }.into(),
        singular: String::new(),
        short_names: Vec::new(),
        namespaced: !nodes,
        subresources: Vec::new(),
    };
    let items = match &target.name {
        Some(name) => vec![call.cluster.get(&rt, &call.namespace, name).await?],
        None => {
            let metrics = call
                .cluster
                .list(&rt, &call.namespace, call.fields.selector.as_deref(), None)
                .await?;
            if metrics.is_empty() {
                // As kubectl: no metrics at all for pods (or nodes) that
                // exist is an error, not an empty table that a later
                // "every pod under its limit" check would pass on.
                let objects = call
                    .cluster
                    .list(
                        &kind,
                        &call.namespace,
                        call.fields.selector.as_deref(),
                        None,
                    )
                    .await?;
                if let Some(first) = objects.first() {
                    let name = get_str(first, "/metadata/name").unwrap_or_default();
                    let (what, whose) = if nodes {
                        ("node", name.to_string())
                    } else {
                        ("pod", format!("{}/{name}", call.namespace))
                    };
                    return Err(KubectlError::Refused(format!(
                        "metrics not available for {what} {whose}: metrics-server has none for it yet (a {what} that is not running, or started less than a minute ago, has none) ({})",
                        call.cluster.endpoint
                    ))
                    .into());
                }
            }
            metrics
        }
    };
    let mut rows = Vec::new();
    for item in &items {
        let name = get_str(item, "/metadata/name").unwrap_or_default();
        let usages: Vec<&Value> = if nodes {
            get_path(item, "/usage").into_iter().collect()
        } else {
            get_path(item, "/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| get_path(c, "/usage"))
                .collect()
        };
        let (mut cpu, mut memory) = (0i64, 0i64);
        for usage in usages {
            let parse = |field: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
                get_str(usage, &format!("/{field}"))
                    .map(f)
                    .transpose()
                    .map_err(|e| KubectlError::Refused(format!("metrics of {name}: {e}")))
            };
            cpu += parse("cpu", quantity::millicores)?.unwrap_or(0);
            memory += parse("memory", quantity::base_units)?.unwrap_or(0);
        }
        rows.push(json!({"name": name, "cpu_millicores": cpu, "memory_bytes": memory}));
    }
    let mut out = Outputs::new();
    out.insert("items".into(), Value::Array(rows));
    Ok(out)
}

/// Default `tail` with a selector, as kubectl.
const SELECTOR_TAIL: i64 = 10;

/// `logs`: a pod's, a workload's (one pod, chosen like kubectl), or every
/// pod matching `selector`.
pub async fn logs(call: &Call<'_>) -> ActionResult {
    let pods_rt = call.cluster.resolve("pods").await?;
    let mut selected: Vec<Value> = match (&call.fields.resource, &call.fields.selector) {
        (Some(resource), _) if parse_target(resource).is_ok_and(|t| t.name.is_some()) => {
            let (rt, name) = call.named().await?;
            let obj = call.cluster.get(&rt, &call.namespace, &name).await?;
            if rt.group.is_empty() && rt.kind == "Pod" {
                vec![obj]
            } else {
                let mut list = call
                    .pods_of(&obj, &format!("{} \"{name}\"", rt.noun()))
                    .await?;
                pods::sort_for_logs(&mut list);
                list.truncate(1);
                list
            }
        }
        (resource, Some(selector)) => {
            // As validate does for a literal one: a selector reads pods,
            // so a rendered kind that is not pods would be ignored.
            if let Some(kind) = resource.as_deref().and_then(|r| parse_target(r).ok()) {
                let named = call.cluster.resolve(&kind.kind).await?;
                if !(named.group.is_empty() && named.kind == "Pod") {
                    return Err(KubectlError::Invalid(format!(
                        "`logs` with a `selector` reads the selected pods, not {}; drop `resource`",
                        named.plural
                    ))
                    .into());
                }
            }
            let mut list = call
                .cluster
                .list(&pods_rt, &call.namespace, Some(selector), None)
                .await?;
            list.sort_by(|a, b| get_str(a, "/metadata/name").cmp(&get_str(b, "/metadata/name")));
            list
        }
        _ => {
            return Err(KubectlError::Invalid(
                "`logs` needs `resource` (`pod/NAME`, `deployment/NAME`) or `selector`".to_string(),
            )
            .into());
        }
    };
    if selected.is_empty() {
        return Err(KubectlError::Refused(format!(
            "no pods match selector {} in namespace \"{}\"",
            call.fields.selector.as_deref().unwrap_or_default(),
            call.namespace
        ))
        .into());
    }
    let selector_mode = call.fields.selector.is_some()
        && !call
            .fields
            .resource
            .as_deref()
            .is_some_and(|r| parse_target(r).is_ok_and(|t| t.name.is_some()));
    let tail = call
        .fields
        .tail
        .filter(|t| *t >= 0)
        .or(selector_mode.then_some(SELECTOR_TAIL));
    // `since: 18446744073709551615s` is a valid duration; the API takes an
    // i64, and anything past it means "all of it" just as well.
    let since = call
        .fields
        .since
        .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX));
    let api: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(call.cluster.client.clone(), &call.namespace);
    let several = selected.len() > 1;
    let mut by_pod: BTreeMap<String, String> = BTreeMap::new();
    let mut text = String::new();
    for pod in selected.drain(..) {
        let name = get_str(&pod, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        let container = match &call.fields.container {
            Some(c) => {
                if !pods::all_container_names(&pod).iter().any(|n| n == c) {
                    let err = KubectlError::Invalid(format!(
                        "container {c} is not valid for pod {name} out of: {}",
                        pods::all_container_names(&pod).join(", ")
                    ));
                    return Err(partial(err, &by_pod, &text));
                }
                c.clone()
            }
            None => pods::default_container(&pod)
                .map_err(|e| partial(KubectlError::Refused(e), &by_pod, &text))?,
        };
        let params = LogParams {
            container: Some(container.clone()),
            tail_lines: tail,
            since_seconds: since,
            ..Default::default()
        };
        let op = call
            .cluster
            .op("get", &pods_rt, &call.namespace, Some(&name), Some("log"));
        let log = api
            .logs(&name, &params)
            .await
            .map_err(|e| partial(call.cluster.error(e, &op), &by_pod, &text))?;
        let prefix = format!("[pod/{name}/{container}] ");
        for line in log.lines() {
            let shown = if several {
                format!("{prefix}{line}")
            } else {
                line.to_string()
            };
            call.ctx.output_line(Stream::Stdout, &shown);
            text.push_str(&shown);
            text.push('\n');
        }
        by_pod.insert(name, log);
    }
    Ok(log_outputs(&by_pod, &text))
}

fn log_outputs(by_pod: &BTreeMap<String, String>, text: &str) -> Outputs {
    let mut out = Outputs::new();
    out.insert("text".into(), Value::String(text.to_string()));
    out.insert("by_pod".into(), json!(by_pod));
    out
}

fn partial(error: KubectlError, by_pod: &BTreeMap<String, String>, text: &str) -> Failure {
    Failure {
        error,
        outputs: log_outputs(by_pod, text),
    }
}
