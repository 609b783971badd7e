//! N real `foca` instances built and re-tuned as the daemon's SWIM driver does (its identity,
//! configuration and metadata broadcasts), wired together by the simulated network and driven
//! by the virtual clock, plus what the scenarios observe of them.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use circuitd::membership::config::size_bucket;
use circuitd::membership::meta::{Inbox, MetaBroadcasts};
use circuitd::membership::{NodeId, NodeMeta};
use foca::{
    AccumulatingRuntime, Foca, Member as SwimMember, OwnedNotification, PostcardCodec, Timer,
};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use super::clock::{nanos, EventQueue, Nanos};
use super::network::{addr_of, identity_of, index_of, Network};
use super::tuning::Tuning;

/// One member's SWIM state machine, of the daemon's type.
type Swim = Foca<NodeId, PostcardCodec, StdRng, MetaBroadcasts>;

/// First wait before a joiner that has heard nobody announces again; doubles up to
/// [`JOIN_BACKOFF_MAX`] (the daemon's driver does the same).
pub const JOIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between announces.
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Something that happens to one member at one instant.
enum Event {
    /// The member's process starts and announces itself to member 0.
    Start(usize),
    /// The member's process starts already knowing every other member as alive, as if the
    /// cluster had converged before it (for steady-state scenarios without a join).
    StartWarm(usize),
    /// A joiner that has heard nobody yet announces again.
    Reannounce(usize),
    /// The member's metadata changes: it broadcasts a new version (the driver's `set_meta`).
    Republish(usize),
    /// The member push-pulls foca's member states with a random live member (an
    /// experiment: see [`Tuning::sync_every_ms`]).
    Sync(usize),
    /// A packet arrives.
    Deliver { to: usize, data: Bytes },
    /// A timer foca asked for fires.
    Timer { member: usize, timer: Timer<NodeId> },
}

/// Where a member's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    NotStarted,
    Running,
    Dead,
}

struct Member {
    swim: Swim,
    /// Metadata foca accepted from broadcasts; the daemon merges it into its node table, the
    /// simulation drops it.
    inbox: Inbox,
    /// Version of its own metadata.
    meta_version: u64,
    /// `size_bucket` its configuration was last computed for (the driver re-tunes on change).
    bucket: u32,
    /// Wait before its next announce, while it has heard nobody.
    backoff: Nanos,
    life: Life,
    /// Until when it is busy with the last event (processing-delay model).
    busy_until: Nanos,
    /// Whether its view holds every other member as active: the join's end condition.
    full_view: bool,
    /// Active members in its view after its last event (`num_members`).
    known: usize,
    /// UDP payload bytes sent since the counters were last reset.
    sent_bytes: u64,
    /// Packets sent since the counters were last reset (lost ones included).
    sent_packets: u64,
}

/// A member being watched after it was killed: when it was first suspected, and who has
/// declared it down.
#[derive(Debug)]
pub struct Watch {
    /// The killed member.
    pub subject: usize,
    /// First suspicion anywhere (a prober scheduling its suspect-to-down timer).
    pub first_suspicion: Option<Nanos>,
    /// Which members have declared it down.
    saw_down: Vec<bool>,
    /// How many running members have declared it down.
    pub down_count: usize,
    /// When the last running member declared it down.
    pub down_on_all: Option<Nanos>,
}

/// What went wrong with live members, and protocol errors, over the whole run.
#[derive(Debug, Default)]
pub struct Observations {
    /// Suspicion episodes raised against running members: distinct (member, generation,
    /// incarnation) a prober scheduled a suspect-to-down timer for.
    pub false_suspicions: u64,
    /// Times a member declared a running member down.
    pub false_downs: u64,
    /// Distinct running members that somebody declared down.
    pub falsely_downed: HashSet<usize>,
    /// Members that found themselves declared down and rejoined under a new generation.
    pub rejoins: u64,
    /// Errors foca returned from `handle_data` / `handle_timer` (none expected).
    pub errors: u64,
    /// Suspicion episodes already counted.
    episodes: HashSet<(usize, u64, u16)>,
}

/// Packets and bytes a member sends per second over a window, across running members.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Mean over members of bytes sent per second.
    pub bytes_mean: f64,
    /// The busiest member's bytes per second.
    pub bytes_max: f64,
    /// Mean over members of packets sent per second.
    pub packets_mean: f64,
}

/// A simulated cluster of `n` members on one virtual clock.
pub struct Cluster {
    members: Vec<Member>,
    queue: EventQueue<Event>,
    net: Network,
    runtime: AccumulatingRuntime<NodeId>,
    /// The configuration, by cluster size.
    tuning: Tuning,
    /// How often each member republishes its metadata, if at all.
    republish: Option<Nanos>,
    /// Draws of the simulation itself (push-pull partners), apart from the network's.
    rng: StdRng,
    running: usize,
    full_views: usize,
    /// Sum of `known` over running members.
    known: usize,
    counters_since: Nanos,
    /// What the scenarios read; filled in as events run.
    pub obs: Observations,
    /// Set by [`Cluster::kill`].
    pub watch: Option<Watch>,
}

impl Cluster {
    /// `n` members, none started, each with its own seeded generator. Like the daemon, each
    /// starts with the configuration for a cluster of one and re-tunes itself as its view
    /// grows (`tuning` is the daemon's `swim_config` unless a run overrides it).
    pub fn new(n: usize, tuning: Tuning, net: Network, seed: u64) -> Self {
        let members = (0..n)
            .map(|i| {
                let inbox = Inbox::default();
                let rng =
                    StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                Member {
                    swim: Foca::with_custom_broadcast(
                        identity_of(i),
                        tuning.config(1),
                        rng,
                        PostcardCodec,
                        MetaBroadcasts::new(inbox.clone()),
                    ),
                    inbox,
                    meta_version: 0,
                    bucket: size_bucket(1),
                    backoff: nanos(JOIN_BACKOFF),
                    life: Life::NotStarted,
                    busy_until: 0,
                    full_view: false,
                    known: 0,
                    sent_bytes: 0,
                    sent_packets: 0,
                }
            })
            .collect();
        Self {
            members,
            tuning,
            republish: None,
            rng: StdRng::seed_from_u64(!seed),
            queue: EventQueue::new(),
            net,
            runtime: AccumulatingRuntime::new(),
            running: 0,
            full_views: 0,
            known: 0,
            counters_since: 0,
            obs: Observations::default(),
            watch: None,
        }
    }

    /// Number of members, started or not.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The current virtual time.
    pub fn now(&self) -> Nanos {
        self.queue.now()
    }

    /// Starts member `i` at virtual time `at`; all but member 0 announce to member 0.
    pub fn start_at(&mut self, i: usize, at: Nanos) {
        self.queue.push_at(at, Event::Start(i));
    }

    /// Starts member `i` at virtual time `at` already knowing every other member as alive
    /// (and its metadata already spread: nothing is broadcast).
    pub fn start_warm_at(&mut self, i: usize, at: Nanos) {
        self.queue.push_at(at, Event::StartWarm(i));
    }

    /// From `first` on, member `i` push-pulls foca's state every `--sync-every-ms`, if set.
    pub fn sync_from(&mut self, i: usize, first: Nanos) {
        if self.tuning.sync_every_ms.is_some() {
            self.queue.push_at(first, Event::Sync(i));
        }
    }

    /// From `first` on, member `i` changes its metadata every `every` (e.g. its load average).
    pub fn republish_from(&mut self, i: usize, first: Nanos, every: Nanos) {
        self.republish = Some(every);
        self.queue.push_at(first, Event::Republish(i));
    }

    /// Share of all N·(N−1) view entries that running members hold as active: 1.0 once every
    /// member knows every other.
    pub fn coverage(&self) -> f64 {
        let n = self.members.len();
        self.known as f64 / (n * (n - 1)) as f64
    }

    /// How many of the N·(N−1) view entries running members lack.
    pub fn missing(&self) -> usize {
        let n = self.members.len();
        (n * (n - 1)).saturating_sub(self.known)
    }

    /// How many members are running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether member `i` is running (started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].life == Life::Running
    }

    /// Whether every running member's view holds all the others, and every member runs.
    pub fn converged(&self) -> bool {
        self.running == self.members.len() && self.full_views == self.running
    }

    /// The longest queue of updates still waiting to be piggybacked, over running members.
    pub fn max_backlog(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.life == Life::Running)
            .map(|m| m.swim.updates_backlog())
            .max()
            .unwrap_or(0)
    }

    /// Kills member `i` now: from here on it drops everything. Starts watching it.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert_eq!(m.life, Life::Running, "only a running member can be killed");
        m.life = Life::Dead;
        self.running -= 1;
        if m.full_view {
            m.full_view = false;
            self.full_views -= 1;
        }
        self.known -= std::mem::take(&mut m.known);
        self.watch = Some(Watch {
            subject: i,
            first_suspicion: None,
            saw_down: vec![false; self.members.len()],
            down_count: 0,
            down_on_all: None,
        });
    }

    /// Whether every running member has declared the watched member down.
    pub fn down_on_all(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.down_on_all.is_some())
    }

    /// Zeroes every member's send counters and starts a load window now.
    pub fn reset_counters(&mut self) {
        for m in &mut self.members {
            m.sent_bytes = 0;
            m.sent_packets = 0;
        }
        self.counters_since = self.now();
    }

    /// What running members sent per second since [`Cluster::reset_counters`].
    pub fn load(&self) -> Load {
        let secs = (self.now() - self.counters_since) as f64 / 1e9;
        let running: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.life == Life::Running)
            .collect();
        let n = running.len().max(1) as f64;
        let bytes: Vec<f64> = running.iter().map(|m| m.sent_bytes as f64 / secs).collect();
        Load {
            bytes_mean: bytes.iter().sum::<f64>() / n,
            bytes_max: bytes.iter().copied().fold(0.0, f64::max),
            packets_mean: running
                .iter()
                .map(|m| m.sent_packets as f64 / secs)
                .sum::<f64>()
                / n,
        }
    }

    /// Runs events until `deadline` (the clock ends there) or until `stop` holds after an
    /// event (the clock stays at that event). Returns whether `stop` held.
    pub fn run_until(&mut self, deadline: Nanos, stop: impl Fn(&Self) -> bool) -> bool {
        while let Some(event) = self.queue.pop_until(deadline) {
            self.handle(event);
            if stop(self) {
                return true;
            }
        }
        false
    }

    fn handle(&mut self, event: Event) {
        let who = match &event {
            Event::Start(i)
            | Event::StartWarm(i)
            | Event::Reannounce(i)
            | Event::Republish(i)
            | Event::Sync(i) => *i,
            Event::Deliver { to, .. } => *to,
            Event::Timer { member, .. } => *member,
        };
        let now = self.now();
        let busy = self.net.processing();
        let n = self.members.len();
        let m = &mut self.members[who];
        match (&event, m.life) {
            (Event::Start(_) | Event::StartWarm(_), Life::NotStarted) => {
                m.life = Life::Running;
                self.running += 1;
            }
            (Event::Sync(i), Life::Running) => {
                let i = *i;
                return self.sync(i);
            }
            (_, Life::Running) => {}
            // Not started yet, or dead: the packet or timer goes nowhere.
            _ => return,
        }
        if busy > 0 {
            if m.busy_until > now {
                self.queue.push_at(m.busy_until, event);
                return;
            }
            m.busy_until = now + busy;
        }
        let rt = &mut self.runtime;
        let result = match event {
            Event::Start(i) => {
                // The driver queues its metadata before anything else.
                m.meta_version += 1;
                let meta = meta_of(i, m.meta_version);
                let queued = m.swim.add_broadcast(&meta.to_broadcast()).map(|_| ());
                if i != 0 {
                    self.queue.push_after(m.backoff, Event::Reannounce(i));
                    queued.and(m.swim.announce(NodeId::placeholder(addr_of(0)), rt))
                } else {
                    queued
                }
            }
            Event::Republish(i) => {
                if let Some(every) = self.republish {
                    self.queue.push_after(every, Event::Republish(i));
                }
                m.meta_version += 1;
                let meta = meta_of(i, m.meta_version);
                m.swim
                    .add_broadcast(&meta.to_broadcast())
                    .and_then(|_| m.swim.broadcast(rt))
            }
            Event::StartWarm(i) => {
                let everyone = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| SwimMember::alive(identity_of(j)));
                // Not broadcast: everybody knows already.
                m.swim.apply_many(everyone, false, rt)
            }
            Event::Reannounce(i) => {
                if m.swim.num_members() == 0 {
                    m.backoff = (m.backoff * 2).min(nanos(JOIN_BACKOFF_MAX));
                    self.queue.push_after(m.backoff, Event::Reannounce(i));
                    m.swim.announce(NodeId::placeholder(addr_of(0)), rt)
                } else {
                    Ok(())
                }
            }
            Event::Deliver { data, .. } => m.swim.handle_data(&data, rt),
            Event::Timer { timer, .. } => m.swim.handle_timer(timer, rt),
            // Two members at once, without the processing-delay model: see `sync`.
            Event::Sync(_) => Ok(()),
        };
        if result.is_err() {
            self.obs.errors += 1;
        }
        self.after(who, busy);
    }

    /// What the driver does after every interaction with foca: re-tune when the view crosses
    /// into another size bucket, take the metadata received, and act on foca's output.
    fn after(&mut self, who: usize, busy: Nanos) {
        let m = &mut self.members[who];
        let size = m.swim.num_members() + 1;
        if size_bucket(size) != m.bucket {
            m.bucket = size_bucket(size);
            if m.swim.set_config(self.tuning.config(size)).is_err() {
                self.obs.errors += 1;
            }
        }
        m.inbox.borrow_mut().clear();
        self.drain(who, busy);
    }

    /// Member `i` and a random live member exchange foca's member states, each applying the
    /// other's without re-broadcasting it. Instantaneous: the exchange runs beside SWIM.
    fn sync(&mut self, i: usize) {
        if let Some(every) = self.tuning.sync_every_ms {
            self.queue
                .push_after(nanos(Duration::from_millis(every)), Event::Sync(i));
        }
        let n = self.members.len();
        let Some(j) = (0..8)
            .map(|_| self.rng.random_range(0..n))
            .find(|&j| j != i && self.members[j].life == Life::Running)
        else {
            return;
        };
        for (to, from) in [(i, j), (j, i)] {
            let states: Vec<SwimMember<NodeId>> = self.members[from]
                .swim
                .iter_membership_state()
                .cloned()
                .collect();
            let to_member = &mut self.members[to];
            if to_member
                .swim
                .apply_many(states.into_iter(), false, &mut self.runtime)
                .is_err()
            {
                self.obs.errors += 1;
            }
            self.after(to, 0);
        }
    }

    /// Turns what foca asked for into events, and notes what the scenarios watch.
    fn drain(&mut self, who: usize, busy: Nanos) {
        let now = self.now();
        while let Some((dst, data)) = self.runtime.to_send() {
            let m = &mut self.members[who];
            m.sent_bytes += data.len() as u64;
            m.sent_packets += 1;
            let (Some(to), Some(transit)) = (index_of(dst.addr), self.net.transit()) else {
                continue;
            };
            self.queue
                .push_after(busy + transit, Event::Deliver { to, data });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
            {
                self.suspected(now, member_id, *incarnation);
            }
            self.queue
                .push_after(nanos(after), Event::Timer { member: who, timer });
        }
        while let Some(note) = self.runtime.to_notify() {
            match note {
                OwnedNotification::MemberDown(id) => self.declared_down(now, who, &id),
                OwnedNotification::Rejoin(_) => self.obs.rejoins += 1,
                _ => {}
            }
        }
        let others = self.members.len() - 1;
        let m = &mut self.members[who];
        let known = m.swim.num_members();
        self.known = self.known + known - m.known;
        m.known = known;
        let full = m.life == Life::Running && known == others;
        if full != m.full_view {
            m.full_view = full;
            if full {
                self.full_views += 1;
            } else {
                self.full_views -= 1;
            }
        }
    }

    fn suspected(&mut self, now: Nanos, id: &NodeId, incarnation: u16) {
        let Some(subject) = index_of(id.addr) else {
            return;
        };
        if let Some(w) = self.watch.as_mut().filter(|w| w.subject == subject) {
            w.first_suspicion.get_or_insert(now);
        }
        if self.members[subject].life == Life::Running
            && self
                .obs
                .episodes
                .insert((subject, id.generation, incarnation))
        {
            self.obs.false_suspicions += 1;
        }
    }

    fn declared_down(&mut self, now: Nanos, observer: usize, id: &NodeId) {
        let Some(subject) = index_of(id.addr) else {
            return;
        };
        if self.members[subject].life == Life::Running {
            self.obs.false_downs += 1;
            self.obs.falsely_downed.insert(subject);
        }
        let running = self.running;
        if let Some(w) = self.watch.as_mut().filter(|w| w.subject == subject) {
            if !std::mem::replace(&mut w.saw_down[observer], true) {
                w.down_count += 1;
                if w.down_count == running && w.down_on_all.is_none() {
                    w.down_on_all = Some(now);
                }
            }
        }
    }
}

/// Member `i`'s metadata at `version`: what an idle daemon publishes (no workers, no channels).
fn meta_of(i: usize, version: u64) -> NodeMeta {
    NodeMeta {
        name: format!("node-{i}"),
        generation: 1,
        version,
        daemon_version: "0.1.0".into(),
        started_at_ms: 1_700_000_000_000,
        ..NodeMeta::default()
    }
}
