//! Replicated channels (`--replicas 3`): a channel whose state is held by several daemons,
//! kept in step by Raft, so that it survives the loss of any minority of them with nothing
//! lost and nothing doubled. The channel's own state machine ([`crate::broker::state`]) is
//! the replicated state machine: every event that changes it is a log entry, applied in one
//! order on every replica, and only the leader turns what applying produces into frames.
//!
//! # Layout
//! - `event`: what the log carries (batches of channel events) and how a batch is applied.
//! - `consensus`: the small trait the rest uses; `raft`: its openraft implementation (the
//!   only file that names the crate), with the log in memory.
//! - `group`: the task of one replica: elections from the mesh's view, and on the leader the
//!   channel's streams, served through the log.
//! - `log_disk`, `snapshot_disk`: the log and the last snapshot of a replica in its directory
//!   (`--storage disk`), for `raft`.

pub(crate) mod consensus;
pub(crate) mod event;
pub(crate) mod group;
pub(crate) mod log_disk;
pub(crate) mod raft;
#[cfg(test)]
mod sim;
pub(crate) mod snapshot_disk;
pub(crate) mod types;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::broker::state::{Counts, Effect};

/// How replicas of a channel reach each other: one call carries one RPC of channel `chan`'s
/// group to `node` and returns the answer (both opaque bytes). The daemon implements it over
/// its peer links.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends `body` to the replica of `chan` on `node`; the error says why it did not arrive.
    fn call(
        &self,
        node: String,
        chan: String,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// What applying committed entries produced on one replica.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The index of the last entry applied.
    #[allow(dead_code)] // for repair's catch-up check (not built yet)
    pub index: u64,
    /// What to send (only the leader does).
    pub effects: Vec<Effect>,
    /// The answer to a close applied in these entries.
    pub closed: Option<Result<(), String>>,
    /// The channel was removed (`chan rm`): every replica deletes itself.
    pub removed: bool,
    /// The state was replaced by a snapshot.
    #[allow(dead_code)] // for repair's catch-up check (not built yet)
    pub reset: bool,
    /// Counts for `stat`.
    pub counts: Counts,
    /// Whether the channel is closed now.
    pub closed_now: bool,
    /// Receivers holding values detached by a leader change.
    pub detached: Vec<u64>,
}
