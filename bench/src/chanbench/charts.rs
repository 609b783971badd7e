//! The run's [`Results`] as charts ([`crate::plot`]): for each throughput scenario, every
//! system's delivery rate by payload size, medians over rounds with the slowest and fastest
//! round, written as `channels-<scenario>.svg` (`channels-1-1.svg`, `channels-4-4.svg`).

use std::path::Path;

use super::results::Results;
use super::{Scenario, System};
use crate::plot::{self, RateSeries, RatesChart, Spread};
use crate::report::size_label;

/// A system's colour and marker, the same in every chart (and the same as in
/// `bench-replicated`'s for the systems both run).
pub fn slot(system: System) -> usize {
    match system {
        System::Circuit => 0,
        System::NatsC => 1,
        System::JetStreamC => 2,
        System::Nats => 3,
        System::Zmq => 4,
        System::CircuitDefaults => 5,
        System::JetStream => 6,
        System::Raw => 7,
    }
}

impl Results {
    /// One chart per throughput scenario, written to `dir`; the lines the throughput table
    /// prints under it (image links, or why a chart is missing).
    pub fn write_charts(&self, dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for scenario in self.stream_scenarios() {
            let chart = self.throughput_chart(scenario);
            if chart.series.is_empty() {
                continue;
            }
            let name = format!("channels-{}", scenario.slug());
            lines.push(plot::emit(dir, &name, &chart));
        }
        lines
    }

    /// Every system that has a figure in `scenario`, in table order.
    pub(super) fn throughput_chart(&self, scenario: Scenario) -> RatesChart {
        let rounds = self.rounds();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut series = Vec::new();
        for &system in self.systems.iter().filter(|s| s.runs(scenario)) {
            let at: Vec<Option<Spread>> = (self.sizes.iter())
                .map(|&size| {
                    let streams = self.streams((system, scenario, size));
                    Spread::of(streams.iter().map(|s| s.rate()))
                })
                .collect();
            if at.iter().any(Option::is_some) {
                series.push(RateSeries {
                    name: system.to_string(),
                    slot: slot(system),
                    at,
                });
            }
        }
        RatesChart {
            title: format!("bench-channels: throughput, {scenario}"),
            note: format!(
                "median of {rounds} round(s), whiskers from the slowest to the fastest; \
                 {cpus} CPUs"
            ),
            x_label: "payload size".into(),
            y_label: "messages delivered per second (log scale)".into(),
            categories: self.sizes.iter().map(|&s| size_label(s)).collect(),
            series,
        }
    }

    /// The most trials any system, scenario and size had: the run's rounds.
    fn rounds(&self) -> usize {
        self.trials.values().map(Vec::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chanbench::driver::{Outcome, StreamOutcome};
    use crate::chanbench::tally::Merged;

    /// A throughput trial that delivered `rate` messages in one second.
    fn trial(rate: u64) -> Result<Outcome, String> {
        Ok(Outcome::Stream(StreamOutcome {
            expected: rate,
            merged: Merged {
                distinct: rate,
                ..Merged::default()
            },
            elapsed: Duration::from_secs(1),
            server_cpu: None,
            client_cpu: Duration::ZERO,
            notes: Vec::new(),
        }))
    }

    #[test]
    fn each_system_is_a_series_of_medians_by_size() {
        let one = "1-1".parse().unwrap();
        let four = "4-4".parse().unwrap();
        let systems = [System::Circuit, System::NatsC, System::Zmq, System::Raw];
        let mut r = Results::new(&systems, &[one, four, Scenario::RoundTrip], &[16, 4096]);
        for rate in [1000, 3000, 2000] {
            r.record(System::Circuit, one, 16, trial(rate));
            r.record(System::Circuit, one, 4096, trial(rate / 10));
            r.record(System::Raw, one, 16, trial(rate * 2));
            r.record(System::NatsC, one, 16, Err("nats-server is missing".into()));
            r.record(System::Zmq, four, 4096, trial(rate));
        }
        let chart = r.throughput_chart(one);
        assert_eq!(chart.title, "bench-channels: throughput, 1 → 1");
        assert_eq!(chart.categories, ["16 B", "4 KiB"]);
        assert!(
            chart.note.contains("median of 3 round(s)"),
            "{}",
            chart.note
        );
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["circuit tuned", "raw socket"],
            "NATS C failed everywhere"
        );
        let circuit = &chart.series[0];
        assert_eq!(circuit.slot, slot(System::Circuit));
        let medians: Vec<Option<f64>> = circuit.at.iter().map(|s| s.map(|s| s.median)).collect();
        assert_eq!(medians, [Some(2000.0), Some(200.0)]);
        assert_eq!(
            circuit.at[0].map(|s| (s.low, s.high)),
            Some((1000.0, 3000.0))
        );
        assert_eq!(
            chart.series[1].at[1], None,
            "the raw socket has no 4 KiB trial"
        );
        let four_chart = r.throughput_chart(four);
        let names: Vec<&str> = four_chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ZeroMQ"], "the raw socket runs 1 → 1 only");

        let dir = tempfile::tempdir().unwrap();
        let lines = r.write_charts(dir.path());
        let one_svg = dir.path().join("channels-1-1.svg");
        assert_eq!(
            lines,
            [
                format!(
                    "![bench-channels: throughput, 1 → 1]({})",
                    one_svg.display()
                ),
                format!(
                    "![bench-channels: throughput, 4 → 4]({})",
                    dir.path().join("channels-4-4.svg").display()
                ),
            ]
        );
        let svg = std::fs::read_to_string(one_svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("circuit tuned"));
    }
}
