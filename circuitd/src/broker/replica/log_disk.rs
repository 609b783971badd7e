//! The Raft log of one replica on disk (`--storage disk`), in a directory of its own: what
//! survives a restart of its daemon or of the whole cluster.
//!
//! # Files
//! - `log`: an append-only file: an 8-byte header (`circlog` and a version byte), then
//!   records, each `len: u32 LE | crc32: u32 LE | kind: u8 | body` (`len` counts kind and body,
//!   the CRC covers them). Kinds: 1 an entry (postcard `Entry<Cfg>`), 2 a truncation (the
//!   first index dropped, u64 LE), 3 a purge (postcard `LogId`, the last dropped). Reading
//!   the records in order gives the log; the first record cut short or with a wrong CRC ends
//!   it (a crash in the middle of a write), and the file is cut there at open.
//! - `vote.json`: the vote and the last committed log id, replaced atomically (temp file,
//!   fsync, rename, fsync of the directory).
//!
//! # When it is durable
//! One writer thread does all the writing, in the order the log was asked. Each turn it writes
//! everything queued meanwhile with one write and one `fdatasync`, and only then confirms the
//! appends of that turn to Raft (group commit: a burst of appends shares one fsync; no append
//! is confirmed before it is on disk). Truncations and purges go in the same stream, so they
//! are durable with the next fsync, and never behind a later confirmed append. A vote is
//! confirmed once `vote.json` holds it (after the log before it is synced). A committed log id
//! is written to `vote.json` within a second (Raft's core waits for it; stale is safe: the
//! replica re-applies less at start and the leader commits the rest). When more than half of
//! the file is purged, it is rewritten without it and renamed over the old one.
//!
//! # What survives what
//! A crash of the daemon or the machine keeps every confirmed append, every saved vote, every
//! truncation and purge before a confirmed append; it may lose appends not yet confirmed, and
//! the latest committed log id (at most a second of it). Entries are also kept in memory (a
//! channel's log is bounded by snapshots); the file is the truth at open.

mod format;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::OpenOptions;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use tokio::sync::oneshot;

use super::types::Cfg;
use writer::{Cmd, Done, Writer};

type SError = StorageError<u64>;

/// The log file in a replica's directory.
const LOG_FILE: &str = "log";
/// The vote and committed log id in a replica's directory.
const VOTE_FILE: &str = "vote.json";

/// What readers see: the entries present and the last purged one.
#[derive(Debug, Default)]
struct Index {
    entries: BTreeMap<u64, Entry<Cfg>>,
    purged: Option<LogId<u64>>,
}

/// The Raft log of one replica, kept in a directory (`--storage disk`).
pub(crate) struct DiskLog {
    index: Arc<Mutex<Index>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    /// To the writer; `None` once dropped (the writer then finishes and ends).
    tx: Option<mpsc::Sender<Cmd>>,
    writer: Option<std::thread::JoinHandle<()>>,
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    syncs: Arc<AtomicU64>,
}

/// Reads a [`DiskLog`]'s entries (the replication tasks hold one each).
#[derive(Debug, Clone)]
pub(crate) struct DiskLogReader(Arc<Mutex<Index>>);

impl DiskLog {
    /// Opens the log kept in `dir` (created if missing): reads it back, cuts a torn tail off
    /// the file, and starts its writer thread. Blocking I/O.
    pub fn open(dir: &Path) -> io::Result<DiskLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        // A compaction cut short left this; the log file itself is whole.
        let _ = std::fs::remove_file(dir.join(format!("{LOG_FILE}.tmp")));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::persist::write_atomically(&path, format::MAGIC)?;
                format::MAGIC.to_vec()
            }
            Err(e) => return Err(e),
        };
        let log =
            format::replay(&bytes).map_err(|why| invalid(format!("{}: {why}", path.display())))?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if log.end < bytes.len() as u64 {
            tracing::warn!(
                "{}: {} bytes after the last whole record cut off (a write cut short)",
                path.display(),
                bytes.len() as u64 - log.end
            );
            file.set_len(log.end)?;
            file.sync_all()?;
        }
        // Raft's log has no holes; one here is a bug, not a crash.
        let mut next = log.purged.map(|p| p.index + 1);
        for &index in log.entries.keys() {
            if let Some(missing) = next.filter(|&n| n != index) {
                return Err(invalid(format!("{}: no entry {missing}", path.display())));
            }
            next = Some(index + 1);
        }
        let vote_path = dir.join(VOTE_FILE);
        let saved = format::read_vote_file(&vote_path)?;
        let last = log
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(log.purged);
        let mut committed = saved.committed;
        if committed.map(|c| c.index) > last.map(|l| l.index) {
            tracing::warn!(
                "{}: committed {committed:?} is past the log's end {last:?}",
                vote_path.display()
            );
            committed = last;
        }

        let syncs = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path,
            vote_path,
            file,
            end: log.end,
            offsets: log.offsets,
            purged: log.purged,
            vote: saved.vote,
            committed,
            committed_due: None,
            broken: None,
            syncs: syncs.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(DiskLog {
            index: Arc::new(Mutex::new(Index {
                entries: log.entries,
                purged: log.purged,
            })),
            vote: saved.vote,
            committed,
            tx: Some(tx),
            writer: Some(writer),
            syncs,
        })
    }

    /// Resolves once everything asked so far is durable, `vote.json` included.
    #[cfg_attr(not(test), allow(dead_code))] // used by the tests
    pub async fn sync(&self) -> io::Result<()> {
        let (done, rx) = oneshot::channel();
        self.send(Cmd::Sync(told(done)))?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// How many times the log file was fsynced (one per writer turn that wrote something).
    #[cfg_attr(not(test), allow(dead_code))] // used by the tests
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("raft log index lock")
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send(cmd).map_err(|_| stopped())
    }

    /// Makes `entries` readable at once and hands them to the writer; `done` is told once they
    /// are durable.
    fn append_then(&mut self, entries: Vec<Entry<Cfg>>, done: Done) -> io::Result<()> {
        {
            let mut index = self.index();
            for entry in &entries {
                index.entries.insert(entry.log_id.index, entry.clone());
            }
        }
        self.send(Cmd::Append(entries, done))
    }

    /// Queues a stop of the writer, told on `holding`, until `release`'s sender is dropped
    /// (tests).
    #[cfg(test)]
    fn hold(&self, holding: mpsc::Sender<()>, release: mpsc::Receiver<()>) -> io::Result<()> {
        self.send(Cmd::Hold(holding, release))
    }
}

impl Drop for DiskLog {
    /// Waits for the writer to finish what is queued (at most a turn and `vote.json`), so the
    /// directory can be opened again at once.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the raft log writer panicked");
            }
        }
    }
}

/// The answer to a waiter: a `Done` that sends on `tx`.
fn told(tx: oneshot::Sender<io::Result<()>>) -> Done {
    Box::new(move |result| {
        let _ = tx.send(result);
    })
}

fn stopped() -> io::Error {
    io::Error::other("the raft log writer has stopped")
}

fn read<RB: RangeBounds<u64>>(index: &Mutex<Index>, range: RB) -> Vec<Entry<Cfg>> {
    let index = index.lock().expect("raft log index lock");
    index.entries.range(range).map(|(_, e)| e.clone()).collect()
}

impl RaftLogReader<Cfg> for DiskLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Cfg>>, SError> {
        Ok(read(&self.0, range))
    }
}

impl RaftLogReader<Cfg> for DiskLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Cfg>>, SError> {
        Ok(read(&self.index, range))
    }
}

impl RaftLogStorage<Cfg> for DiskLog {
    type LogReader = DiskLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, SError> {
        let index = self.index();
        let last = index.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: index.purged,
            last_log_id: last.or(index.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        DiskLogReader(self.index.clone())
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SError> {
        self.vote = Some(*vote);
        let (done, rx) = oneshot::channel();
        self.send(Cmd::Vote(*vote, told(done)))
            .map_err(|e| StorageIOError::write_vote(&e))?;
        rx.await
            .unwrap_or_else(|_| Err(stopped()))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SError> {
        self.committed = committed;
        self.send(Cmd::Committed(committed))
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SError> {
        Ok(self.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Cfg>) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<Cfg>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let done: Done = Box::new(move |result| callback.log_io_completed(result));
        self.append_then(entries, done)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SError> {
        let _ = self.index().entries.split_off(&log_id.index);
        self.send(Cmd::Truncate(log_id.index))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SError> {
        {
            let mut index = self.index();
            index.entries = index.entries.split_off(&(log_id.index + 1));
            index.purged = Some(log_id);
        }
        self.send(Cmd::Purge(log_id))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests;
