//! Checking a response against the step's expectations.
//!
//! Every expectation is checked and every failure listed, in the order the
//! format names them (status, body_contains, body_matches, json,
//! max_latency): a 503 whose body also lacks the metric is two facts, and the
//! person reading the failure needs both.

use crate::request::{Expectations, JsonExpectation};
use runbook_engine::format_duration;
use serde_json::Value;
use std::time::Duration;

/// How much of the body a status mismatch quotes.
const EXCERPT_CHARS: usize = 200;

/// How much of a JSON value a mismatch quotes.
const VALUE_CHARS: usize = 120;

/// What the response looked like.
pub(crate) struct Seen<'a> {
    /// The status code.
    pub(crate) status: u16,
    /// The captured body text.
    pub(crate) body: &'a str,
    /// Whether the body was cut at the limit.
    pub(crate) truncated: bool,
    /// The body as JSON, or null.
    pub(crate) json: &'a Value,
    /// Time to the response headers.
    pub(crate) latency: Duration,
}

/// Every failed expectation, as one clause each. `redact` masks secrets in
/// the body before an excerpt of it is cut: after the cut, a secret's
/// beginning at the excerpt's end would no longer match.
pub(crate) fn check(
    expect: &Expectations,
    seen: &Seen<'_>,
    redact: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut failures = Vec::new();
    let status_failed = !expect.status.iter().any(|p| p.matches(seen.status));
    if status_failed {
        let wanted: Vec<String> = expect.status.iter().map(ToString::to_string).collect();
        failures.push(format!(
            "expected status {}, got {} ({})",
            wanted.join(" or "),
            seen.status,
            excerpt(&redact(seen.body), seen.truncated)
        ));
    }
    // What was seen, once: with the status failure if there is one, else
    // with the first failed expectation of the body.
    let mut seen_shown = status_failed;
    let mut what_was_seen = || {
        let partial = if seen.truncated {
            "; only the first 1 MiB of the body was read"
        } else {
            ""
        };
        if std::mem::replace(&mut seen_shown, true) {
            if seen.truncated {
                " (only the first 1 MiB of the body was read)".to_string()
            } else {
                String::new()
            }
        } else {
            format!(
                " ({}{partial})",
                excerpt(&redact(seen.body), seen.truncated)
            )
        }
    };
    for text in &expect.body_contains {
        if !seen.body.contains(text.as_str()) {
            failures.push(format!("body does not contain `{text}`{}", what_was_seen()));
        }
    }
    if let Some(regex) = &expect.body_matches
        && !regex.is_match(seen.body)
    {
        failures.push(format!(
            "body does not match `{}`{}",
            regex.as_str(),
            what_was_seen()
        ));
    }
    if !expect.json.is_empty() {
        if seen.json.is_null() && !seen.body.trim().eq("null") {
            let pointers: Vec<&str> = expect.json.iter().map(|j| j.pointer.as_str()).collect();
            // The parser's words say what kind of not-JSON it is (an HTML
            // error page, JSON nested too deep, a number out of range).
            let why = match crate::response::json_problem(seen.body) {
                _ if seen.truncated => " (or longer than 1 MiB)".to_string(),
                Some(problem) => format!(" ({problem})"),
                None => String::new(),
            };
            failures.push(format!(
                "body is not JSON{why}, so `expect.json` ({}) cannot be checked{}",
                pointers.join(", "),
                what_was_seen()
            ));
        } else {
            for expectation in &expect.json {
                if let Some(failure) = check_json(expectation, seen.json) {
                    failures.push(failure);
                }
            }
        }
    }
    if let Some(max) = expect.max_latency
        && seen.latency > max
    {
        failures.push(format!(
            "response took {} ms, more than max_latency {}",
            seen.latency.as_millis(),
            format_duration(max)
        ));
    }
    failures
}

fn check_json(expectation: &JsonExpectation, document: &Value) -> Option<String> {
    let pointer = expectation.pointer.as_str();
    let shown = if pointer.is_empty() {
        "(whole body)"
    } else {
        pointer
    };
    match document.pointer(pointer) {
        None => Some(format!(
            "{shown}: not present in the response JSON (expected {})",
            quote(&expectation.expected)
        )),
        Some(actual) if json_matches(&expectation.expected, actual, expectation.templated) => None,
        Some(actual) => Some(format!(
            "{shown}: expected {}, got {}",
            quote(&expectation.expected),
            quote(actual)
        )),
    }
}

/// Whether `actual` is what was expected. Numbers compare by value (`1`
/// equals `1.0`); a templated expectation, which can only render to text,
/// also matches a number, boolean or null with the same text.
fn json_matches(expected: &Value, actual: &Value, templated: bool) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
                a == b
            } else if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
                a == b
            } else {
                a.as_f64() == b.as_f64()
            }
        }
        (Value::String(text), other) if templated && !other.is_string() => {
            serde_json::to_string(other).is_ok_and(|rendered| rendered == text.trim())
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_matches(x, y, false))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| json_matches(x, y, false)))
        }
        _ => expected == actual,
    }
}

fn quote(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    shorten(&text, VALUE_CHARS)
}

fn shorten(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The start of the body on one line, for a status mismatch: what a 503 page
/// says is usually why it is a 503.
fn excerpt(body: &str, truncated: bool) -> String {
    let collapsed: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "empty body".to_string();
    }
    let cut = collapsed.char_indices().nth(EXCERPT_CHARS).map(|(i, _)| i);
    let (shown, more) = match cut {
        Some(i) => (&collapsed[..i], true),
        None => (collapsed.as_str(), truncated),
    };
    // Cut first, then escape, so that no escape is cut in half. Control
    // characters would drive the terminal of the person reading the
    // failure (`ESC [2J` clears it); a byte order mark is invisible.
    let shown: String = shown
        .chars()
        .flat_map(|c| {
            let escape = c.is_control() || c == '\u{feff}';
            let escaped = escape.then(|| c.escape_default());
            escaped.into_iter().flatten().chain((!escape).then_some(c))
        })
        .collect();
    if more {
        format!("body: `{shown}…`")
    } else {
        format!("body: `{shown}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use runbook_model::StatusPattern;
    use serde_json::json;

    fn expectations() -> Expectations {
        Expectations {
            status: vec![StatusPattern::Class(2)],
            body_contains: Vec::new(),
            body_matches: None,
            json: Vec::new(),
            max_latency: None,
        }
    }

    fn seen<'a>(status: u16, body: &'a str, json: &'a Value) -> Seen<'a> {
        Seen {
            status,
            body,
            truncated: false,
            json,
            latency: Duration::from_millis(5),
        }
    }

    #[test]
    fn every_failure_is_listed() {
        let mut expect = expectations();
        expect.body_contains = vec!["omendb_".into(), "up".into()];
        expect.body_matches = Some(Regex::new("^ok$").expect("regex"));
        expect.max_latency = Some(Duration::from_millis(1));
        let null = Value::Null;
        let failures = check(
            &expect,
            &seen(503, "upstream\n  down", &null),
            &str::to_string,
        );
        assert_eq!(
            failures,
            vec![
                "expected status 2xx, got 503 (body: `upstream down`)",
                "body does not contain `omendb_`",
                "body does not match `^ok$`",
                "response took 5 ms, more than max_latency 1ms",
            ]
        );
    }

    #[test]
    fn a_failed_body_expectation_says_what_was_seen_once() {
        let mut expect = expectations();
        expect.body_contains = vec!["ready".into(), "green".into()];
        expect.body_matches = Some(Regex::new("^ok$").expect("regex"));
        let null = Value::Null;
        let failures = check(
            &expect,
            &seen(200, "{\"status\": \"starting\"}", &null),
            &str::to_string,
        );
        assert_eq!(
            failures,
            vec![
                "body does not contain `ready` (body: `{\"status\": \"starting\"}`)",
                "body does not contain `green`",
                "body does not match `^ok$`",
            ]
        );
        let mut cut = seen(200, "partial", &null);
        cut.truncated = true;
        assert_eq!(
            check(&expect, &cut, &str::to_string)[0],
            "body does not contain `ready` (body: `partial…`; only the first 1 MiB of the body was read)"
        );
    }

    #[test]
    fn status_lists_and_empty_bodies() {
        let mut expect = expectations();
        expect.status = vec![StatusPattern::Code(200), StatusPattern::Code(204)];
        let null = Value::Null;
        assert_eq!(
            check(&expect, &seen(404, "", &null), &str::to_string),
            vec!["expected status 200 or 204, got 404 (empty body)"]
        );
        assert!(check(&expect, &seen(204, "", &null), &str::to_string).is_empty());
    }

    #[test]
    fn json_mismatches_show_pointer_expected_and_actual() {
        let mut expect = expectations();
        expect.json = vec![
            JsonExpectation {
                pointer: "/status".into(),
                expected: json!("ok"),
                templated: false,
            },
            JsonExpectation {
                pointer: "/missing".into(),
                expected: json!(1),
                templated: false,
            },
            JsonExpectation {
                pointer: "/count".into(),
                expected: json!(3.0),
                templated: false,
            },
            JsonExpectation {
                pointer: "/replicas".into(),
                expected: json!("3"),
                templated: true,
            },
        ];
        let doc = json!({"status": "degraded", "count": 3, "replicas": 3});
        assert_eq!(
            check(&expect, &seen(200, "{}", &doc), &str::to_string),
            vec![
                r#"/status: expected "ok", got "degraded""#,
                "/missing: not present in the response JSON (expected 1)",
            ]
        );
    }

    #[test]
    fn literal_strings_do_not_match_numbers() {
        assert!(!json_matches(&json!("3"), &json!(3), false));
        assert!(json_matches(&json!("true"), &json!(true), true));
        assert!(json_matches(
            &json!({"a": [1, 2]}),
            &json!({"a": [1.0, 2]}),
            false
        ));
    }

    #[test]
    fn long_bodies_are_cut_in_excerpts() {
        let body = "x".repeat(500);
        let text = excerpt(&body, false);
        assert_eq!(text.chars().filter(|c| *c == 'x').count(), EXCERPT_CHARS);
        assert!(text.ends_with("…`"));
    }

    #[test]
    fn non_json_bodies_are_reported_once() {
        let mut expect = expectations();
        expect.json = vec![
            JsonExpectation {
                pointer: "/a".into(),
                expected: json!(1),
                templated: false,
            },
            JsonExpectation {
                pointer: "/b".into(),
                expected: json!(2),
                templated: false,
            },
        ];
        let null = Value::Null;
        assert_eq!(
            check(&expect, &seen(200, "<html>", &null), &str::to_string),
            vec![
                "body is not JSON (expected value at line 1 column 1), so `expect.json` (/a, /b) cannot be checked (body: `<html>`)"
            ]
        );
    }

    #[test]
    fn excerpts_show_control_characters_escaped() {
        assert_eq!(
            excerpt("down\u{1b}[2J\u{1b}]0;title\u{7} now", false),
            "body: `down\\u{1b}[2J\\u{1b}]0;title\\u{7} now`"
        );
        assert_eq!(excerpt("\u{feff}{}", false), "body: `\\u{feff}{}`");
        let escapes = excerpt(&"\u{1b}".repeat(300), false);
        assert!(
            escapes.ends_with("\\u{1b}…`") && escapes.matches("\\u{1b}").count() == EXCERPT_CHARS,
            "{escapes}"
        );
    }
}
