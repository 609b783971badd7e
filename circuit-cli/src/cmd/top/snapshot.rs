//! What `circuit top` shows, as plain data: one refresh's nodes, workers and channels
//! ([`Sample`]), the channels' rates worked out between two refreshes ([`Snapshot`]), and the
//! last failure to refresh ([`Model`]). No I/O: fed samples and times, it keeps the figures.

use std::collections::HashMap;
use std::time::Duration;

use circuit_sdk::proto::{ChanInfo, NodeInfo, WorkerInfo};
use serde::Serialize;

/// What one refresh brings back from the daemon.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The node table, as the answering daemon sees the mesh.
    pub nodes: Vec<NodeInfo>,
    /// Workers of every live node (`ps` of the mesh).
    pub workers: Vec<WorkerInfo>,
    /// Channels of every live node (`chan ls` of the mesh).
    pub chans: Vec<ChanInfo>,
}

/// A channel with how fast values go through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChanRow {
    /// The channel as its owner described it.
    #[serde(flatten)]
    pub info: ChanInfo,
    /// Values accepted per second since the refresh before (`sent` grew by so much); `None`
    /// on the first refresh, or when the count went back (a new channel of the same name).
    pub rate_in: Option<f64>,
    /// Values acknowledged by receivers per second since the refresh before (`received`).
    pub rate_out: Option<f64>,
}

/// One refresh, ready to show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was taken (ms since the Unix epoch): uptimes are counted to it.
    pub at_ms: u64,
    /// The node table.
    pub nodes: Vec<NodeInfo>,
    /// Every worker of the mesh.
    pub workers: Vec<WorkerInfo>,
    /// Every channel of the mesh, with rates.
    #[serde(rename = "channels")]
    pub chans: Vec<ChanRow>,
}

impl Snapshot {
    /// The node that answered (`is_self`), if the table has it.
    pub fn via(&self) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.is_self)
            .map(|n| n.name.as_str())
    }
}

/// A refresh that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, in one line.
    pub message: String,
    /// When it failed (ms since the Unix epoch).
    pub at_ms: u64,
}

/// Everything the screen is drawn from: the last good refresh and, when the latest one failed,
/// why (the last good figures stay on screen meanwhile).
#[derive(Debug, Default)]
pub struct Model {
    /// The last good refresh; `None` until the first arrives.
    pub snapshot: Option<Snapshot>,
    /// Set while refreshing fails; cleared by the next good refresh.
    pub failure: Option<Failure>,
    /// Each channel's (sent, received) totals at the last good refresh, by name.
    totals: HashMap<String, (u64, u64)>,
    /// When the last good refresh was taken, on a clock that never goes back.
    taken: Option<Duration>,
}

impl Model {
    /// Takes a good refresh, taken at `at_ms` on the wall clock and `mono` on a monotonic one
    /// (a clock set back would make rates up otherwise).
    pub fn update(&mut self, sample: Sample, at_ms: u64, mono: Duration) {
        let elapsed = self
            .taken
            .map(|before| mono.saturating_sub(before).as_secs_f64())
            .filter(|secs| *secs > 0.0);
        let chans = sample
            .chans
            .into_iter()
            .map(|info| {
                let before = self.totals.get(&info.name).copied();
                let rate = |now: u64, then: u64| {
                    let secs = elapsed?;
                    (now >= then).then(|| (now - then) as f64 / secs)
                };
                let (rate_in, rate_out) = match before {
                    Some((sent, received)) => {
                        (rate(info.sent, sent), rate(info.received, received))
                    }
                    None => (None, None),
                };
                ChanRow {
                    info,
                    rate_in,
                    rate_out,
                }
            })
            .collect::<Vec<_>>();
        self.totals = chans
            .iter()
            .map(|c| (c.info.name.clone(), (c.info.sent, c.info.received)))
            .collect();
        self.taken = Some(mono);
        self.failure = None;
        self.snapshot = Some(Snapshot {
            at_ms,
            nodes: sample.nodes,
            workers: sample.workers,
            chans,
        });
    }

    /// Records a refresh that failed; the figures shown stay those of the last good one. The
    /// time of the first failure in a row is kept, to say how long it has been failing.
    pub fn failed(&mut self, message: String, at_ms: u64) {
        let at_ms = self.failure.as_ref().map_or(at_ms, |f| f.at_ms);
        self.failure = Some(Failure { message, at_ms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::chan;

    fn sample(chans: &[(&str, u64, u64)]) -> Sample {
        Sample {
            chans: chans
                .iter()
                .map(|&(name, sent, received)| ChanInfo {
                    sent,
                    received,
                    ..chan(name, 16, "h1")
                })
                .collect(),
            ..Sample::default()
        }
    }

    fn rates(model: &Model) -> Vec<(String, Option<f64>, Option<f64>)> {
        let snapshot = model.snapshot.as_ref().expect("a snapshot");
        snapshot
            .chans
            .iter()
            .map(|c| (c.info.name.clone(), c.rate_in, c.rate_out))
            .collect()
    }

    #[test]
    fn rates_are_the_totals_growth_per_second_between_refreshes() {
        let mut model = Model::default();
        model.update(sample(&[("jobs", 100, 90)]), 1_000, Duration::from_secs(10));
        assert_eq!(
            rates(&model),
            [("jobs".into(), None, None)],
            "first refresh"
        );
        model.update(
            sample(&[("jobs", 300, 190), ("new", 5, 0)]),
            3_000,
            Duration::from_secs(12),
        );
        assert_eq!(
            rates(&model),
            [
                ("jobs".into(), Some(100.0), Some(50.0)),
                ("new".into(), None, None),
            ]
        );
        // `jobs` removed and made again: its counts start over, so no rate this once.
        model.update(
            sample(&[("jobs", 2, 1), ("new", 5, 0)]),
            4_000,
            Duration::from_millis(12_500),
        );
        assert_eq!(
            rates(&model),
            [
                ("jobs".into(), None, None),
                ("new".into(), Some(0.0), Some(0.0)),
            ]
        );
    }

    #[test]
    fn a_failure_keeps_the_last_figures_until_a_refresh_succeeds() {
        let mut model = Model::default();
        model.update(sample(&[("jobs", 1, 1)]), 1_000, Duration::from_secs(1));
        model.failed("cannot connect".into(), 2_000);
        model.failed("cannot connect again".into(), 3_000);
        let failure = model.failure.clone().expect("failed");
        assert_eq!(
            (failure.message.as_str(), failure.at_ms),
            ("cannot connect again", 2_000),
            "the latest reason, since the first failure"
        );
        assert_eq!(model.snapshot.as_ref().map(|s| s.at_ms), Some(1_000));
        model.update(sample(&[("jobs", 5, 5)]), 4_000, Duration::from_secs(4));
        assert!(model.failure.is_none());
        assert_eq!(
            rates(&model),
            [("jobs".into(), Some(4.0 / 3.0), Some(4.0 / 3.0))]
        );
    }
}
