//! `type: http-check` steps: the request and what the response must match.

use super::*;

impl Lowerer<'_> {
    pub(super) fn http(&mut self, node: &Node, what: &str) -> Option<HttpCheckStep> {
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
                        crate::plan::without_url_password(url.text.trim())
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
                    format!(
                        "`url` is not a valid URL ({error}): `{}`",
                        crate::plan::without_url_password(url.text.trim())
                    ),
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
                "json" => {
                    self.check_json_numbers(v, "json");
                    step.json = Some(v.clone());
                }
                "insecure" => step.insecure = self.typed_bool(v, "insecure"),
                "ca_cert" => step.ca_cert = self.filled_template(v, "ca_cert"),
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

    pub(super) fn expect(&mut self, node: &Node) -> Option<Expect> {
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

    pub(super) fn status(&mut self, node: &Node) -> Option<Spanned<Vec<StatusPattern>>> {
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

pub(super) fn parse_status_class(text: &str) -> Option<StatusPattern> {
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

/// The methods of RFC 9110 and PATCH (RFC 5789).
pub(super) const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
