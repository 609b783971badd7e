//! What `chan stat` says of a replicated channel, as this replica knows it.

use circuit_sdk::proto::{ChanInfo, ReplicaInfo};

use super::{Group, STUCK_SHOWN};
use crate::broker::replica::consensus::Consensus;

impl<C: Consensus> Group<C> {
    pub(super) fn info(&self) -> ChanInfo {
        let c = self.counts;
        let leader = self.status.leader_node().unwrap_or_default().to_string();
        let last = self.status.last_log.unwrap_or(0);
        let replicas = self
            .status
            .members
            .iter()
            .map(|r| {
                let matched = self
                    .status
                    .matched
                    .iter()
                    .find(|(id, _)| *id == r.id)
                    .map(|(_, m)| m.unwrap_or(0));
                let lag = matched.map_or(0, |m| last.saturating_sub(m));
                let state = if self.down.contains_key(&r.node)
                    || self.stuck_for(r.id, STUCK_SHOWN).is_some()
                {
                    "lost"
                } else if Some(r.id) == self.status.leader {
                    "leader"
                } else if !r.voter || lag > 1024 {
                    "catching up"
                } else {
                    "follower"
                };
                ReplicaInfo {
                    node: r.node.clone(),
                    state: state.to_string(),
                    lag,
                }
            })
            .collect();
        ChanInfo {
            name: self.meta.name.clone(),
            capacity: self.meta.capacity,
            len: c.len,
            in_flight: c.in_flight,
            waiting_senders: c.waiting_senders,
            waiting_receivers: c.waiting_receivers,
            senders: c.senders,
            receivers: c.receivers,
            sent: c.sent,
            received: c.received,
            redelivered: c.redelivered,
            closed: self.closed,
            owner: leader,
            max_payload: self.meta.max_payload,
            created_at_ms: self.meta.created_at_ms,
            replicas,
            term: self.status.term,
            storage: self.meta.storage.clone(),
        }
    }
}
