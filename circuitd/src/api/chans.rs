//! Channel requests across the mesh: create with claims (two nodes creating one name at once
//! resolve the same way on both), stat/close/rm forwarded to the owner, and the cluster-wide
//! list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, Claim, ErrorCode, Reply, Request};
use futures::future::join_all;
use tokio::time::Instant;

use super::connection::Outbox;
use super::dispatch::{local, Failure};
use super::{remote, Context};

/// How long a claim by another node is remembered.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// Names being created, here or (as far as they told us) on other nodes.
#[derive(Default)]
pub(crate) struct Claims(Mutex<HashMap<String, (String, Instant)>>);

impl Claims {
    /// The live claim on `name`, if any.
    fn get(&self, name: &str) -> Option<String> {
        let mut map = self.0.lock().expect("claims");
        match map.get(name) {
            Some((by, at)) if at.elapsed() < CLAIM_TTL => Some(by.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn set(&self, name: &str, by: &str) {
        self.0
            .lock()
            .expect("claims")
            .insert(name.to_string(), (by.to_string(), Instant::now()));
    }

    fn release(&self, name: &str, by: &str) {
        let mut map = self.0.lock().expect("claims");
        if map.get(name).is_some_and(|(b, _)| b == by) {
            map.remove(name);
        }
    }
}

/// `chan create` in a mesh: the name must be free on every live node. A node that is creating
/// the same name, or told us first that it is, wins; between two that claimed at once, the
/// lower node name wins. The loser gets `already_exists` saying which node won.
pub(crate) async fn create(
    id: u64,
    name: String,
    capacity: u64,
    exist_ok: bool,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
    let me = ctx.config.name.clone();
    let request = Request::ChanCreate {
        name: name.clone(),
        capacity,
        exist_ok,
    };
    circuit_sdk::proto::validate_chan_name(&name)
        .map_err(|why| Failure(ErrorCode::InvalidArgument, why))?;
    if !ctx.membership.meshed() || ctx.broker.lookup(&name).is_ok() {
        return local(id, request, ctx, outbox).await;
    }
    // A node that told us it creates this name before we started wins over us.
    let earlier = ctx.claims.get(&name).filter(|by| *by != me);
    ctx.claims.set(&name, &me);
    let result = async {
        let peers = ctx.membership.live_peers();
        let asks = peers.iter().map(|node| {
            let claim = Request::ChanClaim {
                name: name.clone(),
                node: me.clone(),
            };
            async move { (node, ctx.peers.call_on(node, claim).await) }
        });
        let mut winner = earlier;
        for (node, answer) in join_all(asks).await {
            match answer {
                Ok(Reply::Claim(Claim::Owned { chan })) => {
                    return existing(chan, capacity, exist_ok)
                }
                // Both claimed before hearing of the other: the lower node name wins.
                Ok(Reply::Claim(Claim::Claimed { by })) if by < me => {
                    winner = winner.or(Some(by));
                }
                Ok(_) => {}
                Err((_, why)) => tracing::debug!(%node, %why, "channel claim unanswered"),
            }
        }
        match winner {
            Some(by) => Err(lost_race(&name, &by)),
            None => local(id, request, ctx, outbox).await,
        }
    }
    .await;
    ctx.claims.release(&name, &me);
    result
}

fn lost_race(name: &str, by: &str) -> Failure {
    Failure(
        ErrorCode::AlreadyExists,
        format!("channel \"{name}\" is being created on node {by} at the same time, which wins"),
    )
}

fn existing(chan: ChanInfo, capacity: u64, exist_ok: bool) -> Result<Reply, Failure> {
    if exist_ok && chan.capacity == capacity {
        return Ok(Reply::Chan(chan));
    }
    Err(Failure(
        ErrorCode::AlreadyExists,
        format!(
            "channel \"{}\" already exists on node {} (capacity {})",
            chan.name, chan.owner, chan.capacity
        ),
    ))
}

/// Another node is about to create `name`.
pub(crate) async fn claim(name: String, by: String, ctx: &Context) -> Result<Reply, Failure> {
    if ctx.broker.lookup(&name).is_ok() {
        let chan = ctx.broker.stat(&name).await?;
        return Ok(Reply::Claim(Claim::Owned { chan }));
    }
    let me = &ctx.config.name;
    match ctx.claims.get(&name) {
        Some(holder) if holder == *me => Ok(Reply::Claim(Claim::Claimed { by: holder })),
        Some(_) => Ok(Reply::Claim(Claim::Free)),
        None => {
            ctx.claims.set(&name, &by);
            Ok(Reply::Claim(Claim::Free))
        }
    }
}

/// `chan stat|close|rm NAME`: here if this node owns it, else on its owner.
pub(crate) async fn by_owner(
    id: u64,
    name: &str,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
    if !ctx.membership.meshed() || ctx.broker.lookup(name).is_ok() {
        return local(id, request, ctx, outbox).await;
    }
    match ctx.peers.owner_of(name).await {
        Ok(node) => remote::on(id, &node, request, ctx, outbox).await,
        Err((ErrorCode::NotFound, _)) => local(id, request, ctx, outbox).await,
        Err(failure) => Err(failure.into()),
    }
}

/// `chan ls`: the channels of every live node.
pub(crate) async fn list(ctx: &Context) -> Result<Reply, Failure> {
    let mut chans = ctx.broker.list().await;
    let peers = ctx.membership.live_peers();
    let asks = peers
        .iter()
        .map(|node| ctx.peers.call_on(node, Request::ChanList));
    for answer in join_all(asks).await {
        if let Ok(Reply::Chans(mut more)) = answer {
            chans.append(&mut more);
        }
    }
    chans.sort_by(|a, b| (&a.name, &a.owner).cmp(&(&b.name, &b.owner)));
    Ok(Reply::Chans(chans))
}
