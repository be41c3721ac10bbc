//! Errors of the `kubectl-action` step, worded for the SRE who has to act on
//! them: which server and context, which verb on which resource in which
//! namespace, and for a 403 the RBAC rule that would allow the call.

use std::fmt;

/// The cluster a call went to, named in every API error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The API server URL.
    pub server: String,
    /// The kubeconfig context (`in-cluster` for the pod's service account).
    pub context: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "context \"{}\", server {}", self.context, self.server)
    }
}

/// One API call, described enough to name it and the permission it needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiOp {
    /// RBAC verb: get, list, watch, patch, update, delete, create.
    pub verb: &'static str,
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource (`deployments`).
    pub resource: String,
    /// Subresource (`scale`, `log`, `exec`).
    pub subresource: Option<&'static str>,
    /// Singular noun for messages (`deployment`).
    pub noun: String,
    /// Namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// Object name, for calls on one object.
    pub name: Option<String>,
}

impl ApiOp {
    /// `deployments/scale`, as written in an RBAC rule.
    pub fn rbac_resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// The RBAC rule that allows this call, in Role YAML flow style.
    pub fn rbac_rule(&self) -> String {
        format!(
            "apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [\"{}\"]",
            self.group,
            self.rbac_resource(),
            self.verb
        )
    }

    /// `deployment "x"`, `deployments/scale "x"` or `pods`.
    fn object(&self) -> String {
        match (&self.name, self.subresource) {
            (Some(name), None) => format!("{} \"{name}\"", self.noun),
            (Some(name), Some(_)) => format!("{} \"{name}\"", self.rbac_resource()),
            (None, _) => self.rbac_resource(),
        }
    }

    fn where_(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(" in namespace \"{ns}\""),
            None => String::new(),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubectlError {
    /// No usable cluster configuration (kubeconfig unreadable, context missing).
    #[error("{0}")]
    Config(String),
    /// The API server could not be reached.
    #[error("cannot reach the Kubernetes API server {} (context \"{}\"): {cause}", endpoint.server, endpoint.context)]
    Unreachable {
        /// Where.
        endpoint: Endpoint,
        /// The underlying cause, innermost last.
        cause: String,
    },
    /// 401: the credentials were rejected.
    #[error(
        "the Kubernetes API server {} rejected the credentials of context \"{}\" (401 Unauthorized: {message}); \
         check that context's user in the kubeconfig (expired token? wrong certificate?)",
        endpoint.server, endpoint.context
    )]
    Unauthorized {
        /// Where.
        endpoint: Endpoint,
        /// The server's message.
        message: String,
    },
    /// 403: RBAC denied the call.
    #[error(
        "forbidden: not allowed to {} {}{} ({endpoint}): {message}. \
         A {} rule that allows it: {}",
        op.verb, op.object(), op.where_(),
        if op.namespace.is_some() { "Role" } else { "ClusterRole" }, op.rbac_rule()
    )]
    Forbidden {
        /// Where.
        endpoint: Endpoint,
        /// The denied call.
        op: Box<ApiOp>,
        /// The server's message.
        message: String,
    },
    /// 404 on a named object.
    #[error("{} not found{} ({endpoint})", op.object(), op.where_())]
    NotFound {
        /// Where.
        endpoint: Endpoint,
        /// The call.
        op: Box<ApiOp>,
    },
    /// 409 twice: the object kept changing under us.
    #[error(
        "conflict: {}{} was modified by someone else while this step was changing it; \
         the step retried once with a fresh read and conflicted again ({endpoint}): {message}",
        op.object(), op.where_()
    )]
    Conflict {
        /// Where.
        endpoint: Endpoint,
        /// The call.
        op: Box<ApiOp>,
        /// The server's message.
        message: String,
    },
    /// Any other API failure.
    #[error("{} {}{} failed: {code} {reason}: {message} ({endpoint})", op.verb, op.object(), op.where_())]
    Api {
        /// Where.
        endpoint: Endpoint,
        /// The call.
        op: Box<ApiOp>,
        /// HTTP status.
        code: u16,
        /// The Status reason (`Invalid`, `InternalError`).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The step's fields do not describe a valid action.
    #[error("{0}")]
    Invalid(String),
    /// The cluster's state does not allow the action (paused deployment,
    /// missing revision, exceeded progress deadline).
    #[error("{0}")]
    Refused(String),
}

impl KubectlError {
    /// Whether this is a 409 (the caller may retry with a fresh read).
    pub fn is_conflict(&self) -> bool {
        matches!(self, KubectlError::Conflict { .. })
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubectlError::NotFound { .. })
    }

    /// Classifies a kube-rs error from `op` against `endpoint`.
    pub fn from_kube(error: kube::Error, op: &ApiOp, endpoint: &Endpoint) -> Self {
        let endpoint = endpoint.clone();
        match error {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match status.code {
                    401 => KubectlError::Unauthorized { endpoint, message },
                    403 => KubectlError::Forbidden {
                        endpoint,
                        op: Box::new(op.clone()),
                        message,
                    },
                    404 if op.name.is_some() => KubectlError::NotFound {
                        endpoint,
                        op: Box::new(op.clone()),
                    },
                    409 => KubectlError::Conflict {
                        endpoint,
                        op: Box::new(op.clone()),
                        message,
                    },
                    code => KubectlError::Api {
                        endpoint,
                        op: Box::new(op.clone()),
                        code,
                        reason: if status.reason.is_empty() {
                            "Failure".to_string()
                        } else {
                            status.reason.clone()
                        },
                        message,
                    },
                }
            }
            kube::Error::SerdeError(e) => KubectlError::Api {
                endpoint,
                op: Box::new(op.clone()),
                code: 200,
                reason: "UnexpectedResponse".to_string(),
                message: format!("the response could not be decoded: {e}"),
            },
            other => KubectlError::Unreachable {
                endpoint,
                cause: cause_chain(&other),
            },
        }
    }
}

/// An error and its sources, joined with `: ` and without repeats (hyper
/// and tower often wrap the same text twice).
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            server: "https://10.0.0.1:6443".into(),
            context: "prod".into(),
        }
    }

    fn scale_op() -> ApiOp {
        ApiOp {
            verb: "patch",
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: Some("scale"),
            noun: "deployment".into(),
            namespace: Some("omendb-prod".into()),
            name: Some("prod-omendb".into()),
        }
    }

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn forbidden_names_verb_resource_namespace_and_rule() {
        let e = KubectlError::from_kube(
            status(403, "Forbidden", "denied by RBAC"),
            &scale_op(),
            &endpoint(),
        );
        assert_eq!(
            e.to_string(),
            "forbidden: not allowed to patch deployments/scale \"prod-omendb\" in namespace \"omendb-prod\" \
             (context \"prod\", server https://10.0.0.1:6443): denied by RBAC. A Role rule that allows it: \
             apiGroups: [\"apps\"], resources: [\"deployments/scale\"], verbs: [\"patch\"]"
        );
        let nodes = ApiOp {
            verb: "list",
            group: String::new(),
            resource: "nodes".into(),
            noun: "node".into(),
            ..Default::default()
        };
        let e = KubectlError::from_kube(status(403, "Forbidden", "no"), &nodes, &endpoint());
        assert!(
            e.to_string().ends_with(
                "A ClusterRole rule that allows it: apiGroups: [\"\"], resources: [\"nodes\"], verbs: [\"list\"]"
            ),
            "{e}"
        );
    }

    #[test]
    fn not_found_reads_like_kubectl() {
        let op = ApiOp {
            verb: "get",
            group: "apps".into(),
            resource: "deployments".into(),
            noun: "deployment".into(),
            namespace: Some("y".into()),
            name: Some("x".into()),
            ..Default::default()
        };
        let e = KubectlError::from_kube(status(404, "NotFound", "nope"), &op, &endpoint());
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "deployment \"x\" not found in namespace \"y\" (context \"prod\", server https://10.0.0.1:6443)"
        );
    }

    #[test]
    fn other_statuses_keep_code_and_reason() {
        let e = KubectlError::from_kube(status(500, "", "boom"), &scale_op(), &endpoint());
        assert_eq!(
            e.to_string(),
            "patch deployments/scale \"prod-omendb\" in namespace \"omendb-prod\" failed: 500 Failure: boom \
             (context \"prod\", server https://10.0.0.1:6443)"
        );
        let e = KubectlError::from_kube(
            status(401, "Unauthorized", "token expired"),
            &scale_op(),
            &endpoint(),
        );
        assert!(
            e.to_string()
                .contains("rejected the credentials of context \"prod\""),
            "{e}"
        );
        let e =
            KubectlError::from_kube(status(409, "Conflict", "changed"), &scale_op(), &endpoint());
        assert!(e.is_conflict());
        assert!(e.to_string().contains("retried once"), "{e}");
    }

    #[test]
    fn cause_chain_skips_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            cause_chain(&e),
            "client error (Connect): Connection refused (os error 111)"
        );
    }
}
