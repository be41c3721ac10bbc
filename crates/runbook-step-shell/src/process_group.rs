//! Unix process groups: signalling every process a step started, and a drop
//! guard that kills them all if the step's future is abandoned.
//!
//! Each shell step is spawned as the leader of a new process group
//! (`setpgid(0, 0)` in the child). Signalling the negative pgid reaches the
//! script and everything it started (pipelines, background jobs,
//! grandchildren) unless a process deliberately left the group with
//! `setsid`. Tokio's `kill_on_drop` only reaches the direct child, which is
//! why the group needs its own guard.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::str::FromStr;

/// The process group of one running step. Dropping it while armed sends
/// SIGKILL to the whole group.
pub(crate) struct ProcessGroup {
    pgid: Pid,
    armed: bool,
}

impl ProcessGroup {
    /// The group led by `leader`, which was spawned with `process_group(0)`
    /// so that its pid is also the group id. `None` if the pid does not fit
    /// a `pid_t` (it always does on real systems).
    pub(crate) fn new(leader: u32) -> Option<Self> {
        let pgid = i32::try_from(leader).ok().filter(|&p| p > 0)?;
        Some(ProcessGroup {
            pgid: Pid::from_raw(pgid),
            armed: true,
        })
    }

    /// Sends `signal` to every process of the group. A group that no longer
    /// exists (ESRCH) is not an error: everything already exited.
    pub(crate) fn signal(&self, signal: Signal) {
        // The only other failure, EPERM, would mean a member changed
        // credentials (setuid); there is nothing more we could do about it.
        let _ = killpg(self.pgid, signal);
    }

    /// Whether no live process is left in the group (once its leader was
    /// reaped): what still holds the step's output then left the group.
    /// Zombies do not count: orphans are reparented to PID 1, which in a
    /// container may never reap them.
    pub(crate) fn is_empty(&self) -> bool {
        !crate::leftovers::group_alive(self.pgid)
    }

    /// Whether anything but zombies is still in the group. One
    /// `kill(-pgid, 0)` when nothing is, the common case.
    pub(crate) fn has_live_members(&self) -> bool {
        killpg(self.pgid, None).is_ok() && crate::leftovers::group_alive(self.pgid)
    }

    /// Kills what the script left running in its group once it is over,
    /// and says whether anything was (zombies aside). One `kill(-pgid, 0)`
    /// when nothing is left, the common case.
    pub(crate) fn kill_leftovers(&mut self) -> bool {
        self.armed = false;
        if killpg(self.pgid, None).is_err() {
            return false;
        }
        let alive = crate::leftovers::group_alive(self.pgid);
        self.signal(Signal::SIGKILL);
        alive
    }

    /// Disarms the guard of a group known to be empty.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// SIGKILLs whatever is left of the group and disarms the guard.
    ///
    /// Called once the step is over. The leader has been reaped by then,
    /// so in theory its pid could already name a new, unrelated group; but
    /// the id stays reserved while any member of our group lives, and an
    /// empty group only gets ESRCH, so the window is a pid wrap-around
    /// within microseconds, which we accept (as other runners do).
    pub(crate) fn kill_remaining(&mut self) {
        self.signal(Signal::SIGKILL);
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            // The step's future was dropped mid-run (the engine gave up on
            // it, or the runtime is shutting down): nothing may outlive it.
            self.signal(Signal::SIGKILL);
        }
    }
}

/// Parses a signal name as the model normalizes it (`SIGTERM`).
pub(crate) fn parse_signal(name: &str) -> Option<Signal> {
    Signal::from_str(name).ok()
}

/// A signal as a template renders it: surrounding space ignored, and the
/// `SIG` prefix optional (`TERM` is `SIGTERM`).
pub(crate) fn parse_rendered_signal(text: &str) -> Option<Signal> {
    let name = text.trim();
    if name.starts_with("SIG") {
        parse_signal(name)
    } else {
        parse_signal(&format!("SIG{name}"))
    }
}

/// The name of signal number `signal` (`SIGKILL`), or `signal N`.
pub(crate) fn signal_name(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("TERM"), None);
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(999), "signal 999");
    }
}
