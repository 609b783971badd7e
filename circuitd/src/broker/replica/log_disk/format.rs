//! The bytes of a replica's log directory: the log file's header and checksummed records, and
//! reading them back (replay stops at the first torn or corrupt record); `vote.json`.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use openraft::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::broker::replica::types::Cfg;
use crate::persist;

/// The first bytes of a log file; the last one is the format's version.
pub(super) const MAGIC: &[u8; 8] = b"circlog\x01";

/// The header of a record: its length (u32, little-endian) then its CRC-32 (u32).
const FRAME: usize = 8;

const ENTRY: u8 = 1;
const TRUNCATE: u8 = 2;
const PURGE: u8 = 3;

/// Appends an entry record to `buf`.
pub(super) fn put_entry(buf: &mut Vec<u8>, entry: &Entry<Cfg>) -> postcard::Result<()> {
    put(buf, ENTRY, &postcard::to_allocvec(entry)?);
    Ok(())
}

/// Appends a truncation record (entries from `since` on are gone) to `buf`.
pub(super) fn put_truncate(buf: &mut Vec<u8>, since: u64) {
    put(buf, TRUNCATE, &since.to_le_bytes());
}

/// Appends a purge record (entries up to `upto` are gone, and it is the last purged) to `buf`.
pub(super) fn put_purge(buf: &mut Vec<u8>, upto: &LogId<u64>) -> postcard::Result<()> {
    put(buf, PURGE, &postcard::to_allocvec(upto)?);
    Ok(())
}

fn put(buf: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let len = u32::try_from(1 + body.len()).expect("a log record under 4 GiB");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(body);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
}

/// A log file, read back.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    /// The entries present, by index.
    pub entries: BTreeMap<u64, Entry<Cfg>>,
    /// Where each present entry's record starts in the file (compaction copies from the first).
    pub offsets: BTreeMap<u64, u64>,
    /// The last purged entry.
    pub purged: Option<LogId<u64>>,
    /// Where the last whole record ends: anything after it is a torn or corrupt tail.
    pub end: u64,
}

/// Reads a log file's bytes. A record cut short, with a zero length or with a wrong checksum
/// ends the log there (`end`): it is what a crash in the middle of a write leaves. A record
/// with a good checksum that does not decode is an error (another format, or a bug), as is a
/// file without the header.
pub(super) fn replay(bytes: &[u8]) -> Result<Replayed, String> {
    if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err("not a raft log of this version (bad header)".into());
    }
    let mut log = Replayed::default();
    let mut at = MAGIC.len();
    while let Some((kind, body)) = record_at(bytes, at) {
        let offset = at as u64;
        let bad = |e: &dyn std::fmt::Display| format!("record at byte {offset}: {e}");
        match kind {
            ENTRY => {
                let entry: Entry<Cfg> = postcard::from_bytes(body).map_err(|e| bad(&e))?;
                let index = entry.log_id.index;
                log.entries.insert(index, entry);
                log.offsets.insert(index, offset);
            }
            TRUNCATE => {
                let since = body.try_into().map(u64::from_le_bytes);
                let since = since.map_err(|_| bad(&"a truncation of the wrong size"))?;
                log.entries.split_off(&since);
                log.offsets.split_off(&since);
            }
            PURGE => {
                let upto: LogId<u64> = postcard::from_bytes(body).map_err(|e| bad(&e))?;
                log.entries = log.entries.split_off(&(upto.index + 1));
                log.offsets = log.offsets.split_off(&(upto.index + 1));
                log.purged = log.purged.max(Some(upto));
            }
            other => return Err(bad(&format!("unknown record kind {other}"))),
        }
        at += FRAME + 1 + body.len();
    }
    log.end = at as u64;
    Ok(log)
}

/// The whole record starting at `at`, as its kind and body; `None` if there is none (the end,
/// or a torn or corrupt record).
fn record_at(bytes: &[u8], at: usize) -> Option<(u8, &[u8])> {
    let frame = bytes.get(at..at + FRAME)?;
    let len = u32::from_le_bytes(frame[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(frame[4..].try_into().ok()?);
    if len == 0 {
        return None;
    }
    let record = bytes.get(at + FRAME..(at + FRAME).checked_add(len)?)?;
    if crc32fast::hash(record) != crc {
        return None;
    }
    Some((record[0], &record[1..]))
}

/// The version of `vote.json`.
const VOTE_VERSION: u32 = 1;

/// `vote.json`: what a replica has to remember besides its entries.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct VoteFile {
    /// The format's version.
    pub version: u32,
    /// The last vote saved: never forgotten, or the replica could vote twice in a term.
    pub vote: Option<Vote<u64>>,
    /// The last committed entry known (maybe older than the truth: it is written lazily), so a
    /// replica re-applies the committed entries at start without waiting for a leader.
    pub committed: Option<LogId<u64>>,
}

/// Reads `vote.json` at `path`; the default (nothing) if there is none.
pub(super) fn read_vote_file(path: &Path) -> io::Result<VoteFile> {
    let file = persist::read_table(path, "raft vote file", VOTE_VERSION, |f: &VoteFile| {
        f.version
    })?;
    Ok(file.unwrap_or_default())
}

/// Replaces `vote.json` at `path` atomically and durably.
pub(super) fn write_vote_file(
    path: &Path,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
) -> io::Result<()> {
    let file = VoteFile {
        version: VOTE_VERSION,
        vote,
        committed,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    persist::write_atomically(path, &bytes)
}
