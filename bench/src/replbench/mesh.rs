//! Three circuitd daemons meshed on loopback (`--listen 127.0.0.1:0`, b and c `--join` a), as
//! the kit starts them, and what a trial asks of them: make a channel of a [`Contender`]'s
//! kind, find its leader, pick where its clients go, remove it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_sdk::proto::{ChanInfo, Reply, Request};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use tokio::time::Instant;

use super::contender::{is_not_served, Contender};

/// The daemons' node names, a first.
pub const NAMES: [&str; 3] = ["a", "b", "c"];
/// How often start-up and leader searches check their condition.
const POLL: Duration = Duration::from_millis(10);
/// How long a new channel may take to name a settled leader.
const LEADER_WITHIN: Duration = Duration::from_secs(20);

/// One daemon of the mesh.
#[derive(Debug)]
struct Node {
    name: String,
    /// The harness's connection, which makes and removes channels. Declared before the daemon,
    /// so it closes first.
    client: Client,
    daemon: Daemon,
}

/// Three meshed daemons. Dropping it stops them by pid and deletes their temp dirs.
#[derive(Debug)]
pub struct Mesh {
    nodes: Vec<Node>,
    version: String,
}

/// Why a channel was not made.
#[derive(Debug)]
pub enum NotMade {
    /// This build does not serve that kind of channel (the daemon's words).
    NotServed(String),
    /// Anything else.
    Failed(anyhow::Error),
}

impl Mesh {
    /// Starts a, then b and c joining a, and waits until each sees all three up.
    pub async fn start(binary: &Path, within: Duration) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        let mut join: Option<String> = None;
        for name in NAMES {
            let mut builder = crate::bench_daemon(binary)
                .name(name)
                .listen("127.0.0.1:0")
                .ready_within(within);
            if let Some(addr) = &join {
                builder = builder.join(addr);
            }
            let daemon = builder.start().with_context(|| format!("node {name}"))?;
            let client = daemon
                .connect()
                .await
                .with_context(|| format!("node {name}"))?;
            if join.is_none() {
                join = Some(match client.call(Request::Status).await {
                    Ok(Reply::Status(status)) => status
                        .listen
                        .with_context(|| format!("node {name} reports no mesh port"))?,
                    other => bail!("node {name} answered status with {other:?}"),
                });
            }
            nodes.push(Node {
                name: name.to_string(),
                client,
                daemon,
            });
        }
        let version = nodes[0].client.daemon_version().to_string();
        let mut mesh = Self { nodes, version };
        mesh.until_meshed(within).await?;
        Ok(mesh)
    }

    async fn until_meshed(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            let mut all = true;
            for node in &self.nodes {
                let up = match node.client.call(Request::Nodes).await {
                    Ok(Reply::Nodes(nodes)) => nodes.iter().filter(|n| n.state.is_up()).count(),
                    other => bail!("node {} answered nodes with {other:?}", node.name),
                };
                all &= up == NAMES.len();
            }
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the three daemons did not mesh within {within:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The daemons' version.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn node(&self, name: &str) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name} in the mesh"))
    }

    /// The Unix socket of node `name`, where roles on it connect.
    pub fn socket(&self, name: &str) -> anyhow::Result<PathBuf> {
        Ok(self.node(name)?.daemon.socket.clone())
    }

    /// The daemons' pids, for their CPU time.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| u32::try_from(n.daemon.pid()).ok())
            .collect()
    }

    /// Fails, with the end of its log, if a daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.daemon
                .check_alive()
                .with_context(|| format!("node {}", node.name))?;
        }
        Ok(())
    }

    /// Makes channel `name` of `contender`'s kind with room for `capacity` values, asked of
    /// node a (which owns it when it has one owner), and returns its leader (or owner) once
    /// settled.
    pub async fn create(
        &self,
        name: &str,
        capacity: u64,
        contender: Contender,
    ) -> Result<String, NotMade> {
        let options = contender
            .chan_options()
            .ok_or_else(|| NotMade::Failed(anyhow::anyhow!("{contender} is not a channel")))?;
        let client = &self.nodes[0].client;
        match client
            .chan_create_with(name, capacity, options, false)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_served(&e.to_string()) => {
                return Err(NotMade::NotServed(e.to_string()))
            }
            Err(e) => {
                return Err(NotMade::Failed(
                    anyhow::Error::new(e).context(format!("cannot create channel {name}")),
                ))
            }
        }
        self.leader(name).await.map_err(NotMade::Failed)
    }

    /// The channel's leader (or owner) as node a sees it, once it names one and, when
    /// replicated, exactly one replica says it leads.
    pub async fn leader(&self, name: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + LEADER_WITHIN;
        loop {
            let info = stat(&self.nodes[0].client, name).await;
            if let Some(info) = &info {
                let leaders = info.replicas.iter().filter(|r| r.state == "leader").count();
                if !info.owner.is_empty() && (info.replicas.is_empty() || leaders == 1) {
                    return Ok(info.owner.clone());
                }
            }
            if Instant::now() >= deadline {
                bail!("channel {name} named no settled leader within {LEADER_WITHIN:?}: {info:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Closes and removes channel `name`.
    pub async fn remove(&self, name: &str) -> anyhow::Result<()> {
        let client = &self.nodes[0].client;
        client
            .chan_close(name)
            .await
            .with_context(|| format!("cannot close channel {name}"))?;
        client
            .chan_remove(name)
            .await
            .with_context(|| format!("cannot remove channel {name}"))
    }
}

/// The channel's description as `client`'s daemon gives it; `None` while it cannot (between
/// two leaders, say).
async fn stat(client: &Client, name: &str) -> Option<ChanInfo> {
    client.chan_stat(name).await.ok()
}

/// Where a trial's clients go, given the leader (or owner) of its channel: senders on the
/// first other node in name order, receivers on the second, so that neither is on the leader.
pub fn others(leader: &str) -> (String, String) {
    let mut rest = NAMES
        .iter()
        .filter(|n| **n != leader)
        .map(|n| n.to_string());
    let first = rest.next().unwrap_or_else(|| NAMES[1].to_string());
    let second = rest.next().unwrap_or_else(|| NAMES[2].to_string());
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_go_to_the_two_nodes_that_do_not_lead() {
        assert_eq!(others("a"), ("b".into(), "c".into()));
        assert_eq!(others("b"), ("a".into(), "c".into()));
        assert_eq!(others("c"), ("a".into(), "b".into()));
    }
}
