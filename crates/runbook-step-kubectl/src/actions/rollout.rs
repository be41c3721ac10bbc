//! `rollout-restart`, `rollout-status`, `rollout-history`, `rollout-undo`,
//! for Deployments, with kubectl's semantics (see `status.rs` and
//! `history.rs` for the decisions themselves).

use super::{ActionResult, Call, Failure, retry_on_conflict};
use crate::discovery::ResourceType;
use crate::error::KubectlError;
use crate::history::{self, revision_of};
use crate::json::{get_bool, get_i64, get_path, label_selector_string};
use crate::status::{RolloutState, deployment_status};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use kube::api::Patch;
use kube::runtime::{WatchStreamExt, watcher};
use runbook_engine::Outputs;
use serde_json::{Value, json};

/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// kubectl's field manager for `rollout restart`.
const ROLLOUT_FIELD_MANAGER: &str = "kubectl-rollout";

fn paused_error(name: &str, what: &str) -> KubectlError {
    KubectlError::Refused(format!(
        "deployment \"{name}\" is paused: {what}; resume it first with \
         `kubectl rollout resume deployment/{name}` and try again"
    ))
}

/// `rollout-restart`: sets `restartedAt` on the pod template with a
/// strategic-merge patch, as kubectl (not kube-rs's `restart()`, which uses
/// another annotation and a merge patch).
pub async fn restart(call: &Call<'_>) -> ActionResult {
    let (rt, name) = call.named().await?;
    // Deployments only, as `validate` says of a literal resource: its
    // rollback (an undo to `previous_revision`) and the other rollout
    // actions read a deployment's ReplicaSets, which a statefulset or a
    // daemonset does not have.
    if !(rt.group == "apps" && rt.kind == "Deployment") {
        return Err(KubectlError::Invalid(format!(
            "action `rollout-restart` works on deployments, found `{}`",
            rt.plural
        ))
        .into());
    }
    let restarted_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: restarted_at,
    }}}}});
    let params = call.patch_params(Some(ROLLOUT_FIELD_MANAGER));
    let mut previous_revision = Value::Null;
    retry_on_conflict!(
        async {
            let current = call.cluster.get(&rt, &call.namespace, &name).await?;
            if get_bool(&current, "/spec/paused") {
                return Err(paused_error(
                    &name,
                    "a paused deployment cannot be restarted",
                ));
            }
            previous_revision = revision_of(&current).map_or(Value::Null, Value::from);
            call.cluster
                .patch(
                    &rt,
                    &call.namespace,
                    &name,
                    None,
                    &Patch::Strategic(patch.clone()),
                    &params,
                )
                .await
        }
        .await
    )?;
    let mut out = Outputs::new();
    out.insert("restarted_at".into(), Value::String(restarted_at));
    out.insert("previous_revision".into(), previous_revision);
    call.mark_dry_run(&mut out);
    Ok(out)
}

fn status_outputs(deployment: &Value) -> Outputs {
    let mut out = Outputs::new();
    out.insert(
        "ready_replicas".into(),
        json!(get_i64(deployment, "/status/readyReplicas").unwrap_or(0)),
    );
    out.insert(
        "updated_replicas".into(),
        json!(get_i64(deployment, "/status/updatedReplicas").unwrap_or(0)),
    );
    out.insert(
        "revision".into(),
        revision_of(deployment).map_or(Value::Null, Value::from),
    );
    out
}

/// `rollout-status`: waits, with a watch, until the rollout completes, the
/// controller reports `ProgressDeadlineExceeded`, or the step is cancelled
/// (its timeout).
pub async fn status(call: &Call<'_>) -> ActionResult {
    let (rt, name) = call.deployment().await?;
    let current = call.cluster.get(&rt, &call.namespace, &name).await?;
    let mut last = String::new();
    if let Some(done) = judge(call, &current, &mut last) {
        return done;
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(call.cluster.api(&rt, &call.namespace), config)
        .default_backoff()
        .boxed();
    let mut latest = current;
    // Why the watch, and a fresh read after it, have been failing since the
    // last status seen, if they have: a wait that ends while the API server
    // is unreachable says so, not only the rollout's last status.
    let mut trouble: Option<String> = None;
    loop {
        let event = tokio::select! {
            // The step's timeout or the run's interruption: the engine
            // puts which one in front of this message.
            _ = call.ctx.cancelled().cancelled() => {
                let trouble = trouble.map_or_else(String::new, |why| {
                    format!(
                        "; after it, the watch and fresh reads of the deployment were failing ({why}; {})",
                        call.cluster.endpoint
                    )
                });
                return Err(Failure {
                    error: KubectlError::Refused(format!(
                        "stopped waiting for deployment \"{name}\" to roll out; last status: {last}{trouble}"
                    )),
                    outputs: status_outputs(&latest),
                });
            }
            event = stream.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj))) => {
                trouble = None;
                latest = crate::cluster::to_json(&obj, &rt);
                if let Some(done) = judge(call, &latest, &mut last) {
                    return done;
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                return Err(Failure {
                    error: KubectlError::Refused(format!(
                        "deployment \"{name}\" was deleted while waiting for its rollout"
                    )),
                    outputs: status_outputs(&latest),
                });
            }
            Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
            Some(Err(error)) => match fatal_watch_error(call, &rt, &name, error) {
                // The watch retries from where it was, and may never see a
                // rollout that completes meanwhile (a proxy that refuses
                // watches): read the deployment afresh, as kubectl relists.
                Ok(why) => match call.cluster.get(&rt, &call.namespace, &name).await {
                    Ok(fresh) => {
                        trouble = None;
                        latest = fresh;
                        if let Some(done) = judge(call, &latest, &mut last) {
                            return done;
                        }
                    }
                    Err(_) => trouble = Some(why),
                },
                Err(fatal) => {
                    return Err(Failure {
                        error: fatal,
                        outputs: status_outputs(&latest),
                    });
                }
            },
            None => {
                return Err(Failure {
                    error: KubectlError::Refused(format!(
                        "the watch on deployment \"{name}\" ended unexpectedly"
                    )),
                    outputs: status_outputs(&latest),
                });
            }
        }
    }
}

/// `rollout-status` under `--dry-run`: the status as it is now, without
/// waiting. `Ok(Err(message))` when the rollout is not complete: the
/// changes a real run would have made before this wait were only dry-run
/// by the server, so waiting would watch for a rollout that never starts
/// and end in a failure the real run would not have.
pub async fn status_now(call: &Call<'_>) -> Result<Result<Outputs, String>, Failure> {
    let (rt, name) = call.deployment().await?;
    let current = call.cluster.get(&rt, &call.namespace, &name).await?;
    match deployment_status(&current) {
        RolloutState::Complete(_) => {
            let mut out = status_outputs(&current);
            call.mark_dry_run(&mut out);
            Ok(Ok(out))
        }
        state => Ok(Err(format!(
            "would wait for deployment \"{name}\" to roll out; now: {}",
            state.message()
        ))),
    }
}

/// Applies kubectl's status check; `Some` when the wait is over.
fn judge(call: &Call<'_>, deployment: &Value, last: &mut String) -> Option<ActionResult> {
    let state = deployment_status(deployment);
    if state.message() != last {
        call.ctx.progress(state.message());
        *last = state.message().to_string();
    }
    match state {
        RolloutState::Complete(_) => Some(Ok(status_outputs(deployment))),
        RolloutState::DeadlineExceeded(message) => Some(Err(Failure {
            error: KubectlError::Refused(message),
            outputs: status_outputs(deployment),
        })),
        RolloutState::Waiting(_) => None,
    }
}

/// Watch errors that retrying cannot fix (RBAC, a vanished resource type);
/// others are reported as progress and retried with backoff.
/// A watch error that ends the wait (`Err`), or one the watch retries
/// (`Ok`, what went wrong).
fn fatal_watch_error(
    call: &Call<'_>,
    rt: &ResourceType,
    name: &str,
    error: watcher::Error,
) -> Result<String, KubectlError> {
    let (verb, inner) = match error {
        watcher::Error::InitialListFailed(e) => ("list", e),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => ("watch", e),
        other => {
            let why = other.to_string();
            call.ctx
                .progress(&format!("watch interrupted, retrying: {why}"));
            return Ok(why);
        }
    };
    let code = match &inner {
        kube::Error::Api(s) => s.code,
        _ => 0,
    };
    if matches!(code, 401 | 403 | 404) {
        let op = call.cluster.op(verb, rt, &call.namespace, None, None);
        let mut e = call.cluster.error(inner, &op);
        if code == 404 {
            e = KubectlError::Refused(format!("cannot watch deployment \"{name}\": {e}"));
        }
        return Err(e);
    }
    let why = crate::error::cause_chain(&inner);
    call.ctx
        .progress(&format!("watch interrupted, retrying: {why}"));
    Ok(why)
}

/// The deployment and its controlled ReplicaSets.
async fn deployment_and_sets(
    call: &Call<'_>,
    rt: &ResourceType,
    name: &str,
) -> Result<(Value, Vec<Value>), KubectlError> {
    let deployment = call.cluster.get(rt, &call.namespace, name).await?;
    let selector = get_path(&deployment, "/spec/selector")
        .and_then(label_selector_string)
        .ok_or_else(|| {
            KubectlError::Refused(format!("deployment \"{name}\" has an empty selector"))
        })?;
    let rs_rt = call.cluster.resolve("replicasets.apps").await?;
    let all = call
        .cluster
        .list(&rs_rt, &call.namespace, Some(&selector), None)
        .await?;
    let owned = history::controlled_by(&deployment, &all)
        .into_iter()
        .cloned()
        .collect();
    Ok((deployment, owned))
}

/// `rollout-history`: the revisions, ascending, and the current one.
pub async fn history(call: &Call<'_>) -> ActionResult {
    let (rt, name) = call.deployment().await?;
    let (deployment, sets) = deployment_and_sets(call, &rt, &name).await?;
    let refs: Vec<&Value> = sets.iter().collect();
    let revisions = history::revisions(&refs);
    let current = revision_of(&deployment).or_else(|| revisions.last().map(|r| r.revision));
    let mut out = Outputs::new();
    out.insert(
        "revisions".into(),
        Value::Array(
            revisions
                .iter()
                .map(|r| json!({"revision": r.revision, "change_cause": r.change_cause}))
                .collect(),
        ),
    );
    out.insert(
        "current_revision".into(),
        current.map_or(Value::Null, Value::from),
    );
    // The revision a plain `rollout undo` would go back to now. Runbooks
    // capture it before they change anything: after a restart, "the
    // previous revision" is the broken one that was running before it.
    let previous = current.and_then(|c| {
        revisions
            .iter()
            .map(|r| r.revision)
            .filter(|r| *r < c)
            .max()
    });
    out.insert(
        "previous_revision".into(),
        previous.map_or(Value::Null, Value::from),
    );
    Ok(out)
}

/// `rollout-undo`: restores `to_revision` (default: the previous one).
pub async fn undo(call: &Call<'_>) -> ActionResult {
    undo_to(call, UndoTo::Revision(call.fields.to_revision)).await
}

/// What an undo goes back to.
#[derive(Clone, Copy, Debug)]
pub enum UndoTo {
    /// `rollout-undo`'s `to_revision` as kubectl takes it: a revision the
    /// deployment has now, or (`None`) the previous one.
    Revision(Option<i64>),
    /// The template that was revision N when it was recorded, whatever
    /// number a rollback since has given it (a `rollout-restart`'s
    /// automatic rollback, recorded before a later `rollout-undo`).
    TemplateOf(i64),
}

/// Rolls the named deployment back to `to` (or the previous one),
/// as kubectl's `DeploymentRollbacker`: find the revision, refuse a paused
/// deployment, skip when the template already matches, else JSON-patch the
/// template and annotations.
pub async fn undo_to(call: &Call<'_>, to: UndoTo) -> ActionResult {
    let (rt, name) = call.deployment().await?;
    let mut out = Outputs::new();
    retry_on_conflict!(
        async {
            let (deployment, sets) = deployment_and_sets(call, &rt, &name).await?;
            let refs: Vec<&Value> = sets.iter().collect();
            let to_revision = match to {
                UndoTo::Revision(revision) => revision,
                UndoTo::TemplateOf(old) => Some(history::revision_now(&refs, old).unwrap_or(old)),
            };
            let target = history::undo_target(&name, &refs, to_revision)
                .map_err(|e| KubectlError::Refused(e.to_string()))?;
            let target_revision = revision_of(target);
            out.insert(
                "from_revision".into(),
                revision_of(&deployment).map_or(Value::Null, Value::from),
            );
            out.insert(
                "to_revision".into(),
                target_revision.map_or(Value::Null, Value::from),
            );
            if get_bool(&deployment, "/spec/paused") {
                return Err(paused_error(
                    &name,
                    "a paused deployment cannot be rolled back",
                ));
            }
            let current_template = get_path(&deployment, "/spec/template")
                .cloned()
                .unwrap_or(Value::Null);
            let target_template = get_path(target, "/spec/template")
                .cloned()
                .unwrap_or(Value::Null);
            if history::equal_ignore_hash(&current_template, &target_template) {
                call.ctx.progress(&format!(
                    "skipped rollback (current template already matches revision {})",
                    target_revision.unwrap_or_default()
                ));
                out.insert("skipped".into(), Value::Bool(true));
                return Ok::<(), KubectlError>(());
            }
            let patch: json_patch::Patch =
                serde_json::from_value(history::undo_patch(&deployment, target)).map_err(|e| {
                    KubectlError::Refused(format!("cannot build the undo patch: {e}"))
                })?;
            call.cluster
                .patch(
                    &rt,
                    &call.namespace,
                    &name,
                    None,
                    &Patch::Json(patch),
                    &call.patch_params(None),
                )
                .await?;
            Ok::<(), KubectlError>(())
        }
        .await
    )
    .map_err(|error| Failure {
        error,
        outputs: out.clone(),
    })?;
    call.mark_dry_run(&mut out);
    Ok(out)
}
