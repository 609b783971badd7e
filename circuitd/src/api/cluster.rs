//! Requests about the mesh and this node's place in it: `status`, `place` (copies of a worker
//! over the matching nodes), the cluster-wide worker list, `join`, and push-pull from
//! another node. Those that ask other nodes do so through the peer links, each request wrapped
//! in `on` so it runs on that node only.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use circuit_sdk::proto::{
    DaemonStatus, NodeInfo, Placement, Reply, Request, SpawnSpec, WorkerInfo, WorkerState,
    MAX_REPLICAS, PROTOCOL_VERSION, SET_LABEL,
};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::error::ApiError;
use super::Context;
use crate::host;

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

/// This daemon's status.
pub(crate) fn status(ctx: &Context) -> Reply {
    Reply::Status(DaemonStatus {
        name: ctx.config.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        started_at_ms: ctx.started_at_ms,
        uptime_ms: ctx.started.elapsed().as_millis() as u64,
        data_dir: ctx.config.data_dir.display().to_string(),
        socket: ctx.config.socket.display().to_string(),
        listen: ctx.config.listen.clone(),
        workers: ctx.supervisor.counts(),
        channels: ctx.broker.count(),
        http: ctx.config.http.clone(),
    })
}

/// The nodes this daemon knows. Its own entry has its workers, channels, load and memory as
/// they are now (what the mesh was last told may lag by a moment, and a daemon without a mesh
/// tells no one), and no address when it has no mesh port.
pub(crate) fn nodes(ctx: &Context) -> Reply {
    let mut nodes = ctx.membership.nodes();
    for me in nodes.iter_mut().filter(|n| n.is_self) {
        let memory = host::memory();
        me.load = host::load_average();
        (me.mem_total_bytes, me.mem_available_bytes) = (memory.total_bytes, memory.available_bytes);
        me.worker_names = ctx
            .supervisor
            .list(false)
            .into_iter()
            .filter(|w| !w.state.is_terminal())
            .map(|w| w.name)
            .collect();
        me.workers = me.worker_names.len();
        me.channels = ctx.broker.names();
        if !ctx.membership.meshed() {
            me.addr = String::new();
        }
    }
    Reply::Nodes(nodes)
}

/// Runs `request` on `node` and returns its terminal reply, ignoring items.
async fn call_on(node: &str, request: Request, ctx: &Context) -> Result<Reply, ApiError> {
    Ok(ctx.peers.call_on(node, request).await?)
}

/// Every worker of every node; those of dead nodes as `lost`.
pub(crate) async fn list_workers(all: bool, ctx: &Context) -> Result<Reply, ApiError> {
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
                Err(why) => {
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
            usage: None,
            escaped: Vec::new(),
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

/// The name of a new replica set of `replicas` copies: the spec's name, refused if one of its
/// copies' names is `taken` (the set exists: `scale` changes it); without a name, the
/// command's, with `-2`, `-3`, ... until no copy's name is taken.
fn set_name(
    spec: &SpawnSpec,
    replicas: usize,
    taken: &BTreeSet<String>,
) -> Result<String, ApiError> {
    let clash = |set: &str| {
        (1..=replicas)
            .map(|i| format!("{set}-{i}"))
            .find(|n| taken.contains(n))
    };
    if let Some(name) = &spec.name {
        return match clash(name) {
            None => Ok(name.clone()),
            Some(copy) => Err(ApiError::AlreadyExists(format!(
                "a worker named \"{copy}\" exists: set \"{name}\" has copies already — \
                 `circuit scale {name} N` changes how many"
            ))),
        };
    }
    let base: String = spec
        .command
        .rsplit('/')
        .next()
        .unwrap_or(&spec.command)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let base = match base.trim_start_matches(['.', '-']) {
        "" => "worker",
        base => base,
    };
    let found = std::iter::once(base.to_string())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|set| clash(set).is_none() && !taken.contains(set));
    Ok(found.expect("an unused set name"))
}

/// Places `replicas` copies of a worker over the matching nodes, least loaded first.
pub(crate) async fn place(p: Placement, ctx: &Context) -> Result<Reply, ApiError> {
    if p.replicas > MAX_REPLICAS {
        return Err(ApiError::InvalidArgument(format!(
            "replicas {} is over the limit of {MAX_REPLICAS} copies per placement",
            p.replicas
        )));
    }
    let nodes = ctx.membership.nodes();
    let candidates: Vec<&NodeInfo> = match &p.node {
        Some(name) => {
            let node = nodes.iter().find(|n| &n.name == name).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no node named \"{name}\" in the mesh — see `circuit nodes`"
                ))
            })?;
            if !node.state.is_up() {
                return Err(ApiError::Unreachable(format!(
                    "node \"{name}\" is {}",
                    node.state
                )));
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
        return Err(ApiError::NotFound(format!(
            "no live node has the labels {} — see `circuit nodes`",
            wanted.join(",")
        )));
    }
    let replicas = p.replicas.max(1) as usize;
    let mut template = p.spec.clone();
    if replicas > 1 {
        // A set: its copies are named SET-1..N (unique across the mesh: every live node is
        // asked, and the gossiped names of the others count too) and labelled with it.
        let mut taken: BTreeSet<String> = nodes
            .iter()
            .flat_map(|n| n.worker_names.iter().cloned())
            .collect();
        if let Reply::Workers(all) = list_workers(true, ctx).await? {
            taken.extend(all.into_iter().map(|w| w.name));
        }
        let set = set_name(&template, replicas, &taken)?;
        template.labels.insert(SET_LABEL.to_string(), set.clone());
        template.name = Some(set);
    }
    // The gossiped worker counts lag a spawn by up to a gossip round, so copies placed one
    // after another (`circuit scale`) would land on one node: count what runs now instead.
    let mut live: Vec<NodeInfo> = matching.iter().map(|n| (*n).clone()).collect();
    if live.len() > 1 {
        if let Ok(Reply::Workers(running)) = list_workers(false, ctx).await {
            for node in &mut live {
                node.workers = running.iter().filter(|w| w.node == node.name).count();
            }
        }
    }
    let targets = spread(&live.iter().collect::<Vec<_>>(), replicas);
    let spawns = targets.iter().enumerate().map(|(i, node)| {
        let mut spec = template.clone();
        if replicas > 1 {
            spec.name = spec.name.map(|n| format!("{n}-{}", i + 1));
        }
        async move {
            let result = if *node == ctx.config.name {
                ctx.supervisor.spawn(spec).await.map_err(ApiError::from)
            } else {
                match call_on(node, Request::Spawn(spec), ctx).await {
                    Ok(Reply::Worker(w)) => Ok(*w),
                    Ok(other) => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
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
    let (node, first) = failed.swap_remove(0);
    if started.is_empty() {
        return Err(ApiError::Placement {
            started: String::new(),
            node,
            source: Box::new(first),
            more: 0,
        });
    }
    let done: Vec<String> = started
        .iter()
        .map(|w| format!("{} on {}", w.name, w.node))
        .collect();
    Err(ApiError::Placement {
        started: format!(
            "started {} of {replicas} ({}); ",
            started.len(),
            done.join(", ")
        ),
        node,
        source: Box::new(first),
        more: failed.len(),
    })
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
) -> Result<Reply, ApiError> {
    let wait = timeout_ms.map_or(JOIN_WAIT, Duration::from_millis);
    if wait.is_zero() || wait > JOIN_WAIT_MAX {
        return Err(ApiError::InvalidArgument(format!(
            "a join timeout of {} is out of range: give 1ms to {}",
            humantime::format_duration(wait),
            humantime::format_duration(JOIN_WAIT_MAX)
        )));
    }
    if addrs.is_empty() {
        return Err(ApiError::InvalidArgument("no address to join".into()));
    }
    let resolved = crate::listen::resolve_all(&addrs);
    if resolved.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "cannot resolve {}",
            addrs.join(", ")
        )));
    }
    match ctx.membership.join(resolved.clone(), None).await {
        Ok(()) => {}
        Err(e @ crate::membership::JoinError::NoMesh) => {
            return Err(ApiError::InvalidState(e.to_string()))
        }
        Err(e) => return Err(ApiError::Unreachable(e.to_string())),
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
    Err(ApiError::Unreachable(failed.join("; ")))
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

/// Push-pull from another node: take its table, answer with ours.
pub(crate) fn mesh_sync(nodes: Vec<NodeInfo>, ctx: &Context) -> Result<Reply, ApiError> {
    if !ctx.membership.meshed() {
        return Err(ApiError::InvalidState(
            "this daemon is not in a mesh".into(),
        ));
    }
    ctx.membership.merge(nodes);
    Ok(Reply::Nodes(ctx.membership.metas()))
}
