//! The disk log against openraft's storage suite, and what it must keep across a reopen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, StorageIOError, Vote};
use tempfile::TempDir;
use tokio::sync::mpsc as tokio_mpsc;

use super::*;
use crate::broker::replica::event::{Batch, Event};
use crate::broker::replica::raft::Machine;
use crate::broker::state::ChanState;

/// A disk log in a fresh temp dir, with the channel's state machine.
struct InTempDir;

impl StoreBuilder<Cfg, DiskLog, Machine, TempDir> for InTempDir {
    async fn build(&self) -> Result<(TempDir, DiskLog, Machine), SError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log = DiskLog::open(dir.path()).map_err(|e| StorageIOError::write_logs(&e))?;
        let (out, _) = tokio_mpsc::unbounded_channel();
        let machine = Machine {
            state: ChanState::new(8, 1024, false),
            last_applied: None,
            membership: Default::default(),
            current: Arc::new(Mutex::new(None)),
            out,
            dir: None,
        };
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(InTempDir).expect("suite");
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// An entry of term `term` at `index` carrying one value.
fn entry(term: u64, index: u64) -> Entry<Cfg> {
    let value = Bytes::from(format!("value {index} of term {term}"));
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Batch {
            now_ms: index,
            events: vec![Event::Values {
                stream: 7,
                values: vec![(index, value)],
            }],
        }),
    }
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry<Cfg>> {
    indexes.map(|i| entry(term, i)).collect()
}

async fn append(log: &mut DiskLog, entries: Vec<Entry<Cfg>>) {
    log.blocking_append(entries).await.expect("append");
}

async fn all(log: &mut DiskLog) -> Vec<Entry<Cfg>> {
    log.try_get_log_entries(..).await.expect("read")
}

fn log_len(dir: &TempDir) -> u64 {
    std::fs::metadata(dir.path().join(LOG_FILE))
        .expect("log file")
        .len()
}

/// Closes `log` (its writer finishes) and opens its directory again.
fn reopen(log: DiskLog, dir: &TempDir) -> DiskLog {
    drop(log);
    DiskLog::open(dir.path()).expect("reopen")
}

#[tokio::test]
async fn appended_entries_are_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=4)).await;
    append(&mut log, entries(2, 5..=9)).await;
    let mut log = reopen(log, &dir);
    let mut want = entries(1, 0..=4);
    want.extend(entries(2, 5..=9));
    assert_eq!(all(&mut log).await, want);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(2, 9)));
    assert_eq!(state.last_purged_log_id, None);
}

#[tokio::test]
async fn a_truncation_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=9)).await;
    log.truncate(log_id(1, 6)).await.expect("truncate");
    append(&mut log, entries(2, 6..=7)).await;
    let mut log = reopen(log, &dir);
    let mut want = entries(1, 0..=5);
    want.extend(entries(2, 6..=7));
    assert_eq!(all(&mut log).await, want);
}

#[tokio::test]
async fn a_truncation_not_followed_by_an_append_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=9)).await;
    log.truncate(log_id(1, 3)).await.expect("truncate");
    let mut log = reopen(log, &dir);
    assert_eq!(all(&mut log).await, entries(1, 0..=2));
}

#[tokio::test]
async fn a_small_purge_survives_a_reopen_without_a_rewrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=9)).await;
    let before = log_len(&dir);
    log.purge(log_id(1, 3)).await.expect("purge");
    log.sync().await.expect("sync");
    assert!(log_len(&dir) > before, "a purge record is appended");
    let mut log = reopen(log, &dir);
    assert_eq!(all(&mut log).await, entries(1, 4..=9));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 9)));
}

#[tokio::test]
async fn purging_more_than_half_rewrites_the_file_smaller_again_and_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    for i in 0..100 {
        append(&mut log, vec![entry(1, i)]).await;
    }
    let before = log_len(&dir);
    log.purge(log_id(1, 59)).await.expect("purge");
    log.sync().await.expect("sync");
    assert!(log_len(&dir) < before / 2, "rewritten without the purged");
    // A second rewrite copies from an entry the first one moved, and appends go on after it.
    // (Synced before the appends: purged and appended in one turn, the purged part would be
    // under half of the file, and no rewrite is due.)
    let before = log_len(&dir);
    log.purge(log_id(1, 84)).await.expect("purge");
    log.sync().await.expect("sync");
    assert!(log_len(&dir) < before, "rewritten without the purged");
    append(&mut log, entries(2, 100..=109)).await;
    log.sync().await.expect("sync");
    let mut log = reopen(log, &dir);
    let mut want = entries(1, 85..=99);
    want.extend(entries(2, 100..=109));
    assert_eq!(all(&mut log).await, want);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 84)));
}

#[tokio::test]
async fn purging_everything_leaves_the_last_purged_as_the_last_log_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=9)).await;
    log.purge(log_id(1, 20)).await.expect("purge");
    let mut log = reopen(log, &dir);
    assert!(all(&mut log).await.is_empty());
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 20)));
    assert_eq!(state.last_log_id, Some(log_id(1, 20)));
}

#[tokio::test]
async fn vote_and_committed_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(3, 0..=5)).await;
    let vote = Vote::new_committed(3, 2);
    log.save_vote(&vote).await.expect("vote");
    log.save_committed(Some(log_id(3, 4)))
        .await
        .expect("committed");
    let mut log = reopen(log, &dir);
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(3, 4))
    );
}

#[tokio::test]
async fn a_committed_log_id_reaches_the_file_within_a_second_without_a_close() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=2)).await;
    log.save_committed(Some(log_id(1, 2)))
        .await
        .expect("committed");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let path = dir.path().join(VOTE_FILE);
    loop {
        let file = format::read_vote_file(&path).expect("vote file");
        if file.committed == Some(log_id(1, 2)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_committed_past_the_end_of_the_log_is_brought_back_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=2)).await;
    drop(log);
    format::write_vote_file(&dir.path().join(VOTE_FILE), None, Some(log_id(1, 9)))
        .expect("vote file");
    let mut log = DiskLog::open(dir.path()).expect("open");
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 2))
    );
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=1)).await;
    let whole = log_len(&dir);
    append(&mut log, vec![entry(1, 2)]).await;
    drop(log);
    // A crash in the middle of the last write.
    let file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(LOG_FILE))
        .expect("log file");
    file.set_len(log_len(&dir) - 5).expect("cut");
    drop(file);
    let mut log = DiskLog::open(dir.path()).expect("open");
    assert_eq!(all(&mut log).await, entries(1, 0..=1));
    assert_eq!(log_len(&dir), whole, "the torn record is cut off the file");
    append(&mut log, vec![entry(2, 2)]).await;
    let mut log = reopen(log, &dir);
    let mut want = entries(1, 0..=1);
    want.push(entry(2, 2));
    assert_eq!(all(&mut log).await, want);
}

#[tokio::test]
async fn zeros_after_the_last_record_are_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=3)).await;
    let whole = log_len(&dir);
    drop(log);
    // A file grown by a crash before its data reached the disk.
    let file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(LOG_FILE))
        .expect("log file");
    file.set_len(whole + 4096).expect("grow");
    drop(file);
    let mut log = DiskLog::open(dir.path()).expect("open");
    assert_eq!(all(&mut log).await, entries(1, 0..=3));
    assert_eq!(log_len(&dir), whole);
}

#[tokio::test]
async fn a_last_record_with_a_bad_checksum_ends_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    append(&mut log, entries(1, 0..=1)).await;
    append(&mut log, vec![entry(1, 2)]).await;
    drop(log);
    let path = dir.path().join(LOG_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    *bytes.last_mut().expect("a byte") ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let mut log = DiskLog::open(dir.path()).expect("open");
    assert_eq!(all(&mut log).await, entries(1, 0..=1));
}

#[test]
fn a_file_of_another_format_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(LOG_FILE), b"something else entirely").expect("write");
    let err = DiskLog::open(dir.path()).err().expect("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("log"), "{err}");
}

#[tokio::test]
async fn appends_queued_while_the_writer_is_busy_share_one_fsync_and_wait_for_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = DiskLog::open(dir.path()).expect("open");
    let (holding_tx, holding) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    log.hold(holding_tx, release_rx).expect("hold");
    holding.recv().expect("the writer holds");
    let before = log.syncs();
    let mut confirmations = Vec::new();
    for i in 0..50 {
        // Each confirmation says how many fsyncs there were when it came.
        let (tx, rx) = oneshot::channel();
        let syncs = log.syncs.clone();
        let done: Done = Box::new(move |result| {
            let _ = tx.send(result.map(|()| syncs.load(Ordering::Relaxed)));
        });
        log.append_then(vec![entry(1, i)], done).expect("append");
        confirmations.push(rx);
    }
    assert_eq!(all(&mut log).await.len(), 50, "readable before durable");
    for rx in &mut confirmations {
        assert!(rx.try_recv().is_err(), "confirmed before its fsync");
    }
    drop(release);
    for rx in confirmations {
        let syncs = rx.await.expect("told").expect("durable");
        assert_eq!(syncs, before + 1, "confirmed before its fsync");
    }
    assert_eq!(log.syncs() - before, 1, "one fsync for the 50 appends");
    let mut log = reopen(log, &dir);
    assert_eq!(all(&mut log).await, entries(1, 0..=49));
}
