//! A node's identity in SWIM: its name, its mesh address and a generation, so a restarted daemon
//! (or one that rejoins after being declared dead) replaces its stale identity cleanly.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a member is. Two identities with the same address are the same node at different
/// generations; the higher generation wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Node name, unique in the mesh.
    pub name: String,
    /// Mesh address: UDP gossip and TCP on the same port.
    pub addr: SocketAddr,
    /// Set from the wall clock when the daemon starts, bumped on each rejoin.
    pub generation: u64,
}

impl NodeId {
    /// The identity of a daemon starting now.
    pub fn new(name: String, addr: SocketAddr) -> Self {
        // Milliseconds since the epoch: a restart always starts higher than the last run.
        let generation = crate::clock::now_ms();
        Self {
            name,
            addr,
            generation,
        }
    }

    /// Stands for whoever listens at `addr`, for announcing to a node we only know by address.
    pub fn placeholder(addr: SocketAddr) -> Self {
        Self {
            name: String::new(),
            addr,
            generation: 0,
        }
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // Declared dead (a partition, a long pause): come back at once under a new generation.
        Some(Self {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn a_renewed_identity_wins_over_the_old_one() {
        let old = NodeId::new("h1".into(), "10.0.0.1:7711".parse().unwrap());
        let new = old.renew().unwrap();
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
