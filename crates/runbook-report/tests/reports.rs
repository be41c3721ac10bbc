//! Reports built from the fixture journals in `tests/fixtures/` (fixed
//! timestamps): Markdown and JSON snapshots, and the facts a reviewer
//! relies on, checked one by one so a snapshot update cannot hide them.

use runbook_engine::RunDir;
use runbook_engine::{JournalContents, read_journal};
use runbook_report::{
    AttemptEnd, DecisionKind, Report, RunStatus, SessionEnd, StepStatus, build_report, load_report,
    render_html, render_json, render_markdown,
};
use std::path::{Path, PathBuf};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("tests/fixtures")
    .join(format!("{name}.jsonl"))
}

fn contents(name: &str) -> JournalContents {
    read_journal(&fixture_path(name)).expect("fixture journal reads")
}

fn run_id(contents: &JournalContents) -> String {
    contents
        .events
        .first()
        .map(|e| e.run_id.clone())
        .expect("fixture has events")
}

/// The report of a fixture whose engine is not running.
fn report(name: &str) -> Report {
    let contents = contents(name);
    build_report(&run_id(&contents), &contents, false)
}

fn step<'a>(report: &'a Report, id: &str) -> &'a runbook_report::StepReport {
    report
        .steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("step {id} in report"))
}

#[test]
fn snapshots_markdown_and_json() {
    for name in ["success", "failure", "resumed", "stopped"] {
        let report = report(name);
        insta::assert_snapshot!(format!("{name}_md"), render_markdown(&report));
        insta::assert_snapshot!(format!("{name}_json"), render_json(&report));
    }
}

#[test]
fn success_report_facts() {
    let r = report("success");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.duration_ms, Some(72_500));
    assert_eq!(r.params["webhook"], "***", "secret stays redacted");
    let gate = step(&r, "approve-restart");
    assert_eq!(gate.decisions.len(), 1);
    assert_eq!(gate.decisions[0].kind, DecisionKind::Gate);
    assert_eq!(gate.decisions[0].approved, Some(true));
    assert_eq!(
        gate.decisions[0].decided_by.as_deref(),
        Some("alice (terminal)")
    );
    assert!(gate.outputs.is_empty(), "a gate's outputs are its decision");
    let skipped = step(&r, "scale-up");
    assert_eq!(skipped.status, StepStatus::Skipped);
    assert!(
        skipped
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("false"))
    );
    let pods = step(&r, "pods");
    let names: Vec<_> = pods.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["items", "count", "pods"]);
    assert!(pods.outputs[2].text.contains("CrashLoopBackOff"));
    let md = render_markdown(&r);
    assert!(
        md.contains("| Started | 2026-11-26 20:30:00 UTC by alice@ops-laptop |"),
        "{md}"
    );
}

#[test]
fn failure_report_facts() {
    let r = report("failure");
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("approve-migrate"))
    );
    let check = step(&r, "check-replicas");
    assert_eq!(check.status, StepStatus::Failed);
    assert_eq!(check.attempts, Some(3));
    let ends: Vec<_> = check.attempt_log.iter().map(|a| a.end).collect();
    assert_eq!(
        ends,
        [
            AttemptEnd::Retried,
            AttemptEnd::Retried,
            AttemptEnd::Finished
        ]
    );
    assert!(
        check.attempt_log[1]
            .retry_reason
            .as_deref()
            .is_some_and(|r| r.contains("503"))
    );
    let gate = step(&r, "approve-migrate");
    assert_eq!(gate.decisions[0].approved, Some(false));
    assert_eq!(
        gate.decisions[0].decided_by.as_deref(),
        Some("dave (runbook approve)")
    );
    let rollbacks: Vec<_> = r
        .rollbacks
        .iter()
        .map(|rb| (rb.step.as_str(), rb.status.as_str()))
        .collect();
    assert_eq!(
        rollbacks,
        [("snapshot", "succeeded"), ("take-lock", "failed")]
    );
    let stderr = &r.rollbacks[1]
        .outputs
        .iter()
        .find(|o| o.name == "stderr")
        .expect("stderr")
        .text;
    assert!(stderr.ends_with("giving up"), "tail kept: {stderr}");
    assert!(!stderr.contains("(1/12)"), "head trimmed: {stderr}");
    let phases: Vec<_> = r
        .steps
        .iter()
        .map(|s| s.phase.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(phases.last(), Some(&"finally"));
}

#[test]
fn journal_text_never_becomes_markup() {
    let r = report("failure");
    let html = render_html(&r);
    assert!(!html.contains("<script"), "no script element may appear");
    assert!(html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    let md = render_markdown(&r);
    // Only fenced blocks may hold raw text (there it is inert): the error
    // in the steps table and the failures section are escaped or fenced.
    let outside_fences: String = md.split("```").step_by(2).collect::<Vec<_>>().join("");
    assert!(!outside_fences.contains("<script"), "{outside_fences}");
    assert!(!outside_fences.contains("<html>"), "{outside_fences}");
    assert!(
        outside_fences.contains("&lt;script&gt;"),
        "{outside_fences}"
    );
}

#[test]
fn html_is_self_contained() {
    for name in ["success", "failure", "resumed", "stopped"] {
        let html = render_html(&report(name));
        // Anything that could make a browser fetch or run something.
        for needle in [
            "src=", "href=", "url(", "@import", "<link", "<script", "<img", "<iframe", "<object",
        ] {
            assert!(!html.contains(needle), "{name}: `{needle}` in the HTML");
        }
        assert!(html.contains("<svg"), "{name}: chart present");
        assert!(
            html.contains("default-src 'none'"),
            "{name}: CSP forbids fetching"
        );
    }
}

#[test]
fn resumed_run_shows_the_stop_the_resume_and_the_confirmations() {
    let r = report("resumed");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.sessions.len(), 2);
    assert_eq!(r.sessions[0].end, SessionEnd::EngineStopped);
    assert_eq!(
        r.sessions[0].ended_at.as_deref(),
        Some("2026-11-26T22:00:03.000Z")
    );
    assert!(r.sessions[1].resumed);
    assert_eq!(r.sessions[1].user.as_deref(), Some("frank"));
    assert_eq!(
        r.duration_ms,
        Some(159_000),
        "wall clock, including the downtime"
    );

    let promote = step(&r, "promote-replica");
    assert_eq!(promote.status, StepStatus::Succeeded);
    assert_eq!(promote.attempt_log.len(), 1);
    assert_eq!(promote.attempt_log[0].end, AttemptEnd::EngineStopped);
    assert_eq!(promote.decisions[0].kind, DecisionKind::Confirmation);
    assert_eq!(promote.decisions[0].approved, Some(true));
    assert!(
        promote
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("confirmed completed"))
    );

    let drain = step(&r, "drain-pool");
    assert_eq!(drain.decisions[0].kind, DecisionKind::Confirmation);
    assert_eq!(drain.decisions[0].approved, Some(false));
    let spans: Vec<_> = drain
        .attempt_log
        .iter()
        .map(|a| (a.session, a.end))
        .collect();
    assert_eq!(
        spans,
        [(0, AttemptEnd::EngineStopped), (1, AttemptEnd::Finished)]
    );

    let md = render_markdown(&r);
    assert!(
        md.contains("engine stopped without finishing the run"),
        "{md}"
    );
    assert!(md.contains("run resumed by frank@bastion-1"), "{md}");
    assert!(
        md.contains("drain-pool started again after the resume"),
        "{md}"
    );
    assert!(md.contains("interrupted by the engine stopping"), "{md}");
}

#[test]
fn a_stopped_run_with_a_torn_line_is_reported_not_refused() {
    let r = report("stopped");
    assert_eq!(r.status, RunStatus::Stopped);
    let torn = r.journal.torn_line.as_ref().expect("torn line reported");
    assert_eq!(torn.line, 6);
    for id in ["promote-replica", "drain-pool"] {
        assert_eq!(step(&r, id).status, StepStatus::Interrupted, "{id}");
    }
    let md = render_markdown(&r);
    assert!(
        md.contains("the journal ends with an incomplete line (line 6"),
        "{md}"
    );
    assert!(md.contains("runbook resume 20261126-230000-ffee00"), "{md}");
    let html = render_html(&r);
    assert!(html.contains("The journal ends with an incomplete line (line 6"));
}

/// A state directory holding one fixture as a real run directory.
fn state_with(name: &str) -> (tempfile::TempDir, String) {
    let state = tempfile::tempdir().expect("state dir");
    let contents = contents(name);
    let id = run_id(&contents);
    let dir = state.path().join("runs").join(&id);
    std::fs::create_dir_all(&dir).expect("run dir");
    std::fs::copy(fixture_path(name), dir.join("events.jsonl")).expect("copy journal");
    (state, id)
}

#[test]
fn an_unfinished_run_whose_engine_holds_the_lock_is_running() {
    let (state, id) = state_with("stopped");
    assert_eq!(
        load_report(state.path(), &id).expect("report").status,
        RunStatus::Stopped
    );
    let run_dir = RunDir::open(state.path(), &id).expect("run dir");
    let lock = run_dir.lock().expect("lock like an engine");
    let live = load_report(state.path(), &id).expect("report");
    assert_eq!(live.status, RunStatus::Running);
    assert_eq!(step(&live, "drain-pool").status, StepStatus::Running);
    drop(lock);
}

#[test]
fn unknown_runs_and_bad_journals_are_errors() {
    let (state, id) = state_with("success");
    let error = load_report(state.path(), "20990101-000000-000000").expect_err("unknown");
    assert!(
        error
            .to_string()
            .contains("no run `20990101-000000-000000`"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&state.path().display().to_string()),
        "{error}"
    );
    let journal = state.path().join("runs").join(&id).join("events.jsonl");
    let mut text = std::fs::read_to_string(&journal).expect("read");
    text = text.replacen("\"event\":\"step_started\"", "\"event\":\"step_begun\"", 1);
    std::fs::write(&journal, text).expect("write");
    let error = load_report(state.path(), &id).expect_err("bad line");
    assert!(error.to_string().contains("line 2"), "{error}");
}

/// `(id, status)` of each history line, in order.
fn ids_and_statuses(runs: &[runbook_report::RunEntry]) -> Vec<(&str, &str)> {
    runs.iter()
        .map(|r| (r.id.as_str(), r.status.as_str()))
        .collect()
}

#[test]
fn history_lists_newest_first_and_keeps_going_past_a_bad_journal() {
    let state = tempfile::tempdir().expect("state dir");
    assert!(
        runbook_report::list_runs(state.path())
            .expect("empty")
            .is_empty()
    );
    for name in ["success", "failure", "resumed", "stopped"] {
        let contents = contents(name);
        let dir = state.path().join("runs").join(run_id(&contents));
        std::fs::create_dir_all(&dir).expect("run dir");
        std::fs::copy(fixture_path(name), dir.join("events.jsonl")).expect("copy");
    }
    let bad = state.path().join("runs/20261126-235959-badbad");
    std::fs::create_dir_all(&bad).expect("bad dir");
    std::fs::write(bad.join("events.jsonl"), "{\"ts\":1}\n").expect("bad journal");
    let runs = runbook_report::list_runs(state.path()).expect("list");
    let rows = ids_and_statuses(&runs);
    assert_eq!(
        rows,
        [
            ("20261126-235959-badbad", "unreadable"),
            ("20261126-230000-ffee00", "stopped"),
            ("20261126-220000-0a0b0c", "succeeded"),
            ("20261126-210000-d4e5f6", "failed"),
            ("20261126-203000-a1b2c3", "succeeded"),
        ]
    );
    assert_eq!(
        runs[0].error.as_deref(),
        Some("journal line 1 is not a valid event")
    );
    let resumed = &runs[2];
    assert_eq!(
        resumed.started_by.as_ref().map(|r| r.who()).as_deref(),
        Some("erin@ops-laptop")
    );
    let resumers: Vec<_> = resumed.resumed_by.iter().map(|r| r.who()).collect();
    assert_eq!(resumers, ["frank@bastion-1"]);
}

#[test]
fn runs_of_the_same_second_are_ordered_by_their_start_and_a_headless_journal_is_unreadable() {
    let state = tempfile::tempdir().expect("state dir");
    let write = |id: &str, lines: &[String]| {
        let dir = state.path().join("runs").join(id);
        std::fs::create_dir_all(&dir).expect("run dir");
        std::fs::write(dir.join("events.jsonl"), lines.join("\n") + "\n").expect("journal");
    };
    let run = |id: &str, ms: u32| {
        vec![
            format!(
                r#"{{"ts":"2026-11-26T12:00:00.{ms:03}Z","event":"run_started","run_id":"{id}","runbook":"r"}}"#
            ),
            format!(
                r#"{{"ts":"2026-11-26T12:00:01.000Z","event":"run_finished","run_id":"{id}","status":"succeeded"}}"#
            ),
        ]
    };
    // The random suffixes sort the other way round from the starts.
    write(
        "20261126-120000-aaaaaa",
        &run("20261126-120000-aaaaaa", 900),
    );
    write(
        "20261126-120000-ffffff",
        &run("20261126-120000-ffffff", 100),
    );
    let headless = run("20261126-130000-000000", 0);
    write("20261126-130000-000000", &headless[1..]);
    let runs = runbook_report::list_runs(state.path()).expect("list");
    let rows = ids_and_statuses(&runs);
    assert_eq!(
        rows,
        [
            ("20261126-130000-000000", "unreadable"),
            ("20261126-120000-aaaaaa", "succeeded"),
            ("20261126-120000-ffffff", "succeeded"),
        ]
    );
}

#[test]
fn a_directory_not_named_like_a_run_is_listed_as_unreadable() {
    let state = tempfile::tempdir().expect("state dir");
    // Names that look like an id up to a byte that is not an ASCII digit
    // (`é` straddles the seconds' last digit).
    for id in [
        "20260101-12345é",
        "2026010é-123456-aa",
        "backup",
        "20260101-123456-aaaaaa",
    ] {
        std::fs::create_dir_all(state.path().join("runs").join(id)).expect("run dir");
    }
    let runs = runbook_report::list_runs(state.path()).expect("list");
    // The one whose name gives a time first, then the others by name,
    // descending.
    assert_eq!(
        ids_and_statuses(&runs),
        [
            ("20260101-123456-aaaaaa", "unreadable"),
            ("backup", "unreadable"),
            ("2026010é-123456-aa", "unreadable"),
            ("20260101-12345é", "unreadable"),
        ]
    );
}

/// An engine killed during a rollback: the timeline's last row names the
/// rollback that was running, as it names a running step.
#[test]
fn an_engine_stopped_during_a_rollback_says_which_was_running() {
    let text = std::fs::read_to_string(fixture_path("failure")).expect("fixture");
    let cut: String = text
        .lines()
        .take_while(|line| !line.contains(r#""event":"rollback_finished""#))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(cut.ends_with("\"phase\":\"rollback\"}\n"), "{cut}");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, cut).expect("write journal");
    let contents = read_journal(&path).expect("journal reads");
    let report = build_report(&run_id(&contents), &contents, false);
    let stopped = report
        .timeline
        .iter()
        .find(|t| t.kind == runbook_report::TimelineKind::EngineStopped)
        .expect("an engine-stopped row");
    assert!(
        stopped
            .text
            .contains("; running then: the rollback of snapshot;"),
        "{}",
        stopped.text
    );
}
