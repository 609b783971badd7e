//! Requests that span nodes: running a request on another node (`on`), placing workers,
//! cluster-wide lists, finding which node has a worker, and the mesh requests themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use circuit_sdk::proto::{
    ErrorCode, Item, NodeInfo, Placement, Reply, Request, ServerMessage, SpawnSpec, WorkerInfo,
    WorkerState, MAX_REPLICAS,
};
use circuit_sdk::Next;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::connection::Outbox;
use super::dispatch::{local, Failure};
use super::Context;
use crate::peer::next_on;

/// How long `join` waits for a node at one of its addresses to become a member, unless the
/// request says otherwise.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// The longest wait a `join` may ask for.
const JOIN_WAIT_MAX: Duration = Duration::from_secs(3600);
/// First pause before asking an address that did not answer again; doubles up to
/// [`JOIN_RETRY_MAX`].
const JOIN_RETRY: Duration = Duration::from_millis(100);
const JOIN_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long an address may refuse connections (nothing listens there) before a join gives up
/// on it: long enough for a daemon that is starting, much shorter than the join's timeout.
const JOIN_REFUSED_FOR: Duration = Duration::from_secs(2);

/// Runs `request` on `node`: here, or there through the peer link, relaying its items.
pub(crate) async fn on(
    id: u64,
    node: &str,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
    match &request {
        Request::On { .. } => {
            return Err(Failure(
                ErrorCode::InvalidArgument,
                "`on` cannot be nested".into(),
            ))
        }
        Request::ChanSend { .. } | Request::ChanRecv { .. } => {
            return Err(Failure(
                ErrorCode::InvalidArgument,
                "channel streams are opened by channel name from any node, not with `on`".into(),
            ))
        }
        _ => {}
    }
    if node == ctx.config.name {
        if let Request::ChanCreate {
            name,
            capacity,
            exist_ok,
        } = request
        {
            // Placed here, but the name must still be free in the whole mesh.
            return Box::pin(super::chans::create(
                id, name, capacity, exist_ok, ctx, outbox,
            ))
            .await;
        }
        return Box::pin(local(id, request, ctx, outbox)).await;
    }
    let mut stream = ctx
        .peers
        .open_on(node, request)
        .await
        .map_err(Failure::from)?;
    loop {
        match next_on(node, &mut stream).await.map_err(Failure::from)? {
            Next::Item(item) => {
                if !outbox.send(ServerMessage::Item { id, item }).await {
                    return Err(Failure(ErrorCode::Cancelled, "client went away".into()));
                }
            }
            Next::End(reply) => return Ok(reply),
        }
    }
}

/// Runs `request` on `node` and returns its terminal reply, ignoring items.
async fn call_on(node: &str, request: Request, ctx: &Context) -> Result<Reply, Failure> {
    ctx.peers
        .call_on(node, request)
        .await
        .map_err(Failure::from)
}

/// The node that has worker `name`, if it is not here: asks every live node. `None` when no
/// node has it (the caller's local error stands).
pub(crate) async fn find_worker(name: &str, ctx: &Context) -> Result<Option<String>, Failure> {
    if !ctx.membership.meshed() || ctx.supervisor.inspect(name).is_ok() {
        return Ok(None);
    }
    let make = || Request::Inspect {
        name: name.to_string(),
    };
    let found = ctx
        .peers
        .ask_all(make, |r| matches!(r, Reply::Worker(_)))
        .await;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(Failure(
            ErrorCode::InvalidArgument,
            format!(
                "a worker named \"{name}\" runs on nodes {}: pick one with --node",
                found.join(", ")
            ),
        )),
    }
}

/// Stops workers wherever they are: local ones here, the others on their nodes.
pub(crate) async fn stop_anywhere(
    id: u64,
    names: Vec<String>,
    signal: Option<String>,
    timeout_ms: Option<u64>,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let node = find_worker(&name, ctx)
            .await?
            .unwrap_or_else(|| ctx.config.name.clone());
        by_node.entry(node).or_default().push(name);
    }
    let mut stopped = Vec::new();
    for (node, names) in by_node {
        let request = Request::Stop {
            names,
            signal: signal.clone(),
            timeout_ms,
        };
        match on(id, &node, request, ctx, outbox).await? {
            Reply::Workers(mut workers) => stopped.append(&mut workers),
            other => stopped.extend(single(other)),
        }
    }
    Ok(Reply::Workers(stopped))
}

fn single(reply: Reply) -> Option<WorkerInfo> {
    match reply {
        Reply::Worker(w) => Some(*w),
        _ => None,
    }
}

/// Every worker of every node; those of dead nodes as `lost`.
pub(crate) async fn cluster_list(all: bool, ctx: &Context) -> Result<Reply, Failure> {
    let mut workers = ctx.supervisor.list(all);
    let nodes: Vec<NodeInfo> = ctx
        .membership
        .nodes()
        .into_iter()
        .filter(|n| !n.is_self)
        .collect();
    let asks = nodes.iter().map(|n| async move {
        if n.state.is_up() {
            match call_on(&n.name, Request::List { all }, ctx).await {
                Ok(Reply::Workers(list)) => return list,
                Ok(_) => {}
                Err(Failure(_, why)) => {
                    tracing::debug!(node = %n.name, %why, "cluster list: node skipped");
                }
            }
        }
        lost_workers(n)
    });
    for mut list in join_all(asks).await {
        workers.append(&mut list);
    }
    workers.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    Ok(Reply::Workers(workers))
}

/// What is known of the workers of a node that cannot answer.
fn lost_workers(node: &NodeInfo) -> Vec<WorkerInfo> {
    node.worker_names
        .iter()
        .map(|name| WorkerInfo {
            name: name.clone(),
            node: node.name.clone(),
            state: WorkerState::Lost,
            pid: None,
            restarts: 0,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: None,
            reason: Some(format!("node {} is {}", node.name, node.state)),
            next_start_at_ms: None,
            spec: SpawnSpec::default(),
        })
        .collect()
}

/// Places `replicas` copies of a worker over the matching nodes, least loaded first.
pub(crate) async fn place(p: Placement, ctx: &Context) -> Result<Reply, Failure> {
    if p.replicas > MAX_REPLICAS {
        return Err(Failure(
            ErrorCode::InvalidArgument,
            format!(
                "replicas {} is over the limit of {MAX_REPLICAS} copies per placement",
                p.replicas
            ),
        ));
    }
    let nodes = ctx.membership.nodes();
    let candidates: Vec<&NodeInfo> = match &p.node {
        Some(name) => {
            let node = nodes.iter().find(|n| &n.name == name).ok_or_else(|| {
                Failure(
                    ErrorCode::NotFound,
                    format!("no node named \"{name}\" in the mesh — see `circuit nodes`"),
                )
            })?;
            if !node.state.is_up() {
                return Err(Failure(
                    ErrorCode::Unreachable,
                    format!("node \"{name}\" is {}", node.state),
                ));
            }
            vec![node]
        }
        None => nodes.iter().filter(|n| n.state.is_up()).collect(),
    };
    let matching: Vec<&NodeInfo> = candidates
        .into_iter()
        .filter(|n| p.selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .collect();
    if matching.is_empty() {
        let wanted: Vec<String> = p.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(Failure(
            ErrorCode::NotFound,
            format!(
                "no live node has the labels {} — see `circuit nodes`",
                wanted.join(",")
            ),
        ));
    }
    let replicas = p.replicas.max(1) as usize;
    let targets = spread(&matching, replicas);
    let spawns = targets.iter().enumerate().map(|(i, node)| {
        let mut spec = p.spec.clone();
        if replicas > 1 {
            spec.name = spec.name.map(|n| format!("{n}-{}", i + 1));
        }
        async move {
            let result = if *node == ctx.config.name {
                ctx.supervisor.spawn(spec).await.map_err(Failure::from)
            } else {
                match call_on(node, Request::Spawn(spec), ctx).await {
                    Ok(Reply::Worker(w)) => Ok(*w),
                    Ok(other) => Err(Failure(
                        ErrorCode::Internal,
                        format!("unexpected reply {other:?}"),
                    )),
                    Err(f) => Err(f),
                }
            };
            (node.clone(), result)
        }
    });
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for (node, result) in join_all(spawns).await {
        match result {
            Ok(w) => started.push(w),
            Err(f) => failed.push((node, f)),
        }
    }
    if failed.is_empty() {
        return Ok(Reply::Workers(started));
    }
    let (node, Failure(code, why)) = failed.swap_remove(0);
    if started.is_empty() {
        return Err(Failure(code, format!("on {node}: {why}")));
    }
    let done: Vec<String> = started
        .iter()
        .map(|w| format!("{} on {}", w.name, w.node))
        .collect();
    Err(Failure(
        code,
        format!(
            "started {} of {replicas} ({}); on {node}: {why}{}",
            started.len(),
            done.join(", "),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" (and {} more failed)", failed.len())
            }
        ),
    ))
}

/// Assigns `n` copies to nodes: each to the node with the fewest workers so far (then the
/// lowest load, then the name), so copies spread evenly.
fn spread(nodes: &[&NodeInfo], n: usize) -> Vec<String> {
    let mut counts: Vec<(usize, f64, &str)> = nodes
        .iter()
        .map(|n| (n.workers, n.load, n.name.as_str()))
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let best = counts
            .iter_mut()
            .min_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
                    .then(a.2.cmp(b.2))
            })
            .expect("at least one node");
        best.0 += 1;
        out.push(best.2.to_string());
    }
    out
}

/// `circuit join`: starts joining through `addrs` (announces retried in the background until a
/// node answers), then waits until the node answering at one of them is a member of this
/// node's mesh, for `timeout_ms` (10 s by default). Fails with the reason for each address.
pub(crate) async fn join(
    addrs: Vec<String>,
    timeout_ms: Option<u64>,
    ctx: &Context,
) -> Result<Reply, Failure> {
    let wait = timeout_ms.map_or(JOIN_WAIT, Duration::from_millis);
    if wait.is_zero() || wait > JOIN_WAIT_MAX {
        return Err(Failure(
            ErrorCode::InvalidArgument,
            format!(
                "a join timeout of {} is out of range: give 1ms to {}",
                humantime::format_duration(wait),
                humantime::format_duration(JOIN_WAIT_MAX)
            ),
        ));
    }
    if addrs.is_empty() {
        return Err(Failure(
            ErrorCode::InvalidArgument,
            "no address to join".into(),
        ));
    }
    let resolved = crate::listen::resolve_all(&addrs);
    if resolved.is_empty() {
        return Err(Failure(
            ErrorCode::InvalidArgument,
            format!("cannot resolve {}", addrs.join(", ")),
        ));
    }
    match ctx.membership.join(resolved.clone(), None).await {
        Ok(()) => {}
        Err(e @ crate::membership::JoinError::NoMesh) => {
            return Err(Failure(ErrorCode::InvalidState, e.to_string()))
        }
        Err(e) => return Err(Failure(ErrorCode::Unreachable, e.to_string())),
    }
    let deadline = Instant::now() + wait;
    let mut tries: FuturesUnordered<_> = resolved
        .iter()
        .enumerate()
        .map(|(i, addr)| async move { (i, reach(*addr, wait, deadline, ctx).await) })
        .collect();
    let mut failed = vec![String::new(); resolved.len()];
    while let Some((i, result)) = tries.next().await {
        match result {
            Ok(()) => return Ok(Reply::Done),
            Err(why) => failed[i] = why,
        }
    }
    Err(Failure(ErrorCode::Unreachable, failed.join("; ")))
}

/// Asks `addr` for its node's name until `deadline`, then waits until this node sees that one
/// alive in its mesh. The error says why not, for a person.
async fn reach(
    addr: SocketAddr,
    wait: Duration,
    deadline: Instant,
    ctx: &Context,
) -> Result<(), String> {
    let within = humantime::format_duration(wait);
    let mut why = "no answer".to_string();
    let mut pause = JOIN_RETRY;
    // Since when every attempt was refused: nothing listens there.
    let mut refused_since: Option<Instant> = None;
    loop {
        match tokio::time::timeout_at(deadline, ctx.peers.hello(addr)).await {
            Err(_) => break,
            Ok(Err(no)) if no.refused => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= JOIN_REFUSED_FOR {
                    return Err(format!(
                        "nothing listens at {addr}: {} (for {}) — is circuitd running there \
                         with --listen on that address?",
                        no.reason,
                        humantime::format_duration(JOIN_REFUSED_FOR)
                    ));
                }
                why = no.reason;
            }
            Ok(Ok(node)) if node == ctx.config.name => {
                return Err(format!(
                    "{addr} answers as \"{node}\", this node's own name: join through another node"
                ));
            }
            Ok(Ok(node)) => {
                return tokio::time::timeout_at(deadline, ctx.membership.until_up(&node))
                    .await
                    .map_err(|_| {
                        format!(
                            "node \"{node}\" answers at {addr} but was not a member of this \
                             node's mesh within {within}"
                        )
                    });
            }
            Ok(Err(no)) => {
                refused_since = None;
                why = no.reason;
            }
        }
        if tokio::time::timeout_at(deadline, tokio::time::sleep(pause))
            .await
            .is_err()
        {
            break;
        }
        pause = (pause * 2).min(JOIN_RETRY_MAX);
    }
    Err(format!("no node at {addr} answered within {within}: {why}"))
}

/// `circuit events`: membership events until the client cancels.
pub(crate) async fn events(id: u64, ctx: &Context, outbox: &Outbox) -> Result<Reply, Failure> {
    let mut events = ctx.membership.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if !outbox
                    .send(ServerMessage::Item {
                        id,
                        item: Item::Event(event),
                    })
                    .await
                {
                    return Err(Failure(ErrorCode::Cancelled, "client went away".into()));
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "an events stream fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(Reply::Done),
        }
    }
}

/// Push-pull from another node: take its table, answer with ours.
pub(crate) fn mesh_sync(nodes: Vec<NodeInfo>, ctx: &Context) -> Result<Reply, Failure> {
    if !ctx.membership.meshed() {
        return Err(Failure(
            ErrorCode::InvalidState,
            "this daemon is not in a mesh".into(),
        ));
    }
    ctx.membership.merge(nodes);
    Ok(Reply::Nodes(ctx.membership.metas()))
}
