//! The job table on disk: every worker's spec, intent and last known process, written atomically
//! (write a temp file, fsync, rename, fsync the directory) by one task that batches updates, so
//! 500 spawns a second cost a handful of fsyncs, not 500.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use circuit_sdk::proto::WorkerInfo;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// File name inside the data dir.
pub const FILE_NAME: &str = "jobs.json";
const FORMAT_VERSION: u32 = 1;

/// What the user asked for, as opposed to what the process did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Keep it running as its policy says.
    Running,
    /// Stopped by a user: leave it.
    Stopped,
}

/// Enough to recognise a worker's process group after the daemon died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Process group id (the main process's pid).
    pub pgid: i32,
    /// The main process's start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_ticks: Option<u64>,
}

/// One worker in the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Spec and last observed state.
    pub info: WorkerInfo,
    /// The user's intent.
    pub desired: Desired,
    /// The live process group, while there is one.
    pub process: Option<ProcessIdentity>,
    /// Stopped by a daemon shutdown rather than by a user or by itself: the next daemon
    /// resumes it if its policy restarts.
    #[serde(default)]
    pub interrupted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableFile {
    version: u32,
    /// The kernel boot the recorded processes belong to.
    boot_id: Option<String>,
    jobs: Vec<JobRecord>,
}

/// What was on disk at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The boot the processes were recorded in.
    pub boot_id: Option<String>,
    /// The jobs.
    pub jobs: Vec<JobRecord>,
}

enum Change {
    Put(Box<JobRecord>),
    Remove(String),
}

struct Update {
    change: Change,
    /// Told whether the write that included this change reached the disk.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Handle to the writer task. Clones share it; the task ends when all are dropped.
#[derive(Clone)]
pub struct Table {
    tx: mpsc::UnboundedSender<Update>,
}

impl Table {
    /// Reads the table in `data_dir`, if any.
    pub fn load(data_dir: &Path) -> io::Result<Loaded> {
        let path = data_dir.join(FILE_NAME);
        let file: Option<TableFile> =
            crate::persist::read_table(&path, "job table", FORMAT_VERSION, |f: &TableFile| {
                f.version
            })?;
        Ok(file.map_or_else(Loaded::default, |f| Loaded {
            boot_id: f.boot_id,
            jobs: f.jobs,
        }))
    }

    /// Starts the writer task on `tracker` with the table's current contents.
    pub fn start(
        data_dir: &Path,
        jobs: Vec<JobRecord>,
        boot_id: Option<String>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let jobs = jobs.into_iter().map(|j| (j.info.name.clone(), j)).collect();
        tracker.spawn(writer(data_dir.join(FILE_NAME), jobs, boot_id, rx));
        Self { tx }
    }

    /// Records a worker; resolves once it is on disk, or with why it is not.
    pub async fn put(&self, record: JobRecord) -> Result<(), String> {
        self.send(Change::Put(Box::new(record))).await
    }

    /// Records a worker without waiting for the disk.
    pub fn put_later(&self, record: JobRecord) {
        let _ = self.tx.send(Update {
            change: Change::Put(Box::new(record)),
            done: None,
        });
    }

    /// Forgets a worker without waiting for the disk.
    pub fn remove_later(&self, name: &str) {
        let _ = self.tx.send(Update {
            change: Change::Remove(name.to_string()),
            done: None,
        });
    }

    /// Forgets a worker; resolves once that is on disk, or with why it is not.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        self.send(Change::Remove(name.to_string())).await
    }

    async fn send(&self, change: Change) -> Result<(), String> {
        let stopped = || "the job table writer has stopped".to_string();
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

async fn writer(
    path: PathBuf,
    mut jobs: BTreeMap<String, JobRecord>,
    boot_id: Option<String>,
    mut rx: mpsc::UnboundedReceiver<Update>,
) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(update) = next {
            match update.change {
                Change::Put(record) => {
                    jobs.insert(record.info.name.clone(), *record);
                }
                Change::Remove(name) => {
                    jobs.remove(&name);
                }
            }
            waiting.extend(update.done);
            next = rx.try_recv().ok();
        }
        let file = TableFile {
            version: FORMAT_VERSION,
            boot_id: boot_id.clone(),
            jobs: jobs.values().cloned().collect(),
        };
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&target, &file)).await;
        let outcome = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write {}: {e}", path.display())),
            Err(e) => Err(format!("job table writer failed: {e}")),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "job table not written");
        }
        for done in waiting.drain(..) {
            let _ = done.send(outcome.clone());
        }
    }
}

fn write_atomically(path: &Path, table: &TableFile) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(table).map_err(io::Error::other)?;
    crate::persist::write_atomically(path, &json)
}
