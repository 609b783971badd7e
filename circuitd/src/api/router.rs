//! The router: one request, one task. It decides once where a request runs — here, on node N
//! (through the peer link), or per node for a stop of workers spread over several — hands it
//! to the leaf handler of its area (workers, logs, channels, cluster, keys), and sends its one
//! terminal reply. Handlers never call back into the router.
//!
//! Where a request runs:
//! - `on NODE REQUEST`: on NODE, and there nowhere else.
//! - a request about one worker (`inspect`, `restart`, `signal`, `wait`, `rm`, `logs`): on the
//!   node that has it (this one if it does, or if none does: the local error stands).
//! - `stop` in a mesh: each worker on its node.
//! - `chan stat|close|rm`: on the channel's owner (here if no node owns it: the local error).
//! - `chan ls` in a mesh: here and on every live node.
//! - everything else here (`place`, `ps` of the cluster and `chan create` ask other nodes
//!   themselves, as part of what they do).

use std::collections::BTreeMap;

use circuit_sdk::proto::{ErrorCode, Reply, Request, ServerMessage, WorkerInfo};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::outbox::Outbox;
use super::{chans, cluster, events, keys, logs, remote, replicated, workers, Context};
use crate::broker::BrokerError;
use crate::peer::{Incoming, PeerError, PeerRequest};

/// Runs request `id` of a connection to its end: exactly one terminal reply (ok or error), or
/// none at all if the client went away.
pub(crate) async fn run(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
    cancel: &CancellationToken,
) {
    let result = tokio::select! {
        result = route(id, request, ctx, outbox) => result,
        () = cancel.cancelled() => {
            let why = if ctx.shutdown.is_cancelled() {
                ApiError::ShuttingDown
            } else {
                ApiError::Cancelled
            };
            // The client may be gone or not reading: do not wait for room.
            outbox.try_send(why.reply(Some(id)));
            return;
        }
    };
    let msg = match result {
        Ok(reply) => ServerMessage::Ok { id, reply },
        Err(e) => e.reply(Some(id)),
    };
    tokio::select! {
        _ = outbox.send(msg) => {}
        () = cancel.cancelled() => {}
    }
}

/// Decides where `request` runs, and runs it there.
async fn route(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
    if let Some(name) = worker_of(&request) {
        return match remote::find_worker(name, ctx).await? {
            Some(node) => on(id, &node, request, ctx, outbox).await,
            None => here(id, request, ctx, outbox).await,
        };
    }
    let meshed = ctx.membership.meshed();
    match request {
        Request::On { node, request } => on(id, &node, *request, ctx, outbox).await,
        Request::Stop {
            names,
            signal,
            timeout_ms,
        } if meshed => {
            let mut stopped = Vec::new();
            for (node, names) in by_node(names, ctx).await? {
                let stop = Request::Stop {
                    names,
                    signal: signal.clone(),
                    timeout_ms,
                };
                match on(id, &node, stop, ctx, outbox).await? {
                    Reply::Workers(mut workers) => stopped.append(&mut workers),
                    other => stopped.extend(single(other)),
                }
            }
            Ok(Reply::Workers(stopped))
        }
        Request::ChanStat { ref name }
        | Request::ChanClose { ref name }
        | Request::ChanRemove { ref name }
            if meshed && !ctx.broker.owns(name) =>
        {
            let name = name.clone();
            let (node, failed) = match ctx.peers.owner_of(&name).await {
                // Unreachable, or it does not have it (the table was stale): the replicas of
                // a replicated channel name its leader.
                Ok(node) => match on(id, &node, request.clone(), ctx, outbox).await {
                    Err(e) if matches!(e.code(), ErrorCode::Unreachable | ErrorCode::NotFound) => {
                        (node, e)
                    }
                    other => return other,
                },
                Err(e) if e.is_not_found() => return here(id, request, ctx, outbox).await,
                Err(e @ PeerError::OwnerDown { .. }) => {
                    let PeerError::OwnerDown { node, .. } = &e else {
                        unreachable!("matched above")
                    };
                    (node.clone(), ApiError::from(e))
                }
                Err(e) => return Err(e.into()),
            };
            // The leader of a replicated channel may have just died: ask the new one.
            match ctx.peers.replicated(&name, &node).await {
                Some(r) => match (r.leader, request) {
                    (Some(leader), request) => on(id, &leader, request, ctx, outbox).await,
                    // Between leaders: stat answers what the replicas know.
                    (None, Request::ChanStat { .. }) => Ok(Reply::Chan(r.freshest)),
                    (None, _) => Err(ApiError::Broker(BrokerError::Unavailable(format!(
                        "replicated channel \"{name}\" has no leader now (an election is under \
                         way, or a majority of its replicas is down)"
                    )))),
                },
                None => Err(failed),
            }
        }
        Request::ChanList if meshed => chans::list_all(ctx).await,
        request => here(id, request, ctx, outbox).await,
    }
}

/// The worker a request is about, if it is about one.
fn worker_of(request: &Request) -> Option<&str> {
    match request {
        Request::Inspect { name }
        | Request::Restart { name }
        | Request::Signal { name, .. }
        | Request::Wait { name }
        | Request::Remove { name, .. } => Some(name),
        Request::Logs(req) => Some(&req.name),
        _ => None,
    }
}

/// Workers by the node that has them (this one for those no node has: its error stands).
async fn by_node(
    names: Vec<String>,
    ctx: &Context,
) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let node = remote::find_worker(&name, ctx)
            .await?
            .unwrap_or_else(|| ctx.config.name.clone());
        by_node.entry(node).or_default().push(name);
    }
    Ok(by_node)
}

fn single(reply: Reply) -> Option<WorkerInfo> {
    match reply {
        Reply::Worker(w) => Some(*w),
        _ => None,
    }
}

/// Runs `request` on `node`: here, or there through the peer link, relaying its items.
async fn on(
    id: u64,
    node: &str,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
    match &request {
        Request::On { .. } => {
            return Err(ApiError::InvalidArgument("`on` cannot be nested".into()));
        }
        Request::ChanSend { .. } | Request::ChanRecv { .. } => {
            return Err(ApiError::InvalidArgument(
                "channel streams are opened by channel name from any node, not with `on`".into(),
            ));
        }
        Request::WorkerStdin { .. } => {
            return Err(ApiError::InvalidArgument(
                "a worker's stdin is opened with worker_stdin's own `node`, not with `on`".into(),
            ));
        }
        _ => {}
    }
    if node == ctx.config.name {
        here(id, request, ctx, outbox).await
    } else {
        remote::relay(id, node, request, ctx, outbox).await
    }
}

/// Runs `request` on this node: hands it to the handler of its area.
async fn here(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
    let request = match Incoming::from(request) {
        Incoming::Peer(peer) => return from_peer(peer, ctx).await,
        Incoming::Client(request) => request,
    };
    match request {
        Request::Spawn(_)
        | Request::List { .. }
        | Request::Inspect { .. }
        | Request::Stop { .. }
        | Request::Restart { .. }
        | Request::Signal { .. }
        | Request::Wait { .. }
        | Request::Remove { .. } => workers::handle(request, ctx).await,
        Request::Logs(req) => logs::stream(id, req, ctx, outbox).await,
        Request::ChanCreate {
            name,
            capacity,
            exist_ok,
            replicas,
            replica_labels,
            storage,
        } => {
            let options = chans::Options {
                replicas: replicas.unwrap_or(1),
                replica_labels,
                storage,
            };
            chans::create(name, capacity, exist_ok, options, ctx).await
        }
        Request::ChanList => Ok(chans::list(ctx).await),
        Request::ChanStat { name } => chans::stat(&name, ctx).await,
        Request::ChanClose { name } => chans::close(&name, ctx).await,
        Request::ChanRemove { name } => chans::remove(&name, ctx).await,
        Request::ChanSend { .. } | Request::ChanRecv { .. } | Request::WorkerStdin { .. } => Err(
            ApiError::Internal("streams are opened by the connection".into()),
        ),
        Request::Status => Ok(cluster::status(ctx)),
        Request::Ping => Ok(Reply::Done),
        Request::Place(placement) => cluster::place(placement, ctx).await,
        Request::ClusterList { all } => cluster::list_workers(all, ctx).await,
        Request::Nodes => Ok(cluster::nodes(ctx)),
        Request::Join { addrs, timeout_ms } => cluster::join(addrs, timeout_ms, ctx).await,
        Request::Events => events::events(id, ctx, outbox).await,
        Request::WorkerEvents => events::worker_events(id, ctx, outbox).await,
        Request::KeyList | Request::KeyRotate { .. } => keys::handle(request, ctx),
        // `route` and `on` take `on` apart before a request gets here.
        Request::On { .. } => Err(ApiError::InvalidArgument("`on` cannot be nested".into())),
        // Taken apart above, as `PeerRequest`s.
        Request::ChanClaim { .. }
        | Request::ChanRelease { .. }
        | Request::MeshSync { .. }
        | Request::ReplicaStart { .. }
        | Request::ReplicaDrop { .. } => Err(ApiError::Internal(
            "a request between daemons was not taken apart".into(),
        )),
        Request::RaftLink => Err(ApiError::InvalidArgument(
            "raft_link is a stream opened between daemons".into(),
        )),
    }
}

/// Runs a request from another daemon.
async fn from_peer(request: PeerRequest, ctx: &Context) -> Result<Reply, ApiError> {
    match request {
        PeerRequest::ChanClaim { name, node } => chans::claim(name, node, ctx).await,
        PeerRequest::ChanRelease { name, node } => Ok(chans::release(&name, &node, ctx)),
        PeerRequest::MeshSync { nodes } => cluster::mesh_sync(nodes, ctx),
        PeerRequest::ReplicaStart(request) => replicated::start_here(*request, ctx).await,
        PeerRequest::ReplicaDrop { name, id, removed } => {
            ctx.broker.drop_replica(&name, id, removed).await;
            Ok(Reply::Done)
        }
    }
}
