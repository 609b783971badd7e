//! One channel as a pure state machine: values, waiting sends, receivers and their credit.
//! Each call takes an event from a stream and records what must be sent in `effects`; the actor
//! (`actor.rs`) turns those into frames. No I/O and no clock here, so every rule of
//! `docs/CHANNELS.md` is unit-tested without sockets.
//!
//! The same machine is what a replicated channel replicates (`broker::replica`): every event
//! is a log entry applied in one order on every replica, and it serializes whole for a
//! snapshot. The events only a replicated channel needs (a leader change, a receiver coming
//! back with what it holds) are in `resume`; receivers that wait and the values recalled for
//! them are in `recall`; room reserved for senders' values is in `slots`.

mod recall;
mod resume;
mod seqs;
mod slots;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use bytes::Bytes;
use circuit_sdk::proto::ErrorCode;

use crate::stream::StreamKey;
use seqs::SeqSet;

/// Most credit one receive stream may hold: a client asking for more is broken.
pub(crate) const MAX_CREDIT: u64 = 1 << 20;
/// Most values one sender may have waiting to be accepted.
pub(crate) const MAX_PENDING_PER_SENDER: u64 = 1 << 16;
/// Most bytes one sender may have waiting to be accepted.
pub(crate) const MAX_PENDING_BYTES_PER_SENDER: u64 = 1 << 28;

/// What the state machine asks the actor to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Tell a sender its value was accepted.
    Accepted { stream: StreamKey, seq: u64 },
    /// A try-send could not be accepted now.
    Full { stream: StreamKey, seq: u64 },
    /// A cancelled send was withdrawn.
    Withdrawn { stream: StreamKey, seq: u64 },
    /// A send failed because the channel is closed.
    Closed { stream: StreamKey, seq: u64 },
    /// A send's payload is over the limit.
    TooLarge {
        stream: StreamKey,
        seq: u64,
        max: u64,
    },
    /// Give a value to a receiver.
    Deliver {
        stream: StreamKey,
        id: u64,
        payload: Bytes,
    },
    /// A try-receive found nothing.
    Empty { stream: StreamKey },
    /// Room is reserved for a sender's values up to seq `upto`.
    Reserve { stream: StreamKey, upto: u64 },
    /// A sender is asked to give back its reservation.
    Revoke { stream: StreamKey },
    /// A receiver is asked to give back up to `n` values its application has not taken.
    Recall { stream: StreamKey, n: u64 },
    /// The channel is closed and drained: the receiver's credit is void.
    Drained { stream: StreamKey },
    /// The stream broke the protocol: end it with this error.
    Fail {
        stream: StreamKey,
        code: ErrorCode,
        message: String,
    },
}

impl Effect {
    /// The stream the effect is for.
    pub fn stream(&self) -> StreamKey {
        match self {
            Effect::Accepted { stream, .. }
            | Effect::Full { stream, .. }
            | Effect::Withdrawn { stream, .. }
            | Effect::Closed { stream, .. }
            | Effect::TooLarge { stream, .. }
            | Effect::Deliver { stream, .. }
            | Effect::Empty { stream }
            | Effect::Reserve { stream, .. }
            | Effect::Revoke { stream }
            | Effect::Recall { stream, .. }
            | Effect::Drained { stream }
            | Effect::Fail { stream, .. } => *stream,
        }
    }
}

/// A value in the channel. `origin` is set while it is not yet accepted (waiting to be
/// buffered, or at capacity 0 on its way to a receiver): acceptance is reported to the sender.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Value {
    id: u64,
    payload: Bytes,
    origin: Option<(u64, u64)>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Recv {
    /// The receiver's own id, when it has one (receivers of a replicated channel): what it
    /// holds is kept for it across a leader change (`resume`).
    id: Option<u64>,
    /// Values this receiver may still be given.
    credit: u64,
    /// Delivered, not yet acknowledged, oldest first.
    in_flight: VecDeque<Value>,
    /// Values delivered on this stream in all (a resumed stream counts what it kept): the
    /// receiver's own count of values received tells which are still on their way.
    delivered: u64,
    /// The receiver's application waits and has taken everything delivered: it is served
    /// before receivers that only prefetch (rule 7), and values others hold are recalled.
    hungry: bool,
    /// Values asked back by a recall not answered yet (0: none).
    recalling: u64,
    /// Values at the front of `in_flight` known to be in the application's hands (after a
    /// recall they are what it kept): not asked back again.
    kept: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendStream {
    sender: u64,
    /// Seqs announced by `TrySend` whose value has not arrived yet.
    try_marks: HashSet<u64>,
    /// Room reserved for this sender's values, if it takes reservations (`slots`).
    slots: Option<slots::Slots>,
}

/// Values and bytes a sender has waiting, to bound what one client can park in the daemon.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Parked {
    count: u64,
    bytes: u64,
}

/// Counts for `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub len: u64,
    pub in_flight: u64,
    pub waiting_senders: u64,
    pub waiting_receivers: u64,
    pub senders: u64,
    pub receivers: u64,
    pub sent: u64,
    pub received: u64,
    pub redelivered: u64,
}

/// One channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChanState {
    cap: u64,
    max_payload: u64,
    closed: bool,
    /// Accepted values waiting for a receiver (always empty at capacity 0).
    buffer: VecDeque<Value>,
    /// Sends waiting for room (or, at capacity 0, for a receiver), in arrival order.
    pending: VecDeque<Value>,
    receivers: HashMap<StreamKey, Recv>,
    /// Credit in the order it was granted: one run per grant. Receivers are served from the
    /// front, so those that started waiting first are served first.
    waiting: VecDeque<(StreamKey, u64)>,
    senders: HashMap<StreamKey, SendStream>,
    /// The stream that currently speaks for each sender id (the latest to open).
    stream_of: HashMap<u64, StreamKey>,
    /// Accepted seqs per sender id, so a retried value is accepted once.
    accepted: HashMap<u64, SeqSet>,
    /// (sender, seq) of values in `pending` or in flight but not accepted.
    outstanding: HashSet<(u64, u64)>,
    parked: HashMap<u64, Parked>,
    /// Sender ids with no stream, and when they lost it: their dedup state is kept for a while
    /// so a reconnecting sender finds it.
    orphans: VecDeque<(u64, u64)>,
    /// Values in flight to receivers whose stream went with a leader, by receiver id: kept for
    /// them until they come back (`resume`) or are given up on.
    detached: HashMap<u64, VecDeque<Value>>,
    in_flight: u64,
    next_id: u64,
    sent: u64,
    received: u64,
    /// Values put back in the queue after a delivery (their receiver went away or gave them
    /// back), to be delivered again. A figure of this copy of the state, for metrics: not in
    /// a replicated channel's snapshots (a new leader counts from 0).
    #[serde(skip)]
    redelivered: u64,
    /// Receivers that wait with nothing in hand, in the order they started waiting.
    hungry: VecDeque<StreamKey>,
    /// Room may be reserved for senders' values (not on a replicated channel, where a send
    /// completes only once a majority holds the value).
    reserving: bool,
    /// Room reserved for values not arrived yet, over all senders: counts as taken.
    reserved: u64,
    /// What to send, in order.
    #[serde(skip)]
    pub effects: Vec<Effect>,
}

/// How long a sender's dedup state outlives its last stream.
pub(crate) const ORPHAN_TTL_MS: u64 = 10 * 60 * 1000;

impl ChanState {
    /// An empty channel.
    pub fn new(cap: u64, max_payload: u64, closed: bool) -> Self {
        Self {
            cap,
            max_payload,
            closed,
            buffer: VecDeque::new(),
            pending: VecDeque::new(),
            receivers: HashMap::default(),
            waiting: VecDeque::new(),
            senders: HashMap::default(),
            stream_of: HashMap::default(),
            accepted: HashMap::default(),
            outstanding: HashSet::default(),
            parked: HashMap::default(),
            orphans: VecDeque::new(),
            detached: HashMap::default(),
            in_flight: 0,
            next_id: 1,
            sent: 0,
            received: 0,
            redelivered: 0,
            hungry: VecDeque::new(),
            reserving: false,
            reserved: 0,
            effects: Vec::new(),
        }
    }

    /// The channel reserves room for the values of senders that ask (a channel one node
    /// owns; see `slots`).
    pub fn with_reservations(mut self) -> Self {
        self.reserving = true;
        self
    }

    /// The capacity.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Counts for `stat`.
    pub fn counts(&self) -> Counts {
        Counts {
            len: self.buffer.len() as u64,
            in_flight: self.in_flight,
            waiting_senders: self.pending.len() as u64,
            // A receiver waits if it asks for values and holds none its application has not
            // taken (a prefetching receiver with values in hand is not waiting).
            waiting_receivers: self
                .receivers
                .values()
                .filter(|r| r.credit > 0 && (r.hungry || r.in_flight.is_empty()))
                .count() as u64,
            senders: self.senders.len() as u64,
            receivers: self.receivers.len() as u64,
            sent: self.sent,
            received: self.received,
            redelivered: self.redelivered,
        }
    }

    /// Room taken: buffered values, accepted values in flight, and room reserved for values
    /// on their way.
    fn occupancy(&self) -> u64 {
        // At capacity 0 nothing is accepted before a receiver acknowledges it.
        if self.cap == 0 {
            0
        } else {
            self.buffer.len() as u64 + self.in_flight + self.reserved
        }
    }

    fn is_drained(&self) -> bool {
        self.closed
            && self.buffer.is_empty()
            && self.pending.is_empty()
            && self.in_flight == 0
            && self.reserved == 0
    }

    /// A send stream opened for `sender`. A sender that reconnects opens a new stream with the
    /// same id; from then on acceptances are reported there. One that takes reservations
    /// names the seq of its next new value (`reserve_from`).
    pub fn open_send(
        &mut self,
        stream: StreamKey,
        sender: u64,
        reserve_from: Option<u64>,
        now_ms: u64,
    ) {
        self.sweep(now_ms);
        let slots = reserve_from
            .filter(|_| self.reserving)
            .map(slots::Slots::from_seq);
        self.senders.insert(
            stream,
            SendStream {
                sender,
                try_marks: HashSet::default(),
                slots,
            },
        );
        self.stream_of.insert(sender, stream);
        self.grant(stream);
    }

    /// A receive stream opened.
    pub fn open_recv(&mut self, stream: StreamKey) {
        self.receivers.insert(stream, Recv::default());
    }

    /// A stream ended (cancelled, or its connection closed). A receiver's unacknowledged values
    /// go back to the head of the queue; a sender's waiting values are dropped unless the
    /// sender has reconnected on another stream (which then speaks for them).
    pub fn stream_gone(&mut self, stream: StreamKey, now_ms: u64) {
        if let Some(recv) = self.receivers.remove(&stream) {
            self.waiting.retain(|(k, _)| *k != stream);
            if recv.hungry {
                self.hungry.retain(|k| *k != stream);
            }
            let n = recv.in_flight.len();
            self.requeue(recv.in_flight, n);
            self.pump();
        } else if let Some(send) = self.senders.remove(&stream) {
            if let Some(slots) = send.slots {
                self.reserved -= slots.outstanding();
                self.pump();
            }
            let sender = send.sender;
            if self.stream_of.get(&sender) == Some(&stream) {
                self.stream_of.remove(&sender);
                let before = self.pending.len();
                let (outstanding, parked) = (&mut self.outstanding, &mut self.parked);
                self.pending.retain(|v| match v.origin {
                    Some((s, seq)) if s == sender => {
                        outstanding.remove(&(s, seq));
                        false
                    }
                    _ => true,
                });
                if before != self.pending.len() {
                    parked.remove(&sender);
                }
                self.orphans.push_back((sender, now_ms));
            }
        }
        self.sweep(now_ms);
    }

    /// Forgets dedup state of senders gone longer than the TTL.
    fn sweep(&mut self, now_ms: u64) {
        while let Some(&(sender, since)) = self.orphans.front() {
            if now_ms.saturating_sub(since) < ORPHAN_TTL_MS {
                break;
            }
            self.orphans.pop_front();
            if !self.stream_of.contains_key(&sender) {
                self.accepted.remove(&sender);
                if !self.outstanding.iter().any(|(s, _)| *s == sender) {
                    self.parked.remove(&sender);
                }
            }
        }
    }

    /// A value arrived on a send stream.
    pub fn send(&mut self, stream: StreamKey, seq: u64, payload: Bytes) {
        let Some(send) = self.senders.get_mut(&stream) else {
            return;
        };
        let sender = send.sender;
        let try_send = !send.try_marks.is_empty() && send.try_marks.remove(&seq);
        // A value with room reserved for it is accepted at once, whatever else holds.
        let (reserved, freed) = send.slots.as_mut().map_or((false, 0), |s| s.arrived(seq));
        self.reserved -= freed;
        let settled = self.accepted.get(&sender);
        let below = settled.map_or(1, |s| s.below);
        let already = settled.is_some_and(|s| s.contains(seq));
        if seq >= below + MAX_PENDING_PER_SENDER {
            // Far ahead of what the sender has had accepted: not a window, a broken client.
            self.effects.push(Effect::Fail {
                stream,
                code: ErrorCode::BadRequest,
                message: format!(
                    "sequence number {seq} is more than {MAX_PENDING_PER_SENDER} ahead of the \
                     sender's oldest unaccepted value; number values from 1, consecutively"
                ),
            });
            return;
        }
        if already {
            // A retry of a value already accepted: confirm it again, keep one copy.
            self.effects.push(Effect::Accepted { stream, seq });
            self.grant(stream);
            return;
        }
        if self.outstanding.contains(&(sender, seq)) {
            // A retry of a value still waiting: its acceptance goes to the current stream.
            return;
        }
        if payload.len() as u64 > self.max_payload {
            let max = self.max_payload;
            self.refuse(sender, seq);
            self.effects.push(Effect::TooLarge { stream, seq, max });
            return;
        }
        if reserved {
            // Its send completed when it was sent: it goes in, ahead of values waiting for
            // room (its room was set aside before they came), and also after a close.
            self.buffer_accepted(sender, seq, payload);
            self.pump();
            self.grant(stream);
            return;
        }
        if self.closed {
            self.refuse(sender, seq);
            self.effects.push(Effect::Closed { stream, seq });
            return;
        }
        if try_send && !self.can_take_now() {
            self.refuse(sender, seq);
            self.effects.push(Effect::Full { stream, seq });
            // Room reserved for others' values that are not coming takes no value's place
            // for long: it is asked back.
            self.revoke_all();
            return;
        }
        // The common case: room in the buffer and nobody ahead. Accept at once.
        if self.cap > 0 && self.pending.is_empty() && self.occupancy() < self.cap {
            self.buffer_accepted(sender, seq, payload);
            if !self.waiting.is_empty() {
                self.pump();
            }
            return;
        }
        let parked = self.parked.entry(sender).or_default();
        if parked.count >= MAX_PENDING_PER_SENDER
            || parked.bytes + payload.len() as u64 > MAX_PENDING_BYTES_PER_SENDER
        {
            self.effects.push(Effect::Fail {
                stream,
                code: ErrorCode::TooManyRequests,
                message: format!(
                    "more than {MAX_PENDING_PER_SENDER} values or {MAX_PENDING_BYTES_PER_SENDER} \
                     bytes waiting to be accepted from one sender"
                ),
            });
            return;
        }
        parked.count += 1;
        parked.bytes += payload.len() as u64;
        self.outstanding.insert((sender, seq));
        let id = self.next_id();
        self.pending.push_back(Value {
            id,
            payload,
            origin: Some((sender, seq)),
        });
        self.pump();
        if !self.pending.is_empty() {
            // A send waits for room: room reserved for values not sent yet is asked back.
            self.revoke_all();
        }
    }

    /// Accepts `seq` of `sender` into the buffer.
    fn buffer_accepted(&mut self, sender: u64, seq: u64, payload: Bytes) {
        self.accept(sender, seq);
        let id = self.next_id();
        self.buffer.push_back(Value {
            id,
            payload,
            origin: None,
        });
    }

    /// The next value on this send stream must not wait.
    pub fn mark_try(&mut self, stream: StreamKey, seq: u64) {
        if let Some(send) = self.senders.get_mut(&stream) {
            if send.try_marks.len() < 1024 {
                send.try_marks.insert(seq);
            } else {
                self.effects.push(Effect::Fail {
                    stream,
                    code: ErrorCode::BadRequest,
                    message: "too many try-sends announced without their values".into(),
                });
            }
        }
    }

    /// Withdraws a send that is still waiting; one already accepted (or on its way to a
    /// receiver at capacity 0) goes ahead.
    pub fn cancel_send(&mut self, stream: StreamKey, seq: u64) {
        let Some(sender) = self.senders.get(&stream).map(|s| s.sender) else {
            return;
        };
        if let Some(pos) = self
            .pending
            .iter()
            .position(|v| v.origin == Some((sender, seq)))
        {
            let v = self.pending.remove(pos).expect("position is in range");
            self.unpark(sender, v.payload.len());
            self.outstanding.remove(&(sender, seq));
            self.refuse(sender, seq);
            self.effects.push(Effect::Withdrawn { stream, seq });
        }
    }

    /// Whether a send would complete without waiting.
    fn can_take_now(&self) -> bool {
        self.pending.is_empty()
            && if self.cap == 0 {
                !self.waiting.is_empty()
            } else {
                self.occupancy() < self.cap
            }
    }

    /// A receiver may be given `n` more values.
    pub fn credit(&mut self, stream: StreamKey, n: u64) {
        let drained = self.is_drained();
        let Some(recv) = self.receivers.get_mut(&stream) else {
            return;
        };
        if n == 0 {
            return;
        }
        if recv.credit + n > MAX_CREDIT {
            self.effects.push(Effect::Fail {
                stream,
                code: ErrorCode::BadRequest,
                message: format!("credit above {MAX_CREDIT}"),
            });
            return;
        }
        if drained {
            self.effects.push(Effect::Drained { stream });
            return;
        }
        recv.credit += n;
        self.waiting.push_back((stream, n));
        self.pump();
    }

    /// A receiver withdraws its outstanding credit.
    pub fn withdraw(&mut self, stream: StreamKey) {
        if let Some(recv) = self.receivers.get_mut(&stream) {
            recv.credit = 0;
            self.waiting.retain(|(k, _)| *k != stream);
            if std::mem::take(&mut recv.hungry) {
                self.hungry.retain(|k| *k != stream);
            }
        }
    }

    /// A receiver wants one value if one is ready now.
    pub fn try_recv(&mut self, stream: StreamKey) {
        if !self.receivers.contains_key(&stream) {
            return;
        }
        let ready = !self.buffer.is_empty() || (self.cap == 0 && !self.pending.is_empty());
        if ready && self.next_taker().is_none() {
            self.receivers.get_mut(&stream).expect("checked").credit += 1;
            self.waiting.push_back((stream, 1));
            self.pump();
        } else if self.is_drained() {
            self.effects.push(Effect::Drained { stream });
        } else {
            self.effects.push(Effect::Empty { stream });
        }
    }

    /// A receiver's application took its `n` oldest delivered values: they leave the channel.
    pub fn ack(&mut self, stream: StreamKey, n: u64) {
        if !self.holds(stream, n, "acknowledged") {
            return;
        }
        let recv = self.receivers.get_mut(&stream).expect("checked");
        recv.kept = recv.kept.saturating_sub(n);
        // Only values still waiting to be accepted (capacity 0) need more than dropping.
        let accepted_now: Vec<(u64, u64, usize)> = recv
            .in_flight
            .drain(..n as usize)
            .filter_map(|v| v.origin.map(|(sender, seq)| (sender, seq, v.payload.len())))
            .collect();
        self.in_flight -= n;
        self.received += n;
        for (sender, seq, len) in accepted_now {
            self.unpark(sender, len);
            self.accept(sender, seq);
        }
        self.pump();
        self.grant_all();
    }

    /// Whether receiver `stream` holds at least `n` values; one that claims more is broken and
    /// its stream fails.
    fn holds(&mut self, stream: StreamKey, n: u64, what: &str) -> bool {
        let Some(held) = self
            .receivers
            .get(&stream)
            .map(|r| r.in_flight.len() as u64)
        else {
            return false;
        };
        if n > held {
            self.effects.push(Effect::Fail {
                stream,
                code: ErrorCode::BadRequest,
                message: format!("{what} {n} values but holds {held}"),
            });
            return false;
        }
        true
    }

    /// A receiver gives back `n` unacknowledged values: the newest `n` of the first `seen`
    /// it was delivered on this stream (those delivered after are on their way to it and
    /// stay in flight).
    pub fn give_back(&mut self, stream: StreamKey, n: u64, seen: u64) {
        let Some(recv) = self.receivers.get_mut(&stream) else {
            return;
        };
        let held = recv.in_flight.len() as u64;
        let on_the_way = recv.delivered.checked_sub(seen).filter(|w| w + n <= held);
        let Some(on_the_way) = on_the_way else {
            self.effects.push(Effect::Fail {
                stream,
                code: ErrorCode::BadRequest,
                message: format!(
                    "returned {n} of {seen} values received, but {} were delivered and {held} \
                     are unacknowledged",
                    recv.delivered
                ),
            });
            return;
        };
        let end = (held - on_the_way) as usize;
        let start = end - n as usize;
        let back: VecDeque<Value> = recv.in_flight.drain(start..end).collect();
        recv.kept = recv.kept.min(start as u64);
        self.requeue(back, n as usize);
        self.pump();
        self.grant_all();
    }

    /// Puts values back in the queue where they were: before every value that came after
    /// them. Usually that is the head; but a value given back later than a younger one (a
    /// receiver returns what it took while what was on its way to it went back first) must
    /// not overtake it.
    fn requeue(&mut self, values: VecDeque<Value>, n: usize) {
        self.in_flight -= n as u64;
        // Youngest first, so that each older value finds its place at once.
        for v in values.into_iter().rev() {
            match v.origin {
                // Not accepted yet (capacity 0): it is a waiting send again, unless the channel
                // was closed meanwhile.
                Some(_) if self.closed => self.fail_closed(&v),
                Some(_) => {
                    self.redelivered += 1;
                    insert_in_order(&mut self.pending, v);
                }
                None => {
                    self.redelivered += 1;
                    insert_in_order(&mut self.buffer, v);
                }
            }
        }
    }

    /// Closes the channel. Waiting sends fail; receivers drain what is buffered, and the
    /// values senders send under their reservations (which are asked back).
    pub fn close(&mut self) -> Result<(), String> {
        if self.closed {
            return Err("channel is already closed".into());
        }
        self.closed = true;
        for v in std::mem::take(&mut self.pending) {
            self.fail_closed(&v);
        }
        self.revoke_all();
        self.pump();
        Ok(())
    }

    /// A value not yet accepted fails because the channel is closed: its sender is told.
    fn fail_closed(&mut self, v: &Value) {
        let (sender, seq) = v.origin.expect("only values not yet accepted can fail");
        self.unpark(sender, v.payload.len());
        self.outstanding.remove(&(sender, seq));
        self.refuse(sender, seq);
        if let Some(&stream) = self.stream_of.get(&sender) {
            self.effects.push(Effect::Closed { stream, seq });
        }
    }

    /// Every open stream, for ending them when the channel is removed.
    pub fn streams(&self) -> Vec<StreamKey> {
        self.senders
            .keys()
            .chain(self.receivers.keys())
            .copied()
            .collect()
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn unpark(&mut self, sender: u64, len: usize) {
        if let Some(p) = self.parked.get_mut(&sender) {
            p.count = p.count.saturating_sub(1);
            p.bytes = p.bytes.saturating_sub(len as u64);
        }
    }

    fn refuse(&mut self, sender: u64, seq: u64) {
        self.accepted.entry(sender).or_default().refuse(seq);
    }

    fn accept(&mut self, sender: u64, seq: u64) {
        self.accepted.entry(sender).or_default().accept(seq);
        if !self.outstanding.is_empty() {
            self.outstanding.remove(&(sender, seq));
        }
        self.sent += 1;
        if let Some(&stream) = self.stream_of.get(&sender) {
            self.effects.push(Effect::Accepted { stream, seq });
        }
    }

    /// Moves values as far as they can go: waiting sends into free room, buffered values (or,
    /// at capacity 0, waiting sends) to receivers — those that wait with nothing in hand
    /// first, then by credit in the order it was granted; then tells receivers of a drained
    /// channel, and recalls values for receivers that still wait.
    fn pump(&mut self) {
        loop {
            if self.cap > 0 {
                while self.occupancy() < self.cap {
                    let Some(mut v) = self.pending.pop_front() else {
                        break;
                    };
                    let (sender, seq) = v.origin.take().expect("waiting values are not accepted");
                    self.unpark(sender, v.payload.len());
                    self.accept(sender, seq);
                    self.buffer.push_back(v);
                }
            }
            let Some((stream, hungry)) = self.next_taker() else {
                break;
            };
            let value = match self.buffer.pop_front() {
                Some(v) => v,
                None if self.cap == 0 => match self.pending.pop_front() {
                    Some(v) => v,
                    None => break,
                },
                None => break,
            };
            if hungry {
                self.hungry.pop_front();
            } else {
                let front = self.waiting.front_mut().expect("checked");
                front.1 -= 1;
                if front.1 == 0 {
                    self.waiting.pop_front();
                }
            }
            let recv = self
                .receivers
                .get_mut(&stream)
                .expect("waiting receivers exist");
            recv.credit -= 1;
            recv.delivered += 1;
            recv.hungry = false;
            self.effects.push(Effect::Deliver {
                stream,
                id: value.id,
                payload: value.payload.clone(),
            });
            recv.in_flight.push_back(value);
            if hungry {
                // It goes to an application that waits for it: never asked back (it would
                // bounce from one waiting receiver to the next).
                recv.kept = recv.in_flight.len() as u64;
            }
            self.in_flight += 1;
        }
        if self.is_drained() && !self.waiting.is_empty() {
            let mut told = HashSet::default();
            for (stream, _) in std::mem::take(&mut self.waiting) {
                if told.insert(stream) {
                    if let Some(r) = self.receivers.get_mut(&stream) {
                        r.credit = 0;
                        r.hungry = false;
                    }
                    self.effects.push(Effect::Drained { stream });
                }
            }
            self.hungry.clear();
        }
        if !self.hungry.is_empty() {
            self.recall();
        }
    }

    /// Who is given the next value: the first receiver that waits with nothing in hand (true),
    /// else the one whose credit is oldest (false). Entries of receivers left without credit
    /// are dropped on the way.
    fn next_taker(&mut self) -> Option<(StreamKey, bool)> {
        while let Some(&stream) = self.hungry.front() {
            match self.receivers.get_mut(&stream) {
                Some(r) if r.credit > 0 => return Some((stream, true)),
                Some(r) => r.hungry = false,
                None => {}
            }
            self.hungry.pop_front();
        }
        while let Some(&(stream, _)) = self.waiting.front() {
            // A receiver served while it waited may have less credit left than its runs say.
            if self.receivers.get(&stream).is_some_and(|r| r.credit > 0) {
                return Some((stream, false));
            }
            self.waiting.pop_front();
        }
        None
    }
}

/// Inserts `v` before the first value of `queue` that came after it (ids grow with arrival).
fn insert_in_order(queue: &mut VecDeque<Value>, v: Value) {
    let at = queue
        .iter()
        .position(|w| w.id > v.id)
        .unwrap_or(queue.len());
    queue.insert(at, v);
}

#[cfg(test)]
mod tests;
