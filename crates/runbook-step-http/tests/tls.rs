//! HTTPS checks against a real TLS server on 127.0.0.1 whose certificates
//! are made by the test: trusted only through `ca_cert`, or skipped with
//! `insecure`, and the certificate problems an operator meets (unknown
//! issuer, expiry, wrong host name) named in the failure.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use runbook_engine::StepExecutor;
use runbook_step_http::HttpCheckExecutor;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use support::{context, failed, step, succeeded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer, pki_types::PrivatePkcs8KeyDer};

/// A test CA, and the PEM file that trusts it.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem_file: tempfile::NamedTempFile,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "runbook test CA");
    let key = KeyPair::generate().expect("CA key");
    let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
    let pem_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(pem_file.path(), issuer.pem()).expect("write CA PEM");
    Ca { issuer, pem_file }
}

/// A server certificate's parameters for `names`, valid now or expired
/// since 2021.
fn server_params(names: &[&str], expired: bool) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("server certificate params");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("server"),
    );
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    params
}

/// Starts an HTTPS server presenting a certificate for `names` signed by
/// `ca`, valid or already expired. It answers every request with `secure ok`.
async fn https_server(ca: &Ca, names: &[&str], expired: bool) -> SocketAddr {
    let params = server_params(names, expired);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params
        .signed_by(&key, &*ca.issuer)
        .expect("leaf certificate");
    serve(cert.der().clone(), &key).await
}

/// A certificate as `openssl req -x509 -addext subjectAltName=...` makes
/// one for a test server: self-signed, and marked as a CA. Returns the
/// server and the PEM file holding the certificate.
async fn self_signed_server(
    names: &[&str],
    expired: bool,
) -> (SocketAddr, tempfile::NamedTempFile) {
    let mut params = server_params(names, expired);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let pem_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(pem_file.path(), cert.pem()).expect("write PEM");
    (serve(cert.der().clone(), &key).await, pem_file)
}

/// Serves `secure ok` over TLS with `certificate`.
async fn serve(
    certificate: rustls::pki_types::CertificateDer<'static>,
    key: &KeyPair,
) -> SocketAddr {
    let chain = vec![certificate];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake is what several tests expect.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nsecure ok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_untrusted_certificate_fails_naming_the_problem() {
    let ca = ca();
    let addr = https_server(&ca, &["127.0.0.1", "localhost"], false).await;
    let (ctx, _messages) = context().build();
    let failure = failed(
        HttpCheckExecutor::new()
            .run(&step(&format!("url: https://{addr}/healthz")), &ctx)
            .await,
    );
    assert!(
        failure.message.starts_with(&format!(
            "TLS handshake with {addr} failed: certificate not trusted: unknown issuer"
        )),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("ca_cert"), "{}", failure.message);
}

#[tokio::test]
async fn ca_cert_adds_trust() {
    let ca = ca();
    let addr = https_server(&ca, &["127.0.0.1", "localhost"], false).await;
    let (ctx, _messages) = context().build();
    let fields = format!(
        "url: https://{addr}/healthz\nca_cert: {}\nexpect:\n  body_contains: secure ok",
        ca.pem_file.path().display()
    );
    let outputs = succeeded(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    assert_eq!(outputs["status"], json!(200));
    assert_eq!(outputs["body"], json!("secure ok"));
}

/// `curl --cacert cert.pem` trusts a server presenting that certificate;
/// so does `ca_cert`, with its host name and dates still checked.
#[tokio::test]
async fn a_self_signed_certificate_named_in_ca_cert_is_trusted() {
    let (ctx, _messages) = context().build();
    let check = |addr: SocketAddr, pem: &tempfile::NamedTempFile| {
        step(&format!(
            "url: https://{addr}/healthz\nca_cert: {}",
            pem.path().display()
        ))
    };
    let (addr, pem) = self_signed_server(&["127.0.0.1", "localhost"], false).await;
    let outputs = succeeded(HttpCheckExecutor::new().run(&check(addr, &pem), &ctx).await);
    assert_eq!(outputs["body"], json!("secure ok"));

    let (addr, pem) = self_signed_server(&["db.internal.example"], false).await;
    let failure = failed(HttpCheckExecutor::new().run(&check(addr, &pem), &ctx).await);
    assert!(
        failure.message.contains("hostname mismatch"),
        "{}",
        failure.message
    );

    let (addr, pem) = self_signed_server(&["127.0.0.1"], true).await;
    let failure = failed(HttpCheckExecutor::new().run(&check(addr, &pem), &ctx).await);
    assert!(failure.message.contains("expired"), "{}", failure.message);

    // Named nowhere, it is still refused.
    let (addr, _pem) = self_signed_server(&["127.0.0.1"], false).await;
    let failure = failed(
        HttpCheckExecutor::new()
            .run(&step(&format!("url: https://{addr}/healthz")), &ctx)
            .await,
    );
    assert!(
        failure.message.contains("TLS handshake"),
        "{}",
        failure.message
    );
    // Another self-signed certificate in `ca_cert` says what is wrong.
    let (_, other) = self_signed_server(&["127.0.0.1"], false).await;
    let failure = failed(
        HttpCheckExecutor::new()
            .run(&check(addr, &other), &ctx)
            .await,
    );
    assert!(
        failure
            .message
            .contains("the server presents a CA certificate as its own"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn insecure_skips_verification() {
    let ca = ca();
    let addr = https_server(&ca, &["127.0.0.1"], false).await;
    let (ctx, _messages) = context().build();
    let outputs = succeeded(
        HttpCheckExecutor::new()
            .run(
                &step(&format!("url: https://{addr}/\ninsecure: true")),
                &ctx,
            )
            .await,
    );
    assert_eq!(outputs["body"], json!("secure ok"));
}

#[tokio::test]
async fn insecure_can_be_templated() {
    let ca = ca();
    let addr = https_server(&ca, &["127.0.0.1"], false).await;
    let (ctx, _messages) = context().build();
    let fields = format!("url: https://{addr}/\ninsecure: '{{{{eq params.service \"omendb\"}}}}'");
    succeeded(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
}

#[tokio::test]
async fn an_expired_certificate_says_expired() {
    let ca = ca();
    let addr = https_server(&ca, &["127.0.0.1"], true).await;
    let (ctx, _messages) = context().build();
    let fields = format!(
        "url: https://{addr}/\nca_cert: {}",
        ca.pem_file.path().display()
    );
    let failure = failed(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    assert!(
        failure.message.starts_with(&format!(
            "TLS handshake with {addr} failed: certificate has expired"
        )),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("2021-01-01"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_says_hostname_mismatch() {
    let ca = ca();
    let addr = https_server(&ca, &["db.internal.example"], false).await;
    let (ctx, _messages) = context().build();
    let fields = format!(
        "url: https://{addr}/\nca_cert: {}",
        ca.pem_file.path().display()
    );
    let failure = failed(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    assert!(
        failure.message.contains("certificate hostname mismatch")
            && failure.message.contains("`127.0.0.1`")
            && failure.message.contains("db.internal.example"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_missing_ca_cert_file_is_reported() {
    let (ctx, _messages) = context().build();
    let failure = failed(
        HttpCheckExecutor::new()
            .run(
                &step("url: https://127.0.0.1:1/\nca_cert: /nonexistent/ca.pem"),
                &ctx,
            )
            .await,
    );
    assert!(
        failure
            .message
            .starts_with("cannot read `ca_cert` file `/nonexistent/ca.pem`"),
        "{}",
        failure.message
    );
}
