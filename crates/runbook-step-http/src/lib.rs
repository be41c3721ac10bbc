//! The `http-check` step kind: one HTTP request per attempt, checked against
//! the step's expectations.
//!
//! An attempt goes: render every template (`request`), register credential
//! headers as secrets, pick a client for the step's TLS settings
//! (`client`), send, following redirects hop by hop (`redirect`), read at
//! most 1 MiB of the body (`response`), check
//! every expectation (`expect`). Transport failures are described in
//! operator terms (`error`). Outputs are kept on failure too: a failing
//! check's status and body are data for the next step.
//!
//! Retries and the attempt's deadline belong to the engine; this crate runs
//! one attempt and stops when [`StepContext::cancelled`] fires. It also hands
//! the attempt's timeout to reqwest, so a slow server yields "timed out after
//! 30s" rather than a bare cancellation.

mod client;
mod error;
mod expect;
mod redirect;
mod request;
mod response;

use async_trait::async_trait;
use runbook_engine::{Outputs, StepContext, StepExecutor, StepFailure, StepOutcome};
use runbook_model::{Step, StepKind};
use serde_json::Value;
use std::time::Instant;

pub use response::BODY_LIMIT;

/// The shortest value of a credential header in a response that is masked
/// as a secret; a session id or token is far longer.
const SERVER_CREDENTIAL_MIN_CHARS: usize = 12;

/// Runs `type: http-check` steps.
///
/// Holds one HTTP client per distinct TLS setting (system trust, system
/// trust plus a `ca_cert` file, `insecure`), so steps and retries reuse
/// connections. Share one executor across a run.
#[derive(Default)]
pub struct HttpCheckExecutor {
    clients: client::Clients,
}

impl HttpCheckExecutor {
    /// An executor with no clients yet; each is built on first use.
    pub fn new() -> Self {
        Self::default()
    }

    async fn attempt(&self, request: request::Request, ctx: &StepContext) -> StepOutcome {
        let client = match request
            .tls_settings()
            .and_then(|settings| self.clients.get(&settings))
        {
            Ok(client) => client,
            Err(error) => return failed(ctx, error.to_string(), Outputs::new()),
        };
        let mut hop = redirect::Hop {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            written: true,
        };
        let mut redirects = 0;
        let started = Instant::now();
        // Redirects are followed here, hop by hop (see `redirect`), within
        // the attempt's one timeout.
        let mut response = loop {
            // A hop a `Location` named is shown without the credentials or
            // query it may carry, which no secret of the run matches.
            let shown = hop.shown_url();
            let target = error::Target {
                url: &shown,
                timeout: ctx.timeout(),
            };
            let left = ctx.timeout().saturating_sub(started.elapsed());
            let mut builder = client
                .request(hop.method.clone(), hop.url.clone())
                .headers(hop.headers.clone())
                .timeout(left);
            if let Some(body) = &hop.body {
                builder = builder.body(body.clone());
            }
            let sent = if left.is_zero() {
                Err(error::RequestError::TimedOut {
                    url: shown.to_string(),
                    after: runbook_engine::format_duration(ctx.timeout()),
                })
            } else {
                builder
                    .send()
                    .await
                    .map_err(|e| error::describe_send(&e, &target))
            };
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    let message = after_redirects(e.to_string(), redirects, &request.url);
                    return failed(ctx, message, Outputs::new());
                }
            };
            match hop.redirected(response.status(), response.headers()) {
                Ok(None) => break response,
                Ok(Some(_)) if redirects == redirect::MAX_REDIRECTS => {
                    let message = error::RequestError::TooManyRedirects {
                        url: request.url.to_string(),
                    };
                    return failed(ctx, message.to_string(), Outputs::new());
                }
                Ok(Some(next)) => {
                    redirects += 1;
                    hop = next;
                }
                Err(e) => {
                    let message = after_redirects(e.to_string(), redirects, &request.url);
                    return failed(ctx, message, Outputs::new());
                }
            }
        };
        let shown = hop.shown_url();
        let target = error::Target {
            url: &shown,
            timeout: ctx.timeout(),
        };
        let latency = started.elapsed();
        let status = response.status().as_u16();
        let headers = response::headers_json(response.headers());
        // Credentials the server sends back (a session token, `Set-Cookie`)
        // are masked like the ones we send: everywhere, from now on. Short
        // values are not credentials: a cache's `X-Cache-Key: true` or a
        // cookie holding `us-east-1`, masked everywhere, garbled the record.
        let mut add_credential = |secret: &str| {
            if secret.chars().count() >= SERVER_CREDENTIAL_MIN_CHARS {
                ctx.add_secret(secret);
            }
        };
        for (name, value) in response.headers() {
            if runbook_model::is_credential_header(name.as_str()) || name == "set-cookie" {
                request::register_secret(
                    &mut add_credential,
                    name.as_str(),
                    &String::from_utf8_lossy(value.as_bytes()),
                );
            }
        }
        let (body, read_error) = response::read_body(&mut response, BODY_LIMIT).await;
        // Dropping the response closes a connection whose body was cut
        // short, instead of downloading the rest.
        drop(response);

        let raw = body.text();
        // A limit cuts the body anywhere, a secret's beginning included.
        let text = if body.truncated {
            ctx.redact_cut_end(&raw)
        } else {
            raw.clone()
        };
        let json = response::body_json(&body);
        if body.truncated {
            ctx.progress("the response body is larger than 1 MiB; only the first 1 MiB was read");
        }
        // Where a redirect led, without its `user:password@` or query: a
        // server's `Location` may carry credentials or a signed URL that
        // no secret of the run matches.
        let redirected = match redirects {
            0 => String::new(),
            1 => format!(" (redirected to {shown})"),
            n => format!(" ({n} redirects, to {shown})"),
        };
        ctx.progress(&ctx.redact(&format!(
            "{} {} -> {} in {} ms{redirected}",
            request.method,
            request.url,
            status,
            latency.as_millis()
        )));

        let mut outputs = Outputs::new();
        outputs.insert("status".into(), Value::from(status));
        outputs.insert("headers".into(), headers);
        outputs.insert("body".into(), Value::String(text.clone()));
        outputs.insert("json".into(), json.clone());
        outputs.insert(
            "latency_ms".into(),
            Value::from(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
        );
        // Outputs stay as received, as a shell step's do: a later step may
        // need the token a login returned. The engine masks every secret
        // (the credential headers registered above included) wherever an
        // output is printed or stored, and names the outputs it masked
        // (`masked_outputs`) so that a resume does not hand out `***`.

        if let Some(e) = read_error {
            let message = error::describe_body(&e, &target).to_string();
            return failed(ctx, message, outputs);
        }
        let failures = expect::check(
            &request.expect,
            &expect::Seen {
                status,
                body: &raw,
                truncated: body.truncated,
                json: &json,
                latency,
            },
            &|text| ctx.redact(text),
        );
        if failures.is_empty() {
            StepOutcome::Succeeded(outputs)
        } else {
            // The response checked is the last hop's: say which, or a 503
            // reads as the step's own URL failing.
            failed(ctx, format!("{}{redirected}", failures.join("; ")), outputs)
        }
    }
}

#[async_trait]
impl StepExecutor for HttpCheckExecutor {
    fn kind(&self) -> &'static str {
        "http-check"
    }

    fn secrets_in(&self, step: &Step) -> Vec<String> {
        match &step.kind {
            StepKind::HttpCheck(http) => request::secrets_written_in(http),
            StepKind::Shell(_) | StepKind::KubectlAction(_) | StepKind::Gate(_) => Vec::new(),
        }
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        let http = match &step.kind {
            StepKind::HttpCheck(http) => http,
            StepKind::Shell(_) | StepKind::KubectlAction(_) | StepKind::Gate(_) => {
                return StepOutcome::Failed(StepFailure::new(format!(
                    "step `{}` is a `{}` step, not `http-check`",
                    step.id.value,
                    step.kind.type_name()
                )));
            }
        };
        let request = match request::render(http, ctx) {
            Ok(request) => request,
            Err(failure) => return failed(ctx, failure.message, failure.outputs),
        };
        if ctx.dry_run() && !request.is_read_only() {
            return StepOutcome::WouldRun(ctx.redact(&request.describe()));
        }
        let cancel = ctx.cancelled().clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => StepOutcome::Failed(StepFailure::new(
                "cancelled before the response was complete",
            )),
            outcome = self.attempt(request, ctx) => outcome,
        }
    }
}

/// `message` about a hop, saying where the chain started when it is not
/// the step's own URL.
fn after_redirects(message: String, redirects: usize, first: &reqwest::Url) -> String {
    match redirects {
        0 => message,
        1 => format!("{message} (after a redirect from {first})"),
        n => format!("{message} (after {n} redirects from {first})"),
    }
}

fn failed(ctx: &StepContext, message: String, outputs: Outputs) -> StepOutcome {
    StepOutcome::Failed(StepFailure::with_outputs(ctx.redact(&message), outputs))
}
