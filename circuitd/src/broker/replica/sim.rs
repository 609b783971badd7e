//! A randomized simulation of a replicated channel: three replicas (the real `RaftGroup` and
//! `Group` tasks) in one process on tokio's paused clock, a simulated network between them
//! (delays, lost messages, a node cut off and healed, a node killed), the mesh's failure
//! detector simulated by telling the replicas which nodes are down, and a sender and a
//! receiver that behave as the SDK does (resend what was not confirmed; reopen naming what was
//! held and acknowledged). Each schedule is checked against the channel contract: every
//! confirmed value received exactly once, each sender's values in order, never more values in
//! the channel than its capacity. The number of schedules is `CIRCUIT_SIM_SCHEDULES` (default
//! 300); a failing seed is printed and can be replayed with `CIRCUIT_SIM_SEED`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::proto::{Frame, ServerMessage, SignalOp};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::consensus::Replica;
use super::group::{Group, GroupMsg, Meta, Shared};
use super::raft::RaftGroup;
use super::{CallError, GroupId, Transport};
use crate::stream::{Out, StreamMsg, StreamOut};

const NODES: [&str; 3] = ["a", "b", "c"];
const CAPACITY: u64 = 8;
/// Values a sender keeps outstanding.
const WINDOW: usize = 16;
/// How long the mesh takes to tell the others that a node is down.
const DETECT: Duration = Duration::from_millis(400);

/// The network: who is dead, who is cut off, how many messages are lost.
struct Net {
    rng: Mutex<fastrand::Rng>,
    dead: Mutex<HashSet<String>>,
    cut: Mutex<HashSet<String>>,
    /// Lost messages, per thousand.
    loss: AtomicU64,
    groups: Mutex<HashMap<String, RaftGroup>>,
}

impl Net {
    fn reachable(&self, from: &str, to: &str) -> bool {
        let dead = self.dead.lock().expect("net");
        let cut = self.cut.lock().expect("net");
        !dead.contains(from) && !dead.contains(to) && !cut.contains(from) && !cut.contains(to)
    }
}

/// One replica's way into the network.
struct Port {
    me: String,
    net: Arc<Net>,
}

impl Transport for Port {
    fn call(
        &self,
        node: String,
        _group: GroupId,
        _to: u64,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, CallError>> {
        let net = self.net.clone();
        let me = self.me.clone();
        async move {
            let (delay, lost) = {
                let mut rng = net.rng.lock().expect("rng");
                let loss = net.loss.load(std::sync::atomic::Ordering::Relaxed);
                (rng.u64(0..4), rng.u64(0..1000) < loss)
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if lost || !net.reachable(&me, &node) {
                return Err(CallError::Failed(format!("{node} unreachable from {me}")));
            }
            let group = net.groups.lock().expect("groups").get(&node).cloned();
            let Some(group) = group else {
                return Err(CallError::Failed(format!("{node} is down")));
            };
            let answer = group.serve(&body).await.map_err(CallError::Failed);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if !net.reachable(&me, &node) {
                return Err(CallError::Failed(format!("{node} unreachable from {me}")));
            }
            answer
        }
        .boxed()
    }
}

/// A replica: its task's inbox, what it says of who leads, and its stop.
struct Rep {
    tx: mpsc::Sender<GroupMsg>,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

/// A stream a simulated client has open on a leader.
struct Conn {
    leader: String,
    key: u64,
    out: mpsc::UnboundedReceiver<Out>,
    /// Kept so the stream's end is not taken for a broken connection.
    _done: mpsc::UnboundedReceiver<(u64, u64)>,
}

struct World {
    net: Arc<Net>,
    reps: BTreeMap<String, Rep>,
    keys: u64,
}

impl World {
    async fn start(seed: u64) -> Self {
        let net = Arc::new(Net {
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            dead: Mutex::default(),
            cut: Mutex::default(),
            loss: AtomicU64::new(0),
            groups: Mutex::default(),
        });
        let members: Vec<Replica> = NODES
            .iter()
            .enumerate()
            .map(|(i, n)| Replica {
                id: i as u64 + 1,
                node: n.to_string(),
                voter: true,
            })
            .collect();
        let mut reps = BTreeMap::new();
        let (removed, _) = mpsc::unbounded_channel();
        let (repairs, _) = mpsc::unbounded_channel();
        for (i, name) in NODES.iter().enumerate() {
            let port = Arc::new(Port {
                me: name.to_string(),
                net: net.clone(),
            });
            let (applied_tx, applied_rx) = mpsc::unbounded_channel();
            let raft = RaftGroup::start(
                &GroupId {
                    name: "q".into(),
                    born_ms: 1,
                },
                i as u64 + 1,
                CAPACITY,
                1024,
                None,
                port,
                applied_tx,
            )
            .await
            .expect("start a replica");
            net.groups
                .lock()
                .expect("groups")
                .insert(name.to_string(), raft.clone());
            let shared = Arc::new(Mutex::new(Shared::default()));
            let meta = Meta {
                name: "q".into(),
                node: name.to_string(),
                capacity: CAPACITY,
                max_payload: 1024,
                created_at_ms: 0,
                storage: "memory".into(),
                labels: Vec::new(),
                repair_after: Duration::from_secs(3600),
            };
            let group = Group::new(
                meta,
                raft,
                shared.clone(),
                removed.clone(),
                Arc::new(AtomicU64::new(0)),
                repairs.clone(),
            );
            let (tx, rx) = mpsc::channel(1024);
            let stop = CancellationToken::new();
            tokio::spawn(group.run(rx, applied_rx, stop.clone()));
            reps.insert(name.to_string(), Rep { tx, shared, stop });
        }
        let founder = net.groups.lock().expect("groups")["a"].clone();
        founder.found(&members).await.expect("found");
        Self { net, reps, keys: 1 }
    }

    /// The node that leads and serves, if one does.
    fn leader(&self) -> Option<String> {
        let dead = self.net.dead.lock().expect("net").clone();
        self.reps
            .iter()
            .filter(|(n, _)| !dead.contains(*n))
            .find(|(_, r)| r.shared.lock().expect("shared").serving)
            .map(|(n, _)| n.clone())
    }

    fn alive(&self, node: &str) -> bool {
        !self.net.dead.lock().expect("net").contains(node)
    }

    /// Tells every live replica but `about` that `about` is up or down (the mesh's view).
    fn tell(&self, about: &str, up: bool) {
        for (name, rep) in &self.reps {
            if name != about && self.alive(name) {
                let _ = rep.tx.try_send(GroupMsg::Node {
                    node: about.to_string(),
                    up,
                });
            }
        }
    }

    fn kill(&self, node: &str) {
        self.net.dead.lock().expect("net").insert(node.to_string());
        self.net.groups.lock().expect("groups").remove(node);
        self.reps[node].stop.cancel();
    }

    /// Opens a stream on the leader with `open` (given the key and its output).
    fn open(&mut self, open: impl FnOnce(u64, StreamOut) -> StreamMsg) -> Option<Conn> {
        let leader = self.leader()?;
        self.keys += 1;
        let key = self.keys;
        let (tx, out) = mpsc::unbounded_channel();
        let (done_tx, done) = mpsc::unbounded_channel();
        let msg = open(key, StreamOut::new(key, key, tx, done_tx));
        self.reps[&leader].tx.try_send(GroupMsg::Stream(msg)).ok()?;
        Some(Conn {
            leader,
            key,
            out,
            _done: done,
        })
    }

    fn send(&self, conn: &Conn, msg: StreamMsg) -> bool {
        self.alive(&conn.leader)
            && self.reps[&conn.leader]
                .tx
                .try_send(GroupMsg::Stream(msg))
                .is_ok()
    }
}

/// What one schedule saw.
#[derive(Default)]
struct Tally {
    confirmed: BTreeSet<u64>,
    received: Vec<u64>,
}

/// Reads a stream's output: its frames, or `None` once it ended with an error.
fn drain(conn: &mut Conn) -> Option<Vec<Frame>> {
    let mut frames = Vec::new();
    while let Ok(out) = conn.out.try_recv() {
        match out {
            Out::Frames(mut f) => frames.append(&mut f),
            Out::Msg(ServerMessage::Error { .. }) => return None,
            Out::Msg(_) => {}
        }
    }
    Some(frames)
}

/// Runs one schedule; an error names the broken rule.
/// What it ran: values received, whether a node was killed, and whether one was cut off (and
/// then whether it was unaware of it).
async fn schedule(seed: u64) -> Result<(usize, bool, Option<bool>), String> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut world = World::start(seed).await;
    let total: u64 = rng.u64(40..160);
    // The faults: at most one node killed (a minority of three), one cut off for a while,
    // message loss for a while.
    let kill_at = rng
        .bool()
        .then(|| Duration::from_millis(rng.u64(100..2500)));
    let kill_leader = rng.bool();
    let cut_at = rng
        .bool()
        .then(|| Duration::from_millis(rng.u64(100..2500)));
    let cut_for = Duration::from_millis(rng.u64(300..3000));
    // A cut-off node that is not told the others are down: as a paused one, it finds out
    // only from its own lease and the answers it does not get.
    let unaware = rng.bool();
    let loss = rng.u64(0..80);
    let start = Instant::now();
    let mut tally = Tally::default();
    let (sender_id, receiver_id) = (7u64, 9u64);
    let mut next = 1u64;
    let mut unconfirmed: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut tx_conn: Option<Conn> = None;
    let mut rx_conn: Option<Conn> = None;
    let mut acked: Vec<u64> = Vec::new();
    let mut killed: Option<String> = None;
    let mut cut: Option<(String, Instant)> = None;
    let mut pending_news: Vec<(Instant, String, bool)> = Vec::new();
    let deadline = start + Duration::from_secs(120);
    world
        .net
        .loss
        .store(loss, std::sync::atomic::Ordering::Relaxed);
    loop {
        let now = Instant::now();
        let t = now - start;
        if t > Duration::from_secs(4) {
            world
                .net
                .loss
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        if let (Some(at), None) = (kill_at, &killed) {
            if t >= at {
                let victim = match (kill_leader, world.leader()) {
                    (true, Some(l)) => l,
                    _ => NODES[rng.usize(0..3)].to_string(),
                };
                if cut.as_ref().is_none_or(|(c, _)| *c == victim) {
                    world.kill(&victim);
                    pending_news.push((now + DETECT, victim.clone(), false));
                    killed = Some(victim);
                }
            }
        }
        if let (Some(at), None) = (cut_at, &cut) {
            if t >= at && t < at + Duration::from_millis(50) {
                let node = world
                    .leader()
                    .unwrap_or_else(|| NODES[rng.usize(0..3)].to_string());
                if killed.as_ref().is_none_or(|k| *k == node) && world.alive(&node) {
                    world.net.cut.lock().expect("net").insert(node.clone());
                    pending_news.push((now + DETECT, node.clone(), false));
                    // The cut-off node hears the same of the others (unless unaware).
                    for other in NODES.iter().filter(|n| **n != node && !unaware) {
                        let _ = world.reps[&node].tx.try_send(GroupMsg::Node {
                            node: other.to_string(),
                            up: false,
                        });
                    }
                    cut = Some((node, now + cut_for));
                }
            }
        }
        if let Some((node, until)) = cut.clone() {
            if now >= until {
                world.net.cut.lock().expect("net").remove(&node);
                pending_news.push((now + DETECT, node.clone(), true));
                for other in NODES.iter().filter(|n| **n != node) {
                    if world.alive(other) {
                        let _ = world.reps[&node].tx.try_send(GroupMsg::Node {
                            node: other.to_string(),
                            up: true,
                        });
                    }
                }
                cut = Some((node, deadline + Duration::from_secs(3600)));
            }
        }
        pending_news.retain(|(at, node, up)| {
            if now >= *at {
                world.tell(node, *up);
                false
            } else {
                true
            }
        });
        // The sender: keep the window full, resend on a new stream after a failure.
        while next <= total && unconfirmed.len() < WINDOW {
            let payload = Bytes::from(next.to_be_bytes().to_vec());
            unconfirmed.insert(next, payload.clone());
            if let Some(conn) = &tx_conn {
                let values = vec![(next, payload)];
                if !world.send(
                    conn,
                    StreamMsg::Values {
                        stream: conn.key,
                        values,
                    },
                ) {
                    tx_conn = None;
                }
            }
            next += 1;
        }
        if tx_conn.as_ref().is_some_and(|c| !world.alive(&c.leader)) {
            tx_conn = None;
        }
        match tx_conn.as_mut().map(drain) {
            Some(Some(frames)) => {
                for frame in frames {
                    if let Frame::Signal {
                        op: SignalOp::Accepted,
                        a,
                        b,
                        ..
                    } = frame
                    {
                        for seq in a..a + b {
                            if unconfirmed.remove(&seq).is_some() {
                                tally.confirmed.insert(seq);
                            }
                        }
                    }
                }
            }
            Some(None) => tx_conn = None,
            None => {}
        }
        if tx_conn.is_none() && !unconfirmed.is_empty() {
            let resend: Vec<(u64, Bytes)> =
                unconfirmed.iter().map(|(s, p)| (*s, p.clone())).collect();
            tx_conn = world.open(|stream, out| StreamMsg::OpenSend {
                stream,
                sender: sender_id,
                reserve_from: None,
                out,
            });
            if let Some(conn) = &tx_conn {
                world.send(
                    conn,
                    StreamMsg::Values {
                        stream: conn.key,
                        values: resend,
                    },
                );
            }
        }
        // The receiver: one credit at a time, each value acknowledged as it is taken.
        if rx_conn.as_ref().is_some_and(|c| !world.alive(&c.leader)) {
            rx_conn = None;
        }
        if rx_conn.is_none() {
            let recent: Vec<u64> = acked.iter().rev().take(64).copied().collect();
            rx_conn = world.open(|stream, out| StreamMsg::OpenRecv {
                stream,
                out,
                receiver: Some(receiver_id),
                held: Vec::new(),
                acked: recent,
            });
            if let Some(conn) = &rx_conn {
                world.send(
                    conn,
                    StreamMsg::Signal {
                        stream: conn.key,
                        op: SignalOp::Credit,
                        a: 1,
                        b: 0,
                    },
                );
            }
        }
        match rx_conn.as_mut().map(drain) {
            Some(Some(frames)) => {
                for frame in frames {
                    if let Frame::Data {
                        seq: id, payload, ..
                    } = frame
                    {
                        let value = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                        tally.received.push(value);
                        acked.push(id);
                        let conn = rx_conn.as_ref().expect("open");
                        world.send(
                            conn,
                            StreamMsg::Signal {
                                stream: conn.key,
                                op: SignalOp::Ack,
                                a: 1,
                                b: 0,
                            },
                        );
                        world.send(
                            conn,
                            StreamMsg::Signal {
                                stream: conn.key,
                                op: SignalOp::Credit,
                                a: 1,
                                b: 0,
                            },
                        );
                    }
                }
            }
            Some(None) => rx_conn = None,
            None => {}
        }
        // Capacity: the values confirmed and not yet received are in the channel, and it
        // never holds more than its capacity (those accepted unconfirmed only add to it).
        let waiting = tally
            .confirmed
            .iter()
            .filter(|v| !tally.received.contains(v))
            .count();
        if waiting as u64 > CAPACITY {
            return Err(format!(
                "{waiting} confirmed values wait in a channel of capacity {CAPACITY}"
            ));
        }
        let done = next > total
            && unconfirmed.is_empty()
            && tally.confirmed.iter().all(|v| tally.received.contains(v));
        if done {
            break;
        }
        if now >= deadline {
            return Err(format!(
                "not done after {deadline:?}: {} of {total} confirmed, {} received, leader {:?}",
                tally.confirmed.len(),
                tally.received.len(),
                world.leader()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The contract.
    let mut seen = BTreeSet::new();
    for v in &tally.received {
        if !seen.insert(*v) {
            return Err(format!("value {v} received twice"));
        }
    }
    if tally.received.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!("out of order: {:?}", tally.received));
    }
    if let Some(v) = tally.received.iter().find(|v| **v == 0 || **v > total) {
        return Err(format!("value {v} was never sent"));
    }
    for rep in world.reps.values() {
        rep.stop.cancel();
    }
    Ok((
        tally.received.len(),
        killed.is_some(),
        cut.is_some().then_some(unaware),
    ))
}

#[test]
fn randomized_schedules_keep_the_channel_contract() {
    let count: u64 = std::env::var("CIRCUIT_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seeds: Vec<u64> = match std::env::var("CIRCUIT_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=count).collect(),
    };
    let (mut values, mut kills, mut cuts, mut unaware) = (0, 0, 0, 0);
    for seed in &seeds {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        match rt.block_on(schedule(*seed)) {
            Ok((n, killed, cut)) => {
                values += n;
                kills += usize::from(killed);
                cuts += usize::from(cut.is_some());
                unaware += usize::from(cut == Some(true));
            }
            Err(why) => panic!(
                "schedule {seed} broke the contract: {why} (replay: CIRCUIT_SIM_SEED={seed})"
            ),
        }
    }
    eprintln!(
        "replicated channel simulation: {} schedules ({kills} with a node killed, {cuts} with one \
         cut off, {unaware} of them unaware of it as a paused node is), {values} values, each \
         received once and in order, the capacity never exceeded",
        seeds.len()
    );
}
