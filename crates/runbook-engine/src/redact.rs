//! Redaction by value: every secret's text (and each line of a multi-line
//! secret) is replaced by `***` wherever it turns up — terminal, events,
//! journal, reports — whichever step printed or echoed it.

use std::sync::{Arc, RwLock};

/// Shortest secret text we mask. Masking one- or two-character values would
/// shred ordinary output ("1" or "ok") while protecting nothing.
const MIN_SECRET_LEN: usize = 3;

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
            if candidate.len() >= MIN_SECRET_LEN && !secrets.iter().any(|s| s == candidate) {
                secrets.push(candidate.to_string());
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
