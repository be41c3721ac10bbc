//! `runbook run`: load, validate, resolve params, then run the runbook with
//! every step kind wired in, reporting to stderr, stdout (`--output json`)
//! and the journal, and handling SIGINT/SIGTERM.

use crate::exit::ExitCode;
use crate::plan_cmd::{checked_runbook, resolve_params};
use crate::prompt::TerminalPrompt;
use crate::reporter::{HumanReporter, RunSink, Screen};
use anyhow::Context as _;
use clap::ValueEnum;
use indexmap::IndexMap;
use runbook_engine::state_dir;
use runbook_engine::{Engine, Journal, RunDir, RunOptions, RunStatus, StopSignals};
use runbook_model::{Rollback, Runbook, Step, StepKind};
use runbook_step_gate::{FileApprovals, WarningSink};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `runbook run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The runbook file.
    pub file: PathBuf,
    /// Set a param: `--set name=value` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// A YAML file mapping param names to values.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Run only read-only work; list what every other step would do.
    #[arg(long)]
    pub dry_run: bool,
    /// Approvals, parallelism, rollbacks, output and state dir.
    #[command(flatten)]
    pub engine: EngineFlags,
}

/// Output formats of `runbook run`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Progress for people on stderr only.
    Human,
    /// NDJSON events on stdout, progress on stderr.
    Json,
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (source, loaded) = runbook_model::load_file(&args.file);
    let Some(runbook) = checked_runbook(&args.file, &source, loaded, "; nothing was run") else {
        return Ok(ExitCode::Usage);
    };
    let Some(params) = resolve_params(
        &runbook,
        &args.sets,
        args.params.as_deref(),
        "; nothing was run",
    )?
    else {
        return Ok(ExitCode::Usage);
    };
    if let Err(message) = check_approvals(&runbook, &args.engine.approve) {
        errln!("error: {message}; nothing was run");
        return Ok(ExitCode::Usage);
    }
    // The hash of the very text that was validated: `resume` refuses a file
    // that changed since.
    let sha256 = hex(&Sha256::digest(source.as_bytes()));
    let file = std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone());

    let state = state_dir(args.engine.state_dir.as_deref(), &|name| {
        std::env::var(name).ok()
    })?;
    let run_dir = RunDir::create(&state)?;
    // Held until the process exits: `resume` and `runs` tell a live run
    // from one whose engine died by this lock.
    let _lock = run_dir.lock()?;
    let journal = Journal::create(&run_dir)?;
    let journal_path = journal.path().display().to_string();

    let screen = Screen::detect();
    let dry = if args.dry_run {
        " as a dry run: nothing is changed"
    } else {
        ""
    };
    screen.line(&format!(
        "run {} started{dry}; journal: {journal_path}",
        run_dir.id
    ));
    let mut options = RunOptions::new(&run_dir);
    options.params = params;
    options.dry_run = args.dry_run;
    options.file = Some(file);
    options.runbook_sha256 = Some(sha256);
    launch(Launch {
        runbook,
        run_dir: &run_dir,
        journal,
        options,
        screen,
        hint: approve_hint(&run_dir, args.engine.state_dir.as_deref()),
        flags: &args.engine,
    })
}

/// The flags `run` and `resume` share: how the engine runs and reports.
#[derive(clap::Args)]
pub struct EngineFlags {
    /// Approve this gate in advance (repeatable). On `resume`, also answers
    /// "it completed" for an interrupted `idempotent: false` step of this id.
    #[arg(long = "approve", value_name = "ID")]
    pub approve: Vec<String>,
    /// Approve every manual gate in advance (never answers whether an
    /// interrupted `idempotent: false` step completed).
    #[arg(long)]
    pub approve_all: bool,
    /// Most steps running at once.
    #[arg(long, value_name = "N", default_value_t = runbook_engine::DEFAULT_MAX_PARALLEL,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_parallel: u32,
    /// Do not run rollbacks after a failure.
    #[arg(long)]
    pub no_rollback: bool,
    /// Most lines of one step's live output shown per second (0: no
    /// limit); a line longer than 256 bytes counts as one per 256 bytes.
    /// The rest are counted as not shown; the step's outputs keep the last
    /// 1 MiB of each stream either way.
    #[arg(long, value_name = "N",
          default_value_t = runbook_engine::DEFAULT_LIVE_LINES_PER_SECOND)]
    pub live_lines: u64,
    /// `json`: one event per line on stdout (progress stays on stderr).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Where runs are recorded (default: $RUNBOOK_STATE_DIR,
    /// $XDG_STATE_HOME/runbook, ~/.local/state/runbook).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// A run ready to go: its journal open and its lock held by the caller.
pub(crate) struct Launch<'a> {
    /// Owned: it moves into the engine's task (a 10,000-step runbook is
    /// tens of megabytes, not worth a copy).
    pub runbook: runbook_model::Runbook,
    pub run_dir: &'a RunDir,
    pub journal: Journal,
    /// Everything but approvals, stop signals, parallelism and rollbacks,
    /// which come from `flags`.
    pub options: RunOptions,
    pub screen: Arc<Screen>,
    /// How to approve a gate from another shell.
    pub hint: String,
    pub flags: &'a EngineFlags,
}

/// Runs the engine with every step kind, reporting to the terminal, stdout
/// (`--output json`) and the journal, until the run ends or is interrupted.
pub(crate) fn launch(launch: Launch<'_>) -> anyhow::Result<ExitCode> {
    let Launch {
        runbook,
        run_dir,
        journal,
        mut options,
        screen,
        hint,
        flags,
    } = launch;
    let journal_path = journal.path().display().to_string();
    let runtime = runtime_for(&runbook, flags.max_parallel)?;
    let summary = runtime.block_on(async {
        let stop = StopSignals::new();
        listen_for_signals(stop.clone(), screen.clone())?;
        let warnings: WarningSink = {
            let screen = screen.clone();
            Arc::new(move |message: String| screen.line(&format!("warning: {message}")))
        };
        let mut approvals = FileApprovals::new(run_dir.path.clone())
            .approve(flags.approve.iter().cloned())
            .approve_all(flags.approve_all)
            .warnings(warnings);
        if std::io::stdin().is_terminal() {
            approvals = approvals.prompt(Arc::new(TerminalPrompt::new(screen.clone())));
        }
        options.max_parallel = flags.max_parallel as usize;
        // A resume keeps the run's own `--no-rollback`; the flag adds to it.
        options.no_rollback |= flags.no_rollback;
        options.live_lines_per_second = flags.live_lines;
        options.approvals = Arc::new(approvals);
        options.stop = stop;

        let first_started = options
            .resume
            .as_ref()
            .and_then(|point| point.first_start.as_ref())
            .map(|event| event.ts.clone());
        let human = HumanReporter::new(screen.clone(), hint)
            .dry_run(options.dry_run)
            .first_started(first_started);
        let mut sink = RunSink::new(human, flags.output == OutputFormat::Json, journal);
        // With worker threads, the dispatcher runs as a task on one of
        // them, not on this thread (block_on's): the steps it spawns then
        // start on the same worker and their completions wake it there,
        // instead of every start and end of a step waking another thread.
        let engine_task = tokio::spawn(async move {
            let summary = engine().run(&runbook, options, &mut sink).await;
            // The process exits right after the run: freeing a large
            // runbook piece by piece only delays that (a 10,000-step
            // run's exit took 24 ms longer), and it holds no resource.
            std::mem::forget(runbook);
            (summary, sink)
        });
        let (summary, mut sink) = match engine_task.await {
            Ok(done) => done,
            // Steps may have run: not the exit status of a runbook that
            // was refused before anything ran.
            Err(error) => {
                screen.line(&format!(
                    "error: the engine stopped unexpectedly ({error}); steps may have run and may still be running: see the journal {journal_path}"
                ));
                return anyhow::Ok(None);
            }
        };
        sink.human.summary(&summary, &journal_path);
        let unwritten = sink.journal_unwritten();
        if let Some(what) = sink.journal_tampered() {
            // Whatever is left of it cannot be trusted to resume from.
            let why = format!("{what}; it does not say everything that ran");
            let marked = run_dir.mark_journal_incomplete(&why).is_ok();
            screen.line(&format!(
                "warning: {why}{}",
                if marked {
                    "; `runbook resume` will refuse this run"
                } else {
                    ""
                }
            ));
        } else if unwritten > 0 {
            // The journal now looks like that of an engine that died: a
            // resume would run finished steps again. Say it where resume
            // and runs will look.
            let why = format!(
                "{unwritten} events of this run could not be written to its journal (see the run's warnings); it does not say everything that ran"
            );
            let marked = run_dir.mark_journal_incomplete(&why).is_ok();
            screen.line(&format!(
                "warning: {unwritten} events could not be written to the journal {journal_path}, which does not say everything that ran{}",
                if marked {
                    "; `runbook resume` will refuse this run"
                } else {
                    "; do not resume this run: it would run finished steps again"
                }
            ));
        } else if sink.journal_failures() > 0 {
            screen.line(
                "note: the journal fell behind while it could not be written; every event was written once there was room",
            );
        }
        // Written out before anything else is printed or the process ends.
        sink.flush_output();
        anyhow::Ok(Some(summary))
    })?;
    let Some(summary) = summary else {
        runtime.shutdown_background();
        return Ok(ExitCode::Failure);
    };
    // Steps that were abandoned may still be finishing their cleanup in
    // the background; the run is over, so do not wait for them.
    runtime.shutdown_background();
    let code = match summary.status {
        RunStatus::Succeeded => ExitCode::Success,
        RunStatus::Failed => ExitCode::Failure,
        RunStatus::Interrupted => ExitCode::Interrupted,
    };
    // Likewise: the process exits next, and the summary holds no resource.
    std::mem::forget(summary);
    Ok(code)
}

/// The async runtime for a run. A run in which no two steps can ever run
/// at once (each step needs the one before it, or `--max-parallel 1`) runs
/// on this thread alone: starting the worker threads was about a tenth of a
/// one-step run's time (0.3 to 0.7 ms of 6). Any other run gets a worker
/// per core, so that steps start their processes side by side: starting a
/// process holds its thread until the child has called `exec`, and on one
/// thread a 10,000-step runbook of wide fan-outs took 6 % longer.
fn runtime_for(runbook: &Runbook, max_parallel: u32) -> anyhow::Result<tokio::runtime::Runtime> {
    let one_at_a_time = max_parallel == 1
        || [&runbook.steps, &runbook.on_failure, &runbook.finally]
            .into_iter()
            .all(each_needs_the_one_before);
    let mut builder = if one_at_a_time {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Whether every step needs the step listed just before it, which makes
/// the steps run one at a time. Only the file's order is tried: a chain
/// written in another order keeps the worker threads (slower, never
/// wrong), where finding any order would cost a pass over the graph at
/// every start (10 ms for 10,000 steps).
fn each_needs_the_one_before(steps: &IndexMap<String, Step>) -> bool {
    steps
        .values()
        .zip(steps.values().skip(1))
        .all(|(before, step)| step.needs.iter().any(|need| need.value == before.id.value))
}

/// Every step kind this build can run.
fn engine() -> Engine {
    Engine::new()
        .with_executor(Arc::new(runbook_step_shell::ShellExecutor::new()))
        .with_executor(Arc::new(runbook_step_gate::GateExecutor::new()))
        .with_executor(Arc::new(runbook_step_http::HttpCheckExecutor::new()))
        .with_executor(Arc::new(runbook_step_kubectl::KubectlExecutor::new()))
}

/// `--approve ID` must name a gate of the runbook: a typo at 3 a.m. would
/// otherwise leave the real gate waiting for its whole timeout.
fn check_approvals(runbook: &Runbook, approve: &[String]) -> Result<(), String> {
    let mut gates = Vec::new();
    for step in runbook
        .steps
        .values()
        .chain(runbook.on_failure.values())
        .chain(runbook.finally.values())
    {
        if matches!(step.kind, StepKind::Gate(_)) {
            gates.push(step.id.value.clone());
        }
        if let Some(Rollback::Step(rollback)) = &step.rollback
            && matches!(rollback.kind, StepKind::Gate(_))
        {
            gates.push(format!("{}.rollback", step.id.value));
        }
    }
    for id in approve {
        if !gates.contains(id) {
            let known = if gates.is_empty() {
                "the runbook has no gates".to_string()
            } else {
                format!("its gates are {}", gates.join(", "))
            };
            return Err(format!(
                "--approve {id}: no gate `{id}` in the runbook ({known})"
            ));
        }
    }
    Ok(())
}

/// `runbook approve RUN_ID`, with `--state-dir` when the run uses one that
/// the approver's environment would not find by itself.
pub(crate) fn approve_hint(run_dir: &RunDir, state_dir: Option<&std::path::Path>) -> String {
    command_hint("approve", &run_dir.id, state_dir)
}

/// `runbook VERB RUN`, with `--state-dir` when the command that prints the
/// hint was given one: pasted without it, the hint would find no run.
pub(crate) fn command_hint(verb: &str, run: &str, state_dir: Option<&std::path::Path>) -> String {
    match state_dir {
        Some(dir) => {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            format!(
                "runbook {verb} --state-dir {} {run}",
                shell_words::quote(&dir.display().to_string()),
            )
        }
        None => format!("runbook {verb} {run}"),
    }
}

/// SIGINT, SIGTERM and SIGHUP: the first cancels the running steps and
/// lets the cleanup run. Only a person abandons the cleanup: a second
/// SIGINT does (a third exits at once), while another SIGTERM or SIGHUP
/// (a service manager repeating itself, a closing SSH session whose shell
/// passes the hang-up on) leaves it running. Signals within
/// [`SAME_ACTION`] of the last one that counted are one action delivered
/// twice: a Ctrl-C reaches both `timeout(1)` and the engine, and `timeout`
/// forwards it. Steps run in their own process groups, so a terminal's
/// Ctrl-C reaches only the engine, which decides what the steps get.
/// SIGHUP counts as SIGTERM: by default it would kill the engine on the
/// spot, leaving its steps running, the journal without an end and no
/// rollback run. Under `nohup` a SIGHUP does nothing (see [`crate::nohup`]).
fn listen_for_signals(stop: StopSignals, screen: Arc<Screen>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // Asked before the handler below replaces what was inherited.
    let hangup_ignored = crate::nohup::hangup_ignored();
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    // Under a file-size limit (`ulimit -f`) a journal write past it would
    // kill the engine on the spot, its rollbacks unrun. Caught (a handler,
    // unlike an ignored signal, is not passed on to the steps), the write
    // fails with EFBIG instead and the journal's full-disk handling applies.
    // The handler stays installed when the stream is dropped.
    let _ = signal(SignalKind::from_raw(nix::libc::SIGXFSZ)).context("cannot handle SIGXFSZ")?;
    tokio::spawn(async move {
        let mut requests = StopRequests::default();
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
                () = hangup_counted(&mut hangup, hangup_ignored) => "SIGHUP",
            };
            match requests.on(name, std::time::Instant::now()) {
                StopVerdict::SameAction => {}
                StopVerdict::CleanupGoesOn => screen.line(&format!(
                    "{name}: the cleanup goes on (only a second Ctrl-C, SIGINT, abandons it)"
                )),
                StopVerdict::AlreadyAbandoned => screen.line(&format!(
                    "{name}: the cleanup is already abandoned (a third Ctrl-C exits at once)"
                )),
                StopVerdict::Counted => match stop.interrupt() {
                    1 => screen.line(&format!(
                        // True in any phase: once cleanup has begun there is
                        // no main step left to cancel, and cleanup goes on.
                        "{name}: no main step starts again and running ones are cancelled; the cleanup that is due (rollbacks, on_failure, finally) still runs ({} to abandon it)",
                        if name == "SIGINT" { "Ctrl-C again" } else { "a Ctrl-C" }
                    )),
                    2 => screen.line(&format!(
                        "{name}: abandoning rollbacks and cleanup (a third stop signal exits at once)"
                    )),
                    _ => {
                        screen.line(&format!("{name} a third time: exiting now"));
                        // A reader that is not reading must not hold this up.
                        crate::pipe_writer::flush_all(Some(std::time::Duration::from_secs(1)));
                        std::process::exit(130);
                    }
                },
            }
        }
    });
    Ok(())
}

/// The next SIGHUP that counts: never, under `nohup`. The handler is
/// installed all the same (and SIGHUPs dropped here) rather than the signal
/// left ignored, because an ignored signal is passed on to the steps, where
/// `stop_signal: SIGHUP` would then do nothing; a handler is not.
pub(crate) async fn hangup_counted(signal: &mut tokio::signal::unix::Signal, ignored: bool) {
    loop {
        if signal.recv().await.is_none() {
            // The runtime is shutting down; nothing arrives any more.
            std::future::pending::<()>().await;
        }
        if !ignored {
            return;
        }
    }
}

/// What one stop signal does, given the ones before it.
#[derive(Debug, PartialEq, Eq)]
enum StopVerdict {
    /// The last counted one, delivered again.
    SameAction,
    /// A service manager or a hang-up repeating itself during the cleanup.
    CleanupGoesOn,
    /// Another SIGTERM or SIGHUP once the cleanup was abandoned.
    AlreadyAbandoned,
    /// A step up: cancel, abandon, exit.
    Counted,
}

/// The stop signals counted so far (see [`listen_for_signals`]).
#[derive(Default)]
struct StopRequests {
    last_counted: Option<std::time::Instant>,
    counted: u32,
}

impl StopRequests {
    fn on(&mut self, signal: &str, now: std::time::Instant) -> StopVerdict {
        if self
            .last_counted
            .is_some_and(|at| now.saturating_duration_since(at) < SAME_ACTION)
        {
            return StopVerdict::SameAction;
        }
        match (self.counted, signal) {
            (0, _) | (_, "SIGINT") => {
                self.last_counted = Some(now);
                self.counted += 1;
                StopVerdict::Counted
            }
            (1, _) => StopVerdict::CleanupGoesOn,
            _ => StopVerdict::AlreadyAbandoned,
        }
    }
}

/// Signals closer together than this are one action delivered twice.
const SAME_ACTION: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::{SAME_ACTION, StopRequests, StopVerdict};
    use std::time::{Duration, Instant};

    #[test]
    fn only_a_person_escalates_a_stop() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut requests = StopRequests::default();
        // One Ctrl-C reaching the engine twice (the terminal, and timeout(1)
        // forwarding it) is one.
        assert_eq!(requests.on("SIGINT", at(0)), StopVerdict::Counted);
        assert_eq!(requests.on("SIGINT", at(5)), StopVerdict::SameAction);
        // A service manager repeating SIGTERM, an SSH hang-up passed on.
        assert_eq!(
            requests.on("SIGTERM", at(1_000)),
            StopVerdict::CleanupGoesOn
        );
        assert_eq!(requests.on("SIGHUP", at(1_100)), StopVerdict::CleanupGoesOn);
        // A second Ctrl-C abandons the cleanup; after it, others say so.
        assert_eq!(requests.on("SIGINT", at(2_000)), StopVerdict::Counted);
        assert_eq!(
            requests.on("SIGTERM", at(3_000)),
            StopVerdict::AlreadyAbandoned
        );
        assert_eq!(requests.on("SIGINT", at(3_100)), StopVerdict::Counted);

        let mut requests = StopRequests::default();
        assert_eq!(requests.on("SIGTERM", at(0)), StopVerdict::Counted);
        let just_after = SAME_ACTION.as_millis() as u64;
        assert_eq!(
            requests.on("SIGINT", at(just_after - 1)),
            StopVerdict::SameAction
        );
        assert_eq!(requests.on("SIGINT", at(just_after)), StopVerdict::Counted);
    }

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(super::hex(&[0, 15, 255]), "000fff");
    }
}
