//! The failure-detection results as a chart ([`crate::plot`]): at each cluster size, every
//! trial's time from `kill -9` to the first `suspect` and to `dead` on every live daemon, with
//! the target (`mesh-kill.svg`).

use std::path::Path;

use super::failure::{KillResult, TARGET_DEAD_AT, TARGET_DEAD_P99_MS};
use super::tables::Report;
use crate::plot::{self, DurationSeries, DurationsChart};

/// Colours and markers per cluster size (the n-th size of the run): first suspect, dead on
/// all — a light and a dark shade of one hue.
const SLOTS: [[usize; 2]; 3] = [[5, 0], [3, 1], [4, 2]];

impl Report {
    /// Writes the chart to `dir` and keeps the line that shows it, for the failure-detection
    /// table.
    pub fn write_charts(&mut self, dir: &Path) {
        if let Some(chart) = kill_chart(&self.kill) {
            self.kill_charts = vec![plot::emit(dir, "mesh-kill", &chart)];
        }
    }
}

/// Every size's distributions; `None` when no trial measured anything.
pub fn kill_chart(kill: &[KillResult]) -> Option<DurationsChart> {
    let mut series = Vec::new();
    for (i, r) in kill.iter().enumerate() {
        let slots = SLOTS[i % SLOTS.len()];
        let measures = [
            ("first suspect", &r.first_suspect, slots[0]),
            ("dead on every live daemon", &r.dead_on_all, slots[1]),
        ];
        for (what, ms, slot) in measures {
            if ms.is_empty() {
                continue;
            }
            series.push(DurationSeries {
                name: format!("{} daemons, {what} ({} trials)", r.n, ms.len()),
                slot,
                ms: ms.iter().map(|&v| v as f64).collect(),
            });
        }
    }
    if series.is_empty() {
        return None;
    }
    Some(DurationsChart {
        title: "bench-mesh: failure detection after kill -9".into(),
        note: "event times as the live daemons stamp them; each step is one trial".into(),
        x_label: "ms from kill -9 to the event".into(),
        series,
        target: Some((
            format!(
                "target: dead on all, p99 ≤ {TARGET_DEAD_P99_MS} ms at {TARGET_DEAD_AT} daemons"
            ),
            TARGET_DEAD_P99_MS as f64,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::Chart;

    fn kills(n: usize, suspect: &[u64], dead: &[u64]) -> KillResult {
        KillResult {
            n,
            first_suspect: suspect.to_vec(),
            first_dead: dead.to_vec(),
            dead_on_all: dead.iter().map(|d| d + 11).collect(),
            rejoin: Vec::new(),
            false_suspects: 0,
            false_dead: 0,
            failures: Vec::new(),
            kept: Vec::new(),
        }
    }

    #[test]
    fn each_size_shows_first_suspect_and_dead_on_all() {
        assert!(kill_chart(&[]).is_none());
        assert!(
            kill_chart(&[kills(5, &[], &[])]).is_none(),
            "no trial measured"
        );
        let chart = kill_chart(&[
            kills(5, &[770, 518, 1717], &[1771, 1519, 2718]),
            kills(20, &[], &[2026, 3333]),
        ])
        .unwrap();
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "5 daemons, first suspect (3 trials)",
                "5 daemons, dead on every live daemon (3 trials)",
                "20 daemons, dead on every live daemon (2 trials)",
            ]
        );
        assert_eq!(chart.series[1].ms, [1782.0, 1530.0, 2729.0]);
        let slots: Vec<usize> = chart.series.iter().map(|s| s.slot).collect();
        assert_eq!(slots, [SLOTS[0][0], SLOTS[0][1], SLOTS[1][1]]);
        let svg = chart.svg().unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "bench-mesh: failure detection after kill -9",
            "ms from kill -9 to the event",
            "target: dead on all, p99 ≤ 5000 ms at 20 daemons",
            "20 daemons, dead on every live daemon (2 trials)",
        ] {
            assert!(svg.contains(text), "no {text:?}");
        }
    }
}
