//! The replicas of replicated channels this node holds: one task each (`replica::group`), the
//! Raft instance behind it (which other replicas' calls reach directly), and what the task
//! tells of who leads. The broker routes a stream to the task only while it leads and serves;
//! otherwise it names the leader, for the connection to relay to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use circuit_sdk::proto::ChanInfo;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::BrokerError;
use super::replica::consensus::Replica;
use super::replica::group::{Gone, Group, GroupMsg, Meta, RepairAsk, Shared};
use super::replica::raft::RaftGroup;
use super::replica::{CallError, GroupId, Transport};

/// Inbox size of a replica's task.
const INBOX: usize = 1024;
/// Longest wait for a replica's task to answer (stat, close, rm) or take a message.
const ASK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Where disk replicas live in the data dir, one directory each.
const DIR: &str = "replicas";
/// A disk replica's definition, in its directory.
const SPEC_FILE: &str = "replica.json";
/// The replicated channels removed, a line each (`born_ms name`), in [`DIR`].
const REMOVED_FILE: &str = "removed";
/// Removed channels remembered, at most (the oldest are forgotten first).
const REMOVED_KEPT: usize = 4096;

/// What starts one replica of a replicated channel on this node (and, with `--storage disk`,
/// is kept in its directory so that it starts again with the daemon).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ReplicaSpec {
    pub name: String,
    pub capacity: u64,
    pub created_at_ms: u64,
    pub storage: String,
    /// This replica's Raft id.
    pub id: u64,
    /// Every replica of the group: (Raft id, node).
    pub members: Vec<(u64, String)>,
    /// This replica forms the group.
    #[serde(skip)]
    pub found: bool,
    /// Nodes the mesh says are down now.
    #[serde(skip)]
    pub down: Vec<String>,
    /// Started again from the data dir.
    #[serde(skip)]
    pub restored: bool,
    /// Replicas go only to nodes with these labels (for repairs).
    pub labels: Vec<String>,
}

#[derive(Clone)]
struct Handle {
    id: u64,
    /// When the channel was created: which incarnation of the name this replica is of.
    born_ms: u64,
    tx: mpsc::Sender<GroupMsg>,
    raft: RaftGroup,
    shared: Arc<Mutex<Shared>>,
}

/// Where a stream on a replicated channel goes.
pub(crate) enum Route {
    /// This node leads: to its task.
    Here(mpsc::Sender<GroupMsg>),
    /// Node `0` leads.
    Leader(String),
}

/// The registry of this node's replicas.
pub(crate) struct Replicas {
    node: String,
    data_dir: std::path::PathBuf,
    max_payload: u64,
    map: Arc<Mutex<HashMap<String, Handle>>>,
    /// Channels removed (name, when created), so that a replica that missed the removal
    /// (its node was down or cut off) learns it from the answer to its next call.
    removed_chans: Arc<Mutex<Removed>>,
    transport: OnceLock<Arc<dyn Transport>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Bumped when the set of channels this node serves changes.
    changes: Arc<AtomicU64>,
    removed: mpsc::UnboundedSender<Gone>,
    repair_after: std::time::Duration,
    repairs: mpsc::UnboundedSender<RepairAsk>,
    /// Where the daemon serves repairs (taken once, by the api).
    repairs_rx: Mutex<Option<mpsc::UnboundedReceiver<RepairAsk>>>,
}

impl Replicas {
    pub fn new(
        node: String,
        data_dir: std::path::PathBuf,
        max_payload: u64,
        repair_after: std::time::Duration,
        changes: Arc<AtomicU64>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let map: Arc<Mutex<HashMap<String, Handle>>> = Arc::default();
        let root = data_dir.join(DIR);
        let removed_chans = Arc::new(Mutex::new(Removed::load(&root.join(REMOVED_FILE))));
        let (removed, mut gone) = mpsc::unbounded_channel::<Gone>();
        let (map2, changes2, removed2) = (map.clone(), changes.clone(), removed_chans.clone());
        tracker.spawn(async move {
            while let Some(Gone {
                name,
                born_ms,
                removed,
            }) = gone.recv().await
            {
                {
                    let mut map = map2.lock().expect("replicas");
                    if map.get(&name).is_some_and(|h| h.born_ms == born_ms) {
                        map.remove(&name);
                    }
                }
                changes2.fetch_add(1, Ordering::Relaxed);
                let file = root.join(REMOVED_FILE);
                let noted = removed
                    .then(|| removed2.lock().expect("removed").note(&name, born_ms))
                    .flatten();
                // A disk replica that is gone (removed, or replaced) takes its files along.
                let dir = root.join(dir_name(&name));
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(lines) = noted {
                        if let Err(e) = Removed::save(&file, &lines) {
                            tracing::warn!(file = %file.display(), error = %e, "cannot note a removed channel");
                        }
                    }
                    if dir.exists() {
                        if let Err(e) = std::fs::remove_dir_all(&dir) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a replica's directory");
                        }
                    }
                })
                .await;
            }
        });
        let (repairs, repairs_rx) = mpsc::unbounded_channel();
        Self {
            node,
            data_dir,
            max_payload,
            repair_after,
            repairs,
            repairs_rx: Mutex::new(Some(repairs_rx)),
            map,
            removed_chans,
            transport: OnceLock::new(),
            tracker,
            shutdown,
            changes,
            removed,
        }
    }

    /// How replicas reach the others (set once the peer links exist).
    pub fn set_transport(&self, transport: Arc<dyn Transport>) {
        let _ = self.transport.set(transport);
    }

    fn get(&self, name: &str) -> Option<Handle> {
        self.map.lock().expect("replicas").get(name).cloned()
    }

    /// What the replicas ask of the daemon for repairs (once).
    pub fn take_repairs(&self) -> Option<mpsc::UnboundedReceiver<RepairAsk>> {
        self.repairs_rx.lock().expect("repairs").take()
    }

    /// Stops replica `id` of `name` here (a repair replaced it).
    pub async fn drop_replica(&self, name: &str, id: u64, removed: bool) {
        if let Some(h) = self.get(name).filter(|h| h.id == id) {
            let drop = GroupMsg::Drop { removed };
            let _ = tokio::time::timeout(ASK_WITHIN, h.tx.send(drop)).await;
        }
    }

    /// Whether this node holds a replica of `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many replicas this node holds.
    pub fn count(&self) -> usize {
        self.map.lock().expect("replicas").len()
    }

    /// Whether this node leads and serves `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|h| h.shared.lock().expect("replica shared").serving)
    }

    /// The channels this node leads and serves.
    pub fn served(&self) -> Vec<String> {
        self.map
            .lock()
            .expect("replicas")
            .iter()
            .filter(|(_, h)| h.shared.lock().expect("replica shared").serving)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Starts a replica (nothing happens if this one runs already).
    pub async fn start(&self, spec: ReplicaSpec) -> Result<(), BrokerError> {
        if let Some(h) = self.get(&spec.name) {
            return if h.id == spec.id {
                Ok(())
            } else {
                Err(BrokerError::AlreadyExists {
                    name: spec.name,
                    capacity: spec.capacity,
                })
            };
        }
        let transport = self.transport.get().cloned().ok_or_else(|| {
            BrokerError::Unavailable("replicated channels need a mesh (--mesh-listen)".into())
        })?;
        let dir = (spec.storage == "disk").then(|| self.dir_of(&spec.name));
        if let Some(dir) = &dir {
            let (dir, spec) = (dir.clone(), spec.clone());
            tokio::task::spawn_blocking(move || write_spec(&dir, &spec))
                .await
                .map_err(|e| BrokerError::Store(e.to_string()))?
                .map_err(|e| BrokerError::Store(format!("cannot keep the replica: {e}")))?;
        }
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let group = GroupId {
            name: spec.name.clone(),
            born_ms: spec.created_at_ms,
        };
        let raft = RaftGroup::start(
            &group,
            spec.id,
            spec.capacity,
            self.max_payload,
            dir.as_deref(),
            transport,
            applied_tx,
        )
        .await
        .map_err(|e| BrokerError::Store(e.to_string()))?;
        if spec.found {
            let members: Vec<Replica> = spec
                .members
                .iter()
                .map(|(id, node)| Replica {
                    id: *id,
                    node: node.clone(),
                    voter: true,
                })
                .collect();
            raft.found(&members)
                .await
                .map_err(|e| BrokerError::Store(e.to_string()))?;
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let meta = Meta {
            name: spec.name.clone(),
            node: self.node.clone(),
            capacity: spec.capacity,
            max_payload: self.max_payload,
            created_at_ms: spec.created_at_ms,
            storage: spec.storage.clone(),
            labels: spec.labels.clone(),
            repair_after: self.repair_after,
        };
        let (tx, rx) = mpsc::channel(INBOX);
        for node in spec.down {
            let _ = tx.try_send(GroupMsg::Node { node, up: false });
        }
        let changes = self.changes.clone();
        let mut group = Group::new(
            meta,
            raft.clone(),
            shared.clone(),
            self.removed.clone(),
            changes,
            self.repairs.clone(),
        );
        if spec.restored {
            group = group.restarted();
        }
        self.tracker
            .spawn(group.run(rx, applied_rx, self.shutdown.clone()));
        let handle = Handle {
            id: spec.id,
            born_ms: spec.created_at_ms,
            tx,
            raft,
            shared,
        };
        self.map.lock().expect("replicas").insert(spec.name, handle);
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The directory of `name`'s disk replica.
    fn dir_of(&self, name: &str) -> std::path::PathBuf {
        self.data_dir.join(DIR).join(dir_name(name))
    }

    /// Starts again the disk replicas kept in the data dir (at start, once replicas can reach
    /// each other); returns their names.
    pub async fn restore(&self) -> Vec<String> {
        let root = self.data_dir.join(DIR);
        let specs = tokio::task::spawn_blocking(move || read_specs(&root))
            .await
            .unwrap_or_default();
        let mut started = Vec::new();
        for mut spec in specs {
            spec.restored = true;
            let name = spec.name.clone();
            let removed = self
                .removed_chans
                .lock()
                .expect("removed")
                .knows(&name, spec.created_at_ms);
            if removed {
                tracing::info!(chan = %name, "not restoring the replica of a removed channel");
                let dir = self.dir_of(&name);
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                continue;
            }
            match self.start(spec).await {
                Ok(()) => started.push(name),
                Err(e) => tracing::warn!(chan = %name, error = %e, "cannot restore a replica"),
            }
        }
        started
    }

    /// Where a stream on `name` goes, if this node holds a replica of it.
    pub fn route(&self, name: &str) -> Option<Result<Route, BrokerError>> {
        let h = self.get(name)?;
        let shared = h.shared.lock().expect("replica shared").clone();
        Some(match shared.leader {
            _ if shared.serving => Ok(Route::Here(h.tx)),
            Some(node) if node != self.node => Ok(Route::Leader(node)),
            _ => Err(BrokerError::Unavailable(format!(
                "replicated channel \"{name}\" has no leader now (an election is under way, or \
                 a majority of its replicas is down)"
            ))),
        })
    }

    /// Asks `name`'s replica task, for up to [`ASK_WITHIN`]: nothing waits for ever on a
    /// replica that is stuck.
    async fn ask<T>(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> GroupMsg,
    ) -> Option<Result<T, BrokerError>> {
        let h = self.get(name)?;
        let (tx, rx) = oneshot::channel();
        let asked = async {
            if h.tx.send(make(tx)).await.is_err() {
                return Err(BrokerError::NotFound(name.to_string()));
            }
            rx.await
                .map_err(|_| BrokerError::NotFound(name.to_string()))
        };
        Some(
            tokio::time::timeout(ASK_WITHIN, asked)
                .await
                .unwrap_or_else(|_| {
                    Err(BrokerError::Unavailable(format!(
                        "the replica of channel \"{name}\" here did not answer within {ASK_WITHIN:?}"
                    )))
                }),
        )
    }

    /// Describes `name`, if this node holds a replica of it.
    pub async fn stat(&self, name: &str) -> Option<Result<ChanInfo, BrokerError>> {
        self.ask(name, GroupMsg::Stat).await
    }

    /// Describes every replica this node holds.
    pub async fn list(&self) -> Vec<ChanInfo> {
        let names: Vec<String> = self.map.lock().expect("replicas").keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            if let Some(Ok(info)) = self.stat(&name).await {
                out.push(info);
            }
        }
        out
    }

    /// Closes `name` (this node must lead it).
    pub async fn close(&self, name: &str) -> Option<Result<(), BrokerError>> {
        self.ask(name, GroupMsg::Close).await.map(Result::flatten)
    }

    /// Removes `name` from every replica (this node must lead it).
    pub async fn remove(&self, name: &str) -> Option<Result<(), BrokerError>> {
        self.ask(name, GroupMsg::Remove).await.map(Result::flatten)
    }

    /// Serves a Raft call of another replica of `group` to replica `to` here.
    pub async fn serve_raft(
        &self,
        group: &GroupId,
        to: u64,
        body: Bytes,
    ) -> Result<Bytes, CallError> {
        let name = &group.name;
        match self.get(name) {
            Some(h) if h.born_ms == group.born_ms && h.id == to => {
                h.raft.serve(&body).await.map_err(CallError::Failed)
            }
            // Another replica of the group (a repair's, after this node lost the one called).
            Some(h) if h.born_ms == group.born_ms => Err(CallError::Failed(format!(
                "node has replica {} of channel \"{name}\", not {to}",
                h.id
            ))),
            // The caller's channel was removed and the name made again.
            Some(h) if h.born_ms > group.born_ms => Err(CallError::Removed),
            _ if self
                .removed_chans
                .lock()
                .expect("removed")
                .knows(name, group.born_ms) =>
            {
                Err(CallError::Removed)
            }
            _ => Err(CallError::Failed(format!(
                "node has no replica of channel \"{name}\""
            ))),
        }
    }

    /// The mesh says `node` went down or came back: every replica hears it.
    pub fn node_event(&self, node: &str, up: bool) {
        self.tell_all(|| GroupMsg::Node {
            node: node.to_string(),
            up,
        });
    }

    /// Every replica checks that its view still holds.
    pub fn probe(&self) {
        self.tell_all(|| GroupMsg::Probe);
    }

    fn tell_all(&self, make: impl Fn() -> GroupMsg) {
        let txs: Vec<mpsc::Sender<GroupMsg>> = self
            .map
            .lock()
            .expect("replicas")
            .values()
            .map(|h| h.tx.clone())
            .collect();
        for tx in txs {
            let msg = make();
            let tx2 = tx.clone();
            if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
                // A busy replica gets it when it has room; the mesh's events are not dropped.
                self.tracker.spawn(async move {
                    let _ = tx2.send(msg).await;
                });
            }
        }
    }
}

/// The replicated channels removed (a bounded memory of them, kept in a file beside the
/// replicas so that it outlives a restart).
#[derive(Debug, Default)]
struct Removed {
    /// Name to the newest incarnation removed.
    by_name: std::collections::HashMap<String, u64>,
    /// Oldest first, for forgetting.
    order: std::collections::VecDeque<(String, u64)>,
}

impl Removed {
    /// Whether `name`, made at `born_ms` (or later), was removed.
    fn knows(&self, name: &str, born_ms: u64) -> bool {
        self.by_name.get(name).is_some_and(|b| *b >= born_ms)
    }

    /// Remembers that `name` made at `born_ms` was removed; returns the lines to save.
    fn note(&mut self, name: &str, born_ms: u64) -> Option<Vec<(String, u64)>> {
        if self.knows(name, born_ms) {
            return None;
        }
        self.by_name.insert(name.to_string(), born_ms);
        self.order.push_back((name.to_string(), born_ms));
        while self.order.len() > REMOVED_KEPT {
            if let Some((old, born)) = self.order.pop_front() {
                if self.by_name.get(&old) == Some(&born) {
                    self.by_name.remove(&old);
                }
            }
        }
        Some(self.order.iter().cloned().collect())
    }

    /// Reads the file; a missing or damaged one is an empty memory (lines that do not parse
    /// are skipped).
    fn load(file: &std::path::Path) -> Self {
        let mut removed = Self::default();
        let Ok(text) = std::fs::read_to_string(file) else {
            return removed;
        };
        for line in text.lines() {
            if let Some((born, name)) = line.split_once(' ') {
                if let Ok(born) = born.parse::<u64>() {
                    removed.note(name, born);
                }
            }
        }
        removed
    }

    fn save(file: &std::path::Path, lines: &[(String, u64)]) -> std::io::Result<()> {
        let text: String = lines
            .iter()
            .map(|(name, born)| format!("{born} {name}\n"))
            .collect();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::persist::write_atomically(file, text.as_bytes())
    }
}

/// The directory name of channel `name`'s disk replica: `c-` keeps `.` and `..` names inside;
/// `/` is the one character of a channel name a file name cannot have, and `%` is not one a
/// channel name can have.
fn dir_name(name: &str) -> String {
    format!("c-{}", name.replace('/', "%2F"))
}

fn write_spec(dir: &std::path::Path, spec: &ReplicaSpec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    crate::persist::write_atomically(&dir.join(SPEC_FILE), &bytes)
}

/// The definitions of the disk replicas under `root`; unreadable ones are warned about.
fn read_specs(root: &std::path::Path) -> Vec<ReplicaSpec> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut specs = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path().join(SPEC_FILE);
        match std::fs::read(&path).map(|b| serde_json::from_slice::<ReplicaSpec>(&b)) {
            Ok(Ok(spec)) => specs.push(spec),
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "bad replica definition")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a replica definition")
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_channels_are_remembered_by_incarnation_across_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("replicas").join(REMOVED_FILE);
        let mut removed = Removed::default();
        let lines = removed.note("q", 100).expect("new");
        assert!(removed.note("q", 100).is_none(), "noted once");
        assert!(removed.knows("q", 100) && removed.knows("q", 50));
        assert!(!removed.knows("q", 101), "a newer q was not removed");
        assert!(!removed.knows("other", 1));
        Removed::save(&file, &lines).expect("save");
        // A damaged line is skipped; the rest is kept.
        let mut text = std::fs::read_to_string(&file).expect("read");
        text.push_str("not-a-number x\ngarbage\n7 a/b\n");
        std::fs::write(&file, text).expect("write");
        let back = Removed::load(&file);
        assert!(back.knows("q", 100) && back.knows("a/b", 7));
        assert_eq!(back.order.len(), 2);
        assert!(Removed::load(&dir.path().join("missing")).order.is_empty());
    }

    #[test]
    fn the_memory_of_removed_channels_is_bounded_oldest_first() {
        let mut removed = Removed::default();
        for i in 0..(REMOVED_KEPT as u64 + 10) {
            removed.note(&format!("c{i}"), i);
        }
        assert_eq!(removed.order.len(), REMOVED_KEPT);
        assert_eq!(removed.by_name.len(), REMOVED_KEPT);
        assert!(!removed.knows("c0", 0) && removed.knows("c10", 10));
    }
}
