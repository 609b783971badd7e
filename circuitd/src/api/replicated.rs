//! `chan create --replicas 3|5`: where the replicas go (alive nodes, the fewest channels
//! first, then the lowest load; only nodes with the `--replica-labels` if given), starting one
//! on each (the first forms the Raft group, once the others run), and waiting until the group
//! has a leader that serves. Also the peer request that starts one replica here.

use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, NodeInfo, Reply, Request};
use futures::future::join_all;

use super::error::ApiError;
use super::Context;
use crate::broker::replica::consensus::Replica;
use crate::broker::{RepairAsk, ReplicaSpec};

/// How long a new replicated channel may take to elect its first leader.
const FIRST_LEADER: Duration = Duration::from_secs(10);
/// How often a replica is told to stop before the telling is given up (about 30 s in all).
const DROP_ATTEMPTS: u32 = 7;

/// What `chan create` asked for a replicated channel.
pub(crate) struct Wanted<'a> {
    pub name: &'a str,
    pub capacity: u64,
    pub replicas: u32,
    pub labels: &'a [String],
    pub storage: &'a str,
}

/// Places the replicas, starts them, and waits for the first leader.
pub(crate) async fn create(wanted: Wanted<'_>, ctx: &Context) -> Result<Reply, ApiError> {
    // One replica (a channel kept on disk) is this node's, as a plain channel is.
    let nodes = if wanted.replicas == 1 {
        vec![ctx.config.name.clone()]
    } else {
        place(&ctx.membership.nodes(), &wanted)?
    };
    let members: Vec<Replica> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Replica {
            id: i as u64 + 1,
            node: node.clone(),
            voter: true,
        })
        .collect();
    let created_at_ms = crate::clock::now_ms();
    let start = |replica: &Replica, found: bool| Request::ReplicaStart {
        name: wanted.name.to_string(),
        capacity: wanted.capacity,
        id: replica.id,
        members: members.iter().map(|r| (r.id, r.node.clone())).collect(),
        storage: wanted.storage.to_string(),
        found,
        created_at_ms,
        labels: wanted.labels.to_vec(),
    };
    // The others first, then the founder: its first election finds them running.
    let others = members[1..]
        .iter()
        .map(|r| async { (r.node.clone(), run_on(&r.node, start(r, false), ctx).await) });
    for (node, result) in join_all(others).await {
        result.map_err(|e| ApiError::Internal(format!("starting a replica on {node}: {e}")))?;
    }
    run_on(&members[0].node, start(&members[0], true), ctx)
        .await
        .map_err(|e| {
            ApiError::Internal(format!("starting a replica on {}: {e}", members[0].node))
        })?;
    let info = first_leader(wanted.name, &members[0].node, ctx).await?;
    Ok(Reply::Chan(info))
}

/// Runs a peer request here or on `node`.
async fn run_on(node: &str, request: Request, ctx: &Context) -> Result<(), ApiError> {
    if node == ctx.config.name {
        let Request::ReplicaStart { .. } = &request else {
            return Err(ApiError::Internal("not a replica start".into()));
        };
        start_here(request, ctx).await.map(drop)
    } else {
        ctx.peers.call_on(node, request).await?;
        Ok(())
    }
}

/// Waits until the group has a leader that serves; its description.
async fn first_leader(name: &str, asked: &str, ctx: &Context) -> Result<ChanInfo, ApiError> {
    let deadline = tokio::time::Instant::now() + FIRST_LEADER;
    let mut node = asked.to_string();
    loop {
        let stat = Request::ChanStat {
            name: name.to_string(),
        };
        let info = if node == ctx.config.name {
            ctx.broker.stat(name).await.ok()
        } else {
            match ctx.peers.call_on(&node, stat).await {
                Ok(Reply::Chan(info)) => Some(info),
                _ => None,
            }
        };
        if let Some(info) = info {
            if !info.owner.is_empty() {
                if info.owner == node {
                    return Ok(info);
                }
                node = info.owner.clone();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Broker(crate::broker::BrokerError::Unavailable(
                format!("replicated channel \"{name}\" elected no leader within {FIRST_LEADER:?}"),
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Chooses the nodes of the replicas: alive, with the labels, the fewest channels first.
fn place(nodes: &[NodeInfo], wanted: &Wanted<'_>) -> Result<Vec<String>, ApiError> {
    place_except(nodes, wanted, &[])
}

/// As [`place`], never on the nodes in `exclude`.
fn place_except(
    nodes: &[NodeInfo],
    wanted: &Wanted<'_>,
    exclude: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut labels = Vec::new();
    for label in wanted.labels {
        let (k, v) = label.split_once('=').ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "--replica-labels {label}: expected KEY=VALUE, e.g. zone=a"
            ))
        })?;
        labels.push((k.to_string(), v.to_string()));
    }
    let mut fit: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.state == circuit_sdk::proto::NodeState::Alive)
        .filter(|n| !exclude.contains(&n.name))
        .filter(|n| labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .collect();
    let n = wanted.replicas as usize;
    if fit.len() < n {
        let with = if labels.is_empty() {
            String::new()
        } else {
            format!(" with the labels {}", wanted.labels.join(","))
        };
        if !exclude.is_empty() {
            return Err(ApiError::Unreachable(format!(
                "no live node{with} holds no replica of channel \"{}\" yet",
                wanted.name
            )));
        }
        return Err(ApiError::Unreachable(format!(
            "--replicas {n} needs {n} live nodes{with}; the mesh has {} — see `circuit nodes`",
            fit.len()
        )));
    }
    fit.sort_by(|a, b| {
        a.channels
            .len()
            .cmp(&b.channels.len())
            .then(a.load.total_cmp(&b.load))
            .then(a.name.cmp(&b.name))
    });
    Ok(fit.into_iter().take(n).map(|n| n.name.clone()).collect())
}

/// `replica_start` from the node that creates a replicated channel: starts the replica here.
pub(crate) async fn start_here(request: Request, ctx: &Context) -> Result<Reply, ApiError> {
    let Request::ReplicaStart {
        name,
        capacity,
        id,
        members,
        storage,
        found,
        created_at_ms,
        labels,
    } = request
    else {
        return Err(ApiError::Internal("not a replica start".into()));
    };
    let down = ctx
        .membership
        .nodes()
        .into_iter()
        .filter(|n| !n.state.is_up())
        .map(|n| n.name)
        .collect();
    let spec = ReplicaSpec {
        name,
        capacity,
        created_at_ms,
        storage,
        id,
        members,
        found,
        down,
        labels,
        restored: false,
    };
    ctx.broker.start_replica(spec).await?;
    Ok(Reply::Done)
}

/// Serves the repairs the leaders of replicated channels here ask for: a new replica on a
/// live node that holds none of the channel's, or a replaced one told to stop.
pub(crate) async fn repairs(ctx: std::sync::Arc<Context>) {
    let Some(mut asks) = ctx.broker.take_repairs() else {
        return;
    };
    loop {
        let ask = tokio::select! {
            ask = asks.recv() => ask,
            () = ctx.shutdown.cancelled() => return,
        };
        let Some(ask) = ask else { return };
        let ctx = ctx.clone();
        ctx.tracker
            .clone()
            .spawn(async move { repair(ask, &ctx).await });
    }
}

async fn repair(ask: RepairAsk, ctx: &Context) {
    match ask {
        RepairAsk::Place {
            meta,
            id,
            members,
            exclude,
            reply,
        } => {
            let wanted = Wanted {
                name: &meta.name,
                capacity: meta.capacity,
                replicas: 1,
                labels: &meta.labels,
                storage: &meta.storage,
            };
            let placed = place_except(&ctx.membership.nodes(), &wanted, &exclude);
            let result = match placed {
                Ok(nodes) => {
                    let node = nodes.into_iter().next().unwrap_or_default();
                    let start = Request::ReplicaStart {
                        name: meta.name.clone(),
                        capacity: meta.capacity,
                        id,
                        members,
                        storage: meta.storage.clone(),
                        found: false,
                        created_at_ms: meta.created_at_ms,
                        labels: meta.labels.clone(),
                    };
                    run_on(&node, start, ctx)
                        .await
                        .map(|()| node)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = reply.send(result);
        }
        RepairAsk::Drop {
            node,
            chan,
            id,
            removed,
        } => {
            // Retried for a while: a node just back from a cut may not take calls yet. One
            // that never hears it learns the removal when its replica next calls a node that
            // applied it (the answer says the channel was removed).
            let mut pause = Duration::from_millis(250);
            for attempt in 1..=DROP_ATTEMPTS {
                let drop = Request::ReplicaDrop {
                    name: chan.clone(),
                    id,
                    removed,
                };
                match ctx.peers.call_on(&node, drop).await {
                    Ok(_) => return,
                    Err(why) if attempt == DROP_ATTEMPTS => {
                        tracing::debug!(%node, %chan, %why, "a replica was not told to stop");
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = ctx.shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(8));
            }
        }
    }
}
