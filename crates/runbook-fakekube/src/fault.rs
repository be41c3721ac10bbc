//! Fault injection and the request journal: the knobs tests use to make the
//! fake misbehave on purpose, and the record of what clients actually sent.

use crate::error::ApiError;
use std::time::Duration;

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// HTTP method (`GET`, `PATCH`, …).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (empty when there was none).
    pub query: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as text (lossy for non-UTF-8).
    pub body: String,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 403 Forbidden with the apiserver's RBAC wording for this user.
    Forbidden {
        /// The user named in the message, e.g. `system:serviceaccount:omendb-prod:runbook`.
        user: String,
    },
    /// 409 Conflict ("the object has been modified").
    Conflict,
    /// 429 TooManyRequests with `Retry-After: 1`.
    TooManyRequests,
    /// 500 InternalError.
    InternalError,
    /// Delays the response, then serves it normally.
    Latency(Duration),
}

/// A fault rule. Empty filters match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: Option<String>,
    /// Resource plural, optionally with subresource (`deployments`, `deployments/scale`).
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// How many more requests it affects; `None` is permanent.
    pub remaining: Option<u32>,
}

impl Fault {
    /// A permanent fault of `kind` on every request.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            verb: None,
            resource: None,
            name: None,
            kind,
            remaining: None,
        }
    }

    /// Only for this verb.
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_owned());
        self
    }

    /// Only for this resource (plural, or `plural/subresource`).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }

    /// Only for this object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// A 403 for the default service account the demo runbooks use.
    pub fn forbidden() -> FaultKind {
        FaultKind::Forbidden {
            user: "system:serviceaccount:omendb-prod:runbook".into(),
        }
    }
}

/// What a request is, for fault matching and messages.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    pub(crate) verb: &'static str,
    /// Plural, with `/sub` for subresources.
    pub(crate) resource: String,
    pub(crate) group: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
}

/// What the matching fault asks the server to do.
pub(crate) enum Injected {
    Fail(ApiError),
    Delay(Duration),
}

/// Finds the first matching fault, consumes one use of it, and says what to do.
pub(crate) fn take(faults: &mut Vec<Fault>, info: &RequestInfo) -> Option<Injected> {
    let index = faults.iter().position(|f| {
        f.verb.as_deref().is_none_or(|v| v == info.verb)
            && f.resource.as_deref().is_none_or(|r| r == info.resource)
            && f.name
                .as_deref()
                .is_none_or(|n| Some(n) == info.name.as_deref())
    })?;
    let fault = faults[index].clone();
    if let Some(left) = faults[index].remaining.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            faults.remove(index);
        }
    }
    let plural = info.resource.split('/').next().unwrap_or_default();
    let qualified = if info.group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{}", info.group)
    };
    let subject = match &info.name {
        Some(name) => format!("{qualified} \"{name}\""),
        None => qualified.clone(),
    };
    Some(match fault.kind {
        FaultKind::Latency(d) => Injected::Delay(d),
        FaultKind::Forbidden { user } => {
            let scope = match &info.namespace {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_owned(),
            };
            Injected::Fail(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{subject} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\"{scope}",
                    info.verb, info.resource, info.group
                ),
            ))
        }
        FaultKind::Conflict => Injected::Fail(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {subject}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        )),
        FaultKind::TooManyRequests => {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            e.retry_after = Some(1);
            Injected::Fail(e)
        }
        FaultKind::InternalError => Injected::Fail(ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: injected fault",
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_deploy() -> RequestInfo {
        RequestInfo {
            verb: "patch",
            resource: "deployments".into(),
            group: "apps".into(),
            namespace: Some("omendb-prod".into()),
            name: Some("prod-omendb".into()),
        }
    }

    #[test]
    fn forbidden_uses_rbac_wording_and_counts_down() {
        let mut faults = vec![
            Fault::new(Fault::forbidden())
                .verb("patch")
                .resource("deployments")
                .times(1),
        ];
        let Some(Injected::Fail(e)) = take(&mut faults, &patch_deploy()) else {
            panic!("expected a failure")
        };
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "deployments.apps \"prod-omendb\" is forbidden: User \"system:serviceaccount:omendb-prod:runbook\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"omendb-prod\""
        );
        assert!(faults.is_empty());
        assert!(take(&mut faults, &patch_deploy()).is_none());
    }

    #[test]
    fn filters_must_all_match() {
        let mut faults = vec![Fault::new(FaultKind::InternalError).verb("get")];
        assert!(take(&mut faults, &patch_deploy()).is_none());
        let mut faults = vec![Fault::new(FaultKind::TooManyRequests).resource("deployments/scale")];
        assert!(take(&mut faults, &patch_deploy()).is_none());
        assert_eq!(faults.len(), 1, "permanent faults stay");
    }
}
