//! `type: shell`: runs a script, streaming its output live and keeping a
//! bounded copy of it as the step's outputs.
//!
//! Every attempt runs as the leader of its own process group, so that a
//! timeout or cancellation reaches everything the script started:
//!
//! 1. When `ctx.cancelled()` fires, the whole group gets `stop_signal`
//!    (default SIGTERM).
//! 2. Output keeps being drained (and streamed) during the `grace` period
//!    (default 5 s), so a child that logs while shutting down never blocks
//!    on a full pipe and its last words are kept.
//! 3. If the group has not finished by then (leader exited and every pipe
//!    closed), it gets SIGKILL.
//!
//! A script's processes never outlive its step: when the script exits, its
//! output is drained for up to [`LEFTOVER_WINDOW`], then whatever is left in
//! its process group (a forgotten `sleep 600 &`) gets SIGKILL. If the step's
//! future is dropped mid-run, a drop guard SIGKILLs the group.
//!
//! Captured output: `stdout` and `stderr` keep at most the last
//! [`MAX_CAPTURED_BYTES`] of raw output each. When output was cut, the kept
//! part starts at the next line boundary and the output's first line is
//! `[runbook: output truncated, first N bytes dropped]`. `json` is `null` for
//! cut output (a JSON document missing its start cannot parse) and `lines`
//! never contains the note. Live lines longer than [`MAX_LINE_BYTES`] are
//! split; bytes that are not UTF-8 are replaced with U+FFFD.
//!
//! Unix only.

mod capture;
mod flood;
mod leftovers;
mod process_group;
mod program;

use async_trait::async_trait;
use capture::{Batch, CutMasks, LineSplitter, Tail};
use flood::FloodPipes;
use nix::sys::signal::Signal;
use process_group::ProcessGroup;
use program::Programs;
use runbook_engine::{Outputs, StepContext, StepExecutor, StepFailure, StepOutcome, Stream};
use runbook_model::{ShellStep, Step, StepKind, Typed};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::{sleep_until, timeout};

/// The interpreter used when a step sets no `shell`; the script is appended
/// as its last argument.
pub const DEFAULT_SHELL: &[&str] = &["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];

/// Time between the stop signal and SIGKILL when a step sets no `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How much of each stream (`stdout`, `stderr`) is kept as an output: the
/// last 1 MiB.
pub const MAX_CAPTURED_BYTES: usize = 1 << 20;

/// Longest line sent to the live output; longer lines arrive in pieces.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Most entries in the `lines` output: the last lines of the kept stdout.
pub const MAX_OUTPUT_LINES: usize = 10_000;

/// How long output is still drained after the script exits, waiting for
/// processes it left behind to close their end of the pipes, before those
/// processes are killed.
pub const LEFTOVER_WINDOW: Duration = Duration::from_millis(250);

/// How long output is drained after SIGKILL. Only a process that left the
/// group (`setsid`) while keeping our pipes open can outlast it; its output
/// is then abandoned.
const FINAL_DRAIN: Duration = Duration::from_secs(2);

/// How long what a script left in its group may take to leave it (`setsid`
/// between its fork and its call) before it is taken for a leftover.
const LEAVING_THE_GROUP: Duration = Duration::from_millis(100);

/// How soon a stopped step whose script has exited first looks whether the
/// rest of its process group is gone too; the looks then grow apart, up to
/// [`GROUP_POLL_MAX`].
const GROUP_POLL: Duration = Duration::from_millis(50);
const GROUP_POLL_MAX: Duration = Duration::from_secs(1);

/// Said when the step's output is held by a process out of reach of its
/// process group: the step ends without it.
const DETACHED_HOLDER: &str = "a process that left the step's process group (setsid) still holds its output: it is out of the step's reach, and the step stops reading it (its next write gets SIGPIPE)";

/// Lines of the script shown by `--dry-run`.
const DRY_RUN_PREVIEW_LINES: usize = 10;

/// Read size for the output pipes.
const READ_CHUNK: usize = 64 << 10;

/// Runs `type: shell` steps. One instance serves every step of a run; it
/// remembers where along `PATH` it found each step's program and how many
/// flooded pipes it has grown (clones share both).
#[derive(Clone, Debug, Default)]
pub struct ShellExecutor {
    programs: Programs,
    groups: std::sync::Arc<leftovers::GroupLog>,
    pipes: std::sync::Arc<FloodPipes>,
}

pub use leftovers::{Leftover, forget_groups, leftover_groups, stop_groups, stop_plan};

impl ShellExecutor {
    /// The executor.
    pub fn new() -> Self {
        ShellExecutor::default()
    }
}

#[async_trait]
impl StepExecutor for ShellExecutor {
    fn kind(&self) -> &'static str {
        "shell"
    }

    async fn run(&self, step: &Step, ctx: &StepContext) -> StepOutcome {
        let StepKind::Shell(shell) = &step.kind else {
            return StepOutcome::Failed(StepFailure::new(format!(
                "step `{}` is a `{}` step, not `shell`",
                step.id.value,
                step.kind.type_name()
            )));
        };
        let command = match Prepared::new(shell, ctx) {
            Ok(command) => command,
            Err(failure) => return StepOutcome::Failed(failure),
        };
        let read_only = match &shell.read_only {
            Some(value) => match ctx.render_typed("read_only", value) {
                Ok(read_only) => read_only,
                Err(failure) => return StepOutcome::Failed(failure),
            },
            None => false,
        };
        if ctx.dry_run() && !read_only {
            return StepOutcome::WouldRun(command.preview());
        }
        command.execute(self, ctx).await
    }
}

/// A rendered command, ready to spawn.
struct Prepared {
    argv: Vec<String>,
    script: String,
    workdir: Option<PathBuf>,
    success_exit_codes: Vec<i32>,
    stop_signal: Signal,
    grace: Duration,
}

/// How the process ended.
enum Ending {
    /// It exited by itself.
    Exited(std::io::Result<ExitStatus>),
    /// It was stopped because the attempt was cancelled.
    Stopped {
        /// Whether the grace period ran out and SIGKILL was needed.
        killed_after_grace: bool,
        /// `None` if the leader did not even die of SIGKILL in time.
        status: Option<std::io::Result<ExitStatus>>,
    },
}

/// Refuses a rendered value that holds a NUL byte, which an argument, an
/// environment variable or a path cannot carry.
fn without_nul(field: &str, value: &str) -> Result<(), StepFailure> {
    if value.contains('\0') {
        return Err(StepFailure::new(format!(
            "`{field}` rendered to text with a NUL byte, which a command line, an environment variable or a path cannot carry (a param or an output it reads holds one)"
        )));
    }
    Ok(())
}

impl Prepared {
    fn new(shell: &ShellStep, ctx: &StepContext) -> Result<Self, StepFailure> {
        let script = ctx.render_script("run", &shell.run)?;
        let argv = match &shell.shell {
            Some(argv) => argv
                .iter()
                .map(|t| ctx.render("shell", t))
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        };
        // The kernel takes arguments and the environment as C strings:
        // spawning would fail with a message that names neither.
        without_nul("run", &script)?;
        for word in &argv {
            without_nul("shell", word)?;
        }
        for (name, value) in ctx.env() {
            without_nul(&format!("env.{name}"), value)?;
        }
        if argv.first().is_none_or(|program| program.is_empty()) {
            return Err(StepFailure::new(
                "`shell` must start with the program to run, such as `bash`",
            ));
        }
        let workdir = match &shell.workdir {
            Some(t) => {
                let dir = ctx.render("workdir", t)?;
                without_nul("workdir", &dir)?;
                let dir = PathBuf::from(dir);
                // Checked here because a missing working directory makes
                // spawn fail with ENOENT, which reads like a missing shell.
                if !dir.is_dir() {
                    return Err(StepFailure::new(format!(
                        "workdir `{}` does not exist or is not a directory",
                        dir.display()
                    )));
                }
                Some(dir)
            }
            None => None,
        };
        let stop_signal = match &shell.stop_signal {
            Some(Typed::Literal(name)) => {
                process_group::parse_signal(&name.value).ok_or_else(|| {
                    StepFailure::new(format!("`stop_signal` `{}` is not a signal", name.value))
                })?
            }
            Some(Typed::Template(template)) => {
                let text = ctx.render("stop_signal", template)?;
                let name = text.trim();
                process_group::parse_rendered_signal(name).ok_or_else(|| {
                    StepFailure::new(format!(
                        "`stop_signal` (line {}) rendered to `{}`, which is not one of {}",
                        template.span.line,
                        ctx.redact(name),
                        runbook_model::SIGNALS.join(", ")
                    ))
                })?
            }
            None => Signal::SIGTERM,
        };
        let grace = match &shell.grace {
            Some(grace) => ctx.render_typed("grace", grace)?,
            None => DEFAULT_GRACE,
        };
        Ok(Prepared {
            argv,
            script,
            workdir,
            success_exit_codes: shell
                .success_exit_codes
                .as_ref()
                .map_or_else(|| vec![0], |codes| codes.value.clone()),
            stop_signal,
            grace,
        })
    }

    /// What `--dry-run` shows: the first lines of the rendered script.
    fn preview(&self) -> String {
        let lines: Vec<&str> = self.script.trim_end().lines().collect();
        let mut text = lines
            .iter()
            .take(DRY_RUN_PREVIEW_LINES)
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        if lines.len() > DRY_RUN_PREVIEW_LINES {
            text.push_str(&format!(
                "\n… ({} more lines)",
                lines.len() - DRY_RUN_PREVIEW_LINES
            ));
        }
        if let Some(dir) = &self.workdir {
            text.push_str(&format!("\n(in {})", dir.display()));
        }
        text
    }

    /// The command to spawn: `program` is the step's program itself or
    /// where along `PATH` it was found.
    fn command(&self, program: &OsStr, ctx: &StepContext) -> Command {
        let mut command = Command::new(program);
        command
            // The name as written, whatever path is spawned: the script's
            // `$0`, and what tells `bash` invoked as `sh` to be POSIX.
            .arg0(&self.argv[0])
            .args(&self.argv[1..])
            .arg(&self.script)
            .envs(ctx.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A new group led by the child: see the module docs.
            .process_group(0)
            // The group guard below does the real cleanup; this makes tokio
            // also reap the leader if the future is dropped.
            .kill_on_drop(true);
        if let Some(dir) = &self.workdir {
            command.current_dir(dir);
        }
        command
    }

    /// Spawns the step's program, found along the `PATH` the child gets
    /// (the step's or runbook's `env`, else ours) as [`Programs`] says.
    fn spawn(&self, programs: &Programs, ctx: &StepContext) -> std::io::Result<Child> {
        let name = &self.argv[0];
        let path: Option<OsString> = match ctx.env().iter().rev().find(|(k, _)| k == "PATH") {
            Some((_, value)) => Some(value.into()),
            None => std::env::var_os("PATH"),
        };
        if let (Some(path), Some(found)) = (&path, programs.resolve(name, path.as_deref())) {
            match self.command(found.as_os_str(), ctx).spawn() {
                Ok(child) => return Ok(child),
                // Whatever went wrong, the child's own search decides, as
                // if nothing had been looked up (see `program`).
                Err(_) => programs.give_up(name, path),
            }
        }
        self.command(OsStr::new(name), ctx).spawn()
    }

    async fn execute(self, executor: &ShellExecutor, ctx: &StepContext) -> StepOutcome {
        let ShellExecutor {
            programs,
            groups,
            pipes,
        } = executor;
        if ctx.cancelled().is_cancelled() {
            return StepOutcome::Failed(StepFailure::new("cancelled before the process started"));
        }
        let mut child = match self.spawn(programs, ctx) {
            Ok(child) => child,
            Err(error) => {
                return StepOutcome::Failed(StepFailure::new(format!(
                    "cannot start `{}`: {}",
                    self.argv[0],
                    runbook_model::io_error_words(&error)
                )));
            }
        };
        if let Some(pid) = child.id() {
            groups.record(ctx.run_dir(), ctx.step_id(), pid);
        }
        let group = child.id().and_then(ProcessGroup::new);
        let (Some(mut group), Some(stdout), Some(stderr)) =
            (group, child.stdout.take(), child.stderr.take())
        else {
            // Unreachable with piped stdio and a fresh child; kill_on_drop
            // takes care of the process.
            return StepOutcome::Failed(StepFailure::new(
                "the process started but its output pipes are missing",
            ));
        };

        let mut out_tail = Tail::new(MAX_CAPTURED_BYTES);
        let mut err_tail = Tail::new(MAX_CAPTURED_BYTES);
        let ending = {
            let pumps = async {
                tokio::join!(
                    pump(stdout, Stream::Stdout, &mut out_tail, pipes, ctx),
                    pump(stderr, Stream::Stderr, &mut err_tail, pipes, ctx),
                );
            };
            tokio::pin!(pumps);
            self.supervise(&mut child, &mut group, pumps, ctx).await
        };
        // Also covers a normal exit: leftovers of the script die with it.
        // Said, for the `kubectl port-forward … &` that a later step
        // expected to find. A process on its way out of the group
        // (`setsid cmd &` just before the script ends) is given a moment to
        // leave it, rather than be killed or named for nothing.
        if group.has_live_members() {
            tokio::time::sleep(LEAVING_THE_GROUP).await;
            if group.kill_leftovers() && matches!(ending, Ending::Exited(_)) {
                ctx.progress(
                    "killed what the script left running in its process group (a process meant to outlive its step must leave the group, with setsid)",
                );
            }
        } else {
            // Nothing left: no second look at the group, no kill.
            group.disarm();
        }

        let mut stdout = out_tail.finish();
        let mut stderr = err_tail.finish();
        // Output cut at its start may begin with the end of a secret, which
        // nothing downstream could recognise. Whole secrets stay: outputs
        // keep what the step wrote for later steps, and are masked where
        // they are printed or stored.
        for captured in [&mut stdout, &mut stderr] {
            if captured.dropped > 0
                && let Some(masked) = ctx.mask_cut_start(&captured.text)
            {
                captured.text = masked;
            }
        }
        let mut outputs = Outputs::new();
        let status = match &ending {
            Ending::Exited(Ok(status)) => Some(*status),
            Ending::Stopped {
                status: Some(Ok(status)),
                ..
            } => Some(*status),
            Ending::Exited(Err(_)) | Ending::Stopped { .. } => None,
        };
        let exit_code = status.and_then(|s| s.code());
        let json = if stdout.dropped == 0 {
            serde_json::from_str(&stdout.text).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        // Each line becomes its own JSON string, copied into events, the
        // journal and the template context; a megabyte of one-byte lines
        // would cost hundreds of megabytes that way. `stdout` keeps the text.
        // From the end: a megabyte of one-byte lines is half a million
        // lines, of which only the last are kept.
        let mut lines: Vec<Value> = stdout
            .text
            .lines()
            .rev()
            .take(MAX_OUTPUT_LINES)
            .map(|l| Value::String(l.to_string()))
            .collect();
        lines.reverse();
        outputs.insert("stdout".into(), Value::String(stdout.into_text_with_note()));
        outputs.insert("stderr".into(), Value::String(stderr.into_text_with_note()));
        outputs.insert(
            "exit_code".into(),
            exit_code.map_or(Value::Null, Value::from),
        );
        outputs.insert("json".into(), json);
        outputs.insert("lines".into(), Value::Array(lines));

        let message = match ending {
            Ending::Exited(Ok(status)) => match status.code() {
                Some(code) if self.success_exit_codes.contains(&code) => {
                    return StepOutcome::Succeeded(outputs);
                }
                // With codes of its own, say which were expected: `exit
                // code 0` alone reads like a success.
                Some(code) if self.success_exit_codes != [0] => {
                    let expected: Vec<String> =
                        self.success_exit_codes.iter().map(i32::to_string).collect();
                    format!(
                        "exit code {code}{}, not one of `success_exit_codes` [{}]{}",
                        signal_hint(code),
                        expected.join(", "),
                        last_words(&outputs, ctx)
                    )
                }
                Some(code) => format!(
                    "exit code {code}{}{}",
                    signal_hint(code),
                    last_words(&outputs, ctx)
                ),
                // An OOM kill's reason is often on the last line before it.
                None => format!(
                    "killed by signal {}{}",
                    status
                        .signal()
                        .map_or_else(|| "unknown".to_string(), process_group::signal_name),
                    last_words(&outputs, ctx)
                ),
            },
            Ending::Exited(Err(error)) => format!("lost track of the process: {error}"),
            Ending::Stopped {
                killed_after_grace: false,
                ..
            } => format!("stopped with {}", self.stop_signal.as_str()),
            Ending::Stopped {
                killed_after_grace: true,
                status,
            } => {
                let mut message = format!(
                    "killed with SIGKILL after {} grace",
                    humantime::format_duration(self.grace)
                );
                if status.is_none() {
                    message.push_str(" (the process did not exit even then)");
                }
                message
            }
        };
        StepOutcome::Failed(StepFailure::with_outputs(message, outputs))
    }

    /// Waits for the process while its output is pumped, stopping it when
    /// the attempt is cancelled.
    async fn supervise(
        &self,
        child: &mut Child,
        group: &mut ProcessGroup,
        mut pumps: Pin<&mut impl Future<Output = ()>>,
        ctx: &StepContext,
    ) -> Ending {
        // A completed `join!` must not be polled again, hence the flag.
        let mut drained = false;
        let exited = loop {
            tokio::select! {
                // An exit and a cancellation seen in the same turn: the
                // exit wins, since the script did finish.
                biased;
                status = child.wait() => break Some(status),
                () = pumps.as_mut(), if !drained => drained = true,
                () = ctx.cancelled().cancelled() => {
                    // The process may have exited before the reactor
                    // reported it. A script that finished is not stopped:
                    // reported as stopped, a step that made its change
                    // would be `cancelled`, and its rollback never run.
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(Ok(status)),
                        _ => break None,
                    }
                }
            }
        };
        if let Some(status) = exited {
            ctx.settle();
            if !drained && timeout(LEFTOVER_WINDOW, pumps.as_mut()).await.is_err() {
                if group.is_empty() {
                    // No signal to the group reaches what holds the pipes.
                    ctx.progress(DETACHED_HOLDER);
                } else {
                    // Something the script started still holds its stdout
                    // or stderr. Kill it so the pipes close and the step
                    // can end.
                    ctx.progress(
                        "the script exited but left processes holding its output; killing them",
                    );
                    group.kill_remaining();
                    if timeout(FINAL_DRAIN, pumps.as_mut()).await.is_err() {
                        ctx.progress(DETACHED_HOLDER);
                    }
                }
            }
            return Ending::Exited(status);
        }

        // Cancelled: signal the whole group, keep draining during the
        // grace, escalate to SIGKILL if anything is still around.
        group.signal(self.stop_signal);
        let deadline = runbook_engine::deadline_after(self.grace);
        let mut status = None;
        let mut poll = GROUP_POLL;
        let finished_in_grace = loop {
            if status.is_some() && (drained || group.is_empty()) {
                break true;
            }
            tokio::select! {
                s = child.wait(), if status.is_none() => status = Some(s),
                () = pumps.as_mut(), if !drained => drained = true,
                // Once the script is gone, whether the rest of its group
                // is: members leave without waking anything here. Each look
                // can read all of /proc, so they grow further apart.
                () = tokio::time::sleep(poll), if status.is_some() => {
                    poll = (poll * 2).min(GROUP_POLL_MAX);
                }
                () = sleep_until(deadline) => break false,
            }
        };
        if !finished_in_grace {
            group.kill_remaining();
        }
        if status.is_none() {
            status = timeout(FINAL_DRAIN, child.wait()).await.ok();
        }
        if !drained {
            let wait = if finished_in_grace {
                LEFTOVER_WINDOW
            } else {
                FINAL_DRAIN
            };
            if timeout(wait, pumps.as_mut()).await.is_err() {
                ctx.progress(DETACHED_HOLDER);
            }
        }
        Ending::Stopped {
            killed_after_grace: !finished_in_grace,
            status,
        }
    }
}

/// Reads one pipe to its end: every chunk goes to the tail (captured
/// output) and, split into lines, to the live output: the complete lines of
/// each read as one message, so the engine's cost follows the number of
/// reads, not the number of lines. Past the live output's allowance, a
/// chunk's lines are only counted. A flooded pipe is grown (see [`flood`]).
async fn pump(
    mut reader: impl AsyncRead + AsFd + Unpin,
    stream: Stream,
    tail: &mut Tail,
    pipes: &FloodPipes,
    ctx: &StepContext,
) {
    // Not zero-filled: `read_buf` reads into the spare capacity. Zeroing
    // 64 KiB twice per step (`vec![0; n]`) was a third of the engine's
    // instructions in a run of 200 no-op steps.
    let mut buffer = Vec::with_capacity(READ_CHUNK);
    let (end, start) = (
        |text: &str| ctx.redact_cut_end(text),
        |text: &str| ctx.redact_cut_start(text),
    );
    let mut lines = LineSplitter::new(MAX_LINE_BYTES).with_cut_masks(CutMasks {
        end: &end,
        start: &start,
    });
    let mut batch = Batch::default();
    let send = |batch: &mut Batch| ctx.output_lines(stream, batch.take());
    let mut grown = None;
    loop {
        buffer.clear();
        match reader.read_buf(&mut buffer).await {
            Ok(0) => break,
            Ok(_) => {
                tail.push(&buffer);
                if grown.is_none() && tail.total() >= flood::FLOOD_BYTES {
                    // Tried once: a refusal stands for the rest of the step.
                    grown = Some(pipes.grow(&reader));
                }
                if ctx.live_line_allowance() == 0 {
                    ctx.output_not_shown(lines.skip(&buffer));
                } else {
                    lines.feed(&buffer, &mut batch);
                    send(&mut batch);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            // A pipe read error means the pipe is unusable; what was read
            // so far is all there is.
            Err(_) => break,
        }
    }
    lines.finish(&mut batch);
    send(&mut batch);
}

/// How long the stderr line quoted in a failure may be.
const LAST_WORDS_CHARS: usize = 300;

/// `: LINE`, the last line the script wrote to stderr, which is usually
/// why it failed (`FATAL: cannot connect to db-primary:5432`); a bare
/// `exit code 2` sends the operator scrolling back through the output of
/// every step that ran alongside.
fn last_words(outputs: &Outputs, ctx: &StepContext) -> String {
    let Some(Value::String(stderr)) = outputs.get("stderr") else {
        return String::new();
    };
    let Some(line) = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        return String::new();
    };
    // Masked before it is cut: after the cut, a secret's beginning at the
    // end would no longer match and would be shown.
    let line = ctx.redact(line);
    // A carriage return or an escape sequence from the script would
    // rewrite the failure line on the terminal (or the window title); they
    // are shown as escapes instead.
    let visible: String = line
        .chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() && c != '\t' {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            shown
        })
        .collect();
    match visible.char_indices().nth(LAST_WORDS_CHARS) {
        Some((cut, _)) => format!(": {}…", &visible[..cut]),
        None => format!(": {visible}"),
    }
}

/// ` (128+SIGPIPE)` for an exit code a shell gives a command a signal
/// ended: `141` alone does not say that `head` closed the pipe.
fn signal_hint(code: i32) -> String {
    match code - 128 {
        signal @ 1..=64 => format!(" (128+{})", process_group::signal_name(signal)),
        _ => String::new(),
    }
}
