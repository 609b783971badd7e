//! The Raft type configuration of a replicated channel (openraft's `declare_raft_types!`) and
//! the replica as its membership names it: shared by the Raft implementation and the log on
//! disk, so that neither needs the other.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::event::Batch;

openraft::declare_raft_types!(
    /// The Raft types of a replicated channel.
    pub(crate) Cfg:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = Member,
);

/// A replica as Raft's membership names it: the daemon that holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    /// The node's name in the mesh.
    pub name: String,
}
