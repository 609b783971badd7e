//! The broker: the channels this node owns, one actor per channel, behind a cloneable handle.
//! A connection looks a channel up by name once, when a stream opens, and from then on sends
//! to its actor's [`ChanInbox`] directly; nothing here sits on the data path.
//!
//! The broker knows only this node's channels. A stream on a channel another node owns is
//! served by a relay to the owner (`peer::relay`) under the same contract (`crate::stream`).

pub(crate) mod actor;
mod output;
pub(crate) mod replica;
pub(crate) mod state;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use circuit_sdk::proto::{validate_chan_name, ChanInfo, ErrorCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::stream::StreamMsg;
use actor::ChanMsg;
use store::{ChanRecord, Store};

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error("{0}")]
    InvalidName(String),
    #[error("no channel named \"{0}\" — see `circuit chan ls`")]
    NotFound(String),
    #[error("channel \"{name}\" already exists (capacity {capacity})")]
    AlreadyExists { name: String, capacity: u64 },
    #[error("channel \"{0}\" is already closed")]
    AlreadyClosed(String),
    #[error(
        "this node holds {0} channels, the limit (--max-channels): remove unused ones with `circuit chan rm`"
    )]
    LimitReached(usize),
    #[error("{0}")]
    Store(String),
    #[error("circuitd is shutting down")]
    ShuttingDown,
}

impl BrokerError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::AlreadyClosed(_) => ErrorCode::InvalidState,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::Store(_) => ErrorCode::Internal,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

/// A channel's actor, as the registry keeps it.
#[derive(Debug, Clone)]
struct ChanHandle {
    tx: mpsc::Sender<ChanMsg>,
    record: ChanRecord,
}

/// Where a connection sends the messages of a stream that one of this node's channels serves:
/// the channel actor's inbox.
#[derive(Debug, Clone)]
pub(crate) struct ChanInbox(mpsc::Sender<ChanMsg>);

impl ChanInbox {
    /// Hands a stream's message to the channel's actor, waiting while its inbox is full (so a
    /// fast client is slowed to the channel's pace); false once the channel is gone.
    pub async fn send(&self, msg: StreamMsg) -> bool {
        self.0.send(ChanMsg::Stream(msg)).await.is_ok()
    }
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
    /// Bumped when a channel is created or removed.
    changes: AtomicU64,
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
        let broker = Self {
            inner: Arc::new(Inner {
                node: config.name.clone(),
                max_payload: config.max_payload,
                max_channels: config.max_channels,
                chans: Mutex::new(HashMap::new()),
                store,
                tracker,
                shutdown,
                changes: AtomicU64::new(1),
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

    /// Where to send the messages of a stream on channel `name`.
    pub fn inbox(&self, name: &str) -> Result<ChanInbox, BrokerError> {
        self.lookup(name).map(|handle| ChanInbox(handle.tx))
    }

    /// Whether this node owns channel `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.lookup(name).is_ok()
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
        let record = ChanRecord {
            name: name.to_string(),
            capacity,
            closed: false,
            created_at_ms: crate::clock::now_ms(),
        };
        let existing = {
            let mut chans = self.inner.chans.lock().expect("broker lock");
            match chans.get(name) {
                Some(existing) => Some(existing.record.capacity),
                None if chans.len() >= self.inner.max_channels => {
                    return Err(BrokerError::LimitReached(chans.len()));
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
        out
    }

    /// Describes one channel.
    pub async fn stat(&self, name: &str) -> Result<ChanInfo, BrokerError> {
        let handle = self.lookup(name)?;
        stat_of(&handle).await
    }

    /// Closes a channel.
    pub async fn close(&self, name: &str) -> Result<(), BrokerError> {
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

    /// How many channels this node owns.
    pub fn count(&self) -> usize {
        self.inner.chans.lock().expect("broker lock").len()
    }

    /// The names of the channels this node owns, sorted, and a version that changes whenever
    /// the set does (callers skip the copy when it has not).
    pub fn names_if_changed(&self, seen: u64) -> Option<(u64, Vec<String>)> {
        let version = self.inner.changes.load(Ordering::Relaxed);
        if version == seen {
            return None;
        }
        let mut names: Vec<String> = self
            .inner
            .chans
            .lock()
            .expect("broker lock")
            .keys()
            .cloned()
            .collect();
        names.sort_unstable();
        Some((version, names))
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
