//! The events only a replicated channel has: a new leader takes over (the streams of the old
//! one are gone, but receivers keep what they hold), and a receiver comes back to the new
//! leader saying which values it holds and which it acknowledged, so that a value in its hands
//! is neither taken away from it nor handed to someone else, and none it acknowledged comes
//! back. Rules R2 and R3 of `docs/CHANNELS.md`.

use std::collections::{HashSet, VecDeque};

use super::{ChanState, Recv, Value};
use crate::stream::StreamKey;

#[allow(dead_code)] // The replicated channel (broker::replica) is being built on it.
impl ChanState {
    /// Receive stream `stream` opened by receiver `id`. A receiver coming back after a leader
    /// change names the values it has and has not acknowledged (`held`, ids) and those it
    /// acknowledged lately (`acked`): of what was in flight to it, an acknowledged value
    /// leaves the channel, a held one stays in flight with the new stream (in the order it
    /// was delivered, as acknowledgements count), and the rest — never received — goes back
    /// to the head of the queue.
    pub fn open_recv_as(&mut self, stream: StreamKey, id: u64, held: &[u64], acked: &[u64]) {
        self.receivers.insert(
            stream,
            Recv {
                id: Some(id),
                ..Recv::default()
            },
        );
        let Some(values) = self.detached.remove(&id) else {
            return;
        };
        let held: HashSet<u64> = held.iter().copied().collect();
        let acked: HashSet<u64> = acked.iter().copied().collect();
        let mut keep = VecDeque::new();
        let mut back = VecDeque::new();
        for v in values {
            if acked.contains(&v.id) {
                self.leave(v);
            } else if held.contains(&v.id) {
                keep.push_back(v);
            } else {
                back.push_back(v);
            }
        }
        let recv = self.receivers.get_mut(&stream).expect("inserted above");
        // The receiver counts what it kept as delivered on its new stream.
        recv.delivered = keep.len() as u64;
        recv.in_flight = keep;
        let n = back.len();
        self.requeue(back, n);
        self.pump();
    }

    /// A new leader serves the channel: every stream that `current` does not keep belonged to
    /// an earlier leader and is gone. A sender's waiting values are dropped (it sends them
    /// again, and seqs already accepted are confirmed again); a receiver with an id keeps what
    /// it holds, detached, until it comes back ([`ChanState::open_recv_as`]) or is given up on
    /// ([`ChanState::give_up`]); one without goes back to the queue.
    pub fn leader_changed(&mut self, now_ms: u64, current: impl Fn(StreamKey) -> bool) {
        let old: Vec<StreamKey> = self
            .receivers
            .keys()
            .chain(self.senders.keys())
            .copied()
            .filter(|k| !current(*k))
            .collect();
        for stream in old {
            match self.receivers.get(&stream).and_then(|r| r.id) {
                Some(id) => {
                    let recv = self.receivers.remove(&stream).expect("listed above");
                    self.waiting.retain(|(k, _)| *k != stream);
                    self.detached.entry(id).or_default().extend(recv.in_flight);
                }
                None => self.stream_gone(stream, now_ms),
            }
        }
        self.pump();
    }

    /// Receivers that did not come back after a leader change: what they held goes back to
    /// the head of the queue.
    pub fn give_up(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(values) = self.detached.remove(id) {
                let n = values.len();
                self.requeue(values, n);
            }
        }
        self.pump();
    }

    /// The receivers holding values detached by a leader change.
    pub fn detached_receivers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.detached.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A value in flight leaves the channel: its receiver acknowledged it.
    fn leave(&mut self, v: Value) {
        self.in_flight -= 1;
        self.received += 1;
        if let Some((sender, seq)) = v.origin {
            self.unpark(sender, v.payload.len());
            self.accept(sender, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{ChanState, Effect};
    use crate::stream::StreamKey;

    const SENDER: StreamKey = 1;
    const OLD_RECV: StreamKey = 2;
    const NEW_RECV: StreamKey = 10;

    /// A channel of capacity 8 with values 1..=n accepted from one sender, all delivered to a
    /// receiver with id 77 on `OLD_RECV`.
    fn delivered(n: u64) -> ChanState {
        let mut s = ChanState::new(8, 1024, false);
        s.open_send(SENDER, 5, None, 0);
        s.open_recv_as(OLD_RECV, 77, &[], &[]);
        for seq in 1..=n {
            s.send(SENDER, seq, Bytes::from(format!("v{seq}")));
        }
        s.credit(OLD_RECV, n);
        s.effects.clear();
        s
    }

    fn delivered_ids(s: &mut ChanState, stream: StreamKey) -> Vec<u64> {
        s.effects
            .drain(..)
            .filter_map(|e| match e {
                Effect::Deliver { stream: k, id, .. } if k == stream => Some(id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rule_r2_a_receiver_keeps_what_it_holds_across_a_leader_change() {
        let mut s = delivered(4);
        s.leader_changed(0, |k| k == SENDER);
        assert_eq!(s.detached_receivers(), [77]);
        // Still in flight: nobody else may get them meanwhile.
        assert_eq!((s.counts().len, s.counts().in_flight), (0, 4));
        let other: StreamKey = 11;
        s.open_recv(other);
        s.credit(other, 4);
        assert!(delivered_ids(&mut s, other).is_empty());
        // It comes back: acknowledged 1, holds 2 and 3, never got 4.
        s.open_recv_as(NEW_RECV, 77, &[2, 3], &[1]);
        // 4 went back to the head of the queue, and the waiting receiver got it.
        assert_eq!(delivered_ids(&mut s, other), [4]);
        let c = s.counts();
        assert_eq!((c.received, c.in_flight), (1, 3));
        // Acknowledgements on the new stream count from what it holds, in order.
        s.ack(NEW_RECV, 2);
        assert_eq!((s.counts().received, s.counts().in_flight), (3, 1));
    }

    #[test]
    fn rule_r2_a_receiver_given_up_on_gives_everything_back_in_order() {
        let mut s = delivered(3);
        s.leader_changed(0, |_| false);
        s.give_up(&[77]);
        assert!(s.detached_receivers().is_empty());
        assert_eq!((s.counts().len, s.counts().in_flight), (3, 0));
        s.open_recv(NEW_RECV);
        s.credit(NEW_RECV, 3);
        assert_eq!(delivered_ids(&mut s, NEW_RECV), [1, 2, 3]);
    }

    #[test]
    fn rule_r3_a_sender_of_an_old_leader_sends_again_and_is_accepted_once() {
        let mut s = ChanState::new(1, 1024, false);
        s.open_send(SENDER, 5, None, 0);
        s.send(SENDER, 1, Bytes::from_static(b"a"));
        // Full: seq 2 waits.
        s.send(SENDER, 2, Bytes::from_static(b"b"));
        s.effects.clear();
        s.leader_changed(0, |_| false);
        assert_eq!(s.counts().waiting_senders, 0);
        // The sender comes back and sends both again: 1 is confirmed, 2 waits once more.
        s.open_send(20, 5, None, 0);
        s.send(20, 1, Bytes::from_static(b"a"));
        s.send(20, 2, Bytes::from_static(b"b"));
        assert_eq!(s.effects, [Effect::Accepted { stream: 20, seq: 1 }]);
        let c = s.counts();
        assert_eq!((c.len, c.waiting_senders, c.sent), (1, 1, 1));
    }

    #[test]
    fn a_receiver_without_an_id_gives_back_at_a_leader_change() {
        let mut s = ChanState::new(4, 1024, false);
        s.open_send(SENDER, 5, None, 0);
        s.open_recv(OLD_RECV);
        s.send(SENDER, 1, Bytes::from_static(b"a"));
        s.credit(OLD_RECV, 1);
        s.leader_changed(0, |_| false);
        assert!(s.detached_receivers().is_empty());
        assert_eq!((s.counts().len, s.counts().in_flight), (1, 0));
    }

    #[test]
    fn rendezvous_values_held_across_a_leader_change_complete_their_send_when_acknowledged() {
        let mut s = ChanState::new(0, 1024, false);
        s.open_send(SENDER, 5, None, 0);
        s.open_recv_as(OLD_RECV, 77, &[], &[]);
        s.credit(OLD_RECV, 1);
        s.send(SENDER, 1, Bytes::from_static(b"a"));
        s.effects.clear();
        s.leader_changed(0, |_| false);
        // The sender is back on a new stream; the receiver acknowledged the value meanwhile.
        s.open_send(20, 5, None, 0);
        s.open_recv_as(NEW_RECV, 77, &[], &[1]);
        assert_eq!(s.counts().sent, 1);
        // Its retry is confirmed, not taken again.
        s.effects.clear();
        s.send(20, 1, Bytes::from_static(b"a"));
        assert_eq!(s.effects, [Effect::Accepted { stream: 20, seq: 1 }]);
        assert_eq!(s.counts().waiting_senders, 0);
    }

    #[test]
    fn the_state_survives_a_snapshot_round_trip() {
        let mut s = delivered(3);
        s.leader_changed(0, |k| k == SENDER);
        let bytes = postcard::to_allocvec(&s).expect("encode");
        let mut back: ChanState = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back.counts(), s.counts());
        assert_eq!(back.detached_receivers(), [77]);
        back.open_recv_as(NEW_RECV, 77, &[1, 2, 3], &[]);
        back.ack(NEW_RECV, 3);
        assert_eq!(back.counts().received, 3);
    }
}
