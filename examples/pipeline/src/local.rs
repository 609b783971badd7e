//! Mode (a): every stage a task in this process, wired by tokio channels. The analyzer
//! replicas share one receiver, as Go goroutines share one channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use crate::pipe::{Ack, Sink, Source};
use crate::stages::{self, Report};
use crate::Params;

/// A tokio receiver that several stages take from, one at a time.
#[derive(Debug)]
pub struct Shared<T>(Arc<Mutex<mpsc::Receiver<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Shares `rx`.
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        Self(Arc::new(Mutex::new(rx)))
    }
}

/// An item of a tokio channel: it left the channel when it was taken, so `ack` has nothing
/// to do — in one process, a crash loses every stage at once anyway.
#[derive(Debug)]
pub struct Taken<T>(T);

impl<T> std::ops::Deref for Taken<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Ack for Taken<T> {
    fn ack(self) {}
}

impl<T: Send> Source<T> for Shared<T> {
    type Item = Taken<T>;

    async fn next(&mut self) -> anyhow::Result<Option<Taken<T>>> {
        Ok(self.0.lock().await.recv().await.map(Taken))
    }
}

impl<T: Send> Sink<T> for mpsc::Sender<T> {
    async fn put(&self, value: T) -> anyhow::Result<()> {
        self.send(value)
            .await
            .map_err(|_| anyhow::anyhow!("the next stage is gone"))
    }

    /// A tokio channel closes when its last sender is dropped.
    async fn close(self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Runs the whole pipeline in this process.
pub async fn run(params: &Params) -> anyhow::Result<Report> {
    // tokio channels need room for at least one value; circuit's capacity 0 is a rendezvous.
    let cap = params.cap.max(1) as usize;
    let (docs_tx, docs_rx) = mpsc::channel(cap);
    let (counts_tx, counts_rx) = mpsc::channel(cap);
    let docs_rx = Shared::new(docs_rx);

    let mut tasks = JoinSet::new();
    tasks.spawn(stages::fetch(params.seed, params.docs, docs_tx));
    for _ in 0..params.analyzers {
        let analyze = stages::analyze(docs_rx.clone(), counts_tx.clone(), Duration::ZERO);
        tasks.spawn(async move { analyze.await.map(drop) });
    }
    // The counts channel closes when the last analyzer is done with its clone.
    drop(counts_tx);

    let report = stages::store(params.docs, Shared::new(counts_rx)).await?;
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(analyzers: u32, cap: u64) -> Params {
        Params {
            docs: 200,
            seed: 11,
            analyzers,
            cap,
        }
    }

    #[tokio::test]
    async fn result_does_not_depend_on_replicas_or_capacity() {
        let one = run(&params(1, 1)).await.expect("run").summary;
        assert_eq!(one.docs, 200);
        assert!(one.words > 200 * 8, "{one:?}");
        assert_eq!(one, run(&params(4, 64)).await.expect("run").summary);
        let other_seed = Params {
            seed: 12,
            ..params(4, 64)
        };
        assert_ne!(
            one.digest,
            run(&other_seed).await.expect("run").summary.digest
        );
    }

    #[tokio::test]
    async fn store_drops_counts_it_has_already() {
        let docs: Vec<_> = crate::corpus::generate(3, 3).collect();
        let store = |order: &[usize]| {
            let (tx, rx) = mpsc::channel(16);
            for &i in order {
                tx.try_send(crate::corpus::Counts::of(&docs[i]))
                    .expect("room");
            }
            stages::store(3, Shared::new(rx))
        };
        let with_copies = store(&[0, 1, 1, 0, 2]).await.expect("store");
        assert_eq!(with_copies.duplicates, 2);
        let once = store(&[2, 0, 1]).await.expect("store");
        assert_eq!(once.duplicates, 0);
        assert_eq!(with_copies.summary, once.summary);
    }
}
