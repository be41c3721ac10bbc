//! `scale`, `patch` and `delete`, and the inverses `rollback: auto` runs for
//! `scale` and `patch`.

use super::{ActionResult, Call, Failure, retry_on_conflict};
use crate::error::KubectlError;
use crate::json::get_i64;
use crate::previous;
use kube::api::Patch;
use runbook_engine::Outputs;
use runbook_model::PatchType;
use serde_json::{Value, json};

/// kubectl's field manager for `patch`.
const PATCH_FIELD_MANAGER: &str = "kubectl-patch";

/// `scale`: records the current replicas, then merge-patches `/scale`.
pub async fn scale(call: &Call<'_>) -> ActionResult {
    let replicas = call
        .fields
        .replicas
        .ok_or_else(|| KubectlError::Invalid("`scale` needs `replicas`".to_string()))?;
    scale_to(call, replicas).await
}

/// Scales the named object to `replicas`.
pub async fn scale_to(call: &Call<'_>, replicas: i64) -> ActionResult {
    if replicas < 0 {
        return Err(
            KubectlError::Invalid(format!("`replicas` must be 0 or more, not {replicas}")).into(),
        );
    }
    let (rt, name) = call.named().await?;
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = call.patch_params(None);
    let mut previous = Value::Null;
    let scaled = retry_on_conflict!(
        async {
            let current = call.cluster.get(&rt, &call.namespace, &name).await?;
            // The API server defaults spec.replicas to 1 for workloads.
            previous = Value::from(get_i64(&current, "/spec/replicas").unwrap_or(1));
            call.cluster
                .patch(&rt, &call.namespace, &name, Some("scale"), &patch, &params)
                .await
        }
        .await
    )?;
    let mut out = Outputs::new();
    out.insert("previous_replicas".into(), previous);
    out.insert(
        "replicas".into(),
        Value::from(get_i64(&scaled, "/spec/replicas").unwrap_or(replicas)),
    );
    call.mark_dry_run(&mut out);
    Ok(out)
}

/// `patch`: records `previous` (the old values of exactly what the patch
/// touches), then patches with the chosen type.
pub async fn patch(call: &Call<'_>) -> ActionResult {
    let document = call
        .fields
        .patch
        .clone()
        .ok_or_else(|| KubectlError::Invalid("`patch` needs a `patch` document".to_string()))?;
    apply_patch(call, call.fields.patch_type, document, true).await
}

/// Patches the named object; with `record`, computes `previous` from a fresh
/// read first (the rollback's own patch does not need one).
async fn apply_patch(
    call: &Call<'_>,
    patch_type: PatchType,
    document: Value,
    record: bool,
) -> ActionResult {
    let (rt, name) = call.named().await?;
    let kube_patch = match patch_type {
        PatchType::Strategic => Patch::Strategic(document.clone()),
        PatchType::Merge => Patch::Merge(document.clone()),
        PatchType::Json => Patch::Json(
            serde_json::from_value::<json_patch::Patch>(document.clone()).map_err(|e| {
                KubectlError::Invalid(format!(
                    "`patch_type: json` needs a list of RFC 6902 operations: {e}"
                ))
            })?,
        ),
    };
    if matches!(patch_type, PatchType::Strategic | PatchType::Merge) && !document.is_object() {
        return Err(KubectlError::Invalid(
            "a strategic or merge `patch` must be a map (for a list of operations use `patch_type: json`)"
                .to_string(),
        )
        .into());
    }
    let params = call.patch_params(Some(PATCH_FIELD_MANAGER));
    let mut previous = Value::Null;
    let object = retry_on_conflict!(
        async {
            if record {
                let current = call.cluster.get(&rt, &call.namespace, &name).await?;
                previous = match patch_type {
                    PatchType::Json => previous::previous_for_json(&document, &current),
                    PatchType::Strategic => previous::previous_for_merge(&document, &current, true),
                    PatchType::Merge => previous::previous_for_merge(&document, &current, false),
                }
                .map_err(|e| {
                    KubectlError::Invalid(format!(
                        "the patch does not apply to {} \"{name}\": {e}",
                        rt.noun()
                    ))
                })?;
            }
            call.cluster
                .patch(&rt, &call.namespace, &name, None, &kube_patch, &params)
                .await
        }
        .await
    )?;
    let mut out = Outputs::new();
    out.insert("object".into(), object);
    out.insert("previous".into(), previous);
    call.mark_dry_run(&mut out);
    Ok(out)
}

/// The inverse of a `patch` step: applies its recorded `previous` with the
/// same patch type.
pub async fn restore_previous(call: &Call<'_>, previous: &Value) -> ActionResult {
    let nothing = match previous {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    };
    if nothing {
        return Err(Failure::from(KubectlError::Refused(
            "nothing to restore: the patch step recorded no `previous` values".to_string(),
        )));
    }
    let whole = apply_patch(call, call.fields.patch_type, previous.clone(), false).await;
    match (&whole, call.fields.patch_type, previous.as_array()) {
        // A JSON patch applies all or nothing: one operation whose path
        // something else removed meanwhile (an undone rollout replaces the
        // annotations) would keep every other field from being restored.
        // Then each operation is applied on its own, and a `remove` of
        // what is already gone counts as done.
        (
            Err(Failure {
                error: KubectlError::Api { code: 422, .. },
                ..
            }),
            PatchType::Json,
            Some(ops),
        ) if ops.len() > 1 => restore_op_by_op(call, ops).await,
        _ => whole,
    }
}

async fn restore_op_by_op(call: &Call<'_>, ops: &[Value]) -> ActionResult {
    let mut last = None;
    let mut gone = Vec::new();
    let mut failed = Vec::new();
    for op in ops {
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        match apply_patch(call, PatchType::Json, Value::Array(vec![op.clone()]), false).await {
            Ok(out) => last = Some(out),
            Err(Failure {
                error: KubectlError::Api { code: 422, .. },
                ..
            }) if op.get("op").and_then(Value::as_str) == Some("remove") => {
                gone.push(path.to_string());
            }
            Err(failure) => failed.push(format!("{path}: {}", failure.error)),
        }
    }
    if !failed.is_empty() {
        return Err(KubectlError::Refused(format!(
            "restored the patched fields one by one; these could not be restored: {}",
            failed.join("; ")
        ))
        .into());
    }
    let mut out = last.unwrap_or_default();
    if !gone.is_empty() {
        out.insert("already_gone".into(), Value::from(gone));
    }
    Ok(out)
}

/// `delete`: deletes the named object (background propagation). A missing
/// object is a failure, as in kubectl without `--ignore-not-found`.
pub async fn delete(call: &Call<'_>) -> ActionResult {
    let (rt, name) = call.named().await?;
    call.cluster
        .delete(&rt, &call.namespace, &name, call.dry_run)
        .await?;
    let mut out = Outputs::new();
    out.insert("deleted".into(), Value::Bool(true));
    call.mark_dry_run(&mut out);
    Ok(out)
}
