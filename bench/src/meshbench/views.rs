//! Every daemon's view of the mesh: the `nodes` request (what `circuit nodes --json` prints),
//! sent over each daemon's Unix socket, polled until every daemon lists the whole mesh alive
//! and with its metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use circuit_sdk::proto::{NodeInfo, NodeState, Reply, Request};
use circuit_sdk::Client;
use futures::future::join_all;
use tokio::time::{Instant, MissedTickBehavior};

use circuit_testkit::NetnsCluster;

use super::now_ms;

/// Longest a connect plus one `nodes` call may take before the round counts it as no answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// What a converged view holds: every node `h1..hN` alive with metadata (a daemon version and
/// a start time), and for some nodes a given start time (the incarnation that must be known).
#[derive(Debug, Clone)]
pub struct Expect {
    names: Vec<String>,
    started: BTreeMap<String, u64>,
}

impl Expect {
    /// `h1..hN`, any incarnation.
    pub fn any(n: usize) -> Self {
        Self {
            names: (1..=n).map(|i| format!("h{i}")).collect(),
            started: BTreeMap::new(),
        }
    }

    /// Also requires `name` to be known with this `started_at_ms` (a restarted daemon).
    pub fn with_started(mut self, name: &str, started_at_ms: u64) -> Self {
        self.started.insert(name.to_string(), started_at_ms);
        self
    }

    /// Whether `nodes` (one daemon's answer) lists every expected node alive with metadata.
    pub fn complete(&self, nodes: &[NodeInfo]) -> bool {
        self.missing(nodes).is_empty()
    }

    /// What `nodes` lacks, one phrase per node (`h7 suspect`, `h9 without metadata`).
    pub fn missing(&self, nodes: &[NodeInfo]) -> Vec<String> {
        let by_name: BTreeMap<&str, &NodeInfo> =
            nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut out = Vec::new();
        for name in &self.names {
            let Some(node) = by_name.get(name.as_str()) else {
                out.push(format!("{name} unknown"));
                continue;
            };
            if node.state != NodeState::Alive {
                out.push(format!("{name} {}", node.state));
            } else if node.version.is_empty() || node.started_at_ms == 0 {
                out.push(format!("{name} without metadata"));
            } else if let Some(&want) = self.started.get(name) {
                if node.started_at_ms != want {
                    out.push(format!("{name} still its old incarnation"));
                }
            }
        }
        out
    }
}

/// When every daemon's view was complete.
#[derive(Debug, Clone)]
pub struct Converged {
    /// Per host (`[i - 1]`), the wall-clock ms at which the answer that first showed its view
    /// complete arrived. Polled, so each is late by up to a poll period plus a call.
    pub at_ms: Vec<u64>,
    /// Per host, what its last incomplete answer lacked (empty if its first was complete):
    /// why the slowest view took as long as it did.
    pub lacked: Vec<Vec<String>>,
}

impl Converged {
    /// When the last view became complete: the cluster's convergence.
    pub fn last_ms(&self) -> u64 {
        self.at_ms.iter().copied().max().unwrap_or(0)
    }

    /// The host whose view was complete last, and what it lacked just before.
    pub fn slowest(&self) -> (usize, &[String]) {
        let k = (0..self.at_ms.len())
            .max_by_key(|&k| self.at_ms[k])
            .unwrap_or(0);
        (k + 1, self.lacked.get(k).map_or(&[][..], Vec::as_slice))
    }
}

/// A client per daemon (connected on first use, again after a failure) and each one's last
/// answer.
pub struct Views {
    sockets: Vec<PathBuf>,
    clients: Vec<Option<Client>>,
    last: Vec<Option<Vec<NodeInfo>>>,
}

impl Views {
    /// No connections yet, to the daemons of `cluster`.
    pub fn of(cluster: &NetnsCluster) -> Self {
        Self::new(cluster.hosts().iter().map(|h| h.socket.clone()).collect())
    }

    /// No connections yet, to the daemons at `sockets` (h1 first).
    pub fn new(sockets: Vec<PathBuf>) -> Self {
        let n = sockets.len();
        Self {
            sockets,
            clients: vec![None; n],
            last: vec![None; n],
        }
    }

    /// Host `i`'s own entry in its last answer ([`Views::ask`] first).
    pub fn own(&self, i: usize) -> Option<&NodeInfo> {
        self.last[i - 1].as_ref()?.iter().find(|n| n.is_self)
    }

    /// Asks host `i` for its view; an error if it does not answer.
    pub async fn ask(&mut self, i: usize) -> anyhow::Result<Vec<NodeInfo>> {
        match self.round(&[i]).await.pop() {
            Some((_, Some(nodes), _)) => Ok(nodes),
            _ => bail!("h{i}'s daemon did not answer `nodes`"),
        }
    }

    /// Polls every `poll` until every daemon's view satisfies `expect`, then asks every daemon
    /// once more: a view that fell back (a suspicion) puts its host back in the wait.
    pub async fn wait_converged(
        &mut self,
        expect: &Expect,
        poll: Duration,
        within: Duration,
    ) -> anyhow::Result<Converged> {
        let n = self.sockets.len();
        let deadline = Instant::now() + within;
        let mut done: Vec<Option<u64>> = vec![None; n];
        let mut lacked: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pending: Vec<usize> = (1..=n).filter(|i| done[i - 1].is_none()).collect();
            let checking_all = pending.is_empty();
            let asked = if checking_all {
                (1..=n).collect()
            } else {
                pending
            };
            let mut fell_back = false;
            for (i, nodes, at) in self.round(&asked).await {
                let complete = nodes.as_deref().is_some_and(|n| expect.complete(n));
                if let (false, Some(nodes)) = (complete, &nodes) {
                    lacked[i - 1] = expect.missing(nodes);
                }
                match (complete, done[i - 1]) {
                    (true, None) => done[i - 1] = Some(at),
                    (false, Some(_)) => {
                        done[i - 1] = None;
                        fell_back = true;
                    }
                    _ => {}
                }
            }
            if checking_all && !fell_back {
                return Ok(Converged {
                    at_ms: done.into_iter().flatten().collect(),
                    lacked,
                });
            }
            if Instant::now() >= deadline {
                bail!(
                    "not converged within {within:?}: {}",
                    self.describe_pending(&done, expect)
                );
            }
        }
    }

    fn describe_pending(&self, done: &[Option<u64>], expect: &Expect) -> String {
        let mut parts = Vec::new();
        for (k, d) in done.iter().enumerate() {
            if d.is_some() {
                continue;
            }
            let what = match &self.last[k] {
                None => "no answer".to_string(),
                Some(nodes) => {
                    let missing = expect.missing(nodes);
                    let shown: Vec<&str> = missing.iter().take(4).map(String::as_str).collect();
                    format!("sees {}", shown.join(", "))
                }
            };
            parts.push(format!("h{} {what}", k + 1));
        }
        parts.join("; ")
    }

    /// Asks `hosts` at once; per host, its answer (if any) and when it arrived.
    async fn round(&mut self, hosts: &[usize]) -> Vec<(usize, Option<Vec<NodeInfo>>, u64)> {
        let asks = hosts.iter().map(|&i| {
            let client = self.clients[i - 1].clone().filter(|c| !c.is_closed());
            let socket = self.sockets[i - 1].clone();
            async move {
                let call = async {
                    let client = match client {
                        Some(client) => client,
                        None => Client::connect_unix(&socket).await.ok()?,
                    };
                    match client.call(Request::Nodes).await {
                        Ok(Reply::Nodes(nodes)) => Some((client, nodes)),
                        _ => None,
                    }
                };
                let got = tokio::time::timeout(CALL_TIMEOUT, call)
                    .await
                    .ok()
                    .flatten();
                (i, got, now_ms())
            }
        });
        let mut out = Vec::new();
        for (i, got, at) in join_all(asks).await {
            match got {
                Some((client, nodes)) => {
                    self.clients[i - 1] = Some(client);
                    self.last[i - 1] = Some(nodes.clone());
                    out.push((i, Some(nodes), at));
                }
                None => {
                    self.clients[i - 1] = None;
                    out.push((i, None, at));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, state: NodeState, started_at_ms: u64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addr: String::new(),
            state,
            is_self: false,
            generation: started_at_ms,
            labels: BTreeMap::new(),
            version: if started_at_ms > 0 {
                "0.1.0".into()
            } else {
                String::new()
            },
            started_at_ms,
            workers: 0,
            worker_names: Vec::new(),
            load: 0.0,
            mem_total_bytes: 0,
            mem_available_bytes: 0,
            channels: Vec::new(),
            meta_version: 1,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_view_is_complete_with_every_node_alive_with_metadata() {
        let expect = Expect::any(3);
        let full = vec![
            node("h1", NodeState::Alive, 10),
            node("h2", NodeState::Alive, 11),
            node("h3", NodeState::Alive, 12),
        ];
        assert!(expect.complete(&full));
        let mut suspect = full.clone();
        suspect[1].state = NodeState::Suspect;
        assert_eq!(expect.missing(&suspect), vec!["h2 suspect"]);
        let mut bare = full.clone();
        bare[2] = node("h3", NodeState::Alive, 0);
        assert_eq!(expect.missing(&bare), vec!["h3 without metadata"]);
        assert_eq!(expect.missing(&full[..2]), vec!["h3 unknown"]);
        let restarted = Expect::any(3).with_started("h2", 99);
        assert_eq!(
            restarted.missing(&full),
            vec!["h2 still its old incarnation"]
        );
    }
}
