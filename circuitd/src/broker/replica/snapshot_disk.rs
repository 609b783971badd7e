//! The last snapshot of a replica's state machine on disk (`--storage disk`), so the channel
//! restarts from it: one file, `snapshot`, in the replica's directory, replaced atomically.
//!
//! Format: `circsnp` and a version byte | crc32 of the rest: u32 LE | meta length: u32 LE |
//! meta (postcard `SnapshotMeta`) | data (the state machine's bytes, as they are).

use std::io;
use std::path::Path;

use openraft::SnapshotMeta;

use super::types::Member;
use crate::persist;

/// The snapshot in a replica's directory.
const SNAPSHOT_FILE: &str = "snapshot";

/// The first bytes of a snapshot file; the last one is the format's version.
const MAGIC: &[u8; 8] = b"circsnp\x01";

/// Where the checksummed part starts (after the magic and the CRC).
const BODY: usize = MAGIC.len() + 4;

/// Replaces the snapshot kept in `dir` with `meta` and `data`, atomically and durably: after a
/// crash the old one or the new one is there, whole. Blocking I/O. Raft purges the log up to
/// a snapshot once it is built or installed, so call this before `build_snapshot` or
/// `install_snapshot` returns.
pub(crate) fn save_snapshot(
    dir: &Path,
    meta: &SnapshotMeta<u64, Member>,
    data: &[u8],
) -> io::Result<()> {
    let meta = postcard::to_allocvec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta.len()).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(BODY + 4 + meta.len() + data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&meta_len.to_le_bytes());
    bytes.extend_from_slice(&meta);
    bytes.extend_from_slice(data);
    let crc = crc32fast::hash(&bytes[BODY..]);
    bytes[MAGIC.len()..BODY].copy_from_slice(&crc.to_le_bytes());
    std::fs::create_dir_all(dir)?;
    persist::write_atomically(&dir.join(SNAPSHOT_FILE), &bytes)
}

/// A snapshot as kept on disk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SavedSnapshot {
    /// Which entries it covers, and the membership then.
    pub meta: SnapshotMeta<u64, Member>,
    /// The state machine's bytes.
    pub data: Vec<u8>,
}

/// The snapshot kept in `dir`, or `None` if there is none. A file that is not a whole
/// snapshot of this format is an error naming it (it was written atomically, so that is
/// damage, not a crash; the caller may start empty and get a snapshot from the leader).
/// Blocking I/O.
pub(crate) fn load_snapshot(dir: &Path) -> io::Result<Option<SavedSnapshot>> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: &str| {
        let why = format!("{} is not a valid snapshot: {why}", path.display());
        io::Error::new(io::ErrorKind::InvalidData, why)
    };
    if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) || bytes.len() < BODY + 4 {
        return Err(invalid("bad header"));
    }
    let crc = u32::from_le_bytes(bytes[MAGIC.len()..BODY].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[BODY..]) != crc {
        return Err(invalid("bad checksum"));
    }
    let meta_len = u32::from_le_bytes(bytes[BODY..BODY + 4].try_into().expect("4 bytes"));
    let data_at = (BODY + 4).saturating_add(meta_len as usize);
    let meta = bytes
        .get(BODY + 4..data_at)
        .ok_or_else(|| invalid("meta cut short"))?;
    let meta = postcard::from_bytes(meta).map_err(|e| invalid(&e.to_string()))?;
    let data = bytes.split_off(data_at);
    Ok(Some(SavedSnapshot { meta, data }))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{LogId, Membership, StoredMembership};

    use super::*;

    fn meta() -> SnapshotMeta<u64, Member> {
        let nodes: BTreeMap<u64, Member> = (1..=3)
            .map(|id| {
                (
                    id,
                    Member {
                        name: format!("n{id}"),
                    },
                )
            })
            .collect();
        let voters: BTreeSet<u64> = nodes.keys().copied().collect();
        let membership = Membership::new(vec![voters], nodes);
        let log_id = LogId::new(openraft::CommittedLeaderId::new(2, 1), 40);
        SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(Some(log_id), membership),
            snapshot_id: "2-1-40".into(),
        }
    }

    #[test]
    fn a_saved_snapshot_loads_back_and_a_newer_one_replaces_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        save_snapshot(dir.path(), &meta(), b"first state").expect("save");
        let mut newer = meta();
        newer.snapshot_id = "3-1-90".into();
        save_snapshot(dir.path(), &newer, b"second state").expect("save");
        let got = load_snapshot(dir.path())
            .expect("load")
            .expect("a snapshot");
        assert_eq!(got.meta, newer);
        assert_eq!(got.data, b"second state".to_vec());
    }

    #[test]
    fn no_snapshot_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load_snapshot(dir.path()).expect("load").is_none());
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        save_snapshot(dir.path(), &meta(), b"state").expect("save");
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        *bytes.last_mut().expect("a byte") ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let err = load_snapshot(dir.path()).expect_err("damaged");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("snapshot"), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
