//! `events`: what happens in the mesh as this daemon sees it (membership events), and what
//! happens to the workers of every node. Each other live node's worker events come through a
//! `worker_events` stream over the peer link, opened again when that node comes back.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use circuit_sdk::proto::{EventKind, Item, Reply, Request, ServerMessage, WorkerEvent};
use circuit_sdk::Next;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::outbox::Outbox;
use super::Context;
use crate::peer::next_on;

/// Worker events from other nodes waiting to be written to the client.
const RELAYED: usize = 1024;

type Relay<'a> = Pin<Box<dyn Future<Output = String> + Send + 'a>>;

/// Streams membership events and every node's worker events until the client cancels.
pub(crate) async fn events(id: u64, ctx: &Context, outbox: &Outbox) -> Result<Reply, ApiError> {
    let mut mesh = ctx.membership.subscribe();
    let mut local = ctx.supervisor.subscribe_events();
    let (tx, mut relayed) = mpsc::channel::<WorkerEvent>(RELAYED);
    let me = ctx.membership.me().name;
    // One relay per other live node; a node whose relay ended gets a new one when it is seen
    // again.
    let mut relays: FuturesUnordered<Relay<'_>> = FuturesUnordered::new();
    let mut relaying: HashSet<String> = HashSet::new();
    for node in ctx.membership.live_peers() {
        relaying.insert(node.clone());
        relays.push(Box::pin(relay(node, ctx, tx.clone())));
    }
    loop {
        let item = tokio::select! {
            event = mesh.recv() => match event {
                Ok(event) => {
                    let back = matches!(event.kind, EventKind::Join | EventKind::Rejoin | EventKind::Recover);
                    if back && event.node != me && !relaying.contains(&event.node) {
                        relaying.insert(event.node.clone());
                        relays.push(Box::pin(relay(event.node.clone(), ctx, tx.clone())));
                    }
                    Item::Event(event)
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an events stream fell behind");
                    continue;
                }
                Err(RecvError::Closed) => return Ok(Reply::Done),
            },
            event = local.recv() => match event {
                Ok(event) => Item::WorkerEvent(event),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an events stream fell behind on worker events");
                    continue;
                }
                Err(RecvError::Closed) => return Ok(Reply::Done),
            },
            Some(event) = relayed.recv() => Item::WorkerEvent(event),
            Some(node) = relays.next(), if !relays.is_empty() => {
                // That node's stream ended (it died, or its link broke): a new one is opened
                // when it is seen again.
                relaying.remove(&node);
                continue;
            }
        };
        if !outbox.send(ServerMessage::Item { id, item }).await {
            return Err(ApiError::ClientGone);
        }
    }
}

/// Relays `node`'s worker events to `tx` until its stream ends; returns the node.
async fn relay(node: String, ctx: &Context, tx: mpsc::Sender<WorkerEvent>) -> String {
    let Ok(mut stream) = ctx.peers.open_on(&node, Request::WorkerEvents).await else {
        return node;
    };
    while let Ok(Next::Item(item)) = next_on(&node, &mut stream).await {
        if let Item::WorkerEvent(event) = item {
            if tx.send(event).await.is_err() {
                break;
            }
        }
    }
    node
}

/// Streams this node's worker events until the client cancels.
pub(crate) async fn worker_events(
    id: u64,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
    let mut events = ctx.supervisor.subscribe_events();
    loop {
        match events.recv().await {
            Ok(event) => {
                let item = Item::WorkerEvent(event);
                if !outbox.send(ServerMessage::Item { id, item }).await {
                    return Err(ApiError::ClientGone);
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "a worker events stream fell behind");
            }
            Err(RecvError::Closed) => return Ok(Reply::Done),
        }
    }
}
