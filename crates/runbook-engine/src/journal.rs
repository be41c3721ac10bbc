//! Where runs are recorded: the state directory, run ids, one private
//! directory per run, and the append-only `events.jsonl` journal.
//!
//! The journal is what `resume`, `runs` and `report` read after the engine
//! is gone, possibly killed with SIGKILL half-way. So every event is written
//! as one whole line in one `write` call on an `O_APPEND` file and synced to
//! disk before the run moves on: a crash can lose at most the line being
//! written, never corrupt the lines before it.

use crate::event::Event;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The journal's file name inside a run directory.
pub const JOURNAL_FILE: &str = "events.jsonl";

/// A problem creating or writing run state.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No state directory could be determined (no `HOME`).
    #[error(
        "cannot find a state directory: set --state-dir, $RUNBOOK_STATE_DIR, $XDG_STATE_HOME or $HOME"
    )]
    NoStateDir,
    /// A directory could not be created.
    #[error("cannot create directory `{path}`: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be opened.
    #[error("cannot create journal `{path}`: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An event could not be written or synced.
    #[error("cannot write journal `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The state directory: `explicit` (`--state-dir`), else
/// `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else
/// `~/.local/state/runbook`. Empty variables count as unset.
pub fn state_dir(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, JournalError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = var("RUNBOOK_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("runbook"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".local/state/runbook"))
        .ok_or(JournalError::NoStateDir)
}

/// The directory holding a run's runs: `STATE_DIR/runs`.
pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// A new run id: the UTC start time, sortable as text, and six random hex
/// digits so that two runs started in the same second differ
/// (`20261126-203015-ab12cd`).
pub fn new_run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        random_u64() & 0xff_ffff
    )
}

// The standard library's hasher keys are random per process (seeded from the
// OS); hashing the time and pid with one gives enough entropy for an id
// suffix without another dependency.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A run's private directory, `STATE_DIR/runs/RUN_ID`, created exclusively.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The run id.
    pub id: String,
    /// The directory.
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory under `state_dir` (mode 0700, parents
    /// created as needed, also 0700). Creation is exclusive, so two runs
    /// never share a directory; on the rare id collision a new id is drawn.
    pub fn create(state_dir: &Path) -> Result<RunDir, JournalError> {
        let runs = runs_dir(state_dir);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runs)
            .map_err(|source| JournalError::CreateDir {
                path: runs.clone(),
                source,
            })?;
        let mut last_error = None;
        for _ in 0..16 {
            let id = new_run_id();
            let path = runs.join(&id);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(RunDir { id, path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    last_error = Some(error);
                }
                Err(source) => return Err(JournalError::CreateDir { path, source }),
            }
        }
        Err(JournalError::CreateDir {
            path: runs,
            source: last_error
                .unwrap_or_else(|| std::io::Error::other("could not pick a free run id")),
        })
    }

    /// An existing run's directory (for `approve`, `resume`, `report`).
    pub fn open(state_dir: &Path, id: &str) -> Option<RunDir> {
        // A run id never contains a path separator; refusing one keeps
        // `runbook approve ../../x` from reaching outside the state dir.
        if id.is_empty() || id.contains('/') || id.contains('\\') || id.starts_with('.') {
            return None;
        }
        let path = runs_dir(state_dir).join(id);
        path.is_dir().then(|| RunDir {
            id: id.to_string(),
            path,
        })
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL_FILE)
    }
}

/// The append-only event log of one run.
///
/// Every event is written with one `write` call as soon as it happens, so a
/// reader (or a `resume` after the engine was killed) sees it at once. The
/// `fdatasync` that makes it survive a power loss runs on a background
/// thread, coalescing bursts, and once more when the journal is dropped:
/// syncing on the dispatcher's thread cost a few milliseconds per event and
/// dominated short runs.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    syncer: Option<Syncer>,
}

#[derive(Debug)]
struct Syncer {
    state: std::sync::Arc<(std::sync::Mutex<SyncState>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct SyncState {
    dirty: bool,
    closing: bool,
    error: Option<std::io::Error>,
}

impl Syncer {
    fn start(file: File) -> Syncer {
        let state = std::sync::Arc::new((
            std::sync::Mutex::new(SyncState::default()),
            std::sync::Condvar::new(),
        ));
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || {
                let (lock, signal) = &*shared;
                loop {
                    let mut guard = lock
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while !guard.dirty && !guard.closing {
                        guard = signal
                            .wait(guard)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    let closing = guard.closing && !guard.dirty;
                    guard.dirty = false;
                    drop(guard);
                    if closing {
                        return;
                    }
                    if let Err(error) = file.sync_data() {
                        let mut guard = lock
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        guard.error.get_or_insert(error);
                    }
                }
            })
            .ok();
        Syncer { state, thread }
    }

    fn request(&self) -> Option<std::io::Error> {
        let (lock, signal) = &*self.state;
        let mut guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.dirty = true;
        signal.notify_one();
        guard.error.take()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(mut syncer) = self.syncer.take() {
            {
                let (lock, signal) = &*syncer.state;
                let mut guard = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                guard.closing = true;
                signal.notify_one();
            }
            if let Some(thread) = syncer.thread.take() {
                let _ = thread.join();
            }
        }
        // The last events (run_finished) are on disk before the process exits.
        let _ = self.file.sync_data();
    }
}

impl Journal {
    /// Creates the journal of `run_dir` (mode 0600; it must not exist yet).
    pub fn create(run_dir: &RunDir) -> Result<Journal, JournalError> {
        let path = run_dir.journal_path();
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| JournalError::Open {
                path: path.clone(),
                source,
            })?;
        // Without a second handle there is no background sync; every
        // append then syncs itself, which is slower but just as durable.
        let syncer = file.try_clone().ok().map(Syncer::start);
        Ok(Journal { file, path, syncer })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line and schedules a sync to disk.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        let mut line = event.to_json_line().into_bytes();
        line.push(b'\n');
        // One write of the whole line: with O_APPEND the kernel places it
        // atomically at the end, so a kill leaves whole lines only (a short
        // write, which a local file system does not do for these sizes,
        // would still be completed by the loop in write_all).
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| match &self.syncer {
                Some(syncer) if syncer.thread.is_some() => syncer.request().map_or(Ok(()), Err),
                _ => self.file.sync_data(),
            });
        written.map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a journal back: every complete line that parses as an event, in
/// order. A torn last line (the engine was killed while writing it) is
/// ignored; any other bad line is an error naming its line number.
pub fn read_journal(path: &Path) -> Result<Vec<Event>, ReadJournalError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadJournalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|source| ReadJournalError::Parse {
                path: path.to_path_buf(),
                line: n + 1,
                source,
            })
        })
        .collect()
}

/// A problem reading a journal back.
#[derive(Debug, thiserror::Error)]
pub enum ReadJournalError {
    /// The file could not be read.
    #[error("cannot read journal `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A complete line is not an event.
    #[error("journal `{path}` line {line} is not a valid event: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "runbook-journal-test-{name}-{}-{}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn state_dir_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = env(&[
            ("RUNBOOK_STATE_DIR", "/r"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            state_dir(Some(Path::new("/flag")), &all).expect("dir"),
            PathBuf::from("/flag")
        );
        assert_eq!(state_dir(None, &all).expect("dir"), PathBuf::from("/r"));
        let xdg = env(&[
            ("RUNBOOK_STATE_DIR", ""),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            state_dir(None, &xdg).expect("dir"),
            PathBuf::from("/x/runbook")
        );
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            state_dir(None, &home).expect("dir"),
            PathBuf::from("/h/.local/state/runbook")
        );
        assert!(state_dir(None, &env(&[])).is_err());
    }

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let a = new_run_id();
        let b = new_run_id();
        assert_eq!(a.len(), "20261126-203015-ab12cd".len(), "{a}");
        assert_ne!(a, b);
        assert!(a[..15].chars().all(|c| c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn run_dirs_are_private_and_distinct() {
        let state = temp_dir("dirs");
        let one = RunDir::create(&state).expect("create");
        let two = RunDir::create(&state).expect("create");
        assert_ne!(one.path, two.path);
        let mode = std::fs::metadata(&one.path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(RunDir::open(&state, &one.id).is_some());
        assert!(RunDir::open(&state, "../runs").is_none());
        assert!(RunDir::open(&state, "nope").is_none());
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    #[test]
    fn journal_round_trips_and_ignores_a_torn_last_line() {
        let state = temp_dir("journal");
        let dir = RunDir::create(&state).expect("create");
        let mut journal = Journal::create(&dir).expect("journal");
        let mut event = Event::new(EventKind::StepFinished, &dir.id);
        event.step = Some("a".into());
        event.status = Some("succeeded".into());
        journal.append(&event).expect("append");
        journal
            .append(&Event::new(EventKind::RunFinished, &dir.id))
            .expect("append");
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .expect("open");
        file.write_all(b"{\"ts\":\"2026").expect("torn write");
        let events = read_journal(journal.path()).expect("read");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], event);
        assert!(
            Journal::create(&dir).is_err(),
            "never reopened for a new run"
        );
        std::fs::remove_dir_all(state).expect("cleanup");
    }
}
