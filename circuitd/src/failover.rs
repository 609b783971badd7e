//! The mesh's view, passed to the replicas of replicated channels: a node that goes suspect,
//! dead or leaves is down for them (a follower whose leader is there campaigns at once), one
//! that joins, rejoins or refutes its suspicion is up. A pause of this daemon (a stopped
//! process, a suspended machine) is noticed as a gap between ticks: every replica then
//! checks that its view still holds, so a leader that was paused learns at once whether
//! another took over.

use std::time::Duration;

use circuit_sdk::proto::EventKind;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::membership::Membership;

/// How often the pause detector ticks.
const TICK: Duration = Duration::from_millis(250);
/// A gap between ticks longer than this is a pause.
const PAUSED: Duration = Duration::from_millis(1000);

/// Runs until shutdown.
pub(crate) async fn follow(membership: Membership, broker: Broker, shutdown: CancellationToken) {
    let mut events = membership.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    let up = match e.kind {
                        EventKind::Suspect | EventKind::Dead | EventKind::Leave => false,
                        EventKind::Join | EventKind::Rejoin | EventKind::Recover => true,
                    };
                    broker.node_event(&e.node, up);
                }
                Err(RecvError::Lagged(_)) => broker.probe_replicas(),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(last) > PAUSED {
                    tracing::info!(gap = ?now.duration_since(last), "this daemon was paused: replicated channels check their leaders");
                    broker.probe_replicas();
                }
                last = now;
            }
            () = shutdown.cancelled() => return,
        }
    }
}
