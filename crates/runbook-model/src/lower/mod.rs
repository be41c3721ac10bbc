//! The second parsing phase: lowering the spanned YAML tree into the typed
//! [`Runbook`], reporting every unknown key, missing key and wrong type with
//! the position of the node at fault. Lowering never stops at the first
//! problem: a broken field is reported and skipped so the rest of the file is
//! still checked.

mod gate;
mod http_check;
mod kubectl;
mod params;
mod shell;
mod values;

pub use http_check::{parse_status_list, regex_error_summary};
use shell::blank_program;
pub use values::{DurationError, parse_duration};

use crate::diagnostic::{Code, Diagnostic};
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::template::Template;
use crate::yaml::{Entry, Node, ScalarKind, Value};
use indexmap::{IndexMap, IndexSet};
use regex::Regex;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

/// Whether `text` is one character allowed by `first` followed by any
/// number allowed by `rest`. The name rules are this simple on purpose, and
/// checking them by hand keeps every run from compiling four regexes at
/// start-up (a visible share of a one-step run's time).
fn is_identifier(text: &str, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(first) && chars.all(rest)
}

/// A key for a message: in backticks, or said to be empty.
fn shown_key(key: &str) -> String {
    if key.is_empty() {
        "(empty)".to_string()
    } else {
        format!("`{key}`")
    }
}

/// A runbook name: `^[a-z0-9][a-z0-9_-]*$`.
fn is_runbook_name(text: &str) -> bool {
    is_identifier(
        text,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
    )
}

/// A param name: `^[a-z_][a-z0-9_]*$`.
pub(crate) fn is_param_name(text: &str) -> bool {
    is_identifier(
        text,
        |c| c.is_ascii_lowercase() || c == '_',
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
    )
}

/// A step id: `^[a-z][a-z0-9_-]*$`.
fn is_step_id(text: &str) -> bool {
    is_identifier(
        text,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
    )
}

/// An environment variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
fn is_env_name(text: &str) -> bool {
    is_identifier(
        text,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "labels",
    "params",
    "env",
    "timeout",
    "defaults",
    "steps",
    "on_failure",
    "finally",
];
const PARAM_KEYS: &[&str] = &[
    "description",
    "type",
    "default",
    "required",
    "secret",
    "env",
    "allowed",
];
const DEFAULTS_KEYS: &[&str] = &["timeout", "retry", "continue_on_failure"];
const RETRY_KEYS: &[&str] = &["attempts", "delay", "backoff", "max_delay"];
/// Fields every step type accepts.
pub const COMMON_KEYS: &[&str] = &[
    "type",
    "description",
    "needs",
    "when",
    "timeout",
    "retry",
    "continue_on_failure",
    "rollback",
    "env",
    "idempotent",
];
/// Fields of `shell` steps.
pub const SHELL_KEYS: &[&str] = &[
    "run",
    "shell",
    "workdir",
    "success_exit_codes",
    "read_only",
    "stop_signal",
    "grace",
];
/// Fields of `http-check` steps.
pub const HTTP_KEYS: &[&str] = &[
    "url", "method", "headers", "body", "json", "insecure", "ca_cert", "expect",
];
const EXPECT_KEYS: &[&str] = &[
    "status",
    "body_contains",
    "body_matches",
    "json",
    "max_latency",
];
/// Fields of `kubectl-action` steps.
pub const KUBECTL_KEYS: &[&str] = &[
    "action",
    "namespace",
    "context",
    "kubeconfig",
    "resource",
    "selector",
    "field_selector",
    "dry_run",
    "container",
    "tail",
    "since",
    "for",
    "replicas",
    "to_revision",
    "patch",
    "patch_type",
    "command",
];
/// Fields of `gate` steps.
pub const GATE_KEYS: &[&str] = &["message", "condition", "on_timeout"];
const STEP_TYPES: &[&str] = &["shell", "http-check", "kubectl-action", "gate"];

/// Field names from other tools (GitHub Actions, Compose, Ansible, go-task)
/// that an author may reach for, and ours. Spelling alone would suggest
/// `description` for `script`.
const STEP_FIELD_SYNONYMS: &[(&str, &str)] = &[
    ("script", "run"),
    ("cmd", "run"),
    ("command", "run"),
    ("cmds", "run"),
    ("shell_command", "run"),
    ("depends_on", "needs"),
    ("depends", "needs"),
    ("deps", "needs"),
    ("requires", "needs"),
    ("after", "needs"),
    ("if", "when"),
    ("retries", "retry"),
    ("continue_on_error", "continue_on_failure"),
    ("ignore_errors", "continue_on_failure"),
    ("allow_failure", "continue_on_failure"),
];
/// Signals a shell step may name as `stop_signal`.
pub const SIGNALS: &[&str] = &[
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2",
];

/// The result of lowering: a best-effort runbook and what was wrong.
pub(crate) struct Lowered {
    pub runbook: Runbook,
    /// Ids of every step key seen, including steps too broken to lower, so
    /// that later checks do not cascade into "unknown step" noise.
    pub all_ids: IndexSet<String>,
    /// Steps whose type or type-specific fields did not lower: kept in the
    /// runbook with a stand-in kind, so that their `needs`, their other
    /// templates and the steps reading them are still checked in the same
    /// pass. A runbook with errors is never run, so the stand-in never is.
    pub broken: IndexSet<String>,
}

pub(crate) struct Lowerer<'a> {
    pub diagnostics: Vec<Diagnostic>,
    source: &'a str,
    broken: IndexSet<String>,
}

/// The nearest of `candidates` to `word`, if it is close enough to be a
/// likely typo.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

impl<'a> Lowerer<'a> {
    pub fn new(source: &'a str) -> Self {
        Lowerer {
            diagnostics: Vec::new(),
            source,
            broken: IndexSet::new(),
        }
    }

    fn error(&mut self, code: Code, span: Span, message: String) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::error(code, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn warning(&mut self, code: Code, span: Span, message: String) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::warning(code, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn runbook(&mut self, root: &Node, path: &Path) -> Lowered {
        let mut runbook = Runbook {
            version: 1,
            name: Spanned::new(String::new(), root.span),
            description: None,
            labels: IndexMap::new(),
            params: IndexMap::new(),
            env: IndexMap::new(),
            timeout: None,
            defaults: Defaults::default(),
            steps: IndexMap::new(),
            on_failure: IndexMap::new(),
            finally: IndexMap::new(),
            path: path.to_path_buf(),
        };
        let mut all_ids = IndexSet::new();
        let Some(entries) =
            self.mapping(root, "the runbook", TOP_KEYS, &["version", "name", "steps"])
        else {
            return Lowered {
                runbook,
                all_ids,
                broken: std::mem::take(&mut self.broken),
            };
        };
        if !entries.iter().any(|e| e.key == "steps")
            && let Some(d) = self
                .diagnostics
                .iter_mut()
                .rev()
                .find(|d| d.code == Code::MissingKey && d.message.ends_with("`steps`"))
        {
            // A directory of runbooks often holds other YAML (Compose,
            // Helm values); CI shows its errors with no word of why.
            d.help = Some("every runbook has `steps`; if this file is not a runbook, leave it out of the paths given to `runbook validate`".into());
        }
        let mut seen_ids: IndexMap<String, Span> = IndexMap::new();
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "version" => match v.value {
                    Value::Int(1) => {}
                    Value::Int(n) => {
                        self.error(
                            Code::UnsupportedVersion,
                            v.span,
                            format!("runbook format version {n} is not supported"),
                        )
                        .help = Some("this engine reads `version: 1`".into());
                    }
                    _ => self.wrong_type(v, "version", "the integer `1`"),
                },
                "name" => {
                    if let Some(name) = self.string(v, "name") {
                        if !is_runbook_name(&name) {
                            let d = self.error(
                                Code::InvalidIdentifier,
                                v.span,
                                format!("runbook name `{}` is not valid", name.value),
                            );
                            d.label = Some("invalid name".into());
                            d.help = Some("use lower-case letters, digits, `-` and `_`, starting with a letter or digit".into());
                        }
                        runbook.name = name;
                    }
                }
                "description" => {
                    runbook.description = self.string(v, "description").map(|s| s.value)
                }
                "labels" => {
                    if let Some(map) = v.as_map() {
                        for e in map {
                            if let Some(s) = self.string(&e.value, &format!("labels.{}", e.key)) {
                                runbook.labels.insert(e.key.clone(), s.value);
                            }
                        }
                    } else {
                        self.wrong_type(v, "labels", "a mapping of strings");
                    }
                }
                "params" => runbook.params = self.params(v),
                "env" => runbook.env = self.string_map(v, "env", true),
                "timeout" => runbook.timeout = self.timeout(v, "timeout"),
                "defaults" => runbook.defaults = self.defaults(v),
                "steps" | "on_failure" | "finally" => {
                    let phase = match entry.key.as_str() {
                        "steps" => Phase::Main,
                        "on_failure" => Phase::OnFailure,
                        _ => Phase::Finally,
                    };
                    let steps = self.step_map(v, phase, &mut seen_ids, &mut all_ids);
                    // `steps: {}`, or `steps:` with nothing under it.
                    let nothing = match &v.value {
                        Value::Map(m) => m.is_empty(),
                        Value::Null => true,
                        _ => false,
                    };
                    if nothing && phase == Phase::Main {
                        let d = self.error(
                            Code::InvalidValue,
                            v.span,
                            "`steps` must not be empty".into(),
                        );
                        d.label = Some("no steps".into());
                        d.help = Some("add at least one step".into());
                    }
                    match phase {
                        Phase::Main => runbook.steps = steps,
                        Phase::OnFailure => runbook.on_failure = steps,
                        Phase::Finally | Phase::Rollback => runbook.finally = steps,
                    }
                }
                _ => {}
            }
        }
        Lowered {
            runbook,
            all_ids,
            broken: std::mem::take(&mut self.broken),
        }
    }

    fn defaults(&mut self, node: &Node) -> Defaults {
        let mut out = Defaults::default();
        let Some(entries) = self.mapping(node, "`defaults`", DEFAULTS_KEYS, &[]) else {
            return out;
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "timeout" => out.timeout = self.timeout(v, "defaults.timeout"),
                "retry" => out.retry = self.retry(v),
                "continue_on_failure" => {
                    out.continue_on_failure = self.bool(v, "defaults.continue_on_failure")
                }
                _ => {}
            }
        }
        out
    }

    fn step_map(
        &mut self,
        node: &Node,
        phase: Phase,
        seen: &mut IndexMap<String, Span>,
        all_ids: &mut IndexSet<String>,
    ) -> IndexMap<String, Step> {
        let mut out = IndexMap::new();
        // `on_failure:` with nothing under it has no steps; a `steps:` with
        // nothing under it is reported as empty by the caller.
        if matches!(node.value, Value::Null) {
            return out;
        }
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, phase.key(), "a mapping of step ids to steps");
            return out;
        };
        for entry in entries {
            let id = Spanned::new(entry.key.clone(), entry.key_span);
            if !is_step_id(&entry.key) {
                let d = self.error(
                    Code::InvalidIdentifier,
                    entry.key_span,
                    format!("step id {} is not valid", shown_key(&entry.key)),
                );
                d.label = Some("invalid step id".into());
                d.help = Some(
                    "use lower-case letters, digits, `-` and `_`, starting with a letter".into(),
                );
            }
            if let Some(first) = seen.get(&entry.key) {
                let d = self.error(
                    Code::DuplicateStepId,
                    entry.key_span,
                    format!(
                        "step id `{}` is already used (line {})",
                        entry.key, first.line
                    ),
                );
                d.label = Some("second definition".into());
                d.help = Some(
                    "step ids must be unique across `steps`, `on_failure` and `finally`".into(),
                );
                continue;
            }
            seen.insert(entry.key.clone(), entry.key_span);
            all_ids.insert(entry.key.clone());
            if let Some(step) = self.step(&entry.value, id, phase) {
                out.insert(entry.key.clone(), step);
            }
        }
        out
    }

    fn step(&mut self, node: &Node, id: Spanned<String>, phase: Phase) -> Option<Step> {
        let what = if phase == Phase::Rollback {
            let parent = id.value.strip_suffix(".rollback").unwrap_or(&id.value);
            format!("the rollback of step `{parent}`")
        } else {
            format!("step `{}`", id.value)
        };
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, &id.value, "a step mapping with a `type`");
            return None;
        };
        let type_node = node.get("type");
        let kind_keys: Option<&[&str]> = match type_node.map(|t| &t.value) {
            // A merge key (refused on its own) may hold the type.
            None if node.get("<<").is_some() => None,
            None => {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!("{what} is missing the required field `type`"),
                );
                d.label = Some("add `type` here".into());
                d.help = Some(format!("one of: {}", STEP_TYPES.join(", ")));
                None
            }
            Some(Value::Str(t)) => match t.as_str() {
                "shell" => Some(SHELL_KEYS),
                "http-check" => Some(HTTP_KEYS),
                "kubectl-action" => Some(KUBECTL_KEYS),
                "gate" => Some(GATE_KEYS),
                _ => {
                    let field = format!("{}.type", id.value);
                    self.invalid_choice(type_node.expect("matched Some"), &field, STEP_TYPES);
                    None
                }
            },
            Some(_) => {
                let field = format!("{}.type", id.value);
                self.invalid_choice(type_node.expect("matched Some"), &field, STEP_TYPES);
                None
            }
        };
        // With the type known, a key of another type is named as such.
        // Without it, a key that no type takes is still unknown: a typo in
        // `type` must not hide a typo in `needs`.
        if let Some(kind_keys) = kind_keys {
            self.unknown_keys_of_kind(entries, kind_keys, type_node, &what, phase);
        } else {
            let any: Vec<&str> = COMMON_KEYS
                .iter()
                .chain(SHELL_KEYS)
                .chain(HTTP_KEYS)
                .chain(KUBECTL_KEYS)
                .chain(GATE_KEYS)
                .copied()
                .collect();
            for entry in entries {
                if !any.contains(&entry.key.as_str()) {
                    self.unknown_key_of_step(entry, &what, &any, phase);
                    // Which fields a step takes depends on its type.
                    if let Some(d) = self.diagnostics.last_mut()
                        && d.help.as_deref().is_some_and(|h| h.contains(" accepts: "))
                    {
                        d.help = Some("no step type takes this field".into());
                    }
                }
            }
        }
        if phase == Phase::Rollback
            && let Some(entry) = entries.iter().find(|e| e.key == "idempotent")
        {
            let d = self.warning(
                Code::FieldNotApplicable,
                entry.key_span,
                "`idempotent` has no effect on a rollback step: one cut short by the engine's death runs again on resume".into(),
            );
            d.help = Some("make the rollback safe to run twice, or move the work into a main step, where `idempotent: false` makes `resume` ask".into());
        }
        if phase == Phase::Rollback {
            for forbidden in ["needs", "when", "rollback"] {
                if let Some(entry) = entries.iter().find(|e| e.key == forbidden) {
                    let d = self.error(
                        Code::FieldNotApplicable,
                        entry.key_span,
                        format!("a rollback step cannot have `{forbidden}`"),
                    );
                    d.help = Some("rollbacks run one at a time, in reverse order of completion, after a failure".into());
                }
            }
        }
        if matches!(phase, Phase::OnFailure | Phase::Finally)
            && let Some(entry) = entries.iter().find(|e| e.key == "rollback")
        {
            // The spec gives every step a `rollback`, so the file is valid;
            // it is still a mistake worth saying.
            let d = self.warning(
                Code::FieldNotApplicable,
                entry.key_span,
                format!("`rollback` on a step of `{}` would never run", phase.key()),
            );
            d.help = Some("rollbacks undo main steps after a failure; move the step into `steps`, or undo it with a later `finally` step".into());
        }
        if type_of(entries) == Some("gate")
            && let Some(entry) = entries.iter().find(|e| e.key == "retry")
        {
            let d = self.warning(
                Code::FieldNotApplicable,
                entry.key_span,
                "`retry` has no effect on a gate: a decision, a rejection included, is final"
                    .into(),
            );
            d.help = Some("a gate asks once (and `defaults.retry` does not apply to it); to ask again, add a second gate".into());
        }
        if let Some(kind) = type_of(entries).filter(|kind| *kind != "shell")
            && let Some(entry) = entries.iter().find(|e| e.key == "env")
        {
            let d = self.warning(
                Code::FieldNotApplicable,
                entry.key_span,
                format!("`env` has no effect on a step of type `{kind}`"),
            );
            d.help = Some(
                "`env` is the environment of a shell step's script; for a value in a URL, header or message, use a param or `{{env.NAME}}`".into(),
            );
        }
        let mut step = Step {
            id: id.clone(),
            span: node.span,
            phase,
            description: None,
            needs: Vec::new(),
            when: None,
            timeout: None,
            retry: None,
            continue_on_failure: None,
            rollback: None,
            env: IndexMap::new(),
            idempotent: true,
            kind: StepKind::Gate(Box::new(GateStep {
                message: template_of(node, String::new()),
                condition: None,
                on_timeout: None,
            })),
        };
        for entry in entries {
            let v = &entry.value;
            let field = entry.key.as_str();
            match field {
                "description" => step.description = self.string(v, field).map(|s| s.value),
                "needs" if phase != Phase::Rollback => step.needs = self.needs(v),
                // `when: false` is how a step is switched off for now.
                "when" if phase != Phase::Rollback => step.when = self.decision(v, field),
                "timeout" => step.timeout = self.typed_timeout(v, field),
                "retry" => step.retry = self.retry(v),
                "continue_on_failure" => step.continue_on_failure = self.bool(v, field),
                "rollback" if phase != Phase::Rollback => step.rollback = self.rollback(v, &id),
                "env" => step.env = self.string_map(v, field, true),
                "idempotent" => step.idempotent = self.bool(v, field).unwrap_or(true),
                _ => {}
            }
        }
        let kind = match type_node.and_then(Node::as_str) {
            Some("shell") => self
                .shell(node, &what)
                .map(|s| StepKind::Shell(Box::new(s))),
            Some("http-check") => self
                .http(node, &what)
                .map(|s| StepKind::HttpCheck(Box::new(s))),
            Some("kubectl-action") => self
                .kubectl(node, &what)
                .map(|s| StepKind::KubectlAction(Box::new(s))),
            Some("gate") => self.gate(node, &what).map(|s| StepKind::Gate(Box::new(s))),
            _ => None,
        };
        let Some(kind) = kind else {
            // Said already; the stand-in kind (an empty gate) lets the rest
            // of the file be checked around it.
            self.broken.insert(id.value.clone());
            return Some(step);
        };
        step.kind = kind;
        if let (Some(Rollback::Auto(span)), StepKind::KubectlAction(k)) =
            (&step.rollback, &step.kind)
        {
            if !k.action.has_inverse() {
                let d = self.error(
                    Code::RollbackNotInvertible,
                    *span,
                    format!(
                        "`rollback: auto` has no inverse for action `{}`",
                        k.action.as_str()
                    ),
                );
                d.label = Some("no automatic inverse".into());
                d.help = Some("`auto` works for `scale`, `patch` and `rollout-restart`; write an explicit rollback step instead".into());
            }
        } else if let Some(Rollback::Auto(span)) = &step.rollback {
            let d = self.error(
                Code::RollbackNotInvertible,
                *span,
                format!(
                    "`rollback: auto` is only for kubectl actions, and step `{}` is a `{}` step",
                    id.value,
                    step.kind.type_name()
                ),
            );
            d.help = Some(
                "write the rollback as a step, for example `rollback: {type: shell, run: ...}`"
                    .into(),
            );
        }
        Some(step)
    }

    fn needs(&mut self, node: &Node) -> Vec<Spanned<String>> {
        match &node.value {
            Value::Str(s) => vec![Spanned::new(s.clone(), node.span)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| self.string(item, "needs"))
                .collect(),
            _ => {
                self.wrong_type(node, "needs", "a step id or a list of step ids");
                Vec::new()
            }
        }
    }

    fn rollback(&mut self, node: &Node, parent: &Spanned<String>) -> Option<Rollback> {
        match &node.value {
            Value::Str(s) if s == "auto" => Some(Rollback::Auto(node.span)),
            Value::Map(_) => {
                let id = Spanned::new(format!("{}.rollback", parent.value), node.span);
                self.step(node, id, Phase::Rollback)
                    .map(|s| Rollback::Step(Box::new(s)))
            }
            _ => {
                let d = self.error(
                    Code::WrongType,
                    node.span,
                    format!(
                        "`rollback` of step `{}` must be `auto` or a step mapping, found {}",
                        parent.value,
                        node.type_name()
                    ),
                );
                d.label = Some("expected `auto` or a step".into());
                if let Value::Str(text) = &node.value
                    && text.trim().eq_ignore_ascii_case("auto")
                {
                    d.help = Some("did you mean `auto`? (lower case, nothing around it)".into());
                }
                None
            }
        }
    }

    fn missing(&mut self, node: &Node, what: &str, key: &str) {
        if node.get("<<").is_some() {
            // A merge key (refused on its own) may well hold the field: a
            // second error claiming it missing would be wrong as often as
            // right.
            return;
        }
        let d = self.error(
            Code::MissingKey,
            mapping_head(node),
            format!("{what} is missing the required field `{key}`"),
        );
        d.label = Some(format!("add `{key}` here"));
    }
}

/// The span of a mapping's first line, where "missing field" is reported
/// (pointing at the whole multi-line mapping would be noise).
fn mapping_head(node: &Node) -> Span {
    match node.as_map().and_then(|m| m.first()) {
        Some(first) => first.key_span,
        None => node.span,
    }
}

fn template_of(node: &Node, text: String) -> Template {
    Template {
        text,
        span: node.span,
        style: node.style.unwrap_or(ScalarKind::Plain),
    }
}

/// The `type` a step mapping declares, as written.
fn type_of(entries: &[Entry]) -> Option<&str> {
    entries
        .iter()
        .find(|e| e.key == "type")
        .and_then(|e| e.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::http_check::parse_status_class;
    use super::*;

    #[test]
    fn name_rules() {
        for id in ["a", "restart-api", "check_2", "x-"] {
            assert!(is_step_id(id), "{id}");
        }
        for id in ["", "2nd", "-a", "_a", "Restart", "a.b", "a b", "é", "aé"] {
            assert!(!is_step_id(id), "{id}");
        }
        assert!(is_runbook_name("2024-outage"));
        assert!(!is_runbook_name("_draft"));
        assert!(is_param_name("_private") && is_param_name("replicas_2"));
        assert!(!is_param_name("max-replicas") && !is_param_name("2x"));
        assert!(is_env_name("KUBECONFIG") && is_env_name("_x1"));
        assert!(!is_env_name("1X") && !is_env_name("A-B") && !is_env_name(""));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
        for signed in ["-1s", "+5s"] {
            let error = parse_duration(signed).expect_err(signed);
            assert!(error.to_string().contains("has a sign"), "{error}");
        }
        for out_of_range in ["0.0001ns", "99999999999999999999999s"] {
            let error = parse_duration(out_of_range).expect_err(out_of_range);
            assert!(error.to_string().contains("out of range"), "{error}");
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(parse_status_class("2xx"), Some(StatusPattern::Class(2)));
        assert_eq!(parse_status_class("404"), Some(StatusPattern::Code(404)));
        assert_eq!(parse_status_class("7xx"), None);
    }

    #[test]
    fn a_number_in_a_text_field_is_kept_as_written() {
        let text = "version: 1\nname: q\nenv: {A: 1.50, B: 0x10, C: 010, D: 12345678901234567890123, E: True}\nsteps:\n  s:\n    type: shell\n    run: echo\n    env:\n      F: 1.10   # why\n";
        let loaded = crate::load(std::path::Path::new("q.yaml"), text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.expect("a runbook");
        let env: Vec<&str> = runbook.env.values().map(|t| t.text.as_str()).collect();
        assert_eq!(
            env,
            ["1.50", "0x10", "010", "12345678901234567890123", "True"]
        );
        assert_eq!(runbook.steps["s"].env["F"].text, "1.10");

        // An anchor or a tag is not part of the value; an alias, or a plain
        // value folded over lines, is what YAML read.
        let text = "version: 1\nname: q\nenv:\n  A: &v 1.10\n  B: *v\n  C: !!float 2.50\n  D: a\n    b\nsteps:\n  s: {type: shell, run: echo}\n";
        let loaded = crate::load(std::path::Path::new("q.yaml"), text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.expect("a runbook");
        let env: Vec<&str> = runbook.env.values().map(|t| t.text.as_str()).collect();
        assert_eq!(env, ["1.10", "1.1", "2.50", "a b"]);
    }

    #[test]
    fn quoted_literals_of_typed_fields_are_literals() {
        let text = "version: 1\nname: q\nsteps:\n  s: {type: kubectl-action, action: scale, resource: deployment/x, replicas: \"3\"}\n  h: {type: http-check, url: \"http://h/\", insecure: \"true\"}\n";
        let loaded = crate::load(std::path::Path::new("q.yaml"), text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let runbook = loaded.runbook.expect("a runbook");
        let StepKind::KubectlAction(scale) = &runbook.steps["s"].kind else {
            panic!("s is a kubectl action")
        };
        assert_eq!(scale.replicas.as_ref().and_then(Typed::literal), Some(&3));
        let StepKind::HttpCheck(http) = &runbook.steps["h"].kind else {
            panic!("h is an http check")
        };
        assert_eq!(http.insecure.as_ref().and_then(Typed::literal), Some(&true));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("neds", COMMON_KEYS.iter().copied()),
            Some("needs")
        );
        assert_eq!(did_you_mean("zzzzzz", COMMON_KEYS.iter().copied()), None);
    }
}
