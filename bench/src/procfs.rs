//! What a benchmark reads about a process from `/proc`: resident memory and CPU time, of any
//! pid or of a kit [`Daemon`].

use std::time::Duration;

use anyhow::Context as _;
use circuit_testkit::Daemon;

/// Clock ticks per second in `/proc/PID/stat`: Linux's USER_HZ, 100 on every mainstream
/// architecture (`getconf CLK_TCK`).
const USER_HZ: u64 = 100;

/// Resident set size (`VmRSS`) of `pid` in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS line in {path}"))?;
    Ok(kib * 1024)
}

/// Resident set size of a daemon, which must still run.
pub fn daemon_rss(daemon: &mut Daemon) -> anyhow::Result<u64> {
    daemon.check_alive()?;
    rss_bytes(daemon_pid(daemon)?)
}

/// CPU time (user + system, all threads, live and exited) a daemon, which must still run, has
/// used so far.
pub fn daemon_cpu(daemon: &mut Daemon) -> anyhow::Result<Duration> {
    daemon.check_alive()?;
    cpu_time(daemon_pid(daemon)?)
}

fn daemon_pid(daemon: &Daemon) -> anyhow::Result<u32> {
    u32::try_from(daemon.pid()).context("a negative pid")
}

/// CPU time (user + system) of `pid`: all its threads, live and exited, but not its children.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .with_context(|| format!("cannot parse {path}"))
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The fields are counted after
/// the parenthesised command name, which may itself hold spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 0);
        cpu_time(me).expect("cpu time");
    }
}
