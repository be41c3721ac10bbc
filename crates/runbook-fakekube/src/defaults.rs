//! API defaulting and the validation subset the fake enforces, so stored
//! objects look like a real apiserver's and obviously bad writes get the
//! same 422 a real one would give.

use crate::error::ApiError;
use crate::quantity::{parse_quantity, quantity_of};
use crate::resources::{Kind, ResourceType};
use crate::selector::LabelSelector;
use crate::store::name_of;
use serde_json::{Value, json};

fn set_default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut()
        && map.get(key).is_none_or(Value::is_null)
    {
        map.insert(key.to_owned(), value);
    }
}

/// Fills in the defaults the apiserver adds on every write.
pub(crate) fn apply(kind: Kind, object: &mut Value) {
    match kind {
        Kind::Deployment => {
            let spec = &mut object["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(spec, "strategy", json!({"type": "RollingUpdate"}));
            let strategy = &mut spec["strategy"];
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                set_default(strategy, "rollingUpdate", json!({}));
                set_default(&mut strategy["rollingUpdate"], "maxSurge", json!("25%"));
                set_default(
                    &mut strategy["rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
            }
            pod_spec(&mut spec["template"]["spec"]);
        }
        Kind::ReplicaSet => {
            set_default(&mut object["spec"], "replicas", json!(1));
            pod_spec(&mut object["spec"]["template"]["spec"]);
        }
        Kind::Pod => pod_spec(&mut object["spec"]),
        Kind::PersistentVolumeClaim => {
            set_default(&mut object["spec"], "volumeMode", json!("Filesystem"));
            set_default(&mut object["spec"], "accessModes", json!(["ReadWriteOnce"]));
        }
        Kind::Namespace => {
            set_default(object, "spec", json!({"finalizers": ["kubernetes"]}));
            set_default(object, "status", json!({"phase": "Active"}));
            let name = name_of(object).to_owned();
            let labels = &mut object["metadata"]["labels"];
            if labels.is_null() {
                *labels = json!({});
            }
            set_default(labels, "kubernetes.io/metadata.name", json!(name));
        }
        Kind::Node | Kind::ConfigMap | Kind::Event => {}
    }
}

fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    if let Some(containers) = spec["containers"].as_array_mut() {
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default().to_owned();
            let tag = image.rsplit('/').next().unwrap_or_default();
            let policy = if !tag.contains(':') || tag.ends_with(":latest") {
                "Always"
            } else {
                "IfNotPresent"
            };
            set_default(c, "imagePullPolicy", json!(policy));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            if let Some(ports) = c["ports"].as_array_mut() {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                let p = &mut c[probe];
                if p.is_object() {
                    set_default(p, "timeoutSeconds", json!(1));
                    set_default(p, "periodSeconds", json!(10));
                    set_default(p, "successThreshold", json!(1));
                    set_default(p, "failureThreshold", json!(3));
                    if p["httpGet"].is_object() {
                        set_default(&mut p["httpGet"], "scheme", json!("HTTP"));
                    }
                } else if let Some(m) = c.as_object_mut() {
                    m.remove(probe);
                }
            }
        }
    }
}

/// Checks a create (`previous == None`) or update of `object`.
pub(crate) fn validate(
    rt: &ResourceType,
    previous: Option<&Value>,
    object: &Value,
) -> Result<(), ApiError> {
    let mut causes: Vec<(String, String)> = Vec::new();
    match rt.kind {
        Kind::Deployment | Kind::ReplicaSet => {
            let spec = &object["spec"];
            match spec["replicas"].as_i64() {
                Some(n) if n < 0 => causes.push((
                    "spec.replicas".into(),
                    format!("Invalid value: {n}: must be greater than or equal to 0"),
                )),
                Some(_) => {}
                None => causes.push((
                    "spec.replicas".into(),
                    format!("Invalid value: {}: must be an integer", spec["replicas"]),
                )),
            }
            let selector = &spec["selector"];
            if !selector.is_object() {
                causes.push(("spec.selector".into(), "Required value".into()));
            } else {
                let template =
                    json!({"metadata": {"labels": spec["template"]["metadata"]["labels"]}});
                if !LabelSelector::from_object(selector).matches_object(&template) {
                    causes.push((
                        "spec.template.metadata.labels".into(),
                        "Invalid value: `selector` does not match template `labels`".into(),
                    ));
                }
                if let Some(prev) = previous
                    && prev["spec"]["selector"] != *selector
                {
                    causes.push((
                        "spec.selector".into(),
                        "Invalid value: field is immutable".into(),
                    ));
                }
            }
            containers(&spec["template"]["spec"], "spec.template.spec", &mut causes);
        }
        Kind::Pod => {
            if previous.is_none() {
                containers(&object["spec"], "spec", &mut causes);
            }
        }
        Kind::PersistentVolumeClaim => {
            let field = "spec.resources.requests[storage]";
            let storage = &object["spec"]["resources"]["requests"]["storage"];
            match quantity_of(storage) {
                None => causes.push((field.into(), "Required value".into())),
                Some(new) => {
                    if let Some(prev) = previous
                        .and_then(|p| quantity_of(&p["spec"]["resources"]["requests"]["storage"]))
                        && new < prev
                    {
                        causes.push((
                            "spec.resources.requests.storage".into(),
                            "Forbidden: field can not be less than previous value".into(),
                        ));
                    }
                }
            }
        }
        Kind::Namespace | Kind::Node | Kind::ConfigMap | Kind::Event => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name_of(object), &causes))
    }
}

const QUANTITY_HELP: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn containers(pod_spec: &Value, path: &str, causes: &mut Vec<(String, String)>) {
    let Some(list) = pod_spec["containers"].as_array().filter(|l| !l.is_empty()) else {
        causes.push((format!("{path}.containers"), "Required value".into()));
        return;
    };
    for (i, c) in list.iter().enumerate() {
        let at = format!("{path}.containers[{i}]");
        if c["name"].as_str().is_none_or(str::is_empty) {
            causes.push((format!("{at}.name"), "Required value".into()));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push((format!("{at}.image"), "Required value".into()));
        }
        for resource in ["cpu", "memory"] {
            let limit = &c["resources"]["limits"][resource];
            let request = &c["resources"]["requests"][resource];
            for (which, q) in [("limits", limit), ("requests", request)] {
                if let Some(text) = q.as_str()
                    && parse_quantity(text).is_none()
                {
                    causes.push((
                        format!("{at}.resources.{which}[{resource}]"),
                        format!("Invalid value: \"{text}\": {QUANTITY_HELP}"),
                    ));
                }
            }
            if let (Some(l), Some(r)) = (quantity_of(limit), quantity_of(request))
                && r > l
            {
                causes.push((
                    format!("{at}.resources.requests"),
                    format!("Invalid value: \"{}\": must be less than or equal to {resource} limit of {}",
                        request.as_str().unwrap_or_default(), limit.as_str().unwrap_or_default()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn deployment_defaults_match_the_apiserver() {
        let mut d = deployment();
        apply(Kind::Deployment, &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let once = d.clone();
        apply(Kind::Deployment, &mut d);
        assert_eq!(d, once, "defaulting is idempotent");
    }

    #[test]
    fn validation_rejects_bad_writes() {
        let rt = Kind::Deployment.info();
        let mut d = deployment();
        apply(Kind::Deployment, &mut d);
        assert!(validate(rt, None, &d).is_ok());
        let mut negative = d.clone();
        negative["spec"]["replicas"] = json!(-1);
        let err = validate(rt, None, &negative).expect_err("negative replicas");
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("Deployment.apps \"web\" is invalid: spec.replicas"),
            "{}",
            err.message
        );
        let mut moved = d.clone();
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        moved["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        assert!(
            validate(rt, Some(&d), &moved)
                .expect_err("immutable")
                .message
                .contains("immutable")
        );
        let mut limits = d.clone();
        limits["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}});
        assert!(validate(rt, None, &limits).is_err());
        let mut garbage = d;
        garbage["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"memory": "lots"}});
        assert!(validate(rt, None, &garbage).is_err());
    }

    #[test]
    fn pvc_cannot_shrink() {
        let rt = Kind::PersistentVolumeClaim.info();
        let old = json!({"metadata": {"name": "d"}, "spec": {"resources": {"requests": {"storage": "100Gi"}}}});
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("50Gi");
        assert!(validate(rt, Some(&old), &new).is_err());
        new["spec"]["resources"]["requests"]["storage"] = json!("200Gi");
        assert!(validate(rt, Some(&old), &new).is_ok());
    }
}
