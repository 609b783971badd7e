//! The job table on disk: every worker's spec, intent and last known process, written atomically
//! (write a temp file, fsync, rename, fsync the directory) by one task that batches updates, so
//! 500 spawns a second cost a handful of fsyncs, not 500.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use circuit_sdk::proto::WorkerInfo;
use serde::{Deserialize, Serialize};

use crate::persist::TableWriter;

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

/// Handle to the job table's writer task. Clones share it.
#[derive(Clone)]
pub struct Table {
    writer: TableWriter<JobRecord>,
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
        let jobs = jobs.into_iter().map(|j| (j.info.name.clone(), j)).collect();
        let encode = move |jobs: &BTreeMap<String, JobRecord>| {
            serde_json::to_vec_pretty(&TableFile {
                version: FORMAT_VERSION,
                boot_id: boot_id.clone(),
                jobs: jobs.values().cloned().collect(),
            })
        };
        let path = data_dir.join(FILE_NAME);
        Self {
            writer: TableWriter::start(path, "job table", jobs, encode, tracker),
        }
    }

    /// Records a worker; resolves once it is on disk, or with why it is not.
    pub async fn put(&self, record: JobRecord) -> Result<(), String> {
        self.writer.put(record.info.name.clone(), record).await
    }

    /// Records a worker without waiting for the disk.
    pub fn put_later(&self, record: JobRecord) {
        self.writer.put_later(record.info.name.clone(), record);
    }

    /// Forgets a worker without waiting for the disk.
    pub fn remove_later(&self, name: &str) {
        self.writer.remove_later(name);
    }

    /// Forgets a worker; resolves once that is on disk, or with why it is not.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        self.writer.remove(name).await
    }
}
