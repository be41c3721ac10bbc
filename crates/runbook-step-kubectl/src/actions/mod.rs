//! The actions, one module per family. Each takes a [`Call`] (the cluster,
//! the namespace, the rendered fields and the step context) and returns the
//! step's outputs or a failure that keeps the outputs gathered so far.

pub mod exec;
pub mod read;
pub mod rollout;
pub mod write;

use crate::cluster::Cluster;
use crate::discovery::{ResourceType, Target, parse_target};
use crate::error::KubectlError;
use crate::fields::Fields;
use crate::json::{get_path, label_selector_string};
use kube::api::PatchParams;
use runbook_engine::{Outputs, StepContext};
use serde_json::Value;
use std::sync::Arc;

/// Everything an action needs for one attempt.
pub struct Call<'a> {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The namespace to act in.
    pub namespace: String,
    /// The rendered fields.
    pub fields: Fields,
    /// The step context (progress, output lines, cancellation).
    pub ctx: &'a StepContext,
    /// Send mutations with `dryRun=All`.
    pub dry_run: bool,
}

/// A failed action: the error and the outputs gathered before it.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: KubectlError,
    /// Outputs so far.
    pub outputs: Outputs,
}

impl From<KubectlError> for Failure {
    fn from(error: KubectlError) -> Self {
        Failure {
            error,
            outputs: Outputs::new(),
        }
    }
}

/// What an action returns.
pub type ActionResult = Result<Outputs, Failure>;

/// Evaluates `$attempt` (an expression that reads afresh and writes); on a
/// 409 evaluates it once more, and a second conflict is reported as such.
/// A macro rather than a function taking an async closure, because such
/// closures borrowing the call make the step's future lose `Send`.
macro_rules! retry_on_conflict {
    ($attempt:expr) => {{
        match $attempt {
            Err(e) if $crate::error::KubectlError::is_conflict(&e) => $attempt,
            other => other,
        }
    }};
}
pub(crate) use retry_on_conflict;

impl Call<'_> {
    /// The `resource` field, parsed.
    pub fn target(&self) -> Result<Target, KubectlError> {
        let text = self.fields.resource.as_deref().ok_or_else(|| {
            KubectlError::Invalid(format!(
                "`{}` needs `resource` (such as `deployment/prod-omendb`)",
                self.fields.action.as_str()
            ))
        })?;
        parse_target(text).map_err(KubectlError::Invalid)
    }

    /// The `resource` field as `kind/name`, resolved.
    pub async fn named(&self) -> Result<(ResourceType, String), KubectlError> {
        let target = self.target()?;
        let Some(name) = target.name else {
            return Err(KubectlError::Invalid(format!(
                "`{}` acts on one object: write `resource` as `kind/name` (such as `deployment/{}`), not `{}`",
                self.fields.action.as_str(),
                "prod-omendb",
                target.kind
            )));
        };
        let rt = self.cluster.resolve(&target.kind).await?;
        Ok((rt, name))
    }

    /// The named deployment (rollout actions support deployments only).
    pub async fn deployment(&self) -> Result<(ResourceType, String), KubectlError> {
        let (rt, name) = self.named().await?;
        if rt.group != "apps" || rt.kind != "Deployment" {
            return Err(KubectlError::Invalid(format!(
                "`{}` supports deployments only, not {} (`resource: deployment/NAME`)",
                self.fields.action.as_str(),
                rt.plural
            )));
        }
        Ok((rt, name))
    }

    /// Patch parameters with the dry-run flag and a field manager.
    pub fn patch_params(&self, field_manager: Option<&str>) -> PatchParams {
        PatchParams {
            dry_run: self.dry_run,
            field_manager: field_manager.map(str::to_string),
            ..Default::default()
        }
    }

    /// Pods selected by a workload object's `spec.selector`.
    pub async fn pods_of(&self, owner: &Value, describe: &str) -> Result<Vec<Value>, KubectlError> {
        let selector = get_path(owner, "/spec/selector")
            .and_then(label_selector_string)
            .ok_or_else(|| {
                KubectlError::Invalid(format!(
                    "{describe} has no label selector, so its pods cannot be found"
                ))
            })?;
        let pods = self.cluster.resolve("pods").await?;
        let list = self
            .cluster
            .list(&pods, &self.namespace, Some(&selector), None)
            .await?;
        if list.is_empty() {
            return Err(KubectlError::Refused(format!(
                "no pods found for {describe} (selector {selector}) in namespace \"{}\"",
                self.namespace
            )));
        }
        Ok(list)
    }

    /// Adds `dry_run: true` to `outputs` under a dry run (an extra key; the
    /// declared outputs are all present either way).
    pub fn mark_dry_run(&self, outputs: &mut Outputs) {
        if self.dry_run {
            outputs.insert("dry_run".into(), Value::Bool(true));
        }
    }
}
