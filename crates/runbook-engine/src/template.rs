//! Rendering templates: Handlebars in strict mode, HTML escaping off, our
//! helpers, and shell quoting for scripts.
//!
//! Shell safety relies on Handlebars' own split between `{{expr}}` (escaped)
//! and `{{{expr}}}` (raw): the script registry's escape function sets each
//! escaped value aside behind a marker, and [`runbook_model::script_quoting`] writes
//! it back quoted for the place it landed (a bare word, inside `"…"`, a
//! comment, a here-document…), so a param such as `x'; rm -rf /; '` or
//! `$(reboot)` stays inert text unless the author explicitly wrote `{{{ }}}`.

use handlebars::{
    Context, Handlebars, Helper, JsonRender, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use runbook_model::template::HELPERS;
use serde_json::Value;

/// A failed render: a message naming what was missing or wrong, and where
/// in the template's text (1-based line and column), when Handlebars says.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderFailure(pub String, pub Option<(usize, usize)>);

/// The two registries a run needs: one for ordinary fields and one for shell
/// scripts. Built once per run; rendering is then allocation-light.
pub struct Templates {
    plain: Handlebars<'static>,
    script: Handlebars<'static>,
    /// `steps.ID.outputs.NAME` paths a resume did not restore (a secret
    /// was masked in them), so that a template reading one says why.
    not_restored: std::sync::OnceLock<Vec<String>>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Both registries with strict mode and every helper of [`HELPERS`].
    pub fn new() -> Self {
        let mut plain = registry();
        plain.register_escape_fn(handlebars::no_escape);
        let mut script = registry();
        script.register_escape_fn(set_aside);
        Templates {
            plain,
            script,
            not_restored: std::sync::OnceLock::new(),
        }
    }

    /// Names the outputs a resume left out (see [`Self::not_restored`]).
    pub(crate) fn set_not_restored(&self, paths: Vec<String>) {
        let _ = self.not_restored.set(paths);
    }

    fn describe(&self, error: &RenderError, text: &str) -> String {
        let described = describe(error, text);
        if let RenderErrorReason::MissingVariable(Some(path)) = error.reason()
            && let Some(output) = self.not_restored.get().and_then(|paths| {
                paths.iter().find(|p| {
                    path.strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                })
            })
        {
            return format!(
                "`{output}` is not available after the resume: a secret was masked in it, and the journal keeps only the masked text (re-run the step to have it again)"
            );
        }
        described
    }

    /// Renders an ordinary field.
    pub fn render(&self, text: &str, context: &Value) -> Result<String, RenderFailure> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        self.render_bounded(&self.plain, text, context)
    }

    /// Renders into a buffer that refuses to grow past
    /// [`MAX_RENDERED_BYTES`] (the set-aside values of a script counted), so
    /// nested `#each` over long outputs stops there instead of taking
    /// minutes and gigabytes of memory first.
    fn render_bounded(
        &self,
        registry: &Handlebars<'static>,
        text: &str,
        context: &Value,
    ) -> Result<String, RenderFailure> {
        SET_ASIDE_BYTES.with(|bytes| bytes.set(0));
        let mut out = Bounded::default();
        let rendered = registry.render_template_to_write(text, context, &mut out);
        if out.too_large {
            return Err(RenderFailure(
                format!(
                    "renders to more than {} MiB, the most a template may produce",
                    MAX_RENDERED_BYTES >> 20
                ),
                None,
            ));
        }
        rendered.map_err(|e| RenderFailure(self.describe(&e, text), e.line_no.zip(e.column_no)))?;
        String::from_utf8(out.bytes)
            .map_err(|_| RenderFailure("renders to text that is not UTF-8".to_string(), None))
    }

    /// Renders a shell script: each `{{x}}` is quoted for where it stands
    /// (one word when bare, escaped inside double quotes, ...), so no value
    /// changes the script's structure; see [`runbook_model::script_quoting`].
    pub fn render_script(&self, text: &str, context: &Value) -> Result<String, RenderFailure> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        use runbook_model::script_quoting::{MARK_CLOSE, MARK_OPEN};
        if text.contains([MARK_OPEN, MARK_CLOSE]) {
            return Err(RenderFailure(
                "the script contains the reserved characters U+E000/U+E001".to_string(),
                None,
            ));
        }
        SET_ASIDE.with(|values| values.borrow_mut().clear());
        let rendered = self.render_bounded(&self.script, text, context);
        // Taken before the error check, so no value outlives its render.
        let values = SET_ASIDE.with(|values| std::mem::take(&mut *values.borrow_mut()));
        let rendered = rendered?;
        runbook_model::script_quoting::place(&rendered, &values)
            .map_err(|refusal| RenderFailure(refusal.message, None))
    }

    /// Renders a `when` or gate `condition`: it must produce exactly `true`
    /// or `false` (surrounding whitespace ignored).
    pub fn render_condition(&self, text: &str, context: &Value) -> Result<bool, RenderFailure> {
        let rendered = self.render(text, context)?;
        match rendered.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(RenderFailure(
                format!(
                    "must render to `true` or `false`, but rendered to `{}`",
                    truncate(other, 80)
                ),
                None,
            )),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

thread_local! {
    /// The escaped values of the script being rendered on this thread, in
    /// order: a render is synchronous, so one list per thread suffices.
    static SET_ASIDE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// The bytes of [`SET_ASIDE`]'s values, which count towards the size of
    /// the render without passing through its buffer.
    static SET_ASIDE_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The most text one field may render to. A shell script reaches the
/// kernel as one argument, which Linux caps at 128 KiB; an HTTP body may be
/// larger, so the limit is far above that and only stops runaway loops.
pub(crate) const MAX_RENDERED_BYTES: usize = 16 << 20;

/// A render's output, refusing writes past [`MAX_RENDERED_BYTES`]:
/// Handlebars stops at the first refused write.
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    too_large: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let set_aside = SET_ASIDE_BYTES.with(std::cell::Cell::get);
        if self.bytes.len() + buf.len() + set_aside > MAX_RENDERED_BYTES {
            self.too_large = true;
            return Err(std::io::Error::other("the render is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The script registry's escape function: the value is kept aside and a
/// marker holding its index takes its place in the rendered text.
fn set_aside(value: &str) -> String {
    use runbook_model::script_quoting::{MARK_CLOSE, MARK_OPEN};
    let total = SET_ASIDE_BYTES.with(|bytes| {
        bytes.set(bytes.get().saturating_add(value.len()));
        bytes.get()
    });
    SET_ASIDE.with(|values| {
        let mut values = values.borrow_mut();
        // Past the limit the marker's own write fails the render; the
        // value is not kept meanwhile.
        values.push(if total > MAX_RENDERED_BYTES {
            String::new()
        } else {
            value.to_string()
        });
        format!("{MARK_OPEN}{}{MARK_CLOSE}", values.len() - 1)
    })
}

/// Quotes `value` as exactly one POSIX shell word.
pub(crate) fn shell_quote(value: &str) -> String {
    runbook_model::script_quoting::quote_word(value)
}

/// ` in `{{…}}`` naming the expression Handlebars says failed, if it says.
fn in_expression(error: &RenderError, text: &str) -> String {
    error
        .line_no
        .zip(error.column_no)
        .and_then(|(line, col)| expression_at(text, line, col))
        .map(|e| format!(" in `{e}`"))
        .unwrap_or_default()
}

fn describe(error: &RenderError, text: &str) -> String {
    match error.reason() {
        // A built-in helper (`eq`, `gt`, ...) given a variable that is not
        // defined says only that its parameter is missing.
        RenderErrorReason::ParamNotFoundForIndex(helper, index) => {
            let expression = in_expression(error, text);
            format!(
                "`{helper}` has no value for its argument {}{expression}: it is missing, or a variable it reads is not defined (a step that did not run has no outputs; `(default VALUE \"...\")` gives a fallback)",
                index + 1
            )
        }
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!(
                "`{path}` is not defined (use `{{{{default {path} \"...\"}}}}` if it may be missing)"
            )
        }
        // Strict mode names no path when the missing value came from a
        // helper, which in practice is `lookup` of a key that is not there.
        RenderErrorReason::MissingVariable(None) => {
            "a value it reads is not defined (such as a `lookup` of a key that is not there; `{{#if (contains MAP KEY)}}{{lookup MAP KEY}}{{else}}...{{/if}}` reads one that may be missing)".to_string()
        }
        RenderErrorReason::InvalidJsonIndex(index) => {
            let expression = in_expression(error, text);
            format!(
                "`{index}` is not an index of a list{expression}: items are numbered from 0 (`.[0]`), and `last` gives the last one"
            )
        }
        other => other.to_string(),
    }
}

/// The `{{...}}` that starts at 1-based `line` and `col` of `text`.
fn expression_at(text: &str, line: usize, col: usize) -> Option<&str> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let rest = text.get(line_start..)?;
    let offset = rest
        .char_indices()
        .nth(col.checked_sub(1)?)
        .map(|(i, _)| i)?;
    let rest = &rest[offset..];
    if !rest.starts_with("{{") {
        return None;
    }
    let end = rest.find("}}")? + 2;
    Some(&rest[..end])
}

fn registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_helper("contains", Box::new(contains_helper));
    hb.register_helper("default", Box::new(default_helper));
    hb.register_helper("json", Box::new(json_helper));
    hb.register_helper("lower", Box::new(lower_helper));
    hb.register_helper("upper", Box::new(upper_helper));
    hb.register_helper("trim", Box::new(trim_helper));
    hb.register_helper("join", Box::new(join_helper));
    hb.register_helper("split", Box::new(split_helper));
    hb.register_helper("replace", Box::new(replace_helper));
    hb.register_helper("starts_with", Box::new(starts_with_helper));
    hb.register_helper("ends_with", Box::new(ends_with_helper));
    hb.register_helper("to_int", Box::new(to_int_helper));
    hb.register_helper("concat", Box::new(concat_helper));
    hb.register_helper("matches", Box::new(matches_helper));
    hb.register_helper("first", Box::new(first_helper));
    hb.register_helper("last", Box::new(last_helper));
    hb.register_helper("quote", Box::new(quote_helper));
    // Replaces Handlebars' own, which counts a text's bytes and gives 0
    // for a number.
    hb.register_helper("len", Box::new(len_helper));
    // Replace Handlebars' own, which tell `3.0` from `3`.
    hb.register_helper("eq", Box::new(eq_helper));
    hb.register_helper("ne", Box::new(ne_helper));
    hb
}

fn param<'a>(h: &'a Helper<'_>, index: usize, name: &str) -> Result<&'a Value, RenderError> {
    let p = h
        .param(index)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(leak(name), index))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    Ok(p.value())
}

// Helper names are static strings already; this only adapts the type.
fn leak(name: &str) -> &'static str {
    HELPERS
        .iter()
        .find(|h| **h == name)
        .copied()
        .unwrap_or("helper")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.render(),
    }
}

fn value_helper(out: Value) -> Result<ScopedJson<'static>, RenderError> {
    Ok(ScopedJson::Derived(out))
}

macro_rules! value_fn {
    ($name:ident, |$h:ident| $body:expr) => {
        fn $name<'rc>(
            $h: &Helper<'rc>,
            _: &Handlebars<'_>,
            _: &Context,
            _: &mut RenderContext<'_, 'rc>,
        ) -> Result<ScopedJson<'rc>, RenderError> {
            let out: Result<Value, RenderError> = $body;
            value_helper(out?)
        }
    };
}

/// `contains HAYSTACK NEEDLE`: substring of a string, element of a list, or
/// key of an object.
fn contains_value(haystack: &Value, needle: &Value) -> bool {
    match haystack {
        Value::String(s) => s.contains(&text(needle)),
        Value::Array(items) => items.iter().any(|i| i == needle || text(i) == text(needle)),
        Value::Object(map) => map.contains_key(&text(needle)),
        _ => false,
    }
}

/// Equality as a reader of the runbook means it: numbers by value, so
/// `3.0` (a JSON output, a number param's `1.0`) equals `3`. Handlebars'
/// own `eq` compares how the number is stored and says they differ, while
/// `gte` and `lte` both hold.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| equal(a, b)))
        }
        _ => a == b,
    }
}

/// Exactly, whichever way each is stored: a whole float equals the
/// integer it is, and no integer past 2^53 equals a float by rounding.
fn same_number(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    let whole = |n: &serde_json::Number| -> Option<i128> {
        if let Some(i) = n.as_i64() {
            return Some(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return Some(i128::from(u));
        }
        let f = n.as_f64()?;
        // Within ±2^64 a whole f64 converts to i128 exactly.
        (f.fract() == 0.0 && f.abs() < 1.8e19).then_some(f as i128)
    };
    match (whole(x), whole(y)) {
        (Some(i), Some(j)) => i == j,
        _ => x.as_f64() == y.as_f64(),
    }
}

value_fn!(eq_impl, |h| Ok(Value::Bool(equal(
    param(h, 0, "eq")?,
    param(h, 1, "eq")?
))));
value_fn!(ne_impl, |h| Ok(Value::Bool(!equal(
    param(h, 0, "ne")?,
    param(h, 1, "ne")?
))));

value_fn!(contains_impl, |h| Ok(Value::Bool(contains_value(
    param(h, 0, "contains")?,
    param(h, 1, "contains")?
))));

// Handlebars' `HelperDef` has two entry points: `call_inner` (the value, for
// use as a sub-expression argument) and `call` (writing text). A struct
// implementing `call_inner` gets both, so every helper is a value helper.
macro_rules! helper {
    ($name:ident, $impl_fn:ident) => {
        #[allow(non_camel_case_types)]
        struct $name;
        impl handlebars::HelperDef for $name {
            fn call_inner<'reg: 'rc, 'rc>(
                &self,
                h: &Helper<'rc>,
                r: &'reg Handlebars<'reg>,
                ctx: &'rc Context,
                rc: &mut RenderContext<'reg, 'rc>,
            ) -> Result<ScopedJson<'rc>, RenderError> {
                $impl_fn(h, r, ctx, rc)
            }
        }
    };
}

value_fn!(default_impl, |h| {
    // `default` is the one helper that tolerates a missing first argument:
    // it is how authors read something that may not exist.
    let primary = h.param(0);
    let fallback = param(h, 1, "default")?;
    Ok(match primary {
        Some(p)
            if !p.is_value_missing()
                && !p.value().is_null()
                && p.value() != &Value::String(String::new()) =>
        {
            p.value().clone()
        }
        _ => fallback.clone(),
    })
});
value_fn!(json_impl, |h| Ok(Value::String(
    serde_json::to_string(param(h, 0, "json")?).unwrap_or_default()
)));
value_fn!(lower_impl, |h| Ok(Value::String(
    text(param(h, 0, "lower")?).to_lowercase()
)));
value_fn!(upper_impl, |h| Ok(Value::String(
    text(param(h, 0, "upper")?).to_uppercase()
)));
value_fn!(trim_impl, |h| Ok(Value::String(
    text(param(h, 0, "trim")?).trim().to_string()
)));
value_fn!(join_impl, |h| {
    let list = param(h, 0, "join")?;
    let separator = h.param(1).map_or(",".to_string(), |p| text(p.value()));
    Ok(Value::String(match list {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(&separator),
        other => text(other),
    }))
});
value_fn!(split_impl, |h| {
    let s = text(param(h, 0, "split")?);
    let separator = text(param(h, 1, "split")?);
    Ok(Value::Array(
        s.split(separator.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
});
value_fn!(replace_impl, |h| {
    let s = text(param(h, 0, "replace")?);
    let from = text(param(h, 1, "replace")?);
    let to = text(param(h, 2, "replace")?);
    Ok(Value::String(s.replace(&from, &to)))
});
value_fn!(starts_with_impl, |h| Ok(Value::Bool(
    text(param(h, 0, "starts_with")?).starts_with(&text(param(h, 1, "starts_with")?))
)));
value_fn!(ends_with_impl, |h| Ok(Value::Bool(
    text(param(h, 0, "ends_with")?).ends_with(&text(param(h, 1, "ends_with")?))
)));
value_fn!(to_int_impl, |h| {
    let v = param(h, 0, "to_int")?;
    let s = text(v);
    let t = s.trim();
    // A float is truncated toward zero; one outside the integers (or an
    // integer too long for 64 bits) is an error, not silently clamped.
    let in_range = |f: f64| f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64;
    let parsed = match t.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => t
            .parse::<f64>()
            .ok()
            .filter(|f| in_range(*f))
            .map(|f| f as i64),
    };
    let parsed = parsed.ok_or_else(|| {
        let why = if t.parse::<f64>().is_ok() {
            "is out of the range of a 64-bit integer"
        } else {
            "is not a number"
        };
        RenderErrorReason::Other(format!("to_int: `{s}` {why}"))
    })?;
    Ok(Value::from(parsed))
});
value_fn!(concat_impl, |h| Ok(Value::String(
    h.params()
        .iter()
        .map(|p| text(p.value()))
        .collect::<String>()
)));
value_fn!(matches_impl, |h| {
    let s = text(param(h, 0, "matches")?);
    let pattern = text(param(h, 1, "matches")?);
    let re = regex_lite(&pattern)?;
    Ok(Value::Bool(re(&s)))
});
value_fn!(len_impl, |h| {
    let count =
        match param(h, 0, "len")? {
            Value::String(s) => s.chars().count(),
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            // An optional list that is absent has nothing in it.
            Value::Null => 0,
            other => {
                return Err(RenderErrorReason::Other(format!(
                "len: counts the characters of a text or the items of a list or a mapping, not {}",
                if other.is_number() { "a number" } else { "a boolean" }
            ))
            .into());
            }
        };
    Ok(Value::from(count))
});
value_fn!(first_impl, |h| Ok(match param(h, 0, "first")? {
    Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
    other => other.clone(),
}));
value_fn!(last_impl, |h| Ok(match param(h, 0, "last")? {
    Value::Array(items) => items.last().cloned().unwrap_or(Value::Null),
    other => other.clone(),
}));
value_fn!(quote_impl, |h| Ok(Value::String(shell_quote(&text(
    param(h, 0, "quote")?
)))));

helper!(eq_helper, eq_impl);
helper!(ne_helper, ne_impl);
helper!(contains_helper, contains_impl);
helper!(default_helper, default_impl);
helper!(json_helper, json_impl);
helper!(lower_helper, lower_impl);
helper!(upper_helper, upper_impl);
helper!(trim_helper, trim_impl);
helper!(join_helper, join_impl);
helper!(split_helper, split_impl);
helper!(replace_helper, replace_impl);
helper!(starts_with_helper, starts_with_impl);
helper!(ends_with_helper, ends_with_impl);
helper!(to_int_helper, to_int_impl);
helper!(concat_helper, concat_impl);
helper!(matches_helper, matches_impl);
helper!(first_helper, first_impl);
helper!(last_helper, last_impl);
helper!(quote_helper, quote_impl);
helper!(len_helper, len_impl);

/// `matches` uses the same regex engine as `expect.body_matches`; compiled per
/// call because templates are rendered once per step, not in a hot loop.
fn regex_lite(pattern: &str) -> Result<impl Fn(&str) -> bool, RenderError> {
    let re = regex::Regex::new(pattern).map_err(|e| {
        RenderErrorReason::Other(format!(
            "matches: `{pattern}` is not a valid regular expression: {}",
            runbook_model::regex_error_summary(&e)
        ))
    })?;
    Ok(move |s: &str| re.is_match(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "params": {"ns": "prod", "evil": "x'; touch /tmp/pwned; '", "list": ["a", "b"]},
            "steps": {"check": {"succeeded": true, "failed": false, "outputs": {"status": 503, "body": "Down"}}}
        })
    }

    #[test]
    fn strict_mode_rejects_unknown_variables() {
        let t = Templates::new();
        let error = t.render("{{params.nope}}", &ctx()).expect_err("strict");
        assert!(error.0.contains("params.nope"), "{error}");
    }

    #[test]
    fn a_built_in_helper_given_an_undefined_value_names_the_expression() {
        let t = Templates::new();
        let error = t
            .render_condition(
                "{{gt steps.skipped.outputs.stdout 1}}",
                &json!({"steps": {"skipped": {"outputs": {}}}}),
            )
            .expect_err("undefined");
        assert_eq!(
            error.0,
            "`gt` has no value for its argument 1 in `{{gt steps.skipped.outputs.stdout 1}}`: it is missing, or a variable it reads is not defined (a step that did not run has no outputs; `(default VALUE \"...\")` gives a fallback)"
        );
    }

    #[test]
    fn to_int_truncates_but_never_clamps() {
        let t = Templates::new();
        let render = |text: &str| t.render(text, &ctx());
        assert_eq!(render("{{to_int \"42\"}}").expect("int"), "42");
        assert_eq!(render("{{to_int \"-3.9\"}}").expect("float"), "-3");
        for huge in ["99999999999999999999999", "1e300"] {
            let error = render(&format!("{{{{to_int \"{huge}\"}}}}")).expect_err(huge);
            assert!(error.0.contains("out of the range"), "{error}");
        }
        let error = render("{{to_int \"abc\"}}").expect_err("text");
        assert!(error.0.contains("is not a number"), "{error}");
    }

    /// Nested loops over long outputs stop at the limit, counting the
    /// values a script sets aside as well as the text around them.
    #[test]
    fn a_render_stops_at_its_size_limit() {
        let t = Templates::new();
        let lines: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let context = json!({"params": {"lines": lines, "big": "y".repeat(1 << 20)}});
        let nested = "{{#each params.lines}}{{#each ../params.lines}}{{#each ../../params.lines}}x{{/each}}{{/each}}{{/each}}";
        let error = t.render(nested, &context).expect_err("a billion bytes");
        assert_eq!(
            error.0,
            "renders to more than 16 MiB, the most a template may produce"
        );
        let script = "{{#each params.lines}}echo {{../params.big}}\n{{/each}}";
        let error = t
            .render_script(script, &context)
            .expect_err("a gigabyte set aside");
        assert!(
            error.0.starts_with("renders to more than 16 MiB"),
            "{error}"
        );
        // Below the limit, and after a refused render, rendering is as usual.
        assert_eq!(
            t.render_script("echo {{params.big}}", &context)
                .expect("1 MiB")
                .len(),
            (1 << 20) + 5
        );
    }

    #[test]
    fn a_list_read_with_a_name_or_a_negative_index_says_how_lists_are_indexed() {
        let t = Templates::new();
        let error = t
            .render("{{params.list.[-1]}}", &ctx())
            .expect_err("no index -1");
        assert_eq!(
            error.0,
            "`-1` is not an index of a list in `{{params.list.[-1]}}`: items are numbered from 0 (`.[0]`), and `last` gives the last one"
        );
    }

    #[test]
    fn eq_and_ne_compare_numbers_by_value() {
        let t = Templates::new();
        let context = json!({"params": {"ratio": 1.0, "n": 3, "s": "3"}, "steps": {"src": {"outputs": {"json": {"replicas": 3.0}}}}});
        let render = |text: &str| t.render(text, &context).expect(text);
        assert_eq!(render("{{eq params.ratio 1}} {{eq 1 1.0}}"), "true true");
        assert_eq!(
            render("{{eq steps.src.outputs.json.replicas params.n}}"),
            "true"
        );
        assert_eq!(
            render("{{ne steps.src.outputs.json.replicas 3}} {{ne 2 2.5}}"),
            "false true"
        );
        assert_eq!(
            render("{{eq (split \"1,2\" \",\") (split \"1,2\" \",\")}}"),
            "true"
        );
        let big = json!({"params": {"i": 9007199254740993_u64, "f": 9007199254740992.0}});
        assert_eq!(
            t.render("{{eq params.i params.f}}", &big).expect("big"),
            "false"
        );
        // Text is not a number: `when` keeps telling "3" from 3.
        assert_eq!(
            render("{{eq params.s params.n}} {{eq params.s \"3\"}}"),
            "false true"
        );
    }

    #[test]
    fn len_counts_characters_and_items_and_refuses_a_number() {
        let t = Templates::new();
        let context =
            json!({"params": {"s": "Héllo ΣΑΣ", "n": 7, "l": [1, 2], "m": {"a": 1}, "z": null}});
        let render = |text: &str| t.render(text, &context);
        assert_eq!(render("{{len params.s}}").expect("text"), "9");
        assert_eq!(
            render("{{len params.l}} {{len params.m}} {{len params.z}}").expect("lists"),
            "2 1 0"
        );
        let error = render("{{len params.n}}").expect_err("a number has no length");
        assert!(error.0.contains("len: counts the characters of a text or the items of a list or a mapping, not a number"), "{error}");
        let error = render("{{len params.nope}}").expect_err("undefined");
        assert!(error.0.contains("`params.nope` is not defined"), "{error}");
    }

    #[test]
    fn an_invalid_pattern_says_what_is_wrong_with_it() {
        let t = Templates::new();
        let error = t
            .render(
                "{{matches \"x\" params.re}}",
                &json!({"params": {"re": "(["}}),
            )
            .expect_err("invalid regex");
        assert!(
            error.0.contains(
                "matches: `([` is not a valid regular expression: unclosed character class"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_lookup_says_what_to_do() {
        let t = Templates::new();
        let error = t
            .render("{{lookup params \"nope\"}}", &ctx())
            .expect_err("strict");
        assert!(
            error.0.contains("`lookup` of a key that is not there"),
            "{error}"
        );
        let guarded =
            "{{#if (contains params \"nope\")}}{{lookup params \"nope\"}}{{else}}fallback{{/if}}";
        assert_eq!(t.render(guarded, &ctx()).expect("guarded"), "fallback");
    }

    #[test]
    fn no_html_escaping() {
        let t = Templates::new();
        assert_eq!(
            t.render("{{params.evil}}", &ctx()).expect("renders"),
            "x'; touch /tmp/pwned; '"
        );
    }

    #[test]
    fn scripts_quote_each_insertion_as_one_word() {
        let t = Templates::new();
        let script = t
            .render_script("echo {{params.evil}}", &ctx())
            .expect("renders");
        assert_eq!(
            shell_words::split(&script).expect("valid shell"),
            ["echo", "x'; touch /tmp/pwned; '"]
        );
        let raw = t
            .render_script("echo {{{params.ns}}}", &ctx())
            .expect("renders");
        assert_eq!(raw, "echo prod");
    }

    #[test]
    fn helpers_work_as_values_and_text() {
        let t = Templates::new();
        let c = ctx();
        assert_eq!(t.render("{{upper params.ns}}", &c).expect("r"), "PROD");
        assert_eq!(
            t.render("{{join params.list \"-\"}}", &c).expect("r"),
            "a-b"
        );
        assert!(
            t.render_condition("{{eq steps.check.outputs.status 503}}", &c)
                .expect("r")
        );
        assert!(
            t.render_condition("{{contains (lower steps.check.outputs.body) \"down\"}}", &c)
                .expect("r")
        );
        assert_eq!(
            t.render("{{default steps.check.outputs.missing \"none\"}}", &c)
                .expect("r"),
            "none"
        );
        assert_eq!(
            t.render("{{json params.list}}", &c).expect("r"),
            "[\"a\",\"b\"]"
        );
        assert!(
            t.render_condition("{{or steps.check.failed steps.check.succeeded}}", &c)
                .expect("r")
        );
    }

    #[test]
    fn conditions_must_be_booleans() {
        let t = Templates::new();
        let error = t
            .render_condition("{{params.ns}}", &ctx())
            .expect_err("not a bool");
        assert!(error.0.contains("`prod`"));
    }

    #[test]
    fn every_declared_helper_is_registered() {
        // An unregistered name renders as a missing variable in strict mode;
        // a registered helper fails (if at all) for its missing arguments.
        let hb = registry();
        for helper in HELPERS {
            if let Err(error) = hb.render_template(&format!("{{{{{helper}}}}}"), &json!({})) {
                assert!(
                    !matches!(error.reason(), RenderErrorReason::MissingVariable(_)),
                    "{helper} is declared in the model but not registered: {error}"
                );
            }
        }
    }
}
