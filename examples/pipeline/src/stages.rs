//! The three stages, written once against [`Source`] and [`Sink`]: they neither know nor care
//! whether their neighbours are tasks in this process or workers on other machines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Counts, Doc, Summary};
use crate::pipe::{Ack, Sink, Source};

/// Fetch: puts the corpus for `seed` into `out`, then closes it.
pub async fn fetch(seed: u64, docs: u64, out: impl Sink<Doc>) -> anyhow::Result<()> {
    for doc in corpus::generate(seed, docs) {
        out.put(doc).await?;
    }
    out.close().await
}

/// Analyze: counts the words of each document until `input` ends; returns how many it did.
/// A document is acknowledged only after its counts are in `out`: a replica that dies in
/// between leaves the document to another replica, which may count it a second time — the
/// store drops the copy. `pause` (normally zero) waits in exactly that window, to widen it for
/// demonstrations and tests.
pub async fn analyze(
    mut input: impl Source<Doc>,
    out: impl Sink<Counts>,
    pause: Duration,
) -> anyhow::Result<u64> {
    let mut done = 0;
    while let Some(doc) = input.next().await? {
        out.put(Counts::of(&doc)).await?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        doc.ack();
        done += 1;
    }
    Ok(done)
}

/// What the store ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The result.
    pub summary: Summary,
    /// Counts of a document counted already, dropped: work a crash made another replica redo.
    pub duplicates: u64,
}

/// Store: adds up the counts of documents `0..docs`, each once however often it arrives, and
/// summarises them once it has all of them.
pub async fn store(docs: u64, input: impl Source<Counts>) -> anyhow::Result<Report> {
    store_with_progress(docs, input, |_| {}).await
}

/// How far the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Distinct documents counted so far.
    pub docs: u64,
    /// Of how many.
    pub of: u64,
    /// Words in those documents.
    pub words: u64,
}

/// [`store`], calling `progress` after each document it counts (not after a duplicate).
pub async fn store_with_progress(
    docs: u64,
    mut input: impl Source<Counts>,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Report> {
    let mut seen = BTreeSet::new();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut duplicates = 0;
    let mut words = 0;
    while (seen.len() as u64) < docs {
        let Some(counts) = input.next().await? else {
            bail!("the counts ended after {} of {docs} documents", seen.len());
        };
        if counts.doc >= docs {
            bail!("counts for document {} of a corpus of {docs}", counts.doc);
        }
        if seen.insert(counts.doc) {
            for (word, n) in &counts.words {
                *total.entry(word.clone()).or_insert(0) += n;
                words += n;
            }
            progress(Progress {
                docs: seen.len() as u64,
                of: docs,
                words,
            });
        } else {
            duplicates += 1;
        }
        counts.ack();
    }
    Ok(Report {
        summary: Summary::of(docs, &total),
        duplicates,
    })
}
