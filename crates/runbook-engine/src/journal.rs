//! Where runs are recorded: the state directory, run ids, one private
//! directory per run, and the append-only `events.jsonl` journal.
//!
//! The journal is what `resume`, `runs` and `report` read after the engine
//! is gone, possibly killed with SIGKILL half-way. So every event is written
//! as one whole line in one `write` call on an `O_APPEND` file the moment it
//! happens (a killed engine loses nothing it wrote: the kernel has it), and
//! an `fdatasync` follows every step boundary and the last event (what a
//! power loss needs). The sync runs on a thread of its own and the run does
//! not wait for it, except at the end. When step boundaries come faster
//! than every 10 ms, the thread syncs them together at most 10 ms apart:
//! a power loss can take the events of the last moments, never corrupt
//! the lines before them.

use crate::event::{Event, EventKind, EventStatus};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The journal's file name inside a run directory.
pub(crate) const JOURNAL_FILE: &str = "events.jsonl";
/// The lock file inside a run directory, held by the engine running it.
pub(crate) const LOCK_FILE: &str = "lock";

/// A problem creating or writing run state.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No state directory could be determined (no `HOME`).
    #[error(
        "cannot find a state directory: set --state-dir, $RUNBOOK_STATE_DIR, $XDG_STATE_HOME or $HOME"
    )]
    NoStateDir,
    /// A directory could not be created.
    #[error(
        "cannot create directory `{path}`: {}",
        runbook_model::io_error_words(source)
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be opened.
    #[error(
        "cannot create journal `{path}`: {}",
        runbook_model::io_error_words(source)
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another engine (a `run` or a `resume`) holds the run's lock.
    #[error(
        "run {id} is in use by another runbook process (its engine is still running, or another `resume` of it is)"
    )]
    Busy {
        /// The run id.
        id: String,
    },
    /// The run's lock could not be taken.
    #[error("cannot lock `{path}`: {}", runbook_model::io_error_words(source))]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be read back to be continued.
    #[error(transparent)]
    Read(#[from] ReadJournalError),
    /// An event could not be written or synced.
    #[error(
        "cannot write journal `{path}`: {}",
        runbook_model::io_error_words(source)
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something else deleted or emptied the journal while the run went on.
    #[error("the journal `{path}` was {what} during the run")]
    Tampered {
        /// The file.
        path: PathBuf,
        /// `deleted` or `truncated`.
        what: &'static str,
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
pub(crate) fn new_run_id() -> String {
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

    /// Records that the journal is missing events, and why, so that
    /// `resume` does not take it for the whole story.
    pub fn mark_journal_incomplete(&self, why: &str) -> std::io::Result<()> {
        std::fs::write(self.path.join(INCOMPLETE_FILE), format!("{why}\n"))
    }

    /// Why the journal is missing events, when the engine recorded that
    /// it is (see [`Self::mark_journal_incomplete`]).
    pub fn journal_incomplete(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join(INCOMPLETE_FILE))
            .ok()
            .map(|why| match why.trim() {
                // Made on a full disk, with no room left for the reason.
                "" => "events of this run could not be written to its journal (the disk was full?); it does not say everything that ran".to_string(),
                why => why.to_string(),
            })
    }

    /// Takes the run's lock, held until the returned guard is dropped (or
    /// the process dies, however it dies: the kernel releases it). Whoever
    /// runs the run holds it, so two engines never write one journal, and
    /// a run whose engine was killed is told apart from a live one.
    pub fn lock(&self) -> Result<RunLock, JournalError> {
        let path = self.path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| JournalError::Lock {
                path: path.clone(),
                source,
            })?;
        // `is_live` (from `runs`, `approve`, a report) holds a shared lock
        // for an instant: a few tries over a fifth of a second ride over
        // such a probe, where an engine holds it for as long as it runs.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RunLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(JournalError::Busy {
                        id: self.id.clone(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(JournalError::Lock { path, source });
                }
            }
        }
    }

    /// Whether an engine is running this run now (someone holds its lock).
    /// A run without a lock file (never started, or from an older build)
    /// is not live. An engine taking the lock in this instant waits for
    /// the probe (see [`Self::lock`]).
    pub fn is_live(&self) -> bool {
        let Ok(file) = File::open(self.path.join(LOCK_FILE)) else {
            return false;
        };
        // A shared lock is granted unless an engine holds the exclusive one;
        // it is dropped at once.
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    }
}

/// How many times [`RunDir::lock`] tries again, [`LOCK_RETRY`] apart,
/// before it calls a run busy.
const LOCK_TRIES: u32 = 20;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// The run's lock (see [`RunDir::lock`]); released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// The append-only event log of one run.
///
/// Every event is written with one `write` call as soon as it happens, so a
/// reader (or a `resume` after the engine was killed) sees it at once. The
/// `fdatasync` that makes it survive a power loss runs on a background
/// thread, which gathers the requests made within `SYNC_COALESCE_WINDOW`
/// of its last sync into one: syncing on the dispatcher's thread cost a few
/// milliseconds per event and dominated short runs. Dropping the journal
/// syncs once more, on the dropping thread.
///
/// [`Self::append`] asks for a sync after each event. The engine instead
/// [`write`](Self::write)s the events of one turn of its loop (a step's
/// `step_finished` and the next step's `step_started`) and
/// [`sync`](Self::sync)s once before it waits again: one sync per step
/// boundary instead of one per event, each costing a disk flush.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    syncer: Option<Syncer>,
    /// Events were written since the last sync was asked for.
    unsynced: bool,
    /// The file's length up to its last complete line: where a write that
    /// failed halfway is cut back to.
    len: u64,
    /// Lines that could not be written (a full disk), oldest first, kept
    /// to be written in order once there is room again; later events
    /// queue behind them, so the journal never has a hole.
    backlog: std::collections::VecDeque<Vec<u8>>,
    backlog_bytes: usize,
    /// Events given up on because the backlog was full.
    dropped: u64,
    /// A deleted or emptied journal was reported (see [`Journal::sync`]).
    tampering_reported: bool,
    /// The run directory says the journal is missing events
    /// ([`INCOMPLETE_FILE`]), for as long as it is.
    marked_incomplete: bool,
}

/// The most event text kept in memory while the journal cannot be written:
/// a full disk must not grow the engine without bound either.
const MAX_BACKLOG_BYTES: usize = 64 << 20;

/// The file in a run directory that says its journal is missing events
/// (they could not be written): the run cannot be resumed from it safely.
pub(crate) const INCOMPLETE_FILE: &str = "journal-incomplete";

#[derive(Debug)]
struct Syncer {
    state: std::sync::Arc<(std::sync::Mutex<SyncState>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct SyncState {
    dirty: bool,
    /// The thread waits for work and must be woken; otherwise it is
    /// syncing or in its coalescing window and will see `dirty` by itself.
    idle: bool,
    closing: bool,
    error: Option<std::io::Error>,
}

/// How long after a sync the thread collects further requests before it
/// syncs again. Without it a chain of quick steps flushed the disk once per
/// step (on ext4 a journal commit each: 199 syncs for 200 one-millisecond
/// steps, 31 with it, and the run 10 % faster); a request after a quiet
/// spell still wakes the thread at once.
const SYNC_COALESCE_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

impl Syncer {
    /// Starts the thread; `sync` is the journal's `fdatasync`.
    fn start(mut sync: impl FnMut() -> std::io::Result<()> + Send + 'static) -> Syncer {
        let state = std::sync::Arc::new((
            std::sync::Mutex::new(SyncState::default()),
            std::sync::Condvar::new(),
        ));
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || {
                let (lock, signal) = &*shared;
                let lock = || {
                    lock.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                };
                loop {
                    let mut guard = lock();
                    while !guard.dirty && !guard.closing {
                        guard.idle = true;
                        guard = signal
                            .wait(guard)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    guard.idle = false;
                    let closing = guard.closing && !guard.dirty;
                    guard.dirty = false;
                    drop(guard);
                    if closing {
                        return;
                    }
                    if let Err(error) = sync() {
                        lock().error.get_or_insert(error);
                    }
                    // Requests arriving now only mark the journal dirty;
                    // closing cuts the window short.
                    let guard = lock();
                    drop(
                        signal
                            .wait_timeout_while(guard, SYNC_COALESCE_WINDOW, |state| !state.closing)
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    );
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
        let wake = guard.idle;
        let error = guard.error.take();
        // Woken after the lock is released, so the thread does not wake
        // only to wait for it.
        drop(guard);
        if wake {
            signal.notify_one();
        }
        error
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The last events (run_finished) are on disk before the process
        // exits. This thread syncs them itself and lets the sync thread go
        // without waiting for it: handing the last sync over and joining
        // the thread put two thread wake-ups and its exit on the path from
        // the last step's end to the engine's exit.
        if let Some(mut syncer) = self.syncer.take() {
            let (lock, signal) = &*syncer.state;
            let mut guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.dirty = false;
            guard.closing = true;
            drop(guard);
            signal.notify_one();
            // Detached: it stops on its own once it sees `closing`.
            drop(syncer.thread.take());
        }
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
        let syncer = file
            .try_clone()
            .ok()
            .map(|file| Syncer::start(move || file.sync_data()));
        Ok(Journal {
            file,
            path,
            syncer,
            unsynced: false,
            len: 0,
            backlog: std::collections::VecDeque::new(),
            backlog_bytes: 0,
            dropped: 0,
            tampering_reported: false,
            marked_incomplete: false,
        })
    }

    /// Opens the journal of an existing run to continue it (`resume`),
    /// under the run's lock. A torn last line (the engine died while
    /// writing it) is cut off first, so that new events start on a line of
    /// their own; what was cut is returned for the caller to report.
    pub fn reopen(
        run_dir: &RunDir,
        _lock: &RunLock,
    ) -> Result<(Journal, Option<TornLine>), JournalError> {
        let path = run_dir.journal_path();
        let contents = read_journal(&path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Open {
                path: path.clone(),
                source,
            })?;
        if let Some(torn) = &contents.torn {
            file.set_len(torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(|source| JournalError::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        let syncer = file
            .try_clone()
            .ok()
            .map(|file| Syncer::start(move || file.sync_data()));
        let len = contents.torn.as_ref().map_or_else(
            || std::fs::metadata(&path).map_or(0, |m| m.len()),
            |torn| torn.offset,
        );
        let journal = Journal {
            file,
            path,
            syncer,
            unsynced: false,
            len,
            backlog: std::collections::VecDeque::new(),
            backlog_bytes: 0,
            dropped: 0,
            tampering_reported: false,
            marked_incomplete: false,
        };
        Ok((journal, contents.torn))
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line and schedules a sync to disk.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        self.write(event)?;
        self.sync()
    }

    /// Appends `event` as one line, visible to readers at once; it is on
    /// disk once [`Self::sync`] (or dropping the journal) has synced it.
    ///
    /// An event that cannot be written (a full disk) is kept, with every
    /// later one, and written in order at the next write once there is
    /// room: the journal has no holes, only a delay. Each write that finds
    /// the journal still blocked is an error; [`Self::unwritten`] says how
    /// many events are still waiting.
    pub fn write(&mut self, event: &Event) -> Result<(), JournalError> {
        let mut line = event.to_json_line().into_bytes();
        line.push(b'\n');
        if self.backlog_bytes + line.len() > MAX_BACKLOG_BYTES {
            self.dropped += 1;
        } else {
            self.backlog_bytes += line.len();
            self.backlog.push_back(line);
        }
        self.catch_up()
    }

    /// Writes the waiting lines, oldest first, until one fails.
    fn catch_up(&mut self) -> Result<(), JournalError> {
        while let Some(line) = self.backlog.front() {
            // One write of the whole line: with O_APPEND the kernel places
            // it atomically at the end, so a kill leaves whole lines only
            // (a short write, which a local file system does not do for
            // these sizes, would still be completed by write_all's loop).
            if let Err(source) = self.file.write_all(line) {
                // A line cut short by a full disk would join the next one
                // into a line no reader can parse: cut it off.
                let _ = self.file.set_len(self.len);
                self.mark_incomplete(
                    "events of this run wait to be written to its journal (a write failed); until they are, it does not say everything that ran",
                );
                return Err(JournalError::Write {
                    path: self.path.clone(),
                    source,
                });
            }
            self.len += line.len() as u64;
            self.backlog_bytes -= line.len();
            self.backlog.pop_front();
            self.unsynced = true;
        }
        if self.marked_incomplete && self.dropped == 0 && !self.tampering_reported {
            // Caught up: the journal says everything again.
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_file(dir.join(INCOMPLETE_FILE));
            }
            self.marked_incomplete = false;
        }
        Ok(())
    }

    /// Says in the run directory, at once, that the journal is missing
    /// events: an engine killed before the run ends must not leave a
    /// journal that `resume` would trust to run finished steps again.
    /// Best effort: on a full disk this write may fail too.
    fn mark_incomplete(&mut self, why: &str) {
        if self.marked_incomplete {
            return;
        }
        if let Some(dir) = self.path.parent() {
            let marker = dir.join(INCOMPLETE_FILE);
            // On a full disk the file may be made but stay empty: it marks
            // the run all the same, and must go once the journal catches up.
            let _ = std::fs::write(&marker, format!("{why}\n"));
            self.marked_incomplete = marker.exists();
        }
    }

    /// How many events are not in the journal: waiting to be written, or
    /// given up on. Tries once more to write the waiting ones first.
    pub fn unwritten(&mut self) -> u64 {
        let _ = self.catch_up();
        self.backlog.len() as u64 + self.dropped
    }

    /// Schedules a sync to disk of every event written so far (nothing to
    /// do when none was written since the last one). An error is that of
    /// an earlier background sync, reported once.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !std::mem::take(&mut self.unsynced) {
            return Ok(());
        }
        let synced = match &self.syncer {
            Some(syncer) if syncer.thread.is_some() => syncer.request().map_or(Ok(()), Err),
            _ => self.file.sync_data(),
        };
        // A journal deleted or emptied by hand (a clean-up script, a
        // mistaken `rm`) takes writes without complaint; said once, since
        // nothing here can bring it back.
        if !self.tampering_reported
            && let Ok(meta) = self.file.metadata()
        {
            let what = if meta.nlink() == 0 {
                Some("deleted")
            } else if meta.len() < self.len {
                Some("truncated")
            } else {
                None
            };
            if let Some(what) = what {
                self.tampering_reported = true;
                self.mark_incomplete(&format!(
                    "its journal was {what} during the run; it does not say everything that ran"
                ));
                // Where a failed write is cut back to, from now on.
                self.len = meta.len();
                return Err(JournalError::Tampered {
                    path: self.path.clone(),
                    what,
                });
            }
        }
        synced.map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// A journal read back: its events, and the torn last line if the writer
/// died in the middle of one.
#[derive(Debug)]
pub struct JournalContents {
    /// Every complete event, in order.
    pub events: Vec<Event>,
    /// The incomplete last line, if any.
    pub torn: Option<TornLine>,
}

/// An incomplete last line of a journal (no newline at the end of the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornLine {
    /// Its 1-based line number.
    pub line: usize,
    /// Its length in bytes.
    pub bytes: u64,
    /// Where it starts in the file (the length of the complete part).
    pub offset: u64,
}

impl std::fmt::Display for TornLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} is incomplete ({} bytes; the engine stopped while writing it)",
            self.line, self.bytes
        )
    }
}

/// Reads a journal back: every complete line as an event, in order. A torn
/// last line (the engine was killed while writing it) is not an error; it
/// is returned in [`JournalContents::torn`] for the caller to report. Any
/// other bad line (a complete line that is not an event, text that is not
/// UTF-8) is an error naming its line number.
pub fn read_journal(path: &Path) -> Result<JournalContents, ReadJournalError> {
    read_journal_keeping(path, true)
}

/// [`read_journal`] without the steps' outputs, for what needs only the
/// course of a run (`runbook runs`): a journal of large outputs costs the
/// memory of one of them at a time instead of many times its size.
pub fn read_journal_without_outputs(path: &Path) -> Result<JournalContents, ReadJournalError> {
    read_journal_keeping(path, false)
}

fn read_journal_keeping(path: &Path, outputs: bool) -> Result<JournalContents, ReadJournalError> {
    use std::io::BufRead;
    let io_error = |source| ReadJournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A line at a time: the journal of a run with large outputs is tens of
    // megabytes, which need not all be in memory at once.
    let mut reader = std::io::BufReader::new(File::open(path).map_err(io_error)?);
    let mut events: Vec<Event> = Vec::new();
    let mut line = Vec::new();
    let mut line_count = 0;
    let mut complete_len: u64 = 0;
    let mut torn = None;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io_error)?;
        if read == 0 {
            break;
        }
        let n = line_count;
        line_count += 1;
        if line.last() != Some(&b'\n') {
            torn = Some(TornLine {
                line: line_count,
                bytes: line.len() as u64,
                offset: complete_len,
            });
            break;
        }
        complete_len += line.len() as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Without its newline, so that the parser's position is a column
        // of this line (an event cut short ends at its last byte, not at
        // "line 2, column 0").
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let mut event: Event =
            serde_json::from_slice(text).map_err(|source| ReadJournalError::Parse {
                path: path.to_path_buf(),
                line: n + 1,
                source,
            })?;
        if !outputs && let Some(kept) = &mut event.outputs {
            // A gate's decision is part of the course of the run.
            kept.retain(|name, _| name == "approved" || name == "decided_by");
        }
        let run_id = events
            .first()
            .map_or(event.run_id.as_str(), |e| e.run_id.as_str());
        if let Err(problem) = check_event(&event, run_id) {
            return Err(ReadJournalError::Invalid {
                path: path.to_path_buf(),
                line: n + 1,
                problem,
            });
        }
        events.push(event);
    }
    Ok(JournalContents { events, torn })
}

/// What parsing alone does not check: a line that is JSON of the right
/// shape but says something the engine never writes (a status that does
/// not exist, a step event without its step, another run's id) would make
/// `resume` misjudge what already happened, so it is damage like any other.
fn check_event(event: &Event, run_id: &str) -> Result<(), String> {
    if event.run_id.is_empty() || event.run_id != run_id {
        return Err(format!(
            "its run_id `{}` is not the journal's (`{run_id}`)",
            event.run_id
        ));
    }
    if chrono::DateTime::parse_from_rfc3339(&event.ts).is_err() {
        return Err(format!("its ts `{}` is not an RFC 3339 time", event.ts));
    }
    use EventStatus::{Cancelled, Failed, Interrupted, Skipped, Succeeded};
    let statuses: &[EventStatus] = match event.event {
        EventKind::StepFinished => &[Succeeded, Failed, Cancelled],
        EventKind::RollbackFinished => &[Succeeded, Failed, Cancelled, Skipped],
        EventKind::RunFinished => &[Succeeded, Failed, Interrupted],
        _ => &[],
    };
    let name = event.event.as_str();
    if !statuses.is_empty() {
        match event.status {
            Some(status) if statuses.contains(&status) => {}
            Some(status) => {
                let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
                return Err(format!(
                    "`{}` is not a status of {name} (one of {})",
                    status.as_str(),
                    names.join(", ")
                ));
            }
            None => return Err(format!("{name} has no status")),
        }
    }
    let needs_step = !matches!(event.event, EventKind::RunStarted | EventKind::RunFinished);
    if needs_step && event.step.as_deref().is_none_or(str::is_empty) {
        return Err(format!("{name} has no step"));
    }
    if let Some(phase) = event.phase {
        use runbook_model::Phase::{Finally, Main, OnFailure, Rollback};
        let phases: &[runbook_model::Phase] = match event.event {
            EventKind::RollbackStarted | EventKind::RollbackFinished => &[Rollback],
            // A gate of a rollback asks under `rollback`.
            EventKind::GateWaiting | EventKind::GateDecided => {
                &[Main, OnFailure, Finally, Rollback]
            }
            _ => &[Main, OnFailure, Finally],
        };
        if !phases.contains(&phase) {
            let names: Vec<&str> = phases.iter().map(|p| p.key()).collect();
            return Err(format!(
                "`{}` is not a phase of {name} (one of {})",
                phase.key(),
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// What the JSON parser found wrong, without its position (the caller
/// gives the journal's line and the column).
fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A problem reading a journal back.
#[derive(Debug, thiserror::Error)]
pub enum ReadJournalError {
    /// The file could not be read.
    #[error(
        "cannot read journal `{path}`: {}",
        runbook_model::io_error_words(source)
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A complete line is not an event.
    #[error(
        "journal `{path}` line {line}, column {}: not a valid event: {}",
        source.column(),
        json_problem(source)
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A complete line is an event of the right shape that the engine
    /// cannot have written.
    #[error("journal `{path}` line {line} is not a valid event: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A `run_finished` as the engine writes it (with its status).
    fn run_finished(run_id: &str) -> Event {
        let mut event = Event::new(EventKind::RunFinished, run_id);
        event.status = Some(EventStatus::Succeeded);
        event
    }

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

    /// Lines that parse but say what the engine never writes are damage,
    /// refused with their line number: `resume` would misjudge the run.
    #[test]
    fn events_the_engine_cannot_have_written_are_refused() {
        let dir = temp_dir("invalid");
        let path = dir.join("events.jsonl");
        let started = Event::new(EventKind::RunStarted, "r1").to_json_line();
        let mut finished = Event::new(EventKind::StepFinished, "r1");
        finished.step = Some("a".into());
        finished.status = Some(EventStatus::Succeeded);
        let good = finished.to_json_line();
        std::fs::write(&path, format!("{started}\n{good}\n")).expect("write");
        assert_eq!(read_journal(&path).expect("valid").events.len(), 2);

        let cases = [
            (
                good.replace("\"succeeded\"", "\"interrupted\""),
                "`interrupted` is not a status of step_finished",
            ),
            (
                good.replace("\"status\"", "\"sta{tus\""),
                "step_finished has no status",
            ),
            (
                good.replace("\"r1\"", "\"r2\""),
                "run_id `r2` is not the journal's (`r1`)",
            ),
            (
                good.replace("\"step\":\"a\",", ""),
                "step_finished has no step",
            ),
            (
                good.replacen("\"ts\":\"", "\"ts\":\"yesterday ", 1),
                "is not an RFC 3339 time",
            ),
        ];
        for (line, expected) in cases {
            std::fs::write(&path, format!("{started}\n{line}\n")).expect("write");
            match read_journal(&path) {
                Err(ReadJournalError::Invalid {
                    line: 2, problem, ..
                }) => {
                    assert!(problem.contains(expected), "{problem} for {line}");
                }
                other => panic!("{line} was not refused at line 2: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn journal_round_trips_and_ignores_a_torn_last_line() {
        let state = temp_dir("journal");
        let dir = RunDir::create(&state).expect("create");
        let mut journal = Journal::create(&dir).expect("journal");
        let mut event = Event::new(EventKind::StepFinished, &dir.id);
        event.step = Some("a".into());
        event.status = Some(EventStatus::Succeeded);
        journal.append(&event).expect("append");
        journal.append(&run_finished(&dir.id)).expect("append");
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .expect("open");
        file.write_all(b"{\"ts\":\"2026").expect("torn write");
        let contents = read_journal(journal.path()).expect("read");
        assert_eq!(contents.events.len(), 2);
        assert_eq!(contents.events[0], event);
        assert_eq!(
            contents.torn,
            Some(TornLine {
                line: 3,
                bytes: 11,
                offset: std::fs::metadata(journal.path()).expect("meta").len() - 11,
            })
        );
        assert!(
            Journal::create(&dir).is_err(),
            "never reopened for a new run"
        );
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    #[test]
    fn one_engine_per_run_and_liveness_follows_the_lock() {
        let state = temp_dir("lock");
        let dir = RunDir::create(&state).expect("create");
        assert!(!dir.is_live(), "no lock file yet");
        let lock = dir.lock().expect("first lock");
        assert!(dir.is_live());
        assert!(matches!(dir.lock(), Err(JournalError::Busy { .. })));
        drop(lock);
        assert!(!dir.is_live());
        let _again = dir.lock().expect("lock after release");
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    /// On a full disk the marker may be made with no room for its reason.
    #[test]
    fn an_empty_incomplete_marker_still_gives_a_reason() {
        let state = temp_dir("marker");
        let dir = RunDir::create(&state).expect("create");
        assert_eq!(dir.journal_incomplete(), None);
        std::fs::write(dir.path.join(INCOMPLETE_FILE), "").expect("empty marker");
        assert!(
            dir.journal_incomplete()
                .is_some_and(|why| why.contains("could not be written")),
            "{:?}",
            dir.journal_incomplete()
        );
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    #[test]
    fn a_journal_read_without_outputs_keeps_only_gate_decisions() {
        let state = temp_dir("lean");
        let dir = RunDir::create(&state).expect("create");
        let _lock = dir.lock().expect("lock");
        let mut journal = Journal::create(&dir).expect("journal");
        journal
            .append(&Event::new(EventKind::RunStarted, &dir.id))
            .expect("append");
        for (step, outputs) in [
            (
                "big",
                serde_json::json!({"stdout": "x".repeat(10_000), "lines": ["x"]}),
            ),
            (
                "gate",
                serde_json::json!({"approved": true, "decided_by": "carol"}),
            ),
        ] {
            let mut finished = Event::new(EventKind::StepFinished, &dir.id);
            finished.step = Some(step.into());
            finished.phase = Some(runbook_model::Phase::Main);
            finished.status = Some(EventStatus::Succeeded);
            finished.outputs = outputs.as_object().cloned();
            journal.append(&finished).expect("append");
        }
        drop(journal);
        let full = read_journal(&dir.journal_path()).expect("read");
        let lean = read_journal_without_outputs(&dir.journal_path()).expect("read");
        assert_eq!(full.events.len(), lean.events.len());
        let names = |contents: &JournalContents, i: usize| -> Vec<String> {
            contents.events[i]
                .outputs
                .as_ref()
                .map_or_else(Vec::new, |o| o.keys().cloned().collect())
        };
        assert_eq!(names(&full, 1), ["stdout", "lines"]);
        assert!(names(&lean, 1).is_empty());
        assert_eq!(names(&lean, 2), ["approved", "decided_by"]);
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    /// `runbook approve` or `runs` looking whether the run is live must
    /// not make a resume starting at that moment give up on a busy run.
    #[test]
    fn a_liveness_probe_does_not_make_an_engine_starting_meanwhile_fail() {
        let state = temp_dir("probe");
        let dir = RunDir::create(&state).expect("create");
        drop(dir.lock().expect("the lock file exists"));
        // A probe's shared lock, held longer than any probe holds it.
        let probe = File::open(dir.path.join(LOCK_FILE)).expect("open");
        probe.try_lock_shared().expect("shared lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(probe);
        });
        let _lock = dir.lock().expect("taken once the probe let go");
        release.join().expect("join");
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    #[test]
    fn reopening_cuts_a_torn_line_so_new_events_start_on_their_own_line() {
        let state = temp_dir("reopen");
        let dir = RunDir::create(&state).expect("create");
        let lock = dir.lock().expect("lock");
        let mut journal = Journal::create(&dir).expect("journal");
        journal
            .append(&Event::new(EventKind::RunStarted, &dir.id))
            .expect("append");
        drop(journal);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.journal_path())
            .expect("open");
        file.write_all(b"{\"ts\":\"20").expect("torn write");
        let (mut journal, torn) = Journal::reopen(&dir, &lock).expect("reopen");
        assert_eq!(torn.map(|t| (t.line, t.bytes)), Some((2, 9)));
        journal.append(&run_finished(&dir.id)).expect("append");
        let contents = read_journal(&dir.journal_path()).expect("read");
        assert_eq!(contents.torn, None);
        let kinds: Vec<_> = contents.events.iter().map(|e| e.event).collect();
        assert_eq!(kinds, [EventKind::RunStarted, EventKind::RunFinished]);
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    #[test]
    fn a_bad_complete_line_is_refused_with_its_number() {
        let state = temp_dir("bad");
        let path = state.join(JOURNAL_FILE);
        let good = Event::new(EventKind::RunStarted, "r").to_json_line();
        std::fs::write(&path, format!("{good}\n\nnot json\n{good}\n")).expect("write");
        let error = read_journal(&path).expect_err("refused");
        assert!(
            matches!(error, ReadJournalError::Parse { line: 3, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("line 3"), "{error}");
        std::fs::remove_dir_all(state).expect("cleanup");
    }

    /// A journal in a fresh run directory named after the test.
    fn temp_journal(name: &str) -> (RunDir, Journal) {
        let run_dir = RunDir {
            id: "r".into(),
            path: temp_dir(name),
        };
        let journal = Journal::create(&run_dir).expect("create");
        (run_dir, journal)
    }

    #[test]
    fn written_events_are_visible_at_once_and_synced_on_request_or_drop() {
        let (run_dir, mut journal) = temp_journal("write-sync");
        // Nothing written: nothing to sync.
        journal.sync().expect("sync");
        assert!(!journal.unsynced);
        journal
            .write(&Event::new(EventKind::RunStarted, "r"))
            .expect("write");
        assert!(journal.unsynced);
        let read = read_journal(&run_dir.journal_path()).expect("read");
        assert_eq!(read.events.len(), 1);
        journal.sync().expect("sync");
        assert!(!journal.unsynced);
        journal.write(&run_finished("r")).expect("write");
        drop(journal);
        let read = read_journal(&run_dir.journal_path()).expect("read");
        let kinds: Vec<EventKind> = read.events.iter().map(|e| e.event).collect();
        assert_eq!(kinds, [EventKind::RunStarted, EventKind::RunFinished]);
        std::fs::remove_dir_all(&run_dir.path).expect("clean up");
    }

    #[test]
    fn dropping_the_journal_syncs_without_waiting_for_a_busy_sync_thread() {
        let (run_dir, mut journal) = temp_journal("drop-busy");
        // A sync thread stuck in its `fdatasync` until the test lets it go.
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let (entered, in_sync) = std::sync::mpsc::channel::<()>();
        let stuck = std::sync::Mutex::new(stuck);
        let stuck_syncer = Syncer::start(move || {
            let _ = entered.send(());
            let _ = stuck.lock().expect("not poisoned").recv();
            Ok(())
        });
        if let Some(own) = journal.syncer.replace(stuck_syncer) {
            close(own);
        }
        journal.write(&run_finished("r")).expect("write");
        journal.sync().expect("sync");
        in_sync
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the sync thread started its sync");
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(journal);
            let _ = dropped.send(());
        });
        let finished = done.recv_timeout(std::time::Duration::from_secs(10));
        let _ = release.send(());
        finished.expect("the drop waited for the stuck sync thread");
        let read = read_journal(&run_dir.journal_path()).expect("read");
        assert_eq!(read.events.len(), 1);
        std::fs::remove_dir_all(&run_dir.path).expect("clean up");
    }

    /// A sync thread whose `fdatasync` records how many requests had been
    /// made when it ran.
    fn counting_syncer() -> (
        Syncer,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    ) {
        let requested = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let synced_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let syncer = {
            let requested = requested.clone();
            let synced_at = synced_at.clone();
            Syncer::start(move || {
                let seen = requested.load(std::sync::atomic::Ordering::SeqCst);
                synced_at.lock().expect("not poisoned").push(seen);
                Ok(())
            })
        };
        (syncer, requested, synced_at)
    }

    fn close(mut syncer: Syncer) {
        {
            let (lock, signal) = &*syncer.state;
            lock.lock().expect("not poisoned").closing = true;
            signal.notify_one();
        }
        syncer
            .thread
            .take()
            .expect("a thread")
            .join()
            .expect("joined");
    }

    #[test]
    fn sync_requests_in_quick_succession_share_syncs_and_the_last_is_synced_on_close() {
        let (syncer, requested, synced_at) = counting_syncer();
        let started = std::time::Instant::now();
        // Step boundaries of a chain of quick steps: a millisecond apart.
        for _ in 0..50 {
            requested.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(syncer.request().is_none());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let windows = started.elapsed().as_millis() / SYNC_COALESCE_WINDOW.as_millis();
        close(syncer);
        let synced_at = synced_at.lock().expect("not poisoned");
        // At most one sync per window (plus the first and the last), however
        // slowly the loop ran; without the window it would be one per request.
        let most = usize::try_from(windows).unwrap_or(usize::MAX) + 2;
        assert!(
            !synced_at.is_empty() && synced_at.len() <= most,
            "{} syncs for 50 requests in {windows} windows",
            synced_at.len()
        );
        assert_eq!(synced_at.last(), Some(&50), "the last request was synced");
    }

    #[test]
    fn a_request_after_a_quiet_spell_is_synced_without_waiting_for_the_end() {
        let (syncer, requested, synced_at) = counting_syncer();
        // Let the thread go idle first.
        std::thread::sleep(SYNC_COALESCE_WINDOW * 3);
        requested.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(syncer.request().is_none());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while synced_at.lock().expect("not poisoned").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle sync thread was never woken"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        close(syncer);
    }

    #[test]
    fn a_failed_sync_is_reported_by_the_next_request() {
        let syncer = Syncer::start(|| Err(std::io::Error::other("disk on fire")));
        assert!(syncer.request().is_none());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let error = loop {
            if let Some(error) = syncer.request() {
                break error;
            }
            assert!(std::time::Instant::now() < deadline, "no error reported");
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(error.to_string(), "disk on fire");
        close(syncer);
    }
}
