//! Following redirects one hop at a time, instead of leaving it to reqwest.
//!
//! reqwest's own policy sends every header but `Authorization` and
//! `Cookie` on to wherever a redirect points, an `https://` to `http://`
//! downgrade included, and adds a `Referer` holding the first URL with its
//! query. A step's credential headers (`X-Api-Key`, `X-Auth-Token`: the
//! ones masked as secrets) must reach only the origin they were written
//! for, and a failure after a redirect must name the hop that failed.

use reqwest::header::{self, HeaderMap, HeaderName};
use reqwest::{Method, StatusCode, Url};
use runbook_model::is_credential_header;

/// The most redirects one request follows (reqwest's and browsers' limit).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// One request of a chain of redirects.
#[derive(Clone)]
pub(crate) struct Hop {
    /// The method.
    pub(crate) method: Method,
    /// Where this hop goes.
    pub(crate) url: Url,
    /// The headers it sends.
    pub(crate) headers: HeaderMap,
    /// The body it sends.
    pub(crate) body: Option<Vec<u8>>,
    /// The step's own URL, whose secrets the run knows: shown whole. A
    /// URL a `Location` named is shown [`without_credentials`].
    pub(crate) written: bool,
}

impl Hop {
    /// How messages show this hop's URL.
    pub(crate) fn shown_url(&self) -> Url {
        if self.written {
            self.url.clone()
        } else {
            without_credentials(&self.url)
        }
    }
}

/// A redirect that cannot be followed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedirectError {
    /// `Location` is not a URL.
    #[error("{from} redirected ({status}) to `{location}`, which is not a valid URL: {reason}")]
    BadLocation {
        /// The redirecting URL.
        from: String,
        /// The redirect's status.
        status: u16,
        /// The `Location` header as sent.
        location: String,
        /// The parser's words.
        reason: String,
    },
    /// `Location` is not an HTTP URL (`file:`, `ftp:`).
    #[error("{from} redirected ({status}) to {to}, which is not an http:// or https:// URL")]
    NotHttp {
        /// The redirecting URL.
        from: String,
        /// The redirect's status.
        status: u16,
        /// Where it pointed.
        to: String,
    },
}

/// `url` as a message may show it after a redirect: without `user:password@`
/// and without query or fragment, where a server's `Location` may carry
/// credentials or a signed URL that no secret of the run matches.
pub(crate) fn without_credentials(url: &Url) -> Url {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, which have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown
}

/// A `Location` that is not a URL, shown as [`without_credentials`] would:
/// up to its query, without a `user:password@` after the scheme.
fn location_shown(location: &str) -> String {
    let base = location.split(['?', '#']).next().unwrap_or_default();
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    }
}

impl Hop {
    /// The request a response with `status` and `headers` sends this one
    /// on to, or `None` when the response is not a redirect to follow (a
    /// 304, a 3xx without `Location`).
    pub(crate) fn redirected(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Option<Hop>, RedirectError> {
        // As curl and browsers do: 303 turns the request into a GET, 301
        // and 302 turn a POST into one, 307 and 308 repeat it as it was.
        let repeated = match status {
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => self.method != Method::POST,
            StatusCode::SEE_OTHER => self.method == Method::HEAD,
            _ => return Ok(None),
        };
        let Some(location) = headers.get(header::LOCATION) else {
            return Ok(None);
        };
        let location = String::from_utf8_lossy(location.as_bytes());
        let mut url =
            self.url
                .join(location.trim())
                .map_err(|error| RedirectError::BadLocation {
                    from: self.shown_url().to_string(),
                    status: status.as_u16(),
                    location: location_shown(&location),
                    reason: error.to_string(),
                })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RedirectError::NotHttp {
                from: self.shown_url().to_string(),
                status: status.as_u16(),
                to: without_credentials(&url).to_string(),
            });
        }
        let mut next = Hop {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            written: false,
        };
        if !repeated {
            if next.method != Method::HEAD {
                next.method = Method::GET;
            }
            next.body = None;
            for name in [
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                header::TRANSFER_ENCODING,
            ] {
                next.headers.remove(name);
            }
        }
        if same_origin(&self.url, &url) {
            // A URL's `user:password@` holds for its origin; a `Location`
            // seldom repeats it.
            if url.username().is_empty() && url.password().is_none() {
                // Only fails for URLs that cannot have credentials, which
                // an http(s) URL with a host can.
                let _ = url.set_username(self.url.username());
                let _ = url.set_password(self.url.password());
            }
        } else {
            let credentials: Vec<HeaderName> = next
                .headers
                .keys()
                .filter(|name| is_credential_header(name.as_str()))
                .cloned()
                .collect();
            for name in credentials {
                next.headers.remove(name);
            }
        }
        next.url = url;
        Ok(Some(next))
    }
}

/// Scheme, host and port: what a browser calls an origin. A change of
/// scheme counts, so `https` to `http` drops the credentials too.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn hop(method: Method, url: &str) -> Hop {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Hop {
            method,
            url: Url::parse(url).expect("test URL"),
            headers,
            body: Some(b"{}".to_vec()),
            written: true,
        }
    }

    fn to(location: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_str(location).expect("test location"),
        );
        headers
    }

    fn next(from: &Hop, status: u16, location: &str) -> Hop {
        from.redirected(
            StatusCode::from_u16(status).expect("test status"),
            &to(location),
        )
        .expect("a followable redirect")
        .expect("a redirect")
    }

    fn names(hop: &Hop) -> Vec<&str> {
        let mut names: Vec<&str> = hop.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let first = hop(Method::GET, "https://api.example/health");
        let same = next(&first, 302, "/v2/health");
        assert_eq!(same.url.as_str(), "https://api.example/v2/health");
        assert_eq!(
            names(&same),
            ["authorization", "content-type", "x-api-key", "x-request-id"]
        );
        for elsewhere in [
            "https://other.example/health",
            "http://api.example/health",
            "https://api.example:8443/health",
        ] {
            let moved = next(&first, 307, elsewhere);
            assert_eq!(
                names(&moved),
                ["content-type", "x-request-id"],
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn methods_change_as_curl_changes_them() {
        let post = hop(Method::POST, "http://a.example/x");
        for status in [301, 302, 303] {
            let moved = next(&post, status, "/y");
            assert_eq!(moved.method, Method::GET, "{status}");
            assert_eq!(moved.body, None, "{status}");
            assert!(!moved.headers.contains_key("content-type"), "{status}");
        }
        for status in [307, 308] {
            let moved = next(&post, status, "/y");
            assert_eq!(moved.method, Method::POST, "{status}");
            assert_eq!(moved.body.as_deref(), Some(&b"{}"[..]), "{status}");
        }
        let put = hop(Method::PUT, "http://a.example/x");
        assert_eq!(next(&put, 302, "/y").method, Method::PUT);
        assert_eq!(next(&put, 303, "/y").method, Method::GET);
        let head = hop(Method::HEAD, "http://a.example/x");
        assert_eq!(next(&head, 303, "/y").method, Method::HEAD);
    }

    #[test]
    fn url_credentials_follow_within_their_origin_only() {
        let first = hop(Method::GET, "http://ops:pw@a.example/x");
        assert_eq!(
            next(&first, 302, "/y").url.as_str(),
            "http://ops:pw@a.example/y"
        );
        assert_eq!(
            next(&first, 302, "http://b.example/y").url.as_str(),
            "http://b.example/y"
        );
    }

    #[test]
    fn what_is_not_followed() {
        let first = hop(Method::GET, "http://a.example/x");
        assert!(
            first
                .redirected(StatusCode::NOT_MODIFIED, &to("/y"))
                .expect("no error")
                .is_none()
        );
        assert!(
            first
                .redirected(StatusCode::FOUND, &HeaderMap::new())
                .expect("no error")
                .is_none()
        );
        let secret = hop(Method::GET, "http://a.example/x")
            .redirected(StatusCode::FOUND, &to("ftp://u:pw9@h.example/f?sig=S9"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            secret.as_deref(),
            Some(
                "http://a.example/x redirected (302) to ftp://h.example/f, which is not an http:// or https:// URL"
            )
        );
        assert_eq!(location_shown("http://u:pw@h:99:1/x?S"), "http://h:99:1/x");
        let file = first
            .redirected(StatusCode::FOUND, &to("file:///etc/passwd"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            file.as_deref(),
            Some(
                "http://a.example/x redirected (302) to file:///etc/passwd, which is not an http:// or https:// URL"
            )
        );
        let bad = first
            .redirected(StatusCode::FOUND, &to("http://[::1"))
            .err()
            .map(|e| e.to_string());
        assert!(
            bad.as_deref()
                .is_some_and(|m| m.contains("which is not a valid URL")),
            "{bad:?}"
        );
    }
}
