//! The second parsing phase: lowering the spanned YAML tree into the typed
//! [`Runbook`], reporting every unknown key, missing key and wrong type with
//! the position of the node at fault. Lowering never stops at the first
//! problem: a broken field is reported and skipped so the rest of the file is
//! still checked.

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
}

pub(crate) struct Lowerer<'a> {
    pub diagnostics: Vec<Diagnostic>,
    source: &'a str,
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

    /// Checks that `node` is a mapping, reports unknown keys (with a
    /// suggestion) and missing required keys, and returns its entries.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
        required: &[&str],
    ) -> Option<&'n [Entry]> {
        let Some(entries) = node.as_map() else {
            self.error(
                Code::WrongType,
                node.span,
                format!("{what} must be a mapping, found {}", node.type_name()),
            )
            .label = Some("expected a mapping".into());
            return None;
        };
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                self.unknown_key(entry, what, known);
            }
        }
        for key in required {
            if !entries.iter().any(|e| e.key == *key) {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!("{what} is missing the required field `{key}`"),
                );
                d.label = Some(format!("add `{key}` here"));
            }
        }
        Some(entries)
    }

    fn unknown_key(&mut self, entry: &Entry, what: &str, known: &[&str]) {
        let suggestion = did_you_mean(&entry.key, known.iter().copied());
        let help = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("{what} accepts: {}", known.join(", ")),
        };
        let (label, help) = if entry.key == "<<" {
            (
                "YAML merge keys are not supported".to_string(),
                "merge keys are not part of YAML 1.2: write the fields out (`defaults` sets a timeout and retry for every step)".to_string(),
            )
        } else {
            ("unknown key".to_string(), help)
        };
        let d = self.error(
            Code::UnknownKey,
            entry.key_span,
            format!("unknown field `{}` in {what}", entry.key),
        );
        d.label = Some(label);
        d.help = Some(help);
    }

    /// [`Self::unknown_key`] for a step's field: the names other tools use
    /// for a field are pointed at ours, and a rollback's help leaves out
    /// the fields a rollback cannot have.
    fn unknown_key_of_step(&mut self, entry: &Entry, what: &str, known: &[&str], phase: Phase) {
        let listed: Vec<&str> = known
            .iter()
            .copied()
            .filter(|k| phase != Phase::Rollback || !["needs", "when", "rollback"].contains(k))
            .collect();
        let synonym = STEP_FIELD_SYNONYMS
            .iter()
            .find(|(other, ours)| *other == entry.key && listed.contains(ours))
            .map(|(_, ours)| *ours);
        self.unknown_key(entry, what, &listed);
        if let (Some(ours), Some(d)) = (synonym, self.diagnostics.last_mut()) {
            d.help = Some(format!("did you mean `{ours}`?"));
        }
    }

    /// Reports the keys of a step of known type that it does not take:
    /// those of another type as such, the rest as unknown.
    fn unknown_keys_of_kind(
        &mut self,
        entries: &[Entry],
        kind_keys: &[&str],
        type_node: Option<&Node>,
        what: &str,
        phase: Phase,
    ) {
        let known: Vec<&str> = COMMON_KEYS.iter().chain(kind_keys).copied().collect();
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                let elsewhere = [
                    ("shell", SHELL_KEYS),
                    ("http-check", HTTP_KEYS),
                    ("kubectl-action", KUBECTL_KEYS),
                    ("gate", GATE_KEYS),
                ]
                .into_iter()
                .find(|(_, keys)| keys.contains(&entry.key.as_str()));
                match elsewhere {
                    Some((owner, _)) => {
                        let type_name = type_node.and_then(Node::as_str).unwrap_or_default();
                        let d = self.error(
                            Code::UnknownKey,
                            entry.key_span,
                            format!(
                                "field `{}` does not apply to a `{type_name}` step",
                                entry.key
                            ),
                        );
                        d.label = Some(format!("only `{owner}` steps take this field"));
                    }
                    None => self.unknown_key_of_step(entry, what, &known, phase),
                }
            }
        }
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        if let Value::Float(f) = node.value
            && expected.starts_with("an integer")
            && f.fract() == 0.0
        {
            // A whole number: either beyond what an integer holds, or
            // written with a fraction (`3.0`), which YAML reads as a float.
            let written = self
                .source
                .get(node.span.start..node.span.end)
                .unwrap_or_default()
                .trim();
            let (code, message, help) = if f.abs() >= 9.2e18 {
                (
                    Code::InvalidValue,
                    format!(
                        "`{field}` must be {expected}, found `{written}`, beyond the largest integer ({})",
                        i64::MAX
                    ),
                    None,
                )
            } else {
                (
                    Code::WrongType,
                    format!("`{field}` must be {expected}, found the float `{written}`"),
                    Some(format!(
                        "write `{f}` without a fraction or exponent: YAML reads it as a float"
                    )),
                )
            };
            let d = self.error(code, node.span, message);
            d.label = Some(format!("expected {expected}"));
            d.help = help;
            return;
        }
        let hint = match (&node.value, expected) {
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), "a string") => {
                Some("quote the value to make it a string".to_string())
            }
            // YAML 1.1 (and so PyYAML and older tools) read these as
            // booleans; YAML 1.2, which runbook follows, reads text.
            (Value::Str(s), _) if expected.starts_with("`true`") => {
                match s.to_ascii_lowercase().as_str() {
                    "yes" | "on" | "y" => Some(format!(
                        "write `true`: in YAML 1.2 `{s}` is text, not a boolean"
                    )),
                    "no" | "off" | "n" => Some(format!(
                        "write `false`: in YAML 1.2 `{s}` is text, not a boolean"
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        let d = self.error(
            Code::WrongType,
            node.span,
            format!("`{field}` must be {expected}, found {}", node.type_name()),
        );
        d.label = Some(format!("expected {expected}"));
        d.help = hint;
    }

    fn template(&mut self, node: &Node, field: &str) -> Option<Template> {
        let text = self.string(node, field)?;
        Some(template_of(node, text.value))
    }

    /// Like [`Self::template`] but accepts numbers and booleans as their text;
    /// environment values and headers are often written unquoted.
    fn scalar_template(&mut self, node: &Node, field: &str) -> Option<Template> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            // Text as written: `VERSION: 1.10` is not `1.1`, `0x10` not `16`.
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                crate::yaml::written_text(node, self.source)
            }
            _ => {
                self.wrong_type(node, field, "a string");
                return None;
            }
        };
        Some(template_of(node, text))
    }

    fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, field, "`true` or `false`");
                None
            }
        }
    }

    fn typed_bool(&mut self, node: &Node, field: &str) -> Option<Typed<bool>> {
        match &node.value {
            Value::Bool(b) => Some(Typed::Literal(Spanned::new(*b, node.span))),
            // Quoted, as a template's result would be: `"true"`.
            Value::Str(s) if matches!(s.trim(), "true" | "false") => {
                Some(Typed::Literal(Spanned::new(s.trim() == "true", node.span)))
            }
            Value::Str(s) if s.contains("{{") => {
                Some(Typed::Template(template_of(node, s.clone())))
            }
            _ => {
                self.wrong_type(node, field, "`true`, `false` or a template");
                None
            }
        }
    }

    /// One of a few words, or a template rendering to one (the spec allows
    /// a template in every string value).
    fn typed_choice<T: Copy>(
        &mut self,
        node: &Node,
        field: &str,
        choices: &[(&str, T)],
    ) -> Option<Typed<T>> {
        if let Value::Str(text) = &node.value
            && text.contains("{{")
        {
            return Some(Typed::Template(template_of(node, text.clone())));
        }
        match choices
            .iter()
            .find(|(name, _)| node.as_str() == Some(*name))
        {
            Some((_, value)) => Some(Typed::Literal(Spanned::new(*value, node.span))),
            None => {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                self.invalid_choice(node, field, &names);
                None
            }
        }
    }

    fn typed_int(
        &mut self,
        node: &Node,
        field: &str,
        range: RangeInclusive<i64>,
    ) -> Option<Typed<i64>> {
        match &node.value {
            Value::Int(i) if range.contains(i) => Some(Typed::Literal(Spanned::new(*i, node.span))),
            Value::Int(i) if i < range.start() => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` must be at least {}, found {i}", range.start()),
                )
                .label = Some("too small".into());
                None
            }
            Value::Int(i) => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` must be at most {}, found {i}", range.end()),
                )
                .label = Some("too large".into());
                None
            }
            Value::Str(s) if s.contains("{{") => {
                Some(Typed::Template(template_of(node, s.clone())))
            }
            // Quoted, as a template's result would be: `"3"`.
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => {
                let value = Node {
                    value: Value::Int(s.trim().parse().unwrap_or_default()),
                    span: node.span,
                    style: node.style,
                };
                self.typed_int(&value, field, range)
            }
            _ => {
                self.wrong_type(node, field, "an integer or a template");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, field: &str) -> Option<Spanned<Duration>> {
        match &node.value {
            Value::Str(s) => match parse_duration(s) {
                Ok(d) => Some(Spanned::new(d, node.span)),
                Err(why) => {
                    let d = self.error(
                        Code::InvalidDuration,
                        node.span,
                        format!("`{field}` is not a valid duration: {why}"),
                    );
                    d.label = Some("invalid duration".into());
                    d.help = Some(
                        "write a number with a unit, such as `500ms`, `30s`, `5m` or `1h30m`"
                            .into(),
                    );
                    None
                }
            },
            Value::Int(_) | Value::Float(_) => {
                let d = self.error(
                    Code::InvalidDuration,
                    node.span,
                    format!("`{field}` is a bare number, which is ambiguous"),
                );
                d.label = Some("no unit".into());
                d.help = Some("add a unit, such as `30s` or `5m`".into());
                None
            }
            _ => {
                self.wrong_type(node, field, "a duration such as `30s`");
                None
            }
        }
    }

    /// A `timeout`: a duration above zero. `0s` would stop the step (or
    /// the run) at once, or not, by a race with its first event.
    fn timeout(&mut self, node: &Node, field: &str) -> Option<Spanned<Duration>> {
        let timeout = self.duration(node, field)?;
        if timeout.value < crate::MIN_TIMEOUT {
            let (why, label) = if timeout.value.is_zero() {
                ("is zero", "zero")
            } else {
                ("is shorter than a millisecond", "too short")
            };
            let d = self.error(
                Code::InvalidDuration,
                node.span,
                format!("`{field}` {why}: nothing could run in it"),
            );
            d.label = Some(label.into());
            d.help = Some(
                "give the time it may take, such as `30s`, or leave it out for the default".into(),
            );
            return None;
        }
        Some(timeout)
    }

    fn typed_duration(&mut self, node: &Node, field: &str) -> Option<Typed<Duration>> {
        self.typed(node, field, Self::duration)
    }

    /// A step's `timeout`: a template, or a literal above zero.
    fn typed_timeout(&mut self, node: &Node, field: &str) -> Option<Typed<Duration>> {
        self.typed(node, field, Self::timeout)
    }

    /// A template (checked when the step runs), else `literal`'s value.
    fn typed(
        &mut self,
        node: &Node,
        field: &str,
        literal: fn(&mut Self, &Node, &str) -> Option<Spanned<Duration>>,
    ) -> Option<Typed<Duration>> {
        match &node.value {
            Value::Str(s) if s.contains("{{") => {
                Some(Typed::Template(template_of(node, s.clone())))
            }
            _ => literal(self, node, field).map(Typed::Literal),
        }
    }

    fn string_map(
        &mut self,
        node: &Node,
        field: &str,
        env_names: bool,
    ) -> IndexMap<String, Template> {
        let mut out = IndexMap::new();
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, field, "a mapping");
            return out;
        };
        for entry in entries {
            if env_names && !is_env_name(&entry.key) {
                self.error(
                    Code::InvalidIdentifier,
                    entry.key_span,
                    format!(
                        "`{}` is not a valid environment variable name in `{field}`",
                        entry.key
                    ),
                )
                .help = Some("use letters, digits and `_`, not starting with a digit".into());
                continue;
            }
            if let Some(t) = self.scalar_template(&entry.value, &format!("{field}.{}", entry.key)) {
                out.insert(entry.key.clone(), t);
            }
        }
        out
    }

    /// Header names are never templated, so a name HTTP cannot carry
    /// (a space, a colon) fails every run.
    fn check_header_names(&mut self, node: &Node) {
        for entry in node.as_map().unwrap_or_default() {
            if http::HeaderName::from_bytes(entry.key.as_bytes()).is_err() {
                let d = self.error(
                    Code::InvalidValue,
                    entry.key_span,
                    format!("`{}` is not a valid HTTP header name", entry.key),
                );
                d.label = Some("not a header name".into());
                d.help = Some(
                    "a header name is letters, digits and `-` (no spaces or `:`), such as `X-Request-Id`"
                        .into(),
                );
            }
        }
    }

    fn template_list(&mut self, node: &Node, field: &str) -> Option<Vec<Template>> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, field, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            out.push(self.scalar_template(item, field)?);
        }
        Some(out)
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let entries = self.mapping(node, "`retry`", RETRY_KEYS, &[])?;
        let mut retry = Retry::default();
        let mut ok = true;
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "attempts" => match v.value {
                    Value::Int(n) if (1..=1000).contains(&n) => retry.attempts = n as u32,
                    Value::Int(n) => {
                        ok = false;
                        self.error(
                            Code::InvalidValue,
                            v.span,
                            format!("`retry.attempts` must be between 1 and 1000, found {n}"),
                        )
                        .help = Some("`attempts` counts every try, including the first".into());
                    }
                    _ => {
                        ok = false;
                        self.wrong_type(v, "retry.attempts", "an integer from 1 to 1000");
                    }
                },
                "delay" => match self.duration(v, "retry.delay") {
                    Some(d) => retry.delay = d.value,
                    None => ok = false,
                },
                "max_delay" => match self.duration(v, "retry.max_delay") {
                    Some(d) => retry.max_delay = d.value,
                    None => ok = false,
                },
                "backoff" => match v.as_str() {
                    Some("exponential") => retry.backoff = Backoff::Exponential,
                    Some("fixed") => retry.backoff = Backoff::Fixed,
                    _ => {
                        ok = false;
                        self.invalid_choice(v, "retry.backoff", &["exponential", "fixed"]);
                    }
                },
                _ => {}
            }
        }
        ok.then_some(retry)
    }

    fn invalid_choice(&mut self, node: &Node, field: &str, choices: &[&str]) {
        let shown = match &node.value {
            Value::Str(s) => format!("`{s}`"),
            _ => node.type_name().to_string(),
        };
        let suggestion = node
            .as_str()
            .and_then(|s| did_you_mean(s, choices.iter().copied()));
        let d = self.error(
            Code::InvalidValue,
            node.span,
            format!(
                "`{field}` must be one of {}, found {shown}",
                choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        d.label = Some("not a valid choice".into());
        d.help = suggestion.map(|s| format!("did you mean `{s}`?"));
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
            return Lowered { runbook, all_ids };
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
                    if phase == Phase::Main
                        && steps.is_empty()
                        && matches!(&v.value, Value::Map(m) if m.is_empty())
                    {
                        let d = self.error(
                            Code::InvalidValue,
                            v.span,
                            "`steps` must not be empty".into(),
                        );
                        d.label = Some("no steps".into());
                        d.help = Some("add at least one step".into());
                    }
                    if matches!(v.value, Value::Null) && phase == Phase::Main {
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
        Lowered { runbook, all_ids }
    }

    fn params(&mut self, node: &Node) -> IndexMap<String, Param> {
        let mut out = IndexMap::new();
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, "params", "a mapping of param names to declarations");
            return out;
        };
        for entry in entries {
            if !is_param_name(&entry.key) {
                let d = self.error(
                    Code::InvalidIdentifier,
                    entry.key_span,
                    format!("param name {} is not valid", shown_key(&entry.key)),
                );
                d.label = Some("invalid param name".into());
                d.help = Some("use lower-case letters, digits and `_`, starting with a letter or `_` (templates read it as `params.NAME`)".into());
            }
            // `name: {}` and `name:` both declare a required string param.
            let empty = Node {
                value: Value::Map(Vec::new()),
                span: entry.value.span,
                style: None,
            };
            let decl = if matches!(entry.value.value, Value::Null) {
                &empty
            } else {
                &entry.value
            };
            if let Some(param) = self.param(decl, &entry.key, entry.key_span) {
                out.insert(entry.key.clone(), param);
            }
        }
        out
    }

    fn param(&mut self, node: &Node, name: &str, key_span: Span) -> Option<Param> {
        let what = format!("param `{name}`");
        let entries = self.mapping(node, &what, PARAM_KEYS, &[])?;
        let mut param = Param {
            description: None,
            kind: ParamType::String,
            default: None,
            required: None,
            secret: false,
            env: None,
            allowed: None,
            span: key_span,
        };
        if let Some(t) = node.get("type") {
            match t.as_str() {
                Some("string") => param.kind = ParamType::String,
                Some("integer") => param.kind = ParamType::Integer,
                Some("number") => param.kind = ParamType::Number,
                Some("boolean") => param.kind = ParamType::Boolean,
                _ => self.invalid_choice(
                    t,
                    &format!("params.{name}.type"),
                    &["string", "integer", "number", "boolean"],
                ),
            }
        }
        for entry in entries {
            let v = &entry.value;
            let field = format!("params.{name}.{}", entry.key);
            match entry.key.as_str() {
                "description" => param.description = self.string(v, &field).map(|s| s.value),
                "required" => param.required = self.bool(v, &field),
                "secret" => param.secret = self.bool(v, &field).unwrap_or(false),
                "env" => {
                    if let Some(s) = self.string(v, &field) {
                        if !is_env_name(&s) {
                            self.error(
                                Code::InvalidIdentifier,
                                v.span,
                                format!(
                                    "`{field}` must name an environment variable, found `{}`",
                                    s.value
                                ),
                            );
                        }
                        param.env = Some(s.value);
                    }
                }
                "default" => param.default = self.param_value(v, param.kind, &field),
                "allowed" => {
                    if let Value::Seq(items) = &v.value {
                        if items.is_empty() {
                            self.error(
                                Code::InvalidValue,
                                v.span,
                                format!("`{field}` must list at least one value"),
                            );
                        }
                        let values: Vec<ParamValue> = items
                            .iter()
                            .filter_map(|item| self.param_value(item, param.kind, &field))
                            .collect();
                        param.allowed = Some(values);
                    } else {
                        self.wrong_type(v, &field, "a list of values");
                    }
                }
                _ => {}
            }
        }
        if let (Some(default), Some(allowed)) = (&param.default, &param.allowed)
            && !allowed.is_empty()
            && !allowed.contains(default)
        {
            let span = node.get("default").map_or(node.span, |n| n.span);
            let d = self.error(
                Code::InvalidValue,
                span,
                format!("the default of param `{name}` is not one of its `allowed` values"),
            );
            d.help = Some(format!(
                "allowed: {}",
                allowed
                    .iter()
                    .map(ParamValue::to_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Some(param)
    }

    fn param_value(&mut self, node: &Node, kind: ParamType, field: &str) -> Option<ParamValue> {
        match (kind, &node.value) {
            (ParamType::String, Value::Str(s)) if s.contains('\0') => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` holds a NUL byte, which no command line or environment variable can carry"),
                );
                None
            }
            (ParamType::String, Value::Str(s)) => Some(ParamValue::String(s.clone())),
            (ParamType::Integer, Value::Int(i)) => Some(ParamValue::Integer(*i)),
            (ParamType::Number, Value::Int(i)) => Some(ParamValue::Number(*i as f64)),
            (ParamType::Number, Value::Float(f)) if f.is_finite() => Some(ParamValue::Number(*f)),
            // `.nan` and `.inf` are YAML floats, but no comparison or command
            // can use one: refused as `--set n=NaN` is.
            (ParamType::Number, Value::Float(_)) => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` must be a finite number, not `.nan` or an infinity"),
                )
                .help = Some("no comparison or command can use one".to_string());
                None
            }
            (ParamType::Boolean, Value::Bool(b)) => Some(ParamValue::Boolean(*b)),
            _ => {
                let expected = match kind {
                    ParamType::String => "a string (the param's type is `string`)",
                    ParamType::Integer => "an integer (the param's type is `integer`)",
                    ParamType::Number => "a number (the param's type is `number`)",
                    ParamType::Boolean => "a boolean (the param's type is `boolean`)",
                };
                self.wrong_type(node, field, expected);
                None
            }
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
        }?;
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

    fn shell(&mut self, node: &Node, what: &str) -> Option<ShellStep> {
        let entries = node.as_map()?;
        let mut ok = true;
        let run = match node.get("run") {
            Some(v) => self.template(v, "run"),
            None => {
                self.missing(node, what, "run");
                None
            }
        };
        let mut step = ShellStep {
            run: run.unwrap_or_else(|| {
                ok = false;
                template_of(node, String::new())
            }),
            shell: None,
            workdir: None,
            success_exit_codes: None,
            read_only: None,
            stop_signal: None,
            grace: None,
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "shell" => {
                    step.shell = self.template_list(v, "shell");
                    if step.shell.as_deref().is_some_and(blank_program) {
                        self.error(
                            Code::InvalidValue,
                            v.span,
                            "`shell` must name a program, such as `[\"sh\", \"-c\"]`".into(),
                        );
                    }
                }
                "workdir" => step.workdir = self.template(v, "workdir"),
                "success_exit_codes" => match &v.value {
                    Value::Seq(items) => {
                        let mut codes = Vec::new();
                        for item in items {
                            match item.value {
                                Value::Int(c) if (0..=255).contains(&c) => codes.push(c as i32),
                                Value::Int(c) => {
                                    ok = false;
                                    self.error(
                                        Code::InvalidValue,
                                        item.span,
                                        format!("`success_exit_codes` must hold exit codes from 0 to 255, found {c}"),
                                    )
                                    .label = Some("not an exit code".into());
                                }
                                _ => {
                                    ok = false;
                                    self.wrong_type(
                                        item,
                                        "success_exit_codes",
                                        "an exit code from 0 to 255",
                                    );
                                }
                            }
                        }
                        if items.is_empty() {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                "`success_exit_codes` is an empty list, so the step could never succeed".into(),
                            );
                            d.help = Some(
                                "list the exit codes that count as success, such as `[0, 1]`"
                                    .into(),
                            );
                        }
                        step.success_exit_codes = Some(Spanned::new(codes, v.span));
                    }
                    Value::Int(c) if (0..=255).contains(c) => {
                        step.success_exit_codes = Some(Spanned::new(vec![*c as i32], v.span))
                    }
                    _ => self.wrong_type(v, "success_exit_codes", "a list of exit codes"),
                },
                "read_only" => step.read_only = self.typed_bool(v, "read_only"),
                "stop_signal" => {
                    if let Value::Str(text) = &v.value
                        && text.contains("{{")
                    {
                        step.stop_signal = Some(Typed::Template(template_of(v, text.clone())));
                    } else if let Some(s) = self.string(v, "stop_signal") {
                        let normalized = if s.starts_with("SIG") {
                            s.value.clone()
                        } else {
                            format!("SIG{}", s.value)
                        };
                        if SIGNALS.contains(&normalized.as_str()) {
                            step.stop_signal =
                                Some(Typed::Literal(Spanned::new(normalized, s.span)));
                        } else {
                            self.invalid_choice(v, "stop_signal", SIGNALS);
                        }
                    }
                }
                "grace" => step.grace = self.typed_duration(v, "grace"),
                _ => {}
            }
        }
        ok.then_some(step)
    }

    fn missing(&mut self, node: &Node, what: &str, key: &str) {
        let d = self.error(
            Code::MissingKey,
            mapping_head(node),
            format!("{what} is missing the required field `{key}`"),
        );
        d.label = Some(format!("add `{key}` here"));
    }

    fn http(&mut self, node: &Node, what: &str) -> Option<HttpCheckStep> {
        let entries = node.as_map()?;
        let url = match node.get("url") {
            Some(v) => self.template(v, "url"),
            None => {
                self.missing(node, what, "url");
                None
            }
        };
        if let (Some(url), Some(v)) = (&url, node.get("url"))
            && !url.is_templated()
        {
            let text = url.text.trim().to_ascii_lowercase();
            let rest = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"));
            if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
                let d = self.error(
                    Code::InvalidValue,
                    v.span,
                    format!(
                        "`url` must be an http:// or https:// URL, got `{}`",
                        url.text.trim()
                    ),
                );
                d.label = Some("not an HTTP URL".into());
                d.help = Some("write the whole URL, such as `http://127.0.0.1:8080/health`".into());
            } else if let Err(error) = url::Url::parse(url.text.trim()) {
                // The parser the step uses at run time: what it refuses
                // here would fail every run.
                let d = self.error(
                    Code::InvalidValue,
                    v.span,
                    format!("`url` is not a valid URL ({error}): `{}`", url.text.trim()),
                );
                d.label = Some("not a valid URL".into());
                d.help = Some(
                    "percent-encode spaces and other reserved characters (`%20`), and check the port (at most 65535)".into(),
                );
            }
        }
        let mut step = HttpCheckStep {
            url: url
                .clone()
                .unwrap_or_else(|| template_of(node, String::new())),
            method: None,
            headers: IndexMap::new(),
            body: None,
            json: None,
            insecure: None,
            ca_cert: None,
            expect: Expect::default(),
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "method" => {
                    step.method = self.template(v, "method");
                    if let Some(m) = &step.method
                        && !m.is_templated()
                        && (m.text.is_empty() || !m.text.chars().all(|c| c.is_ascii_alphabetic()))
                    {
                        self.error(
                            Code::InvalidValue,
                            v.span,
                            format!(
                                "`method` must be an HTTP method such as GET or POST, found `{}`",
                                m.text
                            ),
                        );
                    } else if let Some(m) = &step.method
                        && !m.is_templated()
                        && !STANDARD_METHODS.contains(&m.text.to_ascii_uppercase().as_str())
                    {
                        // Servers do define their own (a cache's PURGE), so
                        // this is a warning; a typo of a standard one is more
                        // likely, and would be sent as written.
                        let suggestion = did_you_mean(
                            &m.text.to_ascii_uppercase(),
                            STANDARD_METHODS.iter().copied(),
                        );
                        let d = self.warning(
                            Code::InvalidValue,
                            v.span,
                            format!("`{}` is not a standard HTTP method", m.text),
                        );
                        d.help = Some(match suggestion {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "the standard methods are {}; a server's own method is sent as written",
                                STANDARD_METHODS.join(", ")
                            ),
                        });
                    }
                }
                "headers" => {
                    step.headers = self.string_map(v, "headers", false);
                    self.check_header_names(v);
                }
                "body" => step.body = self.template(v, "body"),
                "json" => step.json = Some(v.clone()),
                "insecure" => step.insecure = self.typed_bool(v, "insecure"),
                "ca_cert" => step.ca_cert = self.template(v, "ca_cert"),
                "expect" => step.expect = self.expect(v).unwrap_or_default(),
                _ => {}
            }
        }
        if let (Some(body), Some(_)) = (node.get("body"), node.get("json")) {
            let d = self.error(
                Code::FieldNotApplicable,
                body.span,
                "`body` and `json` cannot both be set".into(),
            );
            d.help = Some(
                "use `json` for a JSON body (it sets Content-Type), or `body` for any other text"
                    .into(),
            );
        }
        url.map(|_| step)
    }

    fn expect(&mut self, node: &Node) -> Option<Expect> {
        let entries = self.mapping(node, "`expect`", EXPECT_KEYS, &[])?;
        let mut out = Expect::default();
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "status" => {
                    out.status = match &v.value {
                        Value::Str(s) if s.contains("{{") => {
                            Some(Typed::Template(template_of(v, s.clone())))
                        }
                        _ => self.status(v).map(Typed::Literal),
                    }
                }
                "body_contains" => {
                    match &v.value {
                        // An expectation that checks nothing passes every
                        // response; written, it was meant to check something.
                        Value::Seq(items) if items.is_empty() => {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                "`expect.body_contains` is an empty list: it checks nothing".into(),
                            );
                            d.help = Some(
                                "list the text the body must contain, or leave the field out"
                                    .into(),
                            );
                        }
                        Value::Seq(items) => {
                            out.body_contains = items
                                .iter()
                                .filter_map(|i| self.template(i, "expect.body_contains"))
                                .collect()
                        }
                        _ => {
                            out.body_contains = self
                                .template(v, "expect.body_contains")
                                .into_iter()
                                .collect()
                        }
                    }
                    // Every body contains the empty text: like an empty
                    // list, it checks nothing.
                    for needle in out.body_contains.iter().filter(|t| t.text.is_empty()) {
                        let d = self.error(
                            Code::InvalidValue,
                            needle.span,
                            "`expect.body_contains` holds an empty text, which every body contains"
                                .into(),
                        );
                        d.help = Some("write the text the body must contain".into());
                    }
                }
                "body_matches" => {
                    out.body_matches = self.template(v, "expect.body_matches");
                    if let Some(t) = &out.body_matches
                        && t.text.is_empty()
                    {
                        let d = self.error(
                            Code::InvalidValue,
                            v.span,
                            "`expect.body_matches` is empty: it matches every body".into(),
                        );
                        d.help = Some(
                            "give the pattern the body must match, or leave the field out".into(),
                        );
                    } else if let Some(t) = &out.body_matches
                        && !t.is_templated()
                        && let Err(e) = Regex::new(&t.text)
                    {
                        let d = self.error(
                            Code::InvalidValue,
                            v.span,
                            "`expect.body_matches` is not a valid regular expression".into(),
                        );
                        d.help = Some(regex_error_summary(&e));
                    }
                }
                "json" => {
                    if let Some(map) = v.as_map() {
                        for e in map {
                            if !(e.key.is_empty() || e.key.starts_with('/')) {
                                let d = self.error(
                                    Code::InvalidValue,
                                    e.key_span,
                                    format!("`{}` is not a JSON Pointer", e.key),
                                );
                                d.help = Some(format!(
                                    "JSON Pointers start with `/`, such as `/{}`",
                                    e.key.replace('.', "/")
                                ));
                                continue;
                            }
                            // RFC 6901: `~` only as `~0` (a `~`) or `~1` (a `/`).
                            let bad_escape = e.key.match_indices('~').any(|(at, _)| {
                                !matches!(e.key.as_bytes().get(at + 1), Some(b'0' | b'1'))
                            });
                            if bad_escape {
                                let d = self.error(
                                    Code::InvalidValue,
                                    e.key_span,
                                    format!("`{}` is not a JSON Pointer", e.key),
                                );
                                d.help = Some(
                                    "in a JSON Pointer `~` must be written `~0`, and a `/` inside a key `~1`"
                                        .to_string(),
                                );
                                continue;
                            }
                            out.json.insert(e.key.clone(), e.value.clone());
                        }
                    } else {
                        self.wrong_type(
                            v,
                            "expect.json",
                            "a mapping of JSON Pointers to expected values",
                        );
                    }
                }
                "max_latency" => out.max_latency = self.typed_duration(v, "expect.max_latency"),
                _ => {}
            }
        }
        Some(out)
    }

    fn status(&mut self, node: &Node) -> Option<Spanned<Vec<StatusPattern>>> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            let pattern = match &item.value {
                Value::Int(code) if (100..=599).contains(code) => {
                    Some(StatusPattern::Code(*code as u16))
                }
                Value::Str(s) => parse_status_class(s),
                _ => None,
            };
            match pattern {
                Some(p) => out.push(p),
                None => {
                    let d = self.error(
                        Code::InvalidValue,
                        item.span,
                        "`expect.status` must be an HTTP status code (100-599), a class such as `2xx`, or a list of them".into(),
                    );
                    d.label = Some("not a status".into());
                }
            }
        }
        if matches!(&node.value, Value::Seq(items) if items.is_empty()) {
            // An empty list would quietly mean the default, `2xx`.
            let d = self.error(
                Code::InvalidValue,
                node.span,
                "`expect.status` is an empty list".into(),
            );
            d.help = Some(
                "list the accepted statuses, or leave `status` out for the default `2xx`".into(),
            );
        }
        Some(Spanned::new(out, node.span))
    }

    /// A `when` or a gate's `condition`: a boolean, or a template that
    /// must render to `true` or `false`. Text without a template can only
    /// be one of those two, or it would fail every run.
    fn decision(&mut self, v: &Node, field: &str) -> Option<Template> {
        if let Value::Bool(b) = v.value {
            return Some(template_of(v, b.to_string()));
        }
        let template = self.template(v, field)?;
        if !template.is_templated() && !matches!(template.text.trim(), "true" | "false") {
            let d = self.error(
                Code::InvalidValue,
                v.span,
                format!(
                    "`{field}` must be `true`, `false` or a template rendering to one of them, found `{}`",
                    template.text.trim()
                ),
            );
            d.label = Some("not a boolean".into());
            d.help = Some(
                "such as `{{steps.health.failed}}` or `{{eq params.mode \"restore\"}}`".into(),
            );
        } else if let Ok(analysis) = crate::template::analyze(&template.text)
            && !analysis.outer_text.trim().is_empty()
        {
            // `true {{x}}` renders to two words at best.
            let d = self.error(
                Code::InvalidValue,
                v.span,
                format!(
                    "`{field}` has text outside its template (`{}`), so it can never render to just `true` or `false`",
                    analysis.outer_text.trim()
                ),
            );
            d.label = Some("not a boolean".into());
            d.help = Some("keep only the template, such as `{{eq params.mode \"restore\"}}`; inside `{{#if}}` blocks, text is fine".into());
        }
        Some(template)
    }

    fn kubectl(&mut self, node: &Node, what: &str) -> Option<KubectlStep> {
        let entries = node.as_map()?;
        let action_node = match node.get("action") {
            Some(a) => a,
            None => {
                self.missing(node, what, "action");
                return None;
            }
        };
        let names: Vec<&str> = KubectlAction::ALL.iter().map(|a| a.as_str()).collect();
        let Some(action) = KubectlAction::ALL
            .iter()
            .copied()
            .find(|a| action_node.as_str() == Some(a.as_str()))
        else {
            self.invalid_choice(action_node, "action", &names);
            return None;
        };
        let mut step = KubectlStep {
            action: Spanned::new(action, action_node.span),
            namespace: None,
            context: None,
            kubeconfig: None,
            resource: None,
            selector: None,
            field_selector: None,
            dry_run: None,
            container: None,
            tail: None,
            since: None,
            for_resource: None,
            replicas: None,
            to_revision: None,
            patch: None,
            patch_type: None,
            command: None,
        };
        // Whether a patch written as a JSON string holds a list.
        let mut patch_text_shape = None;
        let action_specific: IndexSet<&str> = KubectlAction::ALL
            .iter()
            .flat_map(|a| a.extra_fields().iter().copied())
            .collect();
        for entry in entries {
            let v = &entry.value;
            let key = entry.key.as_str();
            if action_specific.contains(key) && !action.extra_fields().contains(&key) {
                let users: Vec<&str> = KubectlAction::ALL
                    .iter()
                    .filter(|a| a.extra_fields().contains(&key))
                    .map(|a| a.as_str())
                    .collect();
                let d = self.error(
                    Code::FieldNotApplicable,
                    entry.key_span,
                    format!(
                        "field `{key}` does not apply to action `{}`",
                        action.as_str()
                    ),
                );
                d.label = Some("not used by this action".into());
                d.help = Some(format!("`{key}` is used by: {}", users.join(", ")));
                continue;
            }
            match key {
                "namespace" => step.namespace = self.template(v, key),
                "context" => step.context = self.template(v, key),
                "kubeconfig" => step.kubeconfig = self.template(v, key),
                "resource" => step.resource = self.template(v, key),
                "selector" => step.selector = self.template(v, key),
                "field_selector" => step.field_selector = self.template(v, key),
                "dry_run" => step.dry_run = self.typed_bool(v, key),
                "container" => step.container = self.template(v, key),
                "tail" => step.tail = self.typed_int(v, key, -1..=i64::MAX),
                "since" => step.since = self.typed_duration(v, key),
                "for" => step.for_resource = self.template(v, key),
                "replicas" => step.replicas = self.typed_int(v, key, crate::REPLICAS),
                "to_revision" => step.to_revision = self.typed_int(v, key, 0..=i64::MAX),
                "patch" => match &v.value {
                    Value::Map(_) | Value::Seq(_) => step.patch = Some(v.clone()),
                    Value::Str(s) => match serde_json::from_str::<serde_json::Value>(s) {
                        // A patch written as a JSON string, the way it is passed to `kubectl -p`.
                        Ok(parsed) => {
                            step.patch = Some(v.clone());
                            patch_text_shape = Some(parsed.is_array());
                        }
                        Err(e) if s.contains("{{") => {
                            let _ = e;
                            step.patch = Some(v.clone());
                        }
                        Err(e) => {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                format!("`patch` is a string but not valid JSON: {e}"),
                            );
                            d.help = Some("write the patch as YAML, or as a JSON string".into());
                        }
                    },
                    _ => self.wrong_type(v, key, "a mapping (or a list for `patch_type: json`)"),
                },
                "patch_type" => {
                    step.patch_type = self.typed_choice(
                        v,
                        key,
                        &[
                            ("strategic", PatchType::Strategic),
                            ("merge", PatchType::Merge),
                            ("json", PatchType::Json),
                        ],
                    )
                }
                "command" => match &v.value {
                    Value::Str(_) => {
                        let d = self.error(
                            Code::WrongType,
                            v.span,
                            "`command` must be a list of arguments, found a string".into(),
                        );
                        d.help = Some("write it as a list, such as `[\"df\", \"-h\"]`; wrap shell syntax as `[\"sh\", \"-c\", \"...\"]`".into());
                    }
                    _ => {
                        step.command = self.template_list(v, key);
                        if step.command.as_deref().is_some_and(blank_program) {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                "`command` names no program: it needs the program to run first"
                                    .into(),
                            );
                            d.help = Some("such as `[\"df\", \"-h\"]`".into());
                        }
                    }
                },
                _ => {}
            }
        }
        let needs_object = action.needs_one_object();
        for key in action.required_fields() {
            if node.get(key).is_none() {
                self.missing(node, &format!("{what} (action `{}`)", action.as_str()), key);
            }
        }
        match &step.resource {
            None if needs_object || matches!(action, KubectlAction::Get | KubectlAction::Exec) => {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!(
                        "{what} (action `{}`) is missing the required field `resource`",
                        action.as_str()
                    ),
                );
                d.help = Some(if needs_object {
                    "name one object, such as `deployment/prod-omendb`".to_string()
                } else {
                    "such as `pods`, `nodes` or `deployment/prod-omendb`".to_string()
                });
            }
            None if action == KubectlAction::Logs && step.selector.is_none() => {
                let d = self.error(
                    Code::MissingKey,
                    mapping_head(node),
                    format!("{what} (action `logs`) needs a `resource` or a `selector`"),
                );
                d.help =
                    Some("for example `selector: app=omendb` or `resource: pod/omendb-0`".into());
            }
            Some(resource) if needs_object && !resource.is_templated() => {
                if !is_kind_slash_name(&resource.text) {
                    let d = self.error(
                        Code::InvalidValue,
                        resource.span,
                        format!(
                            "action `{}` needs one object as `kind/name`, found `{}`",
                            action.as_str(),
                            resource.text
                        ),
                    );
                    d.help = Some("such as `deployment/prod-omendb`".into());
                } else if action.as_str().starts_with("rollout") {
                    let kind = kind_of(&resource.text);
                    // `deployment`, `deploy`, `deployments`, each with an
                    // optional `.apps` or `.v1.apps`, as kubectl takes them.
                    let (name, group) = kind.split_once('.').unwrap_or((kind.as_str(), ""));
                    if !(matches!(name, "deployment" | "deployments" | "deploy")
                        && matches!(group, "" | "apps" | "v1.apps"))
                    {
                        let d = self.error(
                            Code::InvalidValue,
                            resource.span,
                            format!(
                                "action `{}` works on deployments, found `{kind}`",
                                action.as_str()
                            ),
                        );
                        d.help = Some("such as `deployment/prod-omendb`".into());
                    }
                }
            }
            _ => {}
        }
        if action == KubectlAction::Top
            && let Some(resource) = step.resource.as_ref().filter(|r| !r.is_templated())
        {
            let kind = kind_of(&resource.text);
            let name = kind.split('.').next().unwrap_or_default();
            if !matches!(name, "pod" | "pods" | "po" | "node" | "nodes" | "no") {
                let d = self.error(
                    Code::InvalidValue,
                    resource.span,
                    format!("action `top` works on pods or nodes, found `{kind}`"),
                );
                d.help = Some("such as `pods`, `pod/omendb-0` or `nodes`; for a deployment's pods, `pods` with a `selector`".into());
            }
        }
        if let Some(target) = step.for_resource.as_ref().filter(|f| !f.is_templated())
            && !is_kind_slash_name(&target.text)
        {
            let d = self.error(
                Code::InvalidValue,
                target.span,
                format!(
                    "`for` must name one object as `kind/name`, found `{}`",
                    target.text.trim()
                ),
            );
            d.help = Some("such as `deployment/prod-omendb` or `pod/omendb-0`".into());
        }
        if let Some(resource) = step
            .resource
            .as_ref()
            .filter(|r| !r.is_templated() && r.text.contains('/'))
        {
            for (field, selector) in [
                ("selector", &step.selector),
                ("field_selector", &step.field_selector),
            ] {
                if let Some(selector) = selector {
                    let d = self.error(
                        Code::FieldNotApplicable,
                        selector.span,
                        format!("`{field}` cannot be used with the named object `{}`: it would not filter it", resource.text),
                    );
                    let kind = resource.text.split('/').next().unwrap_or_default();
                    d.help = Some(if needs_object {
                        format!("`{}` acts on one object; drop `{field}`", action.as_str())
                    } else {
                        format!(
                            "to select, give only the kind (`resource: {kind}`); to act on that one object, drop `{field}`"
                        )
                    });
                }
            }
        }
        // A list is a `json` patch, and a `json` patch is a list, whether
        // written as YAML or as a JSON string.
        let patch_is_list = step.patch.as_ref().and_then(|p| match p.value {
            Value::Seq(_) => Some(true),
            Value::Map(_) => Some(false),
            _ => patch_text_shape,
        });
        if let Some(patch) = &step.patch
            && patch_is_list == Some(true)
            && step
                .patch_type
                .as_ref()
                .is_none_or(|t| t.literal().is_some_and(|t| *t != PatchType::Json))
        {
            let kind = step
                .patch_type
                .as_ref()
                .and_then(Typed::literal)
                .map_or("strategic", |t| t.as_str());
            let d = self.error(
                Code::WrongType,
                patch.span,
                format!("a list of operations is a `json` patch, but this patch is `{kind}`"),
            );
            d.label = Some("a list".into());
            d.help = Some("set `patch_type: json`, or write the patch as a mapping".into());
        }
        if let (Some(patch_type), Some(patch)) = (&step.patch_type, &step.patch)
            && patch_type.literal() == Some(&PatchType::Json)
            && patch_is_list == Some(false)
        {
            self.error(Code::WrongType, patch.span, "a `json` patch must be a list of operations, found a mapping".into())
                .help = Some("for example `[{op: replace, path: /spec/replicas, value: 3}]`, or use `patch_type: merge`".into());
        }
        Some(step)
    }

    fn gate(&mut self, node: &Node, what: &str) -> Option<GateStep> {
        let entries = node.as_map()?;
        let message = match node.get("message") {
            Some(v) => self.template(v, "message"),
            None => {
                self.missing(node, what, "message");
                None
            }
        };
        let mut step = GateStep {
            message: message
                .clone()
                .unwrap_or_else(|| template_of(node, String::new())),
            condition: None,
            on_timeout: None,
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "condition" => step.condition = self.decision(v, "condition"),
                "on_timeout" => {
                    step.on_timeout = self.typed_choice(
                        v,
                        "on_timeout",
                        &[
                            ("reject", OnTimeout::Reject),
                            ("approve", OnTimeout::Approve),
                        ],
                    )
                }
                _ => {}
            }
        }
        let _ = self.source;
        message.map(|_| step)
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

/// The kind part of a literal `resource` (`Deployment/x` → `deployment`),
/// lower-cased as kubectl matches kinds.
fn kind_of(resource: &str) -> String {
    resource
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// What a regex error says is wrong (`unclosed character class`), from its
/// last line; the lines above it draw the pattern with a caret, which would
/// repeat the source line the diagnostic already shows.
pub fn regex_error_summary(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or(&text).trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// What a templated `expect.status` renders to: a code, a class, or
/// several separated by commas (`200, 204`); `None` when any is neither.
pub fn parse_status_list(text: &str) -> Option<Vec<StatusPattern>> {
    let patterns: Option<Vec<StatusPattern>> = text
        .split(',')
        .map(|item| parse_status_class(item.trim()))
        .collect();
    patterns.filter(|p| !p.is_empty())
}

fn parse_status_class(text: &str) -> Option<StatusPattern> {
    let bytes = text.as_bytes();
    if bytes.len() == 3
        && bytes[1..].eq_ignore_ascii_case(b"xx")
        && (b'1'..=b'5').contains(&bytes[0])
    {
        return Some(StatusPattern::Class(u16::from(bytes[0] - b'0')));
    }
    text.parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .map(StatusPattern::Code)
}

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("it is empty".into());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{trimmed}` has no unit"));
    }
    if trimmed.starts_with(['-', '+']) {
        return Err(format!(
            "`{trimmed}` has a sign; a duration is a length of time, such as `5s`"
        ));
    }
    // humantime reads `M` as a month, where a timeout of `1M` was surely
    // meant as a minute.
    let mut units = trimmed.split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace());
    if units.any(|unit| unit == "M") {
        return Err(format!(
            "`{trimmed}`: `M` would be months; write `m` for minutes, or `month`"
        ));
    }
    humantime::parse_duration(trimmed).map_err(|error| {
        // humantime's own words list units nobody writes in a timeout and
        // end in "(and few variations)".
        use humantime::DurationError as E;
        let why = match error {
            E::UnknownUnit { unit, .. } if unit.is_empty() => "a number needs a unit".to_string(),
            E::UnknownUnit { unit, .. } => {
                format!("`{unit}` is not a unit of time (ms, s, m, h or d; also `sec`, `min`, `hours`, `days`)")
            }
            E::NumberExpected(at) => format!("a number is expected at character {}", at + 1),
            E::InvalidCharacter(at) => format!(
                "`{}` at character {} does not belong in a duration",
                trimmed.get(at..).and_then(|rest| rest.chars().next()).unwrap_or('?'),
                at + 1
            ),
            E::NumberOverflow => "it is too long".to_string(),
            E::Empty => "it is empty".to_string(),
        };
        format!("`{trimmed}`: {why}")
    })
}

/// An argv that names no program: empty, or a first word that is blank
/// text (a template may still render to a program).
fn blank_program(argv: &[Template]) -> bool {
    argv.first()
        .is_none_or(|program| !program.is_templated() && program.text.trim().is_empty())
}

/// `kind/name`: one slash between two non-empty parts without spaces
/// (around them, spaces are trimmed, as the step does).
fn is_kind_slash_name(text: &str) -> bool {
    text.split_once('/').is_some_and(|(kind, name)| {
        let part_ok = |p: &str| {
            let p = p.trim();
            !p.is_empty() && !p.contains('/') && !p.contains(char::is_whitespace)
        };
        part_ok(kind) && part_ok(name)
    })
}

/// The methods of RFC 9110 and PATCH (RFC 5789).
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The `type` a step mapping declares, as written.
fn type_of(entries: &[Entry]) -> Option<&str> {
    entries
        .iter()
        .find(|e| e.key == "type")
        .and_then(|e| e.value.as_str())
}

#[cfg(test)]
mod tests {
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
            assert!(error.contains("has a sign"), "{error}");
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
