//! A journal that cannot be written (the disk is full), end to end. The
//! engine runs under a small file-size limit (`ulimit -S -f`; it catches
//! the `SIGXFSZ` that would kill it), so that its journal writes fail with `EFBIG` after
//! a few hundred bytes, cut in the middle of a line, exactly where a full
//! disk would cut them; the steps run as usual.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

/// The soft file-size limit, in 512-byte blocks: room for `run_started`
/// and a few small events, not for a step's 8 KB of output.
const LIMIT_BLOCKS: u32 = 4;

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

    fn write_runbook(&self, text: &str) -> PathBuf {
        let path = self.scratch.path().join("runbook.yaml");
        std::fs::write(&path, text).expect("write runbook");
        path
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

    /// `runbook run FILE` under the file-size limit. The shell execs the
    /// engine, so the child's pid is the engine's.
    fn limited_run(&self, file: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -S -f {LIMIT_BLOCKS} && exec \"$0\" run \"$1\" --set dir=\"$2\" --state-dir \"$3\""
            ))
            .arg(BIN)
            .arg(file)
            .arg(self.scratch.path())
            .arg(self.state.path())
            .env("NO_COLOR", "1")
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn run_dir(&self) -> PathBuf {
        let runs = self.state.path().join("runs");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
            .expect("runs dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(dirs.len(), 1, "one run in {}", runs.display());
        dirs.remove(0)
    }

    /// `runbook resume` of the only run.
    fn resume_the_run(&self) -> Output {
        let run_dir = self.run_dir();
        let run_id = run_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("run id");
        self.runbook(&["resume", run_id]).output().expect("resume")
    }

    fn marks(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("marks")).unwrap_or_default()
    }
}

/// Every line of the journal, parsed; fails on a line that is not whole.
fn journal(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("events.jsonl")).expect("journal");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the journal ends in a cut line:\n{text}"
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a whole event ({e}): {line:.200}"))
        })
        .collect()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = e["event"].as_str().unwrap_or("?");
            match e["step"].as_str() {
                Some(step) => format!("{kind} {step}"),
                None => kind.to_string(),
            }
        })
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BIG_THEN_ONCE: &str = r#"version: 1
name: journal-full
params:
  dir: {}
steps:
  big:
    type: shell
    run: head -c 8000 /dev/zero | tr '\0' x
  restore:
    type: shell
    needs: [big]
    idempotent: false
    run: echo restored >> "{{params.dir}}/marks"
"#;

#[test]
fn a_journal_left_behind_by_a_full_disk_has_whole_lines_and_resume_refuses_it() {
    let sandbox = Sandbox::new();
    let file = sandbox.write_runbook(BIG_THEN_ONCE);
    let output = sandbox
        .limited_run(&file)
        .output()
        .expect("run under the limit");
    let err = stderr(&output);
    // The steps ran; the run is what it is, only its record is short.
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(sandbox.marks(), "restored\n");
    assert!(err.contains("cannot write journal"), "{err}");
    assert!(
        err.contains("could not be written to the journal") && err.contains("will refuse"),
        "{err}"
    );

    let run_dir = sandbox.run_dir();
    let events = journal(&run_dir);
    assert_eq!(
        kinds(&events).first().map(String::as_str),
        Some("run_started")
    );
    assert!(
        !kinds(&events).contains(&"run_finished".to_string()),
        "the limit should have kept run_finished out: {:?}",
        kinds(&events)
    );
    let why = std::fs::read_to_string(run_dir.join("journal-incomplete"))
        .expect("the run directory says its journal is incomplete");
    assert!(why.contains("could not be written"), "{why}");

    let resumed = sandbox.resume_the_run();
    assert_eq!(resumed.status.code(), Some(2), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("cannot be resumed safely"),
        "{}",
        stderr(&resumed)
    );
    // Nothing ran again.
    assert_eq!(sandbox.marks(), "restored\n");

    let listed = sandbox
        .runbook(&["runs", "--format", "json"])
        .output()
        .expect("runs");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("runs JSON");
    assert_eq!(listed["runs"][0]["status"], "incomplete");
}

#[test]
fn a_journal_that_could_not_be_written_for_a_while_catches_up_in_order() {
    let sandbox = Sandbox::new();
    let file = sandbox.write_runbook(&format!(
        "{BIG_THEN_ONCE}  wait:
    type: shell
    needs: [restore]
    run: |
      touch \"{{{{params.dir}}}}/waiting\"
      while [ ! -e \"{{{{params.dir}}}}/go\" ]; do sleep 0.02; done
"
    ));
    let child = sandbox
        .limited_run(&file)
        .spawn()
        .expect("run under the limit");
    let start = Instant::now();
    while !sandbox.scratch.path().join("waiting").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for the last step"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Room again: the soft limit goes up to the hard one.
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"))
        .expect("a pid is positive");
    rustix::process::prlimit(
        Some(pid),
        rustix::process::Resource::Fsize,
        rustix::process::Rlimit {
            current: None,
            maximum: None,
        },
    )
    .expect("raise the engine's file-size limit");
    std::fs::write(sandbox.scratch.path().join("go"), "").expect("let the step end");
    let output = child.wait_with_output().expect("wait for the run");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("cannot write journal"), "{err}");
    assert!(err.contains("every event was written"), "{err}");

    let run_dir = sandbox.run_dir();
    assert_eq!(
        kinds(&journal(&run_dir)),
        [
            "run_started",
            "step_started big",
            "step_finished big",
            "step_started restore",
            "step_finished restore",
            "step_started wait",
            "step_finished wait",
            "run_finished",
        ]
    );
    assert!(!run_dir.join("journal-incomplete").exists());
}

/// A journal deleted or emptied during the run (a clean-up script, an
/// `rm` in the wrong directory) takes writes without an error: the engine
/// notices at the next step, says so, and marks the run as one `resume`
/// must refuse.
#[test]
fn a_journal_deleted_or_emptied_during_the_run_is_reported() {
    for (how, what) in [("rm -f", "deleted"), (": >", "truncated")] {
        let said = format!("was {what} during the run");
        let sandbox = Sandbox::new();
        let file = sandbox.write_runbook(&format!(
            "version: 1\nname: tamper\nparams:\n  state: {{}}\nsteps:\n  tamper:\n    type: shell\n    shell: [sh, -c]\n    run: |\n      for f in \"{{{{params.state}}}}\"/runs/*/events.jsonl; do {how} \"$f\"; done\n  after:\n    type: shell\n    shell: [sh, -c]\n    needs: tamper\n    run: echo after\n"
        ));
        let state = sandbox.state.path().display().to_string();
        let out = sandbox
            .runbook(&[
                "run",
                file.to_str().expect("path"),
                "--set",
                &format!("state={state}"),
            ])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains(&said), "{how}: {stderr}");
        assert!(
            stderr.contains("`runbook resume` will refuse this run"),
            "{how}: {stderr}"
        );
        assert!(
            sandbox.run_dir().join("journal-incomplete").exists(),
            "{how}: marked"
        );
        // `runs` tells what happened rather than only that the journal is
        // unreadable.
        let listed = sandbox
            .runbook(&["runs", "--format", "json"])
            .output()
            .expect("runs");
        let listed: Value = serde_json::from_slice(&listed.stdout).expect("runs JSON");
        assert_eq!(listed["runs"][0]["status"], "incomplete", "{how}: {listed}");
        assert!(
            listed["runs"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains(what)),
            "{how}: {listed}"
        );
    }
}

/// An engine killed after its journal was emptied must not leave a journal
/// that `resume` trusts: the run directory says so as soon as the engine
/// noticed, not only at the end it never reached.
#[test]
fn an_engine_killed_after_its_journal_was_emptied_leaves_a_run_resume_refuses() {
    let sandbox = Sandbox::new();
    let started = sandbox.scratch.path().join("waiting");
    let file = sandbox.write_runbook(&format!(
        "version: 1\nname: tamper-then-die\nparams:\n  state: {{}}\nsteps:\n  once:\n    type: shell\n    shell: [sh, -c]\n    run: echo once >> {marks}\n  tamper:\n    type: shell\n    shell: [sh, -c]\n    needs: once\n    run: |\n      for f in \"{{{{params.state}}}}\"/runs/*/events.jsonl; do : > \"$f\"; done\n  wait:\n    type: shell\n    shell: [sh, -c]\n    needs: tamper\n    run: touch {started}; sleep 20\n",
        marks = sandbox.scratch.path().join("marks").display(),
        started = started.display(),
    ));
    let state = sandbox.state.path().display().to_string();
    let mut engine = sandbox
        .runbook(&[
            "run",
            file.to_str().expect("path"),
            "--set",
            &format!("state={state}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the last step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    engine.kill().expect("kill the engine");
    engine.wait().expect("reap");
    let run_dir = sandbox.run_dir();
    let why = std::fs::read_to_string(run_dir.join("journal-incomplete"))
        .expect("marked as soon as the engine noticed");
    assert!(why.contains("truncated"), "{why}");
    // The step the dead engine left sleeping.
    let _ = Command::new("pkill")
        .args(["-f", &started.display().to_string()])
        .status();
    let resumed = sandbox.resume_the_run();
    assert_eq!(resumed.status.code(), Some(2), "{}", stderr(&resumed));
    assert_eq!(sandbox.marks(), "once\n", "nothing ran twice");
}
