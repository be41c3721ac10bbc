//! [`FileApprovals`]: the real source of gate decisions, combining, in order
//! of precedence, `--approve-all`, `--approve ID`, and then whichever comes
//! first of `runbook approve` from another shell (the approval file
//! protocol) and an interactive prompt supplied by the CLI.

use crate::approval_file::{self, ApprovalError, WaitingGate};
use async_trait::async_trait;
use runbook_engine::{Approvals, Decision, GateRequest, Question};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// An interactive way to ask a person, provided by the CLI when it runs on a
/// terminal.
#[async_trait]
pub trait Prompt: Send + Sync {
    /// Asks for a decision on `gate` (show `gate.message`).
    ///
    /// Returns `None` when no answer can come from here (input closed); the
    /// gate then keeps waiting for `runbook approve` or its timeout. The
    /// future is dropped, unfinished, when another source decides first or
    /// the gate stops waiting, so an implementation must not hold state
    /// that breaks when dropped (a prompt reading stdin on a blocking thread
    /// should clear its line when the decision arrives elsewhere).
    async fn ask(&self, gate: &GateRequest) -> Option<Decision>;
}

/// Called with a description of a problem that does not stop the gate (the
/// gate folder cannot be written, so `runbook approve` cannot reach it).
pub type WarningSink = Arc<dyn Fn(String) + Send + Sync>;

/// Gate decisions for one run: flags, `runbook approve`, and a prompt.
pub struct FileApprovals {
    run_dir: PathBuf,
    approve_all: bool,
    approved: BTreeSet<String>,
    prompt: Option<Arc<dyn Prompt>>,
    warnings: Option<WarningSink>,
}

impl FileApprovals {
    /// Approvals for the run whose state lives in `run_dir`
    /// (`STATE_DIR/runs/RUN_ID`): no gate approved in advance, no prompt.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        FileApprovals {
            run_dir: run_dir.into(),
            approve_all: false,
            approved: BTreeSet::new(),
            prompt: None,
            warnings: None,
        }
    }

    /// Approves these gate ids in advance (`--approve ID`, repeatable);
    /// `decided_by` is `--approve`.
    pub fn approve<I, S>(mut self, gates: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.approved.extend(gates.into_iter().map(Into::into));
        self
    }

    /// Approves every gate in advance (`--approve-all`); `decided_by` is
    /// `--approve-all`. It never answers [`Question::Completed`] (whether
    /// an interrupted step completed): only a person or `--approve ID` does.
    pub fn approve_all(mut self, approve_all: bool) -> Self {
        self.approve_all = approve_all;
        self
    }

    /// Also asks at this prompt (the CLI passes one when stdin is a
    /// terminal).
    pub fn prompt(mut self, prompt: Arc<dyn Prompt>) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Where problems that do not stop a gate are reported (by default they
    /// are dropped).
    pub fn warnings(mut self, sink: WarningSink) -> Self {
        self.warnings = Some(sink);
        self
    }

    fn warn(&self, message: String) {
        if let Some(sink) = &self.warnings {
            sink(message);
        }
    }

    /// Waits for `runbook approve`; `None` if cancelled. A protocol error
    /// is reported once, then this source stays silent.
    async fn decision_from_files(
        &self,
        gate: &str,
        cancel: &CancellationToken,
    ) -> Option<Decision> {
        match approval_file::wait_for_decision(&self.run_dir, gate, cancel).await {
            Ok(Some(record)) => Some(Decision {
                approved: record.approved,
                decided_by: record.decided_by,
            }),
            Ok(None) => None,
            Err(error) => {
                self.warn(format!(
                    "gate `{gate}`: {error}; `runbook approve` no longer reaches it"
                ));
                std::future::pending().await
            }
        }
    }
}

#[async_trait]
impl Approvals for FileApprovals {
    async fn decide(&self, gate: &GateRequest, cancel: &CancellationToken) -> Option<Decision> {
        self.decide_announced(gate, cancel, &|| {}).await
    }

    async fn decide_announced(
        &self,
        gate: &GateRequest,
        cancel: &CancellationToken,
        announce: &(dyn Fn() + Send + Sync),
    ) -> Option<Decision> {
        // Decided in advance: the gate never waits, so it is not announced
        // (no `gate_waiting`, no "waiting for approval" with commands that
        // would find nothing to approve).
        if self.approve_all && gate.question == Question::Approval {
            return Some(Decision {
                approved: true,
                decided_by: "--approve-all".to_string(),
            });
        }
        if self.approved.contains(&gate.gate) {
            return Some(Decision {
                approved: true,
                decided_by: "--approve".to_string(),
            });
        }

        let waiting = WaitingGate {
            message: gate.message.clone(),
            since: approval_file::now_rfc3339(),
            timeout: humantime::format_duration(gate.timeout).to_string(),
        };
        // Held until this function returns: the waiting file disappears as
        // soon as the gate stops waiting, whatever the reason.
        // Off the runtime's threads: the file is synced, which on a slow or
        // network disk would hold up every step's timers meanwhile.
        let marked = {
            let (run_dir, id) = (self.run_dir.clone(), gate.gate.clone());
            tokio::task::spawn_blocking(move || {
                approval_file::mark_waiting(&run_dir, &id, &waiting)
            })
            .await
            .unwrap_or_else(|e| {
                Err(ApprovalError::Io {
                    action: "mark",
                    path: self.run_dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
        };
        let guard = match marked {
            Ok(guard) => Some(guard),
            Err(error) => {
                self.warn(format!(
                    "gate `{}`: {error}; `runbook approve` cannot reach it",
                    gate.gate
                ));
                None
            }
        };
        // Only now can `runbook approve`, prompted by the announcement,
        // find the gate.
        announce();
        let files = async {
            if guard.is_some() {
                self.decision_from_files(&gate.gate, cancel).await
            } else {
                std::future::pending().await
            }
        };
        let prompt = async {
            match &self.prompt {
                Some(prompt) => match prompt.ask(gate).await {
                    Some(decision) => Some(decision),
                    // Nobody can answer here; the other sources remain.
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let decision = tokio::select! {
            decision = files => decision,
            decision = prompt => decision,
            () = cancel.cancelled() => None,
        };
        // Stopped waiting (the timeout, or the run stopping): a decision
        // written since the last poll was accepted by `runbook approve` and
        // is honoured rather than lost with the files.
        let decision = match decision {
            None if guard.is_some() => approval_file::read_decision(&self.run_dir, &gate.gate)
                .ok()
                .flatten()
                .map(|record| Decision {
                    approved: record.approved,
                    decided_by: record.decided_by,
                }),
            decision => decision,
        };
        drop(guard);
        decision
    }
}
