//! `nohup runbook run …` must survive the hang-up it was started to
//! survive. `nohup` sets SIGHUP to "ignored" before it starts the engine;
//! the engine's own SIGHUP handling (a hang-up stops the run and its
//! cleanup runs) would replace that. So, as shells do with the signals a
//! job inherits as ignored, a SIGHUP ignored when the process started is
//! received and dropped. What the process inherited is read once, by the
//! first call, which `run` and `resume` make before they install their
//! SIGHUP handler.

use std::sync::OnceLock;

static HANGUP_IGNORED: OnceLock<bool> = OnceLock::new();

/// Whether this process was started with SIGHUP ignored (under `nohup`).
pub fn hangup_ignored() -> bool {
    *HANGUP_IGNORED.get_or_init(|| ignored_now(nix::libc::SIGHUP))
}

/// Reads the kernel's mask of ignored signals (`SigIgn` in
/// `/proc/self/status`, one bit per signal, bit 0 for signal 1).
fn ignored_now(signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| signal >= 1 && mask & (1 << (signal - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_with_its_default_action_is_not_ignored() {
        // The test harness leaves SIGUSR2 at its default.
        assert!(!ignored_now(nix::libc::SIGUSR2));
    }
}
