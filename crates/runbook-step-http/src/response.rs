//! Reading a response into the step's outputs without trusting its size.
//!
//! The body is read chunk by chunk and reading stops at [`BODY_LIMIT`]: a
//! health endpoint that suddenly streams gigabytes must not take the engine's
//! memory with it. The rest is never downloaded; dropping the response closes
//! the connection.

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Most bytes of a body kept in the `body` output.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The captured body.
pub(crate) struct Body {
    /// The bytes kept (at most [`BODY_LIMIT`]).
    pub(crate) bytes: Vec<u8>,
    /// Whether the server sent more than was kept.
    pub(crate) truncated: bool,
}

impl Body {
    /// The body as text: invalid UTF-8 is replaced, and a character cut in
    /// half by the limit is dropped rather than shown as garbage.
    pub(crate) fn text(&self) -> String {
        let mut bytes = self.bytes.as_slice();
        if self.truncated
            && let Err(error) = std::str::from_utf8(bytes)
            && error.error_len().is_none()
        {
            bytes = &bytes[..error.valid_up_to()];
        }
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Reads at most `limit` bytes of the body. On a read error, returns what
/// arrived so far along with the error.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> (Body, Option<reqwest::Error>) {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - bytes.len();
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    return (
                        Body {
                            bytes,
                            truncated: true,
                        },
                        None,
                    );
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => {
                return (
                    Body {
                        bytes,
                        truncated: false,
                    },
                    None,
                );
            }
            Err(error) => {
                return (
                    Body {
                        bytes,
                        truncated: false,
                    },
                    Some(error),
                );
            }
        }
    }
}

/// Response headers as a JSON object: lower-case names in the order the
/// server sent them, repeated headers joined with `, ` (as HTTP allows).
pub(crate) fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    Value::Object(map)
}

/// The body parsed as JSON, else null (an empty, truncated or non-JSON
/// body). A byte order mark is skipped, as most JSON readers skip it.
pub(crate) fn body_json(body: &Body) -> Value {
    if body.truncated || body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(without_bom(&body.bytes)).unwrap_or(Value::Null)
}

/// Why `text` is not JSON, in the parser's words; `None` when it is.
pub(crate) fn json_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("it is empty".to_string());
    }
    serde_json::from_slice::<Value>(without_bom(text.as_bytes()))
        .err()
        .map(|error| error.to_string())
}

fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_character_cut_by_the_limit_is_dropped() {
        let body = Body {
            bytes: "né".as_bytes()[..2].to_vec(),
            truncated: true,
        };
        assert_eq!(body.text(), "n");
        let whole = Body {
            bytes: b"ok\xff".to_vec(),
            truncated: false,
        };
        assert_eq!(whole.text(), "ok\u{fffd}");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("X-Multi", HeaderValue::from_static("a"));
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        assert_eq!(
            headers_json(&headers),
            serde_json::json!({"x-multi": "a, b", "content-type": "text/plain"})
        );
    }

    #[test]
    fn only_whole_json_bodies_parse() {
        let json = Body {
            bytes: br#"{"a":1}"#.to_vec(),
            truncated: false,
        };
        assert_eq!(body_json(&json), serde_json::json!({"a": 1}));
        let text = Body {
            bytes: b"ok".to_vec(),
            truncated: false,
        };
        assert_eq!(body_json(&text), Value::Null);
        let marked = Body {
            bytes: "\u{feff}{\"a\":1}".as_bytes().to_vec(),
            truncated: false,
        };
        assert_eq!(body_json(&marked), serde_json::json!({"a": 1}));
        assert_eq!(json_problem("\u{feff}{\"a\":1}"), None);
        assert_eq!(
            json_problem("{\"f\":1e400}").as_deref(),
            Some("number out of range at line 1 column 10")
        );
    }
}
