//! Param resolution (`--set` > `--params FILE` > `env` > `default`), with
//! every problem reported together before anything runs.

use crate::lower::did_you_mean;
use crate::model::{Param, ParamType, ParamValue, Runbook};
use crate::span::Span;
use crate::yaml::{Node, Value};
use indexmap::IndexMap;
use std::fmt;

/// Where a param's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSource {
    /// `--set name=value`.
    CommandLine,
    /// `--params FILE`.
    ParamsFile,
    /// The environment variable named by the param's `env`.
    Environment(String),
    /// The param's `default`.
    Default,
}

impl fmt::Display for ParamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamSource::CommandLine => f.write_str("--set"),
            ParamSource::ParamsFile => f.write_str("--params file"),
            ParamSource::Environment(name) => write!(f, "${name}"),
            ParamSource::Default => f.write_str("default"),
        }
    }
}

/// A param with its final value.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedParam {
    /// The value.
    pub value: ParamValue,
    /// Where it came from.
    pub source: ParamSource,
    /// Whether it must be redacted.
    pub secret: bool,
}

/// A problem with the values given for params.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// A required param has no value.
    #[error("missing required param `{name}`{}", describe(.name, .description, .env))]
    Missing {
        /// The param.
        name: String,
        /// Its description, if any.
        description: Option<String>,
        /// The environment variable it may also come from, if any.
        env: Option<String>,
    },
    /// A value was given for a param the runbook does not declare.
    #[error("unknown param `{name}` (from {origin}){}", suggest(.suggestion))]
    Unknown {
        /// The name given.
        name: String,
        /// Where it was given.
        origin: ParamSource,
        /// A declared param with a close name.
        suggestion: Option<String>,
        /// Where the params file names it.
        at: Option<Span>,
    },
    /// A value does not parse as the param's type.
    #[error("param `{name}` must be {expected} (from {origin}), got {shown}")]
    WrongType {
        /// The param.
        name: String,
        /// The type, in words.
        expected: &'static str,
        /// Where the value came from.
        origin: ParamSource,
        /// The value, or `***` for a secret.
        shown: String,
        /// Where the params file gives it.
        at: Option<Span>,
    },
    /// A value is not among the param's `allowed` values.
    #[error("param `{name}` must be one of {allowed} (from {origin}), got {shown}")]
    NotAllowed {
        /// The param.
        name: String,
        /// The allowed values, listed.
        allowed: String,
        /// Where the value came from.
        origin: ParamSource,
        /// The value, or `***` for a secret.
        shown: String,
        /// Where the params file gives it.
        at: Option<Span>,
    },
    /// A param's value cannot be what a step uses it as: a field written
    /// as just `{{params.NAME}}` whose type the value does not parse as.
    #[error("param `{name}` is {shown}, which {} `{field}`: {why}", users(.steps))]
    UnusableAs {
        /// The param.
        name: String,
        /// The steps using it so, in file order.
        steps: Vec<String>,
        /// The field it is used as.
        field: String,
        /// Why the value does not fit, in words.
        why: String,
        /// The value, or `***` for a secret.
        shown: String,
    },
    /// A `--set` argument without `=`.
    #[error("`--set {0}` must have the form NAME=VALUE")]
    Malformed(String),
    /// The params file is not a mapping of names to scalars.
    #[error("params file: {problem}")]
    BadFile {
        /// What is wrong.
        problem: String,
        /// Where.
        at: Option<Span>,
    },
}

impl ParamError {
    /// Whether the value at fault belongs to a secret param: a snippet of
    /// the params file must not show it either.
    pub fn hides_value(&self) -> bool {
        matches!(
            self,
            ParamError::WrongType { shown, .. } | ParamError::NotAllowed { shown, .. }
                if shown == "***"
        )
    }

    /// Where in the params file the problem is, when it is there.
    pub fn params_file_span(&self) -> Option<Span> {
        match self {
            ParamError::Unknown { at, .. }
            | ParamError::WrongType { at, .. }
            | ParamError::NotAllowed { at, .. }
            | ParamError::BadFile { at, .. } => *at,
            ParamError::Missing { .. }
            | ParamError::Malformed(_)
            | ParamError::UnusableAs { .. } => None,
        }
    }
}

/// "step `a` uses as its" or "steps `a` and `b` use as their".
fn users(steps: &[String]) -> String {
    let named: Vec<String> = steps.iter().map(|s| format!("`{s}`")).collect();
    match named.as_slice() {
        [one] => format!("step {one} uses as its"),
        [rest @ .., last] => format!("steps {} and {last} use as their", rest.join(", ")),
        [] => "no step uses as its".to_string(),
    }
}

/// Says how to give the missing param a value, by its own name, and
/// through its environment variable when it has one: a secret is better
/// kept out of the shell history.
fn describe(name: &str, description: &Option<String>, env: &Option<String>) -> String {
    let about = description
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let how = match env {
        Some(var) => format!("set ${var} or pass --set {name}=VALUE"),
        None => format!("pass it with --set {name}=VALUE"),
    };
    format!("{about}; {how}")
}

fn suggest(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Raw values supplied for params, before typing.
#[derive(Clone, Debug, Default)]
pub struct ParamInputs {
    /// `--set NAME=VALUE` arguments, in order (a later one wins).
    pub sets: Vec<String>,
    /// The parsed `--params FILE`, if given.
    pub file: Option<ParamsFile>,
}

/// A parsed `--params FILE`.
#[derive(Clone, Debug)]
pub struct ParamsFile {
    /// Its root mapping.
    pub root: Node,
    /// The text it was parsed from: a text param keeps a value as written
    /// (`version: 1.10` is `1.10`, not the number 1.1).
    pub source: String,
}

/// A value given for a param: its text, where from, and, from the params
/// file, where its key and value are written.
type Given = (String, ParamSource, Option<(Span, Span)>);

/// Resolves every param of `runbook`. `env` looks up environment variables.
pub fn resolve(
    runbook: &Runbook,
    inputs: &ParamInputs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, ResolvedParam>, Vec<ParamError>> {
    let mut errors = Vec::new();
    let mut given: IndexMap<String, Given> = IndexMap::new();
    if let Some(ParamsFile { root: file, source }) = &inputs.file {
        match &file.value {
            Value::Map(entries) => {
                for entry in entries {
                    // A float is kept as written too: `99999999999999999999`
                    // is shown as such, not as YAML's `1e20`.
                    let as_text = matches!(entry.value.value, Value::Float(_))
                        || runbook
                            .params
                            .get(&entry.key)
                            .is_some_and(|p| p.kind == ParamType::String);
                    let text = if as_text
                        && !matches!(
                            entry.value.value,
                            Value::Seq(_) | Value::Map(_) | Value::Null
                        ) {
                        Some(crate::yaml::written_text(&entry.value, source))
                    } else {
                        scalar_text(&entry.value)
                    };
                    match text {
                        Some(text) => {
                            given.insert(
                                entry.key.clone(),
                                (
                                    text,
                                    ParamSource::ParamsFile,
                                    Some((entry.key_span, entry.value.span)),
                                ),
                            );
                        }
                        None => errors.push(ParamError::BadFile {
                            problem: format!(
                                "the value of `{}` must be a single value, found {}",
                                entry.key,
                                entry.value.type_name()
                            ),
                            at: Some(entry.value.span),
                        }),
                    }
                }
            }
            Value::Null => {}
            _ => errors.push(ParamError::BadFile {
                problem: format!(
                    "a params file must be a mapping of param names to values, found {}",
                    file.type_name()
                ),
                at: Some(file.span),
            }),
        }
    }
    for set in &inputs.sets {
        match set.split_once('=') {
            // `--set =x` names no param: the form is wrong, not the name.
            Some((name, _)) if name.trim().is_empty() => {
                errors.push(ParamError::Malformed(set.clone()));
            }
            Some((name, value)) => {
                given.insert(
                    name.trim().to_string(),
                    (value.to_string(), ParamSource::CommandLine, None),
                );
            }
            None => errors.push(ParamError::Malformed(set.clone())),
        }
    }
    for (name, (_, source, at)) in &given {
        if !runbook.params.contains_key(name) {
            errors.push(ParamError::Unknown {
                name: name.clone(),
                origin: source.clone(),
                suggestion: did_you_mean(name, runbook.params.keys().map(String::as_str))
                    .map(str::to_string),
                at: at.map(|(key, _)| key),
            });
        }
    }
    let mut resolved = IndexMap::new();
    for (name, param) in &runbook.params {
        let raw = given.get(name).cloned().or_else(|| {
            let var = param.env.as_ref()?;
            env(var).map(|value| (value, ParamSource::Environment(var.clone()), None))
        });
        let value = match raw {
            Some((text, source, at)) => match parse_value(param.kind, &text) {
                Some(value) => Some((value, source, at.map(|(_, value)| value))),
                None => {
                    errors.push(ParamError::WrongType {
                        name: name.clone(),
                        expected: if text.contains('\0') {
                            "text without a NUL byte, which no command line or environment variable can carry"
                        } else {
                            type_words(param.kind)
                        },
                        origin: source,
                        shown: shown(param, &text),
                        at: at.map(|(_, value)| value),
                    });
                    continue;
                }
            },
            None => param
                .default
                .clone()
                .map(|d| (d, ParamSource::Default, None)),
        };
        let Some((value, source, at)) = value else {
            if param.is_required() {
                errors.push(ParamError::Missing {
                    name: name.clone(),
                    description: param.description.clone(),
                    env: param.env.clone(),
                });
            }
            continue;
        };
        if let Some(allowed) = &param.allowed
            && !allowed.is_empty()
            && !allowed.contains(&value)
        {
            errors.push(ParamError::NotAllowed {
                name: name.clone(),
                allowed: allowed
                    .iter()
                    .map(ParamValue::to_text)
                    .collect::<Vec<_>>()
                    .join(", "),
                origin: source,
                shown: shown(param, &value.to_text()),
                at,
            });
            continue;
        }
        resolved.insert(
            name.clone(),
            ResolvedParam {
                value,
                source,
                secret: param.secret,
            },
        );
    }
    if errors.is_empty() {
        errors = unusable_uses(runbook, &resolved);
    }
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(errors)
    }
}

/// Typed fields written as just `{{params.NAME}}` whose param's value does
/// not parse as the field's type: such a step would fail when it starts,
/// however far into the run (a `timeout` of `5`, a `replicas` of `three`),
/// so the value is refused with the others before anything runs.
pub(crate) fn unusable_uses(
    runbook: &Runbook,
    resolved: &IndexMap<String, ResolvedParam>,
) -> Vec<ParamError> {
    let mut errors = Vec::new();
    let mut steps: Vec<&crate::Step> = Vec::new();
    for step in runbook.all_steps() {
        steps.push(step);
        if let Some(crate::Rollback::Step(rollback)) = &step.rollback {
            steps.push(rollback);
        }
    }
    for step in steps {
        for (field, template) in step.templates() {
            let Some(name) = template
                .text
                .trim()
                .strip_prefix("{{")
                .and_then(|t| t.strip_suffix("}}"))
                .and_then(|t| t.trim().strip_prefix("params."))
                .filter(|n| crate::lower::is_param_name(n))
            else {
                continue;
            };
            let Some(param) = resolved.get(name) else {
                continue;
            };
            let text = param.value.to_text();
            let why = match field {
                "timeout" | "since" | "grace" | "expect.max_latency" => {
                    match crate::parse_duration(&text) {
                        Ok(d) if field == "timeout" && d < crate::MIN_TIMEOUT => {
                            Some("it must be at least a millisecond".to_string())
                        }
                        Ok(_) => None,
                        // The parser's reason quotes what it could not read.
                        Err(_) if param.secret => Some("it must be a duration".to_string()),
                        Err(e) => Some(format!("it must be a duration ({e})")),
                    }
                }
                "replicas" => (!text.trim().parse::<i64>().is_ok_and(|n| crate::REPLICAS.contains(&n)))
                    .then(|| format!("it must be an integer from 0 to {}", crate::REPLICAS.end())),
                "tail" | "to_revision" => text
                    .trim()
                    .parse::<i64>()
                    .is_err()
                    .then(|| "it must be an integer".to_string()),
                "read_only" | "insecure" | "dry_run" | "when" | "condition" => (!matches!(text.trim(), "true" | "false"))
                    .then(|| "it must be `true` or `false`".to_string()),
                "patch_type" => (!matches!(text.trim(), "strategic" | "merge" | "json"))
                    .then(|| "it must be `strategic`, `merge` or `json`".to_string()),
                "on_timeout" => (!matches!(text.trim(), "reject" | "approve"))
                    .then(|| "it must be `reject` or `approve`".to_string()),
                "stop_signal" => {
                    // As the step reads it: `TERM` is `SIGTERM`.
                    let name = text.trim();
                    let full = if name.starts_with("SIG") {
                        name.to_string()
                    } else {
                        format!("SIG{name}")
                    };
                    (!crate::SIGNALS.contains(&full.as_str()))
                        .then(|| format!("it must be one of {}", crate::SIGNALS.join(", ")))
                }
                "expect.status" => crate::parse_status_list(&text).is_none().then(|| {
                    "it must be a status code or a class such as `2xx`, or several separated by commas"
                        .to_string()
                }),
                _ => None,
            };
            let Some(why) = why else { continue };
            // One error per param and field, naming every step.
            let same = errors.iter_mut().find(|e| {
                matches!(e, ParamError::UnusableAs { name: n, field: f, .. } if n == name && f == field)
            });
            match same {
                Some(ParamError::UnusableAs { steps, .. }) => steps.push(step.id.value.clone()),
                _ => errors.push(ParamError::UnusableAs {
                    name: name.to_string(),
                    steps: vec![step.id.value.clone()],
                    field: field.to_string(),
                    why,
                    shown: if param.secret {
                        "***".to_string()
                    } else {
                        format!("`{text}`")
                    },
                }),
            }
        }
    }
    errors
}

fn shown(param: &Param, text: &str) -> String {
    if param.secret {
        "***".to_string()
    } else if text.chars().any(char::is_control) {
        // Printed, a NUL or an escape sequence would be invisible or act on
        // the terminal.
        format!("`{}`", text.escape_debug())
    } else {
        format!("`{text}`")
    }
}

fn type_words(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "a string",
        ParamType::Integer => "an integer",
        ParamType::Number => "a number",
        ParamType::Boolean => "`true` or `false`",
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        // `{:?}` keeps the fraction (`3.0`), so a float given for an
        // integer param is refused as `--set replicas=3.0` is.
        Value::Float(f) => Some(format!("{f:?}")),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Seq(_) | Value::Map(_) => None,
    }
}

/// Parses text given on the command line, in a params file or in the
/// environment as a value of `kind`.
pub fn parse_value(kind: ParamType, text: &str) -> Option<ParamValue> {
    match kind {
        ParamType::String => (!text.contains('\0')).then(|| ParamValue::String(text.to_string())),
        ParamType::Integer => text.trim().parse().ok().map(ParamValue::Integer),
        ParamType::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(ParamValue::Number),
        ParamType::Boolean => match text.trim() {
            "true" => Some(ParamValue::Boolean(true)),
            "false" => Some(ParamValue::Boolean(false)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A params file gives values as YAML reads them: `3.0` is a float,
    /// which an integer param refuses as it refuses `--set n=3.0`.
    #[test]
    fn a_float_in_a_params_file_is_no_integer() {
        let loaded = crate::load(
            std::path::Path::new("t.yaml"),
            "version: 1\nname: t\nparams:\n  n: {type: integer}\n  x: {type: number}\nsteps:\n  s: {type: shell, run: echo}\n",
        );
        let runbook = loaded.runbook.expect("valid");
        let errors =
            resolve(&runbook, &with_file("n: 3.0\nx: 3.0\n"), &|_| None).expect_err("n is refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "param `n` must be an integer (from --params file), got `3.0`"
        );
    }

    fn with_file(source: &str) -> ParamInputs {
        ParamInputs {
            sets: Vec::new(),
            file: Some(ParamsFile {
                root: crate::yaml::parse(source).expect("YAML").root,
                source: source.to_string(),
            }),
        }
    }

    /// A text param takes a params file's value as written, where YAML
    /// would read `1.10` as the number 1.1 and `0x1F` as 31; typed params
    /// still take the value YAML reads.
    #[test]
    fn a_text_param_keeps_a_number_as_written_in_a_params_file() {
        let loaded = crate::load(
            std::path::Path::new("t.yaml"),
            "version: 1\nname: t\nparams:\n  v: {allowed: ['1.10', '0x1F', 'True', '1e3']}\n  w: {default: x}\n  n: {type: integer}\nsteps:\n  s: {type: shell, run: echo}\n",
        );
        let runbook = loaded.runbook.expect("valid");
        for written in ["1.10", "0x1F", "True", "1e3"] {
            let source = format!("v: {written}\nw: {written}   # a comment\nn: 0x10\n");
            let resolved = resolve(&runbook, &with_file(&source), &|_| None).expect(written);
            assert_eq!(resolved["v"].value.to_text(), written);
            assert_eq!(resolved["w"].value.to_text(), written);
            assert_eq!(resolved["n"].value.to_text(), "16");
        }
        let errors = resolve(
            &runbook,
            &with_file("v: '1.10'\nw: x\nn: 99999999999999999999\n"),
            &|_| None,
        )
        .expect_err("past i64");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "param `n` must be an integer (from --params file), got `99999999999999999999`"
        );
    }

    #[test]
    fn a_param_used_as_a_whole_stop_signal_or_status_must_be_one() {
        let loaded = crate::load(
            std::path::Path::new("t.yaml"),
            "version: 1\nname: t\nparams:\n  sig: {default: TERM}\n  st: {default: 2xx}\nsteps:\n  c: {type: shell, stop_signal: \"{{params.sig}}\", run: echo}\n  h: {type: http-check, url: \"http://127.0.0.1:1/\", expect: {status: \"{{params.st}}\"}}\n",
        );
        let runbook = loaded.runbook.expect("valid");
        let with = |sets: &[&str]| {
            let inputs = ParamInputs {
                sets: sets.iter().map(|s| s.to_string()).collect(),
                file: None,
            };
            resolve(&runbook, &inputs, &|_| None)
        };
        assert!(with(&[]).is_ok(), "the defaults are fine");
        assert!(with(&["sig=SIGINT", "st=200, 204"]).is_ok());
        let errors = with(&["sig=SIGFOO", "st=bogus"]).expect_err("both refused");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "param `sig` is `SIGFOO`, which step `c` uses as its `stop_signal`: it must be one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1, SIGUSR2",
                "param `st` is `bogus`, which step `h` uses as its `expect.status`: it must be a status code or a class such as `2xx`, or several separated by commas",
            ]
        );
    }

    #[test]
    fn a_nul_byte_in_a_text_value_is_refused() {
        assert_eq!(parse_value(ParamType::String, "a\0b"), None);
        assert_eq!(
            parse_value(ParamType::String, "a b"),
            Some(ParamValue::String("a b".into()))
        );
    }

    #[test]
    fn a_set_without_a_name_is_malformed() {
        let loaded = crate::load(
            std::path::Path::new("t.yaml"),
            "version: 1\nname: t\nparams:\n  n: {default: a}\nsteps:\n  s: {type: shell, run: echo}\n",
        );
        let runbook = loaded.runbook.expect("valid");
        let inputs = ParamInputs {
            sets: vec!["=x".into()],
            file: None,
        };
        let errors = resolve(&runbook, &inputs, &|_| None).expect_err("refused");
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["`--set =x` must have the form NAME=VALUE"]
        );
    }
}
