//! `runbook run` and `runbook approve` end to end: the real binary, real
//! shell processes, real signals and files, on the fixtures in
//! `tests/fixtures/run/`. Elapsed-time checks are only where behaviour
//! needs them, with bounds generous enough for a loaded 2-core machine.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

fn fixture(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("tests/fixtures/run")
    .join(name)
}

/// A state directory and a scratch directory for one test.
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

    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    fn dir_param(&self) -> String {
        format!("dir={}", self.scratch().display())
    }

    /// `runbook run FIXTURE --state-dir STATE ARGS...`, in plain mode.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg(fixture(name))
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUNBOOK_STATE_DIR")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, name: &str, args: &[&str]) -> Finished {
        let output = self.command(name, args).output().expect("run runbook");
        Finished::new(output, self.journal_path())
    }

    /// Starts a run in the background with stdout and stderr in files.
    fn spawn(&self, name: &str, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.scratch().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(self.scratch().join("stderr")).expect("stderr file");
        self.command(name, args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn runbook")
    }

    fn wait(&self, mut child: Child) -> Finished {
        let status = wait_with_timeout(&mut child, Duration::from_secs(60));
        let output = Output {
            status,
            stdout: std::fs::read(self.scratch().join("stdout")).unwrap_or_default(),
            stderr: std::fs::read(self.scratch().join("stderr")).unwrap_or_default(),
        };
        Finished::new(output, self.journal_path())
    }

    /// The only run's directory.
    fn run_dir(&self) -> Option<PathBuf> {
        let runs = self.state.path().join("runs");
        std::fs::read_dir(runs)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .next()
    }

    fn journal_path(&self) -> Option<PathBuf> {
        self.run_dir().map(|d| d.join("events.jsonl"))
    }

    fn run_id(&self) -> String {
        self.run_dir()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .expect("a run directory")
    }

    /// Waits until the journal has an event matching `pred`.
    fn wait_for_event(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(path) = self.journal_path()
                && journal(&path).iter().any(&pred)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("runbook did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Every complete line of a journal, parsed (a torn last line is skipped).
fn journal(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l}: {e}")))
        .collect()
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
    journal_text: String,
}

impl Finished {
    fn new(output: Output, journal_path: Option<PathBuf>) -> Self {
        let events = journal_path.as_deref().map(journal).unwrap_or_default();
        let journal_text = journal_path
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        Finished {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            events,
            journal_text,
        }
    }

    fn events(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    fn step_event(&self, kind: &str, step: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == kind && e["step"] == step)
            .unwrap_or_else(|| panic!("no {kind} for {step}:\n{}", self.stderr))
    }

    fn position(&self, kind: &str, step: &str) -> usize {
        self.events
            .iter()
            .position(|e| e["event"] == kind && e["step"] == step)
            .unwrap_or_else(|| panic!("no {kind} for {step}"))
    }

    fn finished_status(&self, step: &str) -> String {
        self.step_event("step_finished", step)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn run_finished(&self) -> &Value {
        self.events("run_finished")
            .pop()
            .unwrap_or_else(|| panic!("no run_finished:\n{}", self.stderr))
    }
}

#[test]
fn independent_steps_run_in_parallel_and_dependents_wait() {
    let sandbox = Sandbox::new();
    let start = Instant::now();
    let done = sandbox.run("parallel.yaml", &[]);
    let elapsed = start.elapsed();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    // Four one-second steps in sequence would take 4 s.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let after = done.position("step_started", "after");
    for step in ["a", "b", "c", "d"] {
        assert!(done.position("step_finished", step) < after, "{step}");
    }
    assert!(done.stderr.contains("[after] all done"), "{}", done.stderr);
}

#[test]
fn skips_propagate_and_when_runs_after_a_failure() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("skips.yaml", &[]);
    assert_eq!(done.code, Some(0), "continue_on_failure: {}", done.stderr);
    assert_eq!(
        done.step_event("step_skipped", "child")["reason"],
        "needs broken which failed"
    );
    assert_eq!(
        done.step_event("step_skipped", "grandchild")["reason"],
        "needs child which skipped"
    );
    assert_eq!(done.finished_status("rescue"), "succeeded");
    assert!(done.stderr.contains("[rescue] rescued after exit 4"));
    assert!(
        done.stderr
            .contains("↷ child skipped: needs broken which failed")
    );
    // The summary names skipped steps on one line, not a row each.
    assert!(
        done.stderr.contains("  skipped (2): child, grandchild\n"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("  child   "), "{}", done.stderr);
}

#[test]
fn a_literal_when_switches_a_step_off_or_on() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("when-literal.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(
        done.step_event("step_skipped", "switched-off")["step"],
        "switched-off"
    );
    assert_eq!(done.finished_status("always"), "succeeded");
}

#[test]
fn retries_are_counted() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("retries.yaml", &["--set", &sandbox.dir_param()]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let finished = done.step_event("step_finished", "flaky");
    assert_eq!(finished["attempts"], 3);
    assert_eq!(
        finished["attempt"], 3,
        "the spec's field name, on the last attempt"
    );
    assert_eq!(finished["outputs"]["stdout"], "attempt 3");
    let starts = done.events("step_started");
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[2]["attempt"], 3);
    assert_eq!(starts[2]["reason"], "attempt 2 failed: exit code 1");
    assert!(done.stderr.contains("flaky attempt 1 failed"));
}

#[test]
fn a_timeout_kills_the_whole_process_tree() {
    let sandbox = Sandbox::new();
    let start = Instant::now();
    let done = sandbox.run("timeout.yaml", &["--set", &sandbox.dir_param()]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
    let error = done.step_event("step_finished", "stuck")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.starts_with("timed out after 1s"), "{error}");
    let pid = std::fs::read_to_string(sandbox.scratch().join("grandchild.pid"))
        .expect("pid file")
        .trim()
        .to_string();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let gone = (0..100).any(|_| {
        let alive =
            std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| !stat.contains(") Z "));
        if alive {
            std::thread::sleep(Duration::from_millis(50));
        }
        !alive
    });
    assert!(gone, "grandchild {pid} survived the timeout");
}

#[test]
fn the_deadline_fails_the_run() {
    let sandbox = Sandbox::new();
    let start = Instant::now();
    let done = sandbox.run("deadline.yaml", &[]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(done.run_finished()["error"], "deadline exceeded");
    assert_eq!(done.finished_status("slow"), "cancelled");
    assert_eq!(
        done.step_event("step_skipped", "never")["reason"],
        "run stopped: deadline exceeded"
    );
    assert_eq!(done.finished_status("tidy"), "succeeded");
}

#[test]
fn rollbacks_run_in_reverse_order_and_failures_are_reported() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("rollbacks.yaml", &[]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let rollbacks: Vec<(String, String)> = done
        .events("rollback_finished")
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap_or("").to_string(),
                e["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rollbacks,
        [
            ("three".into(), "succeeded".into()),
            ("two".into(), "failed".into()),
            ("one".into(), "succeeded".into())
        ]
    );
    let two = done.step_event("rollback_finished", "two");
    assert!(
        two["error"].as_str().unwrap_or("").contains("exit code 7"),
        "{two}"
    );
    // Rollbacks before on_failure, on_failure before finally.
    assert!(done.position("rollback_finished", "one") < done.position("step_started", "notify"));
    assert!(done.position("step_finished", "notify") < done.position("step_started", "cleanup"));
    assert!(
        done.stderr
            .contains("[three.rollback] undo-three saw three-output")
    );
    assert!(done.stderr.contains("[notify] notify exit code 1"));
    assert!(
        done.stderr
            .contains("[cleanup] cleanup after failed run: step `boom` failed"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("rollback two"),
        "summary: {}",
        done.stderr
    );
}

#[test]
fn no_rollback_skips_rollbacks() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("rollbacks.yaml", &["--no-rollback"]);
    assert_eq!(done.code, Some(1));
    assert!(done.events("rollback_started").is_empty());
    assert!(!done.stderr.contains("undo-"));
    assert_eq!(done.finished_status("cleanup"), "succeeded");
}

#[test]
fn dry_run_lists_what_would_run() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("rollbacks.yaml", &["--dry-run"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains("[one] one"), "{}", done.stderr);
    let would = done.step_event("step_finished", "boom")["would_run"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!would.is_empty());
    // The progress line says the command was not run.
    let first = would.lines().next().unwrap_or_default();
    assert!(
        done.stderr.contains(&format!("boom would run: {first}")),
        "{}",
        done.stderr
    );
    assert_eq!(done.events("run_started")[0]["dry_run"], true);
    // The first and the last lines say it was a dry run: a glance at
    // either must not read as a change made.
    assert!(
        done.stderr
            .contains("started as a dry run: nothing is changed;"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(" succeeded (dry run) in "),
        "{}",
        done.stderr
    );
}

/// A dry run that fails rolls back what it only planned: the rollbacks
/// are planned too, and said to be.
#[test]
fn a_dry_runs_rollbacks_say_they_would_run() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("dry-run-rollback.yaml", &["--dry-run"]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let rollback = done.step_event("rollback_finished", "snapshot");
    assert_eq!(rollback["would_run"], "delete-snapshot --all", "{rollback}");
    assert!(
        done.stderr
            .contains("rollback of snapshot would run: delete-snapshot --all"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("snapshot rolled back"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("rollback snapshot")
                && l.contains("would run")
                && !l.contains("undone")),
        "{}",
        done.stderr
    );
}

#[test]
fn a_dry_run_plans_what_reads_a_planned_steps_outputs_instead_of_deciding_on_placeholders() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("dry-run-placeholders.yaml", &["--dry-run"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    for step in ["check", "decide", "show"] {
        let finished = done.step_event("step_finished", step);
        assert_eq!(finished["status"], "succeeded", "{step}");
        assert!(
            finished["would_run"]
                .as_str()
                .is_some_and(|w| w.contains("reads the outputs of `create`")),
            "{step}: {finished}"
        );
        // Its start says how long it may take, as every first start does.
        let started = done.step_event("step_started", step);
        assert!(started["timeout_ms"].is_u64(), "{step}: {started}");
    }
    assert!(!done.stderr.contains("[show]"), "{}", done.stderr);
    // Whether `create` succeeded is known: `after` runs (it is read-only).
    assert!(
        done.stderr.contains("[after] after the gate"),
        "{}",
        done.stderr
    );
    assert!(done.step_event("step_finished", "after")["would_run"].is_null());
}

#[test]
fn approving_a_gate_that_does_not_exist_runs_nothing() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-manual.yaml", &["--approve", "aks"]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("--approve aks: no gate `aks` in the runbook (its gates are ask)"),
        "{}",
        done.stderr
    );
    assert!(sandbox.run_dir().is_none(), "no run was started");
}

#[test]
fn gates_are_approved_by_flag() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-manual.yaml", &["--approve", "ask"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stderr.contains("[after] decided by --approve"));
    let decided = done.step_event("gate_decided", "ask");
    assert_eq!(decided["approved"], true);
    // No `gate_waiting` carries the question; the decision does, so the
    // report's Decisions can show it.
    assert_eq!(decided["message"], "Restart the service?");
    // Decided in advance, the gate never waited: no `gate_waiting`, and no
    // "waiting for approval" with commands that would find nothing.
    let never_waited = |done: &Finished| {
        assert!(
            done.events("gate_waiting").is_empty(),
            "{}",
            done.journal_text
        );
        assert!(
            !done.stderr.contains("waiting for approval"),
            "{}",
            done.stderr
        );
    };
    never_waited(&done);
    let all = Sandbox::new();
    let done = all.run("gate-manual.yaml", &["--approve-all"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    never_waited(&done);
    assert!(
        done.stderr.contains("approved by --approve-all"),
        "{}",
        done.stderr
    );
}

#[test]
fn gates_are_approved_or_rejected_from_another_process() {
    for (reject, expected) in [(false, 0), (true, 1)] {
        let sandbox = Sandbox::new();
        let child = sandbox.spawn("gate-manual.yaml", &[]);
        sandbox.wait_for_event("gate_waiting", |e| e["event"] == "gate_waiting");
        let mut approve = Command::new(BIN);
        approve
            .arg("approve")
            .arg(sandbox.run_id())
            .arg("ask")
            .arg("--state-dir")
            .arg(sandbox.state.path());
        if reject {
            approve.arg("--reject");
        }
        let out = approve.output().expect("approve");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("the run has taken the decision"), "{said}");
        let done = sandbox.wait(child);
        assert_eq!(done.code, Some(expected), "{}", done.stderr);
        let decided = done.step_event("gate_decided", "ask");
        assert_eq!(decided["approved"], !reject);
        assert_eq!(decided["phase"], "steps", "{decided}");
        assert_eq!(done.step_event("gate_waiting", "ask")["phase"], "steps");
        assert!(
            decided["decided_by"]
                .as_str()
                .unwrap_or("")
                .contains("runbook approve"),
            "{decided}"
        );
        assert!(done.stderr.contains("runbook approve --state-dir"));
    }
}

/// A rollback may be a gate: `runbook approve` decides it as any other,
/// and the stream says so, or the command would wait for an answer that
/// never comes and report the live engine dead.
#[test]
fn rollback_gates_are_decided_from_another_process() {
    for reject in [false, true] {
        let sandbox = Sandbox::new();
        let child = sandbox.spawn("gate-rollback.yaml", &[]);
        sandbox.wait_for_event("gate_waiting", |e| e["event"] == "gate_waiting");
        let mut approve = Command::new(BIN);
        approve
            .args([
                "approve",
                &sandbox.run_id(),
                "change.rollback",
                "--state-dir",
            ])
            .arg(sandbox.state.path());
        if reject {
            approve.arg("--reject");
        }
        let out = approve.output().expect("approve");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let done = sandbox.wait(child);
        assert_eq!(done.code, Some(1), "{}", done.stderr);
        let decided = done.step_event("gate_decided", "change.rollback");
        assert_eq!(decided["approved"], !reject, "{decided}");
        assert_eq!(decided["phase"], "rollback", "{decided}");
        let rollback = done.step_event("rollback_finished", "change");
        let expected = if reject { "failed" } else { "succeeded" };
        assert_eq!(rollback["status"], expected, "{rollback}");
    }
}

/// A whole `number` param reads as an integer wherever it lands: in a
/// script `--replicas=3.0` is refused by most tools.
#[test]
fn whole_number_params_render_without_a_fraction() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("numbers.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let show = done.step_event("step_finished", "show");
    assert_eq!(show["outputs"]["stdout"], "replicas=3 ratio=0.25");
    assert_eq!(done.events("run_started")[0]["params"]["replicas"], 3);
    let sandbox = Sandbox::new();
    let done = sandbox.run(
        "numbers.yaml",
        &["--set", "replicas=2", "--set", "ratio=1.5"],
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let show = done.step_event("step_finished", "show");
    assert_eq!(show["outputs"]["stdout"], "replicas=2 ratio=1.5");
}

/// A run under a real pseudo-terminal: util-linux `script` gives it one and
/// records what it draws.
struct Terminal {
    child: Child,
    keys: Option<std::process::ChildStdin>,
    typescript: PathBuf,
    started: Instant,
}

impl Terminal {
    /// `runbook run FIXTURE` at a terminal: plain (`NO_COLOR`), or with
    /// the live display, which is drawn only for a terminal that asks for it.
    fn run(sandbox: &Sandbox, name: &str, live: bool) -> Terminal {
        let typescript = sandbox.scratch().join("typescript");
        let command = format!(
            "{BIN} run {} --state-dir {}",
            fixture(name).display(),
            sandbox.state.path().display()
        );
        let mut script = Command::new("script");
        script.args(["-qfec", &command]).arg(&typescript);
        if live {
            script.env_remove("NO_COLOR").env("TERM", "xterm");
        } else {
            script.env("NO_COLOR", "1");
        }
        let mut child = script
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux) runs");
        let keys = child.stdin.take();
        Terminal {
            child,
            keys,
            typescript,
            started: Instant::now(),
        }
    }

    fn screen(&self) -> String {
        std::fs::read_to_string(&self.typescript).unwrap_or_default()
    }

    /// Waits until what the terminal shows satisfies `shown`.
    fn wait_for(&self, shown: impl Fn(&str) -> bool) {
        while !shown(&self.screen()) {
            assert!(
                self.started.elapsed() < Duration::from_secs(30),
                "{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let keys = self.keys.as_mut().expect("script's stdin");
        keys.write_all(format!("{line}\n").as_bytes())
            .expect("type at the terminal");
    }

    /// Types `keys` as they are (`\x04` is Ctrl-D).
    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        let input = self.keys.as_mut().expect("script's stdin");
        input
            .write_all(keys.as_bytes())
            .expect("type at the terminal");
    }

    /// Waits for the run to end: whether it succeeded, and the screen.
    fn finish(mut self) -> (bool, String) {
        drop(self.keys.take());
        let status = self.child.wait().expect("script ends");
        (status.success(), self.screen())
    }
}

/// At a terminal the question comes last, below the waiting notice and
/// its commands, so the cursor waits right after `[y/n]` and the message is
/// not said twice. `script` (util-linux) gives the run a terminal.
#[test]
fn the_terminal_prompt_asks_below_the_waiting_notice() {
    let sandbox = Sandbox::new();
    let mut terminal = Terminal::run(&sandbox, "gate-manual.yaml", false);
    terminal.wait_for(|screen| screen.contains("[y/n]"));
    terminal.type_line("y");
    let (succeeded, screen) = terminal.finish();
    assert!(succeeded, "{screen}");
    assert_eq!(
        screen.matches("Restart the service?").count(),
        1,
        "{screen}"
    );
    let reject = screen.find("--reject").expect("the reject command");
    let question = screen.find("[y/n]").expect("the question");
    assert!(reject < question, "{screen}");
    assert!(screen.contains("ask approved by"), "{screen}");
}

/// With a question waiting, another gate's notice goes below it and the
/// waiting question is asked again, so the cursor never sits under the
/// other gate's words; each question names its gate.
#[test]
fn a_second_gate_waiting_does_not_hide_the_first_question() {
    let sandbox = Sandbox::new();
    let mut terminal = Terminal::run(&sandbox, "two-gates.yaml", false);
    terminal.wait_for(|screen| screen.matches("approve `first` here?").count() >= 2);
    let text = terminal.screen();
    let second_notice = text.find("second is waiting").expect("the second notice");
    let asked_again = text.rfind("approve `first` here?").expect("asked again");
    assert!(second_notice < asked_again, "{text}");
    terminal.type_line("y");
    terminal.wait_for(|screen| screen.contains("approve `second` here?"));
    terminal.type_line("y");
    let (succeeded, screen) = terminal.finish();
    assert!(succeeded, "{screen}");
}

/// A finally step after a failed one sees the run as failed.
#[test]
fn run_status_follows_a_failing_finally_step() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("finally-fails.yaml", &[]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert_eq!(
        done.step_event("step_finished", "report")["outputs"]["stdout"],
        "failed: step `first` failed"
    );
}

/// A `y` typed while an earlier step runs does not approve a gate that
/// nobody has seen yet: only an answer given after the question counts.
#[test]
fn an_answer_typed_ahead_does_not_decide_a_gate() {
    let sandbox = Sandbox::new();
    let mut terminal = Terminal::run(&sandbox, "gate-after-work.yaml", false);
    terminal.wait_for(|screen| screen.contains("work"));
    terminal.type_line("y");
    terminal.wait_for(|screen| screen.contains("[y/n]"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !terminal.screen().contains("approved by"),
        "{}",
        terminal.screen()
    );
    terminal.type_line("n");
    let (succeeded, screen) = terminal.finish();
    assert!(!succeeded, "{screen}");
    assert!(screen.contains("ask rejected by"), "{screen}");
}

/// A long wait at a terminal shows its limit next to the time spent, and
/// `step_started` carries it for other readers of the stream.
#[test]
fn a_running_step_shows_its_time_limit() {
    let sandbox = Sandbox::new();
    let (succeeded, screen) = Terminal::run(&sandbox, "long-wait.yaml", true).finish();
    assert!(succeeded, "{screen}");
    assert!(screen.contains("wait-restart 0s/5m"), "{screen}");
    let started = sandbox.run("long-wait.yaml", &[]);
    assert_eq!(
        started.step_event("step_started", "wait-restart")["timeout_ms"],
        300_000
    );
}

#[test]
fn gate_timeouts_follow_on_timeout() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-timeout-reject.yaml", &[]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert_eq!(done.step_event("gate_decided", "ask")["approved"], false);
    assert_eq!(
        done.step_event("step_skipped", "after")["reason"],
        "run stopped: step `ask` failed"
    );
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-timeout-approve.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains("[after] decided by timeout"),
        "{}",
        done.stderr
    );
}

#[test]
fn the_largest_durations_do_not_overflow_a_timer() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("huge-timeouts.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    assert_eq!(done.finished_status("after"), "succeeded");
}

#[test]
fn gate_conditions_decide_alone() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-condition.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stderr.contains("[after] decided by condition"));
    assert!(done.events("gate_waiting").is_empty());
    let sandbox = Sandbox::new();
    let done = sandbox.run("gate-condition.yaml", &["--set", "healthy=true"]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let decided = done.step_event("gate_decided", "ask");
    assert_eq!(decided["approved"], false);
    assert!(
        decided["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{decided}"
    );
}

#[test]
fn an_interrupt_cancels_then_runs_rollbacks_on_failure_and_finally() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("interrupt.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    signal(&child, "INT");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    assert_eq!(done.finished_status("long"), "cancelled");
    assert_eq!(
        done.step_event("rollback_finished", "first")["status"],
        "succeeded"
    );
    assert_eq!(done.finished_status("notify"), "succeeded");
    assert_eq!(done.finished_status("tidy"), "succeeded");
    assert_eq!(done.run_finished()["status"], "interrupted");
    // Cleanup can tell an operator's Ctrl-C from a failure.
    let said = |step: &str| {
        done.step_event("step_finished", step)["outputs"]["stdout"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(said("notify"), "notify interrupted: interrupted");
    assert_eq!(said("tidy"), "tidy interrupted");
    assert!(
        done.stderr
            .contains("SIGINT: no main step starts again and running ones are cancelled"),
        "{}",
        done.stderr
    );
    let summary = format!(
        "run {} interrupted in ",
        done.run_finished()["run_id"].as_str().unwrap_or("?")
    );
    assert!(done.stderr.contains(&summary), "{}", done.stderr);
}

/// A closed terminal or SSH session (SIGHUP) stops the run as SIGTERM
/// does, instead of killing the engine with its steps left running.
#[test]
fn a_hangup_stops_the_run_like_sigterm() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("interrupt.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    signal(&child, "HUP");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    assert!(
        done.stderr.contains("SIGHUP: no main step starts again"),
        "{}",
        done.stderr
    );
    assert_eq!(done.finished_status("long"), "cancelled");
    assert_eq!(
        done.step_event("rollback_finished", "first")["status"],
        "succeeded"
    );
    assert_eq!(done.finished_status("tidy"), "succeeded");
    assert_eq!(done.run_finished()["status"], "interrupted");
}

#[test]
fn a_second_interrupt_abandons_the_rollbacks() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("double-interrupt.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    signal(&child, "INT");
    sandbox.wait_for_event("the slow rollback", |e| {
        e["event"] == "rollback_started" && e["step"] == "second"
    });
    // Closer than a quarter of a second, two signals count as one.
    std::thread::sleep(Duration::from_millis(400));
    let start = Instant::now();
    signal(&child, "INT");
    let done = sandbox.wait(child);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    assert_eq!(
        done.step_event("rollback_finished", "second")["status"],
        "cancelled"
    );
    let first = done.step_event("rollback_finished", "first");
    assert_eq!(first["status"], "skipped");
    assert_eq!(first["reason"], "abandoned by a second interrupt");
    assert!(!done.stderr.contains("undo-first"));
    assert!(
        done.stderr
            .contains("rollbacks that did not complete: second, first"),
        "{}",
        done.stderr
    );
}

/// Only a person abandons the cleanup: SIGTERM or SIGHUP repeated (a
/// service manager, a closing SSH session) leaves it running, and so does a
/// Ctrl-C delivered twice at once (the terminal's, and `timeout(1)`
/// forwarding it). The kernel may merge two signals sent back to back
/// before the engine sees either: the rule for ones it does see apart is
/// unit-tested with `StopRequests`.
#[test]
fn repeated_stop_signals_do_not_abandon_the_cleanup() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("repeated-stop-signals.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    signal(&child, "TERM");
    sandbox.wait_for_event("the slow rollback", |e| {
        e["event"] == "rollback_started" && e["step"] == "second"
    });
    // Far enough apart not to count as the first one delivered twice.
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, "TERM");
    signal(&child, "HUP");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    for step in ["second", "first"] {
        assert_eq!(
            done.step_event("rollback_finished", step)["status"],
            "succeeded",
            "{}",
            done.stderr
        );
    }
    assert_eq!(done.finished_status("tidy"), "succeeded");
    assert!(
        done.stderr
            .contains("SIGTERM: the cleanup goes on (only a second Ctrl-C, SIGINT, abandons it)"),
        "{}",
        done.stderr
    );

    let sandbox = Sandbox::new();
    let child = sandbox.spawn("repeated-stop-signals.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    let pid = child.id().to_string();
    let twice = Command::new("sh")
        .args(["-c", "kill -INT $0; kill -INT $0", &pid])
        .status()
        .expect("kill twice");
    assert!(twice.success());
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    assert_eq!(
        done.step_event("rollback_finished", "second")["status"],
        "succeeded",
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("abandoning rollbacks"),
        "{}",
        done.stderr
    );
}

/// A second interrupt while a step is in its grace (it traps SIGTERM):
/// the step is killed and journaled `cancelled`, never left `running` in a
/// finished run.
#[test]
fn a_second_interrupt_during_a_grace_records_the_step_as_cancelled() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("abandon-in-grace.yaml", &[]);
    sandbox.wait_for_event("stubborn to start", |e| {
        e["event"] == "step_started" && e["step"] == "stubborn"
    });
    // Its trap is set once it has printed; the journal does not show that.
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    signal(&child, "INT");
    let done = sandbox.wait(child);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    let stubborn = done.step_event("step_finished", "stubborn");
    assert_eq!(stubborn["status"], "cancelled", "{stubborn}");
    assert_eq!(stubborn["error"], "abandoned by a second interrupt");
    assert_eq!(
        done.step_event("step_skipped", "tidy")["reason"],
        "abandoned by a second interrupt"
    );
    assert_eq!(done.run_finished()["status"], "interrupted");
    // The summary table lists it as cancelled too.
    assert!(
        done.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("stubborn") && l.contains("cancelled")),
        "{}",
        done.stderr
    );
}

#[test]
fn secret_params_never_appear_anywhere() {
    let secret = "s3cr3t-VALUE-81f2a";
    let sandbox = Sandbox::new();
    let done = sandbox.run(
        "secrets.yaml",
        &["--set", &format!("token={secret}"), "--output", "json"],
    );
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    for (name, text) in [
        ("stdout", &done.stdout),
        ("stderr", &done.stderr),
        ("journal", &done.journal_text),
    ] {
        assert!(!text.contains(secret), "secret in {name}:\n{text}");
        assert!(text.contains("***"), "{name} shows the redaction:\n{text}");
    }
    assert_eq!(done.events("run_started")[0]["params"]["token"], "***");
    // A wrong value for a secret param is not echoed either.
    let bad = Sandbox::new().run("secrets.yaml", &["--set", "tokn=abc-secret-typo"]);
    assert_eq!(bad.code, Some(2));
}

/// Runs `inject.yaml` (the value bare, in double quotes, in a comment and
/// in a here-document) and checks the value arrived everywhere as text.
fn assert_param_stays_text(value: &str, marker: &Path) {
    let sandbox = Sandbox::new();
    let done = sandbox.run(
        "inject.yaml",
        &[
            "--set",
            &format!("v={value}"),
            "--set",
            &sandbox.dir_param(),
        ],
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(!marker.exists(), "the param was executed");
    let read = |name: &str| std::fs::read_to_string(sandbox.scratch().join(name)).expect(name);
    assert_eq!(read("out"), value);
    assert_eq!(read("quoted"), format!("<{value}>"));
    assert_eq!(read("doc"), format!("{value}\n"));
}

#[test]
fn param_values_cannot_change_a_script() {
    let marker = std::env::temp_dir().join(format!("pwned-{}", std::process::id()));
    assert_param_stays_text(&format!("x'; touch {}; '", marker.display()), &marker);
}

#[test]
fn param_values_stay_text_inside_double_quotes_comments_and_here_documents() {
    let marker = std::env::temp_dir().join(format!("pwned-dq-{}", std::process::id()));
    let value = format!(
        "$(touch {m})\"; touch {m}; \"\ntouch {m}",
        m = marker.display()
    );
    assert_param_stays_text(&value, &marker);
}

#[test]
fn a_script_that_exits_in_time_is_not_failed_by_output_held_past_its_timeout() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("detached-leftover.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(done.finished_status("starts-a-daemon"), "succeeded");
}

#[test]
fn stop_signal_grace_and_read_only_accept_templates() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("templated-shell-fields.yaml", &[]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let trapped = done.step_event("step_finished", "trapped");
    assert_eq!(trapped["status"], "failed");
    assert_eq!(
        trapped["outputs"]["stdout"], "ready\ngot INT",
        "SIGINT, rendered, was sent"
    );
    assert_eq!(trapped["outputs"]["exit_code"], 3);

    let dry = Sandbox::new();
    let done = dry.run("templated-shell-fields.yaml", &["--dry-run"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(
        done.step_event("step_finished", "look")["outputs"]["stdout"],
        "looked"
    );
    assert!(done.step_event("step_finished", "trapped")["would_run"].is_string());

    // A param that is the whole field is checked before anything runs.
    let bad = Sandbox::new();
    let done = bad.run("templated-shell-fields.yaml", &["--set", "signal=SIGFOO"]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("param `signal` is `SIGFOO`, which step `trapped` uses as its `stop_signal`"),
        "{}",
        done.stderr
    );
}

#[test]
fn durations_too_large_for_the_clock_mean_forever_not_a_panic() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("huge-durations.yaml", &[]);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert_eq!(done.finished_status("quick"), "succeeded");
    assert_eq!(done.finished_status("stubborn"), "failed");
}

#[test]
fn a_flood_of_output_keeps_memory_bounded() {
    let sandbox = Sandbox::new();
    let mut child = sandbox
        .command("flood.yaml", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let start = Instant::now();
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(240), "flood too slow");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(peak_kb > 0, "could not read VmHWM");
    assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} kB");
    let done = Finished::new(
        Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
        sandbox.journal_path(),
    );
    let stdout = done.step_event("step_finished", "flood")["outputs"]["stdout"]
        .as_str()
        .unwrap_or("")
        .len();
    assert!(stdout <= (1 << 20) + 200, "captured {stdout} bytes");
}

#[test]
fn a_journal_killed_mid_run_is_valid_up_to_its_last_line() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn("interrupt.yaml", &[]);
    sandbox.wait_for_event("long to start", |e| {
        e["event"] == "step_started" && e["step"] == "long"
    });
    signal(&child, "KILL");
    let _ = child.wait();
    let text = std::fs::read_to_string(sandbox.journal_path().expect("journal")).expect("read");
    assert!(text.ends_with('\n'));
    let events = journal(&sandbox.journal_path().expect("journal"));
    assert_eq!(events[0]["event"], "run_started");
    assert_eq!(events.last().expect("events")["step"], "long");
    // The orphaned step's process group is no concern of this test; the
    // sleep ends on its own.
}

#[test]
fn json_output_is_pure_ndjson_on_stdout() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("rollbacks.yaml", &["--output", "json"]);
    assert_eq!(done.code, Some(1));
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), done.events.len(), "stdout and journal agree");
    for line in lines {
        let event: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(event["event"].is_string() && event["ts"].is_string());
        assert!(event["run_id"].is_string());
    }
    assert!(done.stderr.contains("[one] one"), "live output on stderr");
    assert!(done.stderr.contains("started; journal:"));
}

#[test]
fn invalid_runbooks_and_params_exit_2_without_running() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("retries.yaml", &[]);
    assert_eq!(done.code, Some(2));
    assert!(
        done.stderr.contains("missing required param `dir`")
            && done.stderr.contains("pass it with --set dir=VALUE"),
        "{}",
        done.stderr
    );
    assert!(sandbox.run_dir().is_none(), "no run was recorded");
    // A param that may come from the environment says so.
    let hooked = sandbox.scratch().join("hooked.yaml");
    std::fs::write(
        &hooked,
        "version: 1\nname: x\nparams:\n  hook: {secret: true, env: RB_TEST_HOOK}\n\
         steps: {a: {type: shell, run: 'true'}}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&hooked)
        .arg("--state-dir")
        .arg(sandbox.state.path())
        .env_remove("RB_TEST_HOOK")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("missing required param `hook`; set $RB_TEST_HOOK or pass --set hook=VALUE"),
        "{stderr}"
    );
    // A params file's problem names the file, line and column.
    let params = sandbox.scratch().join("prod.params.yaml");
    std::fs::write(&params, "hook: [1, 2]\nhok: x\n").expect("write");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&hooked)
        .arg("--params")
        .arg(&params)
        .arg("--state-dir")
        .arg(sandbox.state.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error[RB501]: the value of `hook` must be a single value, found a list\n --> {}:1:7",
            params.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error[RB501]: unknown param `hok` (from --params file); did you mean `hook`?\n --> {}:2:1",
            params.display()
        )),
        "{stderr}"
    );
    let broken = sandbox.scratch().join("broken.yaml");
    std::fs::write(&broken, "version: 1\nname: x\nsteps: {a: {type: shell}}\n").expect("write");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&broken)
        .arg("--state-dir")
        .arg(sandbox.state.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn approve_reports_unknown_runs_and_gates_that_are_not_waiting() {
    let sandbox = Sandbox::new();
    let approve = |run: &str, gate: &str| {
        Command::new(BIN)
            .args(["approve", run, gate, "--state-dir"])
            .arg(sandbox.state.path())
            .output()
            .expect("approve")
    };
    let out = approve("20990101-000000-000000", "ask");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `20990101-000000-000000`"));
    let done = sandbox.run("gate-condition.yaml", &[]);
    assert_eq!(done.code, Some(0));
    let out = approve(&sandbox.run_id(), "ask");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has finished"), "{stderr}");
    assert!(
        !stderr.contains("resume"),
        "a finished run has nothing to resume"
    );
}

#[test]
fn a_run_that_cannot_overlap_steps_starts_no_worker_threads() {
    let threads = |fixture: &str, args: &[&str]| {
        let sandbox = Sandbox::new();
        let done = sandbox.run(fixture, args);
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        let counted = done.step_event("step_finished", "first")["outputs"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .parse::<usize>();
        counted.unwrap_or_else(|e| panic!("no thread count: {e}\n{}", done.journal_text))
    };
    // The engine's own thread, the journal's sync thread, and the writer
    // of stderr, a pipe here (none for a file or a terminal).
    assert_eq!(threads("threads-chain.yaml", &[]), 3);
    assert_eq!(threads("threads.yaml", &["--max-parallel", "1"]), 3);
    // Independent steps may run side by side, so they get worker threads.
    assert!(threads("threads.yaml", &[]) > 3);
}

/// The engine's descriptor table is sized for its parallel steps before
/// its threads start. Left to grow on demand, each doubling of a
/// multi-threaded process's table waits for an RCU grace period, and a
/// parent with few descriptors (`dash`) leaves a table of 64.
#[test]
fn the_descriptor_table_is_sized_for_the_parallel_steps_at_start() {
    for (args, at_least) in [(&[][..], 256), (&["--max-parallel", "64"][..], 512)] {
        let sandbox = Sandbox::new();
        let done = sandbox.run("descriptor-table.yaml", args);
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        let stdout = done.step_event("step_finished", "table")["outputs"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let slots: u32 = stdout
            .trim()
            .strip_prefix("FDSize:")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("not an FDSize line: {stdout:?}"));
        assert!(slots >= at_least, "{args:?}: {slots} slots");
    }
}

/// A rejection is final even where steps are retried by default: asking
/// again would let a second person overrule the first.
#[test]
fn a_rejected_gate_is_not_asked_again_by_a_retry() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("gate-with-default-retry.yaml", &[]);
    sandbox.wait_for_event("gate_waiting", |e| e["event"] == "gate_waiting");
    let out = Command::new(BIN)
        .args([
            "approve",
            &sandbox.run_id(),
            "ask",
            "--reject",
            "--state-dir",
        ])
        .arg(sandbox.state.path())
        .output()
        .expect("approve");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let started: Vec<_> = done
        .events("step_started")
        .into_iter()
        .filter(|e| e["step"] == "ask")
        .collect();
    assert_eq!(started.len(), 1, "{}", done.journal_text);
    assert_eq!(done.step_event("gate_decided", "ask")["approved"], false);
    assert_eq!(done.finished_status("ask"), "failed");
    assert_eq!(done.step_event("step_skipped", "after")["step"], "after");
}

/// When the main steps succeed, each `on_failure` step ends once, as
/// skipped for that reason, not again when its skipped need is seen.
#[test]
fn each_skipped_on_failure_step_is_reported_once() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("on-failure-chain.yaml", &["--output", "json"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    for step in ["notify", "page", "quiet"] {
        let skipped: Vec<_> = done
            .events("step_skipped")
            .into_iter()
            .filter(|e| e["step"] == step)
            .collect();
        assert_eq!(skipped.len(), 1, "{step}: {}", done.journal_text);
        assert_eq!(skipped[0]["reason"], "the main steps did not fail");
    }
    let stdout_skips = done.stdout.matches("\"step_skipped\"").count();
    assert_eq!(stdout_skips, 3, "{}", done.stdout);
}

/// An interrupt during cleanup changes how the run ends, and the cleanup
/// steps that start after it see so in `run.status`.
#[test]
fn run_status_follows_an_interrupt_during_on_failure() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn(
        "interrupt-during-on-failure.yaml",
        &["--set", &sandbox.dir_param()],
    );
    sandbox.wait_for_event("the first on_failure step", |e| {
        e["event"] == "step_started" && e["step"] == "first"
    });
    signal(&child, "INT");
    // The notice is printed as the engine is told; it acts on it at once,
    // while `first` still runs.
    let start = Instant::now();
    while !std::fs::read_to_string(sandbox.scratch().join("stderr"))
        .unwrap_or_default()
        .contains("SIGINT: no main step starts again")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no interrupt notice"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(sandbox.scratch().join("go"), "").expect("release the step");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(130), "{}", done.stderr);
    for step in ["second", "last"] {
        let finished = done.step_event("step_finished", step);
        assert_eq!(
            finished["outputs"]["stdout"], "status=interrupted",
            "{step}: {}",
            done.stderr
        );
    }
}

/// A secret's value refused from a params file is neither in the message
/// nor in the snippet of the file under it.
#[test]
fn a_refused_secret_in_a_params_file_is_not_shown() {
    let sandbox = Sandbox::new();
    let params = sandbox.scratch().join("params.yaml");
    std::fs::write(
        &params,
        "db_password: Hunter2Hunter2\npin: \"SeventyOne71\"\n",
    )
    .expect("params file");
    let params = params.to_str().expect("path").to_string();
    let done = sandbox.run("secret-params.yaml", &["--params", &params]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("params.yaml:1:14"), "{}", done.stderr);
    assert!(done.stderr.contains("params.yaml:2:6"), "{}", done.stderr);
    for value in ["Hunter2Hunter2", "SeventyOne71"] {
        assert!(!done.stderr.contains(value), "{value}:\n{}", done.stderr);
    }
}

#[test]
fn a_state_directory_that_cannot_be_made_is_said_once_in_words() {
    let sandbox = Sandbox::new();
    let file = sandbox.scratch().join("a-file");
    std::fs::write(&file, "").expect("write");
    let output = Command::new(BIN)
        .arg("run")
        .arg(fixture("parallel.yaml"))
        .arg("--state-dir")
        .arg(file.join("state"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run runbook");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot create directory"), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
}

#[test]
fn a_timed_out_step_stops_the_run_before_its_grace_is_over() {
    let sandbox = Sandbox::new();
    let done = sandbox.run("timeout-in-grace.yaml", &[]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let status = |id: &str| done.step_event("step_finished", id)["status"].clone();
    assert_eq!(status("stubborn"), "failed", "{}", done.stderr);
    assert_eq!(status("other"), "cancelled", "{}", done.stderr);
    let skip = done.step_event("step_skipped", "later");
    assert_eq!(
        skip["reason"], "run stopped: step `stubborn` failed",
        "{skip}"
    );
    assert!(!done.stderr.contains("later ran"), "{}", done.stderr);
}

/// `nohup runbook run FIXTURE`, its output in the scratch files.
fn spawn_under_nohup(sandbox: &Sandbox, name: &str) -> Child {
    let out = std::fs::File::create(sandbox.scratch().join("stdout")).expect("stdout file");
    let err = std::fs::File::create(sandbox.scratch().join("stderr")).expect("stderr file");
    Command::new("nohup")
        .arg(BIN)
        .arg("run")
        .arg(fixture(name))
        .arg("--state-dir")
        .arg(sandbox.state.path())
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn nohup runbook")
}

/// `nohup runbook run …` keeps running through the hang-up it was started
/// under `nohup` for: a SIGHUP inherited as ignored stays ignored.
#[test]
fn under_nohup_a_hangup_is_ignored() {
    let sandbox = Sandbox::new();
    let child = spawn_under_nohup(&sandbox, "nohup.yaml");
    sandbox.wait_for_event("short to start", |e| {
        e["event"] == "step_started" && e["step"] == "short"
    });
    signal(&child, "HUP");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(done.run_finished()["status"], "succeeded");
    assert_eq!(done.finished_status("after"), "succeeded");
    assert!(!done.stderr.contains("SIGHUP"), "{}", done.stderr);
}

/// Ctrl-D at a gate's question says that the terminal can no longer answer
/// and how to decide instead; the gate goes on waiting (here, until its
/// timeout rejects it).
#[test]
fn ctrl_d_at_a_gate_question_says_how_to_decide_instead() {
    let sandbox = Sandbox::new();
    let mut terminal = Terminal::run(&sandbox, "gate-eof.yaml", false);
    terminal.wait_for(|screen| screen.contains("[y/n]"));
    terminal.type_keys("\x04");
    terminal.wait_for(|screen| screen.contains("the terminal's input has ended"));
    let (succeeded, screen) = terminal.finish();
    assert!(!succeeded, "{screen}");
    assert!(screen.contains("runbook approve"), "{screen}");
}

/// Under `nohup` the steps do not inherit an ignored SIGHUP, so a step's
/// `stop_signal: SIGHUP` still stops it, without waiting out its grace.
#[test]
fn under_nohup_a_stop_signal_of_sighup_still_stops_a_step() {
    let sandbox = Sandbox::new();
    let child = spawn_under_nohup(&sandbox, "nohup-stop-signal.yaml");
    let done = sandbox.wait(child);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    let error = done.step_event("step_finished", "long")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.starts_with("timed out after 300ms"), "{error}");
    assert!(!error.contains("SIGKILL"), "{error}");
}

/// Ctrl-D ends the input of one question only: a terminal can be read
/// again, and the next gate's question takes its answer.
#[test]
fn after_ctrl_d_the_next_gate_question_is_still_answered_at_the_terminal() {
    let sandbox = Sandbox::new();
    let mut terminal = Terminal::run(&sandbox, "gate-eof-then-gate.yaml", false);
    terminal.wait_for(|screen| screen.contains("[y/n]"));
    terminal.type_keys("\x04");
    terminal.wait_for(|screen| screen.contains("approve `second` here? [y/n]"));
    terminal.type_line("y");
    let (succeeded, screen) = terminal.finish();
    assert!(succeeded, "{screen}");
    assert!(screen.contains("second approved by"), "{screen}");
}

/// A second Ctrl-C during a timed-out step's grace abandons its processes
/// but does not rewrite its failure as a cancellation.
#[test]
fn abandoning_a_timed_out_step_in_its_grace_keeps_it_failed() {
    let sandbox = Sandbox::new();
    let child = sandbox.spawn("timeout-in-grace.yaml", &[]);
    sandbox.wait_for_event("`other` to be cancelled by the timeout", |e| {
        e["event"] == "step_finished" && e["step"] == "other"
    });
    signal(&child, "INT");
    // Far enough apart not to count as one Ctrl-C delivered twice.
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, "INT");
    let done = sandbox.wait(child);
    let stubborn = done.step_event("step_finished", "stubborn");
    assert_eq!(stubborn["status"], "failed", "{}", done.stderr);
    assert!(
        stubborn["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("its last attempt timed out")),
        "{stubborn}"
    );
}
