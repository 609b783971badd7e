//! Whether an installed node is alive in the mesh, asked from the installer: its TCP API at
//! the advertised address, with the cluster key, polled with `nodes` until the node itself is
//! alive and, when it has nodes to join, sees another one alive.

use std::time::{Duration, Instant};

use circuit_sdk::proto::{NodeInfo, NodeState, Reply, Request};
use circuit_sdk::secure::Key;
use circuit_sdk::{Client, Target};

/// How long one connect or request may take before the poll tries again.
const ATTEMPT: Duration = Duration::from_secs(3);

/// Time between polls.
const POLL: Duration = Duration::from_millis(250);

/// What to wait for.
#[derive(Debug, Clone)]
pub struct Wait<'a> {
    /// The node's advertised `host:port`.
    pub addr: &'a str,
    /// The cluster key.
    pub key: &'a Key,
    /// The name the node must answer with.
    pub name: &'a str,
    /// True when the node was given nodes to join: it must see one of them alive.
    pub needs_peer: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Polls until the node is in the mesh; returns its own row. On timeout, the error says what
/// was last seen.
pub fn wait(w: &Wait) -> Result<NodeInfo, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    runtime.block_on(poll(w))
}

async fn poll(w: &Wait<'_>) -> Result<NodeInfo, String> {
    let deadline = Instant::now() + w.timeout;
    let target = Target::Tcp(w.addr.to_string());
    let mut client: Option<Client> = None;
    let mut last = String::from("no answer yet");
    loop {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match tokio::time::timeout(
                ATTEMPT,
                Client::connect_with_key(&target, Some(w.key.clone())),
            )
            .await
            {
                Ok(Ok(c)) => Some(c),
                Ok(Err(e)) => {
                    last = format!("its API at {} does not answer: {e}", w.addr);
                    None
                }
                Err(_) => {
                    last = format!("its API at {} does not answer", w.addr);
                    None
                }
            };
        }
        if let Some(c) = &client {
            match tokio::time::timeout(ATTEMPT, c.call(Request::Nodes)).await {
                Ok(Ok(Reply::Nodes(nodes))) => match judge(&nodes, w.name, w.needs_peer) {
                    Ok(me) => return Ok(me),
                    Err(why) => last = why,
                },
                Ok(Ok(_)) => last = "it answered `nodes` with something else".into(),
                Ok(Err(e)) => {
                    last = format!("`nodes` failed: {e}");
                    client = None;
                }
                Err(_) => {
                    last = "`nodes` got no answer".into();
                    client = None;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not in the mesh after {}: {last}",
                humantime::format_duration(w.timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a node table shows the node in the mesh; the error says what is missing.
pub fn judge(nodes: &[NodeInfo], name: &str, needs_peer: bool) -> Result<NodeInfo, String> {
    let Some(me) = nodes.iter().find(|n| n.is_self) else {
        return Err("its node table does not hold itself".into());
    };
    if me.name != name {
        return Err(format!(
            "the daemon answering there is node \"{}\", not \"{name}\" (another circuitd on that address?)",
            me.name
        ));
    }
    if me.state != NodeState::Alive {
        return Err(format!("it sees itself as {}", me.state));
    }
    if needs_peer
        && !nodes
            .iter()
            .any(|n| !n.is_self && n.state == NodeState::Alive)
    {
        let others: Vec<String> = nodes
            .iter()
            .filter(|n| !n.is_self)
            .map(|n| format!("{} {}", n.name, n.state))
            .collect();
        return Err(if others.is_empty() {
            "it has not joined any node yet".into()
        } else {
            format!("it sees no other node alive ({})", others.join(", "))
        });
    }
    Ok(me.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, state: NodeState, is_self: bool) -> NodeInfo {
        NodeInfo {
            is_self,
            ..crate::cmd::fixtures::node(name, state)
        }
    }

    #[test]
    fn alone_is_enough_without_joins() {
        let nodes = [node("h1", NodeState::Alive, true)];
        assert_eq!(judge(&nodes, "h1", false).map(|n| n.name), Ok("h1".into()));
        let err = judge(&nodes, "h1", true).unwrap_err();
        assert!(err.contains("not joined"), "{err}");
    }

    #[test]
    fn with_joins_another_node_must_be_alive() {
        let mut nodes = vec![
            node("h1", NodeState::Alive, true),
            node("h2", NodeState::Dead, false),
        ];
        let err = judge(&nodes, "h1", true).unwrap_err();
        assert!(err.contains("h2 dead"), "{err}");
        nodes.push(node("h3", NodeState::Alive, false));
        assert!(judge(&nodes, "h1", true).is_ok());
    }

    #[test]
    fn another_daemon_on_the_address_is_not_ours() {
        let nodes = [node("old", NodeState::Alive, true)];
        let err = judge(&nodes, "h1", false).unwrap_err();
        assert!(err.contains("\"old\", not \"h1\""), "{err}");
        assert!(judge(&[], "h1", false).is_err());
    }
}
