//! kubectl's deployment rollout check (`DeploymentStatusViewer`), as a pure
//! function of the Deployment's JSON.
//!
//! kube-rs's `is_deployment_completed()` is not used on purpose: it ignores
//! `observedGeneration`, so right after a spec change it reports the *old*
//! rollout as complete.

use crate::json::{get_i64, get_path, get_str};
use serde_json::Value;

/// The `Progressing` condition reason the controller sets when a rollout
/// has not progressed within `progressDeadlineSeconds`.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";

/// Where a deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    /// Complete; the message is kubectl's success line.
    Complete(String),
    /// Still going; the message says what is awaited.
    Waiting(String),
    /// The controller gave up (`ProgressDeadlineExceeded`).
    DeadlineExceeded(String),
}

impl RolloutState {
    /// The message, whatever the state.
    pub fn message(&self) -> &str {
        match self {
            RolloutState::Complete(m)
            | RolloutState::Waiting(m)
            | RolloutState::DeadlineExceeded(m) => m,
        }
    }
}

/// Evaluates a Deployment like `kubectl rollout status`: complete when the
/// controller has observed the latest generation, every desired replica is
/// updated, no old replica remains and every updated replica is available.
pub fn deployment_status(deployment: &Value) -> RolloutState {
    let name = get_str(deployment, "/metadata/name").unwrap_or_default();
    let generation = get_i64(deployment, "/metadata/generation").unwrap_or(0);
    let observed = get_i64(deployment, "/status/observedGeneration").unwrap_or(0);
    if generation > observed {
        return RolloutState::Waiting(
            "Waiting for deployment spec update to be observed...".to_string(),
        );
    }
    let timed_out = get_path(deployment, "/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            get_str(c, "/type") == Some("Progressing")
                && get_str(c, "/reason") == Some(TIMED_OUT_REASON)
        });
    if timed_out {
        return RolloutState::DeadlineExceeded(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    let updated = get_i64(deployment, "/status/updatedReplicas").unwrap_or(0);
    let replicas = get_i64(deployment, "/status/replicas").unwrap_or(0);
    let available = get_i64(deployment, "/status/availableReplicas").unwrap_or(0);
    // kubectl only checks the desired count when spec.replicas is set; the
    // API server always defaults it, so a missing value means "unknown".
    if let Some(desired) = get_i64(deployment, "/spec/replicas")
        && updated < desired
    {
        return RolloutState::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutState::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutState::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutState::Complete(format!("deployment \"{name}\" successfully rolled out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(
        generation: i64,
        observed: i64,
        desired: i64,
        replicas: i64,
        updated: i64,
        available: i64,
    ) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": desired},
            "status": {
                "observedGeneration": observed,
                "replicas": replicas,
                "updatedReplicas": updated,
                "availableReplicas": available,
                "readyReplicas": available,
            },
        })
    }

    #[test]
    fn table_of_kubectl_cases() {
        use RolloutState::*;
        let cases = [
            (
                deploy(1, 1, 1, 1, 0, 1),
                Waiting(
                    "Waiting for deployment \"web\" rollout to finish: 0 out of 1 new replicas have been updated..."
                        .into(),
                ),
            ),
            (
                deploy(1, 1, 1, 2, 1, 1),
                Waiting(
                    "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
                        .into(),
                ),
            ),
            (
                deploy(1, 1, 2, 2, 2, 1),
                Waiting(
                    "Waiting for deployment \"web\" rollout to finish: 1 of 2 updated replicas are available..."
                        .into(),
                ),
            ),
            (
                deploy(1, 1, 2, 2, 2, 2),
                Complete("deployment \"web\" successfully rolled out".into()),
            ),
            (
                deploy(2, 1, 2, 2, 2, 2),
                Waiting("Waiting for deployment spec update to be observed...".into()),
            ),
            (
                deploy(1, 2, 2, 2, 2, 2),
                Complete("deployment \"web\" successfully rolled out".into()),
            ),
        ];
        for (i, (d, want)) in cases.into_iter().enumerate() {
            assert_eq!(deployment_status(&d), want, "case {i}");
        }
    }

    #[test]
    fn stale_generation_is_not_complete_even_if_counts_look_done() {
        // The kube-rs trap: counts of the previous rollout look complete.
        let d = deploy(7, 1, 3, 3, 3, 3);
        assert!(matches!(deployment_status(&d), RolloutState::Waiting(_)));
    }

    #[test]
    fn progress_deadline_exceeded_fails() {
        let mut d = deploy(2, 2, 3, 4, 1, 3);
        d["status"]["conditions"] = json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
        ]);
        assert_eq!(
            deployment_status(&d),
            RolloutState::DeadlineExceeded(
                "deployment \"web\" exceeded its progress deadline".into()
            )
        );
        // Not yet observed: kubectl keeps waiting even with the condition.
        d["metadata"]["generation"] = json!(3);
        assert!(matches!(deployment_status(&d), RolloutState::Waiting(_)));
    }

    #[test]
    fn zero_replicas_is_complete() {
        assert!(matches!(
            deployment_status(&deploy(3, 3, 0, 0, 0, 0)),
            RolloutState::Complete(_)
        ));
    }
}
