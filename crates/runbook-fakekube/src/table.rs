//! Server-side `Table` rendering (`Accept: application/json;as=Table`), which
//! is what `kubectl get` prints. Columns follow the apiserver's printers for
//! the kinds in scope; ages use the fake's virtual clock.

use crate::cluster::parse_timestamp;
use crate::pods::condition;
use crate::resources::Kind;
use crate::store::name_of;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// kubectl's short human duration (`45s`, `3m12s`, `5h`, `2d3h`).
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if m < 10 {
        match seconds % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(now: DateTime<Utc>, value: &Value) -> String {
    parse_timestamp(value).map_or_else(
        || "<unknown>".into(),
        |t| human_duration((now - t).num_seconds()),
    )
}

fn column(name: &str, kind: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority})
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn pod_status_text(pod: &Value) -> String {
    let mut reason = pod["status"]["reason"]
        .as_str()
        .or(pod["status"]["phase"].as_str())
        .unwrap_or("Unknown")
        .to_owned();
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_owned();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_owned();
        }
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        reason = "Terminating".into();
    }
    reason
}

fn row(kind: Kind, object: &Value, now: DateTime<Utc>) -> (Vec<Value>, Vec<Value>) {
    let name = json!(name_of(object));
    let created = age(now, &object["metadata"]["creationTimestamp"]);
    match kind {
        Kind::Pod => {
            let statuses = object["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = object["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
            let last = statuses
                .iter()
                .filter_map(|c| parse_timestamp(&c["lastState"]["terminated"]["finishedAt"]))
                .max();
            let restarts_text = match last {
                Some(t) if restarts > 0 => format!(
                    "{restarts} ({} ago)",
                    human_duration((now - t).num_seconds())
                ),
                _ => restarts.to_string(),
            };
            let ip = object["status"]["podIP"].as_str().unwrap_or("<none>");
            let node = object["spec"]["nodeName"].as_str().unwrap_or("<none>");
            (
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status_text(object)),
                    json!(restarts_text),
                    json!(created),
                    json!(ip),
                    json!(node),
                    json!("<none>"),
                    json!("<none>"),
                ],
                vec![
                    column("Name", "string", 0),
                    column("Ready", "string", 0),
                    column("Status", "string", 0),
                    column("Restarts", "string", 0),
                    column("Age", "string", 0),
                    column("IP", "string", 1),
                    column("Node", "string", 1),
                    column("Nominated Node", "string", 1),
                    column("Readiness Gates", "string", 1),
                ],
            )
        }
        Kind::Node => {
            let mut status = match condition(object, "Ready")
                .map(|c| c["status"].as_str().unwrap_or_default())
            {
                Some("True") => "Ready".to_owned(),
                Some(_) => "NotReady".to_owned(),
                None => "Unknown".to_owned(),
            };
            if object["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let internal = object["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("<none>");
            let info = &object["status"]["nodeInfo"];
            (
                vec![
                    name,
                    json!(status),
                    json!("<none>"),
                    json!(created),
                    info["kubeletVersion"].clone(),
                    json!(internal),
                    json!("<none>"),
                    info["osImage"].clone(),
                    info["kernelVersion"].clone(),
                    info["containerRuntimeVersion"].clone(),
                ],
                vec![
                    column("Name", "string", 0),
                    column("Status", "string", 0),
                    column("Roles", "string", 0),
                    column("Age", "string", 0),
                    column("Version", "string", 0),
                    column("Internal-IP", "string", 1),
                    column("External-IP", "string", 1),
                    column("OS-Image", "string", 1),
                    column("Kernel-Version", "string", 1),
                    column("Container-Runtime", "string", 1),
                ],
            )
        }
        Kind::Deployment => {
            let s = &object["status"];
            let containers = object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let names: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let images: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["image"].as_str())
                .collect();
            let selector =
                crate::selector::LabelSelector::from_object(&object["spec"]["selector"]).to_query();
            (
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        int(&s["readyReplicas"]),
                        int(&object["spec"]["replicas"])
                    )),
                    json!(int(&s["updatedReplicas"])),
                    json!(int(&s["availableReplicas"])),
                    json!(created),
                    json!(names.join(",")),
                    json!(images.join(",")),
                    json!(selector),
                ],
                vec![
                    column("Name", "string", 0),
                    column("Ready", "string", 0),
                    column("Up-to-date", "integer", 0),
                    column("Available", "integer", 0),
                    column("Age", "string", 0),
                    column("Containers", "string", 1),
                    column("Images", "string", 1),
                    column("Selector", "string", 1),
                ],
            )
        }
        Kind::ReplicaSet => {
            let s = &object["status"];
            (
                vec![
                    name,
                    json!(int(&object["spec"]["replicas"])),
                    json!(int(&s["replicas"])),
                    json!(int(&s["readyReplicas"])),
                    json!(created),
                ],
                vec![
                    column("Name", "string", 0),
                    column("Desired", "integer", 0),
                    column("Current", "integer", 0),
                    column("Ready", "integer", 0),
                    column("Age", "string", 0),
                ],
            )
        }
        Kind::Event => {
            let io = &object["involvedObject"];
            let target = format!(
                "{}/{}",
                io["kind"].as_str().unwrap_or_default().to_ascii_lowercase(),
                io["name"].as_str().unwrap_or_default()
            );
            let last = if object["lastTimestamp"].is_null() {
                &object["eventTime"]
            } else {
                &object["lastTimestamp"]
            };
            (
                vec![
                    json!(age(now, last)),
                    object["type"].clone(),
                    object["reason"].clone(),
                    json!(target),
                    object["message"].clone(),
                    name,
                ],
                vec![
                    column("Last Seen", "string", 0),
                    column("Type", "string", 0),
                    column("Reason", "string", 0),
                    column("Object", "string", 0),
                    column("Message", "string", 0),
                    column("Name", "string", 1),
                ],
            )
        }
        Kind::PersistentVolumeClaim => {
            let modes = object["spec"]["accessModes"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|x| x.as_str())
                        .map(|x| match x {
                            "ReadWriteOnce" => "RWO",
                            "ReadOnlyMany" => "ROX",
                            "ReadWriteMany" => "RWX",
                            other => other,
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            (
                vec![
                    name,
                    object["status"]["phase"].clone(),
                    object["spec"]["volumeName"].clone(),
                    object["status"]["capacity"]["storage"].clone(),
                    json!(modes),
                    object["spec"]["storageClassName"].clone(),
                    json!("<unset>"),
                    json!(created),
                ],
                vec![
                    column("Name", "string", 0),
                    column("Status", "string", 0),
                    column("Volume", "string", 0),
                    column("Capacity", "string", 0),
                    column("Access Modes", "string", 0),
                    column("StorageClass", "string", 0),
                    column("VolumeAttributesClass", "string", 0),
                    column("Age", "string", 0),
                ],
            )
        }
        Kind::ConfigMap => (
            vec![
                name,
                json!(object["data"].as_object().map_or(0, |d| d.len())),
                json!(created),
            ],
            vec![
                column("Name", "string", 0),
                column("Data", "string", 0),
                column("Age", "string", 0),
            ],
        ),
        Kind::Namespace => (
            vec![name, object["status"]["phase"].clone(), json!(created)],
            vec![
                column("Name", "string", 0),
                column("Status", "string", 0),
                column("Age", "string", 0),
            ],
        ),
    }
}

/// A `meta.k8s.io/v1` Table of `objects`. `include` is the request's
/// `includeObject` (`None`, `Object`, default metadata only).
pub(crate) fn table(
    kind: Kind,
    objects: &[&Value],
    now: DateTime<Utc>,
    include: &str,
    resource_version: u64,
) -> Value {
    let (_, columns) = row(kind, &json!({}), now);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, _) = row(kind, o, now);
            let object = match include {
                "None" => Value::Null,
                "Object" => (*o).clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(5 * 3600), "5h");
        assert_eq!(human_duration(51 * 3600), "2d3h");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn node_status_shows_not_ready_and_cordon() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let (cells, _) = row(Kind::Node, &node, Utc::now());
        assert_eq!(cells[1], "NotReady,SchedulingDisabled");
    }

    #[test]
    fn pod_status_prefers_waiting_reason() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let (cells, _) = row(Kind::Pod, &pod, Utc::now());
        assert_eq!(
            (cells[1].clone(), cells[2].clone(), cells[3].clone()),
            (json!("0/1"), json!("CrashLoopBackOff"), json!("4"))
        );
    }
}
