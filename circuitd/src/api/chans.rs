//! Channel requests on this node: create (in a mesh, with claims, so two nodes creating one
//! name at once resolve the same way on both), list, stat, close and remove, the cluster-wide
//! list, and the claims of other nodes. Which node runs stat, close and rm (the owner) is the
//! router's business; a create and the cluster-wide list ask the other nodes themselves,
//! through the peer links.

use std::time::Instant;

use circuit_sdk::proto::{ChanInfo, Claim, Reply, Request};
use futures::future::join_all;
use tokio_util::task::TaskTracker;

use super::claims::Claims;
use super::error::ApiError;
use super::{replicated, Context};
use crate::peer::{PeerRequest, Peers};

/// `chan create` in a mesh: the name must be free on every live node. A node that is creating
/// the same name, or told us first that it is, wins; between two that claimed at once, the
/// lower node name wins. The loser gets `already_exists` saying which node won. However the
/// create ends, its claim ends with it, here and on every node it was told to.
pub(crate) async fn create(
    name: String,
    capacity: u64,
    exist_ok: bool,
    options: Options,
    ctx: &Context,
) -> Result<Reply, ApiError> {
    let me = ctx.config.name.clone();
    circuit_sdk::proto::validate_chan_name(&name).map_err(ApiError::InvalidArgument)?;
    circuit_sdk::proto::validate_capacity(capacity).map_err(ApiError::InvalidArgument)?;
    options.validate()?;
    if options.replicas > 1 && !ctx.membership.meshed() {
        return Err(ApiError::InvalidState(
            "a replicated channel needs a mesh: start circuitd with --listen and join others"
                .into(),
        ));
    }
    if options.logged() && !ctx.membership.meshed() {
        if ctx.broker.owns(&name) || ctx.broker.holds_replica(&name) {
            let chan = ctx.broker.stat(&name).await?;
            return existing(chan, capacity, exist_ok);
        }
        return replicated::create(options.wanted(&name, capacity), ctx).await;
    }
    if !ctx.membership.meshed() || ctx.broker.owns(&name) {
        return create_here(&name, capacity, exist_ok, ctx).await;
    }
    if ctx.broker.holds_replica(&name) {
        let chan = ctx.broker.stat(&name).await?;
        return existing(chan, capacity, exist_ok);
    }
    // A node that told us it creates this name before we started wins over us.
    let earlier = ctx.claims.claim(&name, &me, Instant::now()).err();
    let mut claiming = Claiming::new(&name, ctx);
    let result = async {
        let asks = claiming.told.iter().map(|node| {
            let claim = PeerRequest::ChanClaim {
                name: name.clone(),
                node: me.clone(),
            };
            async move { (node.clone(), ctx.peers.call_on(node, claim.into()).await) }
        });
        let answers = join_all(asks).await;
        let mut winner = earlier;
        let mut owned = None;
        for (node, answer) in answers {
            match answer {
                Ok(Reply::Claim(Claim::Owned { chan })) => owned = owned.or(Some(chan)),
                // Both claimed before hearing of the other: the lower node name wins.
                Ok(Reply::Claim(Claim::Claimed { by })) if by < me => {
                    winner = winner.or(Some(by));
                }
                Ok(_) => {}
                Err(why) => {
                    tracing::debug!(%node, %why, "channel claim unanswered");
                    claiming.unanswered(&node);
                }
            }
        }
        if let Some(chan) = owned {
            return existing(chan, capacity, exist_ok);
        }
        match winner {
            Some(by) => Err(lost_race(&name, &by)),
            None if options.logged() => {
                replicated::create(options.wanted(&name, capacity), ctx).await
            }
            None => create_here(&name, capacity, exist_ok, ctx).await,
        }
    }
    .await;
    claiming.end().await;
    result
}

/// How a channel is made besides its name and capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// 1: one owner; 3 or 5: replicated.
    pub replicas: u32,
    /// Replicas only on nodes with these labels.
    pub replica_labels: Vec<String>,
    /// `memory` or `disk` (replicated channels).
    pub storage: Option<String>,
}

impl Options {
    /// Refuses what cannot be made, before anything is asked of the mesh.
    fn validate(&self) -> Result<(), ApiError> {
        match self.storage.as_deref() {
            None | Some("memory" | "disk") => {}
            Some(other) => {
                return Err(ApiError::InvalidArgument(format!(
                    "--storage {other}: expected memory or disk"
                )))
            }
        }
        match self.replicas {
            1 if !self.replica_labels.is_empty() => Err(ApiError::InvalidArgument(
                "--replica-labels is for replicated channels (--replicas 3 or 5)".into(),
            )),
            1 | 3 | 5 => Ok(()),
            n => Err(ApiError::InvalidArgument(format!(
                "--replicas {n}: a channel has 1 replica (one owner), or 3 or 5 (an odd count, \
                 so that a majority survives the loss of 1 or 2 nodes)"
            ))),
        }
    }

    /// What `replicated::create` is asked to make.
    fn wanted<'a>(&'a self, name: &'a str, capacity: u64) -> replicated::Wanted<'a> {
        replicated::Wanted {
            name,
            capacity,
            replicas: self.replicas,
            labels: &self.replica_labels,
            storage: self.storage.as_deref().unwrap_or("memory"),
        }
    }

    /// Whether the channel is served through a Raft log: replicated, or kept on disk (a
    /// group of one, so that it survives its daemon's restart).
    fn logged(&self) -> bool {
        self.replicas > 1 || self.storage.as_deref() == Some("disk")
    }
}

/// Creates the channel on this node's broker.
async fn create_here(
    name: &str,
    capacity: u64,
    exist_ok: bool,
    ctx: &Context,
) -> Result<Reply, ApiError> {
    Ok(Reply::Chan(
        ctx.broker.create(name, capacity, exist_ok).await?,
    ))
}

/// This node's claim on a name while it creates it, and the nodes told of it. [`Claiming::end`]
/// ends it everywhere before the create replies; a create dropped midway (its client went
/// away) ends it when dropped, releasing the told nodes in a task of its own.
struct Claiming {
    name: String,
    me: String,
    claims: Claims,
    peers: Peers,
    tracker: TaskTracker,
    /// The nodes asked, which may have recorded the claim.
    told: Vec<String>,
    /// Of those, the ones that did not answer: released in the background, so a dead node
    /// does not hold up the reply a second time.
    unanswered: Vec<String>,
    ended: bool,
}

impl Claiming {
    fn new(name: &str, ctx: &Context) -> Self {
        Self {
            name: name.to_string(),
            me: ctx.config.name.clone(),
            claims: ctx.claims.clone(),
            peers: ctx.peers.clone(),
            tracker: ctx.tracker.clone(),
            told: ctx.membership.live_peers(),
            unanswered: Vec::new(),
            ended: false,
        }
    }

    fn unanswered(&mut self, node: &str) {
        self.told.retain(|n| n != node);
        self.unanswered.push(node.to_string());
    }

    /// Ends the claim here and on the nodes that answered, and starts ending it on the others.
    async fn end(mut self) {
        self.ended = true;
        self.claims.release(&self.name, &self.me);
        let later = std::mem::take(&mut self.unanswered);
        self.release_in_background(later);
        release_on(&self.peers, &self.told, &self.name, &self.me).await;
    }

    fn release_in_background(&self, nodes: Vec<String>) {
        if nodes.is_empty() {
            return;
        }
        let (peers, name, me) = (self.peers.clone(), self.name.clone(), self.me.clone());
        self.tracker
            .spawn(async move { release_on(&peers, &nodes, &name, &me).await });
    }
}

impl Drop for Claiming {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.claims.release(&self.name, &self.me);
        let mut nodes = std::mem::take(&mut self.told);
        nodes.append(&mut self.unanswered);
        self.release_in_background(nodes);
    }
}

/// Tells `nodes` that `me` no longer creates `name`. A node that cannot be told (gone, or a
/// daemon too old to know `chan_release`) forgets the claim after [`super::claims::CLAIM_TTL`].
async fn release_on(peers: &Peers, nodes: &[String], name: &str, me: &str) {
    let asks = nodes.iter().map(|node| async move {
        let release = PeerRequest::ChanRelease {
            name: name.to_string(),
            node: me.to_string(),
        };
        if let Err(why) = peers.call_on(node, release.into()).await {
            tracing::debug!(%node, %why, "channel claim release unanswered");
        }
    });
    join_all(asks).await;
}

fn lost_race(name: &str, by: &str) -> ApiError {
    ApiError::AlreadyExists(format!(
        "channel \"{name}\" is being created on node {by} at the same time, which wins"
    ))
}

fn existing(chan: ChanInfo, capacity: u64, exist_ok: bool) -> Result<Reply, ApiError> {
    if exist_ok && chan.capacity == capacity {
        return Ok(Reply::Chan(chan));
    }
    Err(ApiError::AlreadyExists(format!(
        "channel \"{}\" already exists on node {} (capacity {})",
        chan.name, chan.owner, chan.capacity
    )))
}

/// Another node is about to create `name`.
pub(crate) async fn claim(name: String, by: String, ctx: &Context) -> Result<Reply, ApiError> {
    if ctx.broker.owns(&name) {
        let chan = ctx.broker.stat(&name).await?;
        return Ok(Reply::Claim(Claim::Owned { chan }));
    }
    let me = &ctx.config.name;
    match ctx.claims.claim(&name, &by, Instant::now()) {
        Err(holder) if holder == *me => Ok(Reply::Claim(Claim::Claimed { by: holder })),
        Ok(()) | Err(_) => Ok(Reply::Claim(Claim::Free)),
    }
}

/// Another node's create of `name` ended: its claim ends here too.
pub(crate) fn release(name: &str, by: &str, ctx: &Context) -> Reply {
    ctx.claims.release(name, by);
    Reply::Done
}

/// `chan ls` of this node: the channels it owns.
pub(crate) async fn list(ctx: &Context) -> Reply {
    Reply::Chans(ctx.broker.list().await)
}

/// `chan stat NAME` of a channel this node owns.
pub(crate) async fn stat(name: &str, ctx: &Context) -> Result<Reply, ApiError> {
    Ok(Reply::Chan(ctx.broker.stat(name).await?))
}

/// `chan close NAME` of a channel this node owns.
pub(crate) async fn close(name: &str, ctx: &Context) -> Result<Reply, ApiError> {
    ctx.broker.close(name).await?;
    Ok(Reply::Done)
}

/// `chan rm NAME` of a channel this node owns.
pub(crate) async fn remove(name: &str, ctx: &Context) -> Result<Reply, ApiError> {
    ctx.broker.remove(name).await?;
    Ok(Reply::Done)
}

/// `chan ls` in a mesh: the channels of this node and of every live node.
pub(crate) async fn list_all(ctx: &Context) -> Result<Reply, ApiError> {
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
    // Every replica of a replicated channel describes it: keep the freshest description.
    chans.dedup_by(|later, kept| {
        let same =
            later.name == kept.name && !later.replicas.is_empty() && !kept.replicas.is_empty();
        if same
            && (later.term, later.sent + later.received) > (kept.term, kept.sent + kept.received)
        {
            std::mem::swap(later, kept);
        }
        same
    });
    Ok(Reply::Chans(chans))
}
