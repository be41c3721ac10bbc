//! Secrets written in the runbook file itself: a secret param's `default`,
//! the literal value of a credential header, the password of a literal
//! `url`. The engine masks them in everything a run prints and stores (spec
//! section 7); the snippets under diagnostics, which quote the file, show
//! them as `*` too, so that `runbook validate` in CI does not print them
//! into a build log.

use crate::yaml::{Node, Value};
use std::borrow::Cow;
use std::ops::Range;

/// Header names whose values are credentials: `Authorization`, `Cookie`
/// (and `Proxy-Authorization`), and any name mentioning a token or a key
/// (`X-Api-Key`, `X-Auth-Token`).
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "proxy-authorization"
        || name == "cookie"
        || name.contains("token")
        || name.contains("key")
}

/// The byte ranges of `source` (parsed into `root`) that hold a secret as
/// written.
pub(crate) fn secret_ranges(root: &Node, source: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    if let Some(params) = get(root, "params") {
        for param in entries(params) {
            if get(param, "secret").is_some_and(|s| matches!(s.value, Value::Bool(true)))
                && let Some(default) = get(param, "default")
            {
                ranges.push(default.span.start..default.span.end);
            }
        }
    }
    for map in ["steps", "on_failure", "finally"] {
        for step in get(root, map).map(entries).into_iter().flatten() {
            step_secrets(step, source, &mut ranges);
            if let Some(rollback) = get(step, "rollback") {
                step_secrets(rollback, source, &mut ranges);
            }
        }
    }
    ranges.retain(|r| r.start < r.end && r.end <= source.len());
    ranges
}

fn step_secrets(step: &Node, source: &str, ranges: &mut Vec<Range<usize>>) {
    if let Some(Value::Map(headers)) = get(step, "headers").map(|h| &h.value) {
        for header in headers {
            if is_credential_header(&header.key) && !is_templated(&header.value) {
                ranges.push(header.value.span.start..header.value.span.end);
            }
        }
    }
    if let Some(url) = get(step, "url")
        && let Value::Str(text) = &url.value
        && !text.contains("{{")
        && let Some(written) = source.get(url.span.start..url.span.end)
        && let Some(password) = crate::plan::url_password_range(written)
    {
        ranges.push(url.span.start + password.start..url.span.start + password.end);
    }
}

fn is_templated(node: &Node) -> bool {
    matches!(&node.value, Value::Str(text) if text.contains("{{"))
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    }
}

fn entries(node: &Node) -> impl Iterator<Item = &Node> {
    let values = match &node.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    };
    values.iter().map(|e| &e.value)
}

/// `source` with every byte of `ranges` shown as `*`: one per byte, so
/// every position a diagnostic points at stays where it was. Line breaks
/// inside a range (a secret written as a block) are kept.
pub(crate) fn masked<'s>(source: &'s str, ranges: &[Range<usize>]) -> Cow<'s, str> {
    if ranges.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut bytes = source.as_bytes().to_vec();
    for range in ranges {
        for byte in &mut bytes[range.clone()] {
            if *byte != b'\n' {
                *byte = b'*';
            }
        }
    }
    // Whole characters become stars and ASCII stays ASCII, but a range
    // that cuts a character would leave half of it: shown lossily then.
    Cow::Owned(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(source: &str) -> String {
        let root = crate::yaml::parse(source).expect("parses").root;
        masked(source, &secret_ranges(&root, source)).into_owned()
    }

    #[test]
    fn secrets_written_in_the_file_are_starred_byte_for_byte() {
        let source = "params:\n  pw: {secret: true, default: hunter2pass}\n  ns: {default: prod}\nsteps:\n  a:\n    type: http-check\n    url: https://admin:admin@example.com/\n    headers: {Authorization: Bearer literalauth, Accept: text/plain, X-Api-Key: \"{{params.pw}}\"}\n";
        let out = shown(source);
        assert_eq!(out.len(), source.len());
        for hidden in ["hunter2pass", ":admin@", "Bearer literalauth"] {
            assert!(!out.contains(hidden), "{out}");
        }
        for kept in [
            "prod",
            "text/plain",
            "{{params.pw}}",
            "https://admin:*****@",
        ] {
            assert!(out.contains(kept), "{kept}: {out}");
        }
    }
}
