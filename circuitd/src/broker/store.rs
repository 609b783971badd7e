//! Channel definitions on disk (`channels.json`): name, capacity, closed, creation time, so
//! channels persist until `rm` — across daemon restarts too. Values are held in memory only.
//! One writer task batches updates, as the job table does.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// File name inside the data dir.
pub const FILE_NAME: &str = "channels.json";
const FORMAT_VERSION: u32 = 1;

/// One channel's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChanRecord {
    pub name: String,
    pub capacity: u64,
    #[serde(default)]
    pub closed: bool,
    pub created_at_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    channels: Vec<ChanRecord>,
}

enum Change {
    Put(ChanRecord),
    Remove(String),
}

struct Update {
    change: Change,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub(crate) struct Store {
    tx: mpsc::UnboundedSender<Update>,
}

impl Store {
    /// Reads the definitions in `data_dir`, if any.
    pub fn load(data_dir: &Path) -> io::Result<Vec<ChanRecord>> {
        let path = data_dir.join(FILE_NAME);
        let file: Option<StoreFile> =
            crate::persist::read_table(&path, "channel table", FORMAT_VERSION, |f: &StoreFile| {
                f.version
            })?;
        Ok(file.map(|f| f.channels).unwrap_or_default())
    }

    /// Starts the writer task with the current definitions.
    pub fn start(
        data_dir: &Path,
        records: Vec<ChanRecord>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let records = records.into_iter().map(|r| (r.name.clone(), r)).collect();
        tracker.spawn(writer(data_dir.join(FILE_NAME), records, rx));
        Self { tx }
    }

    /// Records a channel; resolves once it is on disk.
    pub async fn put(&self, record: ChanRecord) -> Result<(), String> {
        self.send(Change::Put(record)).await
    }

    /// Forgets a channel; resolves once that is on disk.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        self.send(Change::Remove(name.to_string())).await
    }

    async fn send(&self, change: Change) -> Result<(), String> {
        let stopped = || "the channel table writer has stopped".to_string();
        let (done, rx) = oneshot::channel();
        if self.tx.send(Update { change, done }).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn writer(
    path: PathBuf,
    mut records: BTreeMap<String, ChanRecord>,
    mut rx: mpsc::UnboundedReceiver<Update>,
) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(update) = next {
            match update.change {
                Change::Put(record) => {
                    records.insert(record.name.clone(), record);
                }
                Change::Remove(name) => {
                    records.remove(&name);
                }
            }
            waiting.push(update.done);
            next = rx.try_recv().ok();
        }
        let file = StoreFile {
            version: FORMAT_VERSION,
            channels: records.values().cloned().collect(),
        };
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
            crate::persist::write_atomically(&target, &json)
        })
        .await;
        let outcome = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write {}: {e}", path.display())),
            Err(e) => Err(format!("channel table writer failed: {e}")),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "channel table not written");
        }
        for done in waiting.drain(..) {
            let _ = done.send(outcome.clone());
        }
    }
}
