//! The broker: the channels this node owns, one actor per channel, behind a cloneable handle.
//! A connection looks a channel up by name once, when a stream opens, and from then on sends
//! to its actor's [`ChanInbox`] directly; nothing here sits on the data path.
//!
//! The broker knows only this node's channels. A stream on a channel another node owns is
//! served by a relay to the owner (`peer::relay`) under the same contract (`crate::stream`).

pub(crate) mod actor;
mod error;
mod output;
pub(crate) mod replica;
mod replicas;
pub(crate) mod state;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use circuit_sdk::proto::{validate_chan_name, ChanInfo};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::stream::StreamMsg;
use actor::ChanMsg;
pub(crate) use error::BrokerError;
use replica::group::GroupMsg;
pub(crate) use replica::group::RepairAsk;
use replicas::Replicas;
pub(crate) use replicas::{ReplicaSpec, Route};
use store::{ChanRecord, Store};

/// A channel's actor, as the registry keeps it.
#[derive(Debug, Clone)]
struct ChanHandle {
    tx: mpsc::Sender<ChanMsg>,
    record: ChanRecord,
}

/// Where a connection sends the messages of a stream that one of this node's channels serves:
/// the channel actor's inbox, or that of the replica that leads a replicated channel.
#[derive(Debug, Clone)]
pub(crate) enum ChanInbox {
    Actor(mpsc::Sender<ChanMsg>),
    Replica(mpsc::Sender<GroupMsg>),
}

impl ChanInbox {
    /// Hands a stream's message to the channel's server, waiting while its inbox is full (so
    /// a fast client is slowed to the channel's pace); false once the channel is gone.
    pub async fn send(&self, msg: StreamMsg) -> bool {
        match self {
            Self::Actor(tx) => tx.send(ChanMsg::Stream(msg)).await.is_ok(),
            Self::Replica(tx) => tx.send(GroupMsg::Stream(msg)).await.is_ok(),
        }
    }
}

/// Where a stream on a channel goes, as this node sees it.
pub(crate) enum Served {
    /// Here.
    Here(ChanInbox),
    /// By node `0`, which leads the replicated channel.
    Leader(String),
}

/// Handle to the broker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    max_payload: u64,
    /// Most channels created here; those loaded at start count but are never refused.
    max_channels: usize,
    chans: Mutex<HashMap<String, ChanHandle>>,
    store: Store,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Bumped when a channel is created or removed, or a replica starts or stops serving.
    changes: Arc<AtomicU64>,
    /// The replicas of replicated channels this node holds.
    replicas: Replicas,
}

impl Broker {
    /// Loads the channel definitions from the data dir and starts an actor for each.
    pub fn start(
        config: &Config,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let records =
            Store::load(&config.data_dir).map_err(|e| BrokerError::Store(e.to_string()))?;
        let store = Store::start(&config.data_dir, records.clone(), &tracker);
        let changes = Arc::new(AtomicU64::new(1));
        let replicas = Replicas::new(
            config.name.clone(),
            config.data_dir.clone(),
            config.max_payload,
            config.replica_repair_after,
            changes.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        let broker = Self {
            inner: Arc::new(Inner {
                node: config.name.clone(),
                max_payload: config.max_payload,
                max_channels: config.max_channels,
                chans: Mutex::new(HashMap::new()),
                store,
                tracker,
                shutdown,
                changes,
                replicas,
            }),
        };
        let mut chans = broker.inner.chans.lock().expect("broker lock");
        for record in records {
            let handle = broker.spawn_actor(record);
            chans.insert(handle.record.name.clone(), handle);
        }
        drop(chans);
        Ok(broker)
    }

    fn spawn_actor(&self, record: ChanRecord) -> ChanHandle {
        let (tx, rx) = mpsc::channel(actor::INBOX);
        let meta = actor::Meta {
            name: record.name.clone(),
            owner: self.inner.node.clone(),
            max_payload: self.inner.max_payload,
            created_at_ms: record.created_at_ms,
        };
        let actor = actor::Actor::new(meta, record.capacity, record.closed);
        self.inner
            .tracker
            .spawn(actor.run(rx, self.inner.shutdown.clone()));
        ChanHandle { tx, record }
    }

    /// Where to send the messages of a stream on channel `name`: this node's actor or
    /// leading replica, or the node that leads the replicated channel.
    pub fn inbox(&self, name: &str) -> Result<Served, BrokerError> {
        match self.inner.replicas.route(name) {
            Some(Ok(Route::Here(tx))) => return Ok(Served::Here(ChanInbox::Replica(tx))),
            Some(Ok(Route::Leader(node))) => return Ok(Served::Leader(node)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        self.lookup(name)
            .map(|handle| Served::Here(ChanInbox::Actor(handle.tx)))
    }

    /// Whether this node serves channel `name`: it owns it, or leads it if it is replicated.
    pub fn owns(&self, name: &str) -> bool {
        self.lookup(name).is_ok() || self.inner.replicas.serves(name)
    }

    /// Whether this node holds a replica of replicated channel `name`.
    pub fn holds_replica(&self, name: &str) -> bool {
        self.inner.replicas.holds(name)
    }

    /// How replicas of replicated channels reach the others.
    pub fn set_transport(&self, transport: Arc<dyn replica::Transport>) {
        self.inner.replicas.set_transport(transport);
    }

    /// Starts again the disk replicas kept in the data dir; their names.
    pub async fn restore_replicas(&self) -> Vec<String> {
        self.inner.replicas.restore().await
    }

    /// Starts a replica of a replicated channel here.
    pub async fn start_replica(&self, spec: ReplicaSpec) -> Result<(), BrokerError> {
        validate_chan_name(&spec.name).map_err(BrokerError::InvalidName)?;
        if self.lookup(&spec.name).is_ok() {
            return Err(BrokerError::AlreadyExists {
                name: spec.name.clone(),
                capacity: spec.capacity,
            });
        }
        let held = self.count();
        if held >= self.inner.max_channels && !self.inner.replicas.holds(&spec.name) {
            return Err(BrokerError::LimitReached(held));
        }
        self.inner.replicas.start(spec).await
    }

    /// Serves a Raft call of another replica of `group` to replica `to` here.
    pub async fn serve_raft(
        &self,
        group: &replica::GroupId,
        to: u64,
        body: bytes::Bytes,
    ) -> Result<bytes::Bytes, replica::CallError> {
        self.inner.replicas.serve_raft(group, to, body).await
    }

    /// What replicas ask of the daemon for repairs; `None` after the first call.
    pub fn take_repairs(&self) -> Option<mpsc::UnboundedReceiver<RepairAsk>> {
        self.inner.replicas.take_repairs()
    }

    /// Stops replica `id` of `name` here, replaced by a repair.
    pub async fn drop_replica(&self, name: &str, id: u64, removed: bool) {
        self.inner.replicas.drop_replica(name, id, removed).await;
    }

    /// The mesh says `node` went down or came back.
    pub fn node_event(&self, node: &str, up: bool) {
        self.inner.replicas.node_event(node, up);
    }

    /// Every replica checks that its view still holds (after a pause of the daemon).
    pub fn probe_replicas(&self) {
        self.inner.replicas.probe();
    }

    /// The channel named `name`.
    fn lookup(&self, name: &str) -> Result<ChanHandle, BrokerError> {
        validate_chan_name(name).map_err(BrokerError::InvalidName)?;
        self.inner
            .chans
            .lock()
            .expect("broker lock")
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::NotFound(name.to_string()))
    }

    /// Creates a channel owned by this node; with `exist_ok`, an existing channel of the same
    /// capacity is fine. A new channel beyond `max_channels` is refused.
    pub async fn create(
        &self,
        name: &str,
        capacity: u64,
        exist_ok: bool,
    ) -> Result<ChanInfo, BrokerError> {
        validate_chan_name(name).map_err(BrokerError::InvalidName)?;
        if self.inner.replicas.holds(name) {
            return Err(BrokerError::Unavailable(format!(
                "channel \"{name}\" is replicated: create it from a node without a replica"
            )));
        }
        let record = ChanRecord {
            name: name.to_string(),
            capacity,
            closed: false,
            created_at_ms: crate::clock::now_ms(),
        };
        let replicas = self.inner.replicas.count();
        let existing = {
            let mut chans = self.inner.chans.lock().expect("broker lock");
            match chans.get(name) {
                Some(existing) => Some(existing.record.capacity),
                None if chans.len() + replicas >= self.inner.max_channels => {
                    return Err(BrokerError::LimitReached(chans.len() + replicas));
                }
                None => {
                    let handle = self.spawn_actor(record.clone());
                    chans.insert(name.to_string(), handle);
                    self.inner.changes.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        };
        if let Some(existing) = existing {
            if exist_ok && existing == capacity {
                return self.stat(name).await;
            }
            return Err(BrokerError::AlreadyExists {
                name: name.to_string(),
                capacity: existing,
            });
        }
        if let Err(e) = self.inner.store.put(record).await {
            self.forget(name).await;
            return Err(BrokerError::Store(e));
        }
        self.stat(name).await
    }

    /// Describes every channel, by name.
    pub async fn list(&self) -> Vec<ChanInfo> {
        let mut handles: Vec<ChanHandle> = self
            .inner
            .chans
            .lock()
            .expect("broker lock")
            .values()
            .cloned()
            .collect();
        handles.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            if let Ok(info) = stat_of(&h).await {
                out.push(info);
            }
        }
        out.append(&mut self.inner.replicas.list().await);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Describes one channel.
    pub async fn stat(&self, name: &str) -> Result<ChanInfo, BrokerError> {
        if let Some(info) = self.inner.replicas.stat(name).await {
            return info;
        }
        let handle = self.lookup(name)?;
        stat_of(&handle).await
    }

    /// Closes a channel.
    pub async fn close(&self, name: &str) -> Result<(), BrokerError> {
        if let Some(closed) = self.inner.replicas.close(name).await {
            return closed;
        }
        let handle = self.lookup(name)?;
        let (tx, rx) = oneshot::channel();
        handle
            .tx
            .send(ChanMsg::Close(tx))
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        rx.await
            .map_err(|_| BrokerError::ShuttingDown)?
            .map_err(|_| BrokerError::AlreadyClosed(name.to_string()))?;
        let record = ChanRecord {
            closed: true,
            ..handle.record
        };
        self.inner
            .store
            .put(record)
            .await
            .map_err(BrokerError::Store)
    }

    /// Deletes a channel: its streams end with `not_found`; its values are dropped.
    pub async fn remove(&self, name: &str) -> Result<(), BrokerError> {
        if let Some(removed) = self.inner.replicas.remove(name).await {
            return removed;
        }
        self.lookup(name)?;
        self.forget(name).await;
        self.inner
            .store
            .remove(name)
            .await
            .map_err(BrokerError::Store)
    }

    async fn forget(&self, name: &str) {
        let handle = self.inner.chans.lock().expect("broker lock").remove(name);
        if let Some(handle) = handle {
            self.inner.changes.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            if handle.tx.send(ChanMsg::Remove(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// How many channels this node owns, replicas included.
    pub fn count(&self) -> usize {
        self.inner.chans.lock().expect("broker lock").len() + self.inner.replicas.count()
    }

    /// The names of the channels this node owns, sorted, and a version that changes whenever
    /// the set does (callers skip the copy when it has not).
    pub fn names_if_changed(&self, seen: u64) -> Option<(u64, Vec<String>)> {
        let version = self.inner.changes.load(Ordering::Relaxed);
        if version == seen {
            return None;
        }
        Some((version, self.names()))
    }

    /// The names of the channels this node owns (or leads, replicated), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .chans
            .lock()
            .expect("broker lock")
            .keys()
            .cloned()
            .collect();
        names.append(&mut self.inner.replicas.served());
        names.sort_unstable();
        names
    }
}

async fn stat_of(handle: &ChanHandle) -> Result<ChanInfo, BrokerError> {
    let (tx, rx) = oneshot::channel();
    handle
        .tx
        .send(ChanMsg::Stat(tx))
        .await
        .map_err(|_| BrokerError::ShuttingDown)?;
    rx.await.map_err(|_| BrokerError::ShuttingDown)
}

#[cfg(test)]
mod tests {
    use circuit_sdk::proto::ErrorCode;

    use super::*;

    #[tokio::test]
    async fn creates_beyond_max_channels_are_refused_and_exist_ok_still_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            max_channels: 2,
            ..Config::default()
        };
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let broker = Broker::start(&config, tracker.clone(), shutdown.clone()).expect("start");
        broker.create("a", 1, false).await.expect("a");
        broker.create("b", 1, false).await.expect("b");
        let err = broker
            .create("c", 1, false)
            .await
            .expect_err("over the limit");
        assert_eq!(err.code(), ErrorCode::LimitReached);
        assert_eq!(
            err.to_string(),
            "this node holds 2 channels, the limit (--max-channels): \
             remove unused ones with `circuit chan rm`"
        );
        assert_eq!(broker.count(), 2, "nothing was added");
        // An existing name is not a new channel: exist_ok answers, a clash is still a clash.
        assert_eq!(
            broker.create("a", 1, true).await.expect("exist_ok").name,
            "a"
        );
        let clash = broker.create("b", 1, false).await.expect_err("taken");
        assert_eq!(clash.code(), ErrorCode::AlreadyExists);
        broker.remove("a").await.expect("rm");
        broker.create("c", 1, false).await.expect("room again");
        // The channel table's writer ends when its last handle does.
        drop(broker);
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
