//! Which messages arrived: a receiver's [`Inbox`] marks each stamp in a per-sender bitmap, and
//! [`merge`] checks the receivers' bitmaps together for messages lost or delivered twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::protocol::{now_ns, read_stamp, Received};

/// What a receiver has taken so far.
#[derive(Debug)]
pub struct Inbox {
    size: usize,
    per_sender: u64,
    report: Received,
    /// Read by the task that prints progress lines.
    progress: Arc<AtomicU64>,
}

impl Inbox {
    /// An inbox for `senders` senders of `per_sender` messages of `size` bytes each.
    pub fn new(size: usize, senders: u32, per_sender: u64, progress: Arc<AtomicU64>) -> Self {
        let words = per_sender.div_ceil(64) as usize;
        Self {
            size,
            per_sender,
            report: Received {
                seen: vec![vec![0; words]; senders as usize],
                ..Received::default()
            },
            progress,
        }
    }

    /// Takes one message.
    pub fn take(&mut self, payload: &[u8]) {
        let r = &mut self.report;
        r.last_ns = now_ns();
        r.received += 1;
        self.progress.store(r.received, Ordering::Relaxed);
        let stamp = read_stamp(payload).filter(|_| payload.len() == self.size);
        let Some((sender, seq)) = stamp else {
            r.malformed += 1;
            return;
        };
        let Some(bits) = r.seen.get_mut(sender as usize) else {
            r.malformed += 1;
            return;
        };
        if u64::from(seq) >= self.per_sender {
            r.malformed += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if bits[word] & bit != 0 {
            r.duplicates += 1;
        }
        bits[word] |= bit;
    }

    /// Messages taken so far.
    pub fn received(&self) -> u64 {
        self.report.received
    }

    /// The report, without its CPU time and notes.
    pub fn into_report(self) -> Received {
        self.report
    }
}

/// What all receivers of one trial took together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Distinct messages that arrived.
    pub distinct: u64,
    /// Messages sent that no receiver took.
    pub lost: u64,
    /// Extra copies: seen twice by one receiver, or by two receivers.
    pub duplicates: u64,
    /// Messages of the wrong size or stamp.
    pub malformed: u64,
    /// The latest receive time of any receiver.
    pub last_ns: u64,
}

/// Checks the receivers' reports against `senders` × `per_sender` messages sent.
pub fn merge(reports: &[Received], senders: u32, per_sender: u64) -> Merged {
    let words = per_sender.div_ceil(64) as usize;
    let mut union = vec![vec![0u64; words]; senders as usize];
    let mut merged = Merged::default();
    for report in reports {
        merged.duplicates += report.duplicates;
        merged.malformed += report.malformed;
        merged.last_ns = merged.last_ns.max(report.last_ns);
        for (all, seen) in union.iter_mut().zip(&report.seen) {
            for (a, s) in all.iter_mut().zip(seen) {
                merged.duplicates += u64::from((*a & s).count_ones());
                *a |= s;
            }
        }
    }
    merged.distinct = union
        .iter()
        .flatten()
        .map(|w| u64::from(w.count_ones()))
        .sum();
    merged.lost = u64::from(senders) * per_sender - merged.distinct;
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chanbench::protocol::Payload;

    fn inbox(per_sender: u64) -> Inbox {
        Inbox::new(16, 2, per_sender, Arc::default())
    }

    #[test]
    fn finds_lost_duplicated_and_malformed_messages() {
        let mut payload = Payload::new(16);
        let (mut a, mut b) = (inbox(100), inbox(100));
        for seq in 0..100 {
            a.take(&payload.stamped(0, seq));
        }
        for seq in 0..99 {
            b.take(&payload.stamped(1, seq));
        }
        let clean = merge(&[a.into_report(), b.into_report()], 2, 100);
        assert_eq!((clean.distinct, clean.lost, clean.duplicates), (199, 1, 0));

        let (mut a, mut b) = (inbox(100), inbox(100));
        a.take(&payload.stamped(0, 5));
        a.take(&payload.stamped(0, 5));
        b.take(&payload.stamped(0, 5));
        b.take(&payload.stamped(2, 0));
        b.take(&payload.stamped(0, 100));
        b.take(&[0; 8]);
        assert_eq!(b.received(), 4);
        let odd = merge(&[a.into_report(), b.into_report()], 2, 100);
        assert_eq!(odd.distinct, 1);
        assert_eq!(odd.duplicates, 2, "once within a, once across a and b");
        assert_eq!(odd.malformed, 3);
        assert_eq!(odd.lost, 199);
    }
}
