//! The receiving half of a channel as a sans-IO state machine: the values delivered and not
//! yet taken, the credit the owner holds for this receiver (one per waiting `recv`, or topped
//! up to `prefetch`), the acknowledgements owed (counted in the order values were taken, as the
//! owner counts them), try-receives, give-backs, close, and what a reconnect forgets. Each
//! call takes an event — a take by the application, an ack or give-back of a `Delivery`, a
//! dropped `recv`, frames from the owner, a stream lost, reopened or failed, close or drop —
//! and records what to write in `effects`; acknowledgements and credit wait to be pulled by the
//! connection's writer (`pull`), so those made while it is busy go out as one frame.
//! `receiver.rs` is the async shell around it. No I/O, no locks, no clock. The unit tests are
//! named after the rules of `docs/CHANNELS.md` they check.

use std::collections::{BTreeSet, VecDeque};
use std::task::Poll;

use bytes::Bytes;

use super::stream_state::{Effect, Lost, StreamState};

/// Most acknowledged ids remembered for a resume.
const RECENT_ACKED: usize = 4096;
use super::ChanError;
use crate::proto::{Frame, SignalOp};

/// One receiver's side of its receive stream.
#[derive(Debug)]
pub(crate) struct RecvState {
    /// The stream it speaks on.
    pub stream: StreamState,
    /// Values it may hold before the application asks for them (at least 1).
    prefetch: u64,
    /// Delivered values the application has not taken yet, oldest first, with their ids.
    buf: VecDeque<(u64, Bytes)>,
    /// Ids of the values delivered and not yet acknowledged, in the order they came: what the
    /// owner counts as in flight to this receiver (acknowledgements count from the front).
    unacked: VecDeque<u64>,
    /// Ids of the values acknowledged lately (up to [`RECENT_ACKED`]), newest last: a receiver
    /// of a replicated channel names them when it comes back to a new leader, which may not
    /// have applied those acknowledgements yet.
    recent_acked: VecDeque<u64>,
    /// The channel is replicated: a lost stream resumes with what it holds (the new leader
    /// keeps it for this receiver) instead of forgetting it.
    replicated: bool,
    /// Takes belong to an epoch; a `Delivery` of an earlier epoch is void (its value went back
    /// when the stream was lost). A replicated channel's resume keeps the epoch.
    epoch: u64,
    /// Credit the owner holds for us.
    credit: u64,
    /// Acknowledgements to send (a count: values leave in the order they were delivered).
    to_ack: u64,
    /// Values the application has taken on this stream: the index of the next take.
    taken: u64,
    /// Every take below this index is acknowledged (or counted in `to_ack`).
    ack_upto: u64,
    /// Takes acknowledged ahead of an older, unacknowledged `Delivery`.
    acked_ahead: BTreeSet<u64>,
    /// Credit to grant.
    to_credit: u64,
    /// Outstanding credit to withdraw.
    withdraw: bool,
    /// A pull is queued on the writer.
    pull_queued: bool,
    /// A try-receive is waiting for its answer.
    trying: bool,
    /// The owner answered a try-receive with nothing.
    empty: bool,
    /// The channel is closed and drained.
    drained: bool,
    /// This side ended the stream (closed or dropped): nothing more is written.
    ended: bool,
    /// What to do, in order.
    pub effects: Vec<Effect>,
}

impl RecvState {
    /// A receiver that holds up to `prefetch` values ahead (clamped to 1..=65,536).
    pub fn new(prefetch: u32) -> Self {
        Self {
            stream: StreamState::default(),
            prefetch: u64::from(prefetch.clamp(1, 1 << 16)),
            buf: VecDeque::new(),
            unacked: VecDeque::new(),
            recent_acked: VecDeque::new(),
            replicated: false,
            epoch: 1,
            credit: 0,
            to_ack: 0,
            taken: 0,
            ack_upto: 0,
            acked_ahead: BTreeSet::new(),
            to_credit: 0,
            withdraw: false,
            pull_queued: false,
            trying: false,
            empty: false,
            drained: false,
            ended: false,
            effects: Vec::new(),
        }
    }

    /// The stream opened as `id`, on a channel held by `replicas` nodes.
    pub fn opened(&mut self, id: u64, replicas: u32) {
        self.stream.id = id;
        self.replicated = replicas > 1;
    }

    /// Whether the channel is replicated.
    pub fn replicated(&self) -> bool {
        self.replicated
    }

    /// The epoch of the takes made now (for a `Delivery`).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What a reopened stream of a replicated channel tells the leader: the ids it holds and
    /// has not acknowledged (in the order they came), and those it acknowledged lately.
    pub fn resume_info(&self) -> (Vec<u64>, Vec<u64>) {
        if !self.replicated {
            return (Vec::new(), Vec::new());
        }
        (
            self.unacked.iter().copied().collect(),
            self.recent_acked.iter().copied().collect(),
        )
    }

    /// True once this side ended the stream: its connection is not needed any more.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The application takes the oldest delivered value (acknowledging it unless `manual`):
    /// the value and the index of the take. With nothing delivered, it fails if the receiver
    /// failed or the channel is drained; otherwise it asks for a value (credit, if none is
    /// asked for yet) and the caller waits.
    pub fn take(&mut self, manual: bool) -> Poll<Result<(Bytes, u64), ChanError>> {
        if let Some((_, payload)) = self.buf.pop_front() {
            let index = self.count_take(manual);
            // With prefetch, keep the owner's credit topped up while the application reads.
            if self.prefetch > 1 {
                let held = self.buf.len() as u64 + self.credit;
                if held <= self.prefetch / 2 {
                    let more = self.prefetch - held;
                    self.to_credit += more;
                    self.credit += more;
                }
            }
            if self.to_credit > 0 || self.buf.is_empty() || self.to_ack >= self.prefetch / 4 {
                self.schedule();
            }
            return Poll::Ready(Ok((payload, index)));
        }
        if let Some(e) = &self.stream.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if self.drained {
            return Poll::Ready(Err(ChanError::Closed));
        }
        if self.credit == 0 && !self.stream.reconnecting {
            self.credit = self.prefetch;
            self.to_credit += self.prefetch;
            self.withdraw = false;
            self.schedule();
        }
        Poll::Pending
    }

    /// A try-receive starts: unless a value is here already (or none can come), the owner is
    /// asked for one now.
    pub fn try_recv(&mut self) {
        if self.buf.is_empty() && self.stream.failed.is_none() && !self.drained {
            self.trying = true;
            self.empty = false;
            if !self.stream.reconnecting && !self.ended {
                let ask = self.stream.signal(SignalOp::TryRecv, 0);
                self.effects.push(Effect::Write(ask));
            }
        }
    }

    /// The answer to a try-receive: a value (acknowledged), or `Empty` once the owner said so
    /// (or no try is under way); `Pending` while the answer is on its way.
    pub fn try_take(&mut self) -> Poll<Result<Bytes, ChanError>> {
        if let Some((_, payload)) = self.buf.pop_front() {
            self.trying = false;
            self.count_take(false);
            self.schedule();
            return Poll::Ready(Ok(payload));
        }
        if let Some(e) = &self.stream.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if self.drained {
            return Poll::Ready(Err(ChanError::Closed));
        }
        if self.empty || !self.trying {
            self.trying = false;
            self.empty = false;
            return Poll::Ready(Err(ChanError::Empty));
        }
        Poll::Pending
    }

    /// The application acknowledged take `index` of epoch `epoch`.
    pub fn ack_take(&mut self, epoch: u64, index: u64) {
        if epoch != self.epoch {
            // The stream it came from is gone; the owner has put the value back already.
            return;
        }
        self.mark_acked(index);
        self.schedule();
    }

    /// A delivery was dropped unacknowledged: if it is the newest take, it goes back to the
    /// channel with everything delivered after it; otherwise it stays in flight.
    pub fn give_back(&mut self, epoch: u64, index: u64) {
        if epoch != self.epoch || self.stream.reconnecting || self.ended || index + 1 != self.taken
        {
            return;
        }
        let n = self.buf.len() as u64 + 1;
        self.buf.clear();
        for _ in 0..n {
            self.unacked.pop_back();
        }
        self.taken -= 1;
        let back = self.stream.signal(SignalOp::Return, n);
        self.effects.push(Effect::Write(back));
    }

    /// A waiting `recv` was dropped: with one-at-a-time credit (no prefetch), the demand is
    /// taken back, so this receiver does not hold a value it is not waiting for.
    pub fn cancel_demand(&mut self) {
        if self.prefetch > 1 {
            return;
        }
        if self.credit > 0 {
            self.credit = 0;
            self.to_credit = 0;
            self.withdraw = true;
            self.schedule();
        }
    }

    /// Frames from the owner on stream generation `gen`: values, and answers to credit and
    /// tries. Returns whether a waiting receive should look again.
    pub fn on_frames(&mut self, gen: u64, frames: Vec<Frame>) -> bool {
        if gen != self.stream.gen {
            return false;
        }
        for frame in frames {
            match frame {
                Frame::Data { seq, payload, .. } => {
                    self.buf.push_back((seq, payload));
                    self.unacked.push_back(seq);
                    self.credit = self.credit.saturating_sub(1);
                }
                Frame::Signal {
                    op: SignalOp::Empty,
                    ..
                } => self.empty = true,
                Frame::Signal {
                    op: SignalOp::Drained,
                    ..
                } => {
                    self.drained = true;
                    self.credit = 0;
                }
                other => {
                    let e = ChanError::Protocol(format!(
                        "unexpected frame on a receive stream: {other:?}"
                    ));
                    self.fail(gen, e);
                    return true;
                }
            }
        }
        true
    }

    /// What the writer writes for this receiver now (pulled with `token`, the generation it
    /// was scheduled for): the acknowledgements owed as one `ack n`, a withdrawal, new credit.
    pub fn pull(&mut self, token: u64, out: &mut Vec<Frame>) {
        if token != self.stream.gen {
            return;
        }
        self.pull_queued = false;
        if self.to_ack > 0 {
            out.push(
                self.stream
                    .signal(SignalOp::Ack, std::mem::take(&mut self.to_ack)),
            );
        }
        if std::mem::take(&mut self.withdraw) {
            out.push(self.stream.signal(SignalOp::Withdraw, 0));
        }
        if self.to_credit > 0 {
            let credit = std::mem::take(&mut self.to_credit);
            out.push(self.stream.signal(SignalOp::Credit, credit));
        }
    }

    /// `close`: acknowledges what the application took and asks the owner to end the stream
    /// (it puts back everything else). True if the caller should wait for the owner's answer;
    /// false if there is no stream to close (failed, reopening, or closed already).
    pub fn close(&mut self) -> bool {
        if self.stream.reconnecting || self.stream.failed.is_some() || self.ended {
            return false;
        }
        self.stream.failed = Some(ChanError::Protocol("receiver closed".into()));
        self.ended = true;
        self.write_acks();
        self.effects.push(Effect::Cancel(self.stream.id));
        true
    }

    /// The receiver was dropped: acknowledges what the application took and ends the stream;
    /// the owner puts everything else this receiver held back at the head of the queue.
    pub fn dropped(&mut self) {
        self.stream
            .failed
            .get_or_insert(ChanError::Protocol("receiver dropped".into()));
        if self.stream.reconnecting || self.ended {
            return;
        }
        self.ended = true;
        self.write_acks();
        self.effects.push(Effect::End(self.stream.id));
    }

    /// The connection of generation `gen` is gone: reconnect and ask again.
    pub fn lost(&mut self, gen: u64) -> Lost {
        self.stream.lost(gen)
    }

    /// Generation `gen` was reopened as stream `id`. A channel one node owns took back what
    /// this receiver held with the old connection, so it is forgotten and a waiting receive
    /// asks again. A replicated channel's new leader kept it for this receiver (it named what
    /// it holds and acknowledged when it reopened): it stays, acknowledgements owed were
    /// named too, and credit starts afresh. False if the receiver no longer wants the stream.
    pub fn resumed(&mut self, gen: u64, id: u64) -> bool {
        if !self.stream.resumed(gen, id) {
            return false;
        }
        if !self.replicated {
            self.buf.clear();
            self.unacked.clear();
            self.taken = 0;
            self.ack_upto = 0;
            self.acked_ahead.clear();
            self.epoch = self.stream.gen;
        }
        self.credit = 0;
        self.to_ack = 0;
        self.to_credit = 0;
        self.withdraw = false;
        self.pull_queued = false;
        self.trying = false;
        true
    }

    /// The receiver fails for good: every later receive fails with `error`. Returns whether a
    /// waiting receive should look again.
    pub fn fail(&mut self, gen: u64, error: ChanError) -> bool {
        self.stream.fail(gen, error)
    }

    /// Counts a take; unless `manual`, it is acknowledged at once. Returns its index.
    fn count_take(&mut self, manual: bool) -> u64 {
        let index = self.taken;
        self.taken += 1;
        if !manual {
            self.mark_acked(index);
        }
        index
    }

    /// Acknowledges take `index`; acknowledgements go out in take order, as the owner counts
    /// them.
    fn mark_acked(&mut self, index: u64) {
        if index != self.ack_upto {
            self.acked_ahead.insert(index);
            return;
        }
        self.ack_upto += 1;
        self.acked_one();
        while self.acked_ahead.remove(&self.ack_upto) {
            self.ack_upto += 1;
            self.acked_one();
        }
    }

    /// The oldest unacknowledged value is acknowledged.
    fn acked_one(&mut self) {
        self.to_ack += 1;
        if let Some(id) = self.unacked.pop_front() {
            if self.replicated {
                if self.recent_acked.len() == RECENT_ACKED {
                    self.recent_acked.pop_front();
                }
                self.recent_acked.push_back(id);
            }
        }
    }

    /// Has the writer pull this receiver's frames when it next writes, unless a pull is queued
    /// already (or nothing can be written).
    fn schedule(&mut self) {
        if self.pull_queued || self.stream.reconnecting || self.ended {
            return;
        }
        self.pull_queued = true;
        self.effects.push(Effect::Pull(self.stream.gen));
    }

    /// Writes the acknowledgements owed now, not at the next pull (the stream is ending).
    fn write_acks(&mut self) {
        if self.to_ack > 0 {
            let ack = self
                .stream
                .signal(SignalOp::Ack, std::mem::take(&mut self.to_ack));
            self.effects.push(Effect::Write(ack));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: u64 = 3;

    fn receiver(prefetch: u32) -> RecvState {
        let mut st = RecvState::new(prefetch);
        st.opened(STREAM, 1);
        st
    }

    fn v(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn values(vs: &[&'static str]) -> Vec<Frame> {
        vs.iter()
            .zip(1..)
            .map(|(s, seq)| Frame::Data {
                id: STREAM,
                seq,
                payload: v(s),
            })
            .collect()
    }

    fn from_owner(op: SignalOp) -> Vec<Frame> {
        vec![Frame::Signal {
            id: STREAM,
            op,
            a: 0,
            b: 0,
        }]
    }

    fn effects(st: &mut RecvState) -> Vec<Effect> {
        std::mem::take(&mut st.effects)
    }

    /// What the writer writes when it gets to the pulls queued.
    fn pulled(st: &mut RecvState) -> Vec<(SignalOp, u64)> {
        st.effects.retain(|e| !matches!(e, Effect::Pull(_)));
        let mut out = Vec::new();
        st.pull(st.stream.gen, &mut out);
        out.into_iter()
            .map(|f| match f {
                Frame::Signal { op, a, .. } => (op, a),
                other => panic!("a pull writes signals only, not {other:?}"),
            })
            .collect()
    }

    fn taken(st: &mut RecvState, manual: bool) -> (Bytes, u64) {
        match st.take(manual) {
            Poll::Ready(Ok(got)) => got,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn rule_2_a_value_is_asked_for_by_a_waiting_recv_and_acknowledged_as_it_is_taken() {
        let mut st = receiver(1);
        assert!(st.take(false).is_pending());
        assert_eq!(effects(&mut st), [Effect::Pull(1)]);
        assert_eq!(
            pulled(&mut st),
            [(SignalOp::Credit, 1)],
            "one credit per recv"
        );
        // Waiting again asks for nothing more: the credit is out.
        assert!(st.take(false).is_pending());
        assert!(effects(&mut st).is_empty());
        assert!(st.on_frames(1, values(&["a"])));
        assert_eq!(taken(&mut st, false).0, v("a"));
        assert_eq!(effects(&mut st), [Effect::Pull(1)]);
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 1)]);
    }

    #[test]
    fn rule_4_recv_takes_the_oldest_value_first() {
        let mut st = receiver(4);
        assert!(st.take(false).is_pending());
        st.on_frames(1, values(&["a", "b", "c"]));
        let got: Vec<Bytes> = (0..3).map(|_| taken(&mut st, false).0).collect();
        assert_eq!(got, [v("a"), v("b"), v("c")]);
    }

    #[test]
    fn rule_5_drained_ends_receiving_with_closed_after_what_is_buffered() {
        let mut st = receiver(4);
        assert!(st.take(false).is_pending());
        st.on_frames(1, values(&["a"]));
        st.on_frames(1, from_owner(SignalOp::Drained));
        assert_eq!(taken(&mut st, false).0, v("a"));
        assert_eq!(st.take(false), Poll::Ready(Err(ChanError::Closed)));
        assert_eq!(st.take(false), Poll::Ready(Err(ChanError::Closed)), "final");
    }

    #[test]
    fn rule_8_a_delivery_leaves_the_channel_only_when_acknowledged() {
        let mut st = receiver(1);
        assert!(st.take(true).is_pending());
        pulled(&mut st);
        st.on_frames(1, values(&["a"]));
        let (_, index) = taken(&mut st, true);
        effects(&mut st);
        assert_eq!(pulled(&mut st), [], "taken, not acknowledged");
        st.ack_take(1, index);
        assert_eq!(effects(&mut st), [Effect::Pull(1)]);
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 1)]);
    }

    #[test]
    fn rule_8_acknowledgements_go_out_in_take_order() {
        let mut st = receiver(4);
        assert!(st.take(true).is_pending());
        st.on_frames(1, values(&["a", "b", "c"]));
        let first = taken(&mut st, true).1;
        let second = taken(&mut st, true).1;
        pulled(&mut st);
        // The newer one is acknowledged first: the owner counts in delivery order, so it waits.
        st.ack_take(1, second);
        assert_eq!(pulled(&mut st), []);
        st.ack_take(1, first);
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 2)]);
    }

    #[test]
    fn rule_8_a_dropped_newest_delivery_goes_back_with_what_came_after_it() {
        let mut st = receiver(4);
        assert!(st.take(true).is_pending());
        st.on_frames(1, values(&["a", "b", "c"]));
        let older = taken(&mut st, true).1;
        let newest = taken(&mut st, true).1;
        effects(&mut st);
        // Not the newest take: it stays in flight.
        st.give_back(1, older);
        assert!(effects(&mut st).is_empty());
        st.give_back(1, newest);
        let back = Frame::Signal {
            id: STREAM,
            op: SignalOp::Return,
            a: 2,
            b: 0,
        };
        assert_eq!(
            effects(&mut st),
            [Effect::Write(back)],
            "b and the undelivered c"
        );
        assert!(st.take(true).is_pending(), "c went back too");
    }

    #[test]
    fn rule_9_prefetch_keeps_at_most_n_values_coming_and_tops_up_at_half() {
        let mut st = receiver(8);
        assert!(st.take(false).is_pending());
        assert_eq!(pulled(&mut st), [(SignalOp::Credit, 8)]);
        st.on_frames(1, values(&["1", "2", "3", "4", "5", "6", "7", "8"]));
        // Holding 7, 6, 5: no more credit yet.
        for _ in 0..3 {
            taken(&mut st, false);
        }
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 3)]);
        // Holding 4 (half): topped up to 8 again, never more.
        taken(&mut st, false);
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 1), (SignalOp::Credit, 4)]);
    }

    #[test]
    fn rule_10_a_reconnected_receiver_forgets_what_it_held_and_asks_again() {
        let mut st = receiver(4);
        assert!(st.take(true).is_pending());
        st.on_frames(1, values(&["a", "b"]));
        let (_, index) = taken(&mut st, true);
        effects(&mut st);
        assert_eq!(st.lost(1), Lost::Reconnect);
        // While reopening: nothing is asked for or written.
        st.ack_take(1, index);
        assert!(matches!(st.take(true), Poll::Ready(Ok((b, _))) if b == v("b")));
        assert!(effects(&mut st).is_empty());
        assert!(st.resumed(1, 8));
        // The old generation's late frames and acks are stale.
        assert!(!st.on_frames(1, values(&["x"])));
        st.ack_take(1, index);
        assert!(st.take(false).is_pending(), "what it held went back");
        assert_eq!(effects(&mut st), [Effect::Pull(2)]);
        let mut out = Vec::new();
        st.pull(2, &mut out);
        let credit = Frame::Signal {
            id: 8,
            op: SignalOp::Credit,
            a: 4,
            b: 0,
        };
        assert_eq!(out, [credit], "asked again on the new stream, no stale ack");
    }

    #[test]
    fn rule_r2_a_replicated_receiver_keeps_what_it_holds_and_names_it_when_it_comes_back() {
        let mut st = RecvState::new(4);
        st.opened(STREAM, 3);
        assert!(st.take(true).is_pending());
        st.on_frames(1, values(&["a", "b", "c"]));
        // "a" taken and acknowledged (the ack may not have reached the old leader), "b" taken
        // by a delivery not yet acknowledged, "c" not taken.
        assert!(matches!(st.take(false), Poll::Ready(Ok((a, _))) if a == v("a")));
        let (_, b) = taken(&mut st, true);
        effects(&mut st);
        assert_eq!(st.lost(1), Lost::Reconnect);
        // The leader changed: the stream is opened again, naming what it holds and acked.
        assert_eq!(st.resume_info(), (vec![2, 3], vec![1]));
        assert!(st.resumed(1, 8));
        // It keeps both, and the delivery of "b" still counts.
        assert!(matches!(st.take(false), Poll::Ready(Ok((c, _))) if c == v("c")));
        st.ack_take(st.epoch(), b);
        st.effects.clear();
        let mut out = Vec::new();
        st.pull(2, &mut out);
        let ack = Frame::Signal {
            id: 8,
            op: SignalOp::Ack,
            a: 2,
            b: 0,
        };
        assert!(
            out.contains(&ack),
            "acknowledged on the new stream: {out:?}"
        );
        assert_eq!(st.resume_info(), (vec![], vec![1, 2, 3]));
    }

    #[test]
    fn rule_11_try_recv_asks_once_and_an_empty_answer_ends_it() {
        let mut st = receiver(1);
        st.try_recv();
        let ask = Frame::Signal {
            id: STREAM,
            op: SignalOp::TryRecv,
            a: 0,
            b: 0,
        };
        assert_eq!(effects(&mut st), [Effect::Write(ask)]);
        assert!(st.try_take().is_pending());
        st.on_frames(1, from_owner(SignalOp::Empty));
        assert_eq!(st.try_take(), Poll::Ready(Err(ChanError::Empty)));
        // A value that is ready is taken, and acknowledged, without asking.
        st.on_frames(1, values(&["a"]));
        st.try_recv();
        assert!(effects(&mut st).is_empty());
        assert_eq!(st.try_take(), Poll::Ready(Ok(v("a"))));
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 1)]);
    }

    #[test]
    fn rule_16_dropped_recv_withdraws_its_credit() {
        let mut st = receiver(1);
        assert!(st.take(false).is_pending());
        pulled(&mut st);
        st.cancel_demand();
        assert_eq!(pulled(&mut st), [(SignalOp::Withdraw, 0)]);
        // A value that was already on its way is kept for the next recv.
        st.on_frames(1, values(&["a"]));
        assert_eq!(taken(&mut st, false).0, v("a"));
    }

    #[test]
    fn rule_16_with_prefetch_a_dropped_recv_keeps_its_credit() {
        let mut st = receiver(4);
        assert!(st.take(false).is_pending());
        pulled(&mut st);
        st.cancel_demand();
        assert!(effects(&mut st).is_empty());
        assert_eq!(pulled(&mut st), []);
    }

    #[test]
    fn rule_17_a_failure_ends_every_later_receive() {
        let mut st = receiver(1);
        assert_eq!(st.lost(1), Lost::Reconnect);
        assert!(st.fail(1, ChanError::OwnerLost("circuitd restarted".into())));
        assert!(matches!(
            st.take(false),
            Poll::Ready(Err(ChanError::OwnerLost(_)))
        ));
        assert!(!st.resumed(1, 9));
    }

    #[test]
    fn acknowledgements_made_before_the_writer_gets_to_them_go_out_as_one() {
        let mut st = receiver(16);
        assert!(st.take(false).is_pending());
        pulled(&mut st);
        st.on_frames(1, values(&["1", "2", "3", "4", "5"]));
        for _ in 0..5 {
            taken(&mut st, false);
        }
        let pulls = effects(&mut st)
            .iter()
            .filter(|e| matches!(e, Effect::Pull(_)))
            .count();
        assert_eq!(pulls, 1, "one pull queued at a time");
        assert_eq!(pulled(&mut st), [(SignalOp::Ack, 5)]);
    }

    #[test]
    fn close_acknowledges_what_was_taken_then_asks_the_owner_to_end_the_stream() {
        let mut st = receiver(4);
        assert!(st.take(false).is_pending());
        pulled(&mut st);
        st.on_frames(1, values(&["a", "b"]));
        taken(&mut st, false);
        effects(&mut st);
        assert!(st.close());
        let ack = Frame::Signal {
            id: STREAM,
            op: SignalOp::Ack,
            a: 1,
            b: 0,
        };
        assert_eq!(
            effects(&mut st),
            [Effect::Write(ack), Effect::Cancel(STREAM)]
        );
        assert!(st.ended());
        assert!(!st.close(), "once");
        st.dropped();
        assert!(
            effects(&mut st).is_empty(),
            "the drop after close writes nothing"
        );
    }

    #[test]
    fn a_dropped_receiver_acknowledges_what_was_taken_then_ends_its_stream() {
        let mut st = receiver(1);
        assert!(st.take(false).is_pending());
        st.on_frames(1, values(&["a"]));
        taken(&mut st, false);
        effects(&mut st);
        st.dropped();
        let ack = Frame::Signal {
            id: STREAM,
            op: SignalOp::Ack,
            a: 1,
            b: 0,
        };
        assert_eq!(effects(&mut st), [Effect::Write(ack), Effect::End(STREAM)]);
        // A delivery acknowledged after the drop has nowhere to go.
        st.ack_take(1, 0);
        assert!(effects(&mut st).is_empty());
    }

    #[test]
    fn a_dropped_receiver_that_is_reopening_writes_nothing_and_refuses_the_new_stream() {
        let mut st = receiver(1);
        assert_eq!(st.lost(1), Lost::Reconnect);
        st.dropped();
        assert!(effects(&mut st).is_empty());
        assert!(!st.resumed(1, 9));
    }
}
