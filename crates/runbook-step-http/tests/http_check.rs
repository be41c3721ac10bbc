//! The http-check executor against a real HTTP server on 127.0.0.1.

mod support;

use runbook_engine::{Redactor, StepExecutor, StepOutcome};
use runbook_step_http::HttpCheckExecutor;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{context, failed, start, step, succeeded};
use tokio_util::sync::CancellationToken;

async fn run(fields: &str) -> StepOutcome {
    let (ctx, _messages) = context().build();
    HttpCheckExecutor::new().run(&step(fields), &ctx).await
}

#[tokio::test]
async fn outputs_have_exactly_the_documented_names() {
    let server = start().await;
    let check = step(&format!("url: {}", server.url("/ok")));
    let (ctx, _messages) = context().build();
    let outputs = succeeded(HttpCheckExecutor::new().run(&check, &ctx).await);
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    assert_eq!(names, check.kind.output_names());
    assert_eq!(outputs["status"], json!(200));
    assert_eq!(outputs["json"]["status"], json!("ok"));
    assert_eq!(
        outputs["headers"]["content-type"],
        json!("application/json")
    );
    assert!(
        outputs["latency_ms"].is_u64(),
        "{:?}",
        outputs["latency_ms"]
    );
    assert!(
        outputs["body"]
            .as_str()
            .is_some_and(|b| b.contains("\"version\":\"1.2.3\""))
    );
}

#[tokio::test]
async fn a_non_json_body_gives_null_json() {
    let server = start().await;
    let outputs = succeeded(run(&format!("url: {}", server.url("/metrics"))).await);
    assert_eq!(outputs["json"], json!(null));
    assert_eq!(
        outputs["body"],
        json!("omendb_up 1\nomendb_queries_total 42\n")
    );
}

#[tokio::test]
async fn repeated_response_headers_are_joined() {
    let server = start().await;
    let outputs = succeeded(run(&format!("url: {}", server.url("/multi"))).await);
    assert_eq!(outputs["headers"]["x-multi"], json!("a, b"));
}

#[tokio::test]
async fn default_status_expectation_fails_on_503_and_quotes_the_body() {
    let server = start().await;
    let failure = failed(run(&format!("url: {}", server.url("/status/503"))).await);
    assert_eq!(
        failure.message,
        "expected status 2xx, got 503 (body: `status 503 Service Unavailable`)"
    );
    // Outputs survive a failed check: the next step can read them.
    assert_eq!(failure.outputs["status"], json!(503));
    assert_eq!(
        failure.outputs["body"],
        json!("status 503 Service Unavailable")
    );
}

#[tokio::test]
async fn status_codes_lists_and_classes() {
    let server = start().await;
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  status: [200, 204]",
            server.url("/status/204")
        ))
        .await,
    );
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  status: 4xx",
            server.url("/status/404")
        ))
        .await,
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  status: 404",
            server.url("/ok")
        ))
        .await,
    );
    assert!(
        failure
            .message
            .starts_with("expected status 404, got 200 (body: `{\"status\":\"ok\""),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn body_contains_passes_and_lists_every_missing_text() {
    let server = start().await;
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  body_contains: [omendb_up, omendb_queries_total]",
            server.url("/metrics")
        ))
        .await,
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  body_contains: [omendb_up, omendb_wal_bytes, omendb_cache_hits]",
            server.url("/metrics")
        ))
        .await,
    );
    assert_eq!(
        failure.message,
        "body does not contain `omendb_wal_bytes` (body: `omendb_up 1 omendb_queries_total 42`); body does not contain `omendb_cache_hits`"
    );
}

#[tokio::test]
async fn body_matches_searches_anywhere() {
    let server = start().await;
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  body_matches: 'queries_total \\d+'",
            server.url("/metrics")
        ))
        .await,
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  body_matches: 'omendb_up 0'",
            server.url("/metrics")
        ))
        .await,
    );
    assert_eq!(
        failure.message,
        "body does not match `omendb_up 0` (body: `omendb_up 1 omendb_queries_total 42`)"
    );
}

#[tokio::test]
async fn json_expectations_show_pointer_expected_and_actual() {
    let server = start().await;
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  json:\n    /status: ok\n    /count: 3\n    /replicas: '{{{{params.replicas}}}}'",
            server.url("/ok")
        ))
        .await,
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  json:\n    /status: degraded\n    /version: 1.2.3\n    /leader: true",
            server.url("/ok")
        ))
        .await,
    );
    assert_eq!(
        failure.message,
        "/status: expected \"degraded\", got \"ok\"; /leader: not present in the response JSON (expected true)"
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  json:\n    /status: ok",
            server.url("/metrics")
        ))
        .await,
    );
    assert_eq!(
        failure.message,
        "body is not JSON (expected value at line 1 column 1), so `expect.json` (/status) cannot be checked (body: `omendb_up 1 omendb_queries_total 42`)"
    );
}

#[tokio::test]
async fn all_failed_expectations_are_listed_together() {
    let server = start().await;
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  body_contains: omendb_\n  body_matches: '^ready$'",
            server.url("/status/503")
        ))
        .await,
    );
    assert_eq!(
        failure.message,
        "expected status 2xx, got 503 (body: `status 503 Service Unavailable`); body does not contain `omendb_`; body does not match `^ready$`"
    );
}

#[tokio::test]
async fn status_and_max_latency_can_be_templated() {
    let server = start().await;
    let outputs = succeeded(
        run(&format!(
            "url: {}\nexpect:\n  status: '{{{{#if run.dry_run}}}}500{{{{else}}}}200, 204{{{{/if}}}}'\n  max_latency: '{{{{params.replicas}}}}s'",
            server.url("/ok")
        ))
        .await,
    );
    assert_eq!(outputs["status"], json!(200));
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  status: '{{{{params.replicas}}}}xx'",
            server.url("/ok")
        ))
        .await,
    );
    assert!(
        failure.message.starts_with("expected status 3xx, got 200"),
        "{}",
        failure.message
    );
    let failure = failed(
        run(&format!(
            // Not a bare `{{params.X}}`, which `validate` would check.
            "url: {}\nexpect:\n  status: '{{{{lower params.service}}}}'",
            server.url("/ok")
        ))
        .await,
    );
    assert!(
        failure
            .message
            .contains("rendered to `omendb`, which is not a status code"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn max_latency_passes_and_fails() {
    let server = start().await;
    succeeded(
        run(&format!(
            "url: {}\nexpect:\n  max_latency: 30s",
            server.url("/ok")
        ))
        .await,
    );
    let failure = failed(
        run(&format!(
            "url: {}\nexpect:\n  max_latency: 100ms",
            server.url("/slow?ms=400")
        ))
        .await,
    );
    assert!(
        failure.message.starts_with("response took ")
            && failure
                .message
                .ends_with(" ms, more than max_latency 100ms"),
        "{}",
        failure.message
    );
    let latency = failure.outputs["latency_ms"].as_u64().expect("latency_ms");
    assert!(
        latency >= 400,
        "latency {latency} ms below the server's delay"
    );
}

#[tokio::test]
async fn attempts_are_independent_across_a_flaky_server() {
    let server = start().await;
    let executor = HttpCheckExecutor::new();
    let check = step(&format!(
        "url: {}\nexpect:\n  body_contains: ready",
        server.url("/flaky")
    ));
    let mut messages = Vec::new();
    let mut final_outputs = None;
    for _attempt in 1..=support::FLAKY_FAILURES + 1 {
        let (ctx, _rx) = context().build();
        match executor.run(&check, &ctx).await {
            StepOutcome::Failed(failure) => {
                assert_eq!(failure.outputs["status"], json!(503));
                messages.push(failure.message);
            }
            StepOutcome::Succeeded(outputs) => {
                final_outputs = Some(outputs);
                break;
            }
            StepOutcome::WouldRun(text) => panic!("not a dry run: {text}"),
        }
    }
    assert_eq!(
        messages,
        vec![
            "expected status 2xx, got 503 (body: `warming up (request 1)`); body does not contain `ready`",
            "expected status 2xx, got 503 (body: `warming up (request 2)`); body does not contain `ready`",
        ]
    );
    let outputs = final_outputs.expect("the third attempt succeeds");
    assert_eq!(outputs["status"], json!(200));
    assert_eq!(outputs["body"], json!("ready"));
    assert_eq!(server.state.flaky_hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn redirects_are_followed() {
    let server = start().await;
    let outputs = succeeded(run(&format!("url: {}", server.url("/redirect/3"))).await);
    assert_eq!(outputs["body"], json!("arrived"));
}

#[tokio::test]
async fn credential_headers_do_not_follow_a_redirect_to_another_origin() {
    let first = start().await;
    let other = start().await;
    let headers = "headers:\n  X-Api-Key: '{{params.api_key}}'\n  Authorization: Bearer abcdef123\n  X-Request-Id: r-17";
    // The same origin keeps them.
    let same = succeeded(
        run(&format!(
            "url: {}\n{headers}",
            first.url("/to?status=307&url=/echo")
        ))
        .await,
    );
    let seen = &same["json"]["headers"];
    assert_eq!(seen["x-api-key"], json!("k3y-from-params"), "{seen}");
    assert_eq!(seen["authorization"], json!("Bearer abcdef123"), "{seen}");
    // Another port is another origin: only the harmless header goes on,
    // and no `Referer` carries the first URL there.
    let elsewhere = succeeded(
        run(&format!(
            "url: {}\n{headers}",
            first.url(&format!("/to?status=307&url={}", other.url("/echo")))
        ))
        .await,
    );
    let seen = elsewhere["json"]["headers"]
        .as_object()
        .expect("the echo's headers");
    assert_eq!(seen.get("x-request-id"), Some(&json!("r-17")), "{seen:?}");
    for name in ["x-api-key", "authorization", "referer"] {
        assert!(
            !seen.contains_key(name),
            "{name} reached the other origin: {seen:?}"
        );
    }
    assert_eq!(other.state.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failure_after_a_redirect_names_the_hop_that_failed() {
    let server = start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let first = server.url(&format!("/to?url=http://127.0.0.1:{port}/x"));
    let failure = failed(run(&format!("url: {first}")).await);
    assert_eq!(
        failure.message,
        format!(
            "connection refused by 127.0.0.1:{port} (is the service listening?) (after a redirect from {first})"
        )
    );
    let file = failed(
        run(&format!(
            "url: {}",
            server.url("/to?url=file:///etc/passwd")
        ))
        .await,
    );
    assert_eq!(
        file.message,
        format!(
            "{} redirected (302) to file:///etc/passwd, which is not an http:// or https:// URL",
            server.url("/to?url=file:///etc/passwd")
        )
    );
}

/// Where a redirect led is said without the credentials or the query a
/// server's `Location` may carry, and a failed check says which hop's
/// response it judged.
#[tokio::test]
async fn where_a_redirect_led_is_said_without_its_credentials() {
    let server = start().await;
    let target = format!(
        "http://bob:L0cationPass@{}/status/503?sig=S1gnature",
        server.addr
    );
    let first = server.url(&format!("/to?url={target}"));
    let (ctx, mut messages) = context().build();
    let failure = failed(
        HttpCheckExecutor::new()
            .run(&step(&format!("url: '{first}'")), &ctx)
            .await,
    );
    let landed = server.url("/status/503");
    assert!(
        failure
            .message
            .ends_with(&format!(" (redirected to {landed})")),
        "{}",
        failure.message
    );
    drop(ctx);
    let mut said = Vec::new();
    while let Some(message) = messages.recv().await {
        if let runbook_engine::StepMessage::Progress { message, .. } = message {
            said.push(message);
        }
    }
    let said = said.join("\n");
    // (The step's own URL carries them here, as a query of its own.)
    let shown = said
        .split("(redirected to ")
        .nth(1)
        .expect("where the redirect led");
    assert_eq!(shown, format!("{landed})"), "{said}");
}

#[tokio::test]
async fn redirect_loops_say_too_many_redirects() {
    let server = start().await;
    let failure = failed(run(&format!("url: {}", server.url("/loop"))).await);
    assert_eq!(
        failure.message,
        format!(
            "too many redirects (more than 10) starting at {}",
            server.url("/loop")
        )
    );
}

#[tokio::test]
async fn post_json_is_templated_from_params_and_step_outputs() {
    let server = start().await;
    let fields = format!(
        "url: {}\nmethod: post\njson:\n  service: '{{{{params.service}}}}'\n  token: '{{{{steps.login.outputs.json.token}}}}'\n  replicas: 3\n  wanted: '{{{{params.replicas}}}}'\n  said: 'x{{{{params.replicas}}}}'\n  spaced: ' {{{{params.replicas}}}}'\n  login: '{{{{ steps.login.outputs.json }}}}'\n  tags: [prod, '{{{{upper params.service}}}}']\nexpect:\n  json:\n    /json/service: omendb\n    /method: POST",
        server.url("/echo")
    );
    let outputs = succeeded(run(&fields).await);
    let echoed = &outputs["json"];
    assert_eq!(echoed["method"], json!("POST"));
    assert_eq!(echoed["headers"]["content-type"], json!("application/json"));
    assert_eq!(
        echoed["json"],
        json!({
            "service": "omendb",
            "token": "t0ken-from-login",
            "replicas": 3,
            // A reference alone keeps its type; text around it makes text.
            "wanted": 3,
            "said": "x3",
            "spaced": " 3",
            "login": {"token": "t0ken-from-login"},
            "tags": ["prod", "OMENDB"]
        })
    );
}

#[tokio::test]
async fn a_text_body_is_sent_as_written() {
    let server = start().await;
    let fields = format!(
        "url: {}\nmethod: PUT\nheaders:\n  Content-Type: text/plain\nbody: 'scale {{{{params.service}}}} to {{{{params.replicas}}}}'",
        server.url("/echo")
    );
    let outputs = succeeded(run(&fields).await);
    assert_eq!(outputs["json"]["method"], json!("PUT"));
    assert_eq!(outputs["json"]["body"], json!("scale omendb to 3"));
    assert_eq!(
        outputs["json"]["headers"]["content-type"],
        json!("text/plain")
    );
}

/// What the engine prints or stores of a step's outputs: every secret the
/// redactor knows masked.
fn as_stored(redactor: &Redactor, outputs: &serde_json::Map<String, Value>) -> Value {
    let mut stored = Value::Object(outputs.clone());
    let _ = redactor.redact_json(&mut stored);
    stored
}

/// Credential headers never reach a message; the outputs keep what the
/// server sent (a later step may need it), and every place the engine
/// prints or stores them masks it, since the redactor learned them.
#[tokio::test]
async fn credential_headers_never_reach_messages_and_are_masked_wherever_outputs_are_stored() {
    let server = start().await;
    let redactor = Redactor::new();
    let fields = format!(
        "url: {}\nheaders:\n  Authorization: Bearer s3cr3t-bearer-value\n  X-Api-Key: '{{{{params.api_key}}}}-suffix'\n  Cookie: session=c00kie-value; theme=dark\n  X-Request-Id: visible-request-id\nexpect:\n  status: 418",
        server.url("/echo")
    );
    let (ctx, _messages) = context().redactor(redactor.clone()).build();
    let failure = failed(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    let stored = as_stored(&redactor, &failure.outputs);
    let everything = format!("{} {stored}", failure.message);
    for secret in [
        "s3cr3t-bearer-value",
        "k3y-from-params-suffix",
        "c00kie-value",
    ] {
        assert!(
            !everything.contains(secret),
            "`{secret}` leaked: {everything}"
        );
    }
    // The echo endpoint saw them; the outputs keep what came back, and the
    // stored form masks it.
    assert_eq!(
        failure.outputs["headers"]["x-echo-api-key"],
        json!("k3y-from-params-suffix")
    );
    assert_eq!(stored["headers"]["x-echo-api-key"], json!("***"));
    assert_eq!(stored["json"]["headers"]["authorization"], json!("***"));
    assert_eq!(
        stored["json"]["headers"]["x-request-id"],
        json!("visible-request-id")
    );
    assert!(failure.message.starts_with("expected status 418, got 200"));
    assert!(failure.message.contains("***"), "{}", failure.message);
    // The engine's redactor learned them, so events and the journal mask them too.
    assert_eq!(
        redactor.redact("Authorization: Bearer s3cr3t-bearer-value"),
        "Authorization: ***"
    );
    assert_eq!(redactor.redact("token s3cr3t-bearer-value"), "token ***");
}

#[tokio::test]
async fn credential_headers_from_the_server_are_masked_too() {
    let server = start().await;
    let redactor = Redactor::new();
    let fields = format!("url: {}\nmethod: POST", server.url("/login"));
    let (ctx, _messages) = context().redactor(redactor.clone()).build();
    let outputs = succeeded(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    assert_ne!(
        outputs["headers"]["set-cookie"],
        json!("***"),
        "kept as sent"
    );
    let stored = as_stored(&redactor, &outputs);
    let headers = &stored["headers"];
    assert_eq!(headers["x-session-token"], json!("***"));
    assert_eq!(headers["x-api-key"], json!("***"));
    assert_eq!(headers["set-cookie"], json!("***, ***"));
    assert_eq!(headers["x-request-id"], json!("visible-request-id"));
    // Too short to be a credential: masking it would mask every `true`.
    assert_eq!(headers["x-cache-key"], json!("true"));
    // By value, wherever it turns up: the body too, and later events.
    assert_eq!(
        stored["body"],
        json!("welcome, your token is ***, healthy: true, region us-east-1")
    );
    assert_eq!(redactor.redact("cookie c00kie-from-server"), "cookie ***");
}

/// Secrets cut in two by a limit (the excerpt of a body in an error, the
/// 1 MiB the `body` output keeps) leave no beginning of themselves behind.
#[tokio::test]
async fn a_secret_cut_by_a_limit_leaves_no_part_of_itself() {
    let server = start().await;
    let secret = "TOPSECRETPASSWORD1234";
    let redactor = Redactor::new();
    redactor.add(secret);
    let padding = "B".repeat(190);
    let fields = format!(
        "url: '{}?status=500&text={padding}{secret}'",
        server.url("/say")
    );
    let (ctx, _messages) = context().redactor(redactor.clone()).build();
    let failure = failed(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    assert!(
        !failure.message.contains(&secret[..4]),
        "{}",
        failure.message
    );

    let fields = format!(
        "url: '{}?off=10&s={secret}'\nexpect:\n  status: 200",
        server.url("/edge")
    );
    let outputs = succeeded(HttpCheckExecutor::new().run(&step(&fields), &ctx).await);
    let body = outputs["body"].as_str().expect("body");
    assert!(body.ends_with("A***"), "{}", &body[body.len() - 20..]);
}

/// A password in the URL travels as an `Authorization: Basic` header; the
/// password and that header's value are masked wherever they come back.
#[tokio::test]
async fn credentials_in_the_url_are_masked_like_an_authorization_header() {
    use base64::Engine as _;
    let server = start().await;
    let redactor = Redactor::new();
    let url = server
        .url("/echo")
        .replacen("http://", "http://admin:LiteralPw55@", 1);
    let (ctx, mut messages) = context().redactor(redactor.clone()).build();
    let outputs = succeeded(
        HttpCheckExecutor::new()
            .run(&step(&format!("url: '{url}'")), &ctx)
            .await,
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:LiteralPw55");
    let stored = as_stored(&redactor, &outputs);
    let everything = stored.to_string();
    assert!(!everything.contains(&basic), "{everything}");
    assert!(!everything.contains("LiteralPw55"), "{everything}");
    assert_eq!(stored["json"]["headers"]["authorization"], json!("***"));
    drop(ctx);
    while let Ok(message) = messages.try_recv() {
        let shown = format!("{message:?}");
        assert!(!shown.contains("LiteralPw55"), "{shown}");
    }
    assert_eq!(redactor.redact(&format!("Basic {basic}")), "***");
}

#[tokio::test]
async fn connection_refused_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let failure = failed(run(&format!("url: http://{addr}/healthz")).await);
    assert_eq!(
        failure.message,
        format!("connection refused by {addr} (is the service listening?)")
    );
    assert!(failure.outputs.is_empty());
}

#[tokio::test]
async fn dns_failures_name_the_host() {
    let check = step("url: http://no-such-host.invalid/healthz");
    let (ctx, _messages) = context().timeout(Duration::from_secs(20)).build();
    let failure = failed(HttpCheckExecutor::new().run(&check, &ctx).await);
    assert!(
        failure
            .message
            .starts_with("DNS lookup failed for host `no-such-host.invalid`"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_slow_server_times_out_with_the_duration() {
    let server = start().await;
    let check = step(&format!("url: {}", server.url("/slow?ms=5000")));
    let (ctx, _messages) = context().timeout(Duration::from_millis(300)).build();
    let started = Instant::now();
    let failure = failed(HttpCheckExecutor::new().run(&check, &ctx).await);
    assert_eq!(
        failure.message,
        format!(
            "no response from {}: timed out after 300ms",
            server.url("/slow?ms=5000")
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cancellation_stops_the_attempt_promptly() {
    let server = start().await;
    let check = step(&format!("url: {}", server.url("/slow?ms=10000")));
    let cancel = CancellationToken::new();
    let (ctx, _messages) = context().cancel(cancel.clone()).build();
    let trigger = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let failure = failed(HttpCheckExecutor::new().run(&check, &ctx).await);
    trigger.await.expect("trigger");
    assert_eq!(
        failure.message,
        "cancelled before the response was complete"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dry_run_reads_but_does_not_write() {
    let server = start().await;
    let (ctx, _messages) = context().dry_run(true).build();
    let executor = HttpCheckExecutor::new();
    let outputs = succeeded(
        executor
            .run(&step(&format!("url: {}", server.url("/ok"))), &ctx)
            .await,
    );
    assert_eq!(outputs["status"], json!(200));
    let hits_before = server.state.hits.load(Ordering::SeqCst);

    let post = step(&format!(
        "url: {}\nmethod: POST\njson:\n  replicas: '{{{{params.replicas}}}}'",
        server.url("/echo")
    ));
    match executor.run(&post, &ctx).await {
        StepOutcome::WouldRun(text) => {
            // `{"replicas":3}`: the reference keeps the param's type.
            assert_eq!(text, format!("POST {} (14-byte body)", server.url("/echo")))
        }
        other => panic!("expected WouldRun, got {other:?}"),
    }
    let delete = step(&format!("url: {}\nmethod: DELETE", server.url("/echo")));
    match executor.run(&delete, &ctx).await {
        StepOutcome::WouldRun(text) => assert_eq!(text, format!("DELETE {}", server.url("/echo"))),
        other => panic!("expected WouldRun, got {other:?}"),
    }
    assert_eq!(server.state.hits.load(Ordering::SeqCst), hits_before);
}

#[tokio::test]
async fn template_and_url_errors_fail_before_sending() {
    let failure = failed(
        run("url: 'http://127.0.0.1:1/{{params.service}}'\nmethod: 'GET {{params.service}}'").await,
    );
    assert!(failure.message.contains("`method`"), "{}", failure.message);
    // A literal one is refused by `validate`; a rendered one here.
    let failure = failed(run("url: 'ftp://127.0.0.1/{{params.service}}'").await);
    assert_eq!(
        failure.message,
        "`url` must be an http:// or https:// URL, got `ftp://127.0.0.1/omendb`"
    );
}

/// An expectation that rendered to nothing would pass any response.
#[tokio::test]
async fn a_body_expectation_that_renders_empty_fails_the_step() {
    let server = start().await;
    for (expect, says) in [
        (
            "body_contains: '{{#if false}}x{{/if}}'",
            "rendered to empty text, which every body contains",
        ),
        (
            "body_matches: '{{#if false}}x{{/if}}'",
            "rendered to an empty pattern, which every body matches",
        ),
    ] {
        let fields = format!("url: {}\nexpect:\n  {expect}", server.url("/echo"));
        let failure = failed(run(&fields).await);
        assert!(
            failure.message.contains(says),
            "{expect}: {}",
            failure.message
        );
    }
}
