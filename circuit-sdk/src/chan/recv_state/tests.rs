//! The receiving half's state machine against the rules of `docs/CHANNELS.md`, one event at a
//! time.

use super::*;

const STREAM: u64 = 3;
/// A channel's capacity large enough not to bound automatic prefetch.
const CAPACITY: u64 = 1 << 20;

fn receiver(prefetch: u32) -> RecvState {
    let mut st = RecvState::new(prefetch, 4 << 20);
    st.opened(STREAM, 1, CAPACITY);
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

/// `n` values of 4 bytes each, numbered from 1.
fn four_byte_values(n: u64) -> Vec<Frame> {
    (1..=n)
        .map(|seq| Frame::Data {
            id: STREAM,
            seq,
            payload: Bytes::from_static(b"wxyz"),
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
    let mut out = VecDeque::new();
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
        b: 3,
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
    assert_eq!(
        pulled(&mut st),
        [(SignalOp::Credit, 8), (SignalOp::Waiting, 0)]
    );
    st.on_frames(1, values(&["1", "2", "3", "4", "5", "6", "7", "8"]));
    // Holding 7, 6, 5: no more credit yet.
    for _ in 0..3 {
        taken(&mut st, false);
    }
    assert_eq!(pulled(&mut st), [(SignalOp::Ack, 3)]);
    assert!(
        !st.should_yield(),
        "no credit to send: no reason to give way"
    );
    // Holding 4 (half): topped up to 8 again, never more.
    taken(&mut st, false);
    assert_eq!(pulled(&mut st), [(SignalOp::Ack, 1), (SignalOp::Credit, 4)]);
    // With values still here, the next receive gives way once so the credit goes out before
    // they run out.
    assert!(st.should_yield());
    assert!(!st.should_yield());
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
    let mut out = VecDeque::new();
    st.pull(2, &mut out);
    let credit = Frame::Signal {
        id: 8,
        op: SignalOp::Credit,
        a: 4,
        b: 0,
    };
    let waiting = Frame::Signal {
        id: 8,
        op: SignalOp::Waiting,
        a: 0,
        b: 0,
    };
    assert_eq!(
        out,
        [credit, waiting],
        "asked again on the new stream, no stale ack"
    );
}

#[test]
fn rule_r2_a_replicated_receiver_keeps_what_it_holds_and_names_it_when_it_comes_back() {
    let mut st = RecvState::new(4, 4 << 20);
    st.opened(STREAM, 3, CAPACITY);
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
    let mut out = VecDeque::new();
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

#[test]
fn rule_7_a_prefetching_receiver_says_once_that_it_waits_with_nothing_left() {
    let mut st = receiver(8);
    assert!(st.take(false).is_pending());
    assert_eq!(
        pulled(&mut st),
        [(SignalOp::Credit, 8), (SignalOp::Waiting, 0)]
    );
    assert!(st.take(false).is_pending());
    assert_eq!(pulled(&mut st), [], "said already");
    st.on_frames(1, values(&["a", "b"]));
    taken(&mut st, false);
    taken(&mut st, false);
    assert!(st.take(false).is_pending());
    assert_eq!(
        pulled(&mut st),
        [(SignalOp::Ack, 2), (SignalOp::Waiting, 2)]
    );
}

#[test]
fn rule_7_a_recall_acknowledges_what_was_taken_and_gives_back_the_newest_untaken() {
    let mut st = receiver(8);
    assert!(st.take(true).is_pending());
    pulled(&mut st);
    st.on_frames(1, values(&["a", "b", "c", "d"]));
    let (_, first) = taken(&mut st, true);
    taken(&mut st, false);
    st.ack_take(1, first);
    let recall = Frame::Signal {
        id: STREAM,
        op: SignalOp::Recall,
        a: 1,
        b: 0,
    };
    st.on_frames(1, vec![recall]);
    let mut out = VecDeque::new();
    st.pull(st.stream.gen, &mut out);
    let recalled = Frame::Signal {
        id: STREAM,
        op: SignalOp::Recalled,
        a: 1,
        b: 4,
    };
    assert_eq!(out, [st.stream.signal(SignalOp::Ack, 2), recalled]);
    // "d" went back; "c" is still here.
    assert!(matches!(st.take(false), Poll::Ready(Ok((c, _))) if c == v("c")));
    assert!(st.take(false).is_pending());
    // A recall with nothing left untaken is still answered.
    st.on_frames(
        1,
        vec![Frame::Signal {
            id: STREAM,
            op: SignalOp::Recall,
            a: 5,
            b: 0,
        }],
    );
    assert!(pulled(&mut st).contains(&(SignalOp::Recalled, 0)));
}

#[test]
fn prefetch_is_bounded_by_bytes_as_well_as_values() {
    let mut st = RecvState::new(100, 10);
    st.opened(STREAM, 1, CAPACITY);
    assert!(st.take(false).is_pending());
    assert_eq!(pulled(&mut st)[0], (SignalOp::Credit, 100));
    // Values of 4 bytes: once the first arrives, credit is sized for 10 bytes.
    st.on_frames(1, four_byte_values(100));
    for _ in 0..99 {
        taken(&mut st, false);
    }
    let credit: Vec<_> = pulled(&mut st)
        .into_iter()
        .filter(|(op, _)| *op == SignalOp::Credit)
        .collect();
    assert_eq!(
        credit,
        [(SignalOp::Credit, 1)],
        "10 bytes hold two values; one is here"
    );
}

/// When bytes bound the prefetch below its count, credit is still topped up at half of what
/// may be held, in one go: not one value at a time, each making the receive give way (with
/// `prefetch: 100` and room for ten 4-byte values, taking a hundred values sent two credits,
/// not eleven, and gave way twice).
#[test]
fn prefetch_bounded_by_bytes_tops_up_at_half_of_what_the_bytes_allow() {
    let mut st = RecvState::new(100, 40);
    st.opened(STREAM, 1, CAPACITY);
    assert!(st.take(false).is_pending());
    assert_eq!(pulled(&mut st)[0], (SignalOp::Credit, 100));
    st.on_frames(1, four_byte_values(100));
    let (mut credits, mut yields) = (Vec::new(), 0);
    for _ in 0..100 {
        taken(&mut st, false);
        yields += usize::from(st.should_yield());
        credits.extend(
            pulled(&mut st)
                .into_iter()
                .filter(|(op, _)| *op == SignalOp::Credit)
                .map(|(_, n)| n),
        );
    }
    assert_eq!(credits, [5, 5], "topped up at half of ten, to ten");
    assert_eq!(yields, 1, "gave way once, with values still here");
}

/// Automatic prefetch takes at most half the channel's capacity, so that what a receiver
/// holds (it counts against the capacity) leaves room for senders to get ahead into: 2048 on
/// a large channel, 512 at capacity 1024, one value per `recv` at capacity 0 or 1, and one on
/// a replicated channel.
#[test]
fn automatic_prefetch_is_at_most_half_the_capacity() {
    let automatic = |replicas, capacity| {
        let mut st = RecvState::new(0, 4 << 20);
        st.opened(STREAM, replicas, capacity);
        assert!(st.take(false).is_pending());
        pulled(&mut st)[0]
    };
    assert_eq!(automatic(1, 1 << 20), (SignalOp::Credit, AUTO_PREFETCH));
    assert_eq!(automatic(1, 1024), (SignalOp::Credit, 512));
    assert_eq!(automatic(1, 1), (SignalOp::Credit, 1));
    assert_eq!(automatic(1, 0), (SignalOp::Credit, 1));
    assert_eq!(automatic(3, 1 << 20), (SignalOp::Credit, 1));
}
