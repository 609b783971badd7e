//! Receivers that wait, and values recalled for them (rule 7 with prefetch): a receiver whose
//! application waits with everything delivered taken says so (`waiting`); it is served before
//! receivers that only prefetch, and if nothing is left to give it, receivers holding values
//! their applications have not taken are asked to give some back (`recall`), which they do
//! after acknowledging what was taken (`recalled`). So a value never sits in one receiver's
//! buffer while another receiver waits for it, and a lone receiver prefetches freely.

use super::{ChanState, Effect};
use crate::stream::StreamKey;

impl ChanState {
    /// Receiver `stream` waits and has taken every value delivered; `seen` is its count of
    /// values received on this stream. If more were delivered, they are on their way and it
    /// is not starving.
    pub fn waiting_for_value(&mut self, stream: StreamKey, seen: u64) {
        let Some(recv) = self.receivers.get_mut(&stream) else {
            return;
        };
        if recv.hungry || recv.credit == 0 || recv.delivered != seen {
            return;
        }
        recv.hungry = true;
        // Everything it received is taken: none of it can be asked back.
        recv.kept = recv.in_flight.len() as u64;
        self.hungry.push_back(stream);
        self.pump();
    }

    /// Receiver `stream` answers a recall: it gives back `n` values, the newest of the first
    /// `seen` delivered to it, and has acknowledged what its application took. If it gave
    /// back fewer than were asked, what it still holds of what it had received is in its
    /// application's hands.
    pub fn recalled(&mut self, stream: StreamKey, n: u64, seen: u64) {
        let Some(recv) = self.receivers.get_mut(&stream) else {
            return;
        };
        let asked = std::mem::take(&mut recv.recalling);
        if n < asked {
            if let Some(on_the_way) = recv.delivered.checked_sub(seen) {
                let held = recv.in_flight.len() as u64;
                recv.kept = held.saturating_sub(on_the_way + n);
            }
        }
        // Checks the numbers (a wrong answer fails the stream) and serves the waiting.
        self.give_back(stream, n, seen);
    }

    /// Asks receivers holding values their applications have not taken for as many as the
    /// receivers that wait with nothing to take, those holding the most first (ties by
    /// stream key, so that every replica of a replicated channel asks the same).
    pub(super) fn recall(&mut self) {
        let starving = self
            .hungry
            .iter()
            .filter(|s| self.receivers.get(s).is_some_and(|r| r.credit > 0))
            .count() as u64;
        let asked: u64 = self.receivers.values().map(|r| r.recalling).sum();
        let mut short = starving.saturating_sub(asked);
        if short == 0 {
            return;
        }
        let mut holders: Vec<(u64, StreamKey)> = self
            .receivers
            .iter()
            .filter(|(_, r)| !r.hungry && r.recalling == 0)
            .map(|(k, r)| {
                (
                    r.in_flight.len() as u64 - r.kept.min(r.in_flight.len() as u64),
                    *k,
                )
            })
            .filter(|(n, _)| *n > 0)
            .collect();
        holders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (can, stream) in holders {
            if short == 0 {
                break;
            }
            let n = can.min(short);
            short -= n;
            if let Some(r) = self.receivers.get_mut(&stream) {
                r.recalling = n;
            }
            self.effects.push(Effect::Recall { stream, n });
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::{ChanState, Effect};
    use crate::stream::StreamKey;

    const TX: StreamKey = 1;
    const R1: StreamKey = 2;
    const R2: StreamKey = 3;

    fn take(st: &mut ChanState) -> Vec<Effect> {
        std::mem::take(&mut st.effects)
    }

    fn to(effects: &[Effect]) -> Vec<(StreamKey, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver { stream, id, .. } => Some((*stream, *id)),
                _ => None,
            })
            .collect()
    }

    fn recalls(effects: &[Effect]) -> Vec<(StreamKey, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Recall { stream, n } => Some((*stream, *n)),
                _ => None,
            })
            .collect()
    }

    /// Capacity 8, one sender, two receivers; `n` values sent.
    fn channel(n: u64) -> ChanState {
        let mut st = ChanState::new(8, 1024, false);
        st.open_send(TX, 100, None, 0);
        st.open_recv(R1);
        st.open_recv(R2);
        for seq in 1..=n {
            st.send(TX, seq, Bytes::from_static(b"v"));
        }
        take(&mut st);
        st
    }

    #[test]
    fn rule_7_a_waiting_receiver_is_served_before_one_that_prefetches() {
        let mut st = channel(0);
        st.credit(R1, 4);
        st.credit(R2, 4);
        st.waiting_for_value(R2, 0);
        st.send(TX, 1, Bytes::from_static(b"a"));
        assert_eq!(to(&take(&mut st)), [(R2, 1)], "R1's credit is older");
        // R2 no longer waits: the next value follows the credit's order.
        st.send(TX, 2, Bytes::from_static(b"b"));
        assert_eq!(to(&take(&mut st)), [(R1, 2)]);
    }

    #[test]
    fn rule_7_values_a_receiver_holds_untaken_are_recalled_for_one_that_waits() {
        let mut st = channel(3);
        st.credit(R1, 4);
        assert_eq!(to(&take(&mut st)), [(R1, 1), (R1, 2), (R1, 3)]);
        st.credit(R2, 4);
        st.waiting_for_value(R2, 0);
        assert_eq!(recalls(&take(&mut st)), [(R1, 1)], "one is asked back");
        // Asked again only after the answer.
        st.waiting_for_value(R2, 0);
        assert!(recalls(&take(&mut st)).is_empty());
        // R1's application took the first; it gives back the newest of the three it received.
        st.ack(R1, 1);
        st.recalled(R1, 1, 3);
        assert_eq!(to(&take(&mut st)), [(R2, 3)]);
        assert_eq!(st.counts().in_flight, 2);
    }

    #[test]
    fn a_recall_answered_with_nothing_is_not_asked_again_until_more_comes() {
        let mut st = channel(2);
        st.credit(R1, 4);
        take(&mut st);
        st.credit(R2, 4);
        st.waiting_for_value(R2, 0);
        assert_eq!(recalls(&take(&mut st)), [(R1, 1)]);
        // Both are in R1's application's hands (deliveries not acknowledged yet).
        st.recalled(R1, 0, 2);
        assert!(recalls(&take(&mut st)).is_empty(), "no recall loop");
        // A new value goes to the receiver that waits, and is not recalled from it.
        st.send(TX, 3, Bytes::from_static(b"c"));
        let effects = take(&mut st);
        assert_eq!(to(&effects), [(R2, 3)]);
        assert!(recalls(&effects).is_empty());
    }

    #[test]
    fn a_receiver_with_values_on_their_way_is_not_waiting() {
        let mut st = channel(1);
        st.credit(R1, 4);
        take(&mut st);
        // It says it waits having received none: the one delivered is on its way.
        st.waiting_for_value(R1, 0);
        st.credit(R2, 4);
        st.send(TX, 2, Bytes::from_static(b"b"));
        assert_eq!(to(&take(&mut st)), [(R1, 2)], "R1 is served by its credit");
    }

    #[test]
    fn a_give_back_names_what_it_received_and_wrong_numbers_fail_the_stream() {
        let mut st = channel(3);
        st.credit(R1, 3);
        take(&mut st);
        // Received two of three: giving back one returns the second; the third stays ours.
        st.give_back(R1, 1, 2);
        st.credit(R2, 4);
        assert_eq!(to(&take(&mut st)), [(R2, 2)]);
        assert_eq!(st.counts().in_flight, 3);
        for (n, seen) in [(1, 4), (3, 3), (4, 2)] {
            st.give_back(R1, n, seen);
            assert!(
                matches!(take(&mut st)[..], [Effect::Fail { stream: R1, .. }]),
                "returning {n} of {seen} received"
            );
        }
    }
}
