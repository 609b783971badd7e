//! Channel definitions on disk (`channels.json`): name, capacity, closed, creation time, so
//! channels persist until `rm` — across daemon restarts too. Values are held in memory only.
//! Written by a `persist::TableWriter`, which batches updates, as for the job table.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::persist::TableWriter;

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

/// Handle to the channel table's writer task.
#[derive(Clone)]
pub(crate) struct Store {
    writer: TableWriter<ChanRecord>,
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
        let records = records.into_iter().map(|r| (r.name.clone(), r)).collect();
        let encode = |records: &BTreeMap<String, ChanRecord>| {
            serde_json::to_vec_pretty(&StoreFile {
                version: FORMAT_VERSION,
                channels: records.values().cloned().collect(),
            })
        };
        let path = data_dir.join(FILE_NAME);
        Self {
            writer: TableWriter::start(path, "channel table", records, encode, tracker),
        }
    }

    /// Records a channel; resolves once it is on disk.
    pub async fn put(&self, record: ChanRecord) -> Result<(), String> {
        self.writer.put(record.name.clone(), record).await
    }

    /// Forgets a channel; resolves once that is on disk.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        self.writer.remove(name).await
    }
}
