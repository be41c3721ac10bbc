//! The `kubectl-action` step: kubectl's operations done directly through the
//! Kubernetes API with kube-rs (no kubectl binary at run time).
//!
//! [`KubectlExecutor`] implements the engine's `StepExecutor` for the
//! `kubectl-action` type. It finds the cluster as kubectl does
//! (`config`), keeps one client per (kubeconfig, context), and runs each
//! action with kubectl's own decision logic, which lives in pure modules
//! (`status`, `history`, `pods`, `previous`, `events`,
//! `quantity`) so it can be table-tested against kubectl's sources.
//!
//! Under `--dry-run` (or `dry_run: true` on the step) mutations are sent
//! with server-side dry run (`dryRun=All`) and succeed with the server's
//! would-be result; `exec` has no dry run and is reported as "would run".

mod actions;
mod cluster;
mod config;
mod discovery;
mod error;
mod events;
mod fields;
mod history;
mod json;
mod pods;
mod previous;
mod quantity;
mod status;

use actions::{ActionResult, Call, Failure};
use async_trait::async_trait;
use cluster::Cluster;
use error::KubectlError;
use fields::Fields;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use runbook_engine::{Outputs, StepContext, StepExecutor, StepFailure, StepOutcome};
use runbook_model::{KubectlAction, Step, StepKind};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Loads the kubeconfig and builds the client of one cluster.
async fn set_up(
    source: config::Source,
    context: Option<String>,
) -> Result<Arc<Cluster>, Arc<KubectlError>> {
    let loaded = config::load(&source, context.as_deref())
        .await
        .map_err(Arc::new)?;
    let namespace = loaded.config.default_namespace.clone();
    let endpoint = loaded.endpoint.clone();
    // A kubeconfig `exec` credential plugin runs while the client is built,
    // and kube waits for it without yielding: on the runtime's thread a
    // plugin waiting for a login would stop timeouts and Ctrl-C from being
    // noticed.
    let client = tokio::task::spawn_blocking(move || kube::Client::try_from(loaded.config))
        .await
        .map_err(|e| KubectlError::Config(format!("cannot create a client for {endpoint}: {e}")))
        .and_then(|built| {
            built.map_err(|e| {
                KubectlError::Config(format!(
                    "cannot create a client for {endpoint}: {}",
                    error::cause_chain(&e)
                ))
            })
        })
        .map_err(Arc::new)?;
    Ok(Arc::new(Cluster::new(client, endpoint, namespace)))
}

/// A cluster's setup, shared by every step that needs it.
type ClusterSetup = Shared<BoxFuture<'static, Result<Arc<Cluster>, Arc<KubectlError>>>>;

/// Runs `kubectl-action` steps. Clients are cached per (kubeconfig,
/// context, the kubeconfig's contents), so a runbook's steps share
/// connections and discovery until a step changes the kubeconfig.
#[derive(Default)]
pub struct KubectlExecutor {
    /// Held only to find a cluster's setup: a cluster being set up must
    /// not hold up steps on other clusters.
    clusters: Mutex<HashMap<(String, String, u64), ClusterSetup>>,
    /// The cluster each step that `rollback: auto` can undo acted on, by
    /// step id: the undo is made there, even if a later step switched the
    /// kubeconfig to another cluster.
    acted_on: std::sync::Mutex<HashMap<String, Arc<Cluster>>>,
}

impl KubectlExecutor {
    /// An executor with an empty client cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster for a step's `kubeconfig` and `context` fields, created
    /// on first use.
    pub async fn cluster(
        &self,
        kubeconfig: Option<&str>,
        context: Option<&str>,
    ) -> Result<Arc<Cluster>, KubectlError> {
        let source = config::choose_source(
            kubeconfig,
            std::env::var_os("KUBECONFIG").as_deref(),
            config::home_dir().as_deref(),
            |p| p.is_file(),
        );
        let key = (
            format!("{source:?}"),
            context.unwrap_or_default().to_string(),
            config::fingerprint(&source),
        );
        // One setup per cluster, in a task of its own: the steps that need
        // it wait for the same one, each as long as its own timeout allows,
        // and one that gives up does not start another (a second credential
        // plugin waiting for the same login).
        let setup = {
            let mut clusters = self.clusters.lock().await;
            clusters
                .entry(key.clone())
                .or_insert_with(|| {
                    let context = context.map(str::to_string);
                    let task = tokio::spawn(set_up(source, context));
                    async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(KubectlError::Config(format!(
                                "setting up the Kubernetes client failed: {e}"
                            ))))
                        })
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        match setup.await {
            Ok(cluster) => Ok(cluster),
            Err(error) => {
                // A setup that failed is forgotten: the next step tries again.
                let mut clusters = self.clusters.lock().await;
                if clusters
                    .get(&key)
                    .is_some_and(|setup| setup.peek().is_some_and(Result::is_err))
                {
                    clusters.remove(&key);
                }
                Err(Arc::try_unwrap(error)
                    .unwrap_or_else(|shared| KubectlError::Config(shared.to_string())))
            }
        }
    }

    /// Renders the step and builds the call; `Err` is the step's outcome.
    /// `cluster`: the one to act on, for a rollback of a step that acted
    /// there; else the step's `kubeconfig` and `context` decide.
    async fn prepare<'a>(
        &self,
        step: &Step,
        ctx: &'a StepContext,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Call<'a>, StepOutcome> {
        let StepKind::KubectlAction(kubectl) = &step.kind else {
            return Err(StepOutcome::Failed(StepFailure::new(format!(
                "step `{}` is a `{}` step, not `kubectl-action`",
                step.id.value,
                step.kind.type_name()
            ))));
        };
        let fields = Fields::render(kubectl, ctx).map_err(StepOutcome::Failed)?;
        if let Some(cluster) = cluster {
            // A rollback: where the step acted, not where the kubeconfig
            // points now.
            return Ok(call_on(cluster, fields, ctx));
        }
        // Setting up a cluster can wait on a kubeconfig's credential plugin
        // (a login in a browser, a hardware key), which cannot be
        // interrupted: the step's timeout and Ctrl-C stop the wait, and the
        // plugin is left to finish on its own.
        tokio::select! {
            biased;
            call = self.call_for(fields, ctx) => call.map_err(|e| failed(e.into(), ctx)),
            () = ctx.cancelled().cancelled() => Err(StepOutcome::Failed(StepFailure::new(
                "stopped while setting up the Kubernetes client (reading the kubeconfig, or waiting for its credential plugin)",
            ))),
        }
    }

    async fn call_for<'a>(
        &self,
        fields: Fields,
        ctx: &'a StepContext,
    ) -> Result<Call<'a>, KubectlError> {
        let cluster = self
            .cluster(fields.kubeconfig.as_deref(), fields.context.as_deref())
            .await?;
        Ok(call_on(cluster, fields, ctx))
    }
}

/// The call of a step's rendered `fields` on `cluster`.
fn call_on(cluster: Arc<Cluster>, fields: Fields, ctx: &StepContext) -> Call<'_> {
    let namespace = fields
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace.clone());
    let dry_run = ctx.dry_run() || fields.dry_run;
    Call {
        cluster,
        namespace,
        fields,
        ctx,
        dry_run,
    }
}

/// Turns an action's failure into the step's outcome (with secrets masked).
fn failed(failure: Failure, ctx: &StepContext) -> StepOutcome {
    StepOutcome::Failed(StepFailure::with_outputs(
        ctx.redact(&failure.error.to_string()),
        failure.outputs,
    ))
}

/// Said of a mutation sent with server-side dry run.
const DRY_RUN_NOTE: &str =
    "sent as a server-side dry run: the API server checked the change and made none";

/// Runs `action` until it ends or the step is cancelled.
async fn until_cancelled(
    call: &Call<'_>,
    action: impl Future<Output = ActionResult>,
) -> StepOutcome {
    let ctx = call.ctx;
    // `biased`: when cancellation fires, the action's own handling (which
    // says what it was waiting for) wins over this generic message, which
    // names the server it was talking to (the engine puts why it stopped,
    // a timeout or an interrupt, in front of it).
    let result = tokio::select! {
        biased;
        r = action => r,
        _ = ctx.cancelled().cancelled() => Err(Failure::from(KubectlError::Refused(format!(
            "cancelled before the Kubernetes API call finished (talking to {})",
            call.cluster.endpoint
        )))),
    };
    match result {
        Ok(outputs) => StepOutcome::Succeeded(outputs),
        Err(failure) => failed(failure, ctx),
    }
}

async fn dispatch(call: &Call<'_>) -> ActionResult {
    match call.fields.action {
        KubectlAction::Get => actions::read::get(call).await,
        KubectlAction::Logs => actions::read::logs(call).await,
        KubectlAction::Events => actions::read::events(call).await,
        KubectlAction::Top => actions::read::top(call).await,
        KubectlAction::Scale => actions::write::scale(call).await,
        KubectlAction::RolloutRestart => actions::rollout::restart(call).await,
        KubectlAction::RolloutStatus => actions::rollout::status(call).await,
        KubectlAction::RolloutHistory => actions::rollout::history(call).await,
        KubectlAction::RolloutUndo => actions::rollout::undo(call).await,
        KubectlAction::Patch => actions::write::patch(call).await,
        KubectlAction::Delete => actions::write::delete(call).await,
        KubectlAction::Exec => actions::exec::exec(call).await,
    }
}

fn would_exec(fields: &Fields) -> String {
    format!(
        "would exec {:?} in {}{} (exec has no server-side dry run)",
        fields.command,
        fields.resource.as_deref().unwrap_or("(no resource)"),
        fields
            .container
            .as_deref()
            .map(|c| format!(" container {c}"))
            .unwrap_or_default()
    )
}

#[async_trait]
impl StepExecutor for KubectlExecutor {
    fn kind(&self) -> &'static str {
        "kubectl-action"
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        // exec cannot be dry-run by the server, so it is not run at all.
        if let StepKind::KubectlAction(kubectl) = &step.kind
            && kubectl.action.value == KubectlAction::Exec
            && ctx.dry_run()
        {
            return match &step.kind {
                StepKind::KubectlAction(k) => match Fields::render(k, ctx) {
                    Ok(fields) => StepOutcome::WouldRun(would_exec(&fields)),
                    Err(f) => StepOutcome::Failed(f),
                },
                _ => StepOutcome::WouldRun("would exec".to_string()),
            };
        }
        let call = match self.prepare(step, ctx, None).await {
            Ok(call) => call,
            Err(outcome) => return outcome,
        };
        if call.fields.action.has_inverse() {
            let mut acted_on = self
                .acted_on
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            acted_on.insert(step.id.value.clone(), call.cluster.clone());
        }
        if call.fields.action == KubectlAction::Exec && call.dry_run {
            return StepOutcome::WouldRun(would_exec(&call.fields));
        }
        if call.fields.action == KubectlAction::RolloutStatus && call.dry_run {
            let mut would_wait = None;
            let outcome = until_cancelled(&call, async {
                match actions::rollout::status_now(&call).await {
                    Ok(Ok(outputs)) => Ok(outputs),
                    Ok(Err(message)) => {
                        would_wait = Some(message);
                        Ok(Outputs::new())
                    }
                    Err(failure) => Err(failure),
                }
            })
            .await;
            return match would_wait {
                Some(message) => StepOutcome::WouldRun(message),
                None => outcome,
            };
        }
        let mut outcome = until_cancelled(&call, dispatch(&call)).await;
        if let StepOutcome::Succeeded(outputs) = &mut outcome
            && call.fields.action.has_inverse()
        {
            // Where the change was made, for its `rollback: auto` after a
            // resume, when the kubeconfig may point elsewhere.
            outputs.insert(
                "server".into(),
                Value::String(call.cluster.endpoint.server.clone()),
            );
        }
        if call.dry_run
            && call.fields.action.is_mutating()
            && matches!(outcome, StepOutcome::Succeeded(_))
        {
            // Its ✓ would otherwise read as a change made.
            ctx.progress(DRY_RUN_NOTE);
        }
        outcome
    }

    async fn rollback_auto(
        &self,
        step: &Step,
        outputs: &Outputs,
        ctx: &StepContext,
    ) -> StepOutcome {
        let acted_on = self
            .acted_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&step.id.value)
            .cloned();
        let call = match self.prepare(step, ctx, acted_on).await {
            Ok(call) => call,
            Err(outcome) => return outcome,
        };
        // After a resume this engine never saw where the step acted: its
        // `server` output says, and a kubeconfig that now points elsewhere
        // must not get the undo.
        if let Some(server) = outputs.get("server").and_then(Value::as_str)
            && server != call.cluster.endpoint.server
        {
            return StepOutcome::Failed(StepFailure::new(format!(
                "not undone: step `{}` changed the cluster at {server}, and its kubeconfig now points at {}; undo it there by hand",
                step.id.value, call.cluster.endpoint
            )));
        }
        if call.dry_run {
            ctx.progress(DRY_RUN_NOTE);
        }
        let missing = |name: &str| {
            StepOutcome::Failed(StepFailure::new(format!(
                "cannot roll back step `{}`: its outputs have no usable `{name}`",
                step.id.value
            )))
        };
        match call.fields.action {
            KubectlAction::Scale => {
                let Some(previous) = outputs.get("previous_replicas").and_then(Value::as_i64)
                else {
                    return missing("previous_replicas");
                };
                until_cancelled(&call, actions::write::scale_to(&call, previous)).await
            }
            KubectlAction::Patch => {
                let Some(previous) = outputs.get("previous").filter(|v| !v.is_null()) else {
                    return missing("previous");
                };
                until_cancelled(&call, actions::write::restore_previous(&call, previous)).await
            }
            KubectlAction::RolloutRestart => {
                let Some(revision) = outputs.get("previous_revision").and_then(Value::as_i64)
                else {
                    return missing("previous_revision");
                };
                let to = actions::rollout::UndoTo::TemplateOf(revision);
                until_cancelled(&call, actions::rollout::undo_to(&call, to)).await
            }
            other => StepOutcome::Failed(StepFailure::new(format!(
                "step `{}`: `{}` has no automatic rollback",
                step.id.value,
                other.as_str()
            ))),
        }
    }
}
