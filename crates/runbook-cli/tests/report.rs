//! `runbook runs` and `runbook report` end to end: real runs of real
//! runbooks into a temporary state directory (one killed with SIGKILL),
//! then the history and the reports read back by the real binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

fn example(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("../../examples")
    .join(name)
}

/// `runbook ARGS... --state-dir STATE`, in plain mode, times in UTC.
fn runbook(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--state-dir")
        .arg(state)
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .env_remove("RUNBOOK_STATE_DIR")
        .stdin(Stdio::null());
    cmd
}

fn output(state: &Path, args: &[&str]) -> Output {
    runbook(state, args).output().expect("run the binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn runs_json(state: &Path) -> Vec<Value> {
    let out = output(state, &["runs", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("runs --format json is JSON");
    doc["runs"].as_array().cloned().expect("runs array")
}

fn journal(state: &Path, id: &str) -> PathBuf {
    state.join("runs").join(id).join("events.jsonl")
}

#[test]
fn runs_and_reports_of_real_runs() {
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path();

    let empty = output(state, &["runs"]);
    assert_eq!(empty.status.code(), Some(0));
    assert!(stdout(&empty).is_empty());
    assert!(
        stderr(&empty).contains("no runs recorded in"),
        "{}",
        stderr(&empty)
    );

    let hello = output(
        state,
        &["run", example("hello.yaml").to_str().expect("path")],
    );
    assert_eq!(hello.status.code(), Some(0), "{}", stderr(&hello));
    // Run ids have one-second resolution; keep the order unambiguous.
    std::thread::sleep(Duration::from_millis(1100));
    let rollback = output(
        state,
        &["run", example("rollback.yaml").to_str().expect("path")],
    );
    assert_eq!(rollback.status.code(), Some(1), "{}", stderr(&rollback));

    let runs = runs_json(state);
    let rows: Vec<_> = runs
        .iter()
        .map(|r| {
            (
                r["runbook"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("rollback-demo", "failed"), ("hello", "succeeded")],
        "newest first"
    );
    let failed_id = runs[0]["id"].as_str().expect("id").to_string();

    let human = output(state, &["runs"]);
    assert!(human.status.success());
    let text = stdout(&human);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("RUN "), "{text}");
    assert!(
        lines[1].starts_with(&failed_id) && lines[1].contains("rollback-demo"),
        "{text}"
    );
    assert!(lines[1].contains(" failed "), "{text}");
    assert!(lines[2].contains(" succeeded "), "{text}");

    // Markdown (the default) on stdout.
    let md = output(state, &["report", &failed_id]);
    assert_eq!(md.status.code(), Some(0), "{}", stderr(&md));
    let md = stdout(&md);
    assert!(
        md.starts_with(&format!("# Run {failed_id}: rollback-demo (failed)")),
        "{md}"
    );
    assert!(md.contains("| `migrate` | steps | failed |"), "{md}");
    assert!(md.contains("## Rollbacks"), "{md}");
    assert!(md.contains("| `snapshot` | succeeded |"), "{md}");
    assert!(md.contains("rollback of take-lock succeeded"), "{md}");
    assert!(md.contains("migrating..."), "outputs worth reading: {md}");

    // JSON: the documented structure, not raw events.
    let json = output(state, &["report", &failed_id, "--format", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let doc: Value = serde_json::from_slice(&json.stdout).expect("report JSON");
    assert_eq!(doc["report_version"], 2);
    assert_eq!(doc["status"], "failed");
    let steps: Vec<_> = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("take-lock", "succeeded"),
            ("snapshot", "succeeded"),
            ("migrate", "failed"),
            ("notify", "succeeded"),
            ("cleanup", "succeeded"),
        ]
    );
    let rollbacks: Vec<_> = doc["rollbacks"]
        .as_array()
        .expect("rollbacks")
        .iter()
        .map(|r| r["step"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        rollbacks,
        ["snapshot", "take-lock"],
        "reverse order of completion"
    );

    // HTML to a private file.
    let dir = tempfile::tempdir().expect("out dir");
    let file = dir.path().join("report.html");
    let html = output(
        state,
        &[
            "report",
            &failed_id,
            "--format",
            "html",
            "-o",
            file.to_str().expect("path"),
        ],
    );
    assert!(html.status.success(), "{}", stderr(&html));
    assert!(stdout(&html).is_empty());
    let page = std::fs::read_to_string(&file).expect("html written");
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<svg"),
        "{page}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // `-o -` is stdout, not a file named `-`.
    let dash = output(
        state,
        &["report", &failed_id, "--format", "json", "-o", "-"],
    );
    assert!(dash.status.success(), "{}", stderr(&dash));
    let parsed: serde_json::Value = serde_json::from_str(&stdout(&dash)).expect("JSON on stdout");
    assert_eq!(parsed["run_id"], failed_id.as_str());

    // Over an existing, longer, world-readable file: made private, and
    // nothing of the old content is left after the report.
    let existing = dir.path().join("existing.md");
    std::fs::write(&existing, "x".repeat(1_000_000)).expect("old file");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let over = output(
        state,
        &["report", &failed_id, "-o", existing.to_str().expect("path")],
    );
    assert!(over.status.success(), "{}", stderr(&over));
    let mode = std::fs::metadata(&existing)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "an existing report file is made private"
    );
    let text = std::fs::read_to_string(&existing).expect("markdown written");
    assert!(
        text.starts_with("# Run ") && !text.contains("xxxx"),
        "{text}"
    );
}

#[test]
fn report_errors_name_the_problem() {
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path();
    // A state directory that is a file: the reason is said once.
    let file = state.join("not-a-dir");
    std::fs::write(&file, "").expect("a file");
    let runs = output(&file, &["runs"]);
    assert_eq!(runs.status.code(), Some(2));
    let message = stderr(&runs);
    assert_eq!(message.matches("Not a directory").count(), 1, "{message}");
    let unknown = output(state, &["report", "20990101-000000-abcdef"]);
    assert_eq!(unknown.status.code(), Some(2));
    let message = stderr(&unknown);
    assert!(
        message.contains("no run `20990101-000000-abcdef`"),
        "{message}"
    );
    assert!(
        message.contains(&state.join("runs").display().to_string()),
        "{message}"
    );

    let run = output(
        state,
        &["run", example("hello.yaml").to_str().expect("path")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let id = runs_json(state)[0]["id"].as_str().expect("id").to_string();
    let path = journal(state, &id);
    let good = std::fs::read_to_string(&path).expect("journal");

    // The output file's extension picks the format unless --format is
    // given; a bare format name is taken for the format the user meant.
    let dir = tempfile::tempdir().expect("out dir");
    let html = dir.path().join("timeline.html");
    let out = output(state, &["report", &id, "-o", html.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&html).expect("html written");
    assert!(
        text.starts_with("<!DOCTYPE html>"),
        "{}",
        &text[..text.len().min(80)]
    );
    let forced = dir.path().join("forced.html");
    let out = output(
        state,
        &[
            "report",
            &id,
            "--format",
            "json",
            "-o",
            forced.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&forced).expect("json written");
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
    let bare = runbook(state, &["report", &id, "--output", "json"])
        .current_dir(dir.path())
        .output()
        .expect("report");
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        stderr(&bare).contains("for the format, use `--format json`"),
        "{}",
        stderr(&bare)
    );
    assert!(!dir.path().join("json").exists(), "no file named json");

    // A torn last line: reported, not fatal.
    std::fs::write(&path, format!("{good}{{\"ts\":\"2026-11-")).expect("tear");
    let torn = output(state, &["report", &id]);
    assert_eq!(torn.status.code(), Some(0), "{}", stderr(&torn));
    assert!(
        stdout(&torn).contains("the journal ends with an incomplete line"),
        "{}",
        stdout(&torn)
    );
    assert!(
        stderr(&torn).contains("incomplete line"),
        "{}",
        stderr(&torn)
    );

    // A bad complete line: refused with its number, and `runs` lists the
    // run as unreadable without hiding the others.
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "not an event");
    std::fs::write(&path, lines.join("\n") + "\n").expect("corrupt");
    let bad = output(state, &["report", &id]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line 2"), "{}", stderr(&bad));

    std::thread::sleep(Duration::from_millis(1100));
    let again = output(
        state,
        &["run", example("hello.yaml").to_str().expect("path")],
    );
    assert!(again.status.success());
    let runs = runs_json(state);
    let statuses: Vec<_> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["succeeded", "unreadable"]);
    assert_eq!(runs[1]["error"], "journal line 2 is not a valid event");
    // Unknown, as every field the journal cannot give.
    assert_eq!(runs[1]["dry_run"], Value::Null);
    assert_eq!(runs[0]["dry_run"], false);
    let human = stdout(&output(state, &["runs"]));
    assert!(
        human.contains("unreadable") && human.contains("journal line 2"),
        "{human}"
    );
}

#[test]
fn a_killed_run_is_running_then_stopped_with_its_step_interrupted() {
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path();
    let scratch = tempfile::tempdir().expect("scratch");
    let book = scratch.path().join("slow.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: slow-one\nsteps:\n  quick:\n    type: shell\n    run: echo ready\n  slow:\n    type: shell\n    needs: [quick]\n    run: exec sleep 20\n",
    )
    .expect("runbook");
    let mut child = runbook(state, &["run", book.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start run");
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let started = std::fs::read_dir(state.join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| {
                std::fs::read_to_string(journal(state, id)).is_ok_and(|j| {
                    j.contains("\"step_started\"") && j.contains("\"step\":\"slow\"")
                })
            });
        if let Some(id) = started {
            break id;
        }
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let live = runs_json(state);
    assert_eq!(live[0]["status"], "running", "the engine holds the lock");
    // A live run has not ended: no end time or duration to report yet.
    assert!(live[0]["ended_at"].is_null(), "{}", live[0]);
    assert!(live[0]["duration_ms"].is_null(), "{}", live[0]);
    let live_report = output(state, &["report", &id, "--format", "json"]);
    let live_doc: Value = serde_json::from_slice(&live_report.stdout).expect("json");
    assert_eq!(live_doc["status"], "running");
    assert!(live_doc["ended_at"].is_null(), "{live_doc}");
    assert!(live_doc["last_event_at"].is_string(), "{live_doc}");
    // The journal's last event is the slow step's start; a live run's
    // duration counts to now.
    std::thread::sleep(Duration::from_millis(1100));
    let human = stdout(&output(state, &["runs"]));
    let line = human
        .lines()
        .find(|l| l.contains(&id))
        .expect("the run's line");
    assert!(
        line.contains("s so far") && !line.contains("ms so far"),
        "{line}"
    );

    child.kill().expect("SIGKILL the engine");
    child.wait().expect("reap");
    let runs = runs_json(state);
    assert_eq!(runs[0]["status"], "stopped");
    let listed = output(state, &["runs"]);
    let human = stdout(&listed);
    assert!(human.contains(" stopped "), "{human}");
    // It ran past its last event for as long as nobody knows.
    assert!(human.contains("at least "), "{human}");
    // The one stopped run's id is in the hint, ready to paste.
    assert!(
        stderr(&listed).contains(&format!(
            "runbook resume --state-dir {} {id}",
            state.display()
        )),
        "{}",
        stderr(&listed)
    );

    let report = output(state, &["report", &id, "--format", "json"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let doc: Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(doc["status"], "stopped");
    let slow = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "slow")
        .cloned()
        .expect("slow step");
    assert_eq!(slow["status"], "interrupted");
    assert_eq!(slow["attempt_log"][0]["end"], "engine_stopped");
    // The run lives in a state directory given with --state-dir: the
    // resume command the report gives must name it, or it finds no run.
    let resume = format!("runbook resume --state-dir {} {id}", state.display());
    assert_eq!(doc["resume_command"], resume.as_str());
    let stopped = doc["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .rfind(|entry| entry["kind"] == "engine_stopped")
        .cloned()
        .expect("engine_stopped entry");
    assert!(
        stopped["text"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("to continue it: {resume}"))),
        "{stopped}"
    );
    let md = stdout(&output(state, &["report", &id]));
    assert!(md.contains(&format!("`{resume}` continues it")), "{md}");
    let html = stdout(&output(state, &["report", &id, "--format", "html"]));
    assert!(html.contains(&format!("<code>{resume}</code>")), "{html}");
}

/// Kills `pid`'s whole process group, as a power loss would.
fn kill_group(pid: &str) {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status()
        .expect("kill");
    assert!(status.success(), "kill the step's process group {pid}");
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() || std::fs::read(path).is_ok_and(|b| b.is_empty()) {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_then_resumed_run_reports_the_stop_the_resume_and_the_confirmation() {
    let state = tempfile::tempdir().expect("state dir");
    let state = state.path();
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path();
    let book = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("tests/fixtures/resume/append-once.yaml");
    let dir_param = format!("dir={}", dir.display());
    let book = book.to_str().expect("path");
    let mut engine = runbook(state, &["run", book, "--set", &dir_param])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start run");
    // `slow` (idempotent: false) writes its pid, then waits for `go`.
    wait_for(&dir.join("slow.pid"), "the slow step starting");
    engine.kill().expect("SIGKILL the engine");
    engine.wait().expect("reap");
    kill_group(&std::fs::read_to_string(dir.join("slow.pid")).expect("pid"));
    let id = runs_json(state)[0]["id"].as_str().expect("id").to_string();
    assert_eq!(runs_json(state)[0]["status"], "stopped");

    let resume_log = dir.join("resume.stderr");
    let mut resume = runbook(state, &["resume", &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&resume_log).expect("resume log"))
        .spawn()
        .expect("start resume");
    // The resumed run asks whether `slow` completed; say it did.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let approve = output(state, &["approve", &id, "slow"]);
        if approve.status.success() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = resume.kill();
            panic!(
                "never asked: {}\nthe resume said:\n{}\njournal:\n{}",
                stderr(&approve),
                std::fs::read_to_string(&resume_log).unwrap_or_default(),
                std::fs::read_to_string(state.join("runs").join(&id).join("events.jsonl"))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = resume.try_wait().expect("wait resume") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = resume.kill();
            panic!("resume did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "resume: {status}");

    let runs = runs_json(state);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["resumed_by"].as_array().map(Vec::len), Some(1));
    assert!(stdout(&output(state, &["runs"])).contains(", resumed by "));

    let report = output(state, &["report", &id, "--format", "json"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let doc: Value = serde_json::from_slice(&report.stdout).expect("json");
    assert_eq!(doc["status"], "succeeded");
    let ends: Vec<_> = doc["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["end"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ends, ["engine_stopped", "finished"]);
    let slow = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "slow")
        .cloned()
        .expect("slow");
    assert_eq!(slow["status"], "succeeded");
    assert_eq!(
        slow["attempt_log"].as_array().map(Vec::len),
        Some(1),
        "not run again"
    );
    assert_eq!(slow["attempt_log"][0]["end"], "engine_stopped");
    assert_eq!(slow["decisions"][0]["kind"], "confirmation");
    assert_eq!(slow["decisions"][0]["approved"], true);
    let md = stdout(&output(state, &["report", &id]));
    assert!(
        md.contains("engine stopped without finishing the run"),
        "{md}"
    );
    assert!(md.contains("slow: confirmed completed by"), "{md}");
    assert!(
        md.contains("`token` | `***`"),
        "secret param redacted: {md}"
    );
}
