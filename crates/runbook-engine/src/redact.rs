//! Redaction by value: every secret's text (and each line of a multi-line
//! secret) is replaced by `***` wherever it turns up — terminal, events,
//! journal, reports — whichever step printed or echoed it.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use std::sync::{Arc, RwLock};

/// Shortest secret text we mask. Masking one- or two-character values would
/// shred ordinary output ("1" or "ok") while protecting nothing.
const MIN_SECRET_LEN: usize = 3;

/// The bytes a URL parser escapes in a query (the WHATWG URL standard's
/// set, which `url`, and so reqwest, follows), in a path, and the ones an
/// encoder of a single component escapes (all but letters, digits and
/// `-._~`).
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
const SPECIAL_QUERY: &AsciiSet = &QUERY.add(b'\'');
const PATH: &AsciiSet = &QUERY.add(b'?').add(b'`').add(b'{').add(b'}');
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Python's `urllib.parse.quote`, which keeps `/` by default.
const COMPONENT_KEEPING_SLASH: &AsciiSet = &COMPONENT.remove(b'/');

/// `secret` and the ways it is commonly re-encoded on its way to a log: in
/// a URL (`my%20pass`, `my+pass`) or inside a JSON string (`my \"pass\"`),
/// as a request line or an echoing server would print it.
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let mut add = |form: String| {
        if !forms.contains(&form) {
            forms.push(form);
        }
    };
    for set in [
        QUERY,
        SPECIAL_QUERY,
        PATH,
        COMPONENT,
        COMPONENT_KEEPING_SLASH,
    ] {
        add(utf8_percent_encode(secret, set).to_string());
    }
    // `application/x-www-form-urlencoded`: a space is `+`.
    add(utf8_percent_encode(secret, COMPONENT)
        .to_string()
        .replace("%20", "+"));
    if let Ok(json) = serde_json::to_string(secret) {
        let inner = &json[1..json.len() - 1];
        add(inner.to_string());
        // JSON inside a JSON string, as an echoing API returns a body it
        // was sent.
        if let Ok(twice) = serde_json::to_string(inner) {
            add(twice[1..twice.len() - 1].to_string());
        }
        // Non-ASCII as `\u00e9`, as Python's `json.dumps` writes it.
        let ascii: String = inner
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|unit| format!("\\u{unit:04x}"))
                        .collect()
                }
            })
            .collect();
        add(ascii.clone());
        // The same with `\u00E9`, as .NET writes it.
        add(uppercase_hex_escapes(&ascii));
        // Go's encoding/json (kubectl, the API server) escapes `&`, `<`,
        // `>` and the two Unicode line separators.
        add(inner
            .replace('&', "\\u0026")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"));
        // PHP's json_encode escapes `/`.
        add(inner.replace('/', "\\/"));
    }
    // As a shell quotes it: our own insertion into a script (shell-words)
    // and bash's `set -x` trace write `'it'\''s'`, bash's `printf %q` and
    // `${x@Q}`-style escaping write `it\'s`.
    add(secret.replace('\'', "'\\''"));
    if let Some(escaped) = backslash_escaped(secret) {
        add(escaped);
    }
    // Host names and case-insensitive systems fold case; `upper` is a
    // template helper.
    add(secret.to_lowercase());
    add(secret.to_uppercase());
    forms
}

/// `\u00e9` escapes with upper-case hex digits.
fn uppercase_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at + 2]);
        let digits = rest[at + 2..].get(..4).unwrap_or("");
        if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str(&digits.to_ascii_uppercase());
            rest = &rest[at + 6..];
        } else {
            rest = &rest[at + 2..];
        }
    }
    out.push_str(rest);
    out
}

/// `secret` as bash's `printf %q` writes a printable word: a backslash
/// before each character the shell would treat specially (and before a
/// leading `~` or `#`). `None` for text with control characters, which
/// bash writes in `$'...'` form instead.
fn backslash_escaped(secret: &str) -> Option<String> {
    if secret.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(secret.len() * 2);
    for (i, c) in secret.chars().enumerate() {
        let special = " !\"$&'()*,;<>?[\\]^`{|}".contains(c) || (i == 0 && (c == '~' || c == '#'));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    Some(out)
}

/// A shared, growing set of secret strings. Cloning shares the set, so a step
/// that learns a secret at run time (an `Authorization` header it rendered)
/// protects every reporter at once.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret value; each of its lines is masked on its own as well,
    /// so a multi-line secret cannot leak one line at a time.
    pub fn add(&self, secret: &str) {
        let mut secrets = match self.secrets.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let candidates = std::iter::once(secret).chain(secret.lines().map(str::trim));
        for candidate in candidates {
            if candidate.len() < MIN_SECRET_LEN {
                continue;
            }
            for form in encoded_forms(candidate) {
                if !secrets.contains(&form) {
                    secrets.push(form);
                }
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Whether no secret is registered (the common fast path).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        match self.secrets.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// `text` with every secret replaced by `***`. Where two secrets
    /// overlap (`abcXYZ` and `XYZ123` in `abcXYZ123`), both go under one
    /// `***`: masking one first would leave the other's rest in clear.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.read();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for secret in secrets.iter() {
            spans.extend(
                text.match_indices(secret.as_str())
                    .map(|(at, found)| (at, at + found.len())),
            );
        }
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            // Every span starting before this one ends is part of it (a
            // shorter secret within a longer one, or an overlap).
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.push_str(&text[copied..start]);
            out.push_str("***");
            copied = end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// `text`, redacted, when it was cut at its end (a size limit): a secret
    /// cut in two leaves only its beginning, which the search for whole
    /// secrets cannot find. An end of `MIN_SECRET_LEN` or more bytes that
    /// begins a secret is masked too.
    pub fn redact_cut_end(&self, text: &str) -> String {
        let mut out = self.redact(text);
        let longest = self
            .read()
            .iter()
            .filter_map(|secret| {
                (MIN_SECRET_LEN..secret.len())
                    .rev()
                    .find(|&n| secret.is_char_boundary(n) && out.ends_with(&secret[..n]))
            })
            .max();
        if let Some(n) = longest {
            out.truncate(out.len() - n);
            out.push_str("***");
        }
        out
    }

    /// `text`, redacted, when it was cut at its start (only the last bytes
    /// were kept): a secret's end at the start of `text` is masked too.
    pub fn redact_cut_start(&self, text: &str) -> String {
        let out = self.redact(text);
        self.mask_cut_start(&out).unwrap_or(out)
    }

    /// `text` with only the end of a secret that a cut left at its start
    /// masked, or `None` when it starts with none: the whole secrets in it
    /// are left for whoever prints or stores it to mask. No later step can
    /// use a piece of a secret, and once stored no redaction would know it
    /// for one.
    pub fn mask_cut_start(&self, text: &str) -> Option<String> {
        let longest = self
            .read()
            .iter()
            .filter_map(|secret| {
                (1..=secret.len().saturating_sub(MIN_SECRET_LEN))
                    .find(|&from| {
                        secret.is_char_boundary(from) && text.starts_with(&secret[from..])
                    })
                    .map(|from| secret.len() - from)
            })
            .max()?;
        Some(format!("***{}", &text[longest..]))
    }

    /// Whether [`Self::redact_json`] would mask anything in `value`.
    pub fn finds_in_json(&self, value: &serde_json::Value) -> bool {
        let secrets = self.read();
        if secrets.is_empty() {
            return false;
        }
        let finds = |text: &str| secrets.iter().any(|secret| text.contains(secret.as_str()));
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            let found = match value {
                serde_json::Value::String(s) => finds(s),
                serde_json::Value::Number(n) => finds(&n.to_string()),
                serde_json::Value::Array(items) => {
                    pending.extend(items);
                    false
                }
                serde_json::Value::Object(map) => {
                    pending.extend(map.values());
                    map.keys().any(|key| finds(key))
                }
                serde_json::Value::Null | serde_json::Value::Bool(_) => false,
            };
            if found {
                return true;
            }
        }
        false
    }

    /// Redacts every string inside a JSON value, keys included, and every
    /// number whose digits are a secret. Returns whether anything was
    /// masked.
    pub fn redact_json(&self, value: &mut serde_json::Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            serde_json::Value::String(s) => {
                let redacted = self.redact(s);
                let changed = redacted != *s;
                if changed {
                    *s = redacted;
                }
                changed
            }
            serde_json::Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.redact_json(v) | changed),
            serde_json::Value::Object(map) => {
                let entries: Vec<(String, serde_json::Value)> =
                    std::mem::take(map).into_iter().collect();
                let mut changed = false;
                for (key, mut v) in entries {
                    changed |= self.redact_json(&mut v);
                    let masked_key = self.redact(&key);
                    changed |= masked_key != key;
                    map.insert(masked_key, v);
                }
                changed
            }
            // A secret that is all digits (an account number, a PIN) parsed
            // as a number: masked as text, since `***` is no number.
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                let redacted = self.redact(&text);
                let changed = redacted != text;
                if changed {
                    *value = serde_json::Value::String(redacted);
                }
                changed
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_a_secret_re_encoded_for_a_url_or_json() {
        let r = Redactor::new();
        r.add("my secret\"pass/1");
        assert_eq!(
            r.redact("GET http://h/x?s=my%20secret%22pass/1 -> 200"),
            "GET http://h/x?s=*** -> 200"
        );
        assert_eq!(r.redact("s=my+secret%22pass%2F1&x=1"), "s=***&x=1");
        assert_eq!(r.redact(r#"{"pw":"my secret\"pass/1"}"#), r#"{"pw":"***"}"#);
        assert_eq!(r.redact("unrelated my secret"), "unrelated my secret");
    }

    #[test]
    fn masks_whole_and_per_line() {
        let r = Redactor::new();
        r.add("s3cr3t-token");
        r.add("line-one\nline-two");
        assert_eq!(r.redact("auth s3cr3t-token ok"), "auth *** ok");
        assert_eq!(r.redact("got line-two only"), "got *** only");
        let mut json = serde_json::json!({"a": ["x s3cr3t-token"], "line-one": 1});
        r.redact_json(&mut json);
        assert_eq!(json, serde_json::json!({"a": ["x ***"], "***": 1}));
    }

    #[test]
    fn masks_the_re_encodings_echoing_tools_produce() {
        let r = Redactor::new();
        r.add("hé llo");
        r.add("zz\"q");
        r.add("ab/cd&e");
        r.add("SeCrEt-Value-99");
        // Python's json.dumps escapes non-ASCII by default.
        assert_eq!(r.redact(r#"{"pw": "h\u00e9 llo"}"#), r#"{"pw": "***"}"#);
        // A JSON body echoed inside another JSON string.
        assert_eq!(
            r.redact(r#"{"data": "{\"pw\": \"zz\\\"q\"}"}"#),
            r#"{"data": "{\"pw\": \"***\"}"}"#
        );
        // urllib.parse.quote keeps `/`.
        assert_eq!(r.redact("GET /x?pw=ab/cd%26e"), "GET /x?pw=***");
        // A host name is lower-cased.
        assert_eq!(
            r.redact("DNS lookup failed for host secret-value-99.invalid"),
            "DNS lookup failed for host ***.invalid"
        );
    }

    #[test]
    fn masks_a_secret_as_shells_and_other_json_encoders_write_it() {
        let r = Redactor::new();
        r.add("O'Brien-2024!");
        r.add("k8s&Secret<v>9");
        r.add("pa ss$w0rd");
        r.add("mixedCase42");
        r.add("h/é/x");
        // Our own insertion into a script, and bash's `set -x` trace.
        assert_eq!(
            r.redact("+ PGPASSWORD='O'\\''Brien-2024!' psql"),
            "+ PGPASSWORD='***' psql"
        );
        // bash's `printf %q`.
        assert_eq!(r.redact("pw=O\\'Brien-2024\\!"), "pw=***");
        assert_eq!(r.redact("pw=pa\\ ss\\$w0rd"), "pw=***");
        // Go's encoding/json, as kubectl prints an annotation.
        assert_eq!(
            r.redact(r#""rotated": "k8s\u0026Secret\u003cv\u003e9""#),
            r#""rotated": "***""#
        );
        // .NET's upper-case escapes, PHP's escaped slash.
        assert_eq!(r.redact(r#""h/\u00E9/x""#), r#""***""#);
        assert_eq!(r.redact(r#""h\/é\/x""#), r#""***""#);
        // The `upper` template helper.
        assert_eq!(r.redact("MIXEDCASE42"), "***");
    }

    #[test]
    fn overlapping_secrets_are_masked_together() {
        let r = Redactor::new();
        r.add("abcdefXYZ");
        r.add("XYZ123456");
        r.add("cde");
        assert_eq!(r.redact("[abcdefXYZ123456]"), "[***]");
        assert_eq!(r.redact("XYZ123456 abcdefXYZ"), "*** ***");
        assert_eq!(r.redact("a cde b abcdefXYZ"), "a *** b ***");
        // Back to back, each is masked on its own.
        assert_eq!(r.redact("abcdefXYZcde"), "******");
    }

    #[test]
    fn a_number_whose_digits_are_a_secret_is_masked() {
        let r = Redactor::new();
        r.add("4111222233334444");
        let mut json = serde_json::json!({"account": 4111222233334444_u64, "count": 3});
        r.redact_json(&mut json);
        assert_eq!(json, serde_json::json!({"account": "***", "count": 3}));
    }

    #[test]
    fn a_secret_cut_in_two_by_a_limit_is_masked_too() {
        let r = Redactor::new();
        r.add("TOPSECRETPASSWORD1234");
        assert_eq!(r.redact_cut_end("body: AAAATOPSECRETP"), "body: AAAA***");
        assert_eq!(r.redact_cut_start("D1234 and then"), "*** and then");
        // Whole secrets as usual; fewer than three bytes are left alone.
        assert_eq!(
            r.redact_cut_end("x TOPSECRETPASSWORD1234 y TO"),
            "x *** y TO"
        );
        assert_eq!(r.redact_cut_start("34 and then"), "34 and then");
        assert_eq!(r.redact_cut_end("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_masked() {
        let r = Redactor::new();
        r.add("1");
        assert_eq!(r.redact("1 2 3"), "1 2 3");
    }

    #[test]
    fn finds_in_json_exactly_what_redact_json_masks() {
        let r = Redactor::new();
        r.add("hunter22");
        r.add("987654");
        let values = [
            json!(null),
            json!("nothing here"),
            json!("pw=hunter22"),
            json!({"deep": [1, 2, {"x": "hunter22"}]}),
            json!({"hunter22": 1}),
            json!([987654]),
            json!([9876543]),
            json!({"a": [true, 1.5, "fine"]}),
            json!("pw=hunter%32%32"),
        ];
        for value in values {
            let mut masked = value.clone();
            let changed = r.redact_json(&mut masked);
            assert_eq!(r.finds_in_json(&value), changed, "{value}");
        }
        assert!(!Redactor::new().finds_in_json(&json!("hunter22")));
    }
}
