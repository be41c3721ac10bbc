//! Whole-runbook checks that need more than one node at a time: `needs`
//! resolution, cycles, and what templates read (params, steps, helpers),
//! including whether a step reads another step it does not depend on.

use crate::diagnostic::{Code, Diagnostic};
use crate::graph::Graph;
use crate::lower::{Lowered, did_you_mean};
use crate::model::*;
use crate::span::Span;
use crate::template::{
    Analysis, HELPERS, ROOT_NAMES, Template, VariableRef, analyze, helper_usage,
};
use crate::yaml::{Node, ScalarKind};
use indexmap::{IndexMap, IndexSet};

/// Runs every cross-node check on a lowered runbook.
pub(crate) fn validate(lowered: &Lowered, source: &str) -> Vec<Diagnostic> {
    let mut v = Validator {
        runbook: &lowered.runbook,
        all_ids: &lowered.all_ids,
        broken: &lowered.broken,
        source,
        diagnostics: Vec::new(),
        visited: Vec::new(),
        generation: 0,
    };
    for phase in [Phase::Main, Phase::OnFailure, Phase::Finally] {
        if let Some(steps) = lowered.runbook.phase(phase) {
            v.phase(phase, steps);
        }
    }
    for (name, value) in &lowered.runbook.env {
        v.template(
            value,
            &format!("env.{name}"),
            Scope::Global,
            Lands::Elsewhere,
        );
    }
    v.defaults_used_as_typed_fields();
    v.diagnostics
}

struct Validator<'a> {
    runbook: &'a Runbook,
    all_ids: &'a IndexSet<String>,
    /// Steps kept with a stand-in kind (see `Lowered::broken`): what their
    /// kind would give is unknown.
    broken: &'a IndexSet<String>,
    source: &'a str,
    diagnostics: Vec<Diagnostic>,
    /// Visit stamps for [`Validator::depends_on`], reused across queries.
    visited: Vec<u32>,
    generation: u32,
}

/// Where a template's rendered text ends up, for the checks that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lands {
    /// A shell step's script: quoted for the shell, and on the command line.
    ShellScript,
    /// A word of a shell step's `shell`: on the command line.
    ShellArgv,
    Elsewhere,
}

/// What a template may read from `steps`.
#[derive(Clone, Copy)]
enum Scope<'s> {
    /// The top-level `env`: no step has run when it is rendered.
    Global,
    /// A step of `phase` that may read its ancestors (and, outside the main
    /// map, any main step).
    Step {
        phase: Phase,
        id: &'s str,
        steps: &'s IndexMap<String, Step>,
        /// The map's graph and this step's index. Ancestry is a plain
        /// search, so it still holds in a map with a cycle (reported
        /// separately): a cycle must not hide every other missing need.
        graph: (&'s Graph, usize),
    },
    /// A rollback: sees `steps.*` as at the moment of failure.
    Rollback { parent: &'s str },
}

impl<'a> Validator<'a> {
    /// A main step's `when` on `steps.X.failed` is decided once X has
    /// finished; if X failed without `continue_on_failure`, the run has
    /// stopped by then and the step is skipped, so the condition is never
    /// seen true: the remedy it guards is dead code.
    fn when_on_a_failure_that_stops_the_run(&mut self, step: &Step) {
        let Some(when) = &step.when else { return };
        let Ok(analysis) = crate::template::analyze(&when.text) else {
            return;
        };
        if analysis
            .calls
            .iter()
            .any(|c| matches!(c.name.as_str(), "if" | "unless"))
        {
            // Which branch says what is more than this check reads.
            return;
        }
        let default = self.runbook.defaults.continue_on_failure.unwrap_or(false);
        let mut warned: Vec<&str> = Vec::new();
        for read in &analysis.variables {
            let [root, target, field] = read.path.as_slice() else {
                continue;
            };
            let Some(failing) = self.runbook.steps.get(target.as_str()) else {
                continue;
            };
            if root != "steps"
                || field != "failed"
                || analysis.negated.contains(read)
                || failing.continue_on_failure.unwrap_or(default)
                || warned.contains(&target.as_str())
            {
                continue;
            }
            warned.push(target);
            let span = self.locate(when, &read.raw);
            let id = &step.id.value;
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::FailureStopsTheRun,
                    span,
                    format!(
                        "the `when` of step `{id}` reads `steps.{target}.failed`, but a failure of `{target}` stops the run before `{id}` could start, so it never sees it true"
                    ),
                )
                .with_label("never true here")
                .with_help(format!(
                    "give `{target}` `continue_on_failure: true` to let the run go on to `{id}`, or move `{id}` to `on_failure`"
                )),
            );
        }
    }

    /// An `on_failure` or `finally` step runs whatever the main steps did:
    /// a main step's outputs are an empty map when it did not run, and a
    /// read of one of them fails the very step meant to report the failure.
    /// Warns of each read not made safe by `default`, an `#if` on that
    /// step, or the step's own `when` reading it.
    fn outputs_read_after_a_failure(&mut self, step: &Step, id: &str, phase: Phase) {
        let analyses = |template: &Template| crate::template::analyze(&template.text).ok();
        // A `when` that holds only once X ran (`steps.X.succeeded`, not
        // under `not`) makes X's outputs safe in the step's other fields.
        let guarded: Vec<String> = step
            .when
            .as_ref()
            .and_then(analyses)
            .map(|when| crate::template::steps_shown_to_have_run(&when.variables, &when.negated))
            .unwrap_or_default();
        let mut templates: Vec<(String, Template)> = step
            .templates()
            .into_iter()
            .map(|(field, template)| (field.to_string(), template.clone()))
            .collect();
        for (field, tree) in step.template_trees() {
            templates.extend(
                strings_of(tree)
                    .into_iter()
                    .map(|template| (field.to_string(), template)),
            );
        }
        for (field, template) in &templates {
            let Some(analysis) = analyses(template) else {
                continue;
            };
            for read in &analysis.unguarded_outputs {
                let target = &read.path[1];
                if !self.runbook.steps.contains_key(target.as_str())
                    || (field != "when" && guarded.contains(target))
                {
                    continue;
                }
                let span = self.locate(template, &read.raw);
                let raw = &read.raw;
                self.diagnostics.push(
                    Diagnostic::warning(
                        Code::OutputsMayBeMissing,
                        span,
                        format!(
                            "step `{id}` (in `{}`) reads `{raw}` in `{field}`, which does not exist when `{target}` did not run, and then fails",
                            phase.key()
                        ),
                    )
                    .with_label("missing if the step did not run")
                    .with_help(format!(
                        "write `{{{{default {raw} \"\"}}}}`, or read it inside `{{{{#if steps.{target}.succeeded}}}}…{{{{/if}}}}`"
                    )),
                );
            }
        }
    }

    fn phase(&mut self, phase: Phase, steps: &'a IndexMap<String, Step>) {
        for step in steps.values() {
            for need in &step.needs {
                if steps.contains_key(need.value.as_str()) {
                    if need.value == step.id.value {
                        let d = Diagnostic::error(
                            Code::DependencyCycle,
                            need.span,
                            format!("dependency cycle: {0} -> {0}", step.id.value),
                        )
                        .with_label("a step cannot need itself");
                        self.diagnostics.push(d);
                    }
                    continue;
                }
                let mut d = Diagnostic::error(
                    Code::UnknownNeed,
                    need.span,
                    format!(
                        "step `{}` needs `{}`, which is not a step in `{}`",
                        step.id.value,
                        need.value,
                        phase.key()
                    ),
                )
                .with_label("unknown step");
                if self.all_ids.contains(&need.value) && !steps.contains_key(need.value.as_str()) {
                    let other = [Phase::Main, Phase::OnFailure, Phase::Finally]
                        .into_iter()
                        .find(|p| {
                            self.runbook
                                .phase(*p)
                                .is_some_and(|m| m.contains_key(need.value.as_str()))
                        });
                    match other {
                        Some(other) => {
                            d = d.with_help(format!(
                                "`{}` is in `{}`; `needs` only orders steps of the same map (templates can still read main steps)",
                                need.value,
                                other.key()
                            ))
                        }
                        // The step exists but failed to lower; its own error says why.
                        None => continue,
                    }
                } else if let Some(s) = did_you_mean(&need.value, steps.keys().map(String::as_str))
                {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.diagnostics.push(d);
            }
        }
        let graph = Graph::new(steps);
        let cycles: Vec<Vec<usize>> = graph.cycles().into_iter().filter(|c| c.len() > 2).collect();
        for cycle in &cycles {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| steps.get_index(i).map_or("?", |(k, _)| k.as_str()))
                .collect();
            // Report at the `needs` entry that closes the cycle.
            let (&last, &closing) = (&cycle[cycle.len() - 2], &cycle[cycle.len() - 1]);
            let span = steps
                .get_index(last)
                .and_then(|(_, s)| {
                    s.needs
                        .iter()
                        .find(|n| steps.get_index_of(n.value.as_str()) == Some(closing))
                })
                .map_or(Span::default(), |n| n.span);
            let mut display: Vec<&str> = names.clone();
            display.reverse();
            self.diagnostics.push(
                Diagnostic::error(
                    Code::DependencyCycle,
                    span,
                    format!("dependency cycle: {}", display.join(" -> ")),
                )
                .with_label("this need closes the cycle")
                .with_help("remove one of these `needs` so the steps can be ordered"),
            );
        }
        for (index, step) in steps.values().enumerate() {
            let scope = Scope::Step {
                phase,
                id: &step.id.value,
                steps,
                graph: (&graph, index),
            };
            self.step(step, scope);
            if let Some(Rollback::Step(rollback)) = &step.rollback {
                self.step(
                    rollback,
                    Scope::Rollback {
                        parent: &step.id.value,
                    },
                );
            }
        }
    }

    fn step(&mut self, step: &Step, scope: Scope<'_>) {
        if let Scope::Step { phase, id, .. } = scope {
            if phase == Phase::Main {
                self.when_on_a_failure_that_stops_the_run(step);
            } else {
                self.outputs_read_after_a_failure(step, id, phase);
            }
        }
        let is_shell = matches!(step.kind, StepKind::Shell(_));
        for (field, template) in step.templates() {
            let lands = match field {
                "run" if is_shell => Lands::ShellScript,
                "shell" if is_shell => Lands::ShellArgv,
                _ => Lands::Elsewhere,
            };
            self.template(template, field, scope, lands);
        }
        for (field, tree) in step.template_trees() {
            for template in strings_of(tree) {
                self.template(&template, field, scope, Lands::Elsewhere);
            }
        }
    }

    fn template(&mut self, template: &Template, field: &str, scope: Scope<'_>, lands: Lands) {
        let shell_run = lands == Lands::ShellScript;
        if !template.is_templated() {
            return;
        }
        let analysis = match analyze(&template.text) {
            Ok(a) => a,
            Err(error) => {
                let span = error
                    .position
                    .and_then(|(line, col)| offset_of(&template.text, line, col))
                    .map_or(template.span, |offset| self.locate_offset(template, offset));
                let diagnostic = if error.over_limit {
                    Diagnostic::error(
                        Code::TemplateSyntax,
                        span,
                        format!("template in `{field}` is too large: {}", error.message),
                    )
                    .with_label("past the limit")
                    .with_help("split it across fields or steps")
                } else {
                    Diagnostic::error(
                        Code::TemplateSyntax,
                        span,
                        format!("template in `{field}` does not parse: {}", explain_syntax_error(&template.text, &error.message)),
                    )
                    .with_label("template error")
                    .with_help("templates use Handlebars syntax, such as `{{params.name}}` or `{{#if x}}...{{/if}}`")
                };
                self.diagnostics.push(diagnostic);
                return;
            }
        };
        for helper in &analysis.helpers {
            if HELPERS.contains(&helper.as_str()) {
                continue;
            }
            let span = self.locate(template, helper);
            if let Some(what) = match helper.as_str() {
                crate::template::PARTIAL => Some("partials (`{{> name}}`)"),
                crate::template::DECORATOR => Some("decorators (`{{* name}}`)"),
                _ => None,
            } {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::UnknownHelper,
                        span,
                        format!("{what} are not supported in runbook templates (in `{field}`)"),
                    )
                    .with_label("not supported")
                    .with_help("write the text out, or use a param or a step output"),
                );
                continue;
            }
            let mut d = Diagnostic::error(
                Code::UnknownHelper,
                span,
                format!("unknown template helper `{helper}` in `{field}`"),
            )
            .with_label("unknown helper");
            d = match did_you_mean(helper, HELPERS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("available helpers: {}", HELPERS.join(", "))),
            };
            self.diagnostics.push(d);
        }
        for call in &analysis.calls {
            // An unknown helper was reported above.
            let Some((usage, min, max)) = helper_usage(&call.name) else {
                continue;
            };
            if let Some(first) = call.named.first() {
                let name = &call.name;
                let all: Vec<String> = call.named.iter().map(|n| format!("`{n}=`")).collect();
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::WrongArgumentCount,
                        self.locate(template, &format!("{first}=")),
                        format!(
                            "`{name}` in `{field}` takes no named arguments, got {}",
                            all.join(", ")
                        ),
                    )
                    .with_label(format!("{name} {usage}"))
                    .with_help("a named argument is ignored without a word; give its value in place, as the usage shows"),
                );
            }
            if call.arguments >= min && max.is_none_or(|max| call.arguments <= max) {
                continue;
            }
            let expected = match max {
                Some(max) if max == min => min.to_string(),
                Some(max) => format!("{min} or {max}"),
                None => format!("at least {min}"),
            };
            let noun = if max == Some(1) || (max.is_none() && min == 1) {
                "argument"
            } else {
                "arguments"
            };
            let name = &call.name;
            self.diagnostics.push(
                Diagnostic::error(
                    Code::WrongArgumentCount,
                    self.locate(template, name),
                    format!(
                        "`{name}` in `{field}` takes {expected} {noun}, got {}",
                        call.arguments
                    ),
                )
                .with_label(format!("{name} {usage}"))
                .with_help(if call.arguments < min {
                    "a missing argument would fail the step when it renders; see \"Templates\" in docs/format.md"
                } else {
                    "the extra ones would be ignored without a word; see \"Templates\" in docs/format.md"
                }),
            );
        }
        for (block, named) in &analysis.block_params {
            // `each` gives an item and its index or key; `with` one value;
            // the others none.
            let gives = match block.as_str() {
                "each" => 2,
                "with" => 1,
                _ => 0,
            };
            if *named > gives {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::WrongArgumentCount,
                        self.locate(template, &format!("{{{{#{block}")),
                        format!(
                            "`#{block}` in `{field}` names {named} block params (`as |…|`), but gives {}",
                            match gives {
                                0 => "none".to_string(),
                                1 => "one value".to_string(),
                                n => format!("{n} values"),
                            }
                        ),
                    )
                    .with_label("block params")
                    .with_help("a name it does not give is never defined, and reading it fails the step"),
                );
            }
        }
        for pattern in &analysis.literal_patterns {
            if let Err(error) = regex::Regex::new(pattern) {
                // The literal as written, quotes and escapes included, so a
                // short pattern such as `[` is not found earlier in the
                // template and `\\d` is found at all.
                let written = serde_json::to_string(pattern).unwrap_or_default();
                let quoted = [written, format!("\"{pattern}\""), format!("'{pattern}'")];
                let span = quoted
                    .iter()
                    .map(|needle| self.locate(template, needle))
                    .find(|span| *span != template.span)
                    .unwrap_or_else(|| self.locate(template, pattern));
                let d = Diagnostic::error(
                    Code::InvalidValue,
                    span,
                    format!("the pattern given to `matches` in `{field}` is not a valid regular expression"),
                )
                .with_label("invalid regular expression")
                .with_help(crate::lower::regex_error_summary(&error));
                self.diagnostics.push(d);
            }
        }
        for read in &analysis.item_reads {
            let span = self.locate(template, &read.raw);
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::RootNameInBlock,
                    span,
                    format!(
                        "`{}` in `{field}` is inside `{{{{#each}}}}` or `{{{{#with}}}}`, so it is read from the block's item, not from the runbook's `{}`",
                        read.raw, read.path[0]
                    ),
                )
                .with_label("read from the item")
                .with_help(format!("write `@root.{}` to read the runbook's", read.path.join("."))),
            );
        }
        for raw in &analysis.raw_insertions {
            if shell_run {
                let span = self.locate_through(template, &format!("{{{{{{{raw}"), "}}}");
                self.diagnostics.push(
                    Diagnostic::warning(
                        Code::RawShellInsertion,
                        span,
                        format!("`{{{{{{{raw}}}}}}}` inserts its value into the script unquoted"),
                    )
                    .with_label("raw insertion")
                    .with_help("a value containing shell syntax would run as code; use `{{...}}` to insert it as one quoted word"),
                );
            }
        }
        if shell_run && let Err(refused) = crate::script_quoting::check_template(&template.text) {
            let (expression, why) = (&refused.expression, &refused.why);
            let span = if expression.is_empty() {
                template.span
            } else {
                self.locate_nth(template, expression, refused.occurrence)
            };
            self.diagnostics.push(
                Diagnostic::error(
                    Code::UnsafeShellInsertion,
                    span,
                    format!("`{expression}` in `run`: {why}"),
                )
                .with_label("no quoting keeps a value inert here")
                .with_help("the step would fail before its script starts; see \"Shell safety\" in docs/format.md"),
            );
        }
        for var in &analysis.variables {
            self.variable(template, field, &var.path, &var.raw, scope);
        }
        if lands != Lands::Elsewhere {
            self.secrets_on_command_line(template, field, &analysis);
        }
        for var in &analysis.inserted {
            self.inserted_structure(template, field, &var.path, &var.raw);
        }
    }

    /// A default that a step uses as a whole typed field (`timeout:
    /// "{{params.rollout_timeout}}"` with `default: "5"`) fails every run
    /// given no other value; `plan` and `run` refuse it, and so does this.
    fn defaults_used_as_typed_fields(&mut self) {
        let defaults: IndexMap<String, crate::params::ResolvedParam> = self
            .runbook
            .params
            .iter()
            .filter_map(|(name, param)| {
                let value = param.default.clone()?;
                Some((
                    name.clone(),
                    crate::params::ResolvedParam {
                        value,
                        source: crate::params::ParamSource::Default,
                        secret: param.secret,
                    },
                ))
            })
            .collect();
        for error in crate::params::unusable_uses(self.runbook, &defaults) {
            let crate::params::ParamError::UnusableAs { name, .. } = &error else {
                continue;
            };
            let span = self
                .runbook
                .params
                .get(name)
                .map_or_else(Span::default, |p| p.span);
            self.diagnostics.push(
                Diagnostic::error(Code::InvalidValue, span, format!("the default of {error}"))
                    .with_label("declared here")
                    .with_help("give it a default the field accepts, or none (then every run must give a value)"),
            );
        }
    }

    /// A script is the shell's last argument, and `ps` shows every process's
    /// arguments to every user of the machine for as long as the step runs;
    /// masking can only clean what the engine itself prints and stores. A
    /// process's environment is readable by its own user alone.
    fn secrets_on_command_line(&mut self, template: &Template, field: &str, analysis: &Analysis) {
        let mut warned = std::collections::BTreeSet::new();
        let reads = |var: &VariableRef, of: &[VariableRef]| {
            of.iter().filter(|v| v.path == var.path).count()
        };
        for var in &analysis.variables {
            // `{{#if params.token}}` decides; it puts nothing on the line.
            if reads(var, &analysis.variables) == reads(var, &analysis.tested) {
                continue;
            }
            // `{{json params}}`, `{{lookup params "token"}}`, `{{#each
            // params}}`: every param, the secret ones too.
            let names: Vec<&String> = match var.path.as_slice() {
                [root] if root == "params" => self
                    .runbook
                    .params
                    .iter()
                    .filter(|(_, p)| p.secret)
                    .map(|(name, _)| name)
                    .collect(),
                [root, name, ..] if root == "params" => vec![name],
                _ => continue,
            };
            for name in names {
                self.secret_on_command_line(template, field, var, name, &mut warned);
            }
        }
    }

    fn secret_on_command_line<'n>(
        &mut self,
        template: &Template,
        field: &str,
        var: &VariableRef,
        name: &'n String,
        warned: &mut std::collections::BTreeSet<&'n str>,
    ) {
        let Some(param) = self.runbook.params.get(name).filter(|p| p.secret) else {
            return;
        };
        if !warned.insert(name.as_str()) {
            return;
        }
        // The variable the param is already read from, if any, is the
        // name its users know.
        let variable = param
            .env
            .clone()
            .unwrap_or_else(|| name.to_ascii_uppercase());
        self.diagnostics.push(
            Diagnostic::warning(
                Code::SecretOnCommandLine,
                self.locate(template, &var.raw),
                format!(
                    "`{field}` reads {}: the rendered command line can be read by every user of this machine (`ps`) while the step runs",
                    if var.path.len() == 1 {
                        format!("every param, the secret `{name}` too")
                    } else {
                        format!("the secret param `{name}`")
                    }
                ),
            )
            .with_label("secret on the command line")
            .with_help(format!(
                "pass it in the step's environment, `env: {{{variable}: \"{{{{params.{name}}}}}\"}}`, and write \"${variable}\" in the script"
            )),
        );
    }

    /// `{{steps.get.outputs.items}}` renders `[object]` or `[a, b]`, never
    /// the data; the `json` helper gives the data as JSON.
    fn inserted_structure(&mut self, template: &Template, field: &str, path: &[String], raw: &str) {
        // In a document sent as JSON (an HTTP `json` body, a `patch`), a
        // string that is only a reference sends the value itself.
        // As the step reads it: dotted names only (`[a-b]` segments render
        // as text).
        let only_reference = template
            .text
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .is_some_and(|inner| {
                inner.trim() == raw
                    && raw.split('.').all(|segment| {
                        !segment.is_empty()
                            && segment
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
            });
        if matches!(field, "json" | "patch") && only_reference {
            return;
        }
        // What it is, and how to read one part of it.
        let (what, part) = match path {
            // Whole parts of the context: `{{params}}`, `{{steps.check}}`.
            [root] if matches!(root.as_str(), "params" | "steps" | "run" | "env") => {
                ("is a mapping", format!("`{raw}.NAME`"))
            }
            [root, _] if root == "steps" => ("is a mapping", format!("`{raw}.status`")),
            [root, _, outputs] if root == "steps" && outputs == "outputs" => {
                ("is a mapping", format!("`{raw}.NAME`"))
            }
            [root, id, outputs, name] if root == "steps" && outputs == "outputs" => {
                let step = [
                    &self.runbook.steps,
                    &self.runbook.on_failure,
                    &self.runbook.finally,
                ]
                .iter()
                .find_map(|map| map.get(id.as_str()));
                match step {
                    Some(step) if step.kind.structured_outputs().contains(&name.as_str()) => {
                        match name.as_str() {
                            "json" => (
                                "may be a list or a mapping",
                                format!("`{raw}.[0]`, `{raw}.NAME`"),
                            ),
                            "lines" | "items" | "pods" | "revisions" => {
                                ("is a list", format!("`{raw}.[0]`"))
                            }
                            _ => ("is a mapping", format!("`{raw}.NAME`")),
                        }
                    }
                    _ => return,
                }
            }
            _ => return,
        };
        let span = self.locate_insertion(template, raw);
        self.diagnostics.push(
            Diagnostic::warning(
                Code::StructureInserted,
                span,
                format!("`{raw}` in `{field}` {what}, which renders as `[object]` or `[a, b]`, not as its data"),
            )
            .with_label("inserted as it is")
            .with_help(format!(
                "write `{{{{json {raw}}}}}` for the data as JSON, read one part of it ({part}), or loop over it with `{{{{#each {raw}}}}}`"
            )),
        );
    }

    fn variable(
        &mut self,
        template: &Template,
        field: &str,
        path: &[String],
        raw: &str,
        scope: Scope<'_>,
    ) {
        let span = self.locate(template, raw);
        let root = path[0].as_str();
        // `params.x`, `run.id` and a step's `status`, `error`, ... are single
        // values: a path past one can never resolve, and strict rendering
        // would fail the step at run time.
        let single = match root {
            "params" | "run" => Some(2),
            "steps" if path.get(2).is_some_and(|m| m != "outputs") => Some(3),
            _ => None,
        };
        if let Some(depth) = single
            && path.len() > depth
            && (root != "params" || self.runbook.params.contains_key(&path[1]))
        {
            let value = path[..depth].join(".");
            self.diagnostics.push(
                Diagnostic::error(
                    Code::UnknownVariable,
                    span,
                    format!(
                        "template in `{field}` reads `{}`, but `{value}` is a single value with nothing inside",
                        path.join(".")
                    ),
                )
                .with_label("nothing to read here")
                .with_help(format!("read `{value}` itself")),
            );
            return;
        }
        match root {
            "params" => {
                if let Some(name) = path.get(1)
                    && !self.runbook.params.contains_key(name)
                {
                    let mut d = Diagnostic::error(
                        Code::UnknownParam,
                        span,
                        format!("template in `{field}` reads `params.{name}`, but no param `{name}` is declared"),
                    )
                    .with_label("undeclared param");
                    d = match did_you_mean(name, self.runbook.params.keys().map(String::as_str)) {
                        Some(s) => d.with_help(format!("did you mean `params.{s}`?")),
                        None => d.with_help(format!(
                            "declare it under `params:`, for example `{name}: {{description: ...}}`"
                        )),
                    };
                    self.diagnostics.push(d);
                }
            }
            "env" => {}
            "run" => {
                if let Some(name) = path.get(1)
                    && !RUN_CONTEXT_FIELDS.contains(&name.as_str())
                {
                    self.diagnostics.push(
                        Diagnostic::error(
                            Code::UnknownVariable,
                            span,
                            format!("`run.{name}` does not exist"),
                        )
                        .with_label("unknown field")
                        .with_help(format!("`run` has: {}", RUN_CONTEXT_FIELDS.join(", "))),
                    );
                }
            }
            "steps" => self.step_reference(span, field, path, scope),
            "@root" | "@index" | "@key" | "@first" | "@last" | "this" => {}
            other => {
                let mut d = Diagnostic::error(
                    Code::UnknownVariable,
                    span,
                    format!("template in `{field}` reads `{raw}`, which is not a known variable"),
                )
                .with_label("unknown variable");
                d = match did_you_mean(other, ROOT_NAMES.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if self.runbook.params.contains_key(other) => {
                        d.with_help(format!("params are read as `params.{other}`"))
                    }
                    None => {
                        d.with_help("templates can read `params.*`, `env.*`, `steps.*` and `run.*`")
                    }
                };
                self.diagnostics.push(d);
            }
        }
    }

    fn step_reference(&mut self, span: Span, field: &str, path: &[String], scope: Scope<'_>) {
        let Some(target) = path.get(1) else { return };
        if !self.all_ids.contains(target) {
            let mut d = Diagnostic::error(
                Code::UnknownStep,
                span,
                format!(
                    "template in `{field}` reads `steps.{target}`, but there is no step `{target}`"
                ),
            )
            .with_label("unknown step");
            if let Some(s) = did_you_mean(target, self.all_ids.iter().map(String::as_str)) {
                d = d.with_help(format!("did you mean `steps.{s}`?"));
            }
            self.diagnostics.push(d);
            return;
        }
        // A step that exists but could not be read (a mistyped `type`, a
        // missing field) has its own error and no place in the graph:
        // judging reads of it against the graph would add a second error,
        // with advice to add a `needs` that is often already there.
        let understood = self.runbook.steps.contains_key(target)
            || self.runbook.on_failure.contains_key(target)
            || self.runbook.finally.contains_key(target);
        if !understood {
            return;
        }
        let allowed = match scope {
            Scope::Global => false,
            Scope::Rollback { .. } => self.runbook.steps.contains_key(target),
            Scope::Step {
                phase,
                steps,
                graph,
                ..
            } => {
                let in_main = self.runbook.steps.contains_key(target);
                let (graph, from) = graph;
                let is_ancestor = steps
                    .get_index_of(target.as_str())
                    .is_some_and(|t| t != from && self.depends_on(graph, from, t));
                is_ancestor || (phase != Phase::Main && in_main)
            }
        };
        if !allowed {
            let (who, help) = match scope {
                Scope::Global => (
                    "the top-level `env`".to_string(),
                    "the top-level `env` is rendered before any step runs; move the value into the step's own `env`".to_string(),
                ),
                Scope::Step { id, .. } if id == target => (
                    format!("step `{id}`"),
                    "a step cannot read its own result; read it from a later step".to_string(),
                ),
                Scope::Step {
                    id, phase, steps, ..
                } if !steps.contains_key(target.as_str()) => {
                    // `needs` orders steps of one map only: adding one
                    // across maps is an error of its own (RB201).
                    let map = if self.runbook.on_failure.contains_key(target) {
                        "on_failure"
                    } else if self.runbook.finally.contains_key(target) {
                        "finally"
                    } else {
                        "steps"
                    };
                    let help = if phase == Phase::Main {
                        format!("`{target}` is in `{map}`, which runs after the main steps: a main step can read only the main steps it needs")
                    } else {
                        format!(
                            "`{target}` is in `{map}`: a step of `{}` can read the main steps and the steps of `{}` it needs",
                            phase.key(),
                            phase.key()
                        )
                    };
                    (format!("step `{id}`"), help)
                }
                Scope::Step { id, .. } => (
                    format!("step `{id}`"),
                    format!("add `{target}` to the `needs` of `{id}` (directly or through another step)"),
                ),
                Scope::Rollback { parent } => (
                    format!("the rollback of `{parent}`"),
                    "rollbacks can read main steps only".to_string(),
                ),
            };
            // The top-level `env` cannot depend on anything.
            let message = if matches!(scope, Scope::Global) {
                format!(
                    "{who} cannot read `steps.{target}` (in `{field}`): no step has run when it is rendered"
                )
            } else if matches!(scope, Scope::Step { steps, .. } if !steps.contains_key(target.as_str()))
            {
                format!("{who} reads `steps.{target}` in `{field}`, a step it cannot depend on")
            } else {
                format!("{who} reads `steps.{target}` in `{field}` without depending on `{target}`")
            };
            self.diagnostics.push(
                Diagnostic::error(Code::MissingDependency, span, message)
                    .with_label("not a dependency")
                    .with_help(help),
            );
            return;
        }
        let Some(member) = path.get(2) else { return };
        if !STEP_CONTEXT_FIELDS.contains(&member.as_str()) {
            let mut d = Diagnostic::error(
                Code::UnknownVariable,
                span,
                format!("`steps.{target}.{member}` does not exist"),
            )
            .with_label("unknown field");
            d = match did_you_mean(member, STEP_CONTEXT_FIELDS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `steps.{target}.{s}`?")),
                None => d.with_help(format!("a step has: {}", STEP_CONTEXT_FIELDS.join(", "))),
            };
            self.diagnostics.push(d);
            return;
        }
        if member == "outputs"
            && !self.broken.contains(target)
            && let Some(output) = path.get(3)
            && let Some(step) = [
                &self.runbook.steps,
                &self.runbook.on_failure,
                &self.runbook.finally,
            ]
            .into_iter()
            .find_map(|map| map.get(target.as_str()))
        {
            let names = step.kind.output_names();
            if !names.contains(&output.as_str()) {
                let mut d = Diagnostic::error(
                    Code::UnknownVariable,
                    span,
                    format!(
                        "step `{target}` ({}) has no output `{output}`",
                        step.kind.type_name()
                    ),
                )
                .with_label("unknown output");
                d = match did_you_mean(output, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `steps.{target}.outputs.{s}`?")),
                    None => d.with_help(format!("its outputs are: {}", names.join(", "))),
                };
                self.diagnostics.push(d);
            } else if output == "headers"
                && matches!(step.kind, StepKind::HttpCheck(_))
                && let Some(header) = path.get(4)
                && header.chars().any(|c| c.is_ascii_uppercase())
            {
                // Always missing: the output's names are lower-case, as
                // HTTP/2 sends them and as HTTP/1.1 compares them.
                let lower = header.to_ascii_lowercase();
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::UnknownVariable,
                        span,
                        format!(
                            "`steps.{target}.outputs.headers.{header}` is never there: header names in `headers` are lower-case"
                        ),
                    )
                    .with_label("not lower-case")
                    .with_help(format!("write `steps.{target}.outputs.headers.{lower}`")),
                );
            }
        }
    }

    /// Whether step `from` depends on step `to`, directly or transitively.
    /// Most references are to a direct need; the rest walk the graph with a
    /// reused visit buffer, so memory stays linear in the number of steps
    /// (per-step ancestor bitsets were quadratic).
    fn depends_on(&mut self, graph: &Graph, from: usize, to: usize) -> bool {
        if graph.needs[from].contains(&to) {
            return true;
        }
        if self.visited.len() < graph.needs.len() {
            self.visited.resize(graph.needs.len(), 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.generation = 1;
        }
        let mut stack = vec![from];
        while let Some(node) = stack.pop() {
            for &need in &graph.needs[node] {
                if need == to {
                    return true;
                }
                if self.visited[need] != self.generation {
                    self.visited[need] = self.generation;
                    stack.push(need);
                }
            }
        }
        false
    }

    /// The position of `needle` inside the template's scalar in the file, or
    /// the scalar's start when it cannot be found (escapes can change text).
    fn locate(&self, template: &Template, needle: &str) -> Span {
        self.locate_nth(template, needle, 0)
    }

    /// Where `start` appears in the template's source, through the first
    /// `end` after it (a raw `{{{x}}}`, whatever spaces are inside).
    fn locate_through(&self, template: &Template, start: &str, end: &str) -> Span {
        let span = template.span;
        let Some(region) = self.source.get(span.start..span.end.max(span.start)) else {
            return span;
        };
        match region.find(start) {
            Some(at) => {
                let through = region[at + start.len()..]
                    .find(end)
                    .map_or(start.len(), |close| start.len() + close + end.len());
                self.position(span, at, through)
            }
            None => span,
        }
    }

    /// Where the `n`th appearance (from 0) of `needle` in the template's
    /// source is; the first when there are fewer (the source spells it
    /// differently, with escapes).
    fn locate_nth(&self, template: &Template, needle: &str, n: usize) -> Span {
        let span = template.span;
        let Some(region) = self.source.get(span.start..span.end.max(span.start)) else {
            return span;
        };
        let mut found = region.match_indices(needle).map(|(at, _)| at);
        match found.clone().nth(n).or_else(|| found.next()) {
            Some(offset) => self.position(span, offset, needle.len()),
            None => span,
        }
    }

    /// Where `{{ raw }}` itself is, rather than a longer path that starts
    /// the same way or the argument of a helper.
    fn locate_insertion(&self, template: &Template, raw: &str) -> Span {
        let span = template.span;
        let Some(region) = self.source.get(span.start..span.end.max(span.start)) else {
            return span;
        };
        let found = region.match_indices(raw).map(|(at, _)| at).find(|&at| {
            region[..at].trim_end().ends_with("{{")
                && region[at + raw.len()..].trim_start().starts_with("}}")
        });
        match found {
            Some(at) => self.position(span, at, raw.len()),
            None => self.locate(template, raw),
        }
    }

    fn locate_offset(&self, template: &Template, offset: usize) -> Span {
        let rest = &template.text[offset..];
        let needle: String = rest.chars().take_while(|c| *c != '\n').take(12).collect();
        if needle.is_empty() {
            return template.span;
        }
        self.locate(template, &needle)
    }

    fn position(&self, span: Span, offset: usize, len: usize) -> Span {
        let before = &self.source[span.start..span.start + offset];
        let newlines = before.matches('\n').count() as u32;
        let col = match before.rfind('\n') {
            Some(nl) => before[nl + 1..].chars().count() as u32 + 1,
            None => span.col + before.chars().count() as u32,
        };
        Span {
            start: span.start + offset,
            end: span.start + offset + len,
            line: span.line + newlines,
            col,
        }
    }
}

/// Handlebars' parser reports what tokens it expected, which reads as noise;
/// the usual causes are an unclosed block or unbalanced braces, so say that.
fn explain_syntax_error(text: &str, message: &str) -> String {
    for block in ["if", "unless", "each", "with"] {
        let opened = text.matches(&format!("{{{{#{block}")).count();
        let closed = text.matches(&format!("{{{{/{block}")).count();
        if opened > closed {
            return format!("`{{{{#{block}}}}}` is not closed with `{{{{/{block}}}}}`");
        }
        if closed > opened {
            return format!("`{{{{/{block}}}}}` closes a block that was never opened");
        }
    }
    if text.matches("{{").count() != text.matches("}}").count() {
        return "unbalanced `{{` and `}}`".to_string();
    }
    if message.contains("expected") {
        return "invalid Handlebars syntax".to_string();
    }
    message.to_string()
}

/// The byte offset of a 1-based (line, column) position in `text`.
fn offset_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within: usize = l
                .chars()
                .take(col.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return Some((offset + within).min(text.len()));
        }
        offset += l.len();
    }
    None
}

/// Every string of a templated tree (a `json` body, a `patch`), each as the
/// template it is.
fn strings_of(tree: &Node) -> Vec<Template> {
    let mut templates = Vec::new();
    tree.for_each_string(&mut |node, text| {
        templates.push(Template {
            text: text.to_string(),
            span: node.span,
            style: node.style.unwrap_or(ScalarKind::Plain),
        });
    });
    templates
}
