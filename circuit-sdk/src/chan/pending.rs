//! [`Pending`]: the values a sender has sent and the owner has not answered yet, by seq. Seqs
//! are given out one after another and the owner answers mostly in order (`accepted a b` runs),
//! so a queue indexed by `seq - base` does what a map would at a fraction of the cost: no
//! search, no rebalancing, no moving of entries on the hot path.

use std::collections::VecDeque;

/// Entries by consecutive seq; answered ones in the middle are holes until the front reaches
/// them. The front entry, when there is one, is always present (holes are trimmed there).
#[derive(Debug)]
pub(crate) struct Pending<T> {
    /// The seq of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<T>>,
    /// Present entries.
    len: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            base: 1,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Pending<T> {
    /// Present entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` as `seq`, which must come after every seq added before.
    pub fn push(&mut self, seq: u64, value: T) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        let at = seq
            .checked_sub(self.base)
            .and_then(|at| usize::try_from(at).ok())
            .expect("seqs are pushed in order");
        while self.slots.len() < at {
            self.slots.push_back(None);
        }
        assert_eq!(self.slots.len(), at, "seqs are pushed in order");
        self.slots.push_back(Some(value));
        self.len += 1;
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let at = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (at < self.slots.len()).then_some(at)
    }

    /// The entry of `seq`, if it is pending.
    pub fn get(&self, seq: u64) -> Option<&T> {
        self.slots.get(self.index(seq)?)?.as_ref()
    }

    /// The entry of `seq`, if it is pending, to change.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let at = self.index(seq)?;
        self.slots.get_mut(at)?.as_mut()
    }

    /// Takes the entry of `seq` out, if it is pending.
    pub fn remove(&mut self, seq: u64) -> Option<T> {
        let at = self.index(seq)?;
        let value = self.slots.get_mut(at)?.take()?;
        self.len -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(value)
    }

    /// True when some seq below `upto` is pending.
    pub fn any_below(&self, upto: u64) -> bool {
        // The front is present whenever there is one.
        !self.slots.is_empty() && self.base < upto
    }

    /// The first pending seq in `from..to` (walking a run the owner answered at once).
    pub fn next_in(&self, from: u64, to: u64) -> Option<u64> {
        let end = to.min(self.base + self.slots.len() as u64);
        (from.max(self.base)..end).find(|seq| self.get(*seq).is_some())
    }

    /// Every pending entry with its seq, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, v)| v.as_ref().map(|v| (base + i as u64, v)))
    }

    /// Takes every entry out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = T> {
        self.len = 0;
        self.base += self.slots.len() as u64;
        std::mem::take(&mut self.slots).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_in_order_the_queue_empties_from_the_front() {
        let mut p = Pending::default();
        for seq in 1..=4 {
            p.push(seq, seq * 10);
        }
        assert_eq!(p.len(), 4);
        assert_eq!(p.next_in(2, 4), Some(2));
        assert_eq!(p.next_in(5, 9), None);
        assert_eq!(p.remove(1), Some(10));
        assert_eq!(p.remove(2), Some(20));
        assert!(p.any_below(4) && !p.any_below(3));
        assert_eq!(p.remove(3), Some(30));
        assert_eq!(p.remove(4), Some(40));
        assert!(p.is_empty() && !p.any_below(u64::MAX));
        p.push(5, 50);
        assert_eq!(p.get(5), Some(&50));
    }

    #[test]
    fn a_hole_in_the_middle_stays_until_the_front_passes_it() {
        let mut p = Pending::default();
        for seq in 7..=10 {
            p.push(seq, seq);
        }
        assert_eq!(p.remove(9), Some(9));
        assert_eq!(p.remove(9), None);
        assert_eq!(p.get(9), None);
        assert_eq!(p.next_in(9, 100), Some(10));
        assert_eq!(p.next_in(0, 100), Some(7));
        assert_eq!(p.iter().map(|(s, _)| s).collect::<Vec<_>>(), [7, 8, 10]);
        assert_eq!(p.remove(7), Some(7));
        assert_eq!(p.remove(8), Some(8));
        // The hole went with the front.
        assert_eq!(p.iter().map(|(s, _)| s).collect::<Vec<_>>(), [10]);
        assert!(p.any_below(11) && !p.any_below(10));
        assert_eq!(p.drain().collect::<Vec<_>>(), [10]);
        assert!(p.is_empty());
        assert_eq!(p.get(10), None);
        p.push(11, 11);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn unknown_seqs_are_not_pending() {
        let mut p: Pending<u8> = Pending::default();
        assert_eq!(p.remove(1), None);
        p.push(3, 3);
        assert_eq!((p.get(2), p.get(4)), (None, None));
        assert_eq!(p.get_mut(0), None);
        assert_eq!(p.next_in(4, 2), None);
    }
}
