//! The task that runs one replica of a replicated channel. On every replica it follows Raft's
//! status, and the mesh's view of the replicas' nodes: when the node of the leader goes
//! suspect or dead, the followers start an election (ranked, so they rarely split the vote),
//! so failover time is set by the mesh. On the leader it serves the channel's streams as a
//! channel actor does (the contract in [`crate::stream`]), except that every message that
//! changes the channel becomes an event of the next batch proposed to the log, and frames are
//! sent only from what applying committed batches produced: a send is confirmed once a
//! majority holds the value.
//!
//! A leader serves from an epoch on (its term and a count of restarts in that term): the
//! first batch of an epoch is `Leader`, which ends the streams of earlier epochs (their
//! receivers keep what they hold, detached, until they come back or are given up on). It stops
//! serving, failing its streams with `unavailable` so their handles find the new leader, when
//! it is no longer leader, when the mesh says a majority of the replicas is down, or when a
//! proposal has not committed within the lease.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, ChanOpened, ErrorCode, Item, SignalOp};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::consensus::{Consensus, ConsensusError, Role, Status, StatusWatch};
use super::event::{stream_key, Batch, Event};
use super::Applied;
use crate::broker::error::BrokerError;
use crate::broker::output::Outputs;
use crate::broker::state::Counts;
use crate::clock::now_ms;
use crate::stream::{StreamKey, StreamMsg, StreamOut};

mod repair;
mod stat;

/// Messages handled between two proposals.
const BATCH: usize = 256;
/// Batches proposed and not yet applied, at most; the inbox waits beyond (backpressure).
const MAX_INFLIGHT: usize = 16;
/// A leader whose oldest proposal has not committed for this long stops serving: it has lost
/// touch with the majority.
pub(crate) const LEASE: Duration = Duration::from_millis(1500);
/// After a failed repair, the next attempt waits this long.
const REPAIR_RETRY: Duration = Duration::from_secs(5);
/// How long a new replica may take to catch up before its repair is given up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A leader with nothing committed for this long proposes an empty batch, to learn whether a
/// newer leader exists (the backstop to the mesh's failure detector).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Between two election attempts of a follower whose leader's node is down.
const ELECT_RETRY: Duration = Duration::from_millis(300);
/// Added per rank, so the best-placed follower campaigns first.
const ELECT_RANK: Duration = Duration::from_millis(60);
/// Added per rank to a retry. Followers learn of a leader's death up to a few tens of ms
/// apart, so their first attempts may clash (two candidates in one term, neither elected);
/// retries spaced by rank put one clearly first, and it wins: its newer term is granted by a
/// follower with a shorter log, and a higher-ranked candidate that holds the longer log wins
/// the term after (openraft orders votes of one term by node id).
const RETRY_RANK: Duration = Duration::from_millis(150);
/// A follower that has known no leader for this long campaigns (backstop).
const NO_LEADER: Duration = Duration::from_secs(2);
/// A voter that the leader's log has left behind, not taking entries for this long though its
/// node is up, counts as lost in `stat` (a memory replica whose daemon restarted, for one).
const STUCK_SHOWN: Duration = Duration::from_secs(3);
/// A follower whose log has not grown for this long campaigns, though the mesh says its
/// leader's node is up (backstop: a live leader proposes at least every [`HEARTBEAT`]).
const SILENT_LEADER: Duration = Duration::from_secs(30);
/// How long a receiver detached by a leader change has to come back before what it held goes
/// back to the queue.
pub(crate) const GIVE_UP: Duration = Duration::from_secs(12);

/// A message to a replica's task.
#[derive(Debug)]
pub(crate) enum GroupMsg {
    /// A message of one of the channel's streams (the leader serves them).
    Stream(StreamMsg),
    /// Describe the channel.
    Stat(oneshot::Sender<ChanInfo>),
    /// Close the channel (on the leader).
    Close(oneshot::Sender<Result<(), BrokerError>>),
    /// Remove the channel from every replica (on the leader).
    Remove(oneshot::Sender<Result<(), BrokerError>>),
    /// The mesh says `node` went down (suspect, dead, left) or is up again.
    Node { node: String, up: bool },
    /// Check that this replica's view still holds (the daemon was paused, a node came back).
    Probe,
    /// Stop, and forget the channel here: this replica was replaced by a repair, or (with
    /// `removed`) the channel was removed and the leader tells the replicas that may not have
    /// learnt it.
    Drop { removed: bool },
}

/// A replica that ended for good, told to the registry.
#[derive(Debug)]
pub(crate) struct Gone {
    pub name: String,
    pub born_ms: u64,
    /// The channel was removed (not only this replica replaced): remembered, so that a
    /// replica that missed it learns it when it calls.
    pub removed: bool,
}

/// Fixed facts about a replicated channel.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub name: String,
    /// This node.
    pub node: String,
    pub capacity: u64,
    pub max_payload: u64,
    pub created_at_ms: u64,
    pub storage: String,
    /// Replicas go only to nodes with these labels (for repairs).
    pub labels: Vec<String>,
    /// A voter's node dead this long is replaced.
    pub repair_after: Duration,
}

/// What a leader asks of the daemon for a repair.
#[derive(Debug)]
pub(crate) enum RepairAsk {
    /// Start replica `id` of the channel on a live node not in `exclude` (with the labels),
    /// as a member of `members`; the answer is the node.
    Place {
        meta: Meta,
        id: u64,
        members: Vec<(u64, String)>,
        exclude: Vec<String>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Tell `node` that its replica `id` of `chan` was replaced, or (`removed`) that the
    /// channel was removed.
    Drop {
        node: String,
        chan: String,
        id: u64,
        removed: bool,
    },
}

/// What the broker reads of a replica without asking its task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    /// The node that leads, as this replica knows.
    pub leader: Option<String>,
    /// This replica leads and serves.
    pub serving: bool,
    pub term: u64,
}

/// A leader's service in one epoch.
struct Serving {
    epoch: u64,
    /// Streams opened so far in the epoch.
    opened: u64,
    /// Connection stream keys to the group's keys.
    keys: HashMap<StreamKey, StreamKey>,
    /// The epoch's `Leader` batch is applied: it serves for sure.
    confirmed: bool,
}

impl Serving {
    /// The group's key for connection stream `stream`, new in this epoch.
    fn open(&mut self, stream: StreamKey) -> StreamKey {
        self.opened += 1;
        let key = stream_key(self.epoch, self.opened);
        self.keys.insert(stream, key);
        key
    }
}

/// What a proposal was, for when it commits.
#[derive(Clone, Copy)]
enum Tag {
    Leader(u64),
    Batch,
}

type Pending = BoxFuture<'static, (Tag, Result<(), ConsensusError>)>;

pub(crate) struct Group<C: Consensus> {
    meta: Meta,
    consensus: C,
    watch: C::Watch,
    status: Status,
    shared: Arc<Mutex<Shared>>,
    outputs: Outputs,
    serving: Option<Serving>,
    /// Serving starts in `term_starts.0`, counted for the epoch.
    term_starts: (u64, u64),
    /// This turn's events.
    events: Vec<Event>,
    inflight: FuturesUnordered<Pending>,
    /// When each proposal in flight was made, oldest first.
    proposed_at: VecDeque<Instant>,
    close_waiters: VecDeque<oneshot::Sender<Result<(), BrokerError>>>,
    remove_waiter: Option<oneshot::Sender<Result<(), BrokerError>>>,
    counts: Counts,
    closed: bool,
    /// Receivers detached by a leader change, and since when.
    detached: Option<(Instant, Vec<u64>)>,
    /// Nodes the mesh says are down, and since when.
    down: HashMap<String, Instant>,
    /// The repair under way, if any: it reports here when it ends.
    repair: Option<oneshot::Receiver<Result<(), String>>>,
    /// No repair is started before this (after one failed).
    repair_at: Instant,
    /// Replicas replaced by repairs: told to stop when their node is seen again.
    replaced: Vec<(String, u64)>,
    repairs: mpsc::UnboundedSender<RepairAsk>,
    last_applied_at: Instant,
    /// The next election attempt, while this follower's leader is down.
    elect_at: Option<Instant>,
    no_leader_since: Option<Instant>,
    /// Elections this follower started since it last knew a leader.
    attempts: u32,
    /// The last log index this replica had, and since when.
    progress: (Option<u64>, Instant),
    /// On the leader: voters behind its log, with the index they hold and since when they
    /// hold it (a voter that takes no entries for `repair_after` is replaced, as a dead one).
    behind: HashMap<u64, (Option<u64>, Instant)>,
    /// A replica restarted from its disk log campaigns at this time unless its term moved
    /// meanwhile (from the term it was restored with, once known): its leader may be gone,
    /// or its channel removed, while it was down.
    restart_check: Option<(Instant, Option<u64>)>,
    removed: bool,
    /// Told once this replica ends for good.
    on_removed: mpsc::UnboundedSender<Gone>,
    /// Bumped when this replica starts or stops serving (the node's published channels).
    changes: Arc<AtomicU64>,
}

impl<C: Consensus> Group<C> {
    pub fn new(
        meta: Meta,
        consensus: C,
        shared: Arc<Mutex<Shared>>,
        on_removed: mpsc::UnboundedSender<Gone>,
        changes: Arc<AtomicU64>,
        repairs: mpsc::UnboundedSender<RepairAsk>,
    ) -> Self {
        let watch = consensus.watch();
        let status = watch.status();
        let progress = (status.last_log, Instant::now());
        let closed = false;
        Self {
            meta,
            consensus,
            watch,
            status,
            shared,
            outputs: Outputs::default(),
            serving: None,
            term_starts: (0, 0),
            events: Vec::new(),
            inflight: FuturesUnordered::new(),
            proposed_at: VecDeque::new(),
            close_waiters: VecDeque::new(),
            remove_waiter: None,
            counts: Counts::default(),
            closed,
            detached: None,
            down: HashMap::default(),
            repair: None,
            repair_at: Instant::now(),
            replaced: Vec::new(),
            repairs,
            last_applied_at: Instant::now(),
            elect_at: None,
            no_leader_since: Some(Instant::now()),
            attempts: 0,
            progress,
            behind: HashMap::default(),
            restart_check: None,
            removed: false,
            on_removed,
            changes,
        }
    }

    /// This replica was restarted from its disk log (see `restart_check`).
    pub fn restarted(mut self) -> Self {
        self.restart_check = Some((Instant::now() + NO_LEADER, None));
        self
    }

    /// Runs the replica until the channel is removed or the daemon stops.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<GroupMsg>,
        mut applied: mpsc::UnboundedReceiver<Applied>,
        shutdown: CancellationToken,
    ) {
        self.on_status();
        loop {
            let wake = self.next_wake();
            // A leader takes no more while its proposals are this far behind (backpressure);
            // a replica that does not serve always reads its inbox (stat, drop, the mesh).
            let room = self.serving.is_none() || self.inflight.len() < MAX_INFLIGHT;
            tokio::select! {
                msg = rx.recv(), if room => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                a = applied.recv() => {
                    let Some(a) = a else { break };
                    self.on_applied(a);
                    while let Ok(a) = applied.try_recv() {
                        self.on_applied(a);
                    }
                }
                alive = self.watch.changed() => {
                    if !alive { break }
                    self.on_status();
                }
                Some((tag, result)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.proposed_at.pop_front();
                    self.on_commit(tag, result);
                }
                done = async { self.repair.as_mut().expect("checked").await }, if self.repair.is_some() => {
                    self.repair = None;
                    match done {
                        Ok(Ok(())) => tracing::info!(chan = %self.meta.name, "replica repaired"),
                        Ok(Err(why)) => {
                            tracing::warn!(chan = %self.meta.name, %why, "replica repair failed; retrying");
                            self.repair_at = Instant::now() + REPAIR_RETRY;
                        }
                        Err(_) => self.repair_at = Instant::now() + REPAIR_RETRY,
                    }
                    self.on_status();
                }
                () = tokio::time::sleep_until(wake) => self.on_timer().await,
                () = shutdown.cancelled() => break,
            }
            self.propose_events().await;
            self.outputs.flush();
            if self.removed {
                break;
            }
        }
        self.stop_serving("the replica stopped");
        self.outputs.flush();
        self.consensus.shutdown().await;
    }

    fn handle(&mut self, msg: GroupMsg) {
        match msg {
            GroupMsg::Stream(msg) => self.stream(msg),
            GroupMsg::Stat(reply) => {
                let _ = reply.send(self.info());
            }
            GroupMsg::Close(reply) => match &self.serving {
                Some(_) => {
                    self.events.push(Event::Close);
                    self.close_waiters.push_back(reply);
                }
                None => {
                    let _ = reply.send(Err(self.unavailable()));
                }
            },
            GroupMsg::Remove(reply) => match &self.serving {
                Some(_) => {
                    self.events.push(Event::Remove);
                    self.remove_waiter = Some(reply);
                }
                None => {
                    let _ = reply.send(Err(self.unavailable()));
                }
            },
            GroupMsg::Node { node, up } => {
                let changed = if up {
                    self.down.remove(&node).is_some()
                } else {
                    !self.down.contains_key(&node)
                        && self.down.insert(node.clone(), Instant::now()).is_none()
                };
                if up {
                    for (old, id) in self.replaced.iter().filter(|(n, _)| *n == node) {
                        let _ = self.repairs.send(RepairAsk::Drop {
                            node: old.clone(),
                            chan: self.meta.name.clone(),
                            id: *id,
                            removed: false,
                        });
                    }
                }
                if changed {
                    self.on_status();
                    self.heartbeat();
                }
            }
            GroupMsg::Probe => self.heartbeat(),
            GroupMsg::Drop { removed } => {
                let why = if removed {
                    "the channel was removed"
                } else {
                    "it was replaced"
                };
                tracing::debug!(chan = %self.meta.name, why, "replica dropped");
                self.stop_serving(why);
                self.outputs.fail_all(
                    ErrorCode::NotFound,
                    &format!("channel \"{}\" was removed", self.meta.name),
                );
                self.gone(removed);
            }
        }
    }

    /// This replica ends for good (the task stops after this turn).
    fn gone(&mut self, removed: bool) {
        if self.removed {
            return;
        }
        self.removed = true;
        let _ = self.on_removed.send(Gone {
            name: self.meta.name.clone(),
            born_ms: self.meta.created_at_ms,
            removed,
        });
    }

    /// Why this replica cannot serve, for a client.
    fn unavailable(&self) -> BrokerError {
        let leader = match self.status.leader_node() {
            Some(node) if node != self.meta.node => format!("; node {node} leads"),
            _ => String::new(),
        };
        BrokerError::Unavailable(format!(
            "replicated channel \"{}\" is not served by node {} now{leader}",
            self.meta.name, self.meta.node
        ))
    }

    fn stream(&mut self, msg: StreamMsg) {
        let Some(serving) = self.serving.as_mut() else {
            // Not the leader (any more): a new stream is refused so its handle looks for the
            // leader; the others were failed when service stopped.
            if let StreamMsg::OpenSend { out, .. } | StreamMsg::OpenRecv { out, .. } = msg {
                let why = self.unavailable();
                out.fail(why.code(), why.to_string());
            }
            return;
        };
        match msg {
            StreamMsg::OpenSend {
                stream,
                sender,
                out,
                ..
            } => {
                let key = serving.open(stream);
                self.attach(key, out);
                self.events.push(Event::OpenSend {
                    stream: key,
                    sender,
                });
            }
            StreamMsg::OpenRecv {
                stream,
                out,
                receiver,
                held,
                acked,
            } => {
                let key = serving.open(stream);
                self.attach(key, out);
                self.events.push(Event::OpenRecv {
                    stream: key,
                    receiver: receiver.unwrap_or_else(|| fastrand::u64(1..)),
                    held,
                    acked,
                });
            }
            StreamMsg::Values { stream, values } => {
                if let Some(&key) = serving.keys.get(&stream) {
                    self.events.push(Event::Values {
                        stream: key,
                        values,
                    });
                }
            }
            StreamMsg::Signal { stream, op, a, b } => {
                let Some(&key) = serving.keys.get(&stream) else {
                    return;
                };
                match op {
                    SignalOp::Credit
                    | SignalOp::Ack
                    | SignalOp::Return
                    | SignalOp::Waiting
                    | SignalOp::Recalled
                    | SignalOp::TryRecv
                    | SignalOp::Withdraw
                    | SignalOp::TrySend
                    | SignalOp::CancelSend => self.events.push(Event::Signal {
                        stream: key,
                        op: op as u8,
                        a,
                        b,
                    }),
                    // No reservations here (a send completes when a majority holds it), so
                    // there are none to give back.
                    SignalOp::Release => {}
                    other => {
                        serving.keys.remove(&stream);
                        self.outputs.fail(
                            key,
                            ErrorCode::BadRequest,
                            format!("signal {other:?} is not sent by clients"),
                        );
                        self.events.push(Event::Gone { stream: key });
                    }
                }
            }
            StreamMsg::Gone { stream, cancelled } => {
                let Some(key) = serving.keys.remove(&stream) else {
                    return;
                };
                self.events.push(Event::Gone { stream: key });
                if let Some(out) = self.outputs.remove(key) {
                    if cancelled {
                        out.fail(ErrorCode::Cancelled, "stream closed by the client".into());
                    } else {
                        out.end();
                    }
                }
            }
        }
    }

    /// Stream `key` writes to `out` from now on; it is told the channel is open.
    fn attach(&mut self, key: StreamKey, out: StreamOut) {
        out.item(self.opened());
        self.outputs.insert(key, out);
    }

    fn opened(&self) -> Item {
        Item::ChanOpened(ChanOpened {
            capacity: self.meta.capacity,
            max_payload: self.meta.max_payload,
            owner: self.meta.node.clone(),
            replicas: u32::try_from(self.voters().len()).unwrap_or(u32::MAX),
        })
    }

    /// Proposes this turn's events as one batch.
    async fn propose_events(&mut self) {
        if self.events.is_empty() || self.serving.is_none() {
            self.events.clear();
            return;
        }
        let batch = Batch {
            now_ms: now_ms(),
            events: std::mem::take(&mut self.events),
        };
        self.propose(batch, Tag::Batch).await;
    }

    async fn propose(&mut self, batch: Batch, tag: Tag) {
        match self.consensus.propose(batch).await {
            Ok(commit) => {
                self.proposed_at.push_back(Instant::now());
                self.inflight.push(commit.map(move |r| (tag, r)).boxed());
            }
            Err(why) => {
                tracing::debug!(chan = %self.meta.name, %why, "proposal refused");
                self.stop_serving("its leader changed");
            }
        }
    }

    fn on_commit(&mut self, tag: Tag, result: Result<(), ConsensusError>) {
        match (tag, result) {
            (Tag::Leader(epoch), Ok(())) => {
                if let Some(serving) = self.serving.as_mut().filter(|s| s.epoch == epoch) {
                    serving.confirmed = true;
                    self.publish();
                }
            }
            (_, Ok(())) => {}
            (_, Err(why)) => {
                tracing::debug!(chan = %self.meta.name, %why, "proposal not applied");
                self.stop_serving("its leader changed");
            }
        }
    }

    fn on_applied(&mut self, a: Applied) {
        self.last_applied_at = Instant::now();
        self.counts = a.counts;
        self.closed = a.closed_now;
        if self.serving.is_some() {
            for key in self.outputs.effects(a.effects) {
                self.events.push(Event::Gone { stream: key });
                if let Some(serving) = self.serving.as_mut() {
                    serving.keys.retain(|_, k| *k != key);
                }
            }
            if let Some(result) = a.closed {
                if let Some(waiter) = self.close_waiters.pop_front() {
                    let name = self.meta.name.clone();
                    let _ = waiter.send(result.map_err(|_| BrokerError::AlreadyClosed(name)));
                }
            }
        }
        if a.removed {
            tracing::debug!(chan = %self.meta.name, leads = self.serving.is_some(), "removal applied");
            let name = self.meta.name.clone();
            self.outputs.fail_all(
                ErrorCode::NotFound,
                &format!("channel \"{name}\" was removed"),
            );
            if let Some(waiter) = self.remove_waiter.take() {
                let _ = waiter.send(Ok(()));
            }
            self.events.clear();
            let led = self.serving.take().is_some();
            self.gone(true);
            if led {
                // Raft tells followers that an entry committed only with a later one; none
                // comes after a removal, so the leader tells every other replica itself.
                for r in &self.status.members {
                    if r.id != self.status.me {
                        let _ = self.repairs.send(RepairAsk::Drop {
                            node: r.node.clone(),
                            chan: self.meta.name.clone(),
                            id: r.id,
                            removed: true,
                        });
                    }
                }
            }
        }
        self.detached = match (a.detached.is_empty(), self.detached.take()) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some((Instant::now(), a.detached)),
        };
    }

    /// Raft's status changed, or the mesh's view of the replicas' nodes did.
    fn on_status(&mut self) {
        self.status = self.watch.status();
        if self.status.last_log != self.progress.0 {
            self.progress = (self.status.last_log, Instant::now());
        }
        self.track_behind();
        // The term a restarted replica was restored with (its log loads after it starts).
        if let Some((_, restored @ None)) = &mut self.restart_check {
            if self.status.term > 0 {
                *restored = Some(self.status.term);
            }
        }
        let leads = self.status.role == Role::Leader && self.status.leader == Some(self.status.me);
        if leads {
            let stale = self
                .serving
                .as_ref()
                .is_some_and(|s| s.epoch >> 8 != self.status.term);
            if stale {
                self.stop_serving("its leader changed");
            }
            if self.serving.is_none() && self.quorum_up() {
                self.start_serving();
            } else if self.serving.is_some() && !self.quorum_up() {
                self.stop_serving("a majority of its replicas is down");
            }
        } else if self.serving.is_some() {
            self.stop_serving("its leader changed");
        }
        // Followers: campaign when the leader's node is down, or none has been known a while.
        let leader_down = self
            .status
            .leader_node()
            .is_some_and(|node| node != self.meta.node && self.down.contains_key(node));
        if !leads && self.is_voter() && (leader_down || self.status.leader.is_none()) {
            let alone = self.voters().len() == 1;
            if (leader_down || alone) && self.elect_at.is_none() {
                self.elect_at = Some(Instant::now() + self.rank_delay());
            }
            self.no_leader_since.get_or_insert_with(Instant::now);
        } else {
            self.elect_at = None;
            self.no_leader_since = None;
            self.attempts = 0;
        }
        self.publish();
    }

    fn start_serving(&mut self) {
        let term = self.status.term;
        let restarts = if self.term_starts.0 == term {
            self.term_starts.1 + 1
        } else {
            0
        };
        self.term_starts = (term, restarts);
        let epoch = (term << 8) | (restarts & 0xff);
        self.serving = Some(Serving {
            epoch,
            opened: 0,
            keys: HashMap::default(),
            confirmed: false,
        });
        self.events.clear();
        let batch = Batch {
            now_ms: now_ms(),
            events: vec![Event::Leader { term: epoch }],
        };
        self.propose_later(batch, Tag::Leader(epoch));
        tracing::debug!(chan = %self.meta.name, term, "leads the replicated channel");
    }

    fn stop_serving(&mut self, why: &str) {
        let Some(_) = self.serving.take() else {
            return;
        };
        tracing::debug!(chan = %self.meta.name, why, "stops serving");
        let message = format!(
            "replicated channel \"{}\": node {} no longer serves it ({why})",
            self.meta.name, self.meta.node
        );
        self.outputs.fail_all(ErrorCode::Unavailable, &message);
        self.events.clear();
        // What this leader proposed commits or not without it: nobody waits for it here.
        self.inflight = FuturesUnordered::new();
        self.proposed_at.clear();
        for waiter in self.close_waiters.drain(..) {
            let _ = waiter.send(Err(BrokerError::Unavailable(message.clone())));
        }
        if let Some(waiter) = self.remove_waiter.take() {
            let _ = waiter.send(Err(BrokerError::Unavailable(message.clone())));
        }
        self.publish();
    }

    /// A leader learns whether it still leads: an empty batch is proposed (a newer leader's
    /// followers refuse it, and Raft steps down).
    fn heartbeat(&mut self) {
        if self.serving.is_some() && self.inflight.is_empty() {
            let batch = Batch {
                now_ms: now_ms(),
                events: Vec::new(),
            };
            self.propose_later(batch, Tag::Batch);
        }
    }

    /// Proposes `batch` from a future polled with the other proposals in flight, for callers
    /// that cannot wait (a status change, a timer).
    fn propose_later(&mut self, batch: Batch, tag: Tag) {
        let consensus = self.consensus.clone();
        let pending: Pending = async move {
            let result = match consensus.propose(batch).await {
                Ok(commit) => commit.await,
                Err(e) => Err(e),
            };
            (tag, result)
        }
        .boxed();
        self.proposed_at.push_back(Instant::now());
        self.inflight.push(pending);
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + HEARTBEAT;
        if let Some(at) = self.proposed_at.front() {
            wake = wake.min(*at + LEASE);
        }
        if let Some(at) = self.elect_at {
            wake = wake.min(at);
        }
        if let Some(since) = self.no_leader_since {
            wake = wake.min(since + NO_LEADER);
        }
        if self.serving.is_none() {
            wake = wake.min(self.progress.1 + SILENT_LEADER);
        }
        if let Some((at, _)) = self.restart_check {
            wake = wake.min(at);
        }
        if let Some((since, _)) = &self.detached {
            wake = wake.min(*since + GIVE_UP);
        }
        if self.serving.is_some() {
            wake = wake.min(self.last_applied_at + HEARTBEAT);
            if self.repair.is_none() {
                if let Some(since) = self.dead_voters().into_iter().map(|(_, _, at)| at).min() {
                    wake = wake.min((since + self.meta.repair_after).max(self.repair_at));
                }
            }
        }
        wake.max(now + Duration::from_millis(1))
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        // Lease: a proposal that does not commit means the majority is out of reach.
        if self.serving.is_some()
            && self
                .proposed_at
                .front()
                .is_some_and(|at| now >= *at + LEASE)
        {
            self.stop_serving("no majority of its replicas answers");
        }
        // A leader that stopped serving serves again once the majority answers again.
        let leads = self.status.role == Role::Leader && self.status.leader == Some(self.status.me);
        if leads
            && self.serving.is_none()
            && self.quorum_up()
            && self.proposed_at.front().is_none_or(|at| now < *at + LEASE)
        {
            self.start_serving();
        }
        if self.serving.is_some() && now >= self.last_applied_at + HEARTBEAT {
            self.last_applied_at = now;
            self.heartbeat();
        }
        if let Some((_, term)) = self.restart_check.filter(|(at, _)| now >= *at) {
            self.restart_check = None;
            if !leads && self.is_voter() && term.is_none_or(|t| t == self.status.term) {
                tracing::debug!(chan = %self.meta.name, "restarted and heard of no new term");
                self.elect_at.get_or_insert(now);
            }
        }
        if !leads && self.is_voter() && now >= self.progress.1 + SILENT_LEADER {
            tracing::debug!(chan = %self.meta.name, "nothing heard from the leader for long");
            self.elect_at.get_or_insert(now);
            self.progress.1 = now;
        }
        let campaign = self.elect_at.is_some_and(|at| now >= at)
            || self
                .no_leader_since
                .is_some_and(|since| now >= since + NO_LEADER);
        if campaign && !leads {
            tracing::debug!(chan = %self.meta.name, "starting an election");
            self.consensus.elect().await;
            self.attempts += 1;
            // Spaced by rank; the jitter grows with failed attempts to break any pattern.
            let jitter = 50u64 << self.attempts.min(4);
            let rank = u32::try_from(self.rank()).unwrap_or(0);
            let retry =
                ELECT_RETRY + RETRY_RANK * rank + Duration::from_millis(fastrand::u64(0..jitter));
            self.elect_at = Some(now + retry);
            if self.no_leader_since.is_some() {
                self.no_leader_since = Some(now);
            }
        }
        self.maybe_repair(now);
        // Receivers that did not come back after a leader change give back what they held.
        if let Some((since, ids)) = &self.detached {
            if now >= *since + GIVE_UP && self.serving.as_ref().is_some_and(|s| s.confirmed) {
                self.events.push(Event::GiveUp {
                    receivers: ids.clone(),
                });
                self.detached = None;
            }
        }
    }

    fn voters(&self) -> Vec<&super::consensus::Replica> {
        self.status.members.iter().filter(|r| r.voter).collect()
    }

    fn is_voter(&self) -> bool {
        self.voters().iter().any(|r| r.id == self.status.me)
    }

    /// Whether the mesh says a majority of the voters' nodes is up.
    fn quorum_up(&self) -> bool {
        let voters = self.voters();
        let up = voters
            .iter()
            .filter(|r| r.node == self.meta.node || !self.down.contains_key(&r.node))
            .count();
        up * 2 > voters.len()
    }

    /// How long this follower waits before campaigning: the live voters ranked by id.
    fn rank_delay(&self) -> Duration {
        ELECT_RANK * u32::try_from(self.rank()).unwrap_or(0)
    }

    /// This replica's place among the live voters, by id.
    fn rank(&self) -> usize {
        let mut live: Vec<u64> = self
            .voters()
            .iter()
            .filter(|r| !self.down.contains_key(&r.node))
            .map(|r| r.id)
            .collect();
        live.sort_unstable();
        live.iter()
            .position(|id| *id == self.status.me)
            .unwrap_or(0)
    }

    /// Tells the broker who leads.
    fn publish(&self) {
        let mut shared = self.shared.lock().expect("replica shared");
        shared.leader = self.status.leader_node().map(str::to_string);
        shared.term = self.status.term;
        let serving = self.serving.as_ref().is_some_and(|s| s.confirmed);
        if shared.serving != serving {
            shared.serving = serving;
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }
}
