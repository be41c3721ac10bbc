//! Plans: what a run would do, computed without side effects. The CLI's
//! `runbook plan` renders a [`Plan`] as text, JSON, Mermaid or DOT.

use crate::graph::Graph;
use crate::model::{Phase, Retry, Rollback, Runbook, Step, StepKind, Typed};
use crate::params::ResolvedParam;
use indexmap::IndexMap;
use serde::Serialize;
use std::fmt::Write;

/// A runbook's plan.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// Runbook name.
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Params with their resolved values (secrets as `***`).
    pub params: Vec<PlannedParam>,
    /// Deadline for the main steps, such as `30m`.
    pub timeout: Option<String>,
    /// The main steps, in waves.
    pub steps: Vec<Vec<PlannedStep>>,
    /// `on_failure` steps, in waves.
    pub on_failure: Vec<Vec<PlannedStep>>,
    /// `finally` steps, in waves.
    pub finally: Vec<Vec<PlannedStep>>,
}

/// A resolved param.
#[derive(Debug, Serialize)]
pub struct PlannedParam {
    /// Name.
    pub name: String,
    /// Value with its type (a number stays a number), `"***"` for a
    /// secret, `null` when the param has no value.
    pub value: serde_json::Value,
    /// Where it came from (`--set`, `default`, `$VAR`, `--params file`),
    /// or `unset`.
    pub source: String,
    /// Whether it is secret.
    pub secret: bool,
    /// Description.
    pub description: Option<String>,
}

/// A step as planned.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    /// Step id.
    pub id: String,
    /// Step type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// One line saying what it does.
    pub summary: String,
    /// Its needs.
    pub needs: Vec<String>,
    /// Its `when`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Per-attempt timeout, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Total attempts.
    pub attempts: u32,
    /// Whether its failure is tolerated.
    pub continue_on_failure: bool,
    /// `auto`, a summary of the rollback step, or nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

/// Computes the plan of a valid runbook with resolved params.
pub fn plan(runbook: &Runbook, params: &IndexMap<String, ResolvedParam>) -> Plan {
    let params = runbook
        .params
        .iter()
        .map(|(name, decl)| {
            let resolved = params.get(name);
            PlannedParam {
                name: name.clone(),
                value: match resolved {
                    Some(_) if decl.secret => serde_json::Value::from("***"),
                    Some(r) => r.value.to_json(),
                    None => serde_json::Value::Null,
                },
                source: resolved.map_or("unset".to_string(), |r| r.source.to_string()),
                secret: decl.secret,
                description: decl.description.clone(),
            }
        })
        .collect();
    Plan {
        name: runbook.name.value.clone(),
        description: runbook.description.clone(),
        params,
        timeout: runbook
            .timeout
            .as_ref()
            .map(|t| humantime::format_duration(t.value).to_string()),
        steps: waves(runbook, Phase::Main),
        on_failure: waves(runbook, Phase::OnFailure),
        finally: waves(runbook, Phase::Finally),
    }
}

fn waves(runbook: &Runbook, phase: Phase) -> Vec<Vec<PlannedStep>> {
    let Some(steps) = runbook.phase(phase) else {
        return Vec::new();
    };
    let graph = Graph::new(steps);
    let waves = graph.waves().unwrap_or_default();
    let retry_default = runbook.defaults.retry.as_ref();
    let continue_default = runbook.defaults.continue_on_failure.unwrap_or(false);
    waves
        .into_iter()
        .map(|wave| {
            wave.into_iter()
                .filter_map(|i| steps.get_index(i).map(|(_, s)| s))
                .map(|s| planned(s, retry_default, continue_default))
                .collect()
        })
        .collect()
}

fn planned(step: &Step, retry_default: Option<&Retry>, continue_default: bool) -> PlannedStep {
    PlannedStep {
        id: step.id.value.clone(),
        kind: step.kind.type_name(),
        summary: summary(step),
        needs: step.needs.iter().map(|n| n.value.clone()).collect(),
        when: step.when.as_ref().map(|w| w.text.clone()),
        timeout: step.timeout.as_ref().map(|t| match t {
            Typed::Literal(d) => humantime::format_duration(d.value).to_string(),
            Typed::Template(t) => t.text.clone(),
        }),
        attempts: step.retry_policy(retry_default).attempts,
        continue_on_failure: step.continue_on_failure.unwrap_or(continue_default),
        rollback: step.rollback.as_ref().map(|r| match r {
            Rollback::Auto(_) => "auto".to_string(),
            Rollback::Step(s) => format!("{}: {}", s.kind.type_name(), summary(s)),
        }),
    }
}

/// One line saying what a step does.
pub fn summary(step: &Step) -> String {
    let text = match &step.kind {
        StepKind::Shell(shell) => shell
            .run
            .text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("")
            .to_string(),
        StepKind::HttpCheck(http) => format!(
            "{} {}",
            http.method.as_ref().map_or("GET", |m| m.text.as_str()),
            without_url_password(&http.url.text)
        ),
        StepKind::KubectlAction(k) => {
            let mut s = k.action.as_str().to_string();
            if let Some(r) = &k.resource {
                s.push(' ');
                s.push_str(&r.text);
            }
            if let Some(sel) = &k.selector {
                write!(s, " -l {}", sel.text).ok();
            }
            if let Some(ns) = &k.namespace {
                write!(s, " -n {}", ns.text).ok();
            }
            s
        }
        StepKind::Gate(gate) => match &gate.condition {
            Some(c) => format!("condition {}", c.text),
            None => format!(
                "approval: {}",
                gate.message.text.lines().next().unwrap_or("")
            ),
        },
    };
    truncate(&text, 90)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

impl Plan {
    /// A readable listing.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        writeln!(out, "runbook {}", self.name).ok();
        if let Some(d) = &self.description {
            writeln!(out, "  {}", d.lines().next().unwrap_or("")).ok();
        }
        if let Some(t) = &self.timeout {
            writeln!(out, "deadline: {t}").ok();
        }
        if !self.params.is_empty() {
            writeln!(out, "\nparams:").ok();
            let width = self.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
            for p in &self.params {
                match &p.value {
                    serde_json::Value::Null => writeln!(out, "  {:width$}   (unset)", p.name),
                    serde_json::Value::String(text) => {
                        writeln!(out, "  {:width$} = {text}  ({})", p.name, p.source)
                    }
                    value => writeln!(out, "  {:width$} = {value}  ({})", p.name, p.source),
                }
                .ok();
                if let Some(description) = &p.description {
                    // Under the value, so a long description does not push
                    // the values of other params out of their column.
                    for line in description.lines() {
                        writeln!(out, "  {:width$}   {line}", "").ok();
                    }
                }
            }
        }
        for (title, waves) in [
            ("steps", &self.steps),
            ("on_failure", &self.on_failure),
            ("finally", &self.finally),
        ] {
            if waves.is_empty() {
                continue;
            }
            writeln!(out, "\n{title}:").ok();
            for (i, wave) in waves.iter().enumerate() {
                writeln!(out, "  wave {}:", i + 1).ok();
                for step in wave {
                    writeln!(out, "    {} [{}] {}", step.id, step.kind, step.summary).ok();
                    let mut notes = Vec::new();
                    if !step.needs.is_empty() {
                        notes.push(format!("needs {}", step.needs.join(", ")));
                    }
                    if let Some(w) = &step.when {
                        notes.push(format!("when {w}"));
                    }
                    if let Some(t) = &step.timeout {
                        notes.push(format!("timeout {t}"));
                    }
                    if step.attempts > 1 {
                        notes.push(format!("{} attempts", step.attempts));
                    }
                    if step.continue_on_failure {
                        notes.push("continue on failure".to_string());
                    }
                    if let Some(r) = &step.rollback {
                        notes.push(format!("rollback {r}"));
                    }
                    if !notes.is_empty() {
                        writeln!(out, "      {}", notes.join("; ")).ok();
                    }
                }
            }
        }
        out
    }

    /// A Mermaid flowchart (renders on GitHub and in most wikis).
    pub fn render_mermaid(&self) -> String {
        let phases = [
            ("", &self.steps),
            ("on_failure: ", &self.on_failure),
            ("finally: ", &self.finally),
        ];
        // Node ids are numbered rather than derived from step ids: Mermaid
        // ids cannot hold every character a step id can, a mapping such as
        // `-` to `_` merges `a-b` with `a_b`, and a step named `end` would
        // end the flowchart. The step id is in the label.
        let node_ids: std::collections::HashMap<&str, String> = phases
            .iter()
            .flat_map(|(_, waves)| waves.iter().flatten())
            .enumerate()
            .map(|(i, step)| (step.id.as_str(), format!("s{i}")))
            .collect();
        // Every need names a step of the same phase (validation checks), so
        // the step id itself is never the node id in practice.
        let node = |id: &str| node_ids.get(id).cloned().unwrap_or_else(|| id.to_string());
        let mut out = String::from("flowchart TD\n");
        for (prefix, waves) in phases {
            for step in waves.iter().flatten() {
                let label = format!("{prefix}{}<br/>{}", step.id, step.kind).replace('"', "#quot;");
                let shape = if step.kind == "gate" {
                    format!("{{\"{label}\"}}")
                } else {
                    format!("[\"{label}\"]")
                };
                writeln!(out, "  {}{shape}", node(&step.id)).ok();
                for need in &step.needs {
                    let arrow = if step.when.is_some() { "-.->" } else { "-->" };
                    writeln!(out, "  {} {arrow} {}", node(need), node(&step.id)).ok();
                }
            }
        }
        out
    }

    /// A Graphviz digraph.
    pub fn render_dot(&self) -> String {
        // The name is free text; step ids are `[a-z0-9_-]` and need no escape.
        let name = self.name.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!("digraph \"{name}\" {{\n  rankdir=TB;\n  node [shape=box];\n");
        for (cluster, waves) in [
            ("steps", &self.steps),
            ("on_failure", &self.on_failure),
            ("finally", &self.finally),
        ] {
            if waves.is_empty() {
                continue;
            }
            writeln!(
                out,
                "  subgraph \"cluster_{cluster}\" {{\n    label=\"{cluster}\";"
            )
            .ok();
            for step in waves.iter().flatten() {
                let shape = if step.kind == "gate" {
                    ", shape=diamond"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "    \"{}\" [label=\"{}\\n{}\"{shape}];",
                    step.id, step.id, step.kind
                )
                .ok();
            }
            writeln!(out, "  }}").ok();
            for step in waves.iter().flatten() {
                for need in &step.needs {
                    let style = if step.when.is_some() {
                        " [style=dashed]"
                    } else {
                        ""
                    };
                    writeln!(out, "  \"{need}\" -> \"{}\"{style};", step.id).ok();
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

/// The password of the `scheme://user:password@host` URL that `text` is
/// (as written, and percent-decoded when that differs): a URL's password
/// is a secret wherever the URL comes from, a param's value included.
pub fn url_passwords(text: &str) -> Vec<String> {
    let text = text.trim();
    let masked = without_url_password(text);
    let Some(start) = masked.find("***") else {
        return Vec::new();
    };
    // The password ends where the text after the stars resumes.
    let tail = &masked[start + 3..];
    let Some(password) = text
        .get(start..)
        .and_then(|rest| rest.strip_suffix(tail))
        .filter(|p| !p.is_empty())
    else {
        return Vec::new();
    };
    let mut out = vec![password.to_string()];
    let decoded = percent_encoding::percent_decode_str(password)
        .decode_utf8_lossy()
        .into_owned();
    if decoded != password {
        out.push(decoded);
    }
    out
}

/// `url` with the password of its `user:password@` shown as `***`, as a run
/// shows it (a URL's password is a secret).
pub(crate) fn without_url_password(url: &str) -> std::borrow::Cow<'_, str> {
    match url_password_range(url) {
        Some(password) => format!("{}***{}", &url[..password.start], &url[password.end..]).into(),
        None => url.into(),
    }
}

/// Where the password of `scheme://user:password@host…` is in `url`.
pub(crate) fn url_password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let scheme_end = url.find("://")? + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| scheme_end + at);
    let authority = &url[scheme_end..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(scheme_end + colon + 1..scheme_end + at)
}

#[cfg(test)]
mod tests {
    use super::without_url_password;

    #[test]
    fn the_password_of_a_url_is_found_as_written_and_decoded() {
        assert_eq!(
            super::url_passwords("http://admin:pa55word@127.0.0.1:1/"),
            ["pa55word"]
        );
        assert_eq!(
            super::url_passwords("https://u:p%40ss@h/x"),
            ["p%40ss", "p@ss"]
        );
        assert!(super::url_passwords("http://host/").is_empty());
        assert!(super::url_passwords("user@host").is_empty());
    }

    #[test]
    fn a_url_password_is_hidden_and_nothing_else_changes() {
        assert_eq!(
            without_url_password("http://admin:PlanUrlPw22@host:8080/x?a=b@c"),
            "http://admin:***@host:8080/x?a=b@c"
        );
        assert_eq!(
            without_url_password("https://u:p%40ss@h/"),
            "https://u:***@h/"
        );
        for unchanged in [
            "http://host/path@x",
            "http://user@host/",
            "{{params.base_url}}/health",
            "http://127.0.0.1:3000/health",
        ] {
            assert_eq!(without_url_password(unchanged), unchanged);
        }
    }
}
