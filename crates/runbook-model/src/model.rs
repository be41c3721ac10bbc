//! The typed runbook: what a valid file means once lowered from YAML.
//!
//! Doc comments on these types double as the JSON Schema descriptions that
//! editors show on hover, so they are written for runbook authors.

use crate::span::{Span, Spanned};
use crate::template::Template;
use crate::yaml::Node;
use indexmap::IndexMap;
use schemars::JsonSchema;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// A runbook file: a DAG of typed steps with params, failure handling and
/// cleanup.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(title = "runbook", deny_unknown_fields)]
pub struct Runbook {
    /// Format version; must be the integer `1`.
    #[schemars(schema_with = "crate::schema::version_schema")]
    pub version: u32,
    /// Runbook name: lower-case letters, digits, `-` and `_`, starting with a letter or digit.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))]
    pub name: Spanned<String>,
    /// What this runbook is for and when to run it.
    pub description: Option<String>,
    /// Free-form string labels (team, service, severity).
    pub labels: IndexMap<String, String>,
    /// Inputs of the runbook, set with `--set name=value`, `--params FILE`, an environment variable or a default.
    pub params: IndexMap<String, Param>,
    /// Environment variables added to every shell step (values are templates).
    #[schemars(with = "crate::schema::EnvMap")]
    pub env: IndexMap<String, Template>,
    /// Deadline for the main steps, such as `30m`; passing it fails the run with "deadline exceeded".
    #[schemars(with = "crate::schema::LiteralTimeout")]
    pub timeout: Option<Spanned<Duration>>,
    /// Defaults applied to every step that does not set the field itself.
    pub defaults: Defaults,
    /// The main steps, keyed by step id. They form a DAG through `needs`.
    #[schemars(with = "IndexMap<String, crate::schema::StepSchema>")]
    pub steps: IndexMap<String, Step>,
    /// Steps run (as their own DAG) after the rollbacks of a failed run.
    #[schemars(with = "IndexMap<String, crate::schema::StepSchema>")]
    pub on_failure: IndexMap<String, Step>,
    /// Steps that always run last, whatever happened before.
    #[schemars(with = "IndexMap<String, crate::schema::StepSchema>")]
    pub finally: IndexMap<String, Step>,
    /// Where the runbook was read from.
    #[schemars(skip)]
    pub path: PathBuf,
}

/// A runbook input.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Param {
    /// Shown by `runbook plan` and in errors about this param.
    pub description: Option<String>,
    /// Value type; `string` when omitted.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Value used when none is given; must have the declared type.
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<ParamValue>,
    /// Whether a value must be supplied; defaults to `true` when there is no `default`.
    pub required: Option<bool>,
    /// Redact the value as `***` everywhere it would be printed or stored.
    pub secret: bool,
    /// Name of an environment variable that supplies the value.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: Option<String>,
    /// The only values permitted.
    #[schemars(with = "Option<Vec<serde_json::Value>>", length(min = 1))]
    pub allowed: Option<Vec<ParamValue>>,
    /// Where the param is declared.
    #[schemars(skip)]
    pub span: Span,
}

impl Param {
    /// Whether a value must be supplied by the user.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// The type of a param.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    #[default]
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl ParamType {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
        }
    }
}

/// A param value of one of the four param types.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A number.
    Number(f64),
    /// A boolean.
    Boolean(bool),
}

impl ParamValue {
    /// As JSON for the template context.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::String(s) => serde_json::Value::String(s.clone()),
            ParamValue::Integer(i) => serde_json::Value::from(*i),
            // A whole number is written as one (`3`, not `3.0`): it lands
            // in `--replicas={{params.n}}` and in events, where `3.0` is
            // either refused or a surprise. Below 2^53 the f64 is exact.
            ParamValue::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                serde_json::Value::from(*n as i64)
            }
            ParamValue::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ParamValue::Boolean(b) => serde_json::Value::Bool(*b),
        }
    }

    /// As text, the way a user would type it on the command line.
    pub fn to_text(&self) -> String {
        match self {
            ParamValue::String(s) => s.clone(),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Number(n) => n.to_string(),
            ParamValue::Boolean(b) => b.to_string(),
        }
    }
}

/// Defaults for every step.
#[derive(Clone, Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Defaults {
    /// Per-attempt timeout for steps that set none (built-in: `10m`, gates `30m`).
    #[schemars(with = "Option<crate::schema::LiteralTimeout>")]
    pub timeout: Option<Spanned<Duration>>,
    /// Retry policy for steps that set none.
    pub retry: Option<Retry>,
    /// Whether a step's failure leaves the run going, for steps that do not say.
    pub continue_on_failure: Option<bool>,
}

/// How often and how patiently to retry a failing step.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Retry {
    /// Total number of tries, including the first (default 1: no retry; at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub attempts: u32,
    /// Wait before the second try (default `1s`).
    #[schemars(with = "crate::schema::LiteralDuration")]
    pub delay: Duration,
    /// `exponential` (default; the delay doubles each time) or `fixed`.
    pub backoff: Backoff,
    /// Upper bound on any single wait (default `1m`).
    #[schemars(with = "crate::schema::LiteralDuration")]
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            delay: Duration::from_secs(1),
            backoff: Backoff::Exponential,
            max_delay: Duration::from_secs(60),
        }
    }
}

/// How the wait between retries grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Each wait is twice the previous one.
    Exponential,
    /// Every wait is `delay`.
    Fixed,
}

/// Which map of the runbook a step belongs to; in events, its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// `steps`.
    #[serde(rename = "steps")]
    Main,
    /// `on_failure`.
    #[serde(rename = "on_failure")]
    OnFailure,
    /// `finally`.
    #[serde(rename = "finally")]
    Finally,
    /// A step's `rollback`.
    #[serde(rename = "rollback")]
    Rollback,
}

impl Phase {
    /// The key of the map in the file.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Main => "steps",
            Phase::OnFailure => "on_failure",
            Phase::Finally => "finally",
            Phase::Rollback => "rollback",
        }
    }
}

/// One step of a runbook.
#[derive(Clone, Debug)]
pub struct Step {
    /// The step id (the key in its map).
    pub id: Spanned<String>,
    /// The whole step mapping.
    pub span: Span,
    /// Which map it lives in.
    pub phase: Phase,
    /// Free text.
    pub description: Option<String>,
    /// Steps of the same map that must reach a terminal status first.
    pub needs: Vec<Spanned<String>>,
    /// Renders to `true` or `false`; decides alone whether the step runs.
    pub when: Option<Template>,
    /// Per-attempt timeout.
    pub timeout: Option<Typed<Duration>>,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// A failure of this step does not fail the run.
    pub continue_on_failure: Option<bool>,
    /// What undoes this step when the run fails.
    pub rollback: Option<Rollback>,
    /// Extra environment for shell steps.
    pub env: IndexMap<String, Template>,
    /// Whether running the step twice is harmless (for `resume`).
    pub idempotent: bool,
    /// The typed part.
    pub kind: StepKind,
}

/// A step's rollback.
#[derive(Clone, Debug)]
pub enum Rollback {
    /// The built-in inverse of a kubectl action.
    Auto(Span),
    /// An explicit step.
    Step(Box<Step>),
}

/// A value that is either written literally or produced by a template that
/// is rendered, then parsed, when the step starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Typed<T> {
    /// Known at validation time.
    Literal(Spanned<T>),
    /// Rendered at run time.
    Template(Template),
}

impl<T> Typed<T> {
    /// Where the value is written.
    pub fn span(&self) -> Span {
        match self {
            Typed::Literal(v) => v.span,
            Typed::Template(t) => t.span,
        }
    }

    /// The literal value, if it is not templated.
    pub fn literal(&self) -> Option<&T> {
        match self {
            Typed::Literal(v) => Some(&v.value),
            Typed::Template(_) => None,
        }
    }
}

/// The type-specific part of a step, boxed: the variants range from 144 to
/// 880 bytes, and unboxed every step was as large as the largest (1,264
/// bytes a step, held twice during a run: the runbook and the engine's plan).
#[derive(Clone, Debug)]
pub enum StepKind {
    /// Runs a script.
    Shell(Box<ShellStep>),
    /// Makes an HTTP request and checks the response.
    HttpCheck(Box<HttpCheckStep>),
    /// Acts on a Kubernetes cluster through its API.
    KubectlAction(Box<KubectlStep>),
    /// Waits for a decision.
    Gate(Box<GateStep>),
}

impl StepKind {
    /// The `type` value in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Shell(_) => "shell",
            StepKind::HttpCheck(_) => "http-check",
            StepKind::KubectlAction(_) => "kubectl-action",
            StepKind::Gate(_) => "gate",
        }
    }
}

/// `type: shell` — runs a script in its own process group.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ShellStep {
    /// The script. `{{expr}}` inserts a value as exactly one shell word; `{{{expr}}}` inserts it raw.
    pub run: Template,
    /// Interpreter argv; the script is passed as its last argument. Default `["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]`.
    #[schemars(with = "Option<crate::schema::Argv>")]
    pub shell: Option<Vec<Template>>,
    /// Working directory.
    pub workdir: Option<Template>,
    /// Exit codes that count as success (default `[0]`): one code or a list.
    #[schemars(with = "Option<crate::schema::ExitCodes>")]
    pub success_exit_codes: Option<Spanned<Vec<i32>>>,
    /// The step only reads, so it also runs under `--dry-run`.
    #[schemars(with = "Option<crate::schema::BoolOrTemplate>")]
    pub read_only: Option<Typed<bool>>,
    /// Signal sent to the process group on timeout or cancellation (default `SIGTERM`).
    #[schemars(with = "Option<crate::schema::SignalName>")]
    pub stop_signal: Option<Typed<String>>,
    /// Time between the stop signal and SIGKILL (default `5s`).
    #[schemars(with = "Option<crate::schema::DurationText>")]
    pub grace: Option<Typed<Duration>>,
}

/// `type: http-check` — an HTTP request with expectations on the response.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HttpCheckStep {
    /// The URL to request: `http://` or `https://`.
    #[schemars(
        regex(pattern = r"^\s*[hH][tT][tT][pP][sS]?://\s*[^\s/]|\{\{"),
        extend("patternErrorMessage" = "an http:// or https:// URL, such as `http://127.0.0.1:8080/health`")
    )]
    pub url: Template,
    /// HTTP method (default `GET`).
    #[schemars(
        regex(pattern = r"^[A-Za-z]+$|\{\{"),
        extend("patternErrorMessage" = "an HTTP method, such as GET or POST")
    )]
    pub method: Option<Template>,
    /// Request headers. Values of `Authorization`, `Cookie` and names containing `token` or `key` are redacted.
    #[schemars(with = "IndexMap<String, crate::schema::ScalarText>")]
    pub headers: IndexMap<String, Template>,
    /// A request body as text.
    pub body: Option<Template>,
    /// A JSON request body (any value; strings inside are templates).
    #[schemars(with = "Option<serde_json::Value>")]
    pub json: Option<Node>,
    /// Skip TLS certificate verification.
    #[schemars(with = "Option<crate::schema::BoolOrTemplate>")]
    pub insecure: Option<Typed<bool>>,
    /// Path to a PEM file with the CA certificate(s) to trust.
    pub ca_cert: Option<Template>,
    /// What the response must look like.
    pub expect: Expect,
}

/// Expectations on an HTTP response.
#[derive(Clone, Debug, Default, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Expect {
    /// Acceptable status: a code (`200`), a list (`[200, 204]`) or a class (`2xx`). Default `2xx`.
    /// A template renders to one of them, or to several separated by commas.
    #[schemars(with = "Option<crate::schema::StatusSchema>")]
    pub status: Option<Typed<Vec<StatusPattern>>>,
    /// Text (or list of texts, all required) that must appear in the body.
    #[schemars(with = "Option<crate::schema::OneOrMany>")]
    pub body_contains: Vec<Template>,
    /// A regular expression searched anywhere in the body.
    #[schemars(length(min = 1))]
    pub body_matches: Option<Template>,
    /// JSON Pointer (such as `/status`) to the value expected there.
    #[schemars(with = "Option<crate::schema::PointerMap>")]
    pub json: IndexMap<String, Node>,
    /// Slowest acceptable response, such as `500ms`.
    #[schemars(with = "Option<crate::schema::DurationText>")]
    pub max_latency: Option<Typed<Duration>>,
}

/// One acceptable HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this code.
    Code(u16),
    /// Any code of this class (2 for `2xx`).
    Class(u16),
}

impl StatusPattern {
    /// Whether `status` is acceptable.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Code(code) => code == status,
            StatusPattern::Class(class) => status / 100 == class,
        }
    }
}

impl std::fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusPattern::Code(code) => write!(f, "{code}"),
            StatusPattern::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// `type: kubectl-action` — a kubectl operation done through the Kubernetes API.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct KubectlStep {
    /// What to do.
    #[schemars(with = "KubectlAction")]
    pub action: Spanned<KubectlAction>,
    /// Namespace (default: the context's namespace, else `default`).
    pub namespace: Option<Template>,
    /// Kubeconfig context (default: the current one).
    pub context: Option<Template>,
    /// Path to a kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    pub kubeconfig: Option<Template>,
    /// Target, such as `deployment/prod-omendb`, `pods`, `pvc/omendb-data` or `nodes`.
    pub resource: Option<Template>,
    /// Label selector, such as `app=omendb,tier!=cache`.
    pub selector: Option<Template>,
    /// Field selector, such as `status.phase=Running`.
    pub field_selector: Option<Template>,
    /// Send mutations with server-side dry run.
    #[schemars(with = "Option<crate::schema::BoolOrTemplate>")]
    pub dry_run: Option<Typed<bool>>,
    /// Container (logs, exec; default: the pod's default container).
    pub container: Option<Template>,
    /// Lines from the end of each log (logs; `-1` for all).
    #[schemars(with = "Option<crate::schema::TailLines>")]
    pub tail: Option<Typed<i64>>,
    /// Only logs newer than this duration, such as `10m` (logs).
    #[schemars(with = "Option<crate::schema::DurationText>")]
    pub since: Option<Typed<Duration>>,
    /// The resource whose events to list, such as `pod/omendb-0` (events).
    #[serde(rename = "for")]
    #[schemars(
        regex(pattern = r"^\s*[^/\s]+\s*/\s*[^/\s]+\s*$|\{\{"),
        extend("patternErrorMessage" = "one object, as `kind/name`, such as `pod/omendb-0`")
    )]
    pub for_resource: Option<Template>,
    /// Desired replica count (scale).
    #[schemars(with = "Option<crate::schema::CountOrTemplate>")]
    pub replicas: Option<Typed<i64>>,
    /// Revision to roll back to (rollout-undo; default: the previous one).
    #[schemars(with = "Option<crate::schema::CountOrTemplate>")]
    pub to_revision: Option<Typed<i64>>,
    /// The patch document (patch): a mapping, a list of operations for `patch_type: json`, or either written as a JSON string; strings inside are templates.
    #[schemars(with = "Option<crate::schema::PatchDocument>")]
    pub patch: Option<Node>,
    /// Patch type: `strategic` (default), `merge` or `json`.
    #[schemars(with = "Option<crate::schema::PatchTypeOrTemplate>")]
    pub patch_type: Option<Typed<PatchType>>,
    /// Command to run in the container, as a list (exec).
    #[schemars(with = "Option<crate::schema::Argv>")]
    pub command: Option<Vec<Template>>,
}

/// The actions of a `kubectl-action` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KubectlAction {
    /// Read objects (`kubectl get`).
    Get,
    /// Read container logs (`kubectl logs`).
    Logs,
    /// List events sorted by time (`kubectl get events --sort-by`).
    Events,
    /// Resource usage from metrics.k8s.io (`kubectl top`).
    Top,
    /// Change the replica count (`kubectl scale`).
    Scale,
    /// Restart a workload's pods (`kubectl rollout restart`).
    RolloutRestart,
    /// Wait for a rollout to complete (`kubectl rollout status`).
    RolloutStatus,
    /// List revisions (`kubectl rollout history`).
    RolloutHistory,
    /// Roll back to a revision (`kubectl rollout undo`).
    RolloutUndo,
    /// Patch an object (`kubectl patch`).
    Patch,
    /// Delete an object (`kubectl delete`).
    Delete,
    /// Run a command in a container (`kubectl exec`).
    Exec,
}

impl KubectlAction {
    /// Every action, in documentation order.
    pub const ALL: [KubectlAction; 12] = [
        KubectlAction::Get,
        KubectlAction::Logs,
        KubectlAction::Events,
        KubectlAction::Top,
        KubectlAction::Scale,
        KubectlAction::RolloutRestart,
        KubectlAction::RolloutStatus,
        KubectlAction::RolloutHistory,
        KubectlAction::RolloutUndo,
        KubectlAction::Patch,
        KubectlAction::Delete,
        KubectlAction::Exec,
    ];

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            KubectlAction::Get => "get",
            KubectlAction::Logs => "logs",
            KubectlAction::Events => "events",
            KubectlAction::Top => "top",
            KubectlAction::Scale => "scale",
            KubectlAction::RolloutRestart => "rollout-restart",
            KubectlAction::RolloutStatus => "rollout-status",
            KubectlAction::RolloutHistory => "rollout-history",
            KubectlAction::RolloutUndo => "rollout-undo",
            KubectlAction::Patch => "patch",
            KubectlAction::Delete => "delete",
            KubectlAction::Exec => "exec",
        }
    }

    /// Whether the action works on one object, named as `kind/name`.
    pub fn needs_one_object(self) -> bool {
        matches!(
            self,
            KubectlAction::Scale
                | KubectlAction::RolloutRestart
                | KubectlAction::RolloutStatus
                | KubectlAction::RolloutHistory
                | KubectlAction::RolloutUndo
                | KubectlAction::Patch
                | KubectlAction::Delete
                | KubectlAction::Exec
        )
    }

    /// The action-specific fields the action cannot do without.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            KubectlAction::Scale => &["replicas"],
            KubectlAction::Patch => &["patch"],
            KubectlAction::Exec => &["command"],
            _ => &[],
        }
    }

    /// Whether `rollback: auto` knows how to undo this action.
    pub fn has_inverse(self) -> bool {
        matches!(
            self,
            KubectlAction::Scale | KubectlAction::Patch | KubectlAction::RolloutRestart
        )
    }

    /// Whether the action changes the cluster (and so is sent with
    /// server-side dry run under `--dry-run`).
    pub fn is_mutating(self) -> bool {
        match self {
            KubectlAction::Scale
            | KubectlAction::RolloutRestart
            | KubectlAction::RolloutUndo
            | KubectlAction::Patch
            | KubectlAction::Delete => true,
            // exec can do anything inside a container; the API has no dry
            // run for it, so it is treated as mutating and not executed.
            KubectlAction::Exec => true,
            KubectlAction::Get
            | KubectlAction::Logs
            | KubectlAction::Events
            | KubectlAction::Top
            | KubectlAction::RolloutStatus
            | KubectlAction::RolloutHistory => false,
        }
    }

    /// Fields specific to this action (beyond the ones every action takes).
    pub fn extra_fields(self) -> &'static [&'static str] {
        match self {
            KubectlAction::Logs => &["container", "tail", "since"],
            KubectlAction::Events => &["for"],
            KubectlAction::Scale => &["replicas"],
            KubectlAction::RolloutUndo => &["to_revision"],
            KubectlAction::Patch => &["patch", "patch_type"],
            KubectlAction::Exec => &["command", "container"],
            KubectlAction::Get
            | KubectlAction::Top
            | KubectlAction::RolloutRestart
            | KubectlAction::RolloutStatus
            | KubectlAction::RolloutHistory
            | KubectlAction::Delete => &[],
        }
    }
}

/// How a `patch` document is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    /// Kubernetes strategic merge patch (lists merged by key).
    Strategic,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch (a list of operations).
    Json,
}

impl PatchType {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchType::Strategic => "strategic",
            PatchType::Merge => "merge",
            PatchType::Json => "json",
        }
    }
}

/// `type: gate` — waits for a decision, by a person or by a condition.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GateStep {
    /// What the approver is deciding; say exactly what will happen.
    pub message: Template,
    /// If set, the gate decides by itself: `true` approves, `false` rejects.
    #[schemars(with = "Option<crate::schema::BoolOrTemplate>")]
    pub condition: Option<Template>,
    /// What happens when nobody decides before the timeout: `reject` (default) or `approve`.
    #[schemars(with = "Option<crate::schema::OnTimeoutOrTemplate>")]
    pub on_timeout: Option<Typed<OnTimeout>>,
}

/// What a gate does when its timeout passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Reject (the gate fails).
    #[default]
    Reject,
    /// Approve.
    Approve,
}

impl Runbook {
    /// Every step of the three maps, in file order: main, on_failure, finally.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .values()
            .chain(self.on_failure.values())
            .chain(self.finally.values())
    }

    /// The map of a phase.
    pub fn phase(&self, phase: Phase) -> Option<&IndexMap<String, Step>> {
        match phase {
            Phase::Main => Some(&self.steps),
            Phase::OnFailure => Some(&self.on_failure),
            Phase::Finally => Some(&self.finally),
            Phase::Rollback => None,
        }
    }
}

impl Step {
    /// The retry policy the step's attempts follow: its own, else
    /// `default` (the runbook's `defaults.retry`), else one attempt. A gate
    /// is never retried: a decision, a rejection included, is final.
    pub fn retry_policy(&self, default: Option<&Retry>) -> Retry {
        if matches!(self.kind, StepKind::Gate(_)) {
            return Retry::default();
        }
        self.retry
            .clone()
            .or_else(|| default.cloned())
            .unwrap_or_default()
    }

    /// Every template in the step's own fields (not its rollback's), with the
    /// name of the field for messages, and whether it is a shell script (where
    /// raw insertions are flagged).
    pub fn templates(&self) -> Vec<(&'static str, &Template)> {
        let mut out: Vec<(&'static str, &Template)> = Vec::new();
        if let Some(when) = &self.when {
            out.push(("when", when));
        }
        if let Some(Typed::Template(t)) = &self.timeout {
            out.push(("timeout", t));
        }
        for value in self.env.values() {
            out.push(("env", value));
        }
        match &self.kind {
            StepKind::Shell(shell) => {
                out.push(("run", &shell.run));
                out.extend(shell.shell.iter().flatten().map(|t| ("shell", t)));
                out.extend(shell.workdir.iter().map(|t| ("workdir", t)));
                if let Some(Typed::Template(t)) = &shell.read_only {
                    out.push(("read_only", t));
                }
                if let Some(Typed::Template(t)) = &shell.stop_signal {
                    out.push(("stop_signal", t));
                }
                if let Some(Typed::Template(t)) = &shell.grace {
                    out.push(("grace", t));
                }
            }
            StepKind::HttpCheck(http) => {
                out.push(("url", &http.url));
                out.extend(http.method.iter().map(|t| ("method", t)));
                out.extend(http.headers.values().map(|t| ("headers", t)));
                out.extend(http.body.iter().map(|t| ("body", t)));
                if let Some(Typed::Template(t)) = &http.insecure {
                    out.push(("insecure", t));
                }
                out.extend(http.ca_cert.iter().map(|t| ("ca_cert", t)));
                out.extend(
                    http.expect
                        .body_contains
                        .iter()
                        .map(|t| ("expect.body_contains", t)),
                );
                out.extend(
                    http.expect
                        .body_matches
                        .iter()
                        .map(|t| ("expect.body_matches", t)),
                );
                if let Some(Typed::Template(t)) = &http.expect.status {
                    out.push(("expect.status", t));
                }
                if let Some(Typed::Template(t)) = &http.expect.max_latency {
                    out.push(("expect.max_latency", t));
                }
            }
            StepKind::KubectlAction(k) => {
                for (name, field) in [
                    ("namespace", &k.namespace),
                    ("context", &k.context),
                    ("kubeconfig", &k.kubeconfig),
                    ("resource", &k.resource),
                    ("selector", &k.selector),
                    ("field_selector", &k.field_selector),
                    ("container", &k.container),
                    ("for", &k.for_resource),
                ] {
                    out.extend(field.iter().map(|t| (name, t)));
                }
                for (name, field) in [
                    ("tail", &k.tail),
                    ("replicas", &k.replicas),
                    ("to_revision", &k.to_revision),
                ] {
                    if let Some(Typed::Template(t)) = field {
                        out.push((name, t));
                    }
                }
                if let Some(Typed::Template(t)) = &k.since {
                    out.push(("since", t));
                }
                if let Some(Typed::Template(t)) = &k.dry_run {
                    out.push(("dry_run", t));
                }
                if let Some(Typed::Template(t)) = &k.patch_type {
                    out.push(("patch_type", t));
                }
                out.extend(k.command.iter().flatten().map(|t| ("command", t)));
            }
            StepKind::Gate(gate) => {
                out.push(("message", &gate.message));
                out.extend(gate.condition.iter().map(|t| ("condition", t)));
                if let Some(Typed::Template(t)) = &gate.on_timeout {
                    out.push(("on_timeout", t));
                }
            }
        }
        out
    }

    /// Free-form values (JSON bodies, patches, expected JSON) whose strings
    /// are templates.
    pub fn template_trees(&self) -> Vec<(&'static str, &Node)> {
        match &self.kind {
            StepKind::HttpCheck(http) => http
                .json
                .iter()
                .map(|n| ("json", n))
                .chain(http.expect.json.values().map(|n| ("expect.json", n)))
                .collect(),
            StepKind::KubectlAction(k) => k.patch.iter().map(|n| ("patch", n)).collect(),
            StepKind::Shell(_) | StepKind::Gate(_) => Vec::new(),
        }
    }
}

impl StepKind {
    /// The outputs a step of this kind produces, so that templates reading
    /// `steps.X.outputs.NAME` can be checked before the run.
    pub fn output_names(&self) -> &'static [&'static str] {
        match self {
            StepKind::Shell(_) => &["stdout", "stderr", "exit_code", "json", "lines"],
            StepKind::HttpCheck(_) => &["status", "headers", "body", "json", "latency_ms"],
            StepKind::Gate(_) => &["approved", "decided_by", "decided_at"],
            StepKind::KubectlAction(k) => match k.action.value {
                KubectlAction::Get => &["object", "items", "count", "pods"],
                KubectlAction::Logs => &["text", "by_pod"],
                KubectlAction::Events => &["items", "count"],
                KubectlAction::Top => &["items"],
                KubectlAction::Scale => &["previous_replicas", "replicas", "server"],
                KubectlAction::RolloutRestart => &["restarted_at", "previous_revision", "server"],
                KubectlAction::RolloutStatus => &["ready_replicas", "updated_replicas", "revision"],
                KubectlAction::RolloutHistory => {
                    &["revisions", "current_revision", "previous_revision"]
                }
                KubectlAction::RolloutUndo => &["from_revision", "to_revision"],
                KubectlAction::Patch => &["object", "previous", "server"],
                KubectlAction::Delete => &["deleted"],
                KubectlAction::Exec => &["stdout", "stderr", "exit_code"],
            },
        }
    }
}

impl StepKind {
    /// The outputs that are lists or mappings (or, for `json`, may be):
    /// inserted as they are, they render as placeholder text.
    pub fn structured_outputs(&self) -> &'static [&'static str] {
        match self {
            StepKind::Shell(_) => &["json", "lines"],
            StepKind::HttpCheck(_) => &["headers", "json"],
            StepKind::Gate(_) => &[],
            StepKind::KubectlAction(k) => match k.action.value {
                KubectlAction::Get => &["object", "items", "pods"],
                KubectlAction::Logs => &["by_pod"],
                KubectlAction::Events | KubectlAction::Top => &["items"],
                KubectlAction::RolloutHistory => &["revisions"],
                KubectlAction::Patch => &["object", "previous"],
                _ => &[],
            },
        }
    }
}

/// Fields of `steps.ID` in the template context.
pub const STEP_CONTEXT_FIELDS: &[&str] = &[
    "status",
    "succeeded",
    "failed",
    "skipped",
    "outputs",
    "error",
    "attempts",
    "duration_ms",
];

/// Fields of `run` in the template context.
pub const RUN_CONTEXT_FIELDS: &[&str] = &["id", "name", "started_at", "dry_run", "status", "error"];

/// The values a `scale` step's `replicas` can take: Kubernetes keeps a
/// scale as a 32-bit integer, so a larger count would reach the API server
/// only to be refused there.
pub const REPLICAS: RangeInclusive<i64> = 0..=i32::MAX as i64;

/// The shortest `timeout`: timers count whole milliseconds, so anything
/// shorter would time out before a step could start.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
