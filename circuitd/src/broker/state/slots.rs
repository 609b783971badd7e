//! Room reserved for senders' values (rule 2 as `docs/CHANNELS.md` states it): a sender that
//! asks is told "room is kept for your values up to seq N" (`reserve`), so its `send`
//! completes as soon as the value is on its way, without a round trip; the owner accepts those
//! values whenever they come, even after a close. Reserved room counts as taken. It is given
//! out only while no send waits for room, in shares of the free room, and asked back
//! (`revoke`, answered by `release`) when a send has to wait, a try-send finds no room, or the
//! channel closes. Only a channel one node owns reserves: a replicated channel's send completes
//! when a majority holds the value (rule R2).

use serde::{Deserialize, Serialize};

use super::{ChanState, Effect};
use crate::stream::StreamKey;

/// Most room one sender is given ahead.
pub(crate) const MAX_SLOTS: u64 = 4096;

/// One send stream's reservation: room for the values with seqs in `high + 1 ..= limit`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Slots {
    /// The highest seq that arrived on the stream (or below which the sender's values are
    /// old ones, sent again).
    high: u64,
    /// The highest seq with room reserved.
    limit: u64,
    /// A revoke was sent and not answered yet.
    revoking: bool,
}

impl Slots {
    /// A stream whose next new value will have seq `next`.
    pub fn from_seq(next: u64) -> Self {
        let high = next.saturating_sub(1);
        Self {
            high,
            limit: high,
            revoking: false,
        }
    }

    /// Room reserved for values not arrived yet.
    pub fn outstanding(&self) -> u64 {
        self.limit.saturating_sub(self.high)
    }

    /// Value `seq` arrived: whether room was reserved for it, and how much reserved room
    /// that frees (the sender numbers its values consecutively, so usually one).
    pub fn arrived(&mut self, seq: u64) -> (bool, u64) {
        if seq <= self.high {
            return (false, 0);
        }
        let before = self.outstanding();
        let reserved = seq <= self.limit;
        self.high = seq;
        (reserved, before - self.outstanding())
    }
}

impl ChanState {
    /// How much room one sender is given ahead: an even share of half the capacity, at most
    /// [`MAX_SLOTS`]; 0 (none) when the capacity is too small to share.
    fn slot_share(&self) -> u64 {
        let takers = self.senders.values().filter(|s| s.slots.is_some()).count() as u64;
        (self.cap / (2 * takers.max(1))).min(MAX_SLOTS)
    }

    /// Tops up the reservation of send stream `stream` when it runs low, from free room,
    /// unless a send waits for room or the channel is closed.
    pub(super) fn grant(&mut self, stream: StreamKey) {
        if !self.reserving || self.closed || self.cap == 0 || !self.pending.is_empty() {
            return;
        }
        let Some(slots) = self.senders.get(&stream).and_then(|s| s.slots) else {
            return;
        };
        let outstanding = slots.outstanding();
        // No share is above MAX_SLOTS, so a sender holding more than half of that needs no
        // top-up: the common case, decided without counting the senders.
        if slots.revoking || outstanding > MAX_SLOTS / 2 {
            return;
        }
        let share = self.slot_share();
        if share == 0 || outstanding > share / 2 {
            return;
        }
        let free = self.cap.saturating_sub(self.occupancy());
        let more = (share - outstanding).min(free);
        if more == 0 {
            return;
        }
        // A client naming an absurd `reserve_from` gets no room rather than an overflow.
        let Some(upto) = slots.limit.max(slots.high).checked_add(more) else {
            return;
        };
        if let Some(kept) = self.senders.get_mut(&stream).and_then(|s| s.slots.as_mut()) {
            kept.limit = upto;
        }
        self.reserved += more;
        self.effects.push(Effect::Reserve { stream, upto });
    }

    /// Tops up every sender's reservation that runs low (room was freed).
    pub(super) fn grant_all(&mut self) {
        if !self.reserving || self.closed || !self.pending.is_empty() {
            return;
        }
        let takers: Vec<StreamKey> = self
            .senders
            .iter()
            .filter(|(_, s)| s.slots.is_some())
            .map(|(k, _)| *k)
            .collect();
        for stream in takers {
            self.grant(stream);
        }
    }

    /// Asks every sender holding reserved room to give it back.
    pub(super) fn revoke_all(&mut self) {
        if self.reserved == 0 {
            return;
        }
        for (&stream, send) in &mut self.senders {
            if let Some(slots) = send.slots.as_mut() {
                if slots.outstanding() > 0 && !slots.revoking {
                    slots.revoking = true;
                    self.effects.push(Effect::Revoke { stream });
                }
            }
        }
    }

    /// Send stream `stream` gives its reservation back: every value it sent under it has
    /// arrived (they came before this answer), so the rest is free again.
    pub fn release(&mut self, stream: StreamKey) {
        let Some(slots) = self.senders.get_mut(&stream).and_then(|s| s.slots.as_mut()) else {
            return;
        };
        self.reserved -= slots.outstanding();
        slots.limit = slots.high;
        slots.revoking = false;
        self.pump();
        self.grant_all();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{ChanState, Effect};
    use crate::stream::StreamKey;

    const S1: StreamKey = 1;
    const S2: StreamKey = 2;
    const RX: StreamKey = 3;

    fn v() -> Bytes {
        Bytes::from_static(b"v")
    }

    fn take(st: &mut ChanState) -> Vec<Effect> {
        std::mem::take(&mut st.effects)
    }

    fn reserves(effects: &[Effect]) -> Vec<(StreamKey, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Reserve { stream, upto } => Some((*stream, *upto)),
                _ => None,
            })
            .collect()
    }

    fn held(st: &ChanState) -> u64 {
        let c = st.counts();
        c.len + c.in_flight + st.reserved
    }

    #[test]
    fn rule_2_room_is_reserved_ahead_and_values_on_it_are_accepted_as_they_come() {
        let mut st = ChanState::new(8, 1024, false).with_reservations();
        st.open_send(S1, 100, Some(1), 0);
        assert_eq!(reserves(&take(&mut st)), [(S1, 4)], "half the room");
        for seq in 1..=2 {
            st.send(S1, seq, v());
        }
        // Topped up once half is used, from free room.
        assert_eq!(reserves(&take(&mut st)), [(S1, 6)]);
        for seq in 3..=6 {
            st.send(S1, seq, v());
            assert!(held(&st) <= 8, "room is never promised twice");
        }
        assert_eq!(st.counts().len, 6);
        // The last two slots are reserved: their values go in, one beyond them waits.
        let effects = take(&mut st);
        assert_eq!(reserves(&effects), [(S1, 8)]);
        st.send(S1, 7, v());
        st.send(S1, 8, v());
        assert_eq!((st.counts().len, st.reserved), (8, 0));
        st.send(S1, 9, v());
        assert_eq!(st.counts().waiting_senders, 1);
    }

    #[test]
    fn a_replicated_channel_reserves_nothing() {
        let mut st = ChanState::new(8, 1024, false);
        st.open_send(S1, 100, Some(1), 0);
        assert!(reserves(&take(&mut st)).is_empty());
    }

    #[test]
    fn rule_2_a_send_that_must_wait_has_reserved_room_given_back() {
        let mut st = ChanState::new(4, 1024, false).with_reservations();
        st.open_send(S1, 100, Some(1), 0);
        st.open_send(S2, 200, None, 0);
        assert_eq!(reserves(&take(&mut st)), [(S1, 2)]);
        st.send(S2, 1, v());
        st.send(S2, 2, v());
        st.send(S2, 3, v());
        // Full with two buffered and two reserved: S1 is asked to give its room back.
        let effects = take(&mut st);
        assert!(effects.contains(&Effect::Revoke { stream: S1 }));
        assert_eq!(st.counts().waiting_senders, 1);
        // S1 used one slot before it heard: that value is accepted, the other slot freed.
        st.send(S1, 1, v());
        st.release(S1);
        assert_eq!(st.counts().waiting_senders, 0);
        assert_eq!(st.counts().len, 4);
        assert_eq!(st.reserved, 0);
    }

    #[test]
    fn rule_5_values_sent_on_reserved_room_are_accepted_after_close_and_drained_waits_for_them() {
        let mut st = ChanState::new(8, 1024, false).with_reservations();
        st.open_send(S1, 100, Some(1), 0);
        st.open_recv(RX);
        take(&mut st);
        st.close().expect("close");
        assert!(take(&mut st).contains(&Effect::Revoke { stream: S1 }));
        st.credit(RX, 8);
        assert!(
            !take(&mut st).contains(&Effect::Drained { stream: RX }),
            "not drained while reserved room may still be filled"
        );
        st.send(S1, 1, v());
        let effects = take(&mut st);
        assert!(effects.contains(&Effect::Accepted { stream: S1, seq: 1 }));
        assert!(matches!(
            effects.last(),
            Some(Effect::Deliver { stream: RX, .. })
        ));
        st.ack(RX, 1);
        st.release(S1);
        assert!(take(&mut st).contains(&Effect::Drained { stream: RX }));
        // Beyond the reservation, a send after close fails.
        st.send(S1, 9, v());
        assert!(take(&mut st).contains(&Effect::Closed { stream: S1, seq: 9 }));
    }

    #[test]
    fn a_gone_sender_frees_its_reserved_room_and_a_reconnected_one_starts_afresh() {
        let mut st = ChanState::new(8, 1024, false).with_reservations();
        st.open_send(S1, 100, Some(1), 0);
        take(&mut st);
        st.send(S1, 1, v());
        st.stream_gone(S1, 0);
        assert_eq!(st.reserved, 0);
        // The same sender on a new stream: seq 2 was sent on the old reservation, so it is
        // sent again and waits for its answer; room is reserved from seq 3 on.
        st.open_send(S2, 100, Some(3), 0);
        assert_eq!(reserves(&take(&mut st)), [(S2, 6)]);
        st.send(S2, 2, v());
        st.send(S2, 3, v());
        assert_eq!(st.counts().len, 3);
        assert!(held(&st) <= 8);
    }
}
