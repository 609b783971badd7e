//! The one writer of a replica's log directory: a thread that takes appends, truncations,
//! purges and votes in order, writes all that is queued with one write and one fsync (group
//! commit), then confirms every append of that turn; it compacts the file after a large purge
//! and keeps `vote.json`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use openraft::{Entry, LogId, Vote};

use super::format;
use crate::broker::replica::types::Cfg;

/// Told once what a command wrote is on disk, or why it is not.
pub(super) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// What the writer is asked to do, in the order the log saw it.
pub(super) enum Cmd {
    /// Appends entries; `Done` once they are durable.
    Append(Vec<Entry<Cfg>>, Done),
    /// Drops the entries from this index on.
    Truncate(u64),
    /// Drops the entries up to this one, which becomes the last purged.
    Purge(LogId<u64>),
    /// The last committed entry, written to `vote.json` lazily.
    Committed(Option<LogId<u64>>),
    /// Saves a vote; `Done` once `vote.json` holds it.
    Vote(Vote<u64>, Done),
    /// `Done` once everything before it, `vote.json` included, is durable.
    #[cfg_attr(not(test), allow(dead_code))] // sent by DiskLog::sync, which the tests use
    Sync(Done),
    /// Tells the first sender the writer is holding, then blocks it until the second's
    /// sender is dropped (tests queue appends behind it).
    #[cfg(test)]
    Hold(mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// How long a new committed log id may wait before `vote.json` is rewritten for it: Raft's
/// core waits for `save_committed`, so it is never written there and then (an atomic write is
/// three fsyncs); a stale one is safe, the replica only re-applies less at start.
const COMMITTED_EVERY: Duration = Duration::from_secs(1);

/// The writer's state: what the file holds, where.
pub(super) struct Writer {
    /// The log file (`dir/log`).
    pub path: PathBuf,
    /// `dir/vote.json`.
    pub vote_path: PathBuf,
    pub file: File,
    /// The file's length: where the next record goes.
    pub end: u64,
    /// Where each present entry's record starts.
    pub offsets: BTreeMap<u64, u64>,
    /// The last purged entry (a compacted file starts with it).
    pub purged: Option<LogId<u64>>,
    pub vote: Option<Vote<u64>>,
    pub committed: Option<LogId<u64>>,
    /// When `vote.json` must be rewritten for a new committed log id.
    pub committed_due: Option<Instant>,
    /// Why the log cannot be written any more: after a failed write or fsync the file's state
    /// is unknown, so every later command fails (and Raft stops).
    pub broken: Option<String>,
    /// How many times the log file was fsynced.
    pub syncs: Arc<AtomicU64>,
}

/// What one turn has to tell when it is done.
#[derive(Default)]
struct Turn {
    bytes: Vec<u8>,
    appended: Vec<Done>,
    voted: Vec<Done>,
    purged: bool,
    write_vote: bool,
}

impl Writer {
    /// Serves commands until every sender is gone; then writes a pending committed log id.
    pub fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            let first = match self.committed_due {
                Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(cmd) => cmd,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.write_committed();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            let cmds = std::iter::once(first).chain(rx.try_iter()).collect();
            self.turn(cmds);
        }
        if self.committed_due.is_some() {
            self.write_committed();
        }
    }

    /// Writes what `cmds` ask with one write and one fsync, then tells them.
    fn turn(&mut self, cmds: Vec<Cmd>) {
        let mut turn = Turn::default();
        for cmd in cmds {
            self.take(cmd, &mut turn);
        }
        let written = self.write_log(&turn.bytes);
        for done in turn.appended {
            done(written.as_ref().map(drop).map_err(copy));
        }
        if written.is_ok() && turn.purged {
            self.maybe_compact();
        }
        let voted = match written {
            Ok(()) if turn.write_vote => self.write_vote(),
            other => other,
        };
        for done in turn.voted {
            done(voted.as_ref().map(drop).map_err(copy));
        }
    }

    /// Adds what `cmd` writes to the turn.
    fn take(&mut self, cmd: Cmd, turn: &mut Turn) {
        match cmd {
            Cmd::Append(entries, done) => {
                for entry in &entries {
                    let at = self.end + turn.bytes.len() as u64;
                    if let Err(e) = format::put_entry(&mut turn.bytes, entry) {
                        self.broken = Some(format!("cannot encode entry {}: {e}", entry.log_id));
                    }
                    self.offsets.insert(entry.log_id.index, at);
                }
                turn.appended.push(done);
            }
            Cmd::Truncate(since) => {
                format::put_truncate(&mut turn.bytes, since);
                self.offsets.split_off(&since);
            }
            Cmd::Purge(upto) => {
                if let Err(e) = format::put_purge(&mut turn.bytes, &upto) {
                    self.broken = Some(format!("cannot encode purge {upto}: {e}"));
                }
                self.offsets = self.offsets.split_off(&(upto.index + 1));
                self.purged = Some(upto);
                turn.purged = true;
            }
            Cmd::Committed(committed) => {
                self.committed = committed;
                self.committed_due
                    .get_or_insert_with(|| Instant::now() + COMMITTED_EVERY);
            }
            Cmd::Vote(vote, done) => {
                self.vote = Some(vote);
                turn.write_vote = true;
                turn.voted.push(done);
            }
            Cmd::Sync(done) => {
                turn.write_vote |= self.committed_due.is_some();
                turn.voted.push(done);
            }
            #[cfg(test)]
            Cmd::Hold(holding, release) => {
                let _ = holding.send(());
                let _ = release.recv();
            }
        }
    }

    /// Appends `bytes` to the log file and fsyncs it (nothing to write: no fsync).
    fn write_log(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all_at(bytes, self.end)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.end += bytes.len() as u64;
                self.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let why = format!("cannot write {}: {e}", self.path.display());
                tracing::error!("{why}; the raft log stops");
                self.broken = Some(why.clone());
                Err(io::Error::new(e.kind(), why))
            }
        }
    }

    /// Replaces `vote.json` with the vote and committed log id now.
    fn write_vote(&mut self) -> io::Result<()> {
        format::write_vote_file(&self.vote_path, self.vote, self.committed).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", self.vote_path.display()),
            )
        })?;
        self.committed_due = None;
        Ok(())
    }

    /// Writes a new committed log id no one waits for (not past a failed write: it could name
    /// entries that are not on disk).
    fn write_committed(&mut self) {
        if self.broken.is_some() {
            self.committed_due = None;
            return;
        }
        if let Err(e) = self.write_vote() {
            // Tried again with the next one; an old committed log id is safe.
            tracing::warn!("{e}");
            self.committed_due = Some(Instant::now() + COMMITTED_EVERY);
        }
    }

    /// Rewrites the file without the purged records when they are more than half of it: a
    /// header, a purge record, then the records from the first present entry on, copied as
    /// they are. The new file replaces the old one atomically; if anything fails before the
    /// rename, the old one (which says the same) stays.
    fn maybe_compact(&mut self) {
        let start = format::MAGIC.len() as u64;
        let live = self.offsets.values().next().copied().unwrap_or(self.end);
        if live - start <= (self.end - start) / 2 {
            return;
        }
        let Some(purged) = self.purged else { return };
        let mut bytes = format::MAGIC.to_vec();
        if let Err(e) = format::put_purge(&mut bytes, &purged) {
            tracing::warn!("raft log not compacted: {e}");
            return;
        }
        let shifted = bytes.len() as u64;
        bytes.resize(shifted as usize + (self.end - live) as usize, 0);
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let ready = self
            .file
            .read_exact_at(&mut bytes[shifted as usize..], live)
            .and_then(|()| write_new(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = ready {
            tracing::warn!("raft log {} not compacted: {e}", self.path.display());
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        // The new file is in place: from here on, writes go to it.
        match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(file) => self.file = file,
            Err(e) => {
                let why = format!("cannot reopen {}: {e}", self.path.display());
                tracing::error!("{why}; the raft log stops");
                self.broken = Some(why);
                return;
            }
        }
        self.end = bytes.len() as u64;
        for offset in self.offsets.values_mut() {
            *offset = *offset - live + shifted;
        }
        // If the rename is lost in a crash, the old file is back, and it says the same.
        if let Some(dir) = self.path.parent() {
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!("cannot sync {}: {e}", dir.display());
            }
        }
    }
}

/// Creates `path` holding `bytes`, durably.
fn write_new(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let file = File::create(path)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()
}

/// The same error again, for the next one told (`io::Error` is not `Clone`).
fn copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}
