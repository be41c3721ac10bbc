//! Runs real processes through the shell executor: outputs, exit codes,
//! environment, quoting, cancellation of whole process trees, output floods
//! and live streaming.

use runbook_engine::{
    StepContext, StepContextBuilder, StepExecutor, StepMessage, StepOutcome, Stream,
};
use runbook_model::Step;
use runbook_step_shell::{MAX_CAPTURED_BYTES, ShellExecutor};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// A shell step from the YAML lines of its mapping (indented by 4 spaces).
/// The runbook declares one string param, `v`.
fn step(fields: &str) -> Step {
    let text = format!(
        "version: 1\nname: t\nparams:\n  v:\n    default: \"\"\nsteps:\n  s:\n    type: shell\n{fields}"
    );
    let loaded = runbook_model::load(Path::new("t.yaml"), &text);
    assert!(!loaded.has_errors(), "{:#?}\n{text}", loaded.diagnostics);
    let mut runbook = loaded.runbook.expect("valid runbook");
    runbook.steps.shift_remove("s").expect("step s")
}

/// A context whose `params.v` is `v`.
fn context(v: &str) -> StepContextBuilder {
    StepContextBuilder::new("s").context(json!({
        "params": {"v": v},
        "env": {},
        "steps": {},
        "run": {"id": "r1", "name": "t", "started_at": "", "dry_run": false},
    }))
}

async fn run(step: &Step, ctx: &StepContext) -> StepOutcome {
    ShellExecutor::new().run(step, ctx).await
}

fn succeeded(outcome: StepOutcome) -> serde_json::Map<String, Value> {
    match outcome {
        StepOutcome::Succeeded(outputs) => outputs,
        other => panic!("expected success, got {other:?}"),
    }
}

fn failed(outcome: StepOutcome) -> (String, serde_json::Map<String, Value>) {
    match outcome {
        StepOutcome::Failed(failure) => (failure.message, failure.outputs),
        other => panic!("expected failure, got {other:?}"),
    }
}

/// Whether `pid` is a live (not zombie) process.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized command.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Waits up to 10 s for `pid` to die.
async fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits up to 30 s for `path` to hold a pid.
async fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live lines a message carries, as `(step, stream, line)`: one for
/// [`StepMessage::Output`], all of a batch for [`StepMessage::Lines`], none
/// for progress.
fn lines_of(message: StepMessage) -> Vec<(String, Stream, String)> {
    match message {
        StepMessage::Output {
            step, stream, line, ..
        } => vec![(step, stream, line)],
        StepMessage::Lines {
            step, stream, text, ..
        } => {
            assert!(text.ends_with('\n'), "a batch ends with a newline");
            text.split_terminator('\n')
                .map(|line| (step.clone(), stream, line.to_string()))
                .collect()
        }
        StepMessage::Progress { .. } => Vec::new(),
    }
}

/// Waits up to 30 s for the line `want` on stdout.
async fn wait_for_line(messages: &mut UnboundedReceiver<StepMessage>, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no line `{want}` within 30 s"))
            .expect("channel open");
        if lines_of(message).iter().any(|(_, _, line)| line == want) {
            return;
        }
    }
}

fn unique(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()))
}

#[tokio::test]
async fn outputs_are_captured() {
    let step = step("    run: |\n      echo '{\"a\": [1, 2]}'\n      echo oops >&2\n");
    let (ctx, _messages) = context("").build();
    let outputs = succeeded(run(&step, &ctx).await);
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    assert_eq!(names, ["stdout", "stderr", "exit_code", "json", "lines"]);
    assert_eq!(outputs["stdout"], json!("{\"a\": [1, 2]}"));
    assert_eq!(outputs["stderr"], json!("oops"));
    assert_eq!(outputs["exit_code"], json!(0));
    assert_eq!(outputs["json"], json!({"a": [1, 2]}));
    assert_eq!(outputs["lines"], json!(["{\"a\": [1, 2]}"]));

    let step = self::step("    run: printf 'one\\ntwo\\n\\n'\n");
    let outputs = succeeded(run(&step, &ctx).await);
    assert_eq!(outputs["stdout"], json!("one\ntwo"));
    assert_eq!(outputs["json"], Value::Null);
    assert_eq!(outputs["lines"], json!(["one", "two"]));
    assert_eq!(outputs["stderr"], json!(""));
}

#[tokio::test]
async fn a_non_zero_exit_fails_and_keeps_outputs() {
    let step = step("    run: |\n      echo partial\n      echo 'bad thing' >&2\n      exit 3\n");
    let (ctx, _messages) = context("").build();
    let (message, outputs) = failed(run(&step, &ctx).await);
    // The last thing said on stderr is usually why.
    assert_eq!(message, "exit code 3: bad thing");
    assert_eq!(outputs["stdout"], json!("partial"));
    assert_eq!(outputs["stderr"], json!("bad thing"));
    assert_eq!(outputs["exit_code"], json!(3));
}

#[tokio::test]
async fn success_exit_codes_decide_success() {
    let (ctx, _messages) = context("").build();
    let step = self::step("    run: exit 3\n    success_exit_codes: [0, 3]\n");
    assert_eq!(succeeded(run(&step, &ctx).await)["exit_code"], json!(3));
    let step = self::step("    run: exit 0\n    success_exit_codes: [1]\n");
    assert_eq!(
        failed(run(&step, &ctx).await).0,
        "exit code 0, not one of `success_exit_codes` [1]"
    );
}

#[tokio::test]
async fn a_failure_names_the_signal_behind_a_shell_exit_code_and_cuts_long_lines() {
    let (ctx, _messages) = context("").build();
    // Not the script's last command, which the shell would run in its place.
    let step = self::step("    run: |\n      sh -c 'kill -PIPE $$'\n      exit $?\n");
    assert_eq!(
        failed(run(&step, &ctx).await).0,
        "exit code 141 (128+SIGPIPE)"
    );
    let long = "x".repeat(400);
    let step = self::step(&format!(
        "    run: |\n      echo {long} >&2\n      echo >&2\n      exit 1\n"
    ));
    let message = failed(run(&step, &ctx).await).0;
    assert_eq!(message, format!("exit code 1: {}…", "x".repeat(300)));
}

/// The quoted stderr line is masked before it is cut, so a secret across
/// the cut leaves no part of itself; control characters are shown as
/// escapes, not sent to the terminal.
#[tokio::test]
async fn the_quoted_stderr_line_hides_secrets_and_control_characters() {
    let secret = "s3cr3t-T0K3N";
    let redactor = runbook_engine::Redactor::new();
    redactor.add(secret);
    let (ctx, _messages) = context("").redactor(redactor).build();
    let step = self::step(&format!(
        "    run: |\n      printf '%0295d{secret}\\n' 0 >&2\n      exit 1\n"
    ));
    let message = failed(run(&step, &ctx).await).0;
    assert!(!message.contains("s3cr3"), "{message}");
    assert!(message.ends_with("00000***"), "{message}");
    let step = self::step(
        "    run: |\n      printf 'progress\\rdone \\033]0;title\\007\\n' >&2\n      exit 1\n",
    );
    let message = failed(run(&step, &ctx).await).0;
    assert_eq!(
        message,
        "exit code 1: progress\\rdone \\u{1b}]0;title\\u{7}"
    );
}

#[tokio::test]
async fn a_process_killed_by_a_signal_has_no_exit_code() {
    let killed = step("    run: kill -KILL $$\n");
    let (ctx, _messages) = context("").build();
    let (message, outputs) = failed(run(&killed, &ctx).await);
    assert_eq!(message, "killed by signal SIGKILL");
    assert_eq!(outputs["exit_code"], Value::Null);
    // What it said last before it was killed is quoted, as for an exit.
    let last_words = step("    run: echo 'out of memory' >&2; kill -KILL $$\n");
    let (message, _) = failed(run(&last_words, &ctx).await);
    assert_eq!(message, "killed by signal SIGKILL: out of memory");
}

#[tokio::test]
async fn env_workdir_and_shell_are_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let workdir = dir.path().canonicalize().expect("canonical");
    let step = step(&format!(
        "    workdir: {}\n    run: |\n      echo \"$GREETING $OTHER\"\n      pwd -P\n      test -n \"$PATH\"\n",
        workdir.display()
    ));
    let (ctx, _messages) = context("")
        .env(vec![
            ("GREETING".into(), "hello".into()),
            ("OTHER".into(), "a b".into()),
        ])
        .build();
    let outputs = succeeded(run(&step, &ctx).await);
    assert_eq!(
        outputs["lines"],
        json!(["hello a b", workdir.display().to_string()])
    );

    let step = self::step("    shell: [sh, -c]\n    run: echo \"$0\"\n");
    assert_eq!(succeeded(run(&step, &ctx).await)["stdout"], json!("sh"));

    let step = self::step("    workdir: /nonexistent/dir\n    run: \"true\"\n");
    let (message, _) = failed(run(&step, &ctx).await);
    assert_eq!(
        message,
        "workdir `/nonexistent/dir` does not exist or is not a directory"
    );

    let step = self::step("    shell: [/nonexistent/shell]\n    run: \"true\"\n");
    let (message, _) = failed(run(&step, &ctx).await);
    assert!(
        message.starts_with("cannot start `/nonexistent/shell`"),
        "{message}"
    );
}

#[tokio::test]
async fn quoted_params_are_inert_and_raw_params_are_not() {
    let pwned = unique("pwned");
    let value = format!("x'; touch {}; '", pwned.display());
    let step = step("    run: echo {{params.v}}\n");
    let (ctx, _messages) = context(&value).build();
    let outputs = succeeded(run(&step, &ctx).await);
    assert!(!pwned.exists(), "the param value ran as code");
    assert_eq!(outputs["stdout"], json!(value));

    // The author asked for raw insertion: the value is script.
    let raw = unique("raw");
    let step = self::step("    run: true {{{params.v}}}\n");
    let (ctx, _messages) = context(&format!("; touch {}", raw.display())).build();
    succeeded(run(&step, &ctx).await);
    assert!(raw.exists(), "raw insertion did not run");
    let _ = std::fs::remove_file(raw);
}

/// Characters that some quoting leaves bare but bash reads: brace
/// expansion splits `{a,b}` into two words, a `}` closes `${V:-…}` early,
/// and `.` or `+` after `=~` are a pattern, not text.
#[tokio::test]
async fn a_param_is_one_literal_word_wherever_bash_reads_words() {
    let script = "    run: |\n      unset V\n      printf '<%s>' {{params.v}} ${V:-{{params.v}}}\n      [[ {{params.v}} =~ {{params.v}} ]] && printf ' same'\n      [[ axb =~ {{params.v}} ]] && printf ' pattern' || true\n";
    for value in ["{old,keep}", "{1..3}", "x}-oops", "a.b", "a+b", "^", "it's"] {
        let step = step(script);
        let (ctx, _messages) = context(value).build();
        let outputs = succeeded(run(&step, &ctx).await);
        assert_eq!(
            outputs["stdout"],
            json!(format!("<{value}><{value}> same")),
            "value {value:?}"
        );
    }

    // A word of its own is a command, never an assignment; inside `${…}`
    // a value is never an operator, and a pattern takes only plain text.
    let script = "    run: |\n      {{params.v}} 2>/dev/null || true\n      V=a%x=y\n      printf '%s %s' \"${X-unset}\" ${V%{{params.v}}}\n";
    let (ctx, _messages) = context("x=y").build();
    let outputs = succeeded(run(&step(script), &ctx).await);
    assert_eq!(outputs["stdout"], json!("unset a%"));
    let (ctx, _messages) = context("X=set").build();
    let outputs = succeeded(run(&step(script), &ctx).await);
    assert_eq!(outputs["stdout"], json!("unset a%x=y"));
    let (ctx, _messages) = context("%x").build();
    let (message, _) = failed(run(&step(script), &ctx).await);
    assert!(message.contains("in the pattern of"), "{message}");
}

#[tokio::test]
async fn dry_run_lists_the_command_unless_read_only() {
    let marker = unique("dry-run");
    let step = step("    run: |\n      touch {{params.v}}\n      echo done\n");
    let (ctx, _messages) = context(&marker.display().to_string()).dry_run(true).build();
    match run(&step, &ctx).await {
        StepOutcome::WouldRun(text) => {
            assert_eq!(text, format!("touch {}\necho done", marker.display()));
        }
        other => panic!("expected WouldRun, got {other:?}"),
    }
    assert!(!marker.exists());

    let step = self::step("    read_only: true\n    run: echo looked\n");
    assert_eq!(succeeded(run(&step, &ctx).await)["stdout"], json!("looked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_whole_process_tree() {
    let pidfile = unique("pidfile");
    let step = step("    run: |\n      sleep 300 &\n      echo $! > {{params.v}}\n      wait\n");
    let cancel = CancellationToken::new();
    let (ctx, _messages) = context(&pidfile.display().to_string())
        .cancel(cancel.clone())
        .build();
    let task = tokio::spawn(async move { ShellExecutor::new().run(&step, &ctx).await });
    let grandchild = read_pid(&pidfile).await;
    assert!(is_alive(grandchild));

    cancel.cancel();
    let (message, outputs) = failed(task.await.expect("join"));
    // Not "killed with SIGKILL after 5s grace": SIGTERM alone did it.
    assert_eq!(message, "stopped with SIGTERM");
    assert_eq!(outputs["exit_code"], Value::Null);
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
    let _ = std::fs::remove_file(pidfile);
}

/// A step whose script has exited, but whose exit the runtime has not yet
/// reported, when the attempt is cancelled (another step failed at the same
/// moment): it finished, so it succeeded, and its rollback will run.
#[tokio::test(flavor = "current_thread")]
async fn a_script_that_exited_before_the_cancellation_was_seen_succeeded() {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let pidfile = unique("exited-pid");
    let step = step("    shell: [sh, -c]\n    run: echo $$ > {{params.v}}; echo done\n");
    let cancel = CancellationToken::new();
    let (ctx, _messages) = context(&pidfile.display().to_string())
        .cancel(cancel.clone())
        .build();
    let executor = ShellExecutor::new();
    let attempt = executor.run(&step, &ctx);
    tokio::pin!(attempt);
    // One poll spawns the script; nothing below yields to the runtime, so
    // the reactor cannot report the exit before the cancellation is seen.
    assert!(futures::poll!(attempt.as_mut()).is_pending());
    let pid = loop {
        match std::fs::read_to_string(&pidfile).map(|t| t.trim().parse::<i32>()) {
            Ok(Ok(pid)) => break nix::unistd::Pid::from_raw(pid),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    // Wait, without reaping, until the script has exited.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    waitid(Id::Pid(pid), flags).expect("waitid");
    cancel.cancel();
    let outputs = succeeded(attempt.await);
    assert_eq!(outputs["stdout"], json!("done"));
    assert_eq!(outputs["exit_code"], json!(0));
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_the_stop_signal_is_killed_after_the_grace() {
    let step = step(
        "    grace: 1s\n    run: |\n      trap '' TERM\n      echo ready\n      sleep 300\n      echo not-reached\n",
    );
    let cancel = CancellationToken::new();
    let (ctx, mut messages) = context("").cancel(cancel.clone()).build();
    let task = tokio::spawn(async move { ShellExecutor::new().run(&step, &ctx).await });
    wait_for_line(&mut messages, "ready").await;

    let started = Instant::now();
    cancel.cancel();
    let (message, outputs) = failed(task.await.expect("join"));
    let elapsed = started.elapsed();
    assert_eq!(message, "killed with SIGKILL after 1s grace");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
    assert_eq!(outputs["stdout"], json!("ready"));
    assert_eq!(outputs["exit_code"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_drained_during_the_grace_and_stop_signal_is_configurable() {
    let step = step(
        "    stop_signal: USR1\n    run: |\n      trap 'echo got-usr1; exit 0' USR1\n      echo ready\n      while true; do sleep 0.1; done\n",
    );
    let cancel = CancellationToken::new();
    let (ctx, mut messages) = context("").cancel(cancel.clone()).build();
    let task = tokio::spawn(async move { ShellExecutor::new().run(&step, &ctx).await });
    wait_for_line(&mut messages, "ready").await;
    cancel.cancel();
    let (message, outputs) = failed(task.await.expect("join"));
    assert_eq!(message, "stopped with SIGUSR1");
    assert_eq!(outputs["lines"], json!(["ready", "got-usr1"]));
    assert_eq!(outputs["exit_code"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_step_kills_its_process_group() {
    let pidfile = unique("pidfile-drop");
    let step = step("    run: |\n      sleep 300 &\n      echo $! > {{params.v}}\n      wait\n");
    let (ctx, _messages) = context(&pidfile.display().to_string()).build();
    let task = tokio::spawn(async move { ShellExecutor::new().run(&step, &ctx).await });
    let grandchild = read_pid(&pidfile).await;
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert!(gone(grandchild).await, "grandchild {grandchild} survived");
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_left_behind_do_not_hold_the_step() {
    let pidfile = unique("pidfile-leftover");
    // The background sleep keeps stdout open after the script exits.
    let step =
        step("    run: |\n      sleep 300 &\n      echo $! > {{params.v}}\n      echo bye\n");
    let (ctx, _messages) = context(&pidfile.display().to_string()).build();
    let started = Instant::now();
    let outputs = succeeded(run(&step, &ctx).await);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(outputs["stdout"], json!("bye"));
    let grandchild = read_pid(&pidfile).await;
    assert!(gone(grandchild).await, "leftover {grandchild} survived");
    let _ = std::fs::remove_file(pidfile);
}

/// The progress notes a step sent.
fn progress_notes(messages: &mut UnboundedReceiver<StepMessage>) -> Vec<String> {
    let mut notes = Vec::new();
    while let Ok(message) = messages.try_recv() {
        if let StepMessage::Progress { message, .. } = message {
            notes.push(message);
        }
    }
    notes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_script_leaves_running_is_killed_and_said_so() {
    let leaves = step("    run: |\n      sleep 300 >/dev/null 2>&1 &\n      echo started\n");
    let (ctx, mut messages) = context("").build();
    let outputs = succeeded(run(&leaves, &ctx).await);
    assert_eq!(outputs["stdout"], json!("started"));
    assert_eq!(
        progress_notes(&mut messages),
        [
            "killed what the script left running in its process group (a process meant to outlive its step must leave the group, with setsid)"
        ]
    );
    // Nothing left: nothing said.
    let alone = step("    run: echo alone\n");
    let (ctx, mut messages) = context("").build();
    succeeded(run(&alone, &ctx).await);
    assert!(progress_notes(&mut messages).is_empty());
}

/// `setsid cmd &` as a script's last words, the way to start something a
/// later step needs: the process is on its way out of the group as the
/// script ends, and must be neither killed nor named as killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_leaving_the_group_as_the_script_ends_is_left_alone() {
    for round in 0..3 {
        let pidfile = unique(&format!("pidfile-setsid-{round}"));
        let leaves = step(
            "    run: setsid sh -c 'echo $$ > {{params.v}}; exec sleep 300' >/dev/null 2>&1 </dev/null & echo x\n",
        );
        let (ctx, mut messages) = context(&pidfile.display().to_string()).build();
        succeeded(run(&leaves, &ctx).await);
        assert!(progress_notes(&mut messages).is_empty(), "round {round}");
        let detached = read_pid(&pidfile).await;
        assert!(is_alive(detached), "round {round}: killed");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(detached),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_file(pidfile);
    }
}

/// A process that left the group with `setsid` and holds the output is out
/// of the group's reach: the step is stopped by its stop signal alone (not
/// "killed after the grace", which would also take the whole grace), and
/// ends without that output, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_process_holding_the_output_is_named_not_waited_for() {
    let pidfile = unique("pidfile-detached");
    let step = step(
        "    run: |\n      setsid sh -c 'echo $$ > {{params.v}}; exec sleep 300' &\n      sleep 300\n",
    );
    let cancel = CancellationToken::new();
    let (ctx, mut messages) = context(&pidfile.display().to_string())
        .cancel(cancel.clone())
        .build();
    let task = tokio::spawn(async move {
        let outcome = ShellExecutor::new().run(&step, &ctx).await;
        (outcome, ctx)
    });
    let detached = read_pid(&pidfile).await;
    cancel.cancel();
    let (outcome, _ctx) = task.await.expect("join");
    let (message, _) = failed(outcome);
    assert_eq!(message, "stopped with SIGTERM");
    assert_eq!(
        progress_notes(&mut messages),
        [
            "a process that left the step's process group (setsid) still holds its output: it is out of the step's reach, and the step stops reading it (its next write gets SIGPIPE)"
        ]
    );
    assert!(is_alive(detached), "not ours to stop");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(detached),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = std::fs::remove_file(pidfile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_keeps_only_the_tail() {
    // 200 MB of 1000-byte lines, then a marker: the pipe must be drained as
    // fast as it fills, and only the last MiB kept.
    let step = step(
        "    run: |\n      line=$(printf '%01000d' 0)\n      yes \"$line\" | head -c 200000000 || true\n      echo\n      echo tail-marker\n",
    );
    let (ctx, mut messages) = context("").build();
    // The engine's side of the channel: consume live lines as they come.
    let consumer = tokio::spawn(async move {
        let mut lines = 0u64;
        let mut longest = 0;
        while let Some(message) = messages.recv().await {
            for (_, _, line) in lines_of(message) {
                lines += 1;
                longest = longest.max(line.len());
            }
        }
        (lines, longest)
    });
    let outputs = succeeded(run(&step, &ctx).await);
    drop(ctx);
    let (lines, longest) = consumer.await.expect("join");
    assert!(lines > 190_000, "{lines} live lines");
    assert_eq!(longest, 1000);

    let stdout = outputs["stdout"].as_str().expect("string");
    let (note, kept) = stdout.split_once('\n').expect("note line");
    assert!(
        note.starts_with("[runbook: output truncated, first ") && note.ends_with(" bytes dropped]"),
        "{note}"
    );
    assert!(
        kept.len() <= MAX_CAPTURED_BYTES,
        "{} bytes kept",
        kept.len()
    );
    assert!(
        kept.len() > MAX_CAPTURED_BYTES - 2000,
        "{} bytes kept",
        kept.len()
    );
    assert!(kept.ends_with("\ntail-marker"));
    let dropped: u64 = note
        .trim_start_matches("[runbook: output truncated, first ")
        .trim_end_matches(" bytes dropped]")
        .parse()
        .expect("number");
    // Every byte is either dropped or kept (kept + its trimmed newline).
    assert_eq!(dropped + kept.len() as u64 + 1, 200_000_000 + 1 + 12);
    assert_eq!(outputs["json"], Value::Null);
    let lines = outputs["lines"].as_array().expect("lines");
    assert_eq!(lines.last(), Some(&json!("tail-marker")));
    assert_eq!(lines[0].as_str().map(str::len), Some(1000));
}

/// Only the last MiB of output is kept; a secret cut by that limit leaves
/// no end of itself at the start of what was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_cut_by_the_kept_tail_leaves_no_part_of_itself() {
    let secret = "TOPSECRETPASSWORD1234";
    let kept_of_secret = 10;
    let step = step(&format!(
        "    run: |\n      head -c 100 /dev/zero | tr '\\0' A\n      printf '{secret}'\n      head -c {} /dev/zero | tr '\\0' B\n",
        MAX_CAPTURED_BYTES - kept_of_secret
    ));
    let redactor = runbook_engine::Redactor::new();
    redactor.add(secret);
    let (ctx, _messages) = context("").redactor(redactor).build();
    let outputs = succeeded(run(&step, &ctx).await);
    let stdout = outputs["stdout"].as_str().expect("stdout");
    let kept = stdout.split_once('\n').map_or(stdout, |(_, kept)| kept);
    assert!(kept.starts_with("***BBB"), "{}", &kept[..40]);
    assert!(!stdout.contains(&secret[secret.len() - kept_of_secret..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_pipe_is_grown_and_a_quiet_one_is_not() {
    // perl (perl-base is essential on Debian) asks for the size of the
    // script's stdout pipe (F_GETPIPE_SZ is 1032) and says it on stderr,
    // whose own pipe never floods.
    let size = r#"perl -e 'printf STDERR "%s %d\n", $ARGV[0], fcntl(STDOUT, 1032, 0)'"#;
    let step = step(&format!(
        "    run: |\n      head -c 100000 /dev/zero | tr '\\0' x\n      {size} quiet\n      head -c 2000000 /dev/zero | tr '\\0' y\n      {size} flooded\n"
    ));
    let (ctx, _messages) = context("").build();
    let outputs = succeeded(run(&step, &ctx).await);
    let stderr = outputs["stderr"].as_str().expect("string");
    let size_of = |name: &str| -> usize {
        stderr
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no size for {name} in {stderr:?}"))
    };
    // The most an unprivileged process may ask for; root may ask for more,
    // but the engine asks for 1 MiB.
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1 << 20);
    assert_eq!(size_of("flooded"), max.min(1 << 20), "{stderr}");
    assert!(size_of("quiet") < 1 << 20, "{stderr}");
    assert_eq!(
        outputs["stdout"]
            .as_str()
            .map(str::len)
            .map(|n| n > 1_000_000),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_while_the_process_runs() {
    let flag = unique("flag");
    let step = step(
        "    run: |\n      echo first\n      echo warn >&2\n      while [ ! -e {{params.v}} ]; do sleep 0.05; done\n      echo second\n",
    );
    let (ctx, mut messages) = context(&flag.display().to_string()).build();
    let task = tokio::spawn(async move { ShellExecutor::new().run(&step, &ctx).await });

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.recv())
            .await
            .expect("a line within 30 s")
            .expect("channel open");
        for (step, stream, line) in lines_of(message) {
            assert_eq!(step, "s");
            seen.push((stream, line));
        }
    }
    seen.sort_by_key(|(stream, _)| *stream == Stream::Stderr);
    assert_eq!(
        seen,
        [
            (Stream::Stdout, "first".to_string()),
            (Stream::Stderr, "warn".to_string())
        ]
    );
    // The script cannot have finished: it waits for the flag.
    assert!(!task.is_finished());
    std::fs::write(&flag, "").expect("flag");
    let outputs = succeeded(task.await.expect("join"));
    assert_eq!(outputs["lines"], json!(["first", "second"]));
    let _ = std::fs::remove_file(flag);
}

#[tokio::test]
async fn lines_keeps_the_last_lines_only() {
    let step = step("    run: seq 1 25000\n");
    let (ctx, _messages) = context("").build();
    let outputs = succeeded(run(&step, &ctx).await);
    let lines = outputs["lines"].as_array().expect("lines is a list");
    assert_eq!(lines.len(), runbook_step_shell::MAX_OUTPUT_LINES);
    assert_eq!(lines.last(), Some(&json!("25000")));
    assert_eq!(lines.first(), Some(&json!("15001")));
    // stdout still has every kept line.
    assert!(
        outputs["stdout"]
            .as_str()
            .expect("text")
            .starts_with("1\n2\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_live_output_keeps_every_line_in_order() {
    // 200,000 short lines: they arrive batched (far fewer messages than
    // lines), each exactly once and in order, with an empty line, a CRLF
    // line and a last line without a newline kept as lines of their own.
    let step = step(
        "    run: |\n      seq 1 200000\n      echo\n      printf 'crlf\\r\\n'\n      printf 'no-newline'\n",
    );
    let (ctx, mut messages) = context("").build();
    let consumer = tokio::spawn(async move {
        let mut lines = Vec::new();
        let mut batches = 0usize;
        while let Some(message) = messages.recv().await {
            if matches!(message, StepMessage::Lines { .. }) {
                batches += 1;
            }
            for (step, stream, line) in lines_of(message) {
                assert_eq!(step, "s");
                assert_eq!(stream, Stream::Stdout);
                lines.push(line);
            }
        }
        (lines, batches)
    });
    let outputs = succeeded(run(&step, &ctx).await);
    drop(ctx);
    let (lines, batches) = consumer.await.expect("join");
    let mut expected: Vec<String> = (1..=200_000).map(|i| i.to_string()).collect();
    expected.extend(["".to_string(), "crlf".to_string(), "no-newline".to_string()]);
    assert_eq!(lines.len(), expected.len());
    assert!(lines == expected, "lines out of order or altered");
    // 1.3 MB read in pipe-sized chunks: a few hundred batches at most.
    assert!(
        batches < 10_000,
        "{batches} batches for {} lines",
        lines.len()
    );
    assert_eq!(
        outputs["lines"].as_array().and_then(|l| l.last()),
        Some(&json!("no-newline"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_written_in_two_reads_arrives_whole() {
    // The line is written in two parts with a pause between them, so the
    // pipe is read twice; live output still gets it as one line (which is
    // what lets redaction see a secret split across the reads).
    let step = step(
        "    run: |\n      printf 'first half '\n      sleep 0.3\n      printf 'second half\\nnext\\n'\n",
    );
    let (ctx, mut messages) = context("").build();
    let consumer = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(message) = messages.recv().await {
            lines.extend(lines_of(message).into_iter().map(|(_, _, l)| l));
        }
        lines
    });
    let outputs = succeeded(run(&step, &ctx).await);
    drop(ctx);
    assert_eq!(
        consumer.await.expect("join"),
        ["first half second half", "next"]
    );
    assert_eq!(outputs["stdout"], json!("first half second half\nnext"));
}

/// An executable file `dir/name` holding `text`.
fn executable(dir: &Path, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write program");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test]
async fn the_program_is_looked_up_along_the_path_the_child_gets() {
    let dir = tempfile::tempdir().expect("temp dir");
    executable(dir.path(), "sh", "#!/bin/sh\necho \"fake sh: $*\"\n");
    // No `#!`: only the C library's exec fallback runs it (through /bin/sh).
    executable(dir.path(), "bare", "echo \"bare: $*\"\n");
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let executor = ShellExecutor::new();
    let step = self::step("    shell: [sh, -c]\n    run: echo real\n");

    // One executor serves every step of a run: the answer for one PATH
    // must not leak into a step with another.
    let (plain, _messages) = context("").build();
    let (faked, _messages) = context("").env(vec![("PATH".into(), path.clone())]).build();
    for _ in 0..2 {
        let outputs = succeeded(executor.run(&step, &faked).await);
        assert_eq!(outputs["stdout"], json!("fake sh: -c echo real"));
        let outputs = succeeded(executor.run(&step, &plain).await);
        assert_eq!(outputs["stdout"], json!("real"));
    }

    let bare = self::step("    shell: [bare, -c]\n    run: \"true\"\n");
    for _ in 0..2 {
        let outputs = succeeded(executor.run(&bare, &faked).await);
        assert_eq!(outputs["stdout"], json!("bare: -c true"));
    }

    // Missing, wherever the PATH comes from: the same clear failure.
    let missing = self::step("    shell: [no-such-shell-here, -c]\n    run: \"true\"\n");
    for ctx in [&plain, &faked, &plain] {
        let (message, _) = failed(executor.run(&missing, ctx).await);
        assert_eq!(
            message,
            "cannot start `no-such-shell-here`: No such file or directory"
        );
    }
}
