//! Which seqs of one sender were accepted (or refused), so a value retried after a reconnect
//! is accepted once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Seqs of one sender that were accepted: all below `below`, plus `above`. Senders number their
/// values from 1, so in the common case (acceptance in order) `above` stays empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SeqSet {
    pub(super) below: u64,
    pub(super) above: BTreeSet<u64>,
    /// Settled seqs that were refused (full, withdrawn, too large, closed), not accepted: a
    /// retry of one (its answer lost with a connection) is judged afresh.
    refused: BTreeSet<u64>,
}

/// Most refused seqs remembered per sender.
const MAX_REFUSED: usize = 4096;

impl Default for SeqSet {
    fn default() -> Self {
        Self {
            below: 1,
            above: BTreeSet::new(),
            refused: BTreeSet::new(),
        }
    }
}

impl SeqSet {
    /// Whether `seq` was accepted.
    pub(super) fn contains(&self, seq: u64) -> bool {
        (seq < self.below || self.above.contains(&seq))
            && (self.refused.is_empty() || !self.refused.contains(&seq))
    }

    /// Records a refusal.
    pub(super) fn refuse(&mut self, seq: u64) {
        self.insert(seq);
        self.refused.insert(seq);
        if self.refused.len() > MAX_REFUSED {
            self.refused.pop_first();
        }
    }

    /// Records an acceptance.
    pub(super) fn accept(&mut self, seq: u64) {
        if !self.refused.is_empty() {
            self.refused.remove(&seq);
        }
        self.insert(seq);
    }

    fn insert(&mut self, seq: u64) {
        if seq < self.below {
            return;
        }
        if seq == self.below {
            self.below += 1;
            while self.above.remove(&self.below) {
                self.below += 1;
            }
        } else {
            self.above.insert(seq);
        }
    }
}
