//! The SWIM task: owns foca, the UDP socket and the timers, on a thread of its own so that a
//! busy daemon still answers probes on time. Feeds the node table and the event stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use circuit_sdk::proto::{EventKind, MeshEvent};
use circuit_sdk::secure::Keyring;
use foca::{AccumulatingRuntime, Codec, Foca, Member, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{size_bucket, swim_config, MAX_PACKET};
use super::identity::NodeId;
use super::join_warning::{diagnose, Warnings};
use super::meta::{Inbox, MetaBroadcasts, NodeMeta};
use super::probes::Probes;
use super::seal::{OpenError, Opener, Sealer};
use super::suspicion::{Due, Schedule, Suspicions};
use super::Shared;
use crate::clock::now_ms;

/// First wait between join attempts; doubles up to [`JOIN_BACKOFF_MAX`].
const JOIN_BACKOFF: Duration = Duration::from_millis(200);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the rest of the daemon asks of the SWIM task.
pub(crate) enum Cmd {
    /// Announce to these addresses until one answers; reply once joined.
    Join(Vec<SocketAddr>, Option<oneshot::Sender<()>>),
    /// This node's metadata changed (the version is set here).
    SetMeta(NodeMeta),
}

type Swim = Foca<NodeId, PostcardCodec, StdRng, MetaBroadcasts>;

pub(crate) struct Driver {
    pub shared: Arc<Shared>,
    pub socket: UdpSocket,
    /// The cluster keys: packets are sealed with the first and opened with any. Without
    /// keys, packets go as they are (loopback development mode).
    pub keys: Option<Keyring>,
    pub cmds: mpsc::UnboundedReceiver<Cmd>,
    pub shutdown: CancellationToken,
    pub meta: NodeMeta,
    pub sealer: Sealer,
    /// The suspicions this node raised, so that one the suspect refuted does not reach foca.
    pub suspicions: Suspicions,
    /// Pings out, for the probe round trip in the meters.
    pub probes: Probes,
}

/// Gossip refused per source address: the first refusal of an address is a warning, the
/// rest are debug lines, so a misconfigured or hostile peer cannot flood the log.
#[derive(Default)]
struct Refusals {
    /// By source address and port: a peer gossips from its mesh port.
    warned: std::collections::HashSet<SocketAddr>,
}

impl Refusals {
    fn note(&mut self, from: SocketAddr, why: OpenError) {
        if why.is_auth() && self.warned.len() < 4096 && self.warned.insert(from) {
            tracing::warn!(
                %from,
                "gossip refused: {why} (further refusals from this address are logged at debug level)"
            );
        } else {
            tracing::debug!(%from, error = %why, "gossip packet refused");
        }
    }
}

struct Joining {
    targets: Vec<SocketAddr>,
    waiters: Vec<oneshot::Sender<()>>,
    next: Instant,
    backoff: Duration,
    /// When to warn that no target has answered yet.
    warnings: Warnings,
    /// Members this node had when the join was asked for: a node alone is joined once it has
    /// any member; a node already in a mesh (joining another mesh, or a node outside it) once
    /// a target is a member or the mesh grew.
    members_before: usize,
}

impl Joining {
    /// Whether the targets have been reached, given foca's members now.
    fn reached(&self, swim: &Swim) -> bool {
        let members = swim.num_members();
        if members == 0 {
            return false;
        }
        self.members_before == 0
            || members > self.members_before
            || swim
                .iter_members()
                .any(|m| self.targets.contains(&m.id().addr))
    }
}

impl Driver {
    pub async fn run(mut self) {
        let me = self.shared.view.read().expect("view").me().clone();
        let inbox = Inbox::default();
        let mut swim: Swim = Foca::with_custom_broadcast(
            me,
            swim_config(1),
            rand::make_rng(),
            PostcardCodec,
            MetaBroadcasts::new(inbox.clone()),
        );
        let mut rt = AccumulatingRuntime::new();
        let mut timers: BTreeMap<(Instant, u64), Timer<NodeId>> = BTreeMap::new();
        let mut timer_seq = 0u64;
        let mut bucket = size_bucket(1);
        let mut joining = Joining {
            targets: Vec::new(),
            waiters: Vec::new(),
            next: Instant::now(),
            backoff: JOIN_BACKOFF,
            warnings: Warnings::new(Instant::now()),
            members_before: 0,
        };
        // Why a target does not answer, found out off the loop for a warning.
        let (why_tx, mut why_rx) = mpsc::unbounded_channel::<(SocketAddr, Duration, String)>();
        let _ = swim.add_broadcast(&self.meta.to_broadcast());
        let mut buf = vec![0u8; MAX_PACKET + 64];
        let mut opener = Opener::new();
        let mut refused = Refusals::default();
        loop {
            let next_timer = timers.keys().next().map(|(at, _)| *at);
            let joining_now = !joining.targets.is_empty();
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok((n, from)) => {
                        self.shared.meters.gossip_received_bytes.inc_by(n as u64);
                        let opened = match &self.keys {
                            None => Ok(buf[..n].to_vec()),
                            Some(keys) => opener.open(&keys.keys(), &buf[..n], now_ms()),
                        };
                        match opened {
                            Ok(data) => {
                                self.time_probe_in(&data);
                                if let Err(e) = swim.handle_data(&data, &mut rt) {
                                    tracing::debug!(%from, error = %e, "gossip packet ignored");
                                }
                            }
                            Err(e) => refused.note(from, e),
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "gossip receive failed"),
                },
                () = sleep_until(next_timer) => {
                    let now = Instant::now();
                    while let Some(entry) = timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let timer = entry.remove();
                        match self.suspicions.due(&timer, member_of(&swim, &timer)) {
                            Due::Fire => {}
                            Due::Refuted(id) => {
                                tracing::info!(
                                    node = %id.name,
                                    "node refuted its suspicion in time: not declared dead"
                                );
                                continue;
                            }
                            Due::Drop => continue,
                        }
                        if let Err(e) = swim.handle_timer(timer, &mut rt) {
                            tracing::debug!(error = %e, "gossip timer failed");
                        }
                    }
                }
                () = tokio::time::sleep_until(joining.next), if joining_now => {
                    for addr in &joining.targets {
                        let _ = swim.announce(NodeId::placeholder(*addr), &mut rt);
                    }
                    joining.next = Instant::now() + joining.backoff;
                    joining.backoff = (joining.backoff * 2).min(JOIN_BACKOFF_MAX);
                }
                () = tokio::time::sleep_until(joining.warnings.next()), if joining_now => {
                    let waited = joining.warnings.give(Instant::now());
                    let key = self.keys.as_ref().map(Keyring::primary);
                    for addr in joining.targets.clone() {
                        let (why_tx, key) = (why_tx.clone(), key.clone());
                        tokio::spawn(async move {
                            let _ = why_tx.send((addr, waited, diagnose(addr, key).await));
                        });
                    }
                }
                Some((addr, waited, why)) = why_rx.recv() => {
                    if joining.targets.contains(&addr) {
                        tracing::warn!(
                            "join: no answer from {addr} after {}s, still trying: {why}",
                            waited.as_secs()
                        );
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Join(addrs, waiter)) => {
                        for addr in addrs {
                            if !joining.targets.contains(&addr) && addr != swim.identity().addr {
                                joining.targets.push(addr);
                            }
                        }
                        joining.waiters.extend(waiter);
                        joining.next = Instant::now();
                        joining.backoff = JOIN_BACKOFF;
                        joining.warnings = Warnings::new(Instant::now());
                        joining.members_before = swim.num_members();
                    }
                    Some(Cmd::SetMeta(meta)) => self.set_meta(meta, &mut swim, &mut rt),
                    None => break,
                },
            }
            // React: send, schedule, take notifications and broadcasts, update the table.
            self.drain(&mut swim, &mut rt, &mut timers, &mut timer_seq, &inbox)
                .await;
            if joining.reached(&swim) {
                if !joining.targets.is_empty() && joining.warnings.warned() {
                    tracing::info!("join: joined the mesh at last");
                }
                joining.targets.clear();
                for waiter in joining.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
            let now_bucket = size_bucket(swim.num_members() + 1);
            if now_bucket != bucket {
                bucket = now_bucket;
                if let Err(e) = swim.set_config(swim_config(swim.num_members() + 1)) {
                    tracing::warn!(error = %e, "cannot re-tune gossip");
                }
            }
        }
        // Leave: say so in the metadata, then declare ourselves down to a few members.
        let mut meta = self.meta.clone();
        meta.leaving = true;
        self.set_meta(meta, &mut swim, &mut rt);
        let _ = swim.leave_cluster(&mut rt);
        self.drain(&mut swim, &mut rt, &mut timers, &mut timer_seq, &inbox)
            .await;
        tracing::info!("left the mesh");
    }

    /// An opened packet that acks one of our pings: its round trip goes in the meters.
    fn time_probe_in(&mut self, data: &[u8]) {
        let Ok(header) = PostcardCodec.decode_header(data) else {
            return;
        };
        if let Some(rtt) = self.probes.received(&header, Instant::now().into_std()) {
            self.shared.meters.probe_rtt.observe(rtt.as_secs_f64());
        }
    }

    fn set_meta(
        &mut self,
        mut meta: NodeMeta,
        swim: &mut Swim,
        rt: &mut AccumulatingRuntime<NodeId>,
    ) {
        meta.generation = swim.identity().generation;
        meta.version = self.meta.version + 1;
        self.meta = meta.clone();
        self.shared
            .view
            .write()
            .expect("view")
            .merge_meta(meta.clone());
        if let Err(e) = swim.add_broadcast(&meta.to_broadcast()) {
            tracing::warn!(error = %e, "cannot broadcast metadata");
        }
        let _ = swim.broadcast(rt);
    }

    async fn drain(
        &mut self,
        swim: &mut Swim,
        rt: &mut AccumulatingRuntime<NodeId>,
        timers: &mut BTreeMap<(Instant, u64), Timer<NodeId>>,
        timer_seq: &mut u64,
        inbox: &Inbox,
    ) {
        loop {
            while let Some((to, data)) = rt.to_send() {
                if let Ok(header) = PostcardCodec.decode_header(&data[..]) {
                    self.probes.sent(&header, Instant::now().into_std());
                }
                let data = match &self.keys {
                    None => data.to_vec(),
                    Some(keys) => self.sealer.seal(&keys.primary(), &data, now_ms()),
                };
                match self.socket.send_to(&data, to.addr).await {
                    Ok(n) => {
                        self.shared.meters.gossip_sent_bytes.inc_by(n as u64);
                    }
                    Err(e) => tracing::debug!(to = %to.addr, error = %e, "gossip send failed"),
                }
            }
            let now = Instant::now();
            while let Some((after, timer)) = rt.to_schedule() {
                match self.suspicions.schedule(&timer, member_of(swim, &timer)) {
                    Schedule::Keep => {}
                    Schedule::Suspected(id) => tracing::info!(
                        node = %id.name,
                        within = ?after,
                        "node missed its probes: declared dead unless it refutes in time"
                    ),
                    Schedule::Drop => continue,
                }
                *timer_seq += 1;
                timers.insert((now + after, *timer_seq), timer);
            }
            let mut renewed = false;
            while let Some(note) = rt.to_notify() {
                match note {
                    OwnedNotification::Rejoin(id) => {
                        tracing::warn!(
                            generation = id.generation,
                            "declared dead by the mesh: rejoined"
                        );
                        self.shared
                            .view
                            .write()
                            .expect("view")
                            .renamed_me(id, now_ms());
                        renewed = true;
                    }
                    OwnedNotification::Defunct if !self.shutdown.is_cancelled() => {
                        tracing::error!("declared dead by the mesh")
                    }
                    OwnedNotification::Idle => tracing::info!("no other live node in the mesh"),
                    _ => {}
                }
            }
            if renewed {
                // Our metadata belongs to the new generation too.
                let meta = self.meta.clone();
                self.set_meta(meta, swim, rt);
            }
            if rt.backlog() == 0 {
                break;
            }
        }
        let received: Vec<NodeMeta> = inbox.borrow_mut().drain(..).collect();
        let events: Vec<MeshEvent> = {
            let mut view = self.shared.view.write().expect("view");
            for meta in received {
                view.merge_meta(meta);
            }
            let now = now_ms();
            swim.iter_membership_state()
                .filter_map(|m| view.observe(m.id(), m.state(), now))
                .collect()
        };
        for event in events {
            if event.kind == EventKind::Suspect {
                self.shared.meters.suspicions.inc();
            }
            tracing::info!(node = %event.node, addr = %event.addr, event = %event.kind, "mesh");
            let _ = self.shared.events.send(event);
        }
    }
}

/// foca's entry of the member a suspicion timer is about.
fn member_of<'a>(swim: &'a Swim, timer: &Timer<NodeId>) -> Option<&'a Member<NodeId>> {
    let Timer::ChangeSuspectToDown { member_id, .. } = timer else {
        return None;
    };
    swim.iter_membership_state().find(|m| m.id() == member_id)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
