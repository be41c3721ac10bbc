//! A 200 MB response must not grow the process: the executor keeps at most
//! 1 MiB and stops reading. Its own test binary, so no other test's
//! allocations move the memory high-water mark.

mod support;

use runbook_engine::StepExecutor;
use runbook_step_http::{BODY_LIMIT, HttpCheckExecutor};
use serde_json::json;
use support::{context, start, step, succeeded};

/// The process's peak resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test]
async fn a_huge_body_is_capped_and_memory_stays_bounded() {
    let server = start().await;
    let check = step(&format!(
        "url: {}\nexpect:\n  body_contains: xxxx",
        server.url("/huge")
    ));
    let (ctx, mut messages) = context().build();
    let before = peak_rss_kib();
    let outputs = succeeded(HttpCheckExecutor::new().run(&check, &ctx).await);
    let after = peak_rss_kib();

    let body = outputs["body"].as_str().expect("body is text");
    assert_eq!(body.len(), BODY_LIMIT);
    assert_eq!(outputs["json"], json!(null));
    // Generous: the whole body would be 200 MB; a capped read needs a few MB.
    let grown_mib = (after.saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB while reading a {} MB body",
        support::HUGE_BYTES / (1024 * 1024)
    );

    let mut notes = Vec::new();
    while let Ok(message) = messages.try_recv() {
        notes.push(format!("{message:?}"));
    }
    assert!(
        notes.iter().any(|n| n.contains("larger than 1 MiB")),
        "no truncation note in {notes:?}"
    );
}
