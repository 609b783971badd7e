//! Daemon wiring that keeps the mesh told: this node's metadata (its workers and channels)
//! republished when it changes, and the periodic TCP push-pull (anti-entropy) over the peer
//! links that lets a late joiner learn everything broadcasts missed. It sits above
//! `membership`, which knows nothing of workers, channels or peer links.

use std::collections::BTreeMap;
use std::time::Duration;

use circuit_sdk::proto::{EventKind, Reply};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::host;
use crate::membership::{Membership, NodeMeta};
use crate::peer::{PeerRequest, Peers};
use crate::supervisor::Supervisor;

/// How often this node's metadata is looked at for changes.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// A change in load or available memory alone is republished at most this often: they move
/// all the time, and every republish is a gossip broadcast to the whole mesh.
const LOAD_EVERY: Duration = Duration::from_secs(10);
/// How often a push-pull runs with one random live node.
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for a push-pull answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// What this node says about itself that does not change while it runs.
pub(crate) struct Fixed {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub started_at_ms: u64,
}

/// Republishes this node's metadata whenever its workers or channels change.
pub(crate) async fn publish(
    membership: Membership,
    supervisor: Supervisor,
    broker: Broker,
    fixed: Fixed,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut chan_version = 0;
    let mut channels = Vec::new();
    let mut last: Option<NodeMeta> = None;
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Some((version, names)) = broker.names_if_changed(chan_version) {
            chan_version = version;
            channels = names;
        }
        let worker_names: Vec<String> = supervisor
            .list(false)
            .into_iter()
            .filter(|w| !w.state.is_terminal())
            .map(|w| w.name)
            .collect();
        let memory = host::memory();
        let meta = NodeMeta {
            name: fixed.name.clone(),
            labels: fixed.labels.clone(),
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: fixed.started_at_ms,
            workers: worker_names.len(),
            worker_names,
            load: host::load_average(),
            channels: channels.clone(),
            mem_total_bytes: memory.total_bytes,
            mem_available_bytes: memory.available_bytes,
            ..NodeMeta::default()
        };
        let changed = match &last {
            None => true,
            Some(last) => {
                let same_but_gauges = NodeMeta {
                    load: last.load,
                    mem_available_bytes: last.mem_available_bytes,
                    ..meta.clone()
                };
                let gauges_moved =
                    last.load != meta.load || last.mem_available_bytes != meta.mem_available_bytes;
                &same_but_gauges != last || (gauges_moved && last_at.elapsed() >= LOAD_EVERY)
            }
        };
        if changed {
            membership.set_meta(meta.clone());
            last = Some(meta);
            last_at = tokio::time::Instant::now();
        }
    }
}

/// Push-pull: every few seconds, and at once with a node that joins, exchange node tables
/// over the peer link so that what broadcasts missed (or could not carry) is learnt.
pub(crate) async fn anti_entropy(
    membership: Membership,
    peers: Peers,
    shutdown: CancellationToken,
) {
    let mut events = membership.subscribe();
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let target = tokio::select! {
            _ = tick.tick() => pick(&membership),
            event = events.recv() => match event {
                // A node that joins gets a push-pull at once, unless its metadata already
                // arrived by broadcast (else a mass boot would make N² exchanges).
                Ok(e) if matches!(e.kind, EventKind::Join | EventKind::Rejoin)
                    && !membership.knows_meta(&e.node, e.generation) => Some(e.node),
                Ok(_) | Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let Some(target) = target else { continue };
        let (membership, peers) = (membership.clone(), peers.clone());
        // Each exchange on its own so a slow peer never delays the next.
        tokio::spawn(async move {
            if let Err(why) = sync_with(&membership, &peers, &target).await {
                tracing::debug!(node = %target, %why, "push-pull failed");
            }
        });
    }
}

/// A node to push-pull with: one whose metadata arrived partial, else a random live one.
fn pick(membership: &Membership) -> Option<String> {
    if let Some(node) = membership.partial().into_iter().next() {
        return Some(node);
    }
    let live = membership.live_peers();
    (!live.is_empty()).then(|| live[fastrand::usize(..live.len())].clone())
}

async fn sync_with(membership: &Membership, peers: &Peers, node: &str) -> Result<(), String> {
    let client = peers.client(node).await.map_err(|e| e.to_string())?;
    let request = PeerRequest::MeshSync {
        nodes: membership.metas(),
    };
    match tokio::time::timeout(SYNC_TIMEOUT, client.call(request.into())).await {
        Ok(Ok(Reply::Nodes(nodes))) => {
            membership.merge(nodes);
            Ok(())
        }
        Ok(Ok(other)) => Err(format!("unexpected reply {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {SYNC_TIMEOUT:?}")),
    }
}
