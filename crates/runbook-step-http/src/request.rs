//! Rendering a step's templates into a concrete request and concrete
//! expectations, before anything is sent: a template error must fail the
//! step before it has any effect.

use crate::client::{self, TlsSettings};
use regex::Regex;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use runbook_engine::{StepContext, StepFailure};
use runbook_model::yaml::Value as YamlValue;
use runbook_model::{HttpCheckStep, StatusPattern, Typed, is_credential_header};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A request ready to send.
pub(crate) struct Request {
    /// The method, upper-case.
    pub(crate) method: Method,
    /// The URL.
    pub(crate) url: Url,
    /// The request headers.
    pub(crate) headers: HeaderMap,
    /// The body, if any.
    pub(crate) body: Option<Vec<u8>>,
    /// Whether verification is off.
    pub(crate) insecure: bool,
    /// Extra CA certificates.
    pub(crate) ca_cert: Option<PathBuf>,
    /// What the response must look like.
    pub(crate) expect: Expectations,
}

/// Rendered expectations.
pub(crate) struct Expectations {
    /// Acceptable statuses.
    pub(crate) status: Vec<StatusPattern>,
    /// Texts that must all appear.
    pub(crate) body_contains: Vec<String>,
    /// A regex searched anywhere.
    pub(crate) body_matches: Option<Regex>,
    /// JSON Pointer → expected value.
    pub(crate) json: Vec<JsonExpectation>,
    /// Slowest acceptable time to the response headers.
    pub(crate) max_latency: Option<Duration>,
}

/// One `expect.json` entry.
pub(crate) struct JsonExpectation {
    /// The JSON Pointer.
    pub(crate) pointer: String,
    /// The expected value.
    pub(crate) expected: Value,
    /// Whether the expected value was a template as a whole. A template
    /// always renders to text, so `"{{params.replicas}}"` is allowed to match
    /// the number 3.
    pub(crate) templated: bool,
}

impl Request {
    /// Whether the method only reads, so it runs under `--dry-run`.
    pub(crate) fn is_read_only(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD || self.method == Method::OPTIONS
    }

    /// What a dry run would have done.
    pub(crate) fn describe(&self) -> String {
        match &self.body {
            Some(body) => format!("{} {} ({}-byte body)", self.method, self.url, body.len()),
            None => format!("{} {}", self.method, self.url),
        }
    }

    /// The TLS settings this request needs.
    pub(crate) fn tls_settings(&self) -> Result<TlsSettings, client::ClientError> {
        client::settings_for(self.insecure, self.ca_cert.as_deref())
    }
}

/// Gives a credential header's value to `add`, and the parts of it that
/// are secret on their own: the credentials after `Bearer `/`Basic `, and
/// each cookie's value, which a server may echo separately.
pub(crate) fn register_secret(add: &mut dyn FnMut(&str), name: &str, value: &str) {
    add(value);
    for part in runbook_model::credential_parts(name, value) {
        add(part);
    }
}

/// Gives the credentials of a URL's `user:password@` to `add`, in every
/// form they travel in: as written, decoded, and as the `Authorization:
/// Basic` header the client derives from them, which an echoing server
/// shows back.
fn register_url_credentials(add: &mut dyn FnMut(&str), url: &Url) {
    use base64::Engine as _;
    let Some(password) = url.password() else {
        return;
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = url.username();
    for (user, password) in [
        (user.to_string(), password.to_string()),
        (decode(user), decode(password)),
    ] {
        add(&password);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        add(&basic);
        add(&format!("Basic {basic}"));
    }
}

/// The credentials written literally in the step (a header value or a URL
/// password without templates): known before the run, so masked from its
/// start, before an earlier step can print them.
pub(crate) fn secrets_written_in(http: &HttpCheckStep) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut add = |secret: &str| secrets.push(secret.to_string());
    for (name, template) in &http.headers {
        if is_credential_header(name) && !template.is_templated() {
            register_secret(&mut add, name, &template.text);
        }
    }
    if !http.url.is_templated()
        && let Ok(url) = Url::parse(http.url.text.trim())
    {
        register_url_credentials(&mut add, &url);
    }
    secrets
}

/// Renders every template of the step.
pub(crate) fn render(http: &HttpCheckStep, ctx: &StepContext) -> Result<Request, StepFailure> {
    // Headers first: their secrets must be registered before any later
    // message (a bad URL, a template error) could show them.
    let mut headers = HeaderMap::new();
    for (name, template) in &http.headers {
        let value = ctx.render(&format!("headers.{name}"), template)?;
        let secret = is_credential_header(name);
        if secret {
            register_secret(&mut |secret| ctx.add_secret(secret), name, &value);
        }
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            StepFailure::new(format!(
                "`headers`: `{name}` is not a valid HTTP header name"
            ))
        })?;
        let mut header_value = HeaderValue::from_str(value.trim()).map_err(|_| {
            StepFailure::new(format!(
                "`headers.{name}` rendered to a value that cannot be sent in an HTTP header (control characters or non-ASCII text)"
            ))
        })?;
        header_value.set_sensitive(secret);
        headers.append(header_name, header_value);
    }

    let url_text = ctx.render("url", &http.url)?;
    let url = Url::parse(url_text.trim()).map_err(|e| {
        StepFailure::new(format!(
            "`url` rendered to `{}`, which is not a valid URL: {e}",
            url_text.trim()
        ))
    })?;
    register_url_credentials(&mut |secret| ctx.add_secret(secret), &url);
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(StepFailure::new(format!(
            "`url` must be an http:// or https:// URL, got `{url}`"
        )));
    }

    let method = match &http.method {
        None => Method::GET,
        Some(template) => {
            let text = ctx.render("method", template)?;
            let text = text.trim().to_ascii_uppercase();
            if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(StepFailure::new(format!(
                    "`method` rendered to `{text}`, which is not an HTTP method such as GET or POST"
                )));
            }
            Method::from_bytes(text.as_bytes()).map_err(|_| {
                StepFailure::new(format!("`method` `{text}` is not a valid HTTP method"))
            })?
        }
    };

    let body = if let Some(node) = &http.json {
        let value = ctx.render_document("json", node)?;
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Some(
            serde_json::to_vec(&value)
                .map_err(|e| StepFailure::new(format!("`json` cannot be encoded as JSON: {e}")))?,
        )
    } else if let Some(template) = &http.body {
        Some(ctx.render("body", template)?.into_bytes())
    } else {
        None
    };

    let insecure = match &http.insecure {
        Some(typed) => ctx.render_typed("insecure", typed)?,
        None => false,
    };
    let ca_cert = match &http.ca_cert {
        Some(template) => Some(PathBuf::from(ctx.render("ca_cert", template)?.trim())),
        None => None,
    };

    Ok(Request {
        method,
        url,
        headers,
        body,
        insecure,
        ca_cert,
        expect: render_expect(http, ctx)?,
    })
}

fn render_expect(http: &HttpCheckStep, ctx: &StepContext) -> Result<Expectations, StepFailure> {
    let expect = &http.expect;
    let status = match &expect.status {
        Some(Typed::Literal(patterns)) if !patterns.value.is_empty() => patterns.value.clone(),
        Some(Typed::Template(template)) => {
            let text = ctx.render("expect.status", template)?;
            runbook_model::parse_status_list(&text).ok_or_else(|| {
                StepFailure::new(format!(
                    "`expect.status` (line {}) rendered to `{}`, which is not a status code (such as `200`), a class (such as `2xx`) or a list of them separated by commas",
                    template.span.line,
                    ctx.redact(text.trim())
                ))
            })?
        }
        _ => vec![StatusPattern::Class(2)],
    };
    let body_contains = expect
        .body_contains
        .iter()
        .map(|t| ctx.render("expect.body_contains", t))
        .collect::<Result<Vec<_>, _>>()?;
    // Every body contains the empty text and matches the empty pattern: an
    // expectation that rendered to nothing would pass any response, which
    // `validate` refuses when it is written literally.
    if let Some(template) = expect
        .body_contains
        .iter()
        .zip(&body_contains)
        .find_map(|(t, text)| text.is_empty().then_some(t))
    {
        return Err(StepFailure::new(format!(
            "`expect.body_contains` (line {}) rendered to empty text, which every body contains",
            template.span.line
        )));
    }
    let body_matches = match &expect.body_matches {
        Some(template) => {
            let text = ctx.render("expect.body_matches", template)?;
            if text.is_empty() {
                return Err(StepFailure::new(format!(
                    "`expect.body_matches` (line {}) rendered to an empty pattern, which every body matches",
                    template.span.line
                )));
            }
            Some(Regex::new(&text).map_err(|e| {
                StepFailure::new(format!(
                    "`expect.body_matches` rendered to `{text}`, which is not a valid regular expression: {e}"
                ))
            })?)
        }
        None => None,
    };
    let mut json = Vec::new();
    for (pointer, node) in &expect.json {
        let expected = ctx.render_tree(&format!("expect.json.{pointer}"), node)?;
        let templated = matches!(&node.value, YamlValue::Str(s) if s.contains("{{"));
        json.push(JsonExpectation {
            pointer: pointer.clone(),
            expected,
            templated,
        });
    }
    Ok(Expectations {
        status,
        body_contains,
        body_matches,
        json,
        max_latency: match &expect.max_latency {
            Some(latency) => Some(ctx.render_typed("expect.max_latency", latency)?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_recognised() {
        for name in [
            "Authorization",
            "authorization",
            "Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "PRIVATE-TOKEN",
            "apikey",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        for name in [
            "Accept",
            "Content-Type",
            "X-Request-Id",
            "Set-Cookie-Policy",
        ] {
            assert!(!is_credential_header(name), "{name}");
        }
    }
}
