//! Membership events as every daemon reports them: `circuit --json events` running in each
//! host's namespace, its lines parsed into one shared log. Each event carries the reporting
//! daemon's wall clock (`ts_ms`); every daemon runs on this machine, so they share one clock.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use circuit_sdk::proto::{EventKind, MeshEvent};
use circuit_testkit::NetnsCluster;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// One event and the host whose daemon reported it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The reporting host (1-based).
    pub host: usize,
    /// What it reported.
    pub event: MeshEvent,
}

/// A `circuit events` per host, killed by pid when stopped or dropped.
#[derive(Default)]
pub struct Watchers {
    procs: HashMap<usize, Child>,
    log: Arc<Mutex<Vec<Seen>>>,
    readers: JoinSet<()>,
}

impl Watchers {
    /// None running yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `circuit --json events` in host `i`'s namespace of `cluster`, on its daemon,
    /// replacing one that ran before (whose daemon died).
    pub fn start(&mut self, cluster: &NetnsCluster, i: usize) -> anyhow::Result<()> {
        self.stop(i);
        let mut child =
            Command::from(cluster.exec_command(i, cluster.cli_path(), &["--json", "events"]))
                .stdout(Stdio::piped())
                // It says `error: …` when its daemon is killed; that is expected.
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start `circuit events` on h{i}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let log = self.log.clone();
        self.readers.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<MeshEvent>(&line) {
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Seen { host: i, event });
                }
            }
        });
        self.procs.insert(i, child);
        Ok(())
    }

    /// Kills host `i`'s watcher, if one runs.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.procs.remove(&i) {
            let _ = child.start_kill();
        }
    }

    /// Every event reported with `ts_ms` in `from..=to`.
    pub fn between(&self, from: u64, to: u64) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| (from..=to).contains(&s.event.ts_ms))
            .cloned()
            .collect()
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for (_, mut child) in self.procs.drain() {
            let _ = child.start_kill();
        }
    }
}

/// Events counted by kind, for a table: suspect, dead, recover, and the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `suspect` events.
    pub suspect: usize,
    /// `dead` events.
    pub dead: usize,
    /// `recover` events (a suspicion refuted).
    pub recover: usize,
    /// `join`, `leave` and `rejoin` events.
    pub other: usize,
}

impl Counts {
    /// Counts `seen` by kind.
    pub fn of(seen: &[Seen]) -> Self {
        let mut c = Self::default();
        for s in seen {
            c.add(s.event.kind);
        }
        c
    }

    /// Counts one event.
    pub fn add(&mut self, kind: EventKind) {
        match kind {
            EventKind::Suspect => self.suspect += 1,
            EventKind::Dead => self.dead += 1,
            EventKind::Recover => self.recover += 1,
            EventKind::Join | EventKind::Leave | EventKind::Rejoin => self.other += 1,
        }
    }
}
