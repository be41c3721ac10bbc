//! Reading one field's value: strings, templates, booleans, integers,
//! durations, choices, maps and lists, each with its type error, and the
//! unknown-key checks of a mapping.

use super::*;

impl Lowerer<'_> {
    /// Checks that `node` is a mapping, reports unknown keys (with a
    /// suggestion) and missing required keys, and returns its entries.
    pub(super) fn mapping<'n>(
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
        // A merge key (refused on its own) may hold the required fields.
        let merged = entries.iter().any(|e| e.key == "<<");
        for key in required {
            if !merged && !entries.iter().any(|e| e.key == *key) {
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

    pub(super) fn unknown_key(&mut self, entry: &Entry, what: &str, known: &[&str]) {
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
    pub(super) fn unknown_key_of_step(
        &mut self,
        entry: &Entry,
        what: &str,
        known: &[&str],
        phase: Phase,
    ) {
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
    pub(super) fn unknown_keys_of_kind(
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

    pub(super) fn string(&mut self, node: &Node, field: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    pub(super) fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
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
        if matches!(node.value, Value::Map(_))
            && self
                .source
                .get(node.span.start..)
                .is_some_and(|rest| rest.starts_with("{{"))
        {
            // An unquoted `{{template}}`: the YAML reader said so already.
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

    pub(super) fn template(&mut self, node: &Node, field: &str) -> Option<Template> {
        let text = self.string(node, field)?;
        Some(template_of(node, text.value))
    }

    /// Refuses the numbers of a YAML tree sent as JSON that JSON cannot
    /// carry (`.nan`, `.inf`): the encoder would send `null` in their place
    /// without a word. A merge key would be sent as a key named `<<`.
    pub(super) fn check_json_numbers(&mut self, node: &Node, field: &str) {
        match &node.value {
            Value::Float(f) if !f.is_finite() => {
                let written = self
                    .source
                    .get(node.span.start..node.span.end)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let d = self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` holds `{written}`, which JSON cannot carry (it would be sent as null)"),
                );
                d.help = Some("quote it to send it as text".into());
            }
            Value::Seq(items) => {
                for item in items {
                    self.check_json_numbers(item, field);
                }
            }
            Value::Map(entries) => {
                for entry in entries {
                    if entry.key == "<<" {
                        // YAML 1.1's merge key, refused elsewhere, would be
                        // sent as a key named `<<`.
                        let d = self.error(
                            Code::UnknownKey,
                            entry.key_span,
                            format!("`{field}` holds a YAML merge key (`<<`), which would be sent as a key named `<<`"),
                        );
                        d.help = Some(
                            "merge keys are not part of YAML 1.2: write the fields out".into(),
                        );
                    }
                    self.check_json_numbers(&entry.value, field);
                }
            }
            _ => {}
        }
    }

    /// Like [`Self::template`], for a field that means nothing empty (a
    /// `run`, a `resource`): written as `''` it is refused, not run as a
    /// no-op or sent as a request for nothing.
    pub(super) fn filled_template(&mut self, node: &Node, field: &str) -> Option<Template> {
        let template = self.template(node, field)?;
        if template.text.trim().is_empty() {
            let d = self.error(Code::InvalidValue, node.span, format!("`{field}` is empty"));
            d.label = Some("empty".into());
            return None;
        }
        Some(template)
    }

    /// Like [`Self::template`] but accepts numbers and booleans as their text;
    /// environment values and headers are often written unquoted.
    pub(super) fn scalar_template(&mut self, node: &Node, field: &str) -> Option<Template> {
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

    pub(super) fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, field, "`true` or `false`");
                None
            }
        }
    }

    pub(super) fn typed_bool(&mut self, node: &Node, field: &str) -> Option<Typed<bool>> {
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
    pub(super) fn typed_choice<T: Copy>(
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

    pub(super) fn typed_int(
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

    pub(super) fn duration(&mut self, node: &Node, field: &str) -> Option<Spanned<Duration>> {
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
    pub(super) fn timeout(&mut self, node: &Node, field: &str) -> Option<Spanned<Duration>> {
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

    pub(super) fn typed_duration(&mut self, node: &Node, field: &str) -> Option<Typed<Duration>> {
        self.typed(node, field, Self::duration)
    }

    /// A step's `timeout`: a template, or a literal above zero.
    pub(super) fn typed_timeout(&mut self, node: &Node, field: &str) -> Option<Typed<Duration>> {
        self.typed(node, field, Self::timeout)
    }

    /// A template (checked when the step runs), else `literal`'s value.
    pub(super) fn typed(
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

    pub(super) fn string_map(
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
    pub(super) fn check_header_names(&mut self, node: &Node) {
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

    pub(super) fn template_list(&mut self, node: &Node, field: &str) -> Option<Vec<Template>> {
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

    pub(super) fn retry(&mut self, node: &Node) -> Option<Retry> {
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

    pub(super) fn invalid_choice(&mut self, node: &Node, field: &str, choices: &[&str]) {
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

    /// A `when` or a gate's `condition`: a boolean, or a template that
    /// must render to `true` or `false`. Text without a template can only
    /// be one of those two, or it would fail every run.
    pub(super) fn decision(&mut self, v: &Node, field: &str) -> Option<Template> {
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
}

/// Why a text is not a duration, in words that name the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    duration(text).map_err(DurationError)
}

fn duration(text: &str) -> Result<Duration, String> {
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
            // humantime says so of `0.0001ns` as well as of `1e30s`.
            E::NumberOverflow => {
                "its number is out of range (too large, or finer than a nanosecond)".to_string()
            }
            E::Empty => "it is empty".to_string(),
        };
        format!("`{trimmed}`: {why}")
    })
}
