//! Other nodes, as the router reaches them: running a request on one through the peer link
//! (its items relayed to this request's client), and finding which node has a worker.

use circuit_sdk::proto::{Reply, Request, ServerMessage};
use circuit_sdk::Next;

use super::error::ApiError;
use super::outbox::Outbox;
use super::Context;
use crate::peer::{next_on, PeerError};

/// Runs `request` on `node`, another node, through the peer link (wrapped in `on`, so it runs
/// there and nowhere else), relaying its items to the client of request `id`; returns its
/// terminal reply.
pub(crate) async fn relay(
    id: u64,
    node: &str,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
    let mut stream = ctx.peers.open_on(node, request).await?;
    loop {
        match next_on(node, &mut stream).await? {
            Next::Item(item) => {
                if !outbox.send(ServerMessage::Item { id, item }).await {
                    return Err(ApiError::ClientGone);
                }
            }
            Next::End(reply) => return Ok(reply),
        }
    }
}

/// The node that has worker `name`, if it is not here: asks every live node. `None` when no
/// node has it (the caller's local error stands).
pub(crate) async fn find_worker(name: &str, ctx: &Context) -> Result<Option<String>, ApiError> {
    if !ctx.membership.meshed() {
        return Ok(None);
    }
    // Here too: asked only when another node lists one by that name, so that every node gives
    // the same answer to an ambiguous name (refused, naming the nodes).
    let here = ctx.supervisor.has(name);
    if here && !ctx.membership.others_list_worker(name) {
        return Ok(None);
    }
    let me = ctx.membership.me().name;
    let ambiguous = |mut nodes: Vec<String>| {
        nodes.push(me.clone());
        nodes.sort();
        nodes.dedup();
        PeerError::AmbiguousWorker {
            name: name.to_string(),
            nodes,
        }
    };
    match ctx.peers.worker_node(name).await {
        Ok(node) if here => Err(ambiguous(vec![node]).into()),
        Ok(node) => Ok(Some(node)),
        Err(PeerError::NoWorker(_)) => Ok(None),
        Err(PeerError::AmbiguousWorker { nodes, .. }) if here => Err(ambiguous(nodes).into()),
        Err(e) => Err(e.into()),
    }
}
