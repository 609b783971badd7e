//! The virtual clock: a queue of events ordered by (time, insertion order), so a run is a pure
//! function of its seed. Time is in nanoseconds since the start of the run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Virtual nanoseconds since the start of a run.
pub type Nanos = u64;

/// Converts a duration to virtual nanoseconds.
pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Converts virtual nanoseconds to milliseconds, for reports.
pub fn millis(t: Nanos) -> f64 {
    t as f64 / 1e6
}

/// One scheduled event. Ordered by time, then by the order it was scheduled in, so two events
/// at the same instant always run in the same order.
struct Entry<E> {
    at: Nanos,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events waiting on the virtual clock, and the clock itself.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    now: Nanos,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            now: 0,
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current virtual time: that of the last event taken.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Schedules `event` at absolute time `at` (clamped to now: the past cannot be scheduled).
    pub fn push_at(&mut self, at: Nanos, event: E) {
        let at = at.max(self.now);
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Schedules `event` `after` nanoseconds from now.
    pub fn push_after(&mut self, after: Nanos, event: E) {
        self.push_at(self.now.saturating_add(after), event);
    }

    /// Takes the earliest event if it is due no later than `deadline`, advancing the clock to
    /// it; otherwise advances the clock to `deadline` and returns `None`.
    pub fn pop_until(&mut self, deadline: Nanos) -> Option<E> {
        match self.heap.peek() {
            Some(next) if next.at <= deadline => {
                let entry = self.heap.pop().expect("peeked");
                self.now = entry.at;
                Some(entry.event)
            }
            _ => {
                self.now = self.now.max(deadline);
                None
            }
        }
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::new();
        q.push_at(30, "c");
        q.push_at(10, "a1");
        q.push_at(20, "b");
        q.push_at(10, "a2");
        let mut out = Vec::new();
        while let Some(e) = q.pop_until(25) {
            out.push((q.now(), e));
        }
        assert_eq!(out, vec![(10, "a1"), (10, "a2"), (20, "b")]);
        // Nothing due by 25: the clock still moves to the deadline, and "c" stays queued.
        assert_eq!((q.now(), q.len()), (25, 1));
        // Scheduling in the past lands at now, after what is already due now.
        q.push_at(5, "late");
        assert_eq!(q.pop_until(100), Some("late"));
        assert_eq!(q.now(), 25);
        assert_eq!(q.pop_until(100), Some("c"));
        assert_eq!(q.now(), 30);
        assert!(q.is_empty());
    }
}
