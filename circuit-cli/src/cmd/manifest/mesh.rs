//! The mesh as `apply`, `down` and `status` see it: one snapshot of every worker, channel and
//! node, read before anything is changed, and the placement questions the plan asks of it.

use circuit_sdk::proto::{ChanInfo, NodeInfo, Request, WorkerInfo, WorkerState, SET_LABEL};
use circuit_sdk::Client;

use super::validate::{pairs, Place};
use crate::cmd::{expect_nodes, expect_workers};

/// Reads the snapshot: every worker (exited ones too), every channel, every node.
pub async fn observe(client: &Client) -> anyhow::Result<Mesh> {
    let mut workers = expect_workers(client.call(Request::ClusterList { all: true }).await?)?;
    // The label circuitd gives the copies of a set is its own, not what a manifest declares:
    // a manifest's copies would otherwise always look changed.
    for w in &mut workers {
        w.spec.labels.remove(SET_LABEL);
    }
    let chans = client.chan_list().await?;
    let nodes = expect_nodes(client.call(Request::Nodes).await?)?;
    Ok(Mesh {
        workers,
        chans,
        nodes,
    })
}

/// What runs in the mesh now.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    /// Every worker of every node, exited ones included.
    pub workers: Vec<WorkerInfo>,
    /// Every channel of every live node.
    pub chans: Vec<ChanInfo>,
    /// The nodes, for placement.
    pub nodes: Vec<NodeInfo>,
}

impl Mesh {
    /// Workers named `name` that are known (not lost with a dead node).
    pub fn workers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a WorkerInfo> + 'a {
        self.workers
            .iter()
            .filter(move |w| w.name == name && w.state != WorkerState::Lost)
    }

    /// True when worker `w` runs where `place` says.
    pub fn satisfies(&self, w: &WorkerInfo, place: &Place) -> bool {
        match place {
            Place::Any => true,
            Place::Node(node) => &w.node == node,
            Place::Labels(wanted) => self
                .nodes
                .iter()
                .find(|n| n.name == w.node)
                .is_some_and(|n| wanted.iter().all(|(k, v)| n.labels.get(k) == Some(v))),
        }
    }

    /// Why `place` cannot take a new worker now, if it cannot.
    pub fn unplaceable(&self, place: &Place) -> Option<String> {
        match place {
            Place::Any => None,
            Place::Node(node) => self.node_down(node),
            Place::Labels(wanted) => {
                let any = self.nodes.iter().any(|n| {
                    n.state.is_up() && wanted.iter().all(|(k, v)| n.labels.get(k) == Some(v))
                });
                (!any).then(|| {
                    format!(
                        "no live node has the labels {} — see `circuit nodes`",
                        pairs(wanted)
                    )
                })
            }
        }
    }

    /// Why `node` cannot be used, if it cannot.
    pub fn node_down(&self, node: &str) -> Option<String> {
        match self.nodes.iter().find(|n| n.name == node) {
            None => Some(format!(
                "no node named \"{node}\" in the mesh — see `circuit nodes`"
            )),
            Some(n) if !n.state.is_up() => Some(format!("node \"{node}\" is {}", n.state)),
            Some(_) => None,
        }
    }
}

/// Workers, channels and nodes for unit tests.
#[cfg(test)]
pub mod fixtures {
    use circuit_sdk::proto::{NodeState, SpawnSpec};

    use super::*;

    pub use crate::cmd::fixtures::chan;

    /// A live node with these labels (`n1` is the one the CLI talks to).
    pub fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            is_self: name == "n1",
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..crate::cmd::fixtures::node(name, NodeState::Alive)
        }
    }

    /// A running worker spawned with `spec` (which names it) on `node`.
    pub fn running(spec: SpawnSpec, node: &str) -> WorkerInfo {
        WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: spec.name.clone().expect("named"),
            node: node.into(),
            state: WorkerState::Running,
            pid: Some(100),
            restarts: 0,
            started_at_ms: Some(0),
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            spec,
        }
    }

    /// Three nodes and nothing on them: n1 role=ingest, n2 and n3 role=compute.
    pub fn empty_mesh() -> Mesh {
        Mesh {
            workers: Vec::new(),
            chans: Vec::new(),
            nodes: vec![
                node("n1", &[("role", "ingest")]),
                node("n2", &[("role", "compute")]),
                node("n3", &[("role", "compute")]),
            ],
        }
    }
}
