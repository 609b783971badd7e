//! One channel as a pure state machine: values, waiting sends, receivers and their credit.
//! Each call takes an event from a stream and records what must be sent in `effects`; the actor
//! (`actor.rs`) turns those into frames. No I/O and no clock here, so every rule of
//! `docs/CHANNELS.md` is unit-tested without sockets.
//!
//! The same machine is what a replicated channel replicates (`broker::replica`): every event
//! is a log entry applied in one order on every replica, and it serializes whole for a
//! snapshot. The events only a replicated channel needs (a leader change, a receiver coming
//! back with what it holds) are in `resume`.

mod resume;
mod seqs;

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
    /// The channel is closed and drained: the receiver's credit is void.
    Drained { stream: StreamKey },
    /// The stream broke the protocol: end it with this error.
    Fail {
        stream: StreamKey,
        code: ErrorCode,
        message: String,
    },
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendStream {
    sender: u64,
    /// Seqs announced by `TrySend` whose value has not arrived yet.
    try_marks: HashSet<u64>,
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
            effects: Vec::new(),
        }
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
            waiting_receivers: self.receivers.values().filter(|r| r.credit > 0).count() as u64,
            senders: self.senders.len() as u64,
            receivers: self.receivers.len() as u64,
            sent: self.sent,
            received: self.received,
        }
    }

    /// Values held: buffered plus accepted values in flight.
    fn occupancy(&self) -> u64 {
        // At capacity 0 nothing is accepted before a receiver acknowledges it.
        if self.cap == 0 {
            0
        } else {
            self.buffer.len() as u64 + self.in_flight
        }
    }

    fn is_drained(&self) -> bool {
        self.closed && self.buffer.is_empty() && self.pending.is_empty() && self.in_flight == 0
    }

    /// A send stream opened for `sender`. A sender that reconnects opens a new stream with the
    /// same id; from then on acceptances are reported there.
    pub fn open_send(&mut self, stream: StreamKey, sender: u64, now_ms: u64) {
        self.sweep(now_ms);
        self.senders.insert(
            stream,
            SendStream {
                sender,
                try_marks: HashSet::default(),
            },
        );
        self.stream_of.insert(sender, stream);
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
            let n = recv.in_flight.len();
            self.requeue(recv.in_flight, n);
            self.pump();
        } else if let Some(send) = self.senders.remove(&stream) {
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
        if self.closed {
            self.refuse(sender, seq);
            self.effects.push(Effect::Closed { stream, seq });
            return;
        }
        if try_send && !self.can_take_now() {
            self.refuse(sender, seq);
            self.effects.push(Effect::Full { stream, seq });
            return;
        }
        // The common case: room in the buffer and nobody ahead. Accept at once.
        if self.cap > 0 && self.pending.is_empty() && self.occupancy() < self.cap {
            self.accept(sender, seq);
            let id = self.next_id();
            self.buffer.push_back(Value {
                id,
                payload,
                origin: None,
            });
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
        }
    }

    /// A receiver wants one value if one is ready now.
    pub fn try_recv(&mut self, stream: StreamKey) {
        if !self.receivers.contains_key(&stream) {
            return;
        }
        let ready = !self.buffer.is_empty() || (self.cap == 0 && !self.pending.is_empty());
        if ready && self.waiting.is_empty() {
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

    /// A receiver gives back its `n` newest unacknowledged values.
    pub fn give_back(&mut self, stream: StreamKey, n: u64) {
        if !self.holds(stream, n, "returned") {
            return;
        }
        let recv = self.receivers.get_mut(&stream).expect("checked");
        let keep = recv.in_flight.len() - n as usize;
        let back = recv.in_flight.split_off(keep);
        self.requeue(back, n as usize);
        self.pump();
    }

    /// Puts values back at the head of the queue, oldest first.
    fn requeue(&mut self, values: VecDeque<Value>, n: usize) {
        self.in_flight -= n as u64;
        for v in values.into_iter().rev() {
            match v.origin {
                // Not accepted yet (capacity 0): it is a waiting send again, unless the channel
                // was closed meanwhile.
                Some(_) if self.closed => self.fail_closed(&v),
                Some(_) => self.pending.push_front(v),
                None => self.buffer.push_front(v),
            }
        }
    }

    /// Closes the channel. Waiting sends fail; receivers drain what is buffered.
    pub fn close(&mut self) -> Result<(), String> {
        if self.closed {
            return Err("channel is already closed".into());
        }
        self.closed = true;
        for v in std::mem::take(&mut self.pending) {
            self.fail_closed(&v);
        }
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
    /// at capacity 0, waiting sends) to waiting receivers; then tells receivers of a drained
    /// channel.
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
            let Some(&(stream, _)) = self.waiting.front() else {
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
            let front = self.waiting.front_mut().expect("checked");
            front.1 -= 1;
            if front.1 == 0 {
                self.waiting.pop_front();
            }
            let recv = self
                .receivers
                .get_mut(&stream)
                .expect("waiting receivers exist");
            recv.credit -= 1;
            self.effects.push(Effect::Deliver {
                stream,
                id: value.id,
                payload: value.payload.clone(),
            });
            recv.in_flight.push_back(value);
            self.in_flight += 1;
        }
        if self.is_drained() && !self.waiting.is_empty() {
            let mut told = HashSet::default();
            for (stream, _) in std::mem::take(&mut self.waiting) {
                if told.insert(stream) {
                    if let Some(r) = self.receivers.get_mut(&stream) {
                        r.credit = 0;
                    }
                    self.effects.push(Effect::Drained { stream });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1024;

    fn v(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn take(st: &mut ChanState) -> Vec<Effect> {
        std::mem::take(&mut st.effects)
    }

    fn delivered(effects: &[Effect]) -> Vec<(StreamKey, Bytes)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver {
                    stream, payload, ..
                } => Some((*stream, payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn accepted(effects: &[Effect]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Accepted { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rule_2_rendezvous_accepts_on_ack_and_a_returned_value_waits_again() {
        let mut st = ChanState::new(0, MAX, false);
        st.open_send(1, 100, 0);
        st.open_recv(2);
        st.open_recv(3);
        st.send(1, 1, v("a"));
        assert!(
            take(&mut st).is_empty(),
            "nothing happens without a receiver"
        );
        assert_eq!(st.counts().waiting_senders, 1);
        st.credit(2, 1);
        assert_eq!(delivered(&take(&mut st)), [(2, v("a"))]);
        // The receiver goes away before acknowledging: the send is waiting again.
        st.stream_gone(2, 0);
        assert_eq!(st.counts().waiting_senders, 1);
        st.credit(3, 1);
        assert_eq!(delivered(&take(&mut st)), [(3, v("a"))]);
        st.ack(3, 1);
        assert_eq!(accepted(&take(&mut st)), [1]);
        let c = st.counts();
        assert_eq!((c.sent, c.received, c.in_flight), (1, 1, 0));
    }

    #[test]
    fn rule_9_capacity_counts_buffered_and_in_flight() {
        let mut st = ChanState::new(2, MAX, false);
        st.open_send(1, 100, 0);
        st.open_recv(2);
        for seq in 1..=4 {
            st.send(1, seq, v("x"));
        }
        assert_eq!(accepted(&take(&mut st)), [1, 2]);
        st.credit(2, 1);
        take(&mut st);
        let c = st.counts();
        assert_eq!((c.len, c.in_flight, c.waiting_senders), (1, 1, 2));
        st.ack(2, 1);
        assert_eq!(accepted(&take(&mut st)), [3]);
    }

    #[test]
    fn rule_7_receivers_are_served_in_the_order_they_waited() {
        let mut st = ChanState::new(4, MAX, false);
        st.open_send(1, 100, 0);
        for r in [5, 6, 7] {
            st.open_recv(r);
        }
        st.credit(6, 1);
        st.credit(5, 1);
        st.credit(7, 1);
        for (seq, s) in [(1, "a"), (2, "b"), (3, "c")] {
            st.send(1, seq, v(s));
        }
        let got = delivered(&take(&mut st));
        assert_eq!(got, [(6, v("a")), (5, v("b")), (7, v("c"))]);
    }

    #[test]
    fn rule_10_a_retried_value_is_accepted_once() {
        let mut st = ChanState::new(8, MAX, false);
        st.open_send(1, 100, 0);
        st.send(1, 1, v("a"));
        take(&mut st);
        // The sender reconnects on stream 2 and sends seq 1 again, then seq 2.
        st.stream_gone(1, 0);
        st.open_send(2, 100, 0);
        st.send(2, 1, v("a"));
        st.send(2, 2, v("b"));
        assert_eq!(accepted(&take(&mut st)), [1, 2]);
        assert_eq!(st.counts().len, 2, "one copy of seq 1");
    }

    #[test]
    fn rule_10_a_retry_of_a_waiting_value_keeps_one_copy() {
        let mut st = ChanState::new(0, MAX, false);
        st.open_send(1, 100, 0);
        st.send(1, 1, v("a"));
        // The new stream opens before the old one is known to be gone.
        st.open_send(2, 100, 0);
        st.send(2, 1, v("a"));
        st.stream_gone(1, 0);
        assert_eq!(st.counts().waiting_senders, 1);
        st.open_recv(3);
        st.credit(3, 5);
        assert_eq!(delivered(&take(&mut st)).len(), 1);
        st.ack(3, 1);
        let e = take(&mut st);
        assert_eq!(e, [Effect::Accepted { stream: 2, seq: 1 }]);
    }

    #[test]
    fn rule_5_close_fails_waiting_sends_and_drains_receivers() {
        let mut st = ChanState::new(1, MAX, false);
        st.open_send(1, 100, 0);
        st.open_recv(2);
        st.send(1, 1, v("a"));
        st.send(1, 2, v("b"));
        take(&mut st);
        st.close().expect("close");
        assert_eq!(take(&mut st), [Effect::Closed { stream: 1, seq: 2 }]);
        assert!(st.close().is_err(), "second close");
        st.send(1, 3, v("c"));
        assert_eq!(take(&mut st), [Effect::Closed { stream: 1, seq: 3 }]);
        st.credit(2, 2);
        let e = take(&mut st);
        assert_eq!(delivered(&e), [(2, v("a"))]);
        st.ack(2, 1);
        assert_eq!(take(&mut st), [Effect::Drained { stream: 2 }]);
    }

    #[test]
    fn rule_11_try_send_and_try_recv_never_wait() {
        let mut st = ChanState::new(0, MAX, false);
        st.open_send(1, 100, 0);
        st.open_recv(2);
        st.mark_try(1, 1);
        st.send(1, 1, v("a"));
        assert_eq!(take(&mut st), [Effect::Full { stream: 1, seq: 1 }]);
        st.try_recv(2);
        assert_eq!(take(&mut st), [Effect::Empty { stream: 2 }]);
        st.send(1, 2, v("b"));
        st.try_recv(2);
        assert_eq!(delivered(&take(&mut st)), [(2, v("b"))]);
    }

    #[test]
    fn rule_13_and_protocol_violations() {
        let mut st = ChanState::new(2, 3, false);
        st.open_send(1, 100, 0);
        st.open_recv(2);
        st.send(1, 1, v("toolong"));
        assert_eq!(
            take(&mut st),
            [Effect::TooLarge {
                stream: 1,
                seq: 1,
                max: 3
            }]
        );
        st.ack(2, 1);
        assert!(matches!(
            take(&mut st)[..],
            [Effect::Fail { stream: 2, .. }]
        ));
        st.credit(2, MAX_CREDIT + 1);
        assert!(matches!(
            take(&mut st)[..],
            [Effect::Fail { stream: 2, .. }]
        ));
    }

    #[test]
    fn rule_16_a_cancelled_send_is_withdrawn_only_while_waiting() {
        let mut st = ChanState::new(1, MAX, false);
        st.open_send(1, 100, 0);
        st.send(1, 1, v("a"));
        st.send(1, 2, v("b"));
        take(&mut st);
        st.cancel_send(1, 1);
        assert!(take(&mut st).is_empty(), "already accepted: it stays");
        st.cancel_send(1, 2);
        assert_eq!(take(&mut st), [Effect::Withdrawn { stream: 1, seq: 2 }]);
        assert_eq!(st.counts().waiting_senders, 0);
    }

    #[test]
    fn refused_seqs_keep_the_window_moving_and_a_retry_is_judged_again() {
        let mut st = ChanState::new(1, MAX, false);
        st.open_send(1, 100, 0);
        st.send(1, 1, v("a"));
        st.mark_try(1, 2);
        st.send(1, 2, v("b"));
        assert_eq!(take(&mut st)[1], Effect::Full { stream: 1, seq: 2 });
        assert_eq!(st.accepted[&100].below, 3, "a refusal settles its seq");
        assert!(st.accepted[&100].above.is_empty());
        // The refusal was lost with the connection; the retry is refused again, not accepted.
        st.mark_try(1, 2);
        st.send(1, 2, v("b"));
        assert_eq!(take(&mut st), [Effect::Full { stream: 1, seq: 2 }]);
        // Seqs far ahead of the window are a broken client.
        st.send(1, 3 + MAX_PENDING_PER_SENDER, v("x"));
        assert!(matches!(
            take(&mut st)[..],
            [Effect::Fail { stream: 1, .. }]
        ));
    }

    #[test]
    fn dedup_state_of_a_gone_sender_expires() {
        let mut st = ChanState::new(4, MAX, false);
        st.open_send(1, 100, 0);
        st.send(1, 1, v("a"));
        st.stream_gone(1, 0);
        assert!(st.accepted.contains_key(&100));
        st.open_send(2, 200, ORPHAN_TTL_MS + 1);
        assert!(!st.accepted.contains_key(&100));
    }
}
