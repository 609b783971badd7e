//! The sending half of a channel as a sans-IO state machine: sequence numbers, the send window
//! (values and bytes submitted and not yet answered, and the line of submits waiting for
//! room), the values pending until the owner answers, room the owner reserved (a value sent
//! on it completes at once, up to `ahead_bytes` of them unconfirmed), and what a reconnect
//! sends again. Each
//! call takes an event — a value submitted or given up on, the owner's signals, a stream lost,
//! reopened or failed, the last `Sender` gone — and records what to write in `effects`;
//! `sender.rs` is the async shell around it. No I/O, no locks, no clock. The unit tests are
//! named after the rules of `docs/CHANNELS.md` they check.

use std::collections::VecDeque;

use bytes::Bytes;

use super::stream_state::{Effect, Lost, StreamState};
use super::ChanError;
use crate::proto::{Frame, SignalOp};

/// Bytes a value takes on the wire besides its payload (frame header, stream id, seq):
/// counted in `ahead`, which must stay below what the socket to the daemon takes at once.
const WIRE_OVERHEAD: u64 =
    (crate::proto::frame::HEADER_LEN + crate::proto::frame::DATA_HEAD) as u64;

/// Who waits for a value's outcome (in the SDK, the sender of a `Ticket`).
pub(crate) trait Waiter {
    /// Tells the outcome; gives it back if nobody listens any more.
    fn settle(self, result: Result<(), ChanError>) -> Result<(), Result<(), ChanError>>;
}

/// What became of a submit.
#[derive(Debug)]
pub(crate) enum Submit {
    /// On its way, numbered with this seq. `early` if room was reserved for it: then its send
    /// is complete (CHANNELS.md rule 2) and no waiter was made; otherwise the waiter learns
    /// its outcome.
    Sent { seq: u64, early: bool },
    /// Refused; nothing changed.
    Refused(ChanError),
    /// No room in the window: the submit has its place in line; it is made again, with the
    /// value given back here, once room is freed.
    Wait(Bytes),
}

/// A submit's place in the line for window room (none until it had to wait).
#[derive(Debug, Default)]
pub(crate) struct Place(Option<u64>);

impl Place {
    /// True while the submit holds a place in line.
    pub fn is_waiting(&self) -> bool {
        self.0.is_some()
    }
}

/// The send window: values and bytes submitted and not yet answered, and the submits waiting
/// for room, served in the order they came. Each waiting submit leaves a `K` (its waker, in
/// the SDK) to be woken by when it is first in line and room may have come.
#[derive(Debug)]
struct Window<K> {
    max_values: u32,
    /// The byte window, in units of 1 KiB.
    max_units: u32,
    values: u32,
    units: u32,
    /// The submits waiting for room, oldest first: their place, and whom to wake (taken when
    /// woken, left again when they wait on).
    line: VecDeque<(u64, Option<K>)>,
    next_place: u64,
    /// The head of the line, woken: room was freed, or it just became the head.
    wake: Option<K>,
}

impl<K: Clone> Window<K> {
    /// The units a value of `size` bytes takes: its size in KiB plus one, at most the whole
    /// window, so that any value fits an empty window.
    fn units_for(&self, size: u64) -> u32 {
        u32::try_from(size / 1024)
            .unwrap_or(u32::MAX)
            .saturating_add(1)
            .min(self.max_units)
    }

    /// Takes room for one value of `units`, unless it does not fit or other submits wait ahead
    /// of `place`; then `place` joins the line (once), leaving `room` to be woken by, and
    /// false is returned.
    fn take(&mut self, units: u32, place: &mut Place, room: &K) -> bool {
        let first = match place.0 {
            Some(p) => self.line.front().is_some_and(|(q, _)| *q == p),
            None => self.line.is_empty(),
        };
        if first && self.values < self.max_values && self.units + units <= self.max_units {
            self.values += 1;
            self.units += units;
            if place.0.take().is_some() {
                self.line.pop_front();
                // The next in line may fit too.
                self.wake_head();
            }
            return true;
        }
        match place.0 {
            Some(p) => {
                if let Some(entry) = self.line.iter_mut().find(|(q, _)| *q == p) {
                    entry.1 = Some(room.clone());
                }
            }
            None => {
                place.0 = Some(self.next_place);
                self.line.push_back((self.next_place, Some(room.clone())));
                self.next_place += 1;
            }
        }
        false
    }

    /// A value was answered: its room is free again.
    fn give(&mut self, units: u32) {
        self.values -= 1;
        self.units -= units;
        self.wake_head();
    }

    /// A submit leaves the line (given up, or refused).
    fn leave(&mut self, place: &mut Place) {
        if let Some(p) = place.0.take() {
            let was_first = self.line.front().is_some_and(|(q, _)| *q == p);
            self.line.retain(|(q, _)| *q != p);
            if was_first {
                self.wake_head();
            }
        }
    }

    /// Wakes the first in line, unless it is awake already.
    fn wake_head(&mut self) {
        if let Some(room) = self.line.front_mut().and_then(|(_, room)| room.take()) {
            self.wake = Some(room);
        }
    }
}

/// A value sent and not yet answered.
#[derive(Debug)]
struct Pending<W> {
    /// Kept to send it again after a reconnect.
    payload: Bytes,
    try_send: bool,
    /// `None` once nobody waits (a send given up on, or one that completed on reserved room).
    waiter: Option<W>,
    /// Byte-window units it holds (it also holds one value of the window).
    units: u32,
    /// Its send completed on reserved room: it counts in `ahead` until confirmed.
    early: bool,
}

/// One sender's side of its send stream.
#[derive(Debug)]
pub(crate) struct SendState<W, K> {
    /// The stream it speaks on.
    pub stream: StreamState,
    window: Window<K>,
    /// The channel's payload limit, told by the owner when the stream opens.
    max_payload: u64,
    next_seq: u64,
    /// The owner reserved room for the values with seqs up to this one (0: none). It dies with
    /// the stream: a reopened stream starts without.
    reserved_upto: u64,
    /// Most bytes of values that completed on reserved room and are not confirmed yet.
    ahead_bytes: u64,
    /// Bytes of those now.
    ahead: u64,
    pending: super::pending::Pending<Pending<W>>,
    /// The channel was closed: sends fail at once.
    closed: bool,
    /// A failure of a value whose waiter was gone, reported by the next `flushed`.
    unreported: Option<ChanError>,
    /// Every `Sender` is gone: the stream ends once nothing is pending.
    released: bool,
    /// Some value was answered since [`SendState::take_wakes`] (for `flush`).
    settled: bool,
    /// What to do, in order.
    pub effects: Vec<Effect>,
}

impl<W: Waiter, K: Clone> SendState<W, K> {
    /// A sender with a window of `window` values and `window_bytes` bytes (clamped to what
    /// the owner allows: 65,536 values, 256 MiB), whose sends complete on reserved room for
    /// up to `ahead_bytes` unconfirmed.
    pub fn new(window: u32, window_bytes: u64, ahead_bytes: u64) -> Self {
        let max_units = (window_bytes / 1024).clamp(1, 1 << 18);
        Self {
            stream: StreamState::default(),
            window: Window {
                max_values: window.clamp(1, 1 << 16),
                max_units: u32::try_from(max_units).unwrap_or(1 << 18),
                values: 0,
                units: 0,
                line: VecDeque::new(),
                next_place: 0,
                wake: None,
            },
            max_payload: 0,
            next_seq: 1,
            reserved_upto: 0,
            ahead_bytes,
            ahead: 0,
            pending: Default::default(),
            closed: false,
            unreported: None,
            released: false,
            settled: false,
            effects: Vec::new(),
        }
    }

    /// The stream opened as `id`; the owner takes values of up to `max_payload` bytes.
    pub fn opened(&mut self, id: u64, max_payload: u64) {
        self.stream.id = id;
        self.max_payload = max_payload;
    }

    /// Values submitted and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The seq the next value gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whom to wake: the submit first in line for window room, if room may have come for it,
    /// and whether values were answered (for `flush`). Both are reset.
    pub fn take_wakes(&mut self) -> (Option<K>, bool) {
        (self.window.wake.take(), std::mem::take(&mut self.settled))
    }

    /// Submits a value: refused if it is too large or the sender is closed or failed; else it
    /// takes room in the window (or waits for it in line, from `place`, to be woken by `room`),
    /// gets the next seq and goes out (unless a reconnect is under way: then it goes out with
    /// the resend).
    pub fn submit(
        &mut self,
        payload: Bytes,
        try_send: bool,
        waiter: impl FnOnce() -> W,
        place: &mut Place,
        room: &K,
    ) -> Submit {
        let size = payload.len() as u64;
        let refused = if size > self.max_payload {
            Some(ChanError::TooLarge {
                size,
                max: self.max_payload,
            })
        } else if self.closed {
            Some(ChanError::Closed)
        } else {
            self.stream.failed.clone()
        };
        if let Some(e) = refused {
            self.window.leave(place);
            return Submit::Refused(e);
        }
        let units = self.window.units_for(size);
        if !self.window.take(units, place, room) {
            return Submit::Wait(payload);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        // Room is kept for it: it will be accepted whenever it arrives.
        let early = seq <= self.reserved_upto
            && !self.stream.reconnecting
            && self.ahead + size + WIRE_OVERHEAD <= self.ahead_bytes;
        let waiter = if early {
            self.ahead += size + WIRE_OVERHEAD;
            None
        } else {
            Some(waiter())
        };
        let pending = Pending {
            payload,
            try_send: try_send && !early,
            waiter,
            units,
            early,
        };
        if !self.stream.reconnecting {
            write_value(&mut self.effects, &self.stream, seq, &pending);
        }
        self.pending.push(seq, pending);
        Submit::Sent { seq, early }
    }

    /// A submit waiting for room gives up: it leaves the line.
    pub fn leave_line(&mut self, place: &mut Place) {
        self.window.leave(place);
    }

    /// Nobody waits for `seq` any more (its `send` was dropped): the owner is asked to
    /// withdraw it if it is still waiting to be accepted.
    pub fn abandon(&mut self, seq: u64) {
        if let Some(p) = self.pending.get_mut(seq) {
            p.waiter = None;
            self.signal(SignalOp::CancelSend, seq);
        }
    }

    /// Asks the owner to withdraw `seq` (a timeout); its waiter learns the outcome.
    pub fn request_cancel(&mut self, seq: u64) {
        if self.pending.get(seq).is_some() {
            self.signal(SignalOp::CancelSend, seq);
        }
    }

    /// Whether everything below `upto` is answered: `Some` with the first failure nobody
    /// was told of (taken), or the sender's failure; `None` while values are pending.
    pub fn flushed(&mut self, upto: u64) -> Option<Result<(), ChanError>> {
        if !self.pending.any_below(upto) {
            return Some(self.unreported.take().map_or(Ok(()), Err));
        }
        self.stream.failed.clone().map(Err)
    }

    /// Every `Sender` is gone: the stream ends once nothing is pending.
    pub fn release(&mut self) {
        self.released = true;
        self.end_if_idle();
    }

    /// Frames from the owner on stream generation `gen` (signals only; a data frame breaks
    /// the protocol and fails the sender).
    pub fn on_frames(&mut self, gen: u64, frames: Vec<Frame>) {
        if frames.iter().any(|f| !matches!(f, Frame::Signal { .. })) {
            let e = ChanError::Protocol("data frame on a send stream".into());
            return self.fail(gen, e);
        }
        if gen != self.stream.gen {
            return;
        }
        for frame in frames {
            let Frame::Signal { op, a, b, .. } = frame else {
                continue;
            };
            if let Err(e) = self.on_signal(op, a, b) {
                return self.fail(gen, e);
            }
        }
        self.end_if_idle();
    }

    fn on_signal(&mut self, op: SignalOp, a: u64, b: u64) -> Result<(), ChanError> {
        match op {
            SignalOp::Accepted | SignalOp::Closed => {
                if op == SignalOp::Closed {
                    self.closed = true;
                }
                let end = a.saturating_add(b);
                let mut from = a;
                while let Some(seq) = self.pending.next_in(from, end) {
                    from = seq + 1;
                    let result = match op {
                        SignalOp::Accepted => Ok(()),
                        _ => Err(ChanError::Closed),
                    };
                    self.resolve(seq, result);
                }
            }
            SignalOp::Full => self.resolve(a, Err(ChanError::Full)),
            SignalOp::Reserve => self.reserved_upto = self.reserved_upto.max(a),
            SignalOp::Revoke => {
                // Every value sent on the reservation went out before this answer.
                self.reserved_upto = self.reserved_upto.min(self.next_seq - 1);
                self.signal(SignalOp::Release, 0);
            }
            SignalOp::Withdrawn => self.resolve(a, Err(ChanError::Timeout)),
            SignalOp::TooLarge => {
                let size = self.pending.get(a).map_or(0, |p| p.payload.len() as u64);
                self.resolve(a, Err(ChanError::TooLarge { size, max: b }));
            }
            other => {
                return Err(ChanError::Protocol(format!(
                    "unexpected signal {other:?} on a send stream"
                )))
            }
        }
        Ok(())
    }

    /// The connection of generation `gen` is gone: reconnect to send again what was not
    /// answered — unless every `Sender` is gone and nothing is pending.
    pub fn lost(&mut self, gen: u64) -> Lost {
        let lost = self.stream.lost(gen);
        if lost == Lost::Reconnect {
            // The reservation was the old stream's.
            self.reserved_upto = 0;
        }
        if lost == Lost::Reconnect && self.released && self.pending.is_empty() {
            self.stream.reconnecting = false;
            self.stream.failed = Some(dropped());
            return Lost::Ignore;
        }
        lost
    }

    /// Generation `gen` was reopened as stream `id` (same daemon): every pending value goes
    /// out again with its seq, the owner accepts each once. False if the sender no longer
    /// wants the stream.
    pub fn resumed(&mut self, gen: u64, id: u64) -> bool {
        if !self.stream.resumed(gen, id) {
            return false;
        }
        for (seq, p) in self.pending.iter() {
            write_value(&mut self.effects, &self.stream, seq, p);
        }
        true
    }

    /// The sender fails for good: every pending value fails with `error`, and so does every
    /// later submit.
    pub fn fail(&mut self, gen: u64, error: ChanError) {
        if !self.stream.fail(gen, error.clone()) {
            return;
        }
        let pending: Vec<_> = self.pending.drain().collect();
        for p in pending {
            self.settle(p, Err(error.clone()));
        }
    }

    /// Ends the stream if every `Sender` is gone and nothing is pending.
    fn end_if_idle(&mut self) {
        if self.released && self.pending.is_empty() && self.stream.failed.is_none() {
            self.effects.push(Effect::End(self.stream.id));
            self.stream.failed = Some(dropped());
        }
    }

    /// Settles value `seq`, if it is still pending.
    fn resolve(&mut self, seq: u64, result: Result<(), ChanError>) {
        if let Some(p) = self.pending.remove(seq) {
            self.settle(p, result);
        }
    }

    /// Tells a value's waiter its outcome and frees its room in the window.
    fn settle(&mut self, p: Pending<W>, result: Result<(), ChanError>) {
        self.window.give(p.units);
        if p.early {
            self.ahead -= p.payload.len() as u64 + WIRE_OVERHEAD;
        }
        self.settled = true;
        if let Some(waiter) = p.waiter {
            if let Err(Err(e)) = waiter.settle(result) {
                self.unreported.get_or_insert(e);
            }
        }
    }

    fn signal(&mut self, op: SignalOp, a: u64) {
        if !self.stream.reconnecting {
            self.effects.push(Effect::Write(self.stream.signal(op, a)));
        }
    }
}

/// Writes one value: announced as a try-send first if it is one.
fn write_value<W>(effects: &mut Vec<Effect>, stream: &StreamState, seq: u64, p: &Pending<W>) {
    if p.try_send {
        effects.push(Effect::Write(stream.signal(SignalOp::TrySend, seq)));
    }
    effects.push(Effect::Write(Frame::Data {
        id: stream.id,
        seq,
        payload: p.payload.clone(),
    }));
}

/// The failure of a sender whose handles are all gone.
fn dropped() -> ChanError {
    ChanError::Protocol("sender dropped".into())
}

#[cfg(test)]
mod tests;
