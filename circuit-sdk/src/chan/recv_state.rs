//! The receiving half of a channel as a sans-IO state machine: the values delivered and not
//! yet taken, the credit the owner holds for this receiver (topped up to `prefetch` values,
//! and to about `prefetch_bytes` of them), telling the owner when the application waits with
//! nothing left (`Waiting`) and giving back untaken values when it recalls them (rule 7), the
//! acknowledgements owed (counted in the order values were taken, as the
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

/// What automatic prefetch (`RecvOptions::prefetch` 0, the default) is on a channel one node
/// owns, unless half its capacity is less (see [`automatic_prefetch`]).
pub(crate) const AUTO_PREFETCH: u64 = 2048;

/// Automatic prefetch (`RecvOptions::prefetch` 0, the default) on a channel of `capacity` one
/// node owns: 2048 values, at most half the capacity (what a receiver holds counts against it;
/// the other half is room senders get ahead into), at least 1.
pub fn automatic_prefetch(capacity: u64) -> u64 {
    AUTO_PREFETCH.min(capacity / 2).max(1)
}

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
    /// About how many bytes of values it may hold ahead (credit is sized by the values seen).
    prefetch_bytes: u64,
    /// Delivered values the application has not taken yet, oldest first, with their ids.
    buf: VecDeque<(u64, Bytes)>,
    /// Bytes in `buf`.
    buf_bytes: u64,
    /// Size of the last value delivered: what credit is sized by.
    last_size: u64,
    /// Values received on this stream (a resumed one counts what it kept): the owner tells
    /// by it which of the values it delivered are still on their way.
    received: u64,
    /// The application waits with nothing to take: `Waiting` is to be written (or was, and
    /// no value came since).
    hungry: Hungry,
    /// The answer to a recall: the acknowledgements owed when it came (written before it),
    /// values given back and `received` then. Acknowledgements of later takes go after it,
    /// as they count past the values given back.
    recalled: Option<(u64, u64, u64)>,
    /// Values named as held when the stream of a replicated channel was last asked to reopen.
    named: Option<u64>,
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
    /// Credit was topped up while values are still here: the next receive first lets the
    /// connection's writer run, so the owner has the credit before this buffer runs dry.
    yield_once: bool,
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

/// Whether the owner knows the application waits with nothing to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hungry {
    /// It does not wait, or values are here.
    No,
    /// `Waiting` goes out with the next write.
    ToSay,
    /// Said; no value came since.
    Said,
}

impl RecvState {
    /// A receiver that holds up to `prefetch` values (at most 65,536; 0 is automatic, settled
    /// when the stream opens) and about `prefetch_bytes` ahead.
    pub fn new(prefetch: u32, prefetch_bytes: u64) -> Self {
        Self {
            stream: StreamState::default(),
            // 0 (automatic) is settled when the stream opens.
            prefetch: u64::from(prefetch.min(1 << 16)),
            prefetch_bytes: prefetch_bytes.max(1),
            buf: VecDeque::new(),
            buf_bytes: 0,
            last_size: 0,
            received: 0,
            hungry: Hungry::No,
            recalled: None,
            named: None,
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
            yield_once: false,
            trying: false,
            empty: false,
            drained: false,
            ended: false,
            effects: Vec::new(),
        }
    }

    /// The stream opened as `id`, on a channel of `capacity` held by `replicas` nodes.
    pub fn opened(&mut self, id: u64, replicas: u32, capacity: u64) {
        self.stream.id = id;
        self.replicated = replicas > 1;
        if self.prefetch == 0 {
            // Automatic: prefetch on a channel one node owns, up to half its capacity (what
            // a receiver holds counts against the capacity: the other half is room that
            // senders get ahead into); one value per `recv` on a replicated one (a receiver
            // that died with the leader while holding prefetched values stalled the live one
            // in a namespace test; until that is understood, prefetch there is a choice, not
            // a default).
            self.prefetch = if self.replicated {
                1
            } else {
                automatic_prefetch(capacity)
            };
        }
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
    /// has not acknowledged (in the order they came), and those it acknowledged lately. How
    /// many it named is remembered: values taken before the stream reopens are still in
    /// flight for the leader, and are acknowledged on the new stream.
    pub fn resume_info(&mut self) -> (Vec<u64>, Vec<u64>) {
        if !self.replicated {
            return (Vec::new(), Vec::new());
        }
        self.named = Some(self.unacked.len() as u64);
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
            self.buf_bytes -= payload.len() as u64;
            let index = self.count_take(manual);
            // With prefetch, keep the owner's credit topped up while the application reads.
            if self.prefetch > 1 {
                let held = self.buf.len() as u64 + self.credit;
                if held <= self.prefetch_limit() / 2 {
                    let more = self.credit_room(held);
                    self.to_credit += more;
                    self.credit += more;
                    self.yield_once = more > 0 && !self.buf.is_empty();
                }
            }
            // Acknowledgements and credit go out with the connection's next write, which comes
            // when this task lets the writer run (in a loop of `recv`, once it has taken what
            // is here): a taken value frees its room soon, so a sender waiting for room, or
            // a program waiting on something else, is never held up by a batch.
            if self.to_credit > 0 || self.to_ack > 0 {
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
        if self.stream.reconnecting {
            return Poll::Pending;
        }
        if self.credit == 0 {
            let more = self.credit_room(0);
            self.credit = more;
            self.to_credit += more;
            self.withdraw = false;
            self.schedule();
        }
        // A prefetching receiver tells the owner it now waits with nothing in hand, so that
        // it is served first and values others hold untaken come back for it (rule 7).
        if self.prefetch > 1 && self.hungry == Hungry::No {
            self.hungry = Hungry::ToSay;
            self.schedule();
        }
        Poll::Pending
    }

    /// True once after credit was topped up with values still here: the receive should give
    /// way (wake itself and return pending) so that the credit goes out now. In a loop of
    /// `recv` over prefetched values nothing else would run until the buffer is empty, and
    /// the owner would learn of the room only then, leaving a gap in the stream each time.
    pub fn should_yield(&mut self) -> bool {
        std::mem::take(&mut self.yield_once)
    }

    /// How many values it may hold: `prefetch`, or fewer when `prefetch_bytes` of values the
    /// size of the last one is fewer. Credit is topped up at half of it: at half of
    /// `prefetch` alone, a receiver bounded by bytes below that would top up (and give way)
    /// on every take.
    fn prefetch_limit(&self) -> u64 {
        let by_bytes = self
            .prefetch_bytes
            .checked_div(self.last_size)
            .unwrap_or(u64::MAX);
        self.prefetch.min(by_bytes).max(1)
    }

    /// Credit to grant on top of `held` (values here or asked for): up to `prefetch`, and
    /// about `prefetch_bytes` by the size of the last value; at least one when none is held.
    fn credit_room(&self, held: u64) -> u64 {
        let by_count = self.prefetch.saturating_sub(held);
        let by_bytes = self
            .prefetch_bytes
            .saturating_sub(self.buf_bytes)
            .checked_div(self.last_size)
            .unwrap_or(u64::MAX)
            .saturating_sub(held.saturating_sub(self.buf.len() as u64));
        let more = by_count.min(by_bytes);
        if held == 0 {
            more.max(1)
        } else {
            more
        }
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
            self.buf_bytes -= payload.len() as u64;
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
        self.buf_bytes = 0;
        for _ in 0..n {
            self.unacked.pop_back();
        }
        self.taken -= 1;
        // Values delivered after the `received` th are on their way and stay ours.
        let back = self.stream.signal2(SignalOp::Return, n, self.received);
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
                    self.last_size = payload.len() as u64;
                    self.buf_bytes += self.last_size;
                    self.buf.push_back((seq, payload));
                    self.unacked.push_back(seq);
                    self.received += 1;
                    self.credit = self.credit.saturating_sub(1);
                    self.hungry = Hungry::No;
                }
                Frame::Signal {
                    op: SignalOp::Recall,
                    a,
                    ..
                } => self.recall(a),
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
    pub fn pull(&mut self, token: u64, out: &mut VecDeque<Frame>) {
        if token != self.stream.gen {
            return;
        }
        self.pull_queued = false;
        if let Some((acks, n, seen)) = self.recalled.take() {
            if acks > 0 {
                out.push_back(self.stream.signal(SignalOp::Ack, acks));
            }
            out.push_back(self.stream.signal2(SignalOp::Recalled, n, seen));
        }
        if self.to_ack > 0 {
            out.push_back(
                self.stream
                    .signal(SignalOp::Ack, std::mem::take(&mut self.to_ack)),
            );
        }
        if std::mem::take(&mut self.withdraw) {
            out.push_back(self.stream.signal(SignalOp::Withdraw, 0));
        }
        if self.to_credit > 0 {
            let credit = std::mem::take(&mut self.to_credit);
            out.push_back(self.stream.signal(SignalOp::Credit, credit));
        }
        // Said after the credit it may be served with; unless values came meanwhile.
        if self.hungry == Hungry::ToSay && self.buf.is_empty() && self.credit > 0 {
            self.hungry = Hungry::Said;
            out.push_back(self.stream.signal(SignalOp::Waiting, self.received));
        }
    }

    /// The owner recalls up to `n` values the application has not taken (another receiver
    /// waits): the newest of them go back, answered after the acknowledgements owed, so that
    /// what was taken leaves the channel and the rest is handed on.
    fn recall(&mut self, n: u64) {
        if self.ended {
            return;
        }
        let back = n.min(self.buf.len() as u64);
        for _ in 0..back {
            if let Some((_, payload)) = self.buf.pop_back() {
                self.buf_bytes -= payload.len() as u64;
            }
            self.unacked.pop_back();
        }
        // Answered even when nothing comes back: the owner waits for it before asking again.
        // (The owner asks again only after the answer, so none is unanswered here.)
        let acks = std::mem::take(&mut self.to_ack);
        self.recalled = Some((acks, back, self.received));
        self.schedule();
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
            self.buf_bytes = 0;
            self.unacked.clear();
            self.taken = 0;
            self.ack_upto = 0;
            self.acked_ahead.clear();
            self.epoch = self.stream.gen;
        }
        // The new leader keeps in flight what was named when the stream reopened, and counts it
        // as delivered on the new stream; what the application took since is acknowledged
        // there (the acknowledgements owed before were named as acknowledged).
        let named = self.named.take().unwrap_or(self.unacked.len() as u64);
        let live = self.unacked.len() as u64;
        self.received = if self.replicated { named } else { 0 };
        self.hungry = Hungry::No;
        self.recalled = None;
        self.credit = 0;
        self.to_ack = if self.replicated {
            named.saturating_sub(live)
        } else {
            0
        };
        self.to_credit = 0;
        self.withdraw = false;
        self.pull_queued = false;
        self.trying = false;
        if self.to_ack > 0 {
            self.schedule();
        }
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
mod tests;
