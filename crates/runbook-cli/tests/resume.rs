//! `runbook resume` end to end: a real engine killed with SIGKILL in the
//! middle of a runbook whose steps leave side effects in a file, then
//! resumed by the real binary. What the tests check is the file of side
//! effects (each exactly once, the interrupted step again or asked about)
//! and the journal (one run, continued).

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

fn fixture(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("tests/fixtures/resume")
    .join(name)
}

struct Sandbox {
    state: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            state: tempfile::tempdir().expect("state dir"),
            scratch: tempfile::tempdir().expect("scratch dir"),
        }
    }

    fn dir(&self) -> &Path {
        self.scratch.path()
    }

    fn runbook(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .env("NO_COLOR", "1")
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `runbook run FILE --set dir=SCRATCH ARGS...` in the background.
    fn spawn_run(&self, file: &Path, args: &[&str]) -> Child {
        let dir = format!("dir={}", self.dir().display());
        self.runbook(&["run"])
            .arg(file)
            .args(["--set", &dir])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn runbook run")
    }

    /// Runs `file` until its `slow` step is running, then kills the engine
    /// and the step's process group with SIGKILL, as a power loss would.
    /// Returns the run id.
    fn killed_run(&self, file: &Path, args: &[&str]) -> String {
        let mut child = self.spawn_run(file, args);
        let pid_file = self.dir().join("slow.pid");
        wait_until("the slow step to start", || {
            std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
        });
        let group = std::fs::read_to_string(&pid_file).expect("pid file");
        kill(&child.id().to_string());
        kill(&format!("-{}", group.trim()));
        let status = child.wait().expect("wait for the killed engine");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        std::fs::remove_file(&pid_file).expect("remove pid file");
        let id = self.run_id();
        let events = self.events(&id);
        assert!(
            !events.iter().any(|e| e["event"] == "run_finished"),
            "a killed run has no run_finished"
        );
        id
    }

    /// Runs `file` until its `slow` step is running, then kills the engine
    /// alone, with SIGKILL, leaving the step running. Returns the run id and
    /// the step's process group.
    fn engine_killed_under_slow(&self, file: &Path) -> (String, String) {
        let mut child = self.spawn_run(file, &[]);
        let group = group_in(self, "slow.pid");
        kill(&child.id().to_string());
        child.wait().expect("wait for the killed engine");
        (self.run_id(), group)
    }

    fn run_id(&self) -> String {
        let mut ids: Vec<String> = std::fs::read_dir(self.state.path().join("runs"))
            .expect("runs dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(ids.len(), 1, "exactly one run: {ids:?}");
        ids.remove(0)
    }

    fn journal_path(&self, id: &str) -> PathBuf {
        self.state.path().join("runs").join(id).join("events.jsonl")
    }

    /// Every line of the journal, which must all be complete events.
    fn events(&self, id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.journal_path(id)).expect("journal");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    fn resume(&self, id: &str, args: &[&str]) -> Output {
        self.runbook(&["resume", id])
            .args(args)
            .output()
            .expect("resume")
    }

    fn effects(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("effects"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn let_slow_finish(&self) {
        std::fs::write(self.dir().join("go"), "").expect("go file");
    }
}

/// The `run_started` event the resume of run `id` wrote.
fn resumed_run_started(sandbox: &Sandbox, id: &str) -> Value {
    sandbox
        .events(id)
        .into_iter()
        .filter(|e| e["event"] == "run_started")
        .nth(1)
        .expect("the resume's run_started")
}

fn kill_with(signal: &str, target: &str) {
    let status = Command::new("kill")
        .args([signal, target])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {target}");
}

fn kill(target: &str) {
    let status = Command::new("kill")
        .args(["-KILL", "--", target])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {target}");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn step_finished<'a>(events: &'a [Value], step: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["step"] == step)
        .collect()
}

const FINISH_LINE: &str = "finish saw prepared-first with builtin-token";

#[test]
fn a_killed_run_resumes_with_every_side_effect_once_and_the_interrupted_step_again() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append.yaml"), &[]);
    assert_eq!(sandbox.effects(), ["prepare", "slow-start"]);
    // The hints to resume name the state directory they were given, so
    // that pasting them finds the run.
    let state = sandbox.state.path().display();
    let approve = sandbox
        .runbook(&["approve", &id, "slow"])
        .output()
        .expect("approve");
    assert!(
        stderr(&approve).contains(&format!("`runbook resume --state-dir {state} {id}`")),
        "{}",
        stderr(&approve)
    );
    let runs = sandbox.runbook(&["runs"]).output().expect("runs");
    assert!(
        stderr(&runs).contains(&format!("`runbook resume --state-dir {state} {id}`")),
        "{}",
        stderr(&runs)
    );

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted: slow"),
        "{}",
        stderr(&out)
    );
    // The summary's time is the run's, as `runs` and `report` give it,
    // then this session's.
    assert!(
        stderr(&out).contains("since the resume)"),
        "{}",
        stderr(&out)
    );
    // `prepare` is not run again; `slow` is (its start twice, its
    // completion once); `finish` reads prepare's output from the journal.
    assert_eq!(
        sandbox.effects(),
        [
            "prepare",
            "slow-start",
            "slow-start",
            "slow-done",
            FINISH_LINE,
            "tidy"
        ]
    );

    let events = sandbox.events(&id);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "run_started")
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["resumed"], true);
    assert!(events.iter().all(|e| e["run_id"] == id.as_str()));
    assert_eq!(step_finished(&events, "prepare").len(), 1);
    assert_eq!(step_finished(&events, "slow").len(), 1);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["status"], "succeeded");
    // The token is the secret's default, never written to the journal.
    assert!(
        !std::fs::read_to_string(sandbox.journal_path(&id))
            .expect("journal")
            .contains("builtin-token")
    );
}

#[test]
fn an_interrupted_step_that_is_not_idempotent_is_asked_about_not_rerun() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append-once.yaml"), &[]);
    // "It completed": not run again, recorded as succeeded by whom.
    let out = sandbox.resume(&id, &["--approve", "slow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        sandbox.effects(),
        ["prepare", "slow-start", FINISH_LINE, "tidy"]
    );
    let events = sandbox.events(&id);
    let decided = events
        .iter()
        .find(|e| e["event"] == "gate_decided" && e["step"] == "slow")
        .expect("the question is journaled as a gate decision");
    assert_eq!(decided["approved"], true);
    assert_eq!(decided["decided_by"], "--approve");
    assert!(
        decided["message"]
            .as_str()
            .is_some_and(|m| m.contains("Did it complete?")),
        "{decided}"
    );
    let finished = step_finished(&events, "slow");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["status"], "succeeded");
    assert!(
        finished[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("confirmed completed by --approve")),
        "{}",
        finished[0]
    );
}

#[test]
fn a_not_idempotent_step_runs_again_when_a_person_says_it_did_not_complete() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append-once.yaml"), &[]);
    sandbox.let_slow_finish();
    // --approve-all answers gates, never "did it complete?": the resumed
    // run waits for a person, here `runbook approve --reject` from another
    // process.
    let mut resumed = sandbox
        .runbook(&["resume", &id, "--approve-all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resume");
    wait_until("the question about `slow`", || {
        sandbox
            .events(&id)
            .iter()
            .any(|e| e["event"] == "gate_waiting" && e["step"] == "slow")
    });
    let waiting = sandbox
        .events(&id)
        .into_iter()
        .find(|e| e["event"] == "gate_waiting" && e["step"] == "slow")
        .expect("waiting");
    assert!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("idempotent: false")),
        "{waiting}"
    );
    let out = sandbox
        .runbook(&["approve", &id, "slow", "--reject"])
        .output()
        .expect("approve");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = resumed.wait().expect("wait for resume");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        sandbox.effects(),
        [
            "prepare",
            "slow-start",
            "slow-start",
            "slow-done",
            FINISH_LINE,
            "tidy"
        ]
    );
    let events = sandbox.events(&id);
    let decided = events
        .iter()
        .find(|e| e["event"] == "gate_decided" && e["step"] == "slow")
        .expect("decided");
    assert_eq!(decided["approved"], false);
}

#[test]
fn a_torn_last_line_is_cut_and_reported() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append.yaml"), &[]);
    let journal = sandbox.journal_path(&id);
    let mut text = std::fs::read_to_string(&journal).expect("journal");
    let whole_lines = text.lines().count();
    text.push_str(r#"{"ts":"2026-11-26T23:59:59.000Z","event":"step_fini"#);
    std::fs::write(&journal, text).expect("tear the journal");

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = format!("line {} is incomplete", whole_lines + 1);
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    // Every line parses: the torn one is gone, and the resumed run says so.
    let events = sandbox.events(&id);
    let resumed = events
        .iter()
        .find(|e| e["event"] == "run_started" && e["resumed"] == true)
        .expect("resumed run_started");
    assert!(
        resumed["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&expected)),
        "{resumed}"
    );
}

#[test]
fn a_journal_damaged_before_its_last_line_is_refused_with_the_line_number() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append.yaml"), &[]);
    let journal = sandbox.journal_path(&id);
    let text = std::fs::read_to_string(&journal).expect("journal");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{ this is not an event");
    std::fs::write(&journal, lines.join("\n") + "\n").expect("damage");
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(sandbox.effects(), ["prepare", "slow-start"], "nothing ran");
}

/// Events the engine cannot have written from this runbook: a phase that
/// does not exist, a step the file does not have, a main step filed under
/// `on_failure` (which made a resume skip the rest and report success).
#[test]
fn a_journal_naming_steps_or_phases_the_runbook_cannot_have_is_refused() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("append.yaml"), &[]);
    let journal = sandbox.journal_path(&id);
    let text = std::fs::read_to_string(&journal).expect("journal");
    let prepared = r#""event":"step_finished","run_id":""#;
    let line = text
        .lines()
        .position(|l| l.contains(prepared) && l.contains(r#""step":"prepare""#))
        .expect("prepare's step_finished")
        + 1;
    for (from, to, says) in [
        (
            r#""phase":"steps""#,
            r#""phase":"nonsense""#,
            "unknown variant `nonsense`",
        ),
        (
            r#""phase":"steps""#,
            r#""phase":"rollback""#,
            "is not a phase of step_finished",
        ),
        (
            r#""step":"prepare""#,
            r#""step":"zzz""#,
            "puts step `zzz` in `steps`",
        ),
        (
            r#""phase":"steps""#,
            r#""phase":"on_failure""#,
            "puts step `prepare` in `on_failure`",
        ),
    ] {
        let damaged: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(at, l)| {
                if at + 1 == line {
                    l.replace(from, to)
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&journal, damaged.join("\n") + "\n").expect("damage");
        let out = sandbox.resume(&id, &[]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("line {line}")) && stderr(&out).contains(says),
            "{to}: {}",
            stderr(&out)
        );
        assert_eq!(sandbox.effects(), ["prepare", "slow-start"], "nothing ran");
    }
}

#[test]
fn a_changed_runbook_is_refused_unless_forced() {
    let sandbox = Sandbox::new();
    let copy = sandbox.dir().join("runbook.yaml");
    std::fs::copy(fixture("append.yaml"), &copy).expect("copy");
    let id = sandbox.killed_run(&copy, &[]);
    let text = std::fs::read_to_string(&copy).expect("read");
    std::fs::write(&copy, text.replace("echo tidy", "echo tidied")).expect("edit");
    sandbox.let_slow_finish();

    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("changed since run") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sandbox.effects(), ["prepare", "slow-start"], "nothing ran");

    let out = sandbox.resume(&id, &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(sandbox.effects().last().map(String::as_str), Some("tidied"));
}

#[test]
fn a_live_run_cannot_be_resumed_and_a_finished_one_has_nothing_to_resume() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("append.yaml"), &[]);
    let pid_file = sandbox.dir().join("slow.pid");
    wait_until("the slow step to start", || pid_file.exists());
    let id = sandbox.run_id();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("in use by another runbook process"),
        "{}",
        stderr(&out)
    );
    sandbox.let_slow_finish();
    assert!(child.wait().expect("wait").success());

    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already finished (succeeded)"),
        "{}",
        stderr(&out)
    );
    let out = sandbox.resume("20990101-000000-abcdef", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no run"), "{}", stderr(&out));
}

#[test]
fn concurrent_runs_of_one_file_get_their_own_journals() {
    let sandbox = Sandbox::new();
    let file = fixture("append.yaml");
    let children: Vec<Child> = (0..3).map(|_| sandbox.spawn_run(&file, &[])).collect();
    wait_until("three slow steps to start", || {
        sandbox
            .effects()
            .iter()
            .filter(|l| *l == "slow-start")
            .count()
            == 3
    });
    sandbox.let_slow_finish();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let runs: Vec<String> = std::fs::read_dir(sandbox.state.path().join("runs"))
        .expect("runs")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 3);
    for id in &runs {
        let events = sandbox.events(id);
        assert!(events.iter().all(|e| e["run_id"] == id.as_str()));
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event"] == "run_started")
                .count(),
            1
        );
        assert_eq!(events.last().expect("events")["status"], "succeeded");
    }
}

#[test]
fn params_keep_their_values_and_secrets_must_be_given_again() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir().join("runbook.yaml");
    let text = std::fs::read_to_string(fixture("append.yaml")).expect("read");
    // A required secret, given on the first run only.
    std::fs::write(
        &file,
        text.replace("default: builtin-token", "description: API token"),
    )
    .expect("write");
    let id = sandbox.killed_run(
        &file,
        &["--set", "label=second", "--set", "token=t0ps3cret"],
    );
    sandbox.let_slow_finish();

    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing required param `token`")
            && stderr(&out).contains("secret params are never kept"),
        "{}",
        stderr(&out)
    );
    let out = sandbox.resume(&id, &["--set", "label=third", "--set", "token=x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("param `label` keeps the value"),
        "{}",
        stderr(&out)
    );

    let out = sandbox.resume(&id, &["--set", "token=t0ps3cret"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        sandbox
            .effects()
            .contains(&"finish saw prepared-second with t0ps3cret".to_string()),
        "{:?}",
        sandbox.effects()
    );
    let journal = std::fs::read_to_string(sandbox.journal_path(&id)).expect("journal");
    assert!(!journal.contains("t0ps3cret"));
}

/// Waits for `name` (a pid file the fixture writes) and returns its
/// process group.
fn group_in(sandbox: &Sandbox, name: &str) -> String {
    let path = sandbox.dir().join(name);
    wait_until(name, || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
    });
    std::fs::read_to_string(&path)
        .expect("pid file")
        .trim()
        .to_string()
}

#[test]
fn a_step_skipped_by_the_interrupt_is_not_skipped_again_by_the_resume() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("interrupted-cleanup.yaml"), &[]);
    group_in(&sandbox, "slow.pid");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let undo = group_in(&sandbox, "undo.pid");
    kill(&child.id().to_string());
    kill(&format!("-{undo}"));
    child.wait().expect("wait for the killed engine");
    let id = sandbox.run_id();
    std::fs::remove_file(sandbox.dir().join("undo.pid")).expect("remove pid file");

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the rollback of prepare"),
        "the banner names the interrupted rollback: {}",
        stderr(&out)
    );
    let events = sandbox.events(&id);
    let skips = events
        .iter()
        .filter(|e| e["event"] == "step_skipped" && e["step"] == "after")
        .count();
    assert_eq!(skips, 1, "{events:#?}");
    assert_eq!(
        sandbox.effects(),
        ["prepare", "undo-start", "undo-start", "undo-done"]
    );
}

#[test]
fn a_step_still_stopping_when_the_engine_died_ends_cancelled_not_skipped() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("stopping-step.yaml"), &[]);
    let stubborn = group_in(&sandbox, "stubborn.pid");
    let journal = || {
        std::fs::read_dir(sandbox.state.path().join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path().join("events.jsonl"))
    };
    wait_until("`fails` to fail", || {
        journal()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|t| t.contains(r#""step":"fails","phase":"steps","status":"failed""#))
    });
    kill(&child.id().to_string());
    kill(&format!("-{stubborn}"));
    child.wait().expect("wait for the killed engine");
    let id = sandbox.run_id();

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = sandbox.events(&id);
    let stubborn = step_finished(&events, "stubborn");
    assert_eq!(stubborn.len(), 1, "{events:#?}");
    assert_eq!(stubborn[0]["status"], "cancelled");
    assert_eq!(stubborn[0]["attempts"], 1);
    assert_eq!(sandbox.effects(), ["stubborn-start"], "not started again");
}

#[test]
fn an_interrupted_run_whose_engine_died_in_a_grace_finishes_its_stop() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("interrupted-in-grace.yaml"), &[]);
    let stubborn = group_in(&sandbox, "stubborn.pid");
    kill_with("-INT", &child.id().to_string());
    let id = sandbox.run_id();
    let marker = sandbox.state.path().join("runs").join(&id).join("stopping");
    wait_until("the engine to begin stopping", || marker.exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&marker)
        .expect("marker")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the marker is owner-only");
    kill(&child.id().to_string());
    kill(&format!("-{stubborn}"));
    child.wait().expect("wait for the killed engine");
    let events = sandbox.events(&id);
    assert!(
        step_finished(&events, "stubborn").is_empty(),
        "the journal shows nothing of the interrupt: {events:#?}"
    );

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the run was stopping (interrupted) when its engine died"),
        "{}",
        stderr(&out)
    );
    let events = sandbox.events(&id);
    let stubborn = step_finished(&events, "stubborn");
    assert_eq!(stubborn.len(), 1, "{events:#?}");
    assert_eq!(stubborn[0]["status"], "cancelled");
    assert_eq!(
        sandbox.effects(),
        ["stubborn-start", "tidy"],
        "not started again; `after` skipped; the cleanup ran"
    );
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "run_finished");
    assert_eq!(finished["status"], "interrupted");
}

#[test]
fn a_run_started_with_no_rollback_resumes_without_rollbacks() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("no-rollback.yaml"), &["--no-rollback"]);
    let events = sandbox.events(&id);
    assert_eq!(events[0]["no_rollback"], true);
    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(sandbox.effects(), ["prepare"], "the rollback did not run");
    let events = sandbox.events(&id);
    let rollback = events
        .iter()
        .find(|e| e["event"] == "rollback_finished")
        .expect("the skipped rollback is reported");
    assert_eq!(rollback["status"], "skipped");
}

/// A step that must not run twice (a restore) is not stopped halfway
/// when it outlived its engine: the resume waits for it, then asks whether
/// it completed, and the journal says what the resume did.
#[test]
fn a_not_idempotent_step_left_running_is_waited_for_not_stopped() {
    let sandbox = Sandbox::new();
    let (id, first) = sandbox.engine_killed_under_slow(&fixture("append-once.yaml"));
    let resume = sandbox
        .runbook(&["resume", &id, "--approve", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resume");
    waits_then_finishes(&sandbox, resume, &first);
    let resumed = resumed_run_started(&sandbox, &id);
    assert!(
        resumed["reason"].as_str().is_some_and(
            |r| r.contains("waited for what step `slow` of the dead engine left running")
        ),
        "{resumed}"
    );
}

/// The record of what a dead engine left running outlives a resume that
/// is itself stopped before that has finished, and a step still running is
/// known to have started even when its `step_started` never reached the
/// journal: the next resume waits for it and asks, and never runs it next
/// to its first copy.
#[test]
fn a_second_resume_still_waits_for_what_the_first_engine_left_running() {
    let sandbox = Sandbox::new();
    let (id, first) = sandbox.engine_killed_under_slow(&fixture("append-once.yaml"));
    // The last line, `slow`'s start, is lost as in a power cut.
    let journal = sandbox.journal_path(&id);
    let text = std::fs::read_to_string(&journal).expect("journal");
    let kept = text
        .trim_end()
        .rsplit_once('\n')
        .map_or("", |(head, _)| head);
    let lost = &text[kept.len()..];
    assert!(
        lost.contains("\"step_started\"") && lost.contains("\"slow\""),
        "{lost}"
    );
    std::fs::write(&journal, format!("{kept}\n")).expect("cut the journal");

    // Ctrl-C (or SIGTERM, or a hangup) while the resume waits: it stops as
    // an interrupted run does, and leaves the step running.
    for signal in ["-INT", "-TERM", "-HUP"] {
        let waiting = sandbox
            .runbook(&["resume", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn resume");
        std::thread::sleep(Duration::from_millis(500));
        kill_with(signal, &waiting.id().to_string());
        let out = waiting.wait_with_output().expect("the resume stops");
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("resume stopped before running anything"),
            "{signal}: {}",
            stderr(&out)
        );
        assert_eq!(sandbox.effects(), ["prepare", "slow-start"]);
    }

    // The person knows the restore completed once it does.
    let second = sandbox
        .runbook(&["resume", &id, "--approve", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second resume");
    waits_then_finishes(&sandbox, second, &first);
}

/// `resume` leaves the first engine's `slow` (process group `first`)
/// running, given time to kill it, and once it has finished, the run
/// finishes without running it again.
fn waits_then_finishes(sandbox: &Sandbox, resume: Child, first: &str) {
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sandbox.effects(), ["prepare", "slow-start"]);
    sandbox.let_slow_finish();
    let out = resume.wait_with_output().expect("resume finishes");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "step `slow` of the dead engine is still running (process group {first})"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        sandbox.effects(),
        ["prepare", "slow-start", "slow-done", FINISH_LINE, "tidy"]
    );
}

/// A step a person confirms as completed has no outputs (they died with
/// the engine): a step that reads them fails and says so, instead of
/// running with empty text where a snapshot's name should be.
#[test]
fn a_confirmed_step_has_no_outputs_to_read() {
    let sandbox = Sandbox::new();
    let id = sandbox.killed_run(&fixture("confirmed-outputs.yaml"), &[]);
    let out = sandbox.resume(&id, &["--approve", "slow", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = sandbox.events(&id);
    let slow = step_finished(&events, "slow");
    assert_eq!(slow.last().map(|e| &e["status"]), Some(&json!("succeeded")));
    assert_eq!(slow.last().map(|e| &e["outputs"]), Some(&json!({})));
    let used = step_finished(&events, "use");
    let error = used
        .last()
        .and_then(|e| e["error"].as_str())
        .unwrap_or_default();
    assert!(
        error.contains("`steps.slow.outputs.stdout` is not defined"),
        "{error}"
    );
    assert!(sandbox.effects().is_empty(), "{:?}", sandbox.effects());
}

#[test]
fn what_a_killed_engine_left_running_is_stopped_before_the_step_runs_again() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("leftover.yaml"), &[]);
    let first = group_in(&sandbox, "slow.pid");
    // Only the engine dies; its step's process group lives on.
    kill(&child.id().to_string());
    child.wait().expect("wait for the killed engine");
    // A member still running, not a zombie waiting for init to collect it
    // (`kill -0` reaches those too).
    let alive = |group: &str| {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .any(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.get(2) == Some(&group) && fields.first().is_some_and(|s| *s != "Z")
            })
    };
    assert!(alive(&first), "the first copy outlived the engine");
    std::fs::remove_file(sandbox.dir().join("slow.pid")).expect("remove pid file");
    let id = sandbox.run_id();

    let resume = sandbox
        .runbook(&["resume", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resume");
    let second = group_in(&sandbox, "slow.pid");
    assert_ne!(first, second);
    assert!(
        !alive(&first),
        "the first copy was stopped before the second ran"
    );
    sandbox.let_slow_finish();
    let out = resume.wait_with_output().expect("resume finishes");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped what step `slow` of the dead engine left running"),
        "{}",
        stderr(&out)
    );
    // The review sees it too.
    let resumed = resumed_run_started(&sandbox, &id);
    assert!(
        resumed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stopped what step `slow`")),
        "{resumed}"
    );
    assert_eq!(
        sandbox.effects(),
        [
            format!("start {first}"),
            format!("start {second}"),
            format!("done {second}")
        ]
    );
}

#[test]
fn an_output_with_a_masked_secret_is_not_restored_as_its_masked_text() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir().join("runbook.yaml");
    let text = std::fs::read_to_string(fixture("append.yaml")).expect("read");
    // `prepare` prints the secret; `finish` reads what it printed.
    std::fs::write(
        &file,
        text.replace(
            r#"echo "prepared-{{params.label}}""#,
            r#"echo "prepared-{{params.label}} {{params.token}}""#,
        ),
    )
    .expect("write");
    let id = sandbox.killed_run(&file, &["--set", "token=t0ps3cret"]);
    sandbox.let_slow_finish();
    let prepared = sandbox
        .events(&id)
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "prepare")
        .expect("prepare finished before the kill");
    assert_eq!(prepared["outputs"]["stdout"], "prepared-first ***");
    assert_eq!(
        prepared["masked_outputs"],
        serde_json::json!(["stdout", "lines"])
    );

    let out = sandbox.resume(&id, &["--set", "token=t0ps3cret"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "`steps.prepare.outputs.stdout` is not available after the resume: a secret was masked in it"
        ),
        "{}",
        stderr(&out)
    );
    // `***` never reached a command.
    assert!(
        !sandbox.effects().iter().any(|line| line.contains("***")),
        "{:?}",
        sandbox.effects()
    );
}

#[test]
fn a_run_whose_engine_died_in_a_timed_out_steps_grace_resumes_as_failed() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn_run(&fixture("timed-out-in-grace.yaml"), &[]);
    let stubborn = group_in(&sandbox, "stubborn.pid");
    let id = sandbox.run_id();
    let marker = sandbox.state.path().join("runs").join(&id).join("stopping");
    wait_until("the timeout to stop the run", || marker.exists());
    kill(&child.id().to_string());
    kill(&format!("-{stubborn}"));
    child.wait().expect("wait for the killed engine");

    sandbox.let_slow_finish();
    let out = sandbox.resume(&id, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events = sandbox.events(&id);
    let stubborn = step_finished(&events, "stubborn");
    assert_eq!(stubborn.len(), 1, "{events:#?}");
    assert_eq!(stubborn[0]["status"], "failed", "{events:#?}");
    assert_eq!(
        sandbox.effects(),
        ["prepare", "stubborn-start", "undo", "tidy"],
        "not started again; `after` skipped; rolled back; the cleanup ran"
    );
    let finished = events.last().expect("events");
    assert_eq!(finished["event"], "run_finished");
    assert_eq!(finished["status"], "failed");
}
