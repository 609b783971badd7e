//! The tables in the data dir: atomic replacement (write a temp file, fsync it, rename it over
//! the target, fsync the directory — a crash leaves the old file or the new one, never a torn
//! one), versioned JSON reads, and the batching writer task each table runs.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a versioned JSON table: `None` if the file does not exist; an error naming the file if
/// it is not valid (`what` says what it should be) or has another format version.
pub(crate) fn read_table<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> io::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let table: T = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("{} is not a valid {what}: {e}", path.display())))?;
    let found = version_of(&table);
    if found != version {
        return Err(invalid(format!(
            "{} has format {found}, expected {version}",
            path.display()
        )));
    }
    Ok(Some(table))
}

/// A table in the data dir kept by one writer task: updates are applied to the records in
/// memory and written out together, so a burst of updates shares one fsync. Clones share the
/// task; it ends when all are dropped.
pub(crate) struct TableWriter<R> {
    tx: mpsc::UnboundedSender<Update<R>>,
    what: &'static str,
}

impl<R> Clone for TableWriter<R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            what: self.what,
        }
    }
}

enum Change<R> {
    Put(String, Box<R>),
    Remove(String),
}

struct Update<R> {
    change: Change<R>,
    /// Told whether the write that included this change reached the disk.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Turns a table's records into the file's bytes.
type Encode<R> = Arc<dyn Fn(&BTreeMap<String, R>) -> serde_json::Result<Vec<u8>> + Send + Sync>;

impl<R: Clone + Send + Sync + 'static> TableWriter<R> {
    /// Starts the writer of the table at `path` (`what` names it in errors) holding `records`.
    pub fn start(
        path: PathBuf,
        what: &'static str,
        records: BTreeMap<String, R>,
        encode: impl Fn(&BTreeMap<String, R>) -> serde_json::Result<Vec<u8>> + Send + Sync + 'static,
        tracker: &TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn(write_loop(path, what, records, Arc::new(encode), rx));
        Self { tx, what }
    }

    /// Records `record` under `key`; resolves once it is on disk, or with why it is not.
    pub async fn put(&self, key: String, record: R) -> Result<(), String> {
        self.send(Change::Put(key, Box::new(record))).await
    }

    /// Records `record` under `key` without waiting for the disk.
    pub fn put_later(&self, key: String, record: R) {
        let change = Change::Put(key, Box::new(record));
        let _ = self.tx.send(Update { change, done: None });
    }

    /// Forgets `key`; resolves once that is on disk, or with why it is not.
    pub async fn remove(&self, key: &str) -> Result<(), String> {
        self.send(Change::Remove(key.to_string())).await
    }

    /// Forgets `key` without waiting for the disk.
    pub fn remove_later(&self, key: &str) {
        let change = Change::Remove(key.to_string());
        let _ = self.tx.send(Update { change, done: None });
    }

    async fn send(&self, change: Change<R>) -> Result<(), String> {
        let stopped = || format!("the {} writer has stopped", self.what);
        let (done, rx) = oneshot::channel();
        let update = Update {
            change,
            done: Some(done),
        };
        if self.tx.send(update).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn write_loop<R: Clone + Send + Sync + 'static>(
    path: PathBuf,
    what: &'static str,
    mut records: BTreeMap<String, R>,
    encode: Encode<R>,
    mut rx: mpsc::UnboundedReceiver<Update<R>>,
) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(update) = next {
            match update.change {
                Change::Put(key, record) => {
                    records.insert(key, *record);
                }
                Change::Remove(key) => {
                    records.remove(&key);
                }
            }
            waiting.extend(update.done);
            next = rx.try_recv().ok();
        }
        let (target, snapshot, encode) = (path.clone(), records.clone(), encode.clone());
        let written = tokio::task::spawn_blocking(move || {
            let bytes = encode(&snapshot).map_err(io::Error::other)?;
            write_atomically(&target, &bytes)
        })
        .await;
        let outcome = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write {}: {e}", path.display())),
            Err(e) => Err(format!("{what} writer failed: {e}")),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "{what} not written");
        }
        for done in waiting.drain(..) {
            let _ = done.send(outcome.clone());
        }
    }
}
