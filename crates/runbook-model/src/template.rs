//! Templates: Handlebars strings found in step fields, and their static
//! analysis (which variables and helpers a template uses, and where).
//!
//! Rendering happens in the engine; this module only parses, so that
//! `runbook validate` catches a misspelt param or an unknown helper long
//! before the step that uses it runs.

use crate::span::Span;
use crate::yaml::ScalarKind;
use handlebars::template::{Parameter, TemplateElement};
use schemars::JsonSchema;

/// Helpers available in every template, besides Handlebars' block helpers
/// (`if`, `unless`, `each`, `with`, `lookup`). The engine registers exactly
/// these; a test there keeps the two lists in step.
pub const HELPERS: &[&str] = &[
    // Handlebars built-ins.
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
    "lookup",
    "log",
    // Ours.
    "contains",
    "default",
    "json",
    "lower",
    "upper",
    "trim",
    "join",
    "split",
    "replace",
    "starts_with",
    "ends_with",
    "to_int",
    "concat",
    "matches",
    "first",
    "last",
    "quote",
];

/// Block helpers (used as `{{#name}}…{{/name}}`).
pub const BLOCK_HELPERS: &[&str] = &["if", "unless", "each", "with"];

/// How a helper or block is called: its arguments as docs/format.md names
/// them, and how many it takes (`None`: any number from the first).
/// Handlebars passes a helper whatever it is given; one argument too few
/// fails only when the step renders it, one too many is silently ignored.
pub fn helper_usage(name: &str) -> Option<(&'static str, usize, Option<usize>)> {
    Some(match name {
        "eq" | "ne" | "gt" | "gte" | "lt" | "lte" => ("A B", 2, Some(2)),
        "and" | "or" => ("A B …", 2, None),
        "not" | "json" | "to_int" | "if" | "unless" | "with" => ("VALUE", 1, Some(1)),
        "len" => ("TEXT, LIST or MAP", 1, Some(1)),
        "lookup" => ("MAP-OR-LIST KEY", 2, Some(2)),
        "log" => ("VALUE …", 1, None),
        "contains" => ("HAYSTACK NEEDLE", 2, Some(2)),
        "default" => ("VALUE FALLBACK", 2, Some(2)),
        "lower" | "upper" | "trim" | "quote" => ("TEXT", 1, Some(1)),
        "join" => ("LIST [SEPARATOR]", 1, Some(2)),
        "split" => ("TEXT SEPARATOR", 2, Some(2)),
        "replace" => ("TEXT FROM TO", 3, Some(3)),
        "starts_with" | "ends_with" => ("TEXT PIECE", 2, Some(2)),
        "concat" => ("VALUE …", 1, None),
        "matches" => ("TEXT REGEX", 2, Some(2)),
        "first" | "last" | "each" => ("LIST", 1, Some(1)),
        _ => return None,
    })
}

/// A string value of a step. It may or may not contain `{{ }}` expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// The text as written (after YAML unquoting).
    pub text: String,
    /// Where the scalar is written.
    pub span: Span,
    /// How the scalar is written.
    pub style: ScalarKind,
}

impl JsonSchema for Template {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

impl Template {
    /// Whether the text contains a template expression at all; plain text is
    /// used as is, which keeps the common case cheap.
    pub fn is_templated(&self) -> bool {
        self.text.contains("{{")
    }
}

/// A helper or block called by a template, with how many positional
/// arguments it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperCall {
    /// The helper's name.
    pub name: String,
    /// How many arguments it was given.
    pub arguments: usize,
    /// The names of its named arguments (`sep="-"`), which no helper or
    /// block of ours reads.
    pub named: Vec<String>,
}

/// A variable read by a template, such as `params.namespace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableRef {
    /// The path segments: `["steps", "check", "outputs", "status"]`.
    pub path: Vec<String>,
    /// The path as written, used to find it in the source.
    pub raw: String,
}

/// Stands in [`Analysis::helpers`] for a partial (`{{> name}}`), which
/// runbook templates do not support.
pub const PARTIAL: &str = "{{>";
/// Stands in [`Analysis::helpers`] for a decorator (`{{* name}}`), which
/// runbook templates do not support.
pub const DECORATOR: &str = "{{*";

/// What a template uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Variables read from the root context.
    pub variables: Vec<VariableRef>,
    /// Helpers called (excluding the block helpers).
    pub helpers: Vec<String>,
    /// Every call of a helper or a block, built-in blocks included, in
    /// order, for checking the number of arguments.
    pub calls: Vec<HelperCall>,
    /// The blocks that name block params (`{{#each x as |item i|}}`), with
    /// how many they name.
    pub block_params: Vec<(String, usize)>,
    /// The reads of [`Analysis::variables`] that only decide something
    /// (a predicate's argument such as `eq`'s, an `#if`'s condition): none
    /// of their text is rendered.
    pub tested: Vec<VariableRef>,
    /// Raw `{{{ }}}` insertions, as written.
    pub raw_insertions: Vec<String>,
    /// Patterns given to `matches` as string literals, which can be
    /// checked before the run instead of failing the step that renders them.
    pub literal_patterns: Vec<String>,
    /// Root variables inserted as they are (`{{steps.a.outputs.items}}`),
    /// not handed to a helper or a block.
    pub inserted: Vec<VariableRef>,
    /// Paths inside `{{#each}}` or `{{#with}}` that start with a name of
    /// the root (`params.ns`) but are read from the block's item, where
    /// such a name is almost never found: `../params.ns` or
    /// `@root.params.ns` reads the runbook's.
    pub item_reads: Vec<VariableRef>,
    /// Reads of one of a step's outputs (`steps.X.outputs.name…`) that fail
    /// when X did not run: not an argument of `default`, not the bare
    /// condition of an `#if` or `#unless` (a missing value is false there),
    /// and not where a condition on X holds: the body of an `#if` (the
    /// `else` of an `#unless`) whose condition reads `steps.X.succeeded`,
    /// `steps.X.failed` or one of X's outputs, not under `not`.
    pub unguarded_outputs: Vec<VariableRef>,
    /// Reads made under `not` or `or`: true, they do not say that the
    /// step they read ran.
    pub negated: Vec<VariableRef>,
    /// The literal text outside every expression and block, joined:
    /// `true ` in `true {{x}}`. A value that must render to one word
    /// cannot have any.
    pub outer_text: String,
}

/// A template that does not parse, or is past a limit of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// What Handlebars said, or which limit was passed.
    pub message: String,
    /// 1-based line and column inside the template text, when known.
    pub position: Option<(usize, usize)>,
    /// Past [`MAX_EXPRESSIONS`] or [`MAX_NESTING`]: valid syntax, too much
    /// of it.
    pub over_limit: bool,
}

/// How deep blocks and subexpressions may nest. Handlebars parses and
/// renders them by recursion: a few thousand levels overflowed the stack,
/// and the process died by a signal with no diagnostic. Templates people
/// write nest a handful of levels.
pub const MAX_NESTING: usize = 32;

/// How many `{{` one template may hold. Handlebars finds the line and
/// column of every element by counting from the start of the text, so
/// compiling takes time quadratic in the number of expressions: 5,000 took
/// 0.9 s, 20,000 took 13 s, at every validate and every render. Templates
/// people write hold a few dozen.
pub const MAX_EXPRESSIONS: usize = 1_000;

/// Parses `text` and lists what it uses.
pub fn analyze(text: &str) -> Result<Analysis, SyntaxError> {
    let mut analysis = Analysis::default();
    if !text.contains("{{") {
        return Ok(analysis);
    }
    if let Some(offset) = text
        .match_indices("{{")
        .nth(MAX_EXPRESSIONS)
        .map(|(i, _)| i)
    {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        return Err(SyntaxError {
            message: format!("it holds more than {MAX_EXPRESSIONS} expressions (`{{{{`)"),
            position: Some((line, col)),
            over_limit: true,
        });
    }
    if let Some(position) = nests_too_deep(text) {
        return Err(SyntaxError {
            message: format!("blocks and subexpressions nest more than {MAX_NESTING} levels deep"),
            position: Some(position),
            over_limit: true,
        });
    }
    let template = handlebars::template::Template::compile(text).map_err(|error| SyntaxError {
        message: error.reason().to_string(),
        position: error.pos(),
        over_limit: false,
    })?;
    walk(
        &template.elements,
        &Scope::default(),
        false,
        true,
        &mut analysis,
    );
    for element in &template.elements {
        if let TemplateElement::RawString(text) = element {
            analysis.outer_text.push_str(text);
        }
    }
    Ok(analysis)
}

/// The 1-based line and column of the first `{{#block` or `(` that nests
/// deeper than [`MAX_NESTING`], found by a scan that does not recurse.
/// Quoted literals and comments are skipped.
fn nests_too_deep(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut line, mut col) = (1usize, 1usize);
    let mut blocks = 0usize;
    // Inside a mustache: its subexpression depth, and an open quote.
    let mut inside: Option<usize> = None;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let here = (line, col);
        let rest = &bytes[i..];
        let mut step = 1;
        match inside {
            None if rest.starts_with(b"{{") => {
                step = rest.iter().take_while(|&&b| b == b'{').count();
                let body = &rest[step..];
                let body = body.strip_prefix(b"~").unwrap_or(body);
                if body.starts_with(b"!") {
                    // A comment: skip to its end, counting nothing in it.
                    let end: &[u8] = if body.starts_with(b"!--") {
                        b"--}}"
                    } else {
                        b"}}"
                    };
                    step = rest
                        .windows(end.len())
                        .position(|w| w == end)
                        .map_or(rest.len(), |at| at + end.len());
                } else {
                    if body.starts_with(b"#") {
                        blocks += 1;
                        if blocks > MAX_NESTING {
                            return Some(here);
                        }
                    } else if body.starts_with(b"/") {
                        blocks = blocks.saturating_sub(1);
                    }
                    inside = Some(0);
                }
            }
            None => {}
            Some(depth) => match (quote, rest[0]) {
                (Some(q), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(rest[0]),
                (None, b'(') => {
                    if depth + 1 > MAX_NESTING {
                        return Some(here);
                    }
                    inside = Some(depth + 1);
                }
                (None, b')') => inside = Some(depth.saturating_sub(1)),
                (None, b'}') if rest.starts_with(b"}}") => {
                    step = rest.iter().take_while(|&&b| b == b'}').count();
                    inside = None;
                }
                _ => {}
            },
        }
        for &b in &bytes[i..(i + step).min(bytes.len())] {
            if b == b'\n' {
                line += 1;
                col = 1;
            } else if b & 0xC0 != 0x80 {
                col += 1;
            }
        }
        i += step;
    }
    None
}

/// Helpers whose result says something about their arguments (a boolean,
/// a count) without carrying their text.
const PREDICATES: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
];

/// Where in the blocks of a template an expression stands.
#[derive(Clone, Default)]
struct Scope {
    /// How many `each` and `with` blocks it is inside: the context is the
    /// innermost one's item.
    depth: usize,
    /// The names the enclosing blocks give (`as |pod i|`), which are not
    /// the item's fields.
    block_params: Vec<String>,
    /// The steps whose `steps.X` the conditions of the enclosing `#if` and
    /// `#unless` blocks read.
    guards: Vec<String>,
    /// Inside the arguments of `default`, which stands in for a missing
    /// value.
    defaulted: bool,
    /// Inside the arguments of `not`.
    negated: bool,
}

/// The steps whose run `reads` (a block's condition) shows, when the
/// condition holds: `steps.X.succeeded`, `steps.X.failed` or one of X's
/// outputs, read as they are (not under `not`).
pub(crate) fn steps_shown_to_have_run(
    reads: &[VariableRef],
    negated: &[VariableRef],
) -> Vec<String> {
    reads
        .iter()
        .filter(|v| !negated.contains(v))
        .filter_map(|v| match v.path.as_slice() {
            [root, step, field, ..]
                if root == "steps"
                    && matches!(field.as_str(), "succeeded" | "failed" | "outputs") =>
            {
                Some(step.clone())
            }
            _ => None,
        })
        .collect()
}

/// `tested`: the values read here only decide something (the arguments of
/// a predicate, an `#if`'s condition); none of their text is rendered.
/// `inserting`: an expression here is written into the text (not a
/// subexpression's value handed to a helper).
fn walk(
    elements: &[TemplateElement],
    scope: &Scope,
    tested: bool,
    inserting: bool,
    analysis: &mut Analysis,
) {
    for element in elements {
        match element {
            TemplateElement::Expression(helper) | TemplateElement::HtmlExpression(helper) => {
                // `{{{quote x}}}` is the documented way to insert one shell
                // word raw: quoting is what the helper does.
                let quoted_by_helper =
                    matches!(&helper.name, Parameter::Name(name) if name == "quote");
                if let TemplateElement::HtmlExpression(_) = element
                    && !quoted_by_helper
                {
                    // With its arguments as written, so that `{{{json a}}}`
                    // and `{{{json b}}}` are told apart.
                    // A subexpression has no text of its own here: the
                    // helper's name alone then.
                    let simple = !helper
                        .params
                        .iter()
                        .any(|p| matches!(p, Parameter::Subexpression(_)));
                    let written = if simple {
                        std::iter::once(&helper.name)
                            .chain(&helper.params)
                            .map(describe)
                            .collect::<Vec<_>>()
                            .join(" ")
                    } else {
                        describe(&helper.name)
                    };
                    analysis.raw_insertions.push(written);
                }
                let is_call = !helper.params.is_empty() || !helper.hash.is_empty();
                match &helper.name {
                    Parameter::Name(name) if is_call || HELPERS.contains(&name.as_str()) => {
                        analysis.helpers.push(name.clone());
                        analysis.calls.push(HelperCall {
                            name: name.clone(),
                            arguments: helper.params.len(),
                            named: named_arguments(helper),
                        });
                    }
                    // `{{upper}}`: Handlebars calls the helper, with nothing.
                    Parameter::Path(handlebars::Path::Relative((_, raw)))
                        if HELPERS.contains(&raw.as_str()) =>
                    {
                        analysis.helpers.push(raw.clone());
                        analysis.calls.push(HelperCall {
                            name: raw.clone(),
                            arguments: 0,
                            named: Vec::new(),
                        });
                    }
                    name => {
                        let before = analysis.variables.len();
                        parameter(name, scope, tested, analysis);
                        if analysis.variables.len() == before + 1
                            && let Some(variable) = analysis.variables.last()
                        {
                            analysis.inserted.push(variable.clone());
                        }
                    }
                }
                if matches!(&helper.name, Parameter::Name(name) if name == "matches")
                    && let Some(Parameter::Literal(serde_json::Value::String(pattern))) =
                        helper.params.get(1)
                {
                    analysis.literal_patterns.push(pattern.clone());
                }
                let predicate = matches!(&helper.name, Parameter::Name(name) if PREDICATES.contains(&name.as_str()));
                // `{{default steps.a.outputs.lines "none"}}` writes the list
                // as it is, like `{{steps.a.outputs.lines}}`.
                let is_default = matches!(&helper.name, Parameter::Name(name) if name == "default");
                let passes_first_through = inserting && is_default;
                let mut arguments = scope.clone();
                arguments.defaulted |= is_default;
                // Under `not`, or one of several `or` alternatives, a read
                // says nothing certain about the step it reads.
                arguments.negated |=
                    matches!(&helper.name, Parameter::Name(name) if name == "not" || name == "or");
                for (i, p) in helper.params.iter().chain(helper.hash.values()).enumerate() {
                    let before = analysis.variables.len();
                    parameter(p, &arguments, tested || predicate, analysis);
                    if i == 0
                        && passes_first_through
                        && analysis.variables.len() == before + 1
                        && let Some(variable) = analysis.variables.last()
                    {
                        analysis.inserted.push(variable.clone());
                    }
                }
            }
            TemplateElement::HelperBlock(helper) => {
                let name = describe(&helper.name);
                if !BLOCK_HELPERS.contains(&name.as_str()) {
                    analysis.helpers.push(name.clone());
                }
                analysis.calls.push(HelperCall {
                    name: name.clone(),
                    arguments: helper.params.len(),
                    named: named_arguments(helper),
                });
                let given: Vec<String> = match &helper.block_param {
                    Some(handlebars::template::BlockParam::Single(one)) => vec![describe(one)],
                    Some(handlebars::template::BlockParam::Pair((one, two))) => {
                        vec![describe(one), describe(two)]
                    }
                    // Forms a later Handlebars may add name nothing we check.
                    _ => Vec::new(),
                };
                if !given.is_empty() {
                    analysis.block_params.push((name.clone(), given.len()));
                }
                let condition = matches!(name.as_str(), "if" | "unless");
                let before = analysis.variables.len();
                let negated_before = analysis.negated.len();
                for p in helper.params.iter().chain(helper.hash.values()) {
                    // A bare path as a condition is false when missing, not
                    // an error.
                    let mut at = scope.clone();
                    at.defaulted |= condition && matches!(p, Parameter::Path(_));
                    parameter(p, &at, tested || condition, analysis);
                }
                // Where the condition holds (an `#if`'s body, an
                // `#unless`'s `else`), the steps it shows to have run have
                // their outputs.
                let mut holds = scope.clone();
                if condition {
                    holds.guards.extend(steps_shown_to_have_run(
                        &analysis.variables[before..],
                        &analysis.negated[negated_before..],
                    ));
                }
                let (body, otherwise) = if name == "unless" {
                    (scope, &holds)
                } else {
                    (&holds, scope)
                };
                // Inside `each` and `with` the context moves to the item:
                // a path reaches the root again through as many `../`.
                let mut inner = body.clone();
                inner.depth += usize::from(matches!(name.as_str(), "each" | "with"));
                inner.block_params.extend(given);
                if let Some(template) = &helper.template {
                    walk(&template.elements, &inner, tested, true, analysis);
                }
                if let Some(inverse) = &helper.inverse {
                    walk(&inverse.elements, otherwise, tested, true, analysis);
                }
            }
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                analysis.helpers.push(DECORATOR.to_string());
            }
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                analysis.helpers.push(PARTIAL.to_string());
            }
            // Text, comments, and element kinds added by future Handlebars
            // versions read no variables we could check.
            _ => {}
        }
    }
}

/// The names at the top of the template context.
pub const ROOT_NAMES: &[&str] = &["params", "steps", "env", "run"];

/// The named arguments of a call, sorted (Handlebars keeps them in a hash
/// map), but for `log`'s `level`, which Handlebars reads.
fn named_arguments(helper: &handlebars::template::HelperTemplate) -> Vec<String> {
    let log = matches!(&helper.name, Parameter::Name(name) if name == "log");
    let mut named: Vec<String> = helper
        .hash
        .keys()
        .filter(|key| !(log && *key == "level"))
        .cloned()
        .collect();
    named.sort();
    named
}

/// Records what `param`, standing in `scope`, reads.
fn parameter(param: &Parameter, scope: &Scope, tested: bool, analysis: &mut Analysis) {
    let mut read = |variable: VariableRef| {
        if tested {
            analysis.tested.push(variable.clone());
        }
        if scope.negated {
            analysis.negated.push(variable.clone());
        }
        // `steps.X.outputs` itself is always there (empty when X did not
        // run); one of its names is not.
        if let [root, step, outputs, _, ..] = variable.path.as_slice()
            && root == "steps"
            && outputs == "outputs"
            && !scope.defaulted
            && !scope.guards.contains(step)
        {
            analysis.unguarded_outputs.push(variable.clone());
        }
        analysis.variables.push(variable);
    };
    match param {
        Parameter::Name(name) if scope.depth == 0 && !scope.block_params.contains(name) => {
            read(VariableRef {
                path: vec![name.clone()],
                raw: name.clone(),
            });
        }
        Parameter::Name(name)
            if ROOT_NAMES.contains(&name.as_str()) && !scope.block_params.contains(name) =>
        {
            analysis.item_reads.push(VariableRef {
                path: vec![name.clone()],
                raw: name.clone(),
            });
        }
        Parameter::Path(handlebars::Path::Relative((segments, raw))) => {
            let path: Vec<String> = segments
                .iter()
                .filter_map(|s| match s {
                    handlebars::PathSeg::Named(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            let Some(first) = path.first() else { return };
            // Handlebars names its path rules privately: `@root` is told by
            // its text, each `../` is a rule before the first name.
            let from_root = raw.starts_with("@root");
            let ups = segments
                .iter()
                .take_while(|s| !matches!(s, handlebars::PathSeg::Named(_)))
                .count();
            let variable = VariableRef {
                path: path.clone(),
                raw: raw.clone(),
            };
            // More `../` than blocks stays at the root outside any block,
            // and falls back to the innermost item inside one.
            if from_root || ups == scope.depth || (scope.depth == 0 && ups > 0) {
                read(variable);
            } else if ROOT_NAMES.contains(&first.as_str())
                && !(ups == 0 && scope.block_params.contains(first))
            {
                analysis.item_reads.push(variable);
            }
        }
        Parameter::Subexpression(sub) => walk(
            std::slice::from_ref(&sub.element),
            scope,
            tested,
            false,
            analysis,
        ),
        _ => {}
    }
}

fn describe(param: &Parameter) -> String {
    match param {
        Parameter::Name(name) => name.clone(),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => raw.clone(),
        Parameter::Path(handlebars::Path::Local((_, _, raw))) => raw.clone(),
        Parameter::Literal(value) => value.to_string(),
        _ => "(subexpression)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_has_a_usage() {
        for name in HELPERS.iter().chain(BLOCK_HELPERS) {
            assert!(helper_usage(name).is_some(), "{name}");
        }
        for name in PREDICATES {
            assert!(
                HELPERS.contains(name),
                "{name} is a predicate but no helper"
            );
        }
    }

    #[test]
    fn counts_the_arguments_of_every_call() {
        let a = analyze("{{#if (default params.x)}}{{upper}}{{/if}}{{join params.l \", \"}}")
            .expect("parses");
        let calls: Vec<(&str, usize)> = a
            .calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments))
            .collect();
        assert_eq!(
            calls,
            [("if", 1), ("default", 1), ("upper", 0), ("join", 2)]
        );
    }

    #[test]
    fn finds_variables_and_helpers() {
        let a =
            analyze("{{#if (eq params.env \"prod\")}}{{upper steps.check-x.outputs.body}}{{/if}}")
                .expect("parses");
        let paths: Vec<String> = a.variables.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(paths, ["params.env", "steps.check-x.outputs.body"]);
        assert_eq!(a.helpers, ["eq", "upper"]);
    }

    #[test]
    fn outputs_read_without_a_guard_are_told_apart() {
        let a = analyze(concat!(
            "{{steps.a.outputs.x}} {{default steps.b.outputs.x \"\"}} ",
            "{{upper (default steps.c.outputs.x \"-\")}} ",
            "{{#if steps.d.succeeded}}{{steps.d.outputs.x}}{{else}}{{steps.d.outputs.y}}{{/if}} ",
            "{{#if (eq steps.e.status \"failed\")}}{{steps.e.outputs.x}}{{/if}} ",
            "{{#if steps.f.succeeded}}{{steps.g.outputs.x}}{{/if}} ",
            "{{#each steps.h.outputs.items}}{{this}}{{/each}} {{steps.i.status}} ",
            "{{#if steps.j.outputs.x}}{{steps.j.outputs.x}}{{/if}} ",
            "{{#unless steps.k.succeeded}}{{steps.k.outputs.x}}{{else}}{{steps.k.outputs.y}}{{/unless}} ",
            "{{#if (not steps.l.succeeded)}}{{steps.l.outputs.x}}{{/if}} ",
            "{{#if steps.m.skipped}}{{steps.m.outputs.x}}{{/if}} {{len steps.n.outputs}} ",
            "{{#if (eq steps.o.outputs.x 1)}}{{/if}} ",
            "{{#if (or steps.p.failed steps.q.failed)}}{{steps.p.outputs.x}}{{/if}}",
        ))
        .expect("parses");
        let paths: Vec<String> = a
            .unguarded_outputs
            .iter()
            .map(|v| v.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "steps.a.outputs.x",
                "steps.d.outputs.y",
                "steps.e.outputs.x",
                "steps.g.outputs.x",
                "steps.h.outputs.items",
                "steps.k.outputs.x",
                "steps.l.outputs.x",
                "steps.m.outputs.x",
                "steps.o.outputs.x",
                "steps.p.outputs.x",
            ]
        );
    }

    #[test]
    fn only_literal_patterns_of_matches_are_collected() {
        let a = analyze(
            "{{#if (matches params.v \"^1\\\\.4\")}}{{matches params.v params.re}}{{/if}}{{replace params.v \"(\" \"x\"}}",
        )
        .expect("parses");
        // Handlebars has already undone the literal's `\\` escape.
        assert_eq!(a.literal_patterns, ["^1\\.4"]);
    }

    #[test]
    fn expressions_are_limited_before_handlebars_compiles() {
        let many = |n: usize| "{{a}} ".repeat(n);
        assert!(analyze(&many(MAX_EXPRESSIONS)).is_ok());
        let error = analyze(&many(MAX_EXPRESSIONS + 1)).expect_err("too many");
        assert!(
            error.message.contains("more than 1000 expressions"),
            "{}",
            error.message
        );
        assert_eq!(error.position, Some((1, 1 + 6 * MAX_EXPRESSIONS)));
    }

    #[test]
    fn nesting_is_limited_before_handlebars_recurses() {
        let deep = |n: usize| format!("{{{{eq {}x{}}}}}", "(eq ".repeat(n), ")".repeat(n));
        assert!(analyze(&deep(MAX_NESTING)).is_ok());
        let error = analyze(&deep(5000)).expect_err("too deep");
        assert!(
            error.message.contains("nest more than 32"),
            "{}",
            error.message
        );
        assert_eq!(error.position, Some((1, 6 + 4 * MAX_NESTING)));
        let blocks = |n: usize| format!("{}x{}", "{{#if 1}}".repeat(n), "{{/if}}".repeat(n));
        assert!(analyze(&blocks(MAX_NESTING)).is_ok());
        assert!(analyze(&blocks(5000)).is_err());
        // Siblings are not nesting; quotes and comments are not counted.
        assert!(analyze(&"{{#if 1}}a{{/if}}".repeat(100)).is_ok());
        let quoted = format!("{{{{eq \"{}\" x}}}}", "(".repeat(100));
        assert!(analyze(&quoted).is_ok());
        let comment = format!("{{{{!-- {} --}}}}{{{{x}}}}", "{{#if 1}}(".repeat(100));
        assert!(analyze(&comment).is_ok());
    }

    #[test]
    fn each_bodies_are_relative() {
        let a = analyze("{{#each steps.get.outputs.pods}}{{name}}{{/each}}").expect("parses");
        let paths: Vec<String> = a.variables.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(paths, ["steps.get.outputs.pods"]);
    }

    /// `../` climbs out of one `each` or `with` (not `if`), `@root` out of
    /// all; a root name read without either is the item's.
    #[test]
    fn paths_that_climb_to_the_root_are_root_variables() {
        let a = analyze(
            "{{#each params.l}}{{#if this}}{{../params.a}}{{/if}}{{#with this}}{{../../params.b}} {{../params.item}} {{@root.steps.c.outputs.x}} {{steps.d}}{{/with}}{{/each}}{{../params.e}}",
        )
        .expect("parses");
        let paths: Vec<String> = a.variables.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "params.l",
                "params.a",
                "params.b",
                "steps.c.outputs.x",
                "params.e"
            ]
        );
        let item: Vec<&str> = a.item_reads.iter().map(|v| v.raw.as_str()).collect();
        assert_eq!(item, ["../params.item", "steps.d"]);

        // One `../` too many inside a block reads the item again, as
        // Handlebars does; a block param is not the item's field.
        let a = analyze(
            "{{#each params.l}}{{../../params.ns}}{{/each}}{{#each params.envs as |env|}}{{env}} {{env.name}}{{/each}}",
        )
        .expect("parses");
        let paths: Vec<String> = a.variables.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(paths, ["params.l", "params.envs"]);
        let item: Vec<&str> = a.item_reads.iter().map(|v| v.raw.as_str()).collect();
        assert_eq!(item, ["../../params.ns"]);
    }

    #[test]
    fn insertions_are_told_from_helper_arguments_and_blocks() {
        let a = analyze(
            "{{steps.a.outputs.items}} {{json steps.b.outputs.items}} {{#each steps.c.outputs.items}}{{this}}{{/each}} {{{params.raw}}}",
        )
        .expect("parses");
        let inserted: Vec<String> = a.inserted.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(inserted, ["steps.a.outputs.items", "params.raw"]);
    }

    #[test]
    fn raw_insertions_are_listed() {
        let a = analyze("echo {{{params.cmd}}} {{params.x}}").expect("parses");
        assert_eq!(a.raw_insertions, ["params.cmd"]);
        let a = analyze("echo {{{quote params.cmd}}} {{{lower params.y}}}").expect("parses");
        assert_eq!(a.raw_insertions, ["lower params.y"]);
        let a = analyze("{{{json (first params.l)}}}").expect("parses");
        assert_eq!(a.raw_insertions, ["json"]);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let error = analyze("hello {{#if x}} no end").expect_err("unclosed");
        assert!(error.position.is_some(), "{error:?}");
    }
}
