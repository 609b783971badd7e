//! The mesh as clients see it: nodes, their state and metadata, membership events, and where a
//! spawn should go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chan::ChanInfo;
use super::types::SpawnSpec;

/// How the local daemon sees a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared dead unless it refutes in time. Still used as alive.
    Suspect,
    /// Declared dead by the mesh.
    Dead,
    /// Left on purpose (graceful shutdown).
    Left,
}

impl NodeState {
    /// Lower-case name, as shown by `circuit nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }

    /// True for alive and suspect: the node may be used.
    pub fn is_up(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of the mesh, as the answering daemon knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name, unique in the mesh.
    pub name: String,
    /// Address of its mesh port (UDP gossip, TCP peer links and API).
    pub addr: String,
    /// Its state as seen by the answering daemon.
    pub state: NodeState,
    /// True for the answering daemon itself.
    pub is_self: bool,
    /// Changes each time the node's daemon starts (or rejoins after being declared dead), so a
    /// restarted daemon is told apart from a stale one.
    pub generation: u64,
    /// Labels given with `circuitd --label k=v`, used for placement.
    pub labels: BTreeMap<String, String>,
    /// Daemon version.
    pub version: String,
    /// When its daemon started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Workers it supervises that are not exited or failed.
    pub workers: usize,
    /// Their names, so a node that dies can have its workers reported as lost.
    #[serde(default)]
    pub worker_names: Vec<String>,
    /// Its 1-minute load average.
    pub load: f64,
    /// Its host's memory, in bytes (`MemTotal` of `/proc/meminfo`); 0 when unknown (a daemon
    /// from before this field, or no `/proc`).
    #[serde(default)]
    pub mem_total_bytes: u64,
    /// Memory its host can still give without swapping (`MemAvailable`), in bytes; 0 when
    /// unknown. Like `load`, refreshed in the mesh at most every 10 s.
    #[serde(default)]
    pub mem_available_bytes: u64,
    /// Names of the channels it owns.
    pub channels: Vec<String>,
    /// Bumped by the node each time its metadata changes; the highest (generation, version)
    /// wins when tables are merged.
    #[serde(default)]
    pub meta_version: u64,
    /// When the answering daemon last heard of a change in this node's state or metadata.
    pub updated_at_ms: u64,
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node joined (or was first seen).
    Join,
    /// A node left on purpose.
    Leave,
    /// A node missed probes and is suspected.
    Suspect,
    /// A suspected node refuted the suspicion.
    Recover,
    /// A node was declared dead.
    Dead,
    /// A node came back with a new generation (restarted, or rejoined after a partition).
    Rejoin,
}

impl EventKind {
    /// Lower-case name, as `circuit events` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Suspect => "suspect",
            Self::Recover => "recover",
            Self::Dead => "dead",
            Self::Rejoin => "rejoin",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A membership event, as seen by the daemon that reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshEvent {
    /// When the reporting daemon saw it (ms since the Unix epoch).
    pub ts_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The node it happened to.
    pub node: String,
    /// That node's mesh address.
    pub addr: String,
    /// That node's generation.
    pub generation: u64,
}

/// The worker label that marks the copies of a replica set: `spawn --replicas N --name api`
/// labels `api-1..N` with `circuit.set=api`.
pub const SET_LABEL: &str = "circuit.set";

/// Most copies one placement may start: a bound on one request's work (and fewer than a
/// node's default `--max-workers`).
pub const MAX_REPLICAS: u32 = 1000;

/// Where a spawn goes and how many copies: [`super::Request::Place`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// What to run. With `replicas > 1` and a name, copy i is named `NAME-i`.
    pub spec: SpawnSpec,
    /// Run on this node.
    pub node: Option<String>,
    /// Run on nodes whose labels include all of these.
    pub selector: BTreeMap<String, String>,
    /// Copies to start, spread over the matching nodes (least loaded first); 0 means 1; at
    /// most [`MAX_REPLICAS`].
    pub replicas: u32,
}

/// A node's answer to another that is about to create a channel ([`super::Request::ChanClaim`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Claim {
    /// The node neither owns nor is creating the name; it remembers the asker's claim, so
    /// that its own create of the name loses to it, until the asker's create ends
    /// ([`super::Request::ChanRelease`]) or, if the asker never says so, for 10 s.
    Free,
    /// The node owns a channel of that name.
    Owned {
        /// The channel.
        chan: ChanInfo,
    },
    /// The node is creating a channel of that name right now.
    Claimed {
        /// The node creating it.
        by: String,
    },
}
