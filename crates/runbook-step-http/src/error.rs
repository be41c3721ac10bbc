//! Turning transport errors into sentences an on-call engineer can act on.
//!
//! reqwest's own messages ("error sending request for url") hide the cause
//! several `source()` levels down, and TLS problems sit inside an
//! `io::Error` whose `source()` skips the rustls error itself. So the whole
//! chain is walked, looking inside `io::Error`s as well.

use runbook_engine::format_duration;
use rustls::CertificateError;
use std::error::Error as StdError;
use std::time::Duration;

/// Why a request got no (complete) response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// Nothing listens on the port.
    #[error("connection refused by {addr} (is the service listening?)")]
    ConnectionRefused {
        /// `host:port`.
        addr: String,
    },
    /// The host name does not resolve.
    #[error("DNS lookup failed for host `{host}`: {detail}")]
    Dns {
        /// The host.
        host: String,
        /// The resolver's words.
        detail: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {problem}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What was wrong, certificate problems named.
        problem: String,
    },
    /// No response before the attempt's timeout.
    #[error("no response from {url}: timed out after {after}")]
    TimedOut {
        /// The URL.
        url: String,
        /// The timeout, formatted as in the runbook (`30s`).
        after: String,
    },
    /// The body did not finish before the attempt's timeout.
    #[error("the response body from {url} did not finish: timed out after {after}")]
    BodyTimedOut {
        /// The URL.
        url: String,
        /// The timeout.
        after: String,
    },
    /// Redirects went on too long.
    #[error("too many redirects (more than 10) starting at {url}")]
    TooManyRedirects {
        /// The first URL.
        url: String,
    },
    /// The proxy the environment names for the URL could not be reached:
    /// the target itself was never tried.
    #[error("cannot reach the proxy {proxy} that {variables} names for {addr}: {detail}")]
    Proxy {
        /// The proxy's `host:port`.
        proxy: String,
        /// Where the variables are.
        variables: &'static str,
        /// The target's `host:port`.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// The connection could not be made for another reason.
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause chain.
        detail: String,
    },
    /// The connection broke while the body was read.
    #[error("the response body from {url} broke off: {detail}")]
    Body {
        /// The URL.
        url: String,
        /// The cause chain.
        detail: String,
    },
    /// Anything else.
    #[error("request to {url} failed: {detail}")]
    Other {
        /// The URL.
        url: String,
        /// The cause chain.
        detail: String,
    },
}

/// Where the request was going.
pub(crate) struct Target<'a> {
    /// The request URL.
    pub(crate) url: &'a reqwest::Url,
    /// The attempt's timeout.
    pub(crate) timeout: Duration,
}

impl Target<'_> {
    fn host(&self) -> &str {
        self.url.host_str().unwrap_or("?")
    }

    fn addr(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

/// Describes an error from sending the request (before the headers).
pub(crate) fn describe_send(error: &reqwest::Error, target: &Target<'_>) -> RequestError {
    let url = target.url.to_string();
    if error.is_timeout() {
        return RequestError::TimedOut {
            url,
            after: format_duration(target.timeout),
        };
    }
    let links = chain(error);
    let through_proxy = |detail: String| {
        proxy_for(target.url).map(|proxy| RequestError::Proxy {
            proxy,
            variables: "HTTP_PROXY, HTTPS_PROXY or ALL_PROXY (NO_PROXY exempts hosts)",
            addr: target.addr(),
            detail,
        })
    };
    if let Some(problem) = links.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return RequestError::Tls {
            addr: target.addr(),
            problem: describe_tls(problem, target.host()),
        };
    }
    if links.iter().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    }) {
        return through_proxy("connection refused".to_string()).unwrap_or_else(|| {
            RequestError::ConnectionRefused {
                addr: target.addr(),
            }
        });
    }
    if links.iter().any(|e| {
        let text = e.to_string();
        text.starts_with("dns error") || text.contains("failed to lookup address")
    }) {
        return through_proxy(deepest(&links)).unwrap_or_else(|| RequestError::Dns {
            host: target.host().to_string(),
            detail: deepest(&links),
        });
    }
    if error.is_connect() {
        return through_proxy(deepest(&links)).unwrap_or_else(|| RequestError::Connect {
            addr: target.addr(),
            detail: deepest(&links),
        });
    }
    RequestError::Other {
        url,
        detail: causes(&links),
    }
}

/// Describes an error while reading the body.
pub(crate) fn describe_body(error: &reqwest::Error, target: &Target<'_>) -> RequestError {
    let url = target.url.to_string();
    if error.is_timeout() {
        return RequestError::BodyTimedOut {
            url,
            after: format_duration(target.timeout),
        };
    }
    RequestError::Body {
        url,
        detail: causes(&chain(error)),
    }
}

/// The proxy (`host:port`) the environment names for `url`, found as
/// reqwest finds it (the same matcher), without its credentials.
fn proxy_for(url: &reqwest::Url) -> Option<String> {
    let uri: http::Uri = url.as_str().parse().ok()?;
    let intercept = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)?;
    let proxy = intercept.uri();
    let host = proxy.host()?;
    Some(match proxy.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// Every error in the chain, including the errors wrapped inside
/// `io::Error`s (whose `source()` skips them).
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out: Vec<&'a (dyn StdError + 'static)> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        out.push(current);
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &'a (dyn StdError + 'static) = inner;
            out.extend(chain(inner));
            return out;
        }
        next = current.source();
    }
    out
}

/// The innermost message: usually the most specific one.
fn deepest(links: &[&(dyn StdError + 'static)]) -> String {
    links
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "unknown error".to_string())
}

/// The chain's messages, without the repetitions that wrapping produces.
fn causes(links: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for link in links {
        let text = link.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Names the certificate problem in plain words.
pub(crate) fn describe_tls(error: &rustls::Error, host: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => describe_certificate(cert, host),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake (TLS alert: {alert:?})")
        }
        rustls::Error::General(text) => text.clone(),
        other => other.to_string(),
    }
}

fn describe_certificate(error: &CertificateError, host: &str) -> String {
    const TRUST_HINT: &str =
        "set `ca_cert` to the CA's PEM file to trust it, or `insecure: true` to skip verification";
    match error {
        CertificateError::UnknownIssuer => format!(
            "certificate not trusted: unknown issuer (self-signed or signed by a CA this machine does not trust); {TRUST_HINT}"
        ),
        CertificateError::Expired => "certificate has expired".to_string(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!(
                "certificate has expired (not valid after {})",
                unix_time(not_after)
            )
        }
        CertificateError::NotValidYet => "certificate is not valid yet".to_string(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate is not valid yet (not valid before {}); check the clocks",
            unix_time(not_before)
        ),
        CertificateError::NotValidForName => {
            format!("certificate hostname mismatch: it is not valid for `{host}`")
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "certificate hostname mismatch: it is not valid for `{host}` (it is for {})",
            if presented.is_empty() {
                "no names".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::Revoked => "certificate has been revoked".to_string(),
        CertificateError::BadSignature => {
            "certificate has a bad signature (not signed by its issuer's key)".to_string()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "certificate is not meant for TLS servers (wrong extended key usage)".to_string()
        }
        CertificateError::BadEncoding => "certificate is malformed".to_string(),
        // webpki's reason arrives wrapped; matched by name, since the
        // wrapper hides its type.
        CertificateError::Other(reason) if format!("{reason:?}").contains("CaUsedAsEndEntity") => {
            "certificate not trusted: the server presents a CA certificate as its own, as a self-signed test certificate (`openssl req -x509`) is; set `ca_cert` to that certificate's PEM file to trust it, or `insecure: true` to skip verification".to_string()
        }
        // rustls adds variants over time; its own words are a fine fallback.
        other => format!(
            "certificate rejected: {}",
            rustls::Error::InvalidCertificate(other.clone())
        ),
    }
}

fn unix_time(time: &rustls::pki_types::UnixTime) -> String {
    let seconds = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{seconds} seconds after 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_are_named() {
        let unknown = describe_tls(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "db.internal",
        );
        assert!(unknown.contains("unknown issuer"), "{unknown}");
        let expired = describe_tls(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            "db.internal",
        );
        assert!(expired.contains("expired"), "{expired}");
        let name = describe_tls(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "db.internal",
        );
        assert!(
            name.contains("hostname mismatch") && name.contains("db.internal"),
            "{name}"
        );
    }

    #[test]
    fn chain_looks_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let links = chain(&io);
        assert!(
            links
                .iter()
                .any(|e| e.downcast_ref::<rustls::Error>().is_some())
        );
    }
}
