//! `runbook approve RUN_ID GATE_ID [--reject]`: decides a manual gate of a
//! run waiting in another process, through the gate crate's approval files.

use crate::exit::ExitCode;
use crate::run_cmd::command_hint;
use runbook_engine::RunDir;
use runbook_engine::journal::{runs_dir, state_dir};
use runbook_report::RunStatus;
use runbook_step_gate::{ApprovalError, approver_name, write_decision};
use std::path::PathBuf;

/// Arguments of `runbook approve`.
#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The run (printed by `runbook run` when it starts).
    pub run_id: String,
    /// The gate's step id.
    pub gate_id: String,
    /// Reject instead of approving (the gate fails).
    #[arg(long)]
    pub reject: bool,
    /// Where runs are recorded (default: $RUNBOOK_STATE_DIR,
    /// $XDG_STATE_HOME/runbook, ~/.local/state/runbook).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

pub fn run(args: &ApproveArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir.as_deref(), &|name| std::env::var(name).ok())?;
    let Some(run_dir) = RunDir::open(&state, &args.run_id) else {
        eprintln!(
            "error: no run `{}` in {} (is --state-dir or $RUNBOOK_STATE_DIR the same as the run's?)",
            args.run_id,
            runs_dir(&state).display()
        );
        return Ok(ExitCode::Usage);
    };
    if !run_dir.is_live() {
        // A finished run has nothing to resume; only a dead engine's run does.
        let finished = runbook_report::load_report(&state, &run_dir.id)
            .is_ok_and(|report| !matches!(report.status, RunStatus::Stopped | RunStatus::Running));
        if finished {
            eprintln!(
                "error: run {} has finished, so nothing is waiting for a decision",
                run_dir.id
            );
        } else {
            eprintln!(
                "error: run {} has no engine running (its engine stopped), so nothing is waiting for a decision; `{}` continues it and asks again",
                run_dir.id,
                command_hint("resume", &run_dir.id, args.state_dir.as_deref())
            );
        }
        return Ok(ExitCode::Usage);
    }
    let approved = !args.reject;
    match write_decision(&run_dir.path, &args.gate_id, approved, &approver_name()) {
        Ok(record) => {
            eprintln!(
                "{} gate `{}` of run {} (as {})",
                if approved { "approved" } else { "rejected" },
                args.gate_id,
                run_dir.id,
                record.decided_by
            );
            Ok(ExitCode::Success)
        }
        Err(
            error @ (ApprovalError::NotWaiting { .. }
            | ApprovalError::AlreadyDecided { .. }
            | ApprovalError::InvalidGateId(_)),
        ) => {
            eprintln!("error: {error}");
            Ok(ExitCode::Usage)
        }
        Err(error) => Err(error.into()),
    }
}
