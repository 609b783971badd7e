//! The simulation's results as tables: p50 and p99 over trials per cluster size and loss
//! rate, then each target with its verdict. Everything printed is labelled simulated.

use std::fmt::Write as _;

use crate::report::{Samples, Table};

use super::cluster::Load;
use super::scenario::{JoinOutcome, KillOutcome, SteadyOutcome};

/// The nearest-rank percentile `q` (0–100) of `values`, NaN ignored; NaN when none is left.
/// With fewer than 100 values, p99 is the largest.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Kill → declared down by every live member, p99 (ms).
pub const TARGET_DOWN_ON_ALL_P99_MS: f64 = 5000.0;
/// Last start → every view complete, p50 (ms).
pub const TARGET_JOIN_P50_MS: f64 = 1000.0;

/// Every trial of one cluster size at one loss rate.
#[derive(Debug)]
pub struct Cell {
    /// Cluster size.
    pub n: usize,
    /// Packet loss probability.
    pub loss: f64,
    /// Join trials, in trial order (none when this loss rate runs no joins).
    pub join: Vec<JoinOutcome>,
    /// Steady trials (clusters), in trial order; each holds several kills.
    pub steady: Vec<SteadyOutcome>,
    /// Seconds of (wall-clock) simulation the trials took, summed over threads.
    pub cpu_secs: f64,
}

/// One metric's values (one per join trial, steady trial or kill); a sample where the event did not happen within its limit counts as
/// +∞ ("never"), so that it weighs on the percentiles instead of vanishing from them.
struct Row {
    /// How many samples, missed ones included.
    trials: usize,
    samples: Samples,
    misses: usize,
}

impl Row {
    fn new(
        metric: &str,
        decimals: usize,
        values: impl ExactSizeIterator<Item = Option<f64>>,
    ) -> Self {
        let trials = values.len();
        let mut samples = Samples::new(metric, decimals);
        let mut misses = 0;
        for v in values {
            match v {
                Some(v) => samples.push(v),
                None => {
                    samples.push(f64::INFINITY);
                    misses += 1;
                }
            }
        }
        Self {
            trials,
            samples,
            misses,
        }
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.samples.values, q)
    }

    fn fmt(&self, v: f64) -> String {
        if v.is_nan() {
            "–".into()
        } else if v.is_infinite() {
            "never".into()
        } else {
            format!("{v:.*}", self.samples.decimals)
        }
    }
}

impl Cell {
    fn join_rows(&self) -> Vec<Row> {
        let j = &self.join;
        vec![
            Row::new(
                "join: last start → 99 % of view entries (ms)",
                0,
                j.iter().map(|o| o.to_99_ms),
            ),
            Row::new(
                "join: last start → 99.9 % of view entries (ms)",
                0,
                j.iter().map(|o| o.to_999_ms),
            ),
            Row::new(
                "join: last start → all views complete (ms)",
                0,
                j.iter().map(|o| o.full_ms),
            ),
            Row::new(
                "join: view entries still missing at the end (count)",
                0,
                j.iter().map(|o| Some(o.missing_at_end as f64)),
            ),
            Row::new(
                "join: suspicions of live members (count)",
                0,
                j.iter().map(|o| Some(o.false_suspicions as f64)),
            ),
        ]
    }

    fn steady_rows(&self) -> Vec<Row> {
        let s = &self.steady;
        let load = |f: fn(&Load) -> f64| s.iter().map(move |o| Some(f(&o.load)));
        let kills: Vec<KillOutcome> = s.iter().flat_map(|o| o.kills.iter().copied()).collect();
        vec![
            Row::new(
                "kill → first suspicion anywhere (ms)",
                0,
                kills.iter().map(|k| k.first_suspicion_ms),
            ),
            Row::new(
                "kill → down on all live members (ms)",
                0,
                kills.iter().map(|k| k.down_on_all_ms),
            ),
            Row::new(
                "quiet run: suspicions of live members (count)",
                0,
                s.iter().map(|o| Some(o.false_suspicions as f64)),
            ),
            Row::new(
                "live members declared down, whole trial (count)",
                0,
                s.iter().map(|o| Some(o.falsely_downed as f64)),
            ),
            Row::new("sent per member, mean (bytes/s)", 0, load(|l| l.bytes_mean)),
            Row::new(
                "sent by the busiest member (bytes/s)",
                0,
                load(|l| l.bytes_max),
            ),
            Row::new(
                "sent per member, mean (packets/s)",
                1,
                load(|l| l.packets_mean),
            ),
        ]
    }
}

/// The results for one loss rate (`title`): one block of rows per cluster size.
pub fn results(title: &str, caption: &str, cells: &[&Cell]) -> Table {
    let mut table = Table::new(title)
        .caption(caption)
        .right("N")
        .right("samples")
        .left("metric (simulated)")
        .right("p50")
        .right("p99")
        .right("max")
        .right("never");
    for cell in cells {
        for row in cell.join_rows().into_iter().chain(cell.steady_rows()) {
            if row.trials == 0 {
                continue;
            }
            table.row([
                cell.n.to_string(),
                row.trials.to_string(),
                row.samples.metric.clone(),
                row.fmt(row.p(50.0)),
                row.fmt(row.p(99.0)),
                row.fmt(row.samples.max()),
                row.misses.to_string(),
            ]);
        }
    }
    table
}

/// Each target per cell, with the simulated value and a verdict.
pub fn verdicts(cells: &[&Cell], quiet: std::time::Duration) -> Table {
    let mut table = Table::new("Simulated, against the targets")
        .right("loss")
        .right("N")
        .left("target")
        .left("simulated")
        .left("verdict");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for cell in cells {
        let loss = format!("{} %", cell.loss * 100.0);
        if !cell.join.is_empty() {
            let join = &cell.join_rows()[2];
            let p50 = join.p(50.0);
            let ok = p50 <= TARGET_JOIN_P50_MS;
            table.row([
                loss.clone(),
                cell.n.to_string(),
                format!("join ≤ {TARGET_JOIN_P50_MS:.0} ms p50"),
                with_misses(join, p50, "ms"),
                verdict(ok).to_string(),
            ]);
        }
        if !cell.steady.is_empty() {
            let down = &cell.steady_rows()[1];
            let p99 = down.p(99.0);
            table.row([
                loss.clone(),
                cell.n.to_string(),
                format!("down on all ≤ {TARGET_DOWN_ON_ALL_P99_MS:.0} ms p99"),
                with_misses(down, p99, "ms"),
                verdict(p99 <= TARGET_DOWN_ON_ALL_P99_MS).to_string(),
            ]);
        }
        let susp: u64 = cell.join.iter().map(|o| o.false_suspicions).sum::<u64>()
            + cell.steady.iter().map(|o| o.false_suspicions).sum::<u64>();
        let downed: usize = cell.join.iter().map(|o| o.falsely_downed).sum::<usize>()
            + cell.steady.iter().map(|o| o.falsely_downed).sum::<usize>();
        table.row([
            loss,
            cell.n.to_string(),
            "zero false suspicions and downs".to_string(),
            format!(
                "{susp} suspicions, {downed} downed; {} join trials + {} × {} of quiet run",
                cell.join.len(),
                cell.steady.len(),
                humantime::format_duration(quiet)
            ),
            verdict(susp == 0 && downed == 0).to_string(),
        ]);
    }
    table
}

fn with_misses(row: &Row, value: f64, unit: &str) -> String {
    let mut s = row.fmt(value);
    if value.is_finite() {
        let _ = write!(s, " {unit}");
    }
    if row.misses > 0 {
        let _ = write!(s, " ({} of {} samples never)", row.misses, row.trials);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        // Twenty trials: p99 is the largest, p50 the tenth.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 99.0), 20.0);
        assert_eq!(percentile(&twenty, 50.0), 10.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[f64::NAN, 3.0], 50.0), 3.0);
    }
}
