//! Sizing the process's file descriptor table before the engine starts.
//!
//! Every running step holds descriptors: the read ends of its stdout and
//! stderr pipes and a pidfd (three per shell step), a connection per HTTP
//! check or Kubernetes request. Linux gives a new process a table sized
//! from its parent's highest open descriptor, often 64 slots (under `dash`
//! or `/usr/bin/time`; an interactive `bash` holds 255), and doubles it
//! when it fills. Doubling the table of a process with threads waits for an RCU
//! grace period (`expand_fdtable` calls `synchronize_rcu`), and every
//! thread opening a descriptor meanwhile waits too: 12 to 15 ms here, each
//! time. A run of 64 parallel steps grew the table twice and started its
//! last step 25 ms late. Grown once now, while the process has one thread,
//! the table costs an allocation and nothing else.

/// Descriptors the engine holds besides its steps' (journal, lock, the
/// runtime's epoll and wakers, signal pipes, standard streams).
const BASE_DESCRIPTORS: u32 = 32;

/// Descriptors one running step holds at most, counting the pipe ends that
/// are open only while it is being started.
const DESCRIPTORS_PER_STEP: u32 = 6;

/// The most descriptors reserved up front (the kernel's table for them is
/// 32 KiB). Past this, a run has hundreds of steps in flight and a
/// doubling's wait is spread over as many more.
const MOST_RESERVED: u32 = 4096;

/// Grows the descriptor table to fit `max_parallel` running steps, within
/// the soft `RLIMIT_NOFILE`. Must be called before the process starts any
/// thread; best effort (a failure only means the kernel grows the table
/// later, as it would have anyway).
pub fn reserve_for(max_parallel: u32) {
    let wanted = DESCRIPTORS_PER_STEP
        .saturating_mul(max_parallel)
        .saturating_add(BASE_DESCRIPTORS)
        .min(MOST_RESERVED);
    let soft_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let highest = u64::from(wanted).min(soft_limit.saturating_sub(1));
    let (Ok(highest), Ok(any)) = (i32::try_from(highest), std::fs::File::open("/dev/null")) else {
        return;
    };
    // The lowest free descriptor at or above `highest`: the table grows to
    // hold it, and stays grown once it is closed (dropped here).
    let _ = rustix::io::fcntl_dupfd_cloexec(&any, highest);
}
