//! A worker's escaped descendants: processes that descend from it but left its process group
//! (`setsid`, a daemon's double fork), so signals to the group miss them and a stop would leave
//! them running, unseen.
//!
//! The daemon is the child subreaper of all it starts (`PR_SET_CHILD_SUBREAPER`, set by
//! [`crate::run`]): a process orphaned below a worker is reparented to the daemon instead of
//! init, so it stays in the daemon's tree, where each scan of `/proc` finds it. Which worker it
//! belongs to: the one whose process it descends from; else the one it was seen under before
//! it was orphaned; else the `CIRCUIT_WORKER` of its environment (or of its topmost ancestor
//! below the daemon), once two scans in a row have seen it — a worker's own process, just
//! spawned, looks like such an orphan until its pid is recorded.
//!
//! The daemon waits for those adopted processes once they exit (a zombie child of the daemon
//! that is no worker's process, seen by two scans in a row), so none stays a zombie.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use circuit_sdk::proto::EscapedProcess;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::usage::{parse_stat, ProcStat};

/// The environment variable that names a worker in its processes (`spawner::circuit_env`).
const WORKER_VAR: &[u8] = b"CIRCUIT_WORKER=";

/// Longest command line kept, in characters.
const COMMAND_CHARS: usize = 200;

/// An escaped descendant: the process (its pid and start time tell it from a later process
/// with the same pid) and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Escapee {
    pub pid: u32,
    /// Start time in clock ticks after boot.
    pub start: u64,
    pub command: String,
}

impl Escapee {
    /// As `ps --json` shows it.
    pub fn public(&self) -> EscapedProcess {
        EscapedProcess {
            pid: self.pid,
            command: self.command.clone(),
        }
    }

    /// Whether the same process still runs (a zombie has exited).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|line| parse_stat(&line))
            .is_some_and(|p| p.start == self.start && p.state != 'Z')
    }

    /// Sends `signal` if the same process still runs.
    pub fn signal(&self, signal: Signal) {
        if self.alive() {
            let _ = kill(Pid::from_raw(self.pid as i32), signal);
        }
    }
}

/// The escaped descendants of the workers whose running processes are `leaders` (pid →
/// worker name), found among `procs`, by worker name. `remembered` names the worker each
/// process was attributed to before; `from_environ` reads a process's `CIRCUIT_WORKER`, and is
/// asked only about processes in `settled` (pid, start) unless `settled` is `None`.
pub(crate) fn attribute(
    procs: &[ProcStat],
    daemon: u32,
    leaders: &HashMap<u32, String>,
    remembered: &HashMap<(u32, u64), String>,
    settled: Option<&HashSet<(u32, u64)>>,
    from_environ: impl Fn(u32) -> Option<String>,
) -> HashMap<String, Vec<ProcStat>> {
    let by_pid: HashMap<u32, &ProcStat> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut found: HashMap<String, Vec<ProcStat>> = HashMap::new();
    for p in procs {
        if p.state == 'Z' || p.pid == daemon || leaders.contains_key(&p.pid) {
            continue;
        }
        // In a running worker's group (its own descendants, or orphans of it): not escaped.
        if leaders.contains_key(&p.pgrp) {
            continue;
        }
        let Some(root) = root_below(p, daemon, &by_pid) else {
            continue;
        };
        // Below a worker's process, or below an orphan of its group: that worker's.
        let owner = match leaders.get(&root.pid).or_else(|| leaders.get(&root.pgrp)) {
            Some(name) => Some(name.clone()),
            None => remembered
                .get(&(p.pid, p.start))
                .or_else(|| remembered.get(&(root.pid, root.start)))
                .cloned()
                .or_else(|| {
                    let settled = settled.is_none_or(|s| s.contains(&(root.pid, root.start)));
                    settled
                        .then(|| from_environ(root.pid).or_else(|| from_environ(p.pid)))
                        .flatten()
                }),
        };
        if let Some(owner) = owner {
            found.entry(owner).or_default().push(*p);
        }
    }
    found
}

/// The ancestor of `p` (or `p` itself) whose parent is the daemon; `None` when `p` does not
/// descend from the daemon.
fn root_below<'a>(
    p: &'a ProcStat,
    daemon: u32,
    by_pid: &HashMap<u32, &'a ProcStat>,
) -> Option<&'a ProcStat> {
    let mut at = p;
    // A chain longer than this is a loop of stale entries (pids reused during the scan).
    for _ in 0..256 {
        if at.ppid == daemon {
            return Some(at);
        }
        at = by_pid.get(&at.ppid)?;
    }
    None
}

/// The worker named in the environment of process `pid`, if it can be read.
pub(crate) fn worker_in_environ(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(WORKER_VAR))
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// Process `pid`'s command line, arguments joined by spaces, cut at [`COMMAND_CHARS`]; its
/// name when the command line is empty or unreadable.
pub(crate) fn command_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text = cmdline
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        text = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|name| format!("[{}]", name.trim_end()))
            .unwrap_or_default();
    }
    match text.char_indices().nth(COMMAND_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The daemon's memory between scans: who each escaped process belongs to, and which
/// candidates and zombies the last scan saw.
#[derive(Debug)]
pub(crate) struct Tracker {
    daemon: u32,
    /// (pid, start) → worker, for the escaped processes of the last scan.
    owners: HashMap<(u32, u64), String>,
    /// (pid, start) → command line, read once per process.
    commands: HashMap<(u32, u64), String>,
    /// Every process below the daemon at the last scan.
    seen: HashSet<(u32, u64)>,
    /// Zombie children of the daemon that are no worker's process, at the last scan.
    zombies: HashSet<(u32, u64)>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            daemon: std::process::id(),
            owners: HashMap::new(),
            commands: HashMap::new(),
            seen: HashSet::new(),
            zombies: HashSet::new(),
        }
    }

    /// Whether a scan is needed even when no worker runs: escaped processes or zombies are
    /// left from earlier ones.
    pub fn watching(&self) -> bool {
        !self.owners.is_empty() || !self.zombies.is_empty() || !self.seen.is_empty()
    }

    /// Finds the escaped descendants among `procs` (the running workers' processes are
    /// `leaders`), by worker name, and waits for the adopted processes that have exited.
    pub fn track(
        &mut self,
        procs: &[ProcStat],
        leaders: &HashMap<u32, String>,
    ) -> HashMap<String, Vec<Escapee>> {
        let found = attribute(
            procs,
            self.daemon,
            leaders,
            &self.owners,
            Some(&self.seen),
            worker_in_environ,
        );
        self.seen = procs
            .iter()
            .filter(|p| p.ppid == self.daemon && !leaders.contains_key(&p.pid))
            .map(|p| (p.pid, p.start))
            .collect();
        self.reap(procs, leaders);
        let mut owners = HashMap::new();
        let mut commands = HashMap::new();
        let mut escaped: HashMap<String, Vec<Escapee>> = HashMap::new();
        for (worker, list) in found {
            for p in list {
                let key = (p.pid, p.start);
                let command = self
                    .commands
                    .remove(&key)
                    .unwrap_or_else(|| command_of(p.pid));
                commands.insert(key, command.clone());
                owners.insert(key, worker.clone());
                escaped.entry(worker.clone()).or_default().push(Escapee {
                    pid: p.pid,
                    start: p.start,
                    command,
                });
            }
        }
        for list in escaped.values_mut() {
            list.sort_by_key(|e| e.pid);
        }
        self.owners = owners;
        self.commands = commands;
        escaped
    }

    /// Waits for each zombie child of the daemon that is no worker's process and was a zombie
    /// at the last scan too. A worker's own process is waited for by its task; one whose pid
    /// is not recorded yet (just spawned) cannot have been a zombie a scan ago.
    fn reap(&mut self, procs: &[ProcStat], leaders: &HashMap<u32, String>) {
        let zombies: HashSet<(u32, u64)> = procs
            .iter()
            .filter(|p| p.state == 'Z' && p.ppid == self.daemon && !leaders.contains_key(&p.pid))
            .map(|p| (p.pid, p.start))
            .collect();
        for &(pid, start) in &zombies {
            if self.zombies.contains(&(pid, start)) {
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pid as i32),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
        }
        self.zombies = zombies;
    }
}

/// The escaped descendants of worker `name` now: below its running process `leader`, those
/// its latest sample knew (`known`) that still run, and — with `scan`, when it does not run or
/// the kernel does not list children — orphans whose environment names it, from a scan of
/// `/proc`. Listing `leader`'s tree costs a few reads, where a scan reads every process of the
/// host: a daemon stopping 500 workers at once does not scan 500 times.
pub(crate) fn find_now(
    name: &str,
    leader: Option<u32>,
    known: &[Escapee],
    scan: bool,
) -> Vec<Escapee> {
    let below = leader.and_then(|l| Some((l, descendants(l)?)));
    let found: Vec<ProcStat> = match below {
        Some((leader, tree)) => tree
            .into_iter()
            .filter(|p| p.pgrp != leader && p.state != 'Z')
            .collect(),
        None if !scan => Vec::new(),
        None => {
            let procs = super::usage::scan();
            let leaders: HashMap<u32, String> =
                leader.map(|l| (l, name.to_string())).into_iter().collect();
            let remembered: HashMap<(u32, u64), String> = known
                .iter()
                .map(|e| ((e.pid, e.start), name.to_string()))
                .collect();
            // Only this worker's: another's process, just spawned, is not in `leaders` here
            // and must not be taken for an orphan of this one (its environment names the
            // other).
            attribute(
                &procs,
                std::process::id(),
                &leaders,
                &remembered,
                None,
                |pid| worker_in_environ(pid).filter(|w| w == name),
            )
            .remove(name)
            .unwrap_or_default()
        }
    };
    let mut escaped: Vec<Escapee> = known.iter().filter(|e| e.alive()).cloned().collect();
    for p in found {
        if !escaped.iter().any(|e| e.pid == p.pid && e.start == p.start) {
            escaped.push(Escapee {
                pid: p.pid,
                start: p.start,
                command: command_of(p.pid),
            });
        }
    }
    escaped.sort_by_key(|e| e.pid);
    escaped
}

/// Whether the kernel lists each task's children (`/proc/PID/task/TID/children`, Linux 3.5+
/// with `CONFIG_PROC_CHILDREN`).
pub(crate) fn children_listed() -> bool {
    static LISTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LISTED.get_or_init(|| {
        let me = std::process::id();
        std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

/// Every process below `pid` (not itself), from the kernel's lists of children; `None` when
/// the kernel has no such lists.
fn descendants(pid: u32) -> Option<Vec<ProcStat>> {
    if !children_listed() {
        return None;
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    // A bound against a fork bomb: the tree is read, not trusted.
    while let Some(at) = queue.pop().filter(|_| found.len() < 100_000) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{at}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                let stat = std::fs::read_to_string(format!("/proc/{child}/stat"));
                if let Some(p) = stat.ok().and_then(|line| parse_stat(&line)) {
                    found.push(p);
                    queue.push(child);
                }
            }
        }
    }
    Some(found)
}

/// Waits up to `patience` for every process of `escaped` to exit (polling), then SIGKILLs
/// the rest.
pub(crate) async fn wait_or_kill(escaped: &[Escapee], patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let alive: Vec<&Escapee> = escaped.iter().filter(|e| e.alive()).collect();
        if alive.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            for e in alive {
                e.signal(Signal::SIGKILL);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: u32 = 100;

    fn proc(pid: u32, ppid: u32, pgrp: u32) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            pgrp,
            state: 'S',
            ticks: 0,
            start: u64::from(pid) * 10,
            rss_pages: 0,
        }
    }

    fn leaders(list: &[(u32, &str)]) -> HashMap<u32, String> {
        list.iter().map(|&(p, n)| (p, n.to_string())).collect()
    }

    fn pids(found: &HashMap<String, Vec<ProcStat>>, worker: &str) -> Vec<u32> {
        let mut pids: Vec<u32> = found
            .get(worker)
            .map(|l| l.iter().map(|p| p.pid).collect())
            .unwrap_or_default();
        pids.sort_unstable();
        pids
    }

    #[test]
    fn a_descendant_in_another_group_is_escaped_and_the_group_is_not() {
        let procs = [
            proc(1, 0, 1),
            proc(DAEMON, 1, DAEMON),
            proc(200, DAEMON, 200),
            proc(201, 200, 200), // its child, in its group
            proc(202, 201, 202), // setsid below the child
            proc(203, 202, 202), // and what that one forked
            proc(300, DAEMON, 300),
            proc(400, 1, 400), // not the daemon's
        ];
        let none = HashMap::new();
        let found = attribute(
            &procs,
            DAEMON,
            &leaders(&[(200, "a"), (300, "b")]),
            &none,
            None,
            |_| None,
        );
        assert_eq!(pids(&found, "a"), [202, 203]);
        assert!(!found.contains_key("b"));
    }

    #[test]
    fn an_orphan_adopted_by_the_daemon_keeps_its_worker() {
        // 202 was seen under worker a's process 200, which has exited since: 202 and its child
        // now hang below the daemon.
        let procs = [proc(202, DAEMON, 202), proc(203, 202, 202)];
        let remembered = HashMap::from([((202, 2020), "a".to_string())]);
        let found = attribute(&procs, DAEMON, &HashMap::new(), &remembered, None, |_| None);
        assert_eq!(pids(&found, "a"), [202, 203]);
    }

    #[test]
    fn the_environment_names_an_orphan_only_once_it_has_settled() {
        let procs = [proc(500, DAEMON, 500)];
        let env = |pid| (pid == 500).then(|| "c".to_string());
        let (no_leaders, none) = (HashMap::new(), HashMap::new());
        // First seen: it may be worker c's own process, spawned a moment ago.
        let fresh = HashSet::new();
        let found = attribute(&procs, DAEMON, &no_leaders, &none, Some(&fresh), env);
        assert!(found.is_empty());
        let settled = HashSet::from([(500, 5000)]);
        let found = attribute(&procs, DAEMON, &no_leaders, &none, Some(&settled), env);
        assert_eq!(pids(&found, "c"), [500]);
        // A worker's running process is never its own escapee.
        let found = attribute(&procs, DAEMON, &leaders(&[(500, "c")]), &none, None, env);
        assert!(found.is_empty());
    }

    #[test]
    fn zombies_and_orphans_left_in_a_running_group_are_not_escaped() {
        let mut zombie = proc(202, 200, 202);
        zombie.state = 'Z';
        // 201 was in 200's group; its parent exited and the daemon adopted it.
        let procs = [proc(200, DAEMON, 200), proc(201, DAEMON, 200), zombie];
        let none = HashMap::new();
        let env = |_| Some("a".to_string());
        let found = attribute(&procs, DAEMON, &leaders(&[(200, "a")]), &none, None, env);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn the_kernel_lists_a_process_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let tree = descendants(std::process::id()).expect("this kernel lists children");
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.iter().any(|p| p.pid == pid), "{tree:?}");
    }

    #[test]
    fn commands_are_read_and_cut() {
        let me = command_of(std::process::id());
        assert!(!me.is_empty());
        assert!(me.chars().count() <= COMMAND_CHARS + 1);
    }
}
