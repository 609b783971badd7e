//! `PeerRequest`: the requests only daemons send each other, over their peer links; workers and
//! the CLI never do. On the wire they are variants of the SDK's `Request`, with the same
//! protocol version (4) and shape as before; inside the daemon they are an enum of their own,
//! so the api hands them to their handlers apart from what clients ask.

use circuit_sdk::proto::{NodeInfo, Request};

/// A request from another daemon.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerRequest {
    /// Before creating a channel: does the callee own or create `name`? Reply: `claim`.
    ChanClaim {
        /// Channel name.
        name: String,
        /// The node about to create it.
        node: String,
    },
    /// After a create that claimed `name` ended: the callee forgets `node`'s claim. Reply:
    /// `done`.
    ChanRelease {
        /// Channel name.
        name: String,
        /// The node whose create ended.
        node: String,
    },
    /// Push-pull (anti-entropy): the caller's node table; the reply is the callee's. Reply:
    /// `nodes`.
    MeshSync {
        /// Every node the caller knows, with its metadata.
        nodes: Vec<NodeInfo>,
    },
    /// Start a replica of a replicated channel here: a `Request::ReplicaStart`, kept whole
    /// for its handler. Reply: `done`.
    ReplicaStart(Box<Request>),
    /// The replica of `name` with Raft id `id` here was replaced, or the channel removed: it
    /// stops. Reply: `done`.
    ReplicaDrop {
        /// Channel name.
        name: String,
        /// The replica's Raft id.
        id: u64,
        /// The channel was removed.
        removed: bool,
    },
}

/// A request as a daemon receives it: another daemon's, or one that workers and the CLI send
/// too.
// Made once per request and taken apart at once; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    /// Only daemons send this one.
    Peer(PeerRequest),
    /// Any client may send this one.
    Client(Request),
}

impl From<Request> for Incoming {
    fn from(request: Request) -> Self {
        match request {
            Request::ChanClaim { name, node } => Self::Peer(PeerRequest::ChanClaim { name, node }),
            Request::ChanRelease { name, node } => {
                Self::Peer(PeerRequest::ChanRelease { name, node })
            }
            Request::MeshSync { nodes } => Self::Peer(PeerRequest::MeshSync { nodes }),
            Request::ReplicaDrop { name, id, removed } => {
                Self::Peer(PeerRequest::ReplicaDrop { name, id, removed })
            }
            start @ Request::ReplicaStart { .. } => {
                Self::Peer(PeerRequest::ReplicaStart(Box::new(start)))
            }
            other => Self::Client(other),
        }
    }
}

impl From<PeerRequest> for Request {
    fn from(request: PeerRequest) -> Self {
        match request {
            PeerRequest::ChanClaim { name, node } => Request::ChanClaim { name, node },
            PeerRequest::ChanRelease { name, node } => Request::ChanRelease { name, node },
            PeerRequest::MeshSync { nodes } => Request::MeshSync { nodes },
            PeerRequest::ReplicaStart(request) => *request,
            PeerRequest::ReplicaDrop { name, id, removed } => {
                Request::ReplicaDrop { name, id, removed }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_requests_keep_their_wire_shape_and_client_requests_pass_through() {
        let claim = PeerRequest::ChanClaim {
            name: "q".into(),
            node: "a".into(),
        };
        let wire = serde_json::to_string(&Request::from(claim.clone())).expect("serialize");
        assert_eq!(
            wire,
            r#"{"op":"chan_claim","args":{"name":"q","node":"a"}}"#
        );
        let back: Request = serde_json::from_str(&wire).expect("parse");
        assert_eq!(Incoming::from(back), Incoming::Peer(claim));
        assert_eq!(
            Incoming::from(Request::Nodes),
            Incoming::Client(Request::Nodes),
            "a client's request is not a peer's"
        );
    }
}
