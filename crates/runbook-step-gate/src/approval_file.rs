//! The approval file protocol: how `runbook approve RUN_ID GATE_ID` in one
//! shell reaches a run waiting at a gate in another process.
//!
//! Both sides meet in `RUN_DIR/gates/`:
//!
//! - the waiting run writes `GATE_ID.waiting` (JSON: `message`, `since`
//!   (RFC 3339), `timeout` (such as `30m`)) and removes it when the gate is
//!   decided or stops waiting;
//! - the approver writes `GATE_ID.decision` (JSON: `approved`, `decided_by`,
//!   `decided_at`), atomically: to a temporary file first, then linked to
//!   its name, so the run never reads half a decision and, of two approvers
//!   racing, exactly one succeeds;
//! - the run polls for the decision file every [`POLL_INTERVAL`], consumes
//!   it and removes both files.
//!
//! Plain files keep the protocol debuggable with `ls` and `cat`, need no
//! daemon or socket, and survive either side being restarted.

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a waiting gate looks for a decision file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The contents of `GATE_ID.waiting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingGate {
    /// The gate's rendered message.
    pub message: String,
    /// When the gate started waiting (RFC 3339).
    pub since: String,
    /// How long it waits, such as `30m`.
    pub timeout: String,
}

/// The contents of `GATE_ID.decision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Approved or rejected.
    pub approved: bool,
    /// Who decided, such as `alice (runbook approve)`.
    pub decided_by: String,
    /// When (RFC 3339).
    pub decided_at: String,
}

/// What can go wrong in the approval file protocol.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// A decision was given for a gate that is not waiting.
    #[error("gate `{gate}` is not waiting for a decision in {run_dir}; {}", describe_waiting(.waiting))]
    NotWaiting {
        /// The gate named.
        gate: String,
        /// The run directory.
        run_dir: PathBuf,
        /// Gates that are waiting.
        waiting: Vec<String>,
    },
    /// A decision was already written and not yet picked up by the run.
    #[error("gate `{gate}` already has a decision that the run has not picked up yet")]
    AlreadyDecided {
        /// The gate named.
        gate: String,
    },
    /// The gate id cannot be a step id (and could escape the gates folder).
    #[error("`{0}` is not a gate id (step ids are letters, digits, `-`, `_` and `.`)")]
    InvalidGateId(String),
    /// A file could not be read or written.
    #[error("cannot {action} `{}`: {}", path.display(), runbook_model::io_error_words(source))]
    Io {
        /// What was being done (`read`, `write`, `list`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A protocol file is not valid JSON of the expected shape.
    #[error("`{}` is not a valid gate file: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

fn describe_waiting(waiting: &[String]) -> String {
    if waiting.is_empty() {
        "no gate is waiting (it may have been decided already or timed out)".to_string()
    } else {
        let names: Vec<String> = waiting.iter().map(|g| format!("`{g}`")).collect();
        format!("waiting: {}", names.join(", "))
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApprovalError {
    let path = path.to_path_buf();
    move |source| ApprovalError::Io {
        action,
        path,
        source,
    }
}

/// The folder of a run's gate files: `RUN_DIR/gates`.
pub fn gates_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("gates")
}

/// Checks that `gate` is usable as a file name: step ids, including
/// rollback ids such as `scale.rollback`, and nothing that leaves the folder.
fn check_gate_id(gate: &str) -> Result<(), ApprovalError> {
    let valid = !gate.is_empty()
        && !gate.starts_with('.')
        && gate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ApprovalError::InvalidGateId(gate.to_string()))
    }
}

fn waiting_path(run_dir: &Path, gate: &str) -> PathBuf {
    gates_dir(run_dir).join(format!("{gate}.waiting"))
}

fn decision_path(run_dir: &Path, gate: &str) -> PathBuf {
    gates_dir(run_dir).join(format!("{gate}.decision"))
}

/// Now, as the protocol writes times.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Who is deciding from this process, for `decided_by`: `$USER` (or
/// `unknown`) followed by ` (runbook approve)`.
pub fn approver_name() -> String {
    let user = runbook_engine::current_user().unwrap_or_else(|| "unknown".to_string());
    format!("{user} (runbook approve)")
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// folder, flushed, then renamed over `path`.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ApprovalError> {
    write_through_temp(path, contents, |temp, path| std::fs::rename(temp, path))
}

/// Writes `contents` to `path` unless `path` exists, atomically: the
/// temporary file is linked to `path`, which fails (`AlreadyExists`) if
/// another writer got there first, where a rename would replace its file
/// and a check before the rename would leave a gap.
fn publish_once(path: &Path, contents: &[u8]) -> Result<(), ApprovalError> {
    write_through_temp(path, contents, |temp, path| std::fs::hard_link(temp, path))
}

/// Writes `contents` to a temporary file next to `path`, flushed, then
/// gives it `path` with `publish`; the temporary name never outlives this.
fn write_through_temp(
    path: &Path,
    contents: &[u8],
    publish: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), ApprovalError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name ending in `.tmp` is never mistaken for a protocol file; the
    // counter keeps two writers of one process (threads) apart.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io_error("write", &temp))?;
        file.write_all(contents).map_err(io_error("write", &temp))?;
        file.sync_all().map_err(io_error("write", &temp))?;
        publish(&temp, path).map_err(io_error("write", path))
    })();
    // Renamed away already, or still there after a link or a failure.
    let _ = std::fs::remove_file(&temp);
    result
}

/// Marks `gate` as waiting. The returned guard removes the waiting file
/// (and any decision not picked up) when dropped, so a gate that stops
/// waiting for any reason is no longer listed.
///
/// A stale decision left by an earlier attempt of the same gate is removed
/// first: a decision applies to the wait it was given for.
pub fn mark_waiting(
    run_dir: &Path,
    gate: &str,
    waiting: &WaitingGate,
) -> Result<WaitingGuard, ApprovalError> {
    check_gate_id(gate)?;
    let dir = gates_dir(run_dir);
    std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    let decision = decision_path(run_dir, gate);
    match std::fs::remove_file(&decision) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove", &decision)(e)),
    }
    let path = waiting_path(run_dir, gate);
    let json = serde_json::to_vec_pretty(waiting).map_err(|source| ApprovalError::Malformed {
        path: path.clone(),
        source,
    })?;
    write_atomically(&path, &json)?;
    Ok(WaitingGuard {
        waiting: path,
        decision,
    })
}

/// Removes a gate's waiting file (and an unconsumed decision) when dropped.
#[derive(Debug)]
pub struct WaitingGuard {
    waiting: PathBuf,
    decision: PathBuf,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        // Waiting file first: from then on `runbook approve` refuses, so no
        // new decision can appear after the decision file is cleaned up
        // (short of a race within microseconds, which mark_waiting's cleanup
        // of stale decisions covers on the next wait).
        let _ = std::fs::remove_file(&self.waiting);
        let _ = std::fs::remove_file(&self.decision);
    }
}

/// Reads the decision for `gate`, if one was written.
pub fn read_decision(run_dir: &Path, gate: &str) -> Result<Option<DecisionRecord>, ApprovalError> {
    check_gate_id(gate)?;
    let path = decision_path(run_dir, gate);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ApprovalError::Malformed { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

/// Waits until a decision for `gate` is written or `cancel` fires (then
/// `Ok(None)`). The decision file is left for the [`WaitingGuard`] to
/// remove.
pub async fn wait_for_decision(
    run_dir: &Path,
    gate: &str,
    cancel: &CancellationToken,
) -> Result<Option<DecisionRecord>, ApprovalError> {
    loop {
        if let Some(decision) = read_decision(run_dir, gate)? {
            return Ok(Some(decision));
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// Records a decision for `gate` of the run in `run_dir`, as `runbook
/// approve` does: fails if the gate is not waiting or already has a
/// decision. `decided_by` is written as given (see [`approver_name`]).
pub fn write_decision(
    run_dir: &Path,
    gate: &str,
    approved: bool,
    decided_by: &str,
) -> Result<DecisionRecord, ApprovalError> {
    check_gate_id(gate)?;
    if !waiting_path(run_dir, gate).exists() {
        return Err(ApprovalError::NotWaiting {
            gate: gate.to_string(),
            run_dir: run_dir.to_path_buf(),
            waiting: waiting_gates(run_dir)?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        });
    }
    let path = decision_path(run_dir, gate);
    let record = DecisionRecord {
        approved,
        decided_by: decided_by.to_string(),
        decided_at: now_rfc3339(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|source| ApprovalError::Malformed {
        path: path.clone(),
        source,
    })?;
    publish_once(&path, &json).map_err(|error| match error {
        ApprovalError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            ApprovalError::AlreadyDecided {
                gate: gate.to_string(),
            }
        }
        other => other,
    })?;
    Ok(record)
}

/// The gates of the run in `run_dir` waiting for a decision, sorted by id.
/// A run without a `gates` folder has none.
pub fn waiting_gates(run_dir: &Path) -> Result<Vec<(String, WaitingGate)>, ApprovalError> {
    let dir = gates_dir(run_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", &dir)(e)),
    };
    let mut gates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", &dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(gate) = name.strip_suffix(".waiting") else {
            continue;
        };
        if check_gate_id(gate).is_err() {
            continue;
        }
        let path = entry.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed between listing and reading: it stopped waiting.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let waiting = serde_json::from_slice(&bytes)
            .map_err(|source| ApprovalError::Malformed { path, source })?;
        gates.push((gate.to_string(), waiting));
    }
    gates.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(gates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> WaitingGate {
        WaitingGate {
            message: "restart?".into(),
            since: now_rfc3339(),
            timeout: "30m".into(),
        }
    }

    #[test]
    fn decision_for_a_waiting_gate_is_written_and_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let guard = mark_waiting(dir.path(), "approve-restart", &waiting()).expect("mark");
        let listed = waiting_gates(dir.path()).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "approve-restart");
        assert_eq!(listed[0].1.message, "restart?");

        let record = write_decision(dir.path(), "approve-restart", false, "bob").expect("write");
        assert!(!record.approved);
        assert_eq!(
            read_decision(dir.path(), "approve-restart").expect("read"),
            Some(record)
        );
        let again = write_decision(dir.path(), "approve-restart", true, "bob");
        assert!(matches!(again, Err(ApprovalError::AlreadyDecided { .. })));

        drop(guard);
        assert!(waiting_gates(dir.path()).expect("list").is_empty());
        assert_eq!(
            read_decision(dir.path(), "approve-restart").expect("read"),
            None
        );
        // No temporary files left behind.
        let left: Vec<_> = std::fs::read_dir(gates_dir(dir.path()))
            .expect("dir")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn decision_for_a_gate_not_waiting_names_the_waiting_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = write_decision(dir.path(), "nope", true, "bob").expect_err("not waiting");
        assert!(
            error.to_string().contains("gate `nope` is not waiting")
                && error.to_string().contains("no gate is waiting"),
            "{error}"
        );
        let _a = mark_waiting(dir.path(), "b-gate", &waiting()).expect("mark");
        let _b = mark_waiting(dir.path(), "a-gate", &waiting()).expect("mark");
        let error = write_decision(dir.path(), "nope", true, "bob").expect_err("not waiting");
        assert!(
            error.to_string().ends_with("waiting: `a-gate`, `b-gate`"),
            "{error}"
        );
    }

    #[test]
    fn gate_ids_cannot_escape_the_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        for bad in ["../x", "a/b", "", ".hidden"] {
            assert!(
                matches!(
                    write_decision(dir.path(), bad, true, "bob"),
                    Err(ApprovalError::InvalidGateId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_new_wait_discards_a_stale_decision() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(gates_dir(dir.path())).expect("mkdir");
        std::fs::write(
            decision_path(dir.path(), "g"),
            br#"{"approved":true,"decided_by":"x","decided_at":"y"}"#,
        )
        .expect("write");
        let _guard = mark_waiting(dir.path(), "g", &waiting()).expect("mark");
        assert_eq!(read_decision(dir.path(), "g").expect("read"), None);
    }

    #[test]
    fn approver_name_says_where_the_decision_came_from() {
        assert!(approver_name().ends_with(" (runbook approve)"));
    }
}
