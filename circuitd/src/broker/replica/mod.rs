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
//!   channel's streams, served through the log; `group::repair` replaces a replica that is
//!   dead or takes no entries, `group::stat` describes the channel.
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

/// Which group a Raft call is for: the channel's name and when it was created. A channel
/// removed and created again under its name is another group; a replica of a removed one
/// learns from the answer that it was removed ([`CallError::Removed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupId {
    pub name: String,
    /// When the channel was created (ms since the epoch): its incarnation.
    pub born_ms: u64,
}

/// Why a Raft call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// It did not arrive, or no replica there serves it (yet): try again later.
    Failed(String),
    /// The callee knows that the channel (this incarnation of it) was removed.
    Removed,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(why) => f.write_str(why),
            Self::Removed => f.write_str("the channel was removed"),
        }
    }
}

/// How replicas of a channel reach each other: one call carries one RPC of `group` to replica
/// `to` on `node` and returns the answer (both opaque bytes). The daemon implements it over
/// its peer links.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends `body` to replica `to` (its Raft id) of `group` on `node`; the error says why it
    /// did not arrive. Another replica of the group on that node (a repair put a new one
    /// there) does not answer for it.
    fn call(
        &self,
        node: String,
        group: GroupId,
        to: u64,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, CallError>>;
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

impl Applied {
    /// Another replica's node answered that the channel was removed while this replica was
    /// away (it missed the removal's commit): it removes itself as if it had applied it.
    pub fn removed_elsewhere() -> Self {
        Self {
            index: 0,
            effects: Vec::new(),
            closed: None,
            removed: true,
            reset: false,
            counts: Counts::default(),
            closed_now: false,
            detached: Vec::new(),
        }
    }
}
