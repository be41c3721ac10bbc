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
    for set in [QUERY, SPECIAL_QUERY, PATH, COMPONENT] {
        add(utf8_percent_encode(secret, set).to_string());
    }
    // `application/x-www-form-urlencoded`: a space is `+`.
    add(utf8_percent_encode(secret, COMPONENT)
        .to_string()
        .replace("%20", "+"));
    if let Ok(json) = serde_json::to_string(secret) {
        add(json[1..json.len() - 1].to_string());
    }
    forms
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

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.read();
        let mut out = text.to_string();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// Redacts every string inside a JSON value, keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                let redacted = self.redact(s);
                if redacted != *s {
                    *s = redacted;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries: Vec<(String, serde_json::Value)> =
                    std::mem::take(map).into_iter().collect();
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key), v);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn short_values_are_not_masked() {
        let r = Redactor::new();
        r.add("1");
        assert_eq!(r.redact("1 2 3"), "1 2 3");
    }
}
