//! `runbook resume RUN_ID`: continues a run whose engine died, in the same
//! run directory and journal, after checking that the journal can be
//! trusted and that the runbook file is the one the run started with.
//!
//! Choices where the spec is silent (docs/cli.md):
//!
//! - Params keep the values the run started with, read from its
//!   `run_started` event; `--set` may only give secret params, which the
//!   journal never holds (`***`), so they must be given again (or come from
//!   their environment variable or default).
//! - `--dry-run` is not a flag of `resume`: a dry run resumes as a dry run.
//! - The runbook's `timeout` counts from the resume: the engine was not
//!   running in between.

use crate::exit::ExitCode;
use crate::plan_cmd::{checked_runbook, resolve_params};
use crate::reporter::Screen;
use crate::run_cmd::{EngineFlags, Launch, approve_hint, hex, launch};
use anyhow::Context as _;
use runbook_engine::{Journal, JournalError, ResumePoint, RunDir, RunOptions};
use runbook_engine::{ReadJournalError, read_journal, runs_dir, state_dir};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Arguments of `runbook resume`.
#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The run to continue (see `runbook runs`).
    pub run_id: String,
    /// Resume even though the runbook file changed since the run started.
    #[arg(long)]
    pub force: bool,
    /// Give a secret param again (`--set name=value`, repeatable); the
    /// journal never holds secrets. Other params keep the run's values.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// A YAML file with secret param values.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Approvals, parallelism, rollbacks, output and state dir.
    #[command(flatten)]
    pub engine: EngineFlags,
}

pub fn run(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.engine.state_dir.as_deref(), &|name| {
        std::env::var(name).ok()
    })?;
    let Some(run_dir) = RunDir::open(&state, &args.run_id) else {
        errln!(
            "error: no run `{}` in {} (is --state-dir or $RUNBOOK_STATE_DIR the same as the run's? `runbook runs` lists them)",
            args.run_id,
            runs_dir(&state).display()
        );
        return Ok(ExitCode::Usage);
    };
    let lock = match run_dir.lock() {
        Ok(lock) => lock,
        Err(error @ JournalError::Busy { .. }) => {
            errln!("error: {error}; nothing was resumed");
            return Ok(ExitCode::Usage);
        }
        Err(error) => return Err(error.into()),
    };
    let contents = match read_journal(&run_dir.journal_path()) {
        Ok(contents) => contents,
        Err(error @ ReadJournalError::Io { .. }) => {
            errln!("error: {error}; nothing was resumed");
            return Ok(ExitCode::Usage);
        }
        Err(error) => {
            errln!(
                "error: {error}\n  only a last line cut short (an engine killed while writing it) is forgiven, and cut off; a journal with a complete line that is not a valid event cannot be trusted to say what already happened; nothing was resumed"
            );
            return Ok(ExitCode::Usage);
        }
    };
    // A run that finished has nothing to resume, whatever its journal lacks.
    let finished = contents
        .events
        .iter()
        .any(|e| e.event == runbook_engine::EventKind::RunFinished);
    if let Some(why) = run_dir.journal_incomplete()
        && !args.force
        && !finished
    {
        errln!(
            "error: run {} cannot be resumed safely: {why}\n  resuming would run again steps that finished after the journal stopped. \
             Check what the run did, then resume with --force to continue from what the journal says, or start a new run.",
            run_dir.id
        );
        return Ok(ExitCode::Usage);
    }
    let mut point = match ResumePoint::from_events(&contents.events) {
        Ok(point) => point,
        Err(error) => {
            errln!("error: {error}");
            return Ok(ExitCode::Usage);
        }
    };
    point.read_stopping(&run_dir.path);
    let Some(first) = point.first_start.clone() else {
        return Ok(ExitCode::Usage);
    };
    let Some(file) = first.file.as_deref().map(PathBuf::from) else {
        errln!(
            "error: run {} does not record its runbook file, so it cannot be resumed",
            run_dir.id
        );
        return Ok(ExitCode::Usage);
    };

    let content = match std::fs::read(&file) {
        Ok(content) => content,
        Err(error) => {
            errln!(
                "error: cannot read `{}`, the runbook of run {}: {error}",
                file.display(),
                run_dir.id
            );
            return Ok(ExitCode::Usage);
        }
    };
    let sha256 = hex(&Sha256::digest(&content));
    let changed = first.runbook_sha256.as_deref() != Some(sha256.as_str());
    if changed && !args.force {
        errln!(
            "error: `{}` changed since run {} started (sha256 {} then, {} now)\n  \
             resuming would mix two versions of the procedure: steps already done were planned \
             by the old one. Review the change, then resume with --force to use the file as it is now, \
             or start a new run.",
            file.display(),
            run_dir.id,
            short(first.runbook_sha256.as_deref().unwrap_or("unknown")),
            short(&sha256),
        );
        return Ok(ExitCode::Usage);
    }

    let Ok(source) = String::from_utf8(content) else {
        errln!("error: `{}` is not UTF-8 text", file.display());
        return Ok(ExitCode::Usage);
    };
    // Loaded from the very text that was hashed.
    let loaded = runbook_model::load(&file, &source);
    let Some(runbook) = checked_runbook(&file, &source, loaded, "; nothing was run") else {
        return Ok(ExitCode::Usage);
    };
    if !changed && let Some(problem) = foreign_step(&runbook, &contents.events) {
        errln!(
            "error: the journal's {problem}, though the runbook is the one the run started with\n  \
             a journal that does not match its runbook cannot say what already happened; nothing was resumed"
        );
        return Ok(ExitCode::Usage);
    }
    // With --force the file may no longer declare every recorded param.
    let declared: Vec<String> = runbook.params.keys().cloned().collect();
    let Some(sets) = param_sets(&first, &args.sets, &declared) else {
        return Ok(ExitCode::Usage);
    };
    let Some(params) =
        resolve_params(&runbook, &sets, args.params.as_deref(), "; nothing was run")?
    else {
        if first.params.iter().flatten().any(|(_, v)| v == "***") {
            errln!(
                "note: secret params are never kept in the journal; give them again with --set NAME=VALUE, --params FILE or their environment variable"
            );
        }
        return Ok(ExitCode::Usage);
    };

    let (journal, torn) = Journal::reopen(&run_dir, &lock)?;
    let journal_path = journal.path().display().to_string();
    let screen = Screen::detect();
    if changed {
        screen.line(&format!(
            "warning: `{}` changed since the run started; resuming with it as it is now (--force)",
            file.display()
        ));
    }
    if let Some(torn) = &torn {
        let note = format!("the journal's {torn}; it was cut off before resuming");
        screen.line(&format!("note: {note}"));
        point.note = Some(note);
    }
    let step_named = |step: &str| {
        [&runbook.steps, &runbook.on_failure, &runbook.finally]
            .iter()
            .find_map(|map| map.get(step))
    };
    let must_not_run_twice = |step: &str| step_named(step).is_some_and(|s| !s.idempotent);
    // A process group is filed under its attempt's id: `X`, or
    // `X.rollback` for the rollback of X.
    let step_or_rollback = |id: &str| match id.strip_suffix(".rollback") {
        Some(parent) => step_named(parent).and_then(|s| match &s.rollback {
            Some(runbook_model::Rollback::Step(rollback)) => Some(rollback.as_ref()),
            _ => None,
        }),
        None => step_named(id),
    };
    let leftovers = runbook_step_shell::leftover_groups(&run_dir.path);
    // A step still running had started, whatever the journal kept (its
    // `step_started` may be the torn last line). A rollback's group
    // (`X.rollback`) names no step.
    for leftover in leftovers.iter().filter(|l| step_named(l.step()).is_some()) {
        point.started_unrecorded(leftover.step());
    }
    let interrupted: Vec<String> = point
        .interrupted_steps()
        .map(str::to_string)
        .chain(
            point
                .interrupted_rollbacks()
                .map(|s| format!("the rollback of {s}")),
        )
        .collect();
    screen.line(&format!(
        "resuming run {}: {} finished before the engine stopped; {}; journal: {journal_path}",
        run_dir.id,
        match point.finished_steps() {
            1 => "1 step".to_string(),
            n => format!("{n} steps"),
        },
        if interrupted.is_empty() {
            "none was running".to_string()
        } else {
            format!("interrupted: {}", interrupted.join(", "))
        }
    ));
    if let Some(why) = point.stopping() {
        screen.line(&format!(
            "the run was stopping ({why}) when its engine died: no main step starts again; the cleanup runs"
        ));
    }

    // Before anything runs again: what the dead engine's steps left running
    // must not overlap with their second run, nor be asked about while it
    // still works. A step marked `idempotent: false` (a restore, a
    // migration) is not stopped halfway: it is waited for, so that "did it
    // complete?" has an answer. Either way the journal says so.
    let (awaited, to_stop): (Vec<_>, Vec<_>) = leftovers
        .into_iter()
        .partition(|leftover| must_not_run_twice(leftover.step()));
    // Worked out here: the stopping runs on a thread of its own. A
    // templated `stop_signal` or `grace` renders as it did if it read only
    // params or the environment.
    let templates = runbook_engine::Templates::new();
    let context = serde_json::json!({
        "params": params
            .iter()
            .map(|(name, p)| (name.clone(), p.value.to_json()))
            .collect::<serde_json::Map<_, _>>(),
        "env": std::env::vars().collect::<std::collections::BTreeMap<_, _>>(),
    });
    let render = |t: &runbook_model::Template| templates.render(&t.text, &context).ok();
    let plans: std::collections::HashMap<String, _> = to_stop
        .iter()
        .map(|l| {
            let id = l.step().to_string();
            let plan = runbook_step_shell::stop_plan(step_or_rollback(&id), &render);
            (id, plan)
        })
        .collect();
    let happened = if awaited.is_empty() && to_stop.is_empty() {
        Vec::new()
    } else {
        let shown = screen.clone();
        let settled = until_a_stop_signal(move || {
            let mut happened = Vec::new();
            for leftover in awaited {
                shown.line(&format!(
                    "step `{}` of the dead engine is still running (process group {}); it is `idempotent: false`, so it is not stopped: waiting for it to finish before asking whether it completed (Ctrl-C stops this resume and leaves it running)",
                    leftover.step(),
                    leftover.group()
                ));
                leftover.wait();
                let line = format!(
                    "waited for what step `{}` of the dead engine left running (process group {}) to finish",
                    leftover.step(),
                    leftover.group()
                );
                shown.line(&line);
                happened.push(line);
            }
            for stopped in runbook_step_shell::stop_groups(to_stop, |id| {
                plans
                    .get(id)
                    .copied()
                    .unwrap_or_else(|| runbook_step_shell::stop_plan(None, &|_| None))
            }) {
                shown.line(&stopped);
                happened.push(stopped);
            }
            happened
        })?;
        match settled {
            Ok(happened) => happened,
            Err(signal) => {
                // Nothing ran and nothing was journaled; the log of process
                // groups stays, so the next resume finds what is left.
                screen.line(&format!(
                    "{signal}: resume stopped before running anything; what the dead engine left running may already have had its stop signal (not SIGKILL), and the next `runbook resume` picks up whatever is left"
                ));
                return Ok(ExitCode::Interrupted);
            }
        }
    };
    runbook_step_shell::forget_groups(&run_dir.path);
    if !happened.is_empty() {
        let note = happened.join("; ");
        point.note = Some(match point.note.take() {
            Some(torn) => format!("{torn}; {note}"),
            None => note,
        });
    }

    let mut options = RunOptions::new(&run_dir);
    options.params = params;
    options.dry_run = first.dry_run.unwrap_or(false);
    options.no_rollback = first.no_rollback.unwrap_or(false);
    options.file = Some(file);
    options.runbook_sha256 = Some(sha256);
    options.resume = Some(point);
    let result = launch(Launch {
        runbook,
        run_dir: &run_dir,
        journal,
        options,
        screen,
        hint: approve_hint(&run_dir, args.engine.state_dir.as_deref()),
        flags: &args.engine,
    });
    drop(lock);
    result.context("resume failed")
}

/// The `--set` arguments that give the run its params again: every
/// non-secret value from `run_started`, then the user's, which may only
/// name params the journal could not keep. `None` (after printing why)
/// when the user tries to change a recorded value.
fn param_sets(
    first: &runbook_engine::Event,
    user: &[String],
    declared: &[String],
) -> Option<Vec<String>> {
    let recorded = first.params.clone().unwrap_or_default();
    let mut sets = Vec::new();
    for (name, value) in &recorded {
        if !declared.contains(name) {
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) if s == "***" => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        sets.push(format!("{name}={text}"));
    }
    for set in user {
        let name = set.split_once('=').map_or(set.as_str(), |(n, _)| n).trim();
        if let Some(value) = recorded.get(name)
            && value != "***"
        {
            errln!(
                "error: param `{name}` keeps the value the run started with ({value}); a resumed run cannot change it (start a new run instead)"
            );
            return None;
        }
        sets.push(set.clone());
    }
    Some(sets)
}

/// The first event naming a step the runbook does not have where the event
/// puts it (`zzz` in `steps`, a main step under `on_failure`): the engine
/// cannot have written it from this file.
fn foreign_step(
    runbook: &runbook_model::Runbook,
    events: &[runbook_engine::Event],
) -> Option<String> {
    events.iter().enumerate().find_map(|(at, event)| {
        use runbook_model::Phase;
        let (step, phase) = (event.step.as_deref()?, event.phase?);
        let known = match phase {
            Phase::Main => runbook.steps.contains_key(step),
            Phase::OnFailure => runbook.on_failure.contains_key(step),
            Phase::Finally => runbook.finally.contains_key(step),
            // Rollback events name the main step rolled back; a rollback's
            // gate is `ID.rollback`.
            Phase::Rollback => runbook
                .steps
                .contains_key(step.strip_suffix(".rollback").unwrap_or(step)),
        };
        (!known).then(|| {
            format!(
                "line {} ({}) puts step `{step}` in `{}`, where the runbook has no such step",
                at + 1,
                event.event.as_str(),
                phase.key()
            )
        })
    })
}

/// Runs `work` (which blocks) until it returns, or until SIGINT, SIGTERM
/// or SIGHUP arrives: then `Err` names the signal and `work` is left to
/// the process's exit. The run that follows handles these signals itself;
/// before it, they would kill the resume with their default action (exit
/// 143 for SIGTERM, not the 130 of an interrupted resume), or not at all
/// when inherited as ignored.
fn until_a_stop_signal<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<Result<T, &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        // Asked before the handler below replaces what was inherited.
        let hangup_ignored = crate::nohup::hangup_ignored();
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let work = tokio::task::spawn_blocking(work);
        anyhow::Ok(tokio::select! {
            done = work => Ok(done.context("the wait for the dead engine's steps failed")?),
            _ = interrupt.recv() => Err("SIGINT"),
            _ = terminate.recv() => Err("SIGTERM"),
            () = crate::run_cmd::hangup_counted(&mut hangup, hangup_ignored) => Err("SIGHUP"),
        })
    })?;
    // The blocking wait may still be sleeping; the process does not wait
    // for it.
    runtime.shutdown_background();
    Ok(outcome)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
