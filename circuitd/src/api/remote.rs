//! Other nodes, as the router reaches them: running a request on one through the peer link
//! (its items relayed to this request's client), and finding which node has a worker.

use circuit_sdk::proto::{Reply, Request, ServerMessage};
use circuit_sdk::Next;

use super::error::ApiError;
use super::outbox::Outbox;
use super::Context;
use crate::peer::next_on;

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
        _ => Err(ApiError::InvalidArgument(format!(
            "a worker named \"{name}\" runs on nodes {}: pick one with --node",
            found.join(", ")
        ))),
    }
}
