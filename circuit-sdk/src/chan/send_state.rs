//! The sending half of a channel as a sans-IO state machine: sequence numbers, the send window
//! (values and bytes submitted and not yet answered, and the line of submits waiting for
//! room), the values pending until the owner answers, and what a reconnect sends again. Each
//! call takes an event — a value submitted or given up on, the owner's signals, a stream lost,
//! reopened or failed, the last `Sender` gone — and records what to write in `effects`;
//! `sender.rs` is the async shell around it. No I/O, no locks, no clock. The unit tests are
//! named after the rules of `docs/CHANNELS.md` they check.

use std::collections::VecDeque;

use bytes::Bytes;

use super::stream_state::{Effect, Lost, StreamState};
use super::ChanError;
use crate::proto::{Frame, SignalOp};

/// Who waits for a value's outcome (in the SDK, the sender of a `Ticket`).
pub(crate) trait Waiter {
    /// Tells the outcome; gives it back if nobody listens any more.
    fn settle(self, result: Result<(), ChanError>) -> Result<(), Result<(), ChanError>>;
}

/// What became of a submit.
#[derive(Debug)]
pub(crate) enum Submit<W> {
    /// On its way, numbered with this seq.
    Sent(u64),
    /// Refused; nothing changed.
    Refused(ChanError),
    /// No room in the window: the submit has its place in line; it is made again, with the
    /// value and waiter given back here, once room is freed.
    Wait(Bytes, W),
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
    /// `None` once nobody waits (a send given up on).
    waiter: Option<W>,
    /// Byte-window units it holds (it also holds one value of the window).
    units: u32,
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
    /// the owner allows: 65,536 values, 256 MiB).
    pub fn new(window: u32, window_bytes: u64) -> Self {
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
        waiter: W,
        place: &mut Place,
        room: &K,
    ) -> Submit<W> {
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
            return Submit::Wait(payload, waiter);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let pending = Pending {
            payload,
            try_send,
            waiter: Some(waiter),
            units,
        };
        if !self.stream.reconnecting {
            write_value(&mut self.effects, &self.stream, seq, &pending);
        }
        self.pending.push(seq, pending);
        Submit::Sent(seq)
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
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A waiter that records its outcome (or is gone, like a dropped ticket).
    #[derive(Debug, Clone, Default)]
    struct Seen(Rc<RefCell<Option<Result<(), ChanError>>>>, bool);

    impl Waiter for Seen {
        fn settle(self, result: Result<(), ChanError>) -> Result<(), Result<(), ChanError>> {
            if self.1 {
                return Err(result);
            }
            *self.0.borrow_mut() = Some(result);
            Ok(())
        }
    }

    impl Seen {
        fn gone() -> Self {
            Self(Rc::default(), true)
        }

        fn outcome(&self) -> Option<Result<(), ChanError>> {
            self.0.borrow().clone()
        }
    }

    const STREAM: u64 = 5;

    fn sender() -> SendState<Seen, u32> {
        let mut st = SendState::new(4096, 64 << 20);
        st.opened(STREAM, 1024);
        st
    }

    fn v(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Submits a value that must be sent; returns its seq and waiter.
    fn send(st: &mut SendState<Seen, u32>, value: &'static str) -> (u64, Seen) {
        let seen = Seen::default();
        match st.submit(v(value), false, seen.clone(), &mut Place::default(), &0) {
            Submit::Sent(seq) => (seq, seen),
            other => panic!("not sent: {other:?}"),
        }
    }

    fn effects(st: &mut SendState<Seen, u32>) -> Vec<Effect> {
        std::mem::take(&mut st.effects)
    }

    fn data(id: u64, seq: u64, value: &'static str) -> Effect {
        Effect::Write(Frame::Data {
            id,
            seq,
            payload: v(value),
        })
    }

    fn signal(id: u64, op: SignalOp, a: u64) -> Effect {
        Effect::Write(Frame::Signal { id, op, a, b: 0 })
    }

    fn from_owner(op: SignalOp, a: u64, b: u64) -> Vec<Frame> {
        vec![Frame::Signal {
            id: STREAM,
            op,
            a,
            b,
        }]
    }

    #[test]
    fn rule_2_a_send_completes_when_the_owner_accepts_it() {
        let mut st = sender();
        let (seq, seen) = send(&mut st, "a");
        assert_eq!(effects(&mut st), [data(STREAM, seq, "a")]);
        assert_eq!(seen.outcome(), None, "sent is not accepted");
        assert_eq!(st.pending(), 1);
        st.on_frames(1, from_owner(SignalOp::Accepted, seq, 1));
        assert_eq!(seen.outcome(), Some(Ok(())));
        assert_eq!(st.pending(), 0);
        assert_eq!(st.take_wakes(), (None, true), "flush is woken");
    }

    #[test]
    fn rule_3_values_go_out_in_order_with_consecutive_seqs_and_a_run_accepts_them_all() {
        let mut st = sender();
        let sent: Vec<(u64, Seen)> = ["a", "b", "c"].map(|x| send(&mut st, x)).into();
        assert_eq!(
            effects(&mut st),
            [
                data(STREAM, 1, "a"),
                data(STREAM, 2, "b"),
                data(STREAM, 3, "c")
            ]
        );
        st.on_frames(1, from_owner(SignalOp::Accepted, 1, 3));
        for (seq, seen) in &sent {
            assert_eq!(seen.outcome(), Some(Ok(())), "seq {seq}");
        }
    }

    #[test]
    fn rule_5_closed_fails_the_pending_and_every_later_send() {
        let mut st = sender();
        let (_, accepted) = send(&mut st, "a");
        let (_, waiting) = send(&mut st, "b");
        st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
        st.on_frames(1, from_owner(SignalOp::Closed, 2, 1));
        assert_eq!(accepted.outcome(), Some(Ok(())));
        assert_eq!(waiting.outcome(), Some(Err(ChanError::Closed)));
        effects(&mut st);
        let later = st.submit(v("c"), false, Seen::default(), &mut Place::default(), &0);
        assert!(matches!(later, Submit::Refused(ChanError::Closed)));
        assert!(effects(&mut st).is_empty(), "a refused value is not sent");
    }

    #[test]
    fn rule_10_resend_after_reconnect_keeps_seqs() {
        let mut st = sender();
        let (_, first) = send(&mut st, "a");
        send(&mut st, "b");
        st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
        effects(&mut st);
        assert_eq!(st.lost(1), Lost::Reconnect);
        // While reopening, a new value waits for the resend; nothing is written.
        let (seq, _) = send(&mut st, "c");
        assert_eq!(seq, 3);
        assert!(effects(&mut st).is_empty());
        // Reopened as stream 9: what was not confirmed goes again, with the same seqs.
        assert!(st.resumed(1, 9));
        assert_eq!(effects(&mut st), [data(9, 2, "b"), data(9, 3, "c")]);
        // The old stream's late news is stale.
        st.on_frames(1, from_owner(SignalOp::Accepted, 2, 1));
        assert_eq!(st.pending(), 2);
        st.on_frames(2, from_owner(SignalOp::Accepted, 2, 2));
        assert_eq!(st.pending(), 0);
        assert_eq!(first.outcome(), Some(Ok(())));
    }

    #[test]
    fn rule_10_a_try_send_is_announced_again_after_a_reconnect() {
        let mut st = sender();
        let seen = Seen::default();
        assert!(matches!(
            st.submit(v("a"), true, seen, &mut Place::default(), &0),
            Submit::Sent(1)
        ));
        assert_eq!(
            effects(&mut st),
            [signal(STREAM, SignalOp::TrySend, 1), data(STREAM, 1, "a")]
        );
        assert_eq!(st.lost(1), Lost::Reconnect);
        assert!(st.resumed(1, 9));
        assert_eq!(
            effects(&mut st),
            [signal(9, SignalOp::TrySend, 1), data(9, 1, "a")]
        );
    }

    #[test]
    fn rule_11_try_send_is_announced_and_full_refuses_it_and_changes_nothing() {
        let mut st = sender();
        let seen = Seen::default();
        st.submit(v("a"), true, seen.clone(), &mut Place::default(), &0);
        assert_eq!(
            effects(&mut st),
            [signal(STREAM, SignalOp::TrySend, 1), data(STREAM, 1, "a")]
        );
        st.on_frames(1, from_owner(SignalOp::Full, 1, 0));
        assert_eq!(seen.outcome(), Some(Err(ChanError::Full)));
        assert_eq!(st.pending(), 0);
        // The window has its room back: the next value goes out at once.
        let (seq, _) = send(&mut st, "b");
        assert_eq!(seq, 2);
    }

    #[test]
    fn rule_11_a_send_timeout_asks_for_the_value_back_and_withdrawn_times_it_out() {
        let mut st = sender();
        let (seq, seen) = send(&mut st, "a");
        effects(&mut st);
        st.request_cancel(seq);
        assert_eq!(
            effects(&mut st),
            [signal(STREAM, SignalOp::CancelSend, seq)]
        );
        st.on_frames(1, from_owner(SignalOp::Withdrawn, seq, 0));
        assert_eq!(seen.outcome(), Some(Err(ChanError::Timeout)));
    }

    #[test]
    fn rule_13_a_value_over_the_payload_limit_is_refused_before_it_is_sent() {
        let mut st = sender();
        let big = Bytes::from(vec![0u8; 1025]);
        let refused = st.submit(big, false, Seen::default(), &mut Place::default(), &0);
        assert!(matches!(
            refused,
            Submit::Refused(ChanError::TooLarge {
                size: 1025,
                max: 1024
            })
        ));
        assert!(effects(&mut st).is_empty());
        assert_eq!(st.next_seq(), 1, "no seq used");
        // The owner's limit may be lower than what the stream said: its refusal is final.
        let (seq, seen) = send(&mut st, "toolong");
        st.on_frames(1, from_owner(SignalOp::TooLarge, seq, 3));
        assert_eq!(
            seen.outcome(),
            Some(Err(ChanError::TooLarge { size: 7, max: 3 }))
        );
    }

    #[test]
    fn rule_16_a_dropped_send_is_withdrawn_and_never_reported() {
        let mut st = sender();
        let (seq, seen) = send(&mut st, "a");
        effects(&mut st);
        st.abandon(seq);
        assert_eq!(
            effects(&mut st),
            [signal(STREAM, SignalOp::CancelSend, seq)]
        );
        st.on_frames(1, from_owner(SignalOp::Withdrawn, seq, 0));
        assert_eq!(seen.outcome(), None, "nobody waits for it any more");
        assert_eq!(st.flushed(st.next_seq()), Some(Ok(())));
        // Withdrawn while reopening: the cancel goes with the resend, as nothing is written.
        let (seq, _) = send(&mut st, "b");
        effects(&mut st);
        assert_eq!(st.lost(1), Lost::Reconnect);
        st.abandon(seq);
        assert!(effects(&mut st).is_empty());
    }

    #[test]
    fn rule_17_a_failure_fails_every_pending_and_later_send_with_owner_lost() {
        let mut st = sender();
        let (_, a) = send(&mut st, "a");
        let (_, b) = send(&mut st, "b");
        assert_eq!(st.lost(1), Lost::Reconnect);
        st.fail(1, ChanError::OwnerLost("circuitd restarted".into()));
        for seen in [a, b] {
            assert!(seen
                .outcome()
                .is_some_and(|r| r.is_err_and(|e| e.is_owner_lost())));
        }
        assert_eq!(st.take_wakes(), (None, true));
        let later = st.submit(v("c"), false, Seen::default(), &mut Place::default(), &0);
        assert!(matches!(later, Submit::Refused(ChanError::OwnerLost(_))));
        assert!(!st.resumed(1, 9), "a late reopen is ended");
    }

    #[test]
    fn the_window_holds_submits_in_line_and_wakes_the_first_when_room_comes() {
        let mut st = SendState::<Seen, u32>::new(2, 64 << 20);
        st.opened(STREAM, 1024);
        send(&mut st, "a");
        send(&mut st, "b");
        let (mut first, mut second) = (Place::default(), Place::default());
        let Submit::Wait(p1, w1) = st.submit(v("c"), false, Seen::default(), &mut first, &1) else {
            panic!("the window is full");
        };
        let Submit::Wait(p2, w2) = st.submit(v("d"), false, Seen::default(), &mut second, &2)
        else {
            panic!("the window is full");
        };
        assert!(first.is_waiting() && second.is_waiting());
        assert_eq!(st.take_wakes(), (None, false));
        st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
        assert_eq!(
            st.take_wakes(),
            (Some(1), true),
            "only the first in line is woken"
        );
        // The second in line may not overtake the first, even with room.
        let Submit::Wait(p2, w2) = st.submit(p2, false, w2, &mut second, &2) else {
            panic!("the first in line goes first");
        };
        assert!(matches!(
            st.submit(p1, false, w1, &mut first, &1),
            Submit::Sent(3)
        ));
        assert!(!first.is_waiting());
        assert_eq!(st.take_wakes(), (Some(2), false), "then the next");
        // The window is full again: the second waits on, and goes when room comes.
        let Submit::Wait(p2, w2) = st.submit(p2, false, w2, &mut second, &2) else {
            panic!("the window is full");
        };
        st.on_frames(1, from_owner(SignalOp::Accepted, 2, 1));
        assert_eq!(st.take_wakes(), (Some(2), true));
        assert!(matches!(
            st.submit(p2, false, w2, &mut second, &2),
            Submit::Sent(4)
        ));
        assert_eq!(st.take_wakes(), (None, false), "nobody left in line");
    }

    #[test]
    fn a_submit_that_gives_up_its_place_wakes_the_next_in_line() {
        let mut st = SendState::<Seen, u32>::new(1, 64 << 20);
        st.opened(STREAM, 1024);
        send(&mut st, "a");
        let (mut first, mut second) = (Place::default(), Place::default());
        st.submit(v("b"), false, Seen::default(), &mut first, &1);
        st.submit(v("c"), false, Seen::default(), &mut second, &2);
        st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
        assert_eq!(st.take_wakes(), (Some(1), true));
        st.leave_line(&mut first);
        assert_eq!(
            st.take_wakes(),
            (Some(2), false),
            "the next in line is woken"
        );
        assert!(matches!(
            st.submit(v("c"), false, Seen::default(), &mut second, &2),
            Submit::Sent(2)
        ));
    }

    #[test]
    fn a_failure_wakes_the_submits_in_line_to_be_refused() {
        let mut st = SendState::<Seen, u32>::new(1, 64 << 20);
        st.opened(STREAM, 1024);
        send(&mut st, "a");
        let mut place = Place::default();
        st.submit(v("b"), false, Seen::default(), &mut place, &1);
        st.fail(1, ChanError::OwnerLost("gone".into()));
        assert_eq!(st.take_wakes(), (Some(1), true));
        let refused = st.submit(v("b"), false, Seen::default(), &mut place, &1);
        assert!(matches!(refused, Submit::Refused(ChanError::OwnerLost(_))));
        assert!(!place.is_waiting(), "a refused submit leaves the line");
    }

    #[test]
    fn the_byte_window_counts_kib_and_any_value_fits_an_empty_window() {
        let mut st = SendState::<Seen, u32>::new(100, 4 * 1024);
        st.opened(STREAM, 1 << 20);
        let big = Bytes::from(vec![0u8; 100 * 1024]);
        let Submit::Sent(_) = st.submit(
            big.clone(),
            false,
            Seen::default(),
            &mut Place::default(),
            &0,
        ) else {
            panic!("a value larger than the window fits an empty one");
        };
        let mut place = Place::default();
        assert!(matches!(
            st.submit(v("x"), false, Seen::default(), &mut place, &0),
            Submit::Wait(..)
        ));
    }

    #[test]
    fn flush_reports_the_first_failure_of_a_value_nobody_waited_for() {
        let mut st = sender();
        let seq = match st.submit(v("a"), true, Seen::gone(), &mut Place::default(), &0) {
            Submit::Sent(seq) => seq,
            other => panic!("{other:?}"),
        };
        let upto = st.next_seq();
        assert_eq!(st.flushed(upto), None, "pending");
        st.on_frames(1, from_owner(SignalOp::Full, seq, 0));
        assert_eq!(st.flushed(upto), Some(Err(ChanError::Full)));
        assert_eq!(st.flushed(upto), Some(Ok(())), "reported once");
    }

    #[test]
    fn a_released_sender_ends_its_stream_once_nothing_is_pending() {
        let mut st = sender();
        let (seq, _) = send(&mut st, "a");
        effects(&mut st);
        st.release();
        assert!(effects(&mut st).is_empty(), "a value is still pending");
        st.on_frames(1, from_owner(SignalOp::Accepted, seq, 1));
        assert_eq!(effects(&mut st), [Effect::End(STREAM)]);
        // Lost afterwards: nothing to reconnect for.
        assert_eq!(st.lost(1), Lost::Ignore);
    }

    #[test]
    fn a_data_frame_on_a_send_stream_fails_it() {
        let mut st = sender();
        let (_, seen) = send(&mut st, "a");
        let data = Frame::Data {
            id: STREAM,
            seq: 1,
            payload: v("x"),
        };
        st.on_frames(1, vec![data]);
        assert!(matches!(seen.outcome(), Some(Err(ChanError::Protocol(_)))));
    }
}
