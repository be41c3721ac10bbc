//! Output to a pipe that never makes the engine wait for the pipe's reader.
//!
//! A reader that stops reading (`runbook run … 2>&1 | less` left on its
//! first page, a paused consumer of `--output json`) fills the pipe's
//! 64 KiB, after which `write` blocks. On the engine's thread that would
//! stop everything it watches: step timeouts, the run's deadline, Ctrl-C.
//! So text for a pipe or a socket is queued and written by a thread of its
//! own; files, `/dev/null` and terminals, which do not wait on a reader,
//! are written directly by the caller (no thread, no hand-off per line).
//!
//! Every writer is registered so that [`flush_all`] can empty them before
//! the process ends, whoever still holds them.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// When the backlog is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Past 64 MiB unread, leave text out and say how much: live lines for
    /// people, whose steps' outputs the journal keeps.
    Drop,
    /// Events for a program, which must get them all: they queue up to
    /// 1 GiB (more than the journal of any run holds, see `BACKLOG_WAIT`),
    /// and only past that does the engine wait for the reader.
    Wait,
}

impl WhenFull {
    fn limit(self) -> usize {
        match self {
            WhenFull::Drop => 64 << 20,
            WhenFull::Wait => BACKLOG_WAIT,
        }
    }
}

/// Where events stop queueing: waiting on a reader stops the engine's
/// clock, so only a reader stuck while a run writes this much of them.
const BACKLOG_WAIT: usize = 1 << 30;

/// The most buffer capacity a writer keeps between writes; a burst's
/// buffers are given back.
const KEPT_CAPACITY: usize = 1 << 20;

/// The stream a [`PipeWriter`] writes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A queue in front of stdout or stderr, written by a thread of its own.
pub(crate) struct PipeWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for text.
    text: Condvar,
    /// Callers wait here for room (under [`WhenFull::Wait`]) or for the
    /// queue to empty ([`PipeWriter::flush`]).
    written: Condvar,
    when_full: WhenFull,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Bytes the writer thread took from `pending` and is writing: they
    /// count against the limit too.
    in_flight: usize,
    dropped: u64,
    /// The first error writing: later text is not written.
    failed: Option<std::io::ErrorKind>,
}

/// Every writer made, to be flushed at the end (see [`flush_all`]).
static WRITERS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

impl PipeWriter {
    /// A writer for `stream` when it is a pipe or a socket; `None` for
    /// anything a write cannot wait on indefinitely.
    pub(crate) fn for_stream(stream: Stream, when_full: WhenFull) -> Option<PipeWriter> {
        let is_pipe = match stream {
            Stream::Stdout => waits_on_a_reader(std::io::stdout().as_fd()),
            Stream::Stderr => waits_on_a_reader(std::io::stderr().as_fd()),
        };
        if !is_pipe {
            return None;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            text: Condvar::new(),
            written: Condvar::new(),
            when_full,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name(match stream {
                Stream::Stdout => "stdout-writer".to_string(),
                Stream::Stderr => "stderr-writer".to_string(),
            })
            .spawn(move || writer.run(stream))
            .ok()?;
        if let Ok(mut writers) = WRITERS.lock() {
            writers.retain(|w| w.strong_count() > 0);
            writers.push(Arc::downgrade(&shared));
        }
        Some(PipeWriter { shared })
    }

    /// Queues `bytes`. Fails with the error the writer thread met, if any
    /// (a reader that went away: `BrokenPipe`).
    pub(crate) fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let Ok(mut state) = self.shared.state.lock() else {
            return Err(std::io::ErrorKind::Other.into());
        };
        let limit = self.shared.when_full.limit();
        loop {
            if let Some(kind) = state.failed {
                return Err(kind.into());
            }
            let queued = state.pending.len() + state.in_flight;
            if queued == 0 || queued + bytes.len() <= limit {
                break;
            }
            match self.shared.when_full {
                WhenFull::Drop => {
                    state.dropped += bytes.len() as u64;
                    return Ok(());
                }
                WhenFull::Wait => match self.shared.written.wait(state) {
                    Ok(next) => state = next,
                    Err(_) => return Err(std::io::ErrorKind::Other.into()),
                },
            }
        }
        state.note_dropped();
        state.pending.extend_from_slice(bytes);
        self.shared.text.notify_one();
        Ok(())
    }

    /// Waits until everything queued is written, or writing failed.
    pub(crate) fn flush(&self) {
        self.shared.flush(None);
    }
}

impl Drop for PipeWriter {
    /// Nothing queued is lost when the command ends: the process waits for
    /// the reader then, as a plain write would have.
    fn drop(&mut self) {
        self.flush();
    }
}

/// Empties every writer still alive, waiting at most `limit` for each
/// (none: as long as its reader takes). Called as the process ends, since
/// clones of the screen held by tasks and threads never drop.
pub(crate) fn flush_all(limit: Option<Duration>) {
    let writers: Vec<Arc<Shared>> = match WRITERS.lock() {
        Ok(writers) => writers.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    for writer in writers {
        writer.flush(limit);
    }
}

impl State {
    /// Says, in the stream, how much was left out, once there is room.
    fn note_dropped(&mut self) {
        if self.dropped > 0 {
            let note = format!(
                "[runbook: {} bytes of output not shown here: this stream was not read fast enough; the journal keeps the steps' outputs]\n",
                self.dropped
            );
            self.pending.extend_from_slice(note.as_bytes());
            self.dropped = 0;
        }
    }
}

impl Shared {
    fn flush(&self, limit: Option<Duration>) {
        let deadline = limit.map(|limit| Instant::now() + limit);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        // Text left out at the very end is said too.
        if state.dropped > 0 && state.failed.is_none() {
            state.note_dropped();
            self.text.notify_one();
        }
        while (state.in_flight > 0 || !state.pending.is_empty()) && state.failed.is_none() {
            state = match deadline {
                None => match self.written.wait(state) {
                    Ok(next) => next,
                    Err(_) => return,
                },
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return;
                    };
                    match self.written.wait_timeout(state, left) {
                        Ok((next, _)) => next,
                        Err(_) => return,
                    }
                }
            };
        }
    }

    fn run(&self, stream: Stream) {
        let mut taken = Vec::new();
        loop {
            {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                state.in_flight = 0;
                self.written.notify_all();
                while state.pending.is_empty() {
                    match self.text.wait(state) {
                        Ok(next) => state = next,
                        Err(_) => return,
                    }
                }
                std::mem::swap(&mut taken, &mut state.pending);
                state.in_flight = taken.len();
            }
            let result = match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&taken).and_then(|()| out.flush())
                }
                Stream::Stderr => std::io::stderr().lock().write_all(&taken),
            };
            taken.clear();
            if taken.capacity() > KEPT_CAPACITY {
                taken = Vec::new();
            }
            if let Err(error) = result
                && let Ok(mut state) = self.state.lock()
            {
                state.failed = Some(error.kind());
                state.pending = Vec::new();
                state.in_flight = 0;
                self.written.notify_all();
                return;
            }
        }
    }
}

/// Whether `fd` is a pipe or a socket, where a write waits for a reader.
fn waits_on_a_reader(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::sys::stat::{SFlag, fstat};
    fstat(fd).is_ok_and(|stat| {
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_dev_null_is_written_directly() {
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(!waits_on_a_reader(null.as_fd()));
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        assert!(waits_on_a_reader(writer.as_fd()));
        assert!(waits_on_a_reader(reader.as_fd()));
    }
}
