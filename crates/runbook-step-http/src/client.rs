//! HTTP clients and their TLS settings.
//!
//! TLS is rustls with the `ring` provider, handed to reqwest as a finished
//! `ClientConfig`: reqwest's own rustls path would ask for a process-wide
//! default provider, and installing one is a global side effect a library
//! should not have. Certificates are checked by the platform verifier (the
//! system's CA store on Linux), plus the step's `ca_cert` when it has one.
//!
//! Clients are cached by their TLS settings so that steps with the same
//! settings share connections (a health check polled by retries reuses its
//! keep-alive connection).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What decides which client a step needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TlsSettings {
    /// The system's trusted CAs.
    Platform,
    /// The system's trusted CAs plus the certificates of a PEM file. The
    /// file's contents are part of the key, so a rotated file is picked up.
    ExtraRoots {
        /// Where the PEM came from (for messages).
        path: PathBuf,
        /// The PEM text.
        pem: Vec<u8>,
    },
    /// No certificate verification at all (`insecure: true`).
    Insecure,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// `ca_cert` could not be read.
    #[error(
        "cannot read `ca_cert` file `{path}`: {}",
        runbook_model::io_error_words(source)
    )]
    ReadCaCert {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `ca_cert` holds no usable certificate.
    #[error(
        "`ca_cert` file `{path}` has no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// `ca_cert` holds a certificate that cannot be parsed.
    #[error("`ca_cert` file `{path}` is not a valid PEM certificate file: {detail}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// rustls or reqwest refused the configuration.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// Builds and caches clients, one per distinct [`TlsSettings`].
#[derive(Default)]
pub(crate) struct Clients {
    cache: Mutex<HashMap<TlsSettings, reqwest::Client>>,
}

impl Clients {
    /// The client for `settings`, built on first use.
    pub(crate) fn get(&self, settings: &TlsSettings) -> Result<reqwest::Client, ClientError> {
        let mut cache = match self.cache.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(client) = cache.get(settings) {
            return Ok(client.clone());
        }
        let client = build_client(settings)?;
        cache.insert(settings.clone(), client.clone());
        Ok(client)
    }
}

/// A CA bundle is kilobytes; the system's whole store is under 1 MiB.
const CA_CERT_LIMIT: u64 = 16 << 20;

/// Reads the `ca_cert` file into settings (read per attempt: it is small,
/// and an operator who fixes the file between retries expects it to count).
pub(crate) fn settings_for(
    insecure: bool,
    ca_cert: Option<&Path>,
) -> Result<TlsSettings, ClientError> {
    if insecure {
        // Verification is off, so extra trust would change nothing; not
        // reading the file keeps a stale path from failing an insecure check.
        return Ok(TlsSettings::Insecure);
    }
    match ca_cert {
        None => Ok(TlsSettings::Platform),
        Some(path) => {
            let pem = runbook_model::read_regular_file(path, CA_CERT_LIMIT).map_err(|source| {
                ClientError::ReadCaCert {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            Ok(TlsSettings::ExtraRoots {
                path: path.to_path_buf(),
                pem,
            })
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build_client(settings: &TlsSettings) -> Result<reqwest::Client, ClientError> {
    let tls = tls_config(settings)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // The executor follows redirects itself (`redirect`), and sends no
        // `Referer`: it would carry the first URL's query to the next host.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(concat!(
            "runbook/",
            env!("CARGO_PKG_VERSION"),
            " (http-check)"
        ))
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))
}

fn tls_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = match settings {
        TlsSettings::Insecure => Arc::new(FixedVerdict {
            refusal: None,
            algorithms: provider.signature_verification_algorithms,
        }),
        TlsSettings::Platform => match rustls_platform_verifier::Verifier::new(provider.clone()) {
            Ok(verifier) => Arc::new(verifier),
            // A machine without a CA bundle can still make plain-HTTP checks;
            // HTTPS then fails with this explanation instead of a bare
            // "unknown issuer".
            Err(error) => Arc::new(FixedVerdict {
                refusal: Some(format!(
                    "no trusted CA certificates are available ({error}); install the system CA bundle or set `ca_cert`"
                )),
                algorithms: provider.signature_verification_algorithms,
            }),
        },
        TlsSettings::ExtraRoots { path, pem } => {
            let certs = parse_pem(path, pem)?;
            let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                certs.clone(),
                provider.clone(),
            )
            .map_err(|e| ClientError::BadCertificate {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            Arc::new(Pinned {
                verifier: Arc::new(verifier),
                pinned: certs,
            })
        }
    };
    let mut config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // reqwest leaves ALPN to whoever built the config.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn parse_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::BadCertificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The verifier for a step's `ca_cert`, which also trusts a server that
/// presents one of those very certificates, as `curl --cacert` does. A
/// self-signed test certificate (`openssl req -x509`) is marked as a CA,
/// and a CA certificate may not also be a server's by the rules the
/// ordinary verifier follows; but the operator named it to be trusted, so
/// it is, as long as it names the host and is within its dates.
#[derive(Debug)]
struct Pinned {
    verifier: Arc<dyn ServerCertVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl Pinned {
    fn check(
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError;
        let parsed = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        parsed
            .verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        let (_, certificate) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let at = x509_parser::time::ASN1Time::from_timestamp(seconds)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::Expired))?;
        let validity = certificate.validity();
        if at < validity.not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if at > validity.not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(refusal)
                if self
                    .pinned
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                // The pinned certificate's own checks decide; if those fail
                // too, the more specific of the two reasons is given.
                Self::check(end_entity, server_name, now).map_err(|pinned| match pinned {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
                        refusal
                    }
                    other => other,
                })
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// A verifier whose verdict on certificates is decided up front: with no
/// refusal it accepts any certificate (`insecure: true`); with one it refuses
/// every certificate with that reason (no CA store on this system). Either
/// way handshake signatures are still checked, which costs nothing and keeps
/// the connection bound to the key of the certificate the server showed.
#[derive(Debug)]
struct FixedVerdict {
    refusal: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for FixedVerdict {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(reason) => Err(rustls::Error::General(reason.clone())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shared_per_settings() {
        let clients = Clients::default();
        clients
            .get(&TlsSettings::Platform)
            .expect("platform client");
        clients
            .get(&TlsSettings::Platform)
            .expect("platform client again");
        clients
            .get(&TlsSettings::Insecure)
            .expect("insecure client");
        let cache = clients.cache.lock().expect("lock");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_file_without_certificates_is_reported() {
        let error = parse_pem(Path::new("ca.pem"), b"hello\n").expect_err("no certificate");
        assert!(
            error.to_string().contains("has no PEM certificate"),
            "{error}"
        );
    }

    #[test]
    fn insecure_does_not_read_ca_cert() {
        let settings =
            settings_for(true, Some(Path::new("/nonexistent/ca.pem"))).expect("insecure");
        assert_eq!(settings, TlsSettings::Insecure);
        let error =
            settings_for(false, Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(
            error.to_string().contains("cannot read `ca_cert` file"),
            "{error}"
        );
    }
}
