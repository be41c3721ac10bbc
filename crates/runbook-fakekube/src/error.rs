//! Errors: [`ApiError`] is what the fake apiserver answers with (a
//! `metav1.Status`), [`Error`] is what the library API returns.

use crate::resources::ResourceType;
use serde_json::{Value, json};

/// A failed API request, rendered as a `metav1.Status` body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Box<Value>>,
    /// Seconds for a `Retry-After` header (429 and some 500s).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, r: &ResourceType, name: &str) -> Self {
        let mut details = json!({"name": name, "kind": r.plural});
        if !r.group.is_empty() {
            details["group"] = json!(r.group);
        }
        self.details = Some(Box::new(details));
        self
    }

    pub(crate) fn not_found(r: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", r.qualified()),
        )
        .with_details(r, name)
    }

    pub(crate) fn namespace_not_found(name: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{name}\" not found"))
            .with_details(crate::resources::Kind::Namespace.info(), name)
    }

    pub(crate) fn already_exists(r: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", r.qualified()),
        )
        .with_details(r, name)
    }

    pub(crate) fn conflict(r: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                r.qualified()
            ),
        )
        .with_details(r, name)
    }

    /// 422 with the apiserver's `Kind.group "name" is invalid: field: detail` wording.
    pub(crate) fn invalid(r: &ResourceType, name: &str, causes: &[(String, String)]) -> Self {
        let kind = if r.group.is_empty() {
            r.kind_name.to_owned()
        } else {
            format!("{}.{}", r.kind_name, r.group)
        };
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, msg)| format!("{field}: {msg}"))
            .collect();
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {}", summary.join(", ")),
        )
        .with_details(r, name);
        if let Some(details) = err.details.as_mut() {
            details["kind"] = json!(r.kind_name);
            details["causes"] = causes
                .iter()
                .map(|(field, msg)| json!({"reason": "FieldValueInvalid", "message": msg, "field": field}))
                .collect();
        }
        err
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    pub(crate) fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub(crate) fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    /// The `metav1.Status` body.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = (**details).clone();
        }
        if let Some(seconds) = self.retry_after {
            let details = status
                .as_object_mut()
                .map(|m| m.entry("details").or_insert_with(|| json!({})));
            if let Some(details) = details {
                details["retryAfterSeconds"] = json!(seconds);
            }
        }
        status
    }
}

/// Errors returned by the library API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not be bound.
    #[error("failed to bind the fake apiserver on {addr}")]
    Bind {
        /// The address that was requested.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario name that is neither built in nor a readable file.
    #[error("unknown scenario `{name}`; built-in scenarios are: {known}")]
    UnknownScenario {
        /// What was asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// A scenario file could not be read.
    #[error("failed to read scenario file `{path}`")]
    ReadScenario {
        /// The file.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario document is not valid YAML or does not fit the format.
    #[error("invalid scenario `{name}`: {message}")]
    InvalidScenario {
        /// The scenario's name or file.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A kubeconfig could not be written.
    #[error("failed to write kubeconfig `{path}`")]
    WriteKubeconfig {
        /// The file.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Seeding the scenario's objects failed (a scenario describing objects
    /// the fake apiserver itself rejects).
    #[error("scenario `{name}` could not be seeded: {message}")]
    Seed {
        /// The scenario's name.
        name: String,
        /// The apiserver's message.
        message: String,
    },
}
