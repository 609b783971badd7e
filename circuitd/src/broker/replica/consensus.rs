//! The small trait through which a replicated channel uses consensus, so that the rest of the
//! code never names the Raft crate (`raft.rs` implements it with openraft) and an upgrade of
//! that crate touches one module.

use std::future::Future;

use futures::future::BoxFuture;

use super::event::Batch;

/// Why a consensus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ConsensusError {
    /// Anything the Raft implementation reported, as text.
    #[error("{0}")]
    Other(String),
}

/// A replica of a group: its Raft id, the node that holds it, and whether it votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    pub id: u64,
    pub node: String,
    pub voter: bool,
}

/// What this replica is in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// What a replica knows of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// This replica's id.
    pub me: u64,
    pub role: Role,
    pub term: u64,
    /// The leader's id, if one is known.
    pub leader: Option<u64>,
    /// Every replica of the group (voters and learners).
    pub members: Vec<Replica>,
    /// Index of the last entry in this replica's log.
    pub last_log: Option<u64>,
    /// Index of the last entry applied here.
    pub applied: Option<u64>,
    /// On a leader: the last index each replica is known to hold.
    pub matched: Vec<(u64, Option<u64>)>,
}

impl Status {
    /// The replica with Raft id `id`.
    pub fn member(&self, id: u64) -> Option<&Replica> {
        self.members.iter().find(|r| r.id == id)
    }

    /// The node that leads, if one is known.
    pub fn leader_node(&self) -> Option<&str> {
        self.leader
            .and_then(|id| self.member(id))
            .map(|r| r.node.as_str())
    }
}

/// Follows a replica's [`Status`].
pub(crate) trait StatusWatch: Send + 'static {
    /// The status now.
    fn status(&self) -> Status;
    /// Waits until the status changes; false once the replica has stopped.
    fn changed(&mut self) -> impl Future<Output = bool> + Send;
}

/// Resolves once a proposed batch is applied (or can no longer be: leadership was lost).
pub(crate) type Commit = BoxFuture<'static, Result<(), ConsensusError>>;

/// What a replicated channel needs from consensus.
pub(crate) trait Consensus: Clone + Send + Sync + 'static {
    /// How this replica's status is followed.
    type Watch: StatusWatch;

    /// Appends `batch` to the log if this replica leads. Returns once it is queued, with what
    /// resolves when it is applied (on every replica, once a majority holds it), so that
    /// proposals are pipelined.
    fn propose(&self, batch: Batch) -> impl Future<Output = Result<Commit, ConsensusError>> + Send;

    /// Follows this replica's status.
    fn watch(&self) -> Self::Watch;

    /// Starts an election with this replica as candidate.
    fn elect(&self) -> impl Future<Output = ()> + Send;

    /// Adds a replica that follows the log without voting (it catches up from a snapshot).
    fn add_learner(
        &self,
        replica: &Replica,
    ) -> impl Future<Output = Result<(), ConsensusError>> + Send;

    /// Makes exactly `voters` the voting replicas (the others stay learners or are removed).
    fn set_voters(&self, voters: &[u64])
        -> impl Future<Output = Result<(), ConsensusError>> + Send;

    /// Stops this replica.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
