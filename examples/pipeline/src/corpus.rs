//! The data that flows through the pipeline: documents generated from a seed, per-document word
//! counts, and the summary of the aggregate — pure functions, the same in both modes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The words documents are made of. The generator favours the front of the list, so counts are
/// skewed the way real text is.
const VOCABULARY: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "on", "be", "by",
    "at", "or", "from", "this", "are", "channel", "worker", "daemon", "process", "node", "signal",
    "value", "queue", "send", "receive", "close", "spawn", "restart", "crash", "mesh", "gossip",
    "owner", "stream", "frame", "socket", "pipeline", "stage", "replica", "count", "word",
    "document", "seed", "digest", "circuit", "cluster",
];

/// How many words the summary's `top` lists.
const TOP: usize = 10;

/// One fetched document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// Position in the corpus, `0..docs`: what the store de-duplicates by.
    pub id: u64,
    /// Sentences of words from a fixed vocabulary.
    pub text: String,
}

/// The word counts of one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// The document counted.
    pub doc: u64,
    /// Occurrences of each (lower-cased) word.
    pub words: BTreeMap<String, u64>,
}

/// The pipeline's result: small enough to print, precise enough to compare — `digest` covers
/// every word's count, so two equal summaries mean two equal aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Documents counted.
    pub docs: u64,
    /// Words counted.
    pub words: u64,
    /// Distinct words.
    pub distinct: usize,
    /// The most frequent words, most frequent first (ties by word).
    pub top: Vec<(String, u64)>,
    /// FNV-1a 64 of the whole sorted aggregate, as hex.
    pub digest: String,
}

/// The corpus for `seed`: `docs` documents, the same on every run and every machine.
pub fn generate(seed: u64, docs: u64) -> impl Iterator<Item = Doc> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..docs).map(move |id| {
        let mut text = String::new();
        for _ in 0..rng.usize(2..8) {
            for i in 0..rng.usize(4..16) {
                // The smaller of two uniform picks: earlier words come up more often.
                let word = VOCABULARY[rng
                    .usize(..VOCABULARY.len())
                    .min(rng.usize(..VOCABULARY.len()))];
                if i == 0 {
                    text.extend(word[..1].to_uppercase().chars().chain(word[1..].chars()));
                } else {
                    text.push(' ');
                    text.push_str(word);
                }
            }
            text.push_str(". ");
        }
        Doc { id, text }
    })
}

impl Counts {
    /// Counts the words of a document, ignoring case and punctuation.
    pub fn of(doc: &Doc) -> Self {
        let mut words = BTreeMap::new();
        for word in doc.text.split_whitespace() {
            let word = word
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase();
            if !word.is_empty() {
                *words.entry(word).or_insert(0) += 1;
            }
        }
        Self { doc: doc.id, words }
    }
}

impl Summary {
    /// Summarises the aggregate counts of `docs` documents.
    pub fn of(docs: u64, total: &BTreeMap<String, u64>) -> Self {
        let mut top: Vec<(String, u64)> = total.iter().map(|(w, n)| (w.clone(), *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP);
        // FNV-1a: a few lines, no dependency, and stable across builds (unlike std's hasher).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (word, n) in total {
            for byte in format!("{word}\t{n}\n").bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        Self {
            docs,
            words: total.values().sum(),
            distinct: total.len(),
            top,
            digest: format!("{hash:016x}"),
        }
    }

    /// The summary as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_counts_ignore_case() {
        let a: Vec<Doc> = generate(7, 20).collect();
        assert_eq!(a, generate(7, 20).collect::<Vec<_>>());
        assert_ne!(a, generate(8, 20).collect::<Vec<_>>());
        let doc = Doc {
            id: 3,
            text: "The node. the NODE, a".into(),
        };
        let counts = Counts::of(&doc);
        assert_eq!(counts.words["the"], 2);
        assert_eq!(counts.words["node"], 2);
        assert_eq!(counts.words["a"], 1);
    }

    #[test]
    fn digest_covers_every_count() {
        let mut total: BTreeMap<String, u64> =
            (0..30).map(|i| (format!("w{i}"), 100 - i)).collect();
        let before = Summary::of(1, &total);
        *total.get_mut("w29").expect("w29") += 1; // outside the top 10
        let after = Summary::of(1, &total);
        assert_eq!(before.top, after.top);
        assert_ne!(before.digest, after.digest);
    }
}
