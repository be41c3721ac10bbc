//! `runbook approve RUN_ID GATE_ID [--reject]`: decides a manual gate of a
//! run waiting in another process, through the gate crate's approval files.

use crate::exit::ExitCode;
use crate::run_cmd::command_hint;
use runbook_engine::RunDir;
use runbook_engine::{Event, EventKind};
use runbook_engine::{runs_dir, state_dir};
use runbook_report::RunStatus;
use runbook_step_gate::{ApprovalError, DecisionRecord, approver_name, write_decision};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long `approve` watches for the run to take its decision. The gate
/// looks for decisions every 0.2 s, so this is many of its looks.
const TAKEN_WITHIN: Duration = Duration::from_secs(5);

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
        errln!(
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
            errln!(
                "error: run {} has finished, so nothing is waiting for a decision",
                run_dir.id
            );
        } else {
            errln!(
                "error: run {} has no engine running (its engine stopped), so nothing is waiting for a decision; `{}` continues it and asks again",
                run_dir.id,
                command_hint("resume", &run_dir.id, args.state_dir.as_deref())
            );
        }
        return Ok(ExitCode::Usage);
    }
    let approved = !args.reject;
    // Where the journal ends now: the run's answer to this decision comes
    // after it.
    let journal_end = std::fs::metadata(run_dir.journal_path()).map_or(0, |m| m.len());
    match write_decision(&run_dir.path, &args.gate_id, approved, &approver_name()) {
        Ok(record) => {
            let verb = if approved { "approved" } else { "rejected" };
            let (gate, run) = (&args.gate_id, &run_dir.id);
            match watch_for_decision(&run_dir, gate, journal_end, &record, TAKEN_WITHIN) {
                Taken::Yes => {
                    errln!(
                        "{verb} gate `{gate}` of run {run} (as {}); the run has taken the decision",
                        record.decided_by
                    );
                    Ok(ExitCode::Success)
                }
                Taken::Overtaken(decided) => {
                    let theirs = if decided.approved == Some(true) {
                        "approved"
                    } else {
                        "rejected"
                    };
                    errln!(
                        "error: gate `{gate}` of run {run} was {theirs} by {} before your decision reached it; yours was not applied",
                        decided.decided_by.as_deref().unwrap_or("unknown")
                    );
                    Ok(ExitCode::Failure)
                }
                Taken::StillWaiting => {
                    errln!(
                        "{verb} gate `{gate}` of run {run} (as {}); the run has not taken the decision yet (`runbook runs` and the run's journal show when it does)",
                        record.decided_by
                    );
                    Ok(ExitCode::Success)
                }
                Taken::EngineGone => {
                    errln!(
                        "error: the engine of run {run} stopped before it took your decision about gate `{gate}`; `{}` continues the run and asks again",
                        command_hint("resume", run, args.state_dir.as_deref())
                    );
                    Ok(ExitCode::Failure)
                }
            }
        }
        Err(
            error @ (ApprovalError::NotWaiting { .. }
            | ApprovalError::AlreadyDecided { .. }
            | ApprovalError::InvalidGateId(_)),
        ) => {
            errln!("error: {error}");
            Ok(ExitCode::Usage)
        }
        Err(error) => Err(error.into()),
    }
}

/// What became of a decision written for a waiting gate.
enum Taken {
    /// The run journaled it as the gate's decision.
    Yes,
    /// Something else decided the gate first (its timeout, the terminal).
    Overtaken(Box<Event>),
    /// The gate is still waiting: the run has not looked yet.
    StillWaiting,
    /// The engine died without deciding the gate.
    EngineGone,
}

/// Watches the journal, from `journal_end` on, for the `gate_decided` of
/// `gate`, for up to `patience` ([`TAKEN_WITHIN`]): `approve` says what
/// happened to the decision instead of only that it was written.
fn watch_for_decision(
    run_dir: &RunDir,
    gate: &str,
    journal_end: u64,
    record: &DecisionRecord,
    patience: Duration,
) -> Taken {
    let deadline = Instant::now() + patience;
    loop {
        // Whether the engine is alive is asked before reading, so that a
        // decision journaled just before it died is still found.
        let live = run_dir.is_live();
        if let Some(decided) = gate_decided_since(run_dir, gate, journal_end) {
            let ours = decided.approved == Some(record.approved)
                && decided.decided_by.as_deref() == Some(record.decided_by.as_str());
            return if ours {
                Taken::Yes
            } else {
                Taken::Overtaken(Box::new(decided))
            };
        }
        if !live {
            return Taken::EngineGone;
        }
        if Instant::now() >= deadline {
            return Taken::StillWaiting;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first `gate_decided` of `gate` written after byte `from` of the
/// run's journal. Lines that are not events (a line being written) are
/// passed over: this only watches, `runs` and `report` judge the journal.
fn gate_decided_since(run_dir: &RunDir, gate: &str, from: u64) -> Option<Event> {
    let mut file = std::fs::File::open(run_dir.journal_path()).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str::<Event>(line).ok())
        .find(|event| event.event == EventKind::GateDecided && event.step.as_deref() == Some(gate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(approved: bool) -> DecisionRecord {
        DecisionRecord {
            approved,
            decided_by: "alice (runbook approve)".into(),
            decided_at: "2026-11-27T12:00:00.000Z".into(),
        }
    }

    /// A run directory whose journal already holds `before`, then gets
    /// `after` appended; returns where `approve` would start watching.
    fn journal(run_dir: &RunDir, before: &str, after: &str) -> u64 {
        std::fs::write(run_dir.journal_path(), before).expect("journal");
        let end = before.len() as u64;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(run_dir.journal_path())
            .expect("open");
        file.write_all(after.as_bytes()).expect("append");
        end
    }

    const OLD: &str = "{\"ts\":\"2026-11-27T11:59:00.000Z\",\"event\":\"gate_decided\",\"run_id\":\"r\",\"step\":\"ask\",\"approved\":true,\"decided_by\":\"alice (runbook approve)\"}\n";

    fn decided(by: &str, approved: bool) -> String {
        format!(
            "{{\"ts\":\"2026-11-27T12:00:00.100Z\",\"event\":\"gate_decided\",\"run_id\":\"r\",\"step\":\"ask\",\"approved\":{approved},\"decided_by\":\"{by}\"}}\n"
        )
    }

    #[test]
    fn approve_says_what_became_of_the_decision() {
        let state = tempfile::tempdir().expect("state");
        let run_dir = RunDir::create(state.path()).expect("run dir");
        let patience = Duration::from_millis(200);
        let lock = run_dir.lock().expect("lock");

        // The gate's earlier decision (before approve wrote) does not count.
        let end = journal(&run_dir, OLD, &decided("alice (runbook approve)", false));
        assert!(matches!(
            watch_for_decision(&run_dir, "ask", end, &record(false), patience),
            Taken::Yes
        ));
        let end = journal(&run_dir, OLD, &decided("timeout", false));
        match watch_for_decision(&run_dir, "ask", end, &record(true), patience) {
            Taken::Overtaken(event) => assert_eq!(event.decided_by.as_deref(), Some("timeout")),
            _ => panic!("the timeout decided first"),
        }
        let end = journal(&run_dir, OLD, "");
        assert!(matches!(
            watch_for_decision(&run_dir, "ask", end, &record(true), patience),
            Taken::StillWaiting
        ));
        drop(lock);
        assert!(matches!(
            watch_for_decision(&run_dir, "ask", end, &record(true), patience),
            Taken::EngineGone
        ));
    }
}
