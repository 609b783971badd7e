//! Mode (b), one stage per process: the stages on circuit channels, opened by their bindings
//! (`in`, `out`) in the worker's environment. These are the `fetch`, `analyze` and `store`
//! subcommands that `distributed` spawns.

use std::time::Duration;

use circuit_sdk::chan::{Chan, ChanError, Delivery, Receiver, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::corpus::{Counts, Doc};
use crate::pipe::{Ack, Sink, Source};
use crate::stages::{self, Report};

/// A received value stays in flight on its channel until acknowledged.
impl<T: Send> Ack for Delivery<T> {
    fn ack(self) {
        Delivery::ack(self);
    }
}

impl<T: Serialize + DeserializeOwned + Send> Source<T> for Receiver<T> {
    type Item = Delivery<T>;

    async fn next(&mut self) -> anyhow::Result<Option<Delivery<T>>> {
        match self.recv_delivery().await {
            Ok(delivery) => Ok(Some(delivery)),
            Err(ChanError::Closed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A circuit channel to put values into, and to close after the last.
#[derive(Debug)]
pub struct ChanSink<T> {
    chan: Chan,
    tx: Sender<T>,
}

impl<T: Serialize + DeserializeOwned> ChanSink<T> {
    /// Opens a sender on the channel bound to `binding`.
    pub async fn open(binding: &str) -> anyhow::Result<Self> {
        let chan = Chan::open_from_env(binding).await?;
        let tx = chan.sender().await?;
        Ok(Self { chan, tx })
    }
}

impl<T: Serialize + DeserializeOwned + Send> Sink<T> for ChanSink<T> {
    async fn put(&self, value: T) -> anyhow::Result<()> {
        Ok(self.tx.send(value).await?)
    }

    async fn close(self) -> anyhow::Result<()> {
        Ok(self.chan.close().await?)
    }
}

/// Opens a receiver on the channel bound to `binding`.
async fn source<T: Serialize + DeserializeOwned>(binding: &str) -> anyhow::Result<Receiver<T>> {
    Ok(Chan::open_from_env(binding).await?.receiver().await?)
}

/// The `fetch` worker: the corpus into `out`, which it closes.
pub async fn fetch(seed: u64, docs: u64) -> anyhow::Result<()> {
    stages::fetch(seed, docs, ChanSink::<Doc>::open("out").await?).await?;
    eprintln!("fetch: sent {docs} documents and closed the channel");
    Ok(())
}

/// An `analyze` worker: documents from `in`, counts into `out`, until `in` is closed and drained.
pub async fn analyze(pause: Duration) -> anyhow::Result<()> {
    let input = source::<Doc>("in").await?;
    let done = stages::analyze(input, ChanSink::<Counts>::open("out").await?, pause).await?;
    eprintln!("analyze: counted {done} documents");
    Ok(())
}

/// The `store` worker: counts from `in`; the report on all `docs` documents into `out`. On
/// stderr, a line at every tenth of the documents (`store: 800/2000 documents, 34,102 words`),
/// so `circuit logs -f store` shows the run go by, and one when the report is sent.
pub async fn store(docs: u64) -> anyhow::Result<Report> {
    let input = source::<Counts>("in").await?;
    let report = stages::store_with_progress(docs, input, |p| {
        if is_tenth(p.docs, p.of) {
            eprintln!(
                "store: {}/{} documents, {} words",
                p.docs,
                p.of,
                thousands(p.words)
            );
        }
    })
    .await?;
    ChanSink::<Report>::open("out")
        .await?
        .put(report.clone())
        .await?;
    let s = &report.summary;
    eprintln!(
        "store: done — {} documents, {} words, {} distinct, digest {}; the report is on `out`",
        s.docs,
        thousands(s.words),
        s.distinct,
        s.digest
    );
    Ok(report)
}

/// True when `done` of `of` is the first count at or past a tenth (10 %, 20 %, ... 100 %).
fn is_tenth(done: u64, of: u64) -> bool {
    let tenth = |n: u64| n * 10 / of.max(1);
    done > 0 && tenth(done) != tenth(done - 1)
}

/// `85140` → `85,140`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_every_tenth_with_grouped_digits() {
        let tenths: Vec<u64> = (1..=2000).filter(|&d| is_tenth(d, 2000)).collect();
        assert_eq!(
            tenths,
            [200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000]
        );
        assert_eq!((1..=3).filter(|&d| is_tenth(d, 3)).count(), 3);
        assert_eq!(thousands(85_140), "85,140");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
