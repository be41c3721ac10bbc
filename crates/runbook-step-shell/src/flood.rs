//! Larger pipes for steps that flood their output.
//!
//! A pipe holds 64 KiB by default. A step writing faster than the engine
//! reads fills it, and every write after that wakes the engine for a few
//! kilobytes: 50 MB of output cost thousands of wake-ups, each a context
//! switch between CPUs. Once a stream has delivered [`FLOOD_BYTES`], its pipe
//! is grown to [`FLOOD_PIPE_BYTES`], so the writer runs ahead and each read
//! brings more (docs/performance.md, eighth round, has the figures). Quiet
//! steps, nearly all of them, keep the default and pay nothing for this.
//!
//! Pipe memory counts against a per-user limit (`pipe-user-pages-soft`,
//! 64 MiB by default); past it, the kernel gives the user's new pipes two
//! pages only, whichever program creates them. So a run grows at most
//! [`MAX_GROWN_PIPES`] pipes at a time, and a pipe the kernel refuses to
//! grow simply stays as it was.

use nix::fcntl::{FcntlArg, fcntl};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes a stream delivers before its pipe counts as flooded.
pub(crate) const FLOOD_BYTES: u64 = 1 << 20;

/// The size a flooded pipe is grown to: Linux's default `pipe-max-size`,
/// the most an unprivileged process may ask for.
pub(crate) const FLOOD_PIPE_BYTES: usize = 1 << 20;

/// How many pipes of one run may be grown at the same time: 8 MiB at most,
/// an eighth of the default per-user allowance.
pub(crate) const MAX_GROWN_PIPES: usize = 8;

/// The run's allowance of grown pipes, shared by all its shell steps.
#[derive(Debug, Default)]
pub(crate) struct FloodPipes {
    grown: AtomicUsize,
}

/// One grown pipe; gives its place in the allowance back when dropped
/// (when the stream has been read to its end).
#[derive(Debug)]
pub(crate) struct Grown<'a> {
    pipes: &'a FloodPipes,
}

impl Drop for Grown<'_> {
    fn drop(&mut self) {
        self.pipes.grown.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FloodPipes {
    /// Grows `pipe` to [`FLOOD_PIPE_BYTES`] if the run's allowance has room
    /// and the kernel agrees; `None` leaves the pipe as it was.
    pub(crate) fn grow(&self, pipe: impl AsFd) -> Option<Grown<'_>> {
        let taken = self
            .grown
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_GROWN_PIPES).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return None;
        }
        let grown = Grown { pipes: self };
        // The size fits in an i32: it is a constant of 1 MiB.
        let size = FLOOD_PIPE_BYTES as i32;
        fcntl(pipe.as_fd(), FcntlArg::F_SETPIPE_SZ(size))
            .ok()
            .map(|_| grown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_size(pipe: impl AsFd) -> i32 {
        fcntl(pipe.as_fd(), FcntlArg::F_GETPIPE_SZ).expect("F_GETPIPE_SZ")
    }

    #[test]
    fn a_run_grows_at_most_its_allowance_of_pipes_at_once() {
        let pipes = FloodPipes::default();
        let ends: Vec<_> = (0..=MAX_GROWN_PIPES)
            .map(|_| nix::unistd::pipe().expect("pipe"))
            .collect();
        let mut grown: Vec<_> = ends[..MAX_GROWN_PIPES]
            .iter()
            .map(|(read, _)| pipes.grow(read).expect("within the allowance"))
            .collect();
        for (read, _) in &ends[..MAX_GROWN_PIPES] {
            assert_eq!(pipe_size(read), FLOOD_PIPE_BYTES as i32);
        }
        let (last, _) = &ends[MAX_GROWN_PIPES];
        let before = pipe_size(last);
        assert!(pipes.grow(last).is_none(), "past the allowance");
        assert_eq!(pipe_size(last), before, "left as it was");

        // A stream that ended gives its place back.
        grown.pop();
        assert!(pipes.grow(last).is_some());
        assert_eq!(pipe_size(last), FLOOD_PIPE_BYTES as i32);
    }

    #[test]
    fn a_pipe_the_kernel_will_not_grow_takes_no_place() {
        let pipes = FloodPipes::default();
        // Not a pipe: F_SETPIPE_SZ fails (EBADF on a file).
        let file = tempfile::tempfile().expect("temp file");
        assert!(pipes.grow(&file).is_none());
        assert_eq!(pipes.grown.load(Ordering::Acquire), 0);
    }
}
