//! What a replicated channel's log carries: batches of the events that change the channel's
//! state machine ([`ChanState`]), and how a batch is applied. Pure: the same batches applied in
//! the same order give the same state on every replica; only the leader sends what applying
//! produced.

use bytes::Bytes;
use circuit_sdk::proto::SignalOp;
use serde::{Deserialize, Serialize};

use crate::broker::state::ChanState;
use crate::stream::StreamKey;

/// One log entry: the events a leader gathered in one turn, and its clock then (the state
/// machine forgets gone senders' de-duplication state by it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    /// The leader's wall clock, in ms since the epoch.
    pub now_ms: u64,
    /// In the order they happened.
    pub events: Vec<Event>,
}

/// An event that changes a replicated channel. Streams are named by keys the leader gives
/// (its term in the high bits, so no two leaders give the same key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// A send stream opened for `sender`.
    OpenSend { stream: StreamKey, sender: u64 },
    /// A receive stream opened for receiver `receiver`, holding `held` and having acknowledged
    /// `acked` (value ids) if it comes back after a leader change.
    OpenRecv {
        stream: StreamKey,
        receiver: u64,
        held: Vec<u64>,
        acked: Vec<u64>,
    },
    /// Values from a send stream: (seq, payload).
    Values {
        stream: StreamKey,
        values: Vec<(u64, Bytes)>,
    },
    /// A client's signal on a stream (its wire op and arguments).
    Signal {
        stream: StreamKey,
        op: u8,
        a: u64,
        b: u64,
    },
    /// A stream ended.
    Gone { stream: StreamKey },
    /// A new leader serves from its term on: every stream with a key of an earlier term is
    /// gone (receivers keep what they hold, detached).
    Leader { term: u64 },
    /// Receivers that did not come back after a leader change: what they held goes back.
    GiveUp { receivers: Vec<u64> },
    /// The channel is closed.
    Close,
    /// The channel is removed (`chan rm`): every replica deletes itself.
    Remove,
}

/// The key of the `n`th stream a leader of `term` opens.
pub(crate) fn stream_key(term: u64, n: u64) -> StreamKey {
    (term << 32) | (n & 0xffff_ffff)
}

/// The term of the leader that opened stream `key`.
pub(crate) fn term_of(key: StreamKey) -> u64 {
    key >> 32
}

/// What applying a batch told the caller besides the effects in `state.effects`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The answer to a `Close` in this batch, if there was one.
    pub closed: Option<Result<(), String>>,
    /// The batch removed the channel.
    pub removed: bool,
}

/// Applies `batch` to `state`, in order. Effects accumulate in `state.effects`.
pub(crate) fn apply(state: &mut ChanState, batch: &Batch) -> Applied {
    let mut applied = Applied::default();
    let now = batch.now_ms;
    for event in &batch.events {
        match event {
            Event::OpenSend { stream, sender } => state.open_send(*stream, *sender, None, now),
            Event::OpenRecv {
                stream,
                receiver,
                held,
                acked,
            } => state.open_recv_as(*stream, *receiver, held, acked),
            Event::Values { stream, values } => {
                for (seq, payload) in values {
                    state.send(*stream, *seq, payload.clone());
                }
            }
            Event::Signal { stream, op, a, b } => match SignalOp::from_u8(*op) {
                Some(SignalOp::Credit) => state.credit(*stream, *a),
                Some(SignalOp::Ack) => state.ack(*stream, *a),
                Some(SignalOp::Return) => state.give_back(*stream, *a, *b),
                Some(SignalOp::Waiting) => state.waiting_for_value(*stream, *a),
                Some(SignalOp::Recalled) => state.recalled(*stream, *a, *b),
                Some(SignalOp::TryRecv) => state.try_recv(*stream),
                Some(SignalOp::Withdraw) => state.withdraw(*stream),
                Some(SignalOp::TrySend) => state.mark_try(*stream, *a),
                Some(SignalOp::CancelSend) => state.cancel_send(*stream, *a),
                // The leader proposes client signals only.
                _ => {}
            },
            Event::Gone { stream } => state.stream_gone(*stream, now),
            Event::Leader { term } => state.leader_changed(now, |k| term_of(k) >= *term),
            Event::GiveUp { receivers } => state.give_up(receivers),
            Event::Close => applied.closed = Some(state.close()),
            Event::Remove => applied.removed = true,
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::state::Effect;

    #[test]
    fn the_same_batches_give_the_same_state_and_effects_on_every_replica() {
        let (a, b) = (stream_key(1, 1), stream_key(1, 2));
        let batches = vec![
            Batch {
                now_ms: 10,
                events: vec![
                    Event::OpenSend {
                        stream: a,
                        sender: 9,
                    },
                    Event::OpenRecv {
                        stream: b,
                        receiver: 4,
                        held: vec![],
                        acked: vec![],
                    },
                ],
            },
            Batch {
                now_ms: 11,
                events: vec![
                    Event::Values {
                        stream: a,
                        values: vec![(1, Bytes::from_static(b"x")), (2, Bytes::from_static(b"y"))],
                    },
                    Event::Signal {
                        stream: b,
                        op: SignalOp::Credit as u8,
                        a: 1,
                        b: 0,
                    },
                ],
            },
        ];
        let run = || {
            let mut s = ChanState::new(4, 64, false);
            let mut effects = Vec::new();
            for batch in &batches {
                apply(&mut s, batch);
                effects.append(&mut s.effects);
            }
            (postcard::to_allocvec(&s).expect("encode"), effects)
        };
        let (one, two) = (run(), run());
        assert_eq!(one, two);
        assert!(one.1.contains(&Effect::Deliver {
            stream: b,
            id: 1,
            payload: Bytes::from_static(b"x"),
        }));
    }

    #[test]
    fn a_new_leader_ends_the_streams_of_earlier_terms_only() {
        let mut s = ChanState::new(4, 64, false);
        let (old, new) = (stream_key(1, 1), stream_key(2, 1));
        let open = |stream, sender| Event::OpenSend { stream, sender };
        apply(
            &mut s,
            &Batch {
                now_ms: 0,
                events: vec![open(old, 1), open(new, 2)],
            },
        );
        assert_eq!(s.counts().senders, 2);
        apply(
            &mut s,
            &Batch {
                now_ms: 0,
                events: vec![Event::Leader { term: 2 }],
            },
        );
        assert_eq!(s.counts().senders, 1);
        assert_eq!(term_of(new), 2);
    }

    #[test]
    fn close_answers_once() {
        let mut s = ChanState::new(1, 64, false);
        let close = Batch {
            now_ms: 0,
            events: vec![Event::Close],
        };
        assert_eq!(apply(&mut s, &close).closed, Some(Ok(())));
        assert!(matches!(apply(&mut s, &close).closed, Some(Err(_))));
    }
}
