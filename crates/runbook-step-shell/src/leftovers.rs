//! What a dead engine's steps left running.
//!
//! Each step's process group outlives an engine killed with SIGKILL (a
//! `kill -9`, the OOM killer): nothing signals it. `runbook resume` would
//! then run the interrupted step again next to its first copy, and ask
//! whether an `idempotent: false` step completed while it still runs. So
//! every spawned group is logged in the run directory (`process-groups`:
//! the boot it belongs to, then one line per spawn), and before a resume
//! starts anything, [`leftover_groups`] finds the groups still alive, to be
//! stopped ([`stop_groups`]) as the engine itself would have on a
//! cancellation, or, for a step that must not run twice, waited for.
//!
//! A group id is a pid, and pids are reused. A logged group is only
//! signalled when it is of this boot, and when its leader, if still alive,
//! started within a second of when the log says it was spawned. A group
//! whose leader is gone but whose members live cannot have been reused: the
//! kernel does not hand out a pid still used as a group id.

use nix::sys::signal::{Signal, killpg};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use runbook_model::{Step, StepKind, Template, Typed};
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

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses, so they start after the last `)`): state,
/// parent, group, ...; `None` if the process does not exist.
fn stat_fields(pid: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// When process `pid` started, in milliseconds since boot; `None` if it
/// does not exist.
fn started_millis(pid: i32) -> Option<u64> {
    // Field 22 of the whole line, the start time in clock ticks.
    let ticks: u64 = stat_fields(pid)?.get(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|&hz| hz > 0)?;
    Some(ticks * 1000 / hz)
}

/// A process group a dead engine's step left alive.
#[derive(Debug)]
pub struct Leftover {
    pgid: Pid,
    step: String,
}

impl Leftover {
    /// The step (an attempt's context id: `X`, or `X.rollback`).
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The process group's id.
    pub fn group(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Whether any process of the group is still alive.
    pub fn alive(&self) -> bool {
        group_alive(self.pgid)
    }

    /// Blocks until the group has exited.
    pub fn wait(&self) {
        while self.alive() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a process of group `pgid` is still running. Signalling the
/// group (`kill(-pgid, 0)`) also succeeds while its members are zombies:
/// they have exited, but their parent, init for the orphans of a dead
/// engine, has not collected them yet. An init that reaps late (a
/// container's own shell never does) kept a resume waiting for a step that
/// had long finished, so the members' states are read from `/proc`; where
/// it cannot be read, the signal's answer stands.
pub(crate) fn group_alive(pgid: Pid) -> bool {
    if killpg(pgid, None).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let mut seen_any = false;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        let (Some(state), Some(group)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if group.parse::<i32>().ok() == Some(pgid.as_raw()) {
            seen_any = true;
            if state != "Z" && state != "X" {
                return true;
            }
        }
    }
    // A group the signal reached but `/proc` does not show (another PID
    // namespace's view) is taken to be alive.
    !seen_any
}

/// The process groups of `run_dir`'s log that are still alive. The log
/// stays until [`forget_groups`]: a resume that dies before it has stopped
/// or waited for them leaves them to the next one.
pub fn leftover_groups(run_dir: &Path) -> Vec<Leftover> {
    let path = run_dir.join(LOG_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let same_boot = lines
        .next()
        .and_then(|first| first.strip_prefix("boot "))
        .is_some_and(|id| Some(id.to_string()) == boot_id());
    let mut alive: Vec<Leftover> = Vec::new();
    if !same_boot {
        return alive;
    }
    for line in lines {
        let mut fields = line.splitn(3, ' ');
        let (Some(pgid), Some(spawned), Some(step)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(pgid), Ok(spawned)) = (pgid.parse::<i32>(), spawned.parse::<u64>()) else {
            continue;
        };
        if pgid <= 1 || !group_alive(Pid::from_raw(pgid)) {
            continue;
        }
        let ours = match started_millis(pgid) {
            Some(started) => started + 1000 >= spawned && started <= spawned + 1000,
            None => true,
        };
        if ours && !alive.iter().any(|l| l.pgid.as_raw() == pgid) {
            alive.push(Leftover {
                pgid: Pid::from_raw(pgid),
                step: step.to_string(),
            });
        }
    }
    alive
}

/// Clears `run_dir`'s log, once nothing it lists is alive, so that the
/// resumed run's engine logs its own groups from a fresh start.
pub fn forget_groups(run_dir: &Path) {
    let _ = std::fs::remove_file(run_dir.join(LOG_NAME));
}

/// How the engine stops a step: its `stop_signal`, then SIGKILL after its
/// `grace`. A templated field is given to `render`, which knows what a
/// resume still knows (the params, the environment); one it cannot render
/// (it read a step's outputs, which died with the engine) gets the default.
pub fn stop_plan(
    step: Option<&Step>,
    render: &dyn Fn(&Template) -> Option<String>,
) -> (Signal, Duration) {
    let Some(StepKind::Shell(shell)) = step.map(|s| &s.kind) else {
        return (Signal::SIGTERM, crate::DEFAULT_GRACE);
    };
    let signal = match &shell.stop_signal {
        Some(Typed::Literal(name)) => crate::process_group::parse_signal(&name.value),
        Some(Typed::Template(template)) => {
            render(template).and_then(|text| crate::process_group::parse_rendered_signal(&text))
        }
        None => None,
    };
    let grace = match &shell.grace {
        Some(Typed::Literal(grace)) => Some(grace.value),
        Some(Typed::Template(template)) => {
            render(template).and_then(|text| runbook_model::parse_duration(text.trim()).ok())
        }
        None => None,
    };
    (
        signal.unwrap_or(Signal::SIGTERM),
        grace.unwrap_or(crate::DEFAULT_GRACE),
    )
}

/// Stops `leftovers` as the engine would have: each group gets the stop
/// signal `plan` gives for its step, then SIGKILL after that grace. Returns
/// one line per group stopped, naming its step.
pub fn stop_groups(
    leftovers: Vec<Leftover>,
    plan: impl Fn(&str) -> (Signal, Duration),
) -> Vec<String> {
    let stopping: Vec<(Leftover, Signal, Instant)> = leftovers
        .into_iter()
        .map(|leftover| {
            let (signal, grace) = plan(&leftover.step);
            let _ = killpg(leftover.pgid, signal);
            (leftover, signal, Instant::now() + grace)
        })
        .collect();
    while stopping
        .iter()
        .any(|(leftover, _, deadline)| Instant::now() < *deadline && leftover.alive())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stopping
        .into_iter()
        .map(|(leftover, signal, _)| {
            let killed =
                group_alive(leftover.pgid) && killpg(leftover.pgid, Signal::SIGKILL).is_ok();
            format!(
                "stopped what step `{}` of the dead engine left running (process group {}, with {}{})",
                leftover.step,
                leftover.pgid,
                signal.as_str(),
                if killed {
                    ", then SIGKILL after the grace"
                } else {
                    ""
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_group_of_zombies_is_not_alive() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        // Not reaped yet: the exited leader stays a zombie, which the
        // signal still reaches.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pgid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "the child never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(killpg(pgid, None).is_ok(), "the zombie is signallable");
        assert!(!group_alive(pgid));
        child.wait().expect("reap");
        assert!(!group_alive(pgid));

        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pgid = Pid::from_raw(i32::try_from(sleeper.id()).expect("pid"));
        assert!(group_alive(pgid));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    /// A step that saves its work on SIGINT gets SIGINT from a resume too.
    #[test]
    fn a_leftover_gets_its_steps_own_stop_signal() {
        // Exits only on SIGINT (SIGTERM is ignored), within the grace.
        let ready = std::env::temp_dir().join(format!("runbook-traps-set-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; trap 'exit 0' INT; : > \"$0\"; while :; do sleep 0.05; done",
            ])
            .arg(&ready)
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the traps were never set");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&ready);
        let reaper = std::thread::spawn(move || child.wait());
        let leftover = Leftover {
            pgid,
            step: "save".to_string(),
        };
        let lines = stop_groups(vec![leftover], |step| {
            assert_eq!(step, "save");
            (Signal::SIGINT, Duration::from_secs(30))
        });
        assert_eq!(
            lines,
            [format!(
                "stopped what step `save` of the dead engine left running (process group {pgid}, with SIGINT)"
            )]
        );
        let status = reaper.join().expect("reaper").expect("wait");
        assert_eq!(status.code(), Some(0), "it exited by its INT trap");
    }

    #[test]
    fn a_stop_plan_reads_literal_fields_and_defaults_templated_ones() {
        let load = |fields: &str| {
            let text = format!(
                "version: 1\nname: t\nparams:\n  s: {{default: SIGINT}}\n  g: {{default: 5s}}\nsteps:\n  a:\n    type: shell\n    run: x\n{fields}"
            );
            let loaded = runbook_model::load(Path::new("t.yaml"), &text);
            let runbook = loaded.runbook.expect("loads");
            runbook.steps.get("a").cloned().expect("step a")
        };
        let unknown = |_: &Template| None;
        let literal = load("    stop_signal: SIGINT\n    grace: 2m\n");
        assert_eq!(
            stop_plan(Some(&literal), &unknown),
            (Signal::SIGINT, Duration::from_secs(120))
        );
        let templated = load("    stop_signal: \"{{params.s}}\"\n    grace: \"{{params.g}}\"\n");
        assert_eq!(
            stop_plan(Some(&templated), &unknown),
            (Signal::SIGTERM, crate::DEFAULT_GRACE)
        );
        // What a resume can still render: the params.
        let params = |t: &Template| match t.text.as_str() {
            "{{params.s}}" => Some("INT".to_string()),
            "{{params.g}}" => Some("2m".to_string()),
            _ => None,
        };
        assert_eq!(
            stop_plan(Some(&templated), &params),
            (Signal::SIGINT, Duration::from_secs(120))
        );
        assert_eq!(
            stop_plan(None, &unknown),
            (Signal::SIGTERM, crate::DEFAULT_GRACE)
        );
    }
}
