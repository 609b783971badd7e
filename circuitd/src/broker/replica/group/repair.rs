//! Repair, on the leader: a voter whose node has been down for `repair_after`, or that takes
//! no entries though its node is up (a memory replica whose daemon restarted holds nothing),
//! is replaced by a new replica on another live node (or on its own, if none other is free),
//! which joins as a learner, catches up, and takes the old one's vote.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Group, Meta, RepairAsk, CATCH_UP};
use crate::broker::replica::consensus::{Consensus, Replica, Role, StatusWatch};

impl<C: Consensus> Group<C> {
    /// On the leader, follows which voters take no entries: `behind` holds those whose
    /// matched index is below the log's end, since it last moved.
    pub(super) fn track_behind(&mut self) {
        let leads = self.status.role == Role::Leader && self.status.leader == Some(self.status.me);
        if !leads {
            self.behind.clear();
            return;
        }
        // In place: this runs on every status change of the leader, the data path's included.
        let (status, now) = (&self.status, Instant::now());
        let voter = |id: u64| status.members.iter().any(|r| r.voter && r.id == id);
        self.behind.retain(|id, _| voter(*id));
        for r in status
            .members
            .iter()
            .filter(|r| r.voter && r.id != status.me)
        {
            let matched = status
                .matched
                .iter()
                .find(|(id, _)| *id == r.id)
                .and_then(|(_, m)| *m);
            if matched >= status.last_log {
                self.behind.remove(&r.id);
            } else if self
                .behind
                .get(&r.id)
                .is_none_or(|(held, _)| *held != matched)
            {
                self.behind.insert(r.id, (matched, now));
            }
        }
    }

    /// Whether voter `id` has taken no entries of the leader's for `at_least`.
    pub(super) fn stuck_for(&self, id: u64, at_least: Duration) -> Option<Instant> {
        self.behind
            .get(&id)
            .map(|(_, since)| *since)
            .filter(|since| since.elapsed() >= at_least)
    }

    /// Voters whose node is down, or (on the leader) that take no entries though their node
    /// is up: (id, node, since when).
    pub(super) fn dead_voters(&self) -> Vec<(u64, String, Instant)> {
        self.voters()
            .into_iter()
            .filter_map(|r| {
                let since = match self.down.get(&r.node) {
                    Some(at) => *at,
                    None => self.behind.get(&r.id).map(|(_, since)| *since)?,
                };
                Some((r.id, r.node.clone(), since))
            })
            .collect()
    }

    /// A leader replaces a voter whose node has been down for `repair_after`: a new replica
    /// on another node joins as a learner, catches up (from a snapshot if it is far behind),
    /// and then takes the dead one's vote.
    pub(super) fn maybe_repair(&mut self, now: Instant) {
        let confirmed = self.serving.as_ref().is_some_and(|s| s.confirmed);
        if !confirmed || self.repair.is_some() || now < self.repair_at {
            return;
        }
        let Some((dead_id, dead_node, _)) = self
            .dead_voters()
            .into_iter()
            .filter(|(_, _, at)| now >= *at + self.meta.repair_after)
            .min_by_key(|(_, _, at)| *at)
        else {
            return;
        };
        // A learner added earlier (a repair cut short) is reused rather than added again.
        let id = self.status.members.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let members: Vec<(u64, String)> = self
            .status
            .members
            .iter()
            .map(|r| (r.id, r.node.clone()))
            .collect();
        // A stuck replica's node that is up may take the new one (its daemon restarted and
        // holds none now); a dead node may not.
        let exclude: Vec<String> = self
            .status
            .members
            .iter()
            .filter(|r| r.id != dead_id || self.down.contains_key(&r.node))
            .map(|r| r.node.clone())
            .collect();
        let voters: Vec<u64> = self
            .voters()
            .iter()
            .map(|r| r.id)
            .filter(|v| *v != dead_id)
            .chain([id])
            .collect();
        let (tx, rx) = oneshot::channel();
        self.repair = Some(rx);
        let job = Repair {
            consensus: self.consensus.clone(),
            watch: self.consensus.watch(),
            repairs: self.repairs.clone(),
            meta: self.meta.clone(),
            id,
            members,
            exclude,
            voters,
        };
        let why = if self.down.contains_key(&dead_node) {
            "replacing the replica of a dead node"
        } else {
            "replacing a replica that takes no entries"
        };
        tracing::info!(chan = %self.meta.name, node = %dead_node, "{why}");
        self.replaced.push((dead_node, dead_id));
        tokio::spawn(async move {
            let _ = tx.send(job.run().await);
        });
    }
}

/// One repair: place a new replica, add it as a learner, wait until it has caught up, make it
/// a voter in place of the dead one.
struct Repair<C: Consensus> {
    consensus: C,
    watch: C::Watch,
    repairs: mpsc::UnboundedSender<RepairAsk>,
    meta: Meta,
    id: u64,
    members: Vec<(u64, String)>,
    exclude: Vec<String>,
    voters: Vec<u64>,
}

impl<C: Consensus> Repair<C> {
    async fn run(mut self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let members = self.members.clone();
        self.repairs
            .send(RepairAsk::Place {
                meta: self.meta.clone(),
                id: self.id,
                members,
                exclude: self.exclude.clone(),
                reply: tx,
            })
            .map_err(|_| "the daemon is stopping".to_string())?;
        let node = rx.await.map_err(|_| "no answer".to_string())??;
        let replica = Replica {
            id: self.id,
            node: node.clone(),
            voter: false,
        };
        self.consensus
            .add_learner(&replica)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let status = self.watch.status();
            let last = status.last_log.unwrap_or(0);
            let matched = status
                .matched
                .iter()
                .find(|(id, _)| *id == self.id)
                .and_then(|(_, m)| *m)
                .unwrap_or(0);
            if matched + 16 >= last {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the replica on {node} did not catch up in {CATCH_UP:?}"
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.watch.changed()).await;
        }
        self.consensus
            .set_voters(&self.voters)
            .await
            .map_err(|e| e.to_string())
    }
}
