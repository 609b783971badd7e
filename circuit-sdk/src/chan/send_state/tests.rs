//! The sending half's state machine against the rules of `docs/CHANNELS.md`, one event at a
//! time.

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
    let mut st = SendState::new(4096, 64 << 20, 64 << 10);
    st.opened(STREAM, 1024);
    st
}

fn v(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Submits a value that must be sent; returns its seq and waiter.
fn send(st: &mut SendState<Seen, u32>, value: &'static str) -> (u64, Seen) {
    let seen = Seen::default();
    match st.submit(v(value), false, || seen.clone(), &mut Place::default(), &0) {
        Submit::Sent { seq, .. } => (seq, seen),
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
    let later = st.submit(v("c"), false, Seen::default, &mut Place::default(), &0);
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
        st.submit(v("a"), true, || seen, &mut Place::default(), &0),
        Submit::Sent { seq: 1, .. }
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
    st.submit(v("a"), true, || seen.clone(), &mut Place::default(), &0);
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
    let refused = st.submit(big, false, Seen::default, &mut Place::default(), &0);
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
    let later = st.submit(v("c"), false, Seen::default, &mut Place::default(), &0);
    assert!(matches!(later, Submit::Refused(ChanError::OwnerLost(_))));
    assert!(!st.resumed(1, 9), "a late reopen is ended");
}

#[test]
fn the_window_holds_submits_in_line_and_wakes_the_first_when_room_comes() {
    let mut st = SendState::<Seen, u32>::new(2, 64 << 20, 64 << 10);
    st.opened(STREAM, 1024);
    send(&mut st, "a");
    send(&mut st, "b");
    let (mut first, mut second) = (Place::default(), Place::default());
    let Submit::Wait(p1) = st.submit(v("c"), false, Seen::default, &mut first, &1) else {
        panic!("the window is full");
    };
    let Submit::Wait(p2) = st.submit(v("d"), false, Seen::default, &mut second, &2) else {
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
    let Submit::Wait(p2) = st.submit(p2, false, Seen::default, &mut second, &2) else {
        panic!("the first in line goes first");
    };
    assert!(matches!(
        st.submit(p1, false, Seen::default, &mut first, &1),
        Submit::Sent { seq: 3, .. }
    ));
    assert!(!first.is_waiting());
    assert_eq!(st.take_wakes(), (Some(2), false), "then the next");
    // The window is full again: the second waits on, and goes when room comes.
    let Submit::Wait(p2) = st.submit(p2, false, Seen::default, &mut second, &2) else {
        panic!("the window is full");
    };
    st.on_frames(1, from_owner(SignalOp::Accepted, 2, 1));
    assert_eq!(st.take_wakes(), (Some(2), true));
    assert!(matches!(
        st.submit(p2, false, Seen::default, &mut second, &2),
        Submit::Sent { seq: 4, .. }
    ));
    assert_eq!(st.take_wakes(), (None, false), "nobody left in line");
}

#[test]
fn a_submit_that_gives_up_its_place_wakes_the_next_in_line() {
    let mut st = SendState::<Seen, u32>::new(1, 64 << 20, 64 << 10);
    st.opened(STREAM, 1024);
    send(&mut st, "a");
    let (mut first, mut second) = (Place::default(), Place::default());
    st.submit(v("b"), false, Seen::default, &mut first, &1);
    st.submit(v("c"), false, Seen::default, &mut second, &2);
    st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
    assert_eq!(st.take_wakes(), (Some(1), true));
    st.leave_line(&mut first);
    assert_eq!(
        st.take_wakes(),
        (Some(2), false),
        "the next in line is woken"
    );
    assert!(matches!(
        st.submit(v("c"), false, Seen::default, &mut second, &2),
        Submit::Sent { seq: 2, .. }
    ));
}

#[test]
fn a_failure_wakes_the_submits_in_line_to_be_refused() {
    let mut st = SendState::<Seen, u32>::new(1, 64 << 20, 64 << 10);
    st.opened(STREAM, 1024);
    send(&mut st, "a");
    let mut place = Place::default();
    st.submit(v("b"), false, Seen::default, &mut place, &1);
    st.fail(1, ChanError::OwnerLost("gone".into()));
    assert_eq!(st.take_wakes(), (Some(1), true));
    let refused = st.submit(v("b"), false, Seen::default, &mut place, &1);
    assert!(matches!(refused, Submit::Refused(ChanError::OwnerLost(_))));
    assert!(!place.is_waiting(), "a refused submit leaves the line");
}

#[test]
fn the_byte_window_counts_kib_and_any_value_fits_an_empty_window() {
    let mut st = SendState::<Seen, u32>::new(100, 4 * 1024, 64 << 10);
    st.opened(STREAM, 1 << 20);
    let big = Bytes::from(vec![0u8; 100 * 1024]);
    let Submit::Sent { seq: _, .. } =
        st.submit(big.clone(), false, Seen::default, &mut Place::default(), &0)
    else {
        panic!("a value larger than the window fits an empty one");
    };
    let mut place = Place::default();
    assert!(matches!(
        st.submit(v("x"), false, Seen::default, &mut place, &0),
        Submit::Wait(..)
    ));
}

#[test]
fn flush_reports_the_first_failure_of_a_value_nobody_waited_for() {
    let mut st = sender();
    let seq = match st.submit(v("a"), true, Seen::gone, &mut Place::default(), &0) {
        Submit::Sent { seq, .. } => seq,
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

/// Submits a value; whether it completed at once, on reserved room.
fn early(st: &mut SendState<Seen, u32>, value: &'static str) -> bool {
    match st.submit(v(value), false, Seen::default, &mut Place::default(), &0) {
        Submit::Sent { early, .. } => early,
        other => panic!("not sent: {other:?}"),
    }
}

#[test]
fn rule_2_a_value_on_reserved_room_completes_as_it_goes_out() {
    let mut st = sender();
    assert!(
        !early(&mut st, "a"),
        "no room reserved yet: it waits for its answer"
    );
    st.on_frames(1, from_owner(SignalOp::Reserve, 3, 0));
    assert!(early(&mut st, "b"));
    assert!(early(&mut st, "c"));
    assert!(!early(&mut st, "d"), "beyond the reservation");
    assert_eq!(
        effects(&mut st),
        [
            data(STREAM, 1, "a"),
            data(STREAM, 2, "b"),
            data(STREAM, 3, "c"),
            data(STREAM, 4, "d")
        ]
    );
    // Still pending until accepted: sent again after a reconnect (rule 10).
    assert_eq!(st.pending(), 4);
    st.on_frames(1, from_owner(SignalOp::Accepted, 1, 4));
    assert_eq!(st.flushed(5), Some(Ok(())));
}

#[test]
fn rule_2_at_most_ahead_bytes_complete_before_the_owner_confirms_them() {
    let mut st = SendState::<Seen, u32>::new(4096, 64 << 20, 2 * (1 + WIRE_OVERHEAD));
    st.opened(STREAM, 1024);
    st.on_frames(1, from_owner(SignalOp::Reserve, 100, 0));
    assert!(early(&mut st, "a"));
    assert!(early(&mut st, "b"));
    assert!(!early(&mut st, "c"), "two values unconfirmed already");
    st.on_frames(1, from_owner(SignalOp::Accepted, 1, 1));
    assert!(early(&mut st, "d"), "one confirmed: room again");
}

#[test]
fn a_revoke_is_answered_with_release_and_ends_the_reservation() {
    let mut st = sender();
    st.on_frames(1, from_owner(SignalOp::Reserve, 10, 0));
    assert!(early(&mut st, "a"));
    effects(&mut st);
    st.on_frames(1, from_owner(SignalOp::Revoke, 0, 0));
    assert_eq!(effects(&mut st), [signal(STREAM, SignalOp::Release, 0)]);
    assert!(!early(&mut st, "b"));
}

#[test]
fn rule_10_a_reservation_dies_with_its_stream() {
    let mut st = sender();
    st.on_frames(1, from_owner(SignalOp::Reserve, 10, 0));
    assert_eq!(st.lost(1), Lost::Reconnect);
    assert!(st.resumed(1, 9));
    assert!(
        !early(&mut st, "a"),
        "the new stream has no reservation yet"
    );
    st.on_frames(2, from_owner(SignalOp::Reserve, 10, 0));
    assert!(early(&mut st, "b"));
}
