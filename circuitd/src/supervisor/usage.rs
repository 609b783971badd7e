//! What each worker uses, sampled from `/proc`: its CPU share over the last interval and its
//! resident memory, for its own process and summed over its whole process group (a worker is
//! the leader of a group of its own, so what it forks counts too). One scan of `/proc` per
//! interval serves every worker; the figures are kept by worker name and pid, and a worker's
//! info carries the latest sample of its current process (with the CPU time its own process
//! has used in all, for the `/metrics` counter).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use circuit_sdk::proto::WorkerUsage;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`): 100 on every architecture Linux
/// exports it for (`getconf CLK_TCK`).
const USER_HZ: f64 = 100.0;

/// How often usage is sampled: CPU shares are over this interval.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    /// Its parent.
    pub ppid: u32,
    pub pgrp: u32,
    /// `Z` for a zombie (exited, not yet waited for), `R`, `S`, ... otherwise.
    pub state: char,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    /// When it started, in clock ticks after boot: tells a reused pid from the same process.
    pub start: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses a `/proc/PID/stat` line. The fields are counted after the parenthesised command
/// name, which may itself hold spaces and parentheses.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); man 5 proc numbers them from 1.
    let field = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        pgrp: u32::try_from(field(5)?).ok()?,
        state: fields.first()?.chars().next()?,
        ticks: field(14)? + field(15)?,
        start: field(22)?,
        rss_pages: field(24)?,
    })
}

/// Every process now running, from `/proc` (those that vanish meanwhile are skipped).
pub(crate) fn scan() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let pid = name.to_str()?;
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let line = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        parse_stat(&line)
    })
    .collect()
}

/// The sampler's memory between two scans: each process's CPU ticks then.
#[derive(Debug)]
pub(crate) struct Sampler {
    page_size: u64,
    /// pid → (start, ticks) at the last scan, for the processes of workers' groups.
    last: HashMap<u32, (u64, u64)>,
    last_at: Option<Instant>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(4096);
        Self {
            page_size,
            last: HashMap::new(),
            last_at: None,
        }
    }

    /// The usage of each worker in `leaders` (the pids of running workers, each its group's
    /// id) among `procs` (a [`scan`] of now), stamped `now_ms`.
    pub fn sample(
        &mut self,
        procs: &[ProcStat],
        leaders: &[u32],
        now_ms: u64,
    ) -> HashMap<u32, WorkerUsage> {
        let now = Instant::now();
        let elapsed = self.last_at.map(|at| now.duration_since(at).as_secs_f64());
        self.last_at = Some(now);
        self.account(procs, leaders, elapsed, now_ms)
    }

    /// The usage of each worker in `leaders` given the processes `procs`, `elapsed` seconds
    /// after the previous call (`None` the first time: no CPU share yet).
    pub fn account(
        &mut self,
        procs: &[ProcStat],
        leaders: &[u32],
        elapsed: Option<f64>,
        now_ms: u64,
    ) -> HashMap<u32, WorkerUsage> {
        let mut usage: HashMap<u32, WorkerUsage> = leaders
            .iter()
            .map(|&pid| {
                let blank = WorkerUsage {
                    sampled_at_ms: now_ms,
                    ..WorkerUsage::default()
                };
                (pid, blank)
            })
            .collect();
        let mut seen = HashMap::new();
        // CPU ticks used since the last scan, per group and by each leader itself.
        let mut group_ticks: HashMap<u32, u64> = HashMap::new();
        let mut own_ticks: HashMap<u32, Option<u64>> = HashMap::new();
        for p in procs {
            let Some(u) = usage.get_mut(&p.pgrp) else {
                continue;
            };
            seen.insert(p.pid, (p.start, p.ticks));
            let rss = p.rss_pages * self.page_size;
            u.group_rss_bytes += rss;
            u.group_processes += 1;
            // A process not seen last time started since (or the sampler did): all its ticks
            // are new, unless this is the first scan.
            let delta = match self.last.get(&p.pid) {
                Some(&(start, ticks)) if start == p.start => Some(p.ticks.saturating_sub(ticks)),
                _ if elapsed.is_some() => Some(p.ticks),
                _ => None,
            };
            *group_ticks.entry(p.pgrp).or_default() += delta.unwrap_or(0);
            if p.pid == p.pgrp {
                u.rss_bytes = rss;
                u.cpu_seconds = p.ticks as f64 / USER_HZ;
                own_ticks.insert(p.pid, delta);
            }
        }
        self.last = seen;
        if let Some(secs) = elapsed.filter(|s| *s > 0.0) {
            let percent = |ticks: u64| ticks as f64 / USER_HZ / secs * 100.0;
            for (pid, u) in &mut usage {
                if let Some(Some(ticks)) = own_ticks.get(pid) {
                    u.cpu_percent = Some(round1(percent(*ticks)));
                    u.group_cpu_percent =
                        Some(round1(percent(group_ticks.get(pid).copied().unwrap_or(0))));
                }
            }
        }
        // A leader with no process is gone; it has no usage to report.
        usage.retain(|pid, _| own_ticks.contains_key(pid));
        usage
    }
}

/// `x` to one decimal: a share measured in 10 ms ticks has no finer digits.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, pgrp: u32, ticks: u64, rss_pages: u64) -> ProcStat {
        ProcStat {
            pid,
            ppid: 1,
            pgrp,
            state: 'S',
            ticks,
            start: 7,
            rss_pages,
        }
    }

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        let line = "4242 (my (odd) worker) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
                    150 25 0 0 20 0 1 0 98765 10485760 2560 18446744073709551615";
        let p = parse_stat(line).expect("parses");
        assert_eq!(p.pid, 4242);
        assert_eq!((p.ppid, p.state), (1, 'S'));
        assert_eq!(p.pgrp, 4242);
        assert_eq!(p.ticks, 175);
        assert_eq!(p.start, 98765);
        assert_eq!(p.rss_pages, 2560);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (x) S 1").is_none());
    }

    #[test]
    fn sums_the_group_and_measures_cpu_over_the_interval() {
        let mut s = Sampler::new();
        let page = s.page_size;
        let first = s.account(
            &[
                proc(10, 10, 100, 1),
                proc(11, 10, 50, 2),
                proc(12, 99, 9, 9),
            ],
            &[10],
            None,
            1,
        );
        let u = &first[&10];
        assert_eq!(u.cpu_percent, None, "no share before a second scan");
        assert_eq!((u.rss_bytes, u.group_rss_bytes), (page, 3 * page));
        assert_eq!(u.group_processes, 2);
        // Two seconds later: the leader used 1 s (100 ticks), its child 0.5 s; a new child
        // appeared with 20 ticks; the other group does not count.
        let second = s.account(
            &[
                proc(10, 10, 200, 1),
                proc(11, 10, 100, 2),
                proc(13, 10, 20, 4),
                proc(12, 99, 500, 9),
            ],
            &[10],
            Some(2.0),
            2,
        );
        let u = &second[&10];
        assert_eq!(u.cpu_percent, Some(50.0));
        assert_eq!(
            u.cpu_seconds, 2.0,
            "the leader's 200 ticks, its children's not"
        );
        assert_eq!(u.group_cpu_percent, Some(85.0));
        assert_eq!(u.group_processes, 3);
        assert_eq!(u.sampled_at_ms, 2);
        // A leader whose process is gone has no figures.
        assert!(s.account(&[], &[10], Some(1.0), 3).is_empty());
    }
}
