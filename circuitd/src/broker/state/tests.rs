//! The owner's state machine against the rules of `docs/CHANNELS.md`, one event at a time.

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
    st.open_send(1, 100, None, 0);
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
    assert_eq!(c.redelivered, 1, "the value given again is counted once");
}

#[test]
fn rule_9_capacity_counts_buffered_and_in_flight() {
    let mut st = ChanState::new(2, MAX, false);
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
    st.send(1, 1, v("a"));
    take(&mut st);
    // The sender reconnects on stream 2 and sends seq 1 again, then seq 2.
    st.stream_gone(1, 0);
    st.open_send(2, 100, None, 0);
    st.send(2, 1, v("a"));
    st.send(2, 2, v("b"));
    assert_eq!(accepted(&take(&mut st)), [1, 2]);
    assert_eq!(st.counts().len, 2, "one copy of seq 1");
}

#[test]
fn rule_10_a_retry_of_a_waiting_value_keeps_one_copy() {
    let mut st = ChanState::new(0, MAX, false);
    st.open_send(1, 100, None, 0);
    st.send(1, 1, v("a"));
    // The new stream opens before the old one is known to be gone.
    st.open_send(2, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
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
    st.open_send(1, 100, None, 0);
    st.send(1, 1, v("a"));
    st.stream_gone(1, 0);
    assert!(st.accepted.contains_key(&100));
    st.open_send(2, 200, None, ORPHAN_TTL_MS + 1);
    assert!(!st.accepted.contains_key(&100));
}

#[test]
fn rule_3_values_given_back_in_two_steps_keep_their_order() {
    let mut st = ChanState::new(8, MAX, false);
    st.open_send(1, 100, None, 0);
    for (seq, s) in [(1, "a"), (2, "b"), (3, "c")] {
        st.send(1, seq, v(s));
    }
    st.open_recv(2);
    st.credit(2, 3);
    assert_eq!(delivered(&take(&mut st)).len(), 3);
    // The receiver gives back the one value it had received while "b" and "c" were on their
    // way; then it goes away, and those two go back after "a", not before it.
    st.give_back(2, 1, 1);
    st.stream_gone(2, 0);
    take(&mut st);
    st.open_recv(3);
    st.credit(3, 3);
    let got = delivered(&take(&mut st));
    assert_eq!(got, [(3, v("a")), (3, v("b")), (3, v("c"))]);
    assert_eq!(
        st.counts().redelivered,
        3,
        "one given back, two with the receiver gone"
    );
}
