//! What a dead engine's steps left running.
//!
//! Each step's process group outlives an engine killed with SIGKILL (a
//! `kill -9`, the OOM killer): nothing signals it. `runbook resume` would
//! then run the interrupted step again next to its first copy, and ask
//! whether an `idempotent: false` step completed while it still runs. So
//! every spawned group is logged in the run directory (`process-groups`:
//! the boot it belongs to, then one line per spawn), and before a resume
//! starts anything, [`stop_leftover_groups`] stops the groups that are
//! still alive, as the engine itself would have on a cancellation.
//!
//! A group id is a pid, and pids are reused. A logged group is only
//! signalled when it is of this boot, and when its leader, if still alive,
//! started within a second of when the log says it was spawned. A group
//! whose leader is gone but whose members live cannot have been reused: the
//! kernel does not hand out a pid still used as a group id.

use nix::sys::signal::{Signal, killpg};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOG_NAME: &str = "process-groups";

/// The append-only log of the run the executor serves; opened on the
/// first spawn. One `write` per step, no sync: it only matters while this
/// boot lasts.
#[derive(Debug, Default)]
pub(crate) struct GroupLog {
    open: Mutex<Option<(PathBuf, File)>>,
}

impl GroupLog {
    /// Records that `step` (an attempt's context id) leads group `pgid`.
    /// Best effort: a log that cannot be written costs only the clean-up.
    pub(crate) fn record(&self, run_dir: &Path, step: &str, pgid: u32) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        if open.as_ref().is_none_or(|(dir, _)| dir != run_dir) {
            *open = open_log(run_dir).map(|file| (run_dir.to_path_buf(), file));
        }
        if let Some((_, file)) = open.as_mut() {
            // Formatted first: `writeln!` on a file makes a system call
            // per fragment, five or more for one line.
            let line = format!("{pgid} {} {step}\n", boot_millis());
            let _ = file.write_all(line.as_bytes());
        }
    }
}

fn open_log(run_dir: &Path) -> Option<File> {
    // Only a journaled run can be resumed; a step run on its own (tests,
    // tools) has no run directory of its own to log into.
    if !run_dir.join("events.jsonl").exists() {
        return None;
    }
    let path = run_dir.join(LOG_NAME);
    let fresh = !path.exists();
    // Owner-only, like the journal next to it.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    if fresh {
        file.write_all(format!("boot {}\n", boot_id()?).as_bytes())
            .ok()?;
    }
    Some(file)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
}

/// Milliseconds since boot, the clock `/proc/PID/stat` start times use.
fn boot_millis() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000
    })
}

/// When process `pid` started, in milliseconds since boot; `None` if it
/// does not exist.
fn started_millis(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces), field 22 is the
    // start time in clock ticks: the 20th field after `) `.
    let after = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = after.split(' ').nth(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|&hz| hz > 0)?;
    Some(ticks * 1000 / hz)
}

/// Stops the process groups of `run_dir`'s log that are still alive:
/// the stop signal, then SIGKILL after `grace`. Returns one line per group
/// stopped, naming its step. Clears the log.
pub fn stop_leftover_groups(run_dir: &Path, grace: Duration) -> Vec<String> {
    let path = run_dir.join(LOG_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let same_boot = lines
        .next()
        .and_then(|first| first.strip_prefix("boot "))
        .is_some_and(|id| Some(id.to_string()) == boot_id());
    let mut stopped = Vec::new();
    if same_boot {
        let mut alive: Vec<(Pid, String)> = Vec::new();
        for line in lines {
            let mut fields = line.splitn(3, ' ');
            let (Some(pgid), Some(spawned), Some(step)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Ok(pgid), Ok(spawned)) = (pgid.parse::<i32>(), spawned.parse::<u64>()) else {
                continue;
            };
            if pgid <= 1 || killpg(Pid::from_raw(pgid), None).is_err() {
                continue;
            }
            let ours = match started_millis(pgid) {
                Some(started) => started + 1000 >= spawned && started <= spawned + 1000,
                None => true,
            };
            if ours && !alive.iter().any(|(p, _)| p.as_raw() == pgid) {
                alive.push((Pid::from_raw(pgid), step.to_string()));
            }
        }
        for (pgid, _) in &alive {
            let _ = killpg(*pgid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && alive.iter().any(|(p, _)| killpg(*p, None).is_ok()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (pgid, step) in alive {
            let killed = killpg(pgid, Signal::SIGKILL).is_ok();
            stopped.push(format!(
                "stopped what step `{step}` of the dead engine left running (process group {pgid}{})",
                if killed { ", with SIGKILL after the grace" } else { "" }
            ));
        }
    }
    let _ = std::fs::remove_file(&path);
    stopped
}
