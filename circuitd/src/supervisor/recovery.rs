//! After a crash: find the process groups the previous daemon recorded and kill what is left of
//! them, so that no worker of an old generation runs unsupervised.
//!
//! The model: every worker's main process gets `PR_SET_PDEATHSIG = SIGKILL` (see `spawner`), so
//! it dies with the daemon; its descendants share its process group, whose id and start time are
//! in the job table before `spawn` returns. At start-up each recorded group is killed unless the
//! evidence says the id now belongs to someone else: another boot, or a live process with that
//! pid that started at another time.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::table::ProcessIdentity;

/// The kernel's boot id, which changes at every boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Start time of a process in clock ticks after boot (`/proc/PID/stat` field 22).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Kills the recorded group if it is still ours. Returns true when a signal was delivered.
pub fn kill_stale(process: &ProcessIdentity, same_boot: bool) -> bool {
    if !same_boot || process.pgid <= 1 {
        return false;
    }
    if let (Some(recorded), Some(now)) = (process.start_ticks, start_ticks(process.pgid)) {
        if recorded != now {
            // The pid was reused by an unrelated process; its group is not ours.
            return false;
        }
    }
    killpg(Pid::from_raw(process.pgid), Signal::SIGKILL).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_start_time_and_boot() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert_eq!(start_ticks(me), start_ticks(me));
        assert!(boot_id().is_some_and(|b| !b.is_empty()));
    }

    #[test]
    fn a_reused_pid_is_left_alone() {
        // Our own pid with a start time that is not ours: must not be signalled.
        let me = ProcessIdentity {
            pgid: std::process::id() as i32,
            start_ticks: Some(1),
        };
        assert!(!kill_stale(&me, true));
        assert!(!kill_stale(&me, false));
    }
}
