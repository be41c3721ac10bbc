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

/// The parts of a credential header's value that are secret on their own,
/// and that a server may echo or a log may show apart from the header: the
/// credentials after `Bearer ` or `Basic `, and each cookie's value.
pub fn credential_parts<'v>(name: &str, value: &'v str) -> Vec<&'v str> {
    let name = name.to_ascii_lowercase();
    let mut parts = Vec::new();
    if name.ends_with("authorization")
        && let Some((_scheme, credentials)) = value.trim().split_once(' ')
    {
        parts.push(credentials.trim());
    }
    let pairs: Vec<&str> = match name.as_str() {
        "cookie" => value.split(';').collect(),
        // `name=value; Path=/; HttpOnly`: only the first pair is the cookie.
        "set-cookie" => value.split(';').take(1).collect(),
        _ => Vec::new(),
    };
    parts.extend(
        pairs
            .into_iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(_name, cookie)| cookie.trim()),
    );
    parts
}

/// The byte ranges of `source` (parsed into `root`) that hold a secret as
/// written, and every other place its text appears (an anchor it was
/// aliased from, a `run` that repeats it): a run masks by value, too.
pub(crate) fn secret_ranges(root: &Node, source: &str) -> Vec<Range<usize>> {
    let mut found = Found {
        source,
        ranges: Vec::new(),
        texts: Vec::new(),
    };
    // Every occurrence of a repeated key: the file is shown as written.
    for params in all(root, "params") {
        for param in entries(params) {
            let secret = all(param, "secret").any(|s| matches!(s.value, Value::Bool(true)));
            for default in all(param, "default") {
                if secret {
                    found.node(default);
                } else {
                    found.url_password(default);
                }
            }
        }
    }
    for map in ["steps", "on_failure", "finally"] {
        for step in all(root, map).flat_map(entries) {
            for step in std::iter::once(step).chain(all(step, "rollback")) {
                for header in all(step, "headers").flat_map(entries_with_keys) {
                    if !is_credential_header(&header.key) {
                        continue;
                    }
                    if is_templated(&header.value) {
                        found.literal_parts(&header.key, &header.value);
                    } else {
                        found.node(&header.value);
                        if let Value::Str(text) = &header.value.value {
                            for part in credential_parts(&header.key, text) {
                                found.texts.push(part.to_string());
                            }
                        }
                    }
                }
                all(step, "url").for_each(|url| found.url_password(url));
            }
        }
    }
    found.everywhere()
}

/// What the walk of the file found.
struct Found<'s> {
    source: &'s str,
    ranges: Vec<Range<usize>>,
    /// The secrets' texts as parsed (an alias's is written elsewhere, as
    /// its anchor).
    texts: Vec<String>,
}

impl Found<'_> {
    /// A node whose whole value is a secret.
    fn node(&mut self, node: &Node) {
        self.ranges.push(node.span.start..node.span.end);
        match &node.value {
            Value::Str(text) => self.texts.push(text.clone()),
            // A number or a boolean: its text as written.
            _ => self.texts.extend(
                self.source
                    .get(node.span.start..node.span.end)
                    .map(|written| written.trim().to_string()),
            ),
        }
    }

    /// The text written around the templates of a credential header's
    /// value (`Bearer abc{{params.rest}}`): part of the credential, so
    /// starred where it is written, all but an authorization scheme's name.
    fn literal_parts(&mut self, name: &str, node: &Node) {
        let Some(written) = self.source.get(node.span.start..node.span.end) else {
            return;
        };
        let mut scheme_left = name.to_ascii_lowercase().ends_with("authorization");
        let mut at = 0;
        while at < written.len() {
            let rest = &written[at..];
            if rest.starts_with("{{") {
                at += rest.find("}}").map_or(rest.len(), |end| end + 2);
                scheme_left = false;
                continue;
            }
            let word_len = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '{'))
                .unwrap_or(rest.len());
            let skip = if word_len == 0 {
                rest.chars().next().map_or(1, char::len_utf8)
            } else {
                word_len
            };
            if word_len > 0 && !std::mem::take(&mut scheme_left) {
                let start = node.span.start + at;
                self.ranges.push(start..start + word_len);
            }
            at += skip;
        }
    }

    /// The password of a literal `scheme://user:password@host` in `node`.
    fn url_password(&mut self, node: &Node) {
        if let Value::Str(text) = &node.value
            && !text.contains("{{")
            && let Some(written) = self.source.get(node.span.start..node.span.end)
            && let Some(password) = crate::plan::url_password_range(written)
        {
            let start = node.span.start + password.start;
            self.ranges.push(start..start + password.len());
            self.texts.push(written[password].to_string());
        }
    }

    /// The ranges found, and every other place their texts appear.
    fn everywhere(mut self) -> Vec<Range<usize>> {
        let source = self.source;
        self.ranges
            .retain(|r| r.start < r.end && r.end <= source.len());
        // As the redactor: shorter ones would mask every `42`; a value
        // spread over lines is written differently elsewhere.
        self.texts
            .retain(|text| text.chars().count() >= 3 && !text.contains('\n'));
        for text in &self.texts {
            self.ranges.extend(
                source
                    .match_indices(text.as_str())
                    .map(|(at, t)| at..at + t.len()),
            );
        }
        self.ranges
    }
}

fn is_templated(node: &Node) -> bool {
    matches!(&node.value, Value::Str(text) if text.contains("{{"))
}

/// Every value of `key` in the mapping `node` (a key written twice too).
fn all<'n>(node: &'n Node, key: &'n str) -> impl Iterator<Item = &'n Node> {
    entries_with_keys(node)
        .filter(move |e| e.key == key)
        .map(|e| &e.value)
}

fn entries(node: &Node) -> impl Iterator<Item = &Node> {
    entries_with_keys(node).map(|e| &e.value)
}

fn entries_with_keys(node: &Node) -> impl Iterator<Item = &crate::yaml::Entry> {
    let values = match &node.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    };
    values.iter()
}

/// `source` with every character in `ranges` shown as a star of the same
/// length in UTF-8 (`*`, `¤`, `∗`, `🞱`): every byte offset and every
/// character count stays as it was, so each position a diagnostic gives,
/// and the column its renderer works out, is still right. Line breaks and
/// indentation inside a range (a secret written as a block) are kept.
pub(crate) fn masked<'s>(source: &'s str, ranges: &[Range<usize>]) -> Cow<'s, str> {
    if ranges.is_empty() {
        return Cow::Borrowed(source);
    }
    let hidden = |at: usize| ranges.iter().any(|r| r.contains(&at));
    let mut out = String::with_capacity(source.len());
    let mut indentation = true;
    for (at, c) in source.char_indices() {
        let line_break = matches!(c, '\n' | '\r');
        let keep = !hidden(at) || line_break || (indentation && c == ' ');
        indentation = line_break || (indentation && c == ' ');
        out.push(if keep {
            c
        } else {
            match c.len_utf8() {
                1 => '*',
                2 => '¤',
                3 => '∗',
                _ => '🞱',
            }
        });
    }
    Cow::Owned(out)
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
        for hidden in ["hunter2pass", "admin", "Bearer literalauth"] {
            assert!(!out.contains(hidden), "{out}");
        }
        // The user name is the password here, so it is masked too, as a run
        // masks it.
        for kept in [
            "prod",
            "text/plain",
            "{{params.pw}}",
            "https://*****:*****@",
        ] {
            assert!(out.contains(kept), "{kept}: {out}");
        }
    }

    #[test]
    fn a_secret_is_starred_wherever_its_text_appears() {
        let source = "params:\n  pw: {secret: true, default: FIRSTSECRET}\n  note: {description: &s ANCHORED, default: x}\n  alias: {secret: true, default: *s}\n  base: {default: \"http://u:urlpass@h/\"}\nsteps:\n  a: {type: shell, run: echo FIRSTSECRET}\n";
        let out = shown(source);
        for hidden in ["FIRSTSECRET", "ANCHORED", "urlpass"] {
            assert!(!out.contains(hidden), "{hidden}: {out}");
        }
        assert!(out.contains("http://u:*******@h/"), "{out}");
    }

    #[test]
    fn wide_and_block_secrets_keep_every_offset_and_the_next_lines_indentation() {
        let source = "params:\n  a: {secret: true, default: \"日本é🔑x\"}\n  b:\n    secret: true\n    default: |\n      line one\n      line two\n    description: kept\n";
        let out = shown(source);
        assert_eq!(out.len(), source.len());
        assert_eq!(out.chars().count(), source.chars().count());
        assert!(!out.contains("日本") && !out.contains("line one"), "{out}");
        assert!(
            out.contains("\n      ********\n      ********\n    description: kept"),
            "{out}"
        );
    }
}
