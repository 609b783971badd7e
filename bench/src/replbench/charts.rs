//! The run's [`Report`] as charts ([`crate::plot`]): throughput by payload size per scenario,
//! every contender, medians over rounds (`replicated-1-1.svg`, `replicated-4-4.svg`), and the
//! failover times of every trial, circuit beside JetStream (`replicated-failover.svg`).

use std::path::Path;
use std::time::Duration;

use super::contender::Contender;
use super::failover::{Failover, Sample, Setup};
use super::tables::{failover_runs, millis, Report};
use super::TARGET_FAILOVER;
use crate::chanbench::Scenario;
use crate::plot::{self, DurationSeries, DurationsChart, RateSeries, RatesChart, Spread};
use crate::report::size_label;

/// A contender's colour and marker, the same in every chart.
fn slot(contender: Contender) -> usize {
    match contender {
        Contender::R1 => 0,
        Contender::JsMemory => 1,
        Contender::R3Memory => 2,
        Contender::JsFile => 3,
        Contender::R3Disk => 4,
    }
}

impl Report {
    /// Writes the charts to `dir` and keeps the lines that show them, for the throughput and
    /// failover tables.
    pub fn write_charts(&mut self, dir: &Path) {
        let mut lines = Vec::new();
        for &scenario in &self.scenarios {
            let chart = self.throughput_chart(scenario);
            if !chart.series.is_empty() {
                let name = format!("replicated-{}", scenario.slug());
                lines.push(plot::emit(dir, &name, &chart));
            }
        }
        self.throughput_charts = lines;
        if let Some(chart) = self.failover_chart() {
            self.failover_charts = vec![plot::emit(dir, "replicated-failover", &chart)];
        }
    }

    /// Every contender with a figure in `scenario`, in table order.
    pub(super) fn throughput_chart(&self, scenario: Scenario) -> RatesChart {
        let mut series = Vec::new();
        for &contender in &self.contenders {
            let at: Vec<Option<Spread>> = (self.sizes.iter())
                .map(|&size| Spread::of(self.rates((contender, scenario, size)).into_values()))
                .collect();
            if at.iter().any(Option::is_some) {
                series.push(RateSeries {
                    name: contender.to_string(),
                    slot: slot(contender),
                    at,
                });
            }
        }
        RatesChart {
            title: format!("bench-replicated: throughput, {scenario}"),
            note: self.note(format!(
                "median of {} round(s), whiskers from the slowest to the fastest",
                self.rounds
            )),
            x_label: "payload size".into(),
            y_label: "messages delivered per second (log scale)".into(),
            categories: self.sizes.iter().map(|&s| size_label(s)).collect(),
            series,
        }
    }

    /// Both systems' failover times, at the first sender and at the last; `None` when the
    /// phase did not run or measured nothing.
    pub(super) fn failover_chart(&self) -> Option<DurationsChart> {
        let (setup, f) = self.failover.as_ref()?;
        let series = failover_series(f);
        if series.is_empty() {
            return None;
        }
        Some(DurationsChart {
            title: "bench-replicated: failover after kill -9 of the leader".into(),
            note: self.note(failover_note(setup)),
            x_label: "ms from the kill to a send acknowledged again".into(),
            series,
            target: Some((
                format!("target: circuit p99 ≤ {} ms", TARGET_FAILOVER.as_millis()),
                TARGET_FAILOVER.as_secs_f64() * 1000.0,
            )),
        })
    }

    /// `line`, marked as a smoke run's when this is one.
    fn note(&self, line: String) -> String {
        if self.quick {
            format!("a --quick smoke run, too short to quote · {line}")
        } else {
            line
        }
    }
}

fn failover_note(setup: &Setup) -> String {
    format!(
        "{} senders at {} msgs/s each, {} payloads; each step is one trial",
        setup.senders,
        setup.rate,
        size_label(setup.size)
    )
}

/// Per system that measured: kill → the first sender's acknowledgement, and → every
/// sender's, each trial's value.
fn failover_series(f: &Failover) -> Vec<DurationSeries> {
    type Pick = fn(&Sample) -> Duration;
    let mut series = Vec::new();
    let measures: [(&str, Pick); 2] =
        [("first sender", |s| s.first), ("every sender", |s| s.every)];
    for (k, (label, run)) in failover_runs(f).into_iter().enumerate() {
        if run.samples.is_empty() {
            continue;
        }
        for (m, (measure, pick)) in measures.iter().enumerate() {
            let ms = millis(&run.samples, pick);
            series.push(DurationSeries {
                name: format!("{label}, {measure} ({} trials)", ms.len()),
                // circuit blue and sky blue, JetStream vermillion and orange.
                slot: [[0, 5], [1, 3]][k][m],
                ms: ms.into_iter().map(|v| v as f64).collect(),
            });
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::chanbench::driver::StreamOutcome;
    use crate::chanbench::tally::Merged;
    use crate::replbench::contender::Tried;
    use crate::replbench::{throughput, RunArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn report(flags: &[&str]) -> Report {
        let args = Cli::parse_from(["bench-replicated"].iter().chain(flags)).run;
        Report::new(&args, &args.settings(), &Contender::ALL)
    }

    fn ran(rate: u64) -> Tried<throughput::Run> {
        Tried::Ran(throughput::Run {
            outcome: StreamOutcome {
                expected: rate,
                merged: Merged {
                    distinct: rate,
                    ..Merged::default()
                },
                elapsed: Duration::from_secs(1),
                server_cpu: None,
                client_cpu: Duration::ZERO,
                notes: Vec::new(),
            },
            placement: "b → a → c".into(),
        })
    }

    fn sample(first_ms: u64) -> Sample {
        Sample {
            first: Duration::from_millis(first_ms),
            every: Duration::from_millis(first_ms + 40),
            expected: 100,
            merged: Merged::default(),
            placement: "h2 killed".into(),
            notes: Vec::new(),
        }
    }

    fn setup() -> Setup {
        Setup {
            exe: "bench-replicated".into(),
            size: 256,
            rate: 500,
            senders: 4,
            receivers: 4,
            warm: Duration::from_secs(2),
            after: Duration::from_secs(6),
            capacity: 4096,
            window: 1024,
            deadline: Duration::from_secs(120),
            quiet: Duration::from_secs(3),
            stall: Duration::from_secs(10),
            logs: "/tmp".into(),
            target: TARGET_FAILOVER,
        }
    }

    #[test]
    fn throughput_has_every_contender_that_ran_by_size() {
        let mut r = report(&["--rounds", "2", "--sizes", "16,256"]);
        let one: Scenario = "1-1".parse().unwrap();
        for round in 1..=2 {
            r.record_stream(Contender::R1, one, 16, round, ran(1000 * round as u64));
            r.record_stream(Contender::R1, one, 256, round, ran(500));
            let disk = Tried::NotServed("--storage disk is not served by this build".into());
            r.record_stream(Contender::R3Disk, one, 16, round, disk);
            r.record_stream(Contender::JsFile, one, 256, round, ran(100));
        }
        let chart = r.throughput_chart(one);
        assert_eq!(chart.title, "bench-replicated: throughput, 1 → 1");
        assert_eq!(
            chart.note,
            "median of 2 round(s), whiskers from the slowest to the fastest"
        );
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["circuit R1", "JetStream R3 file"]);
        assert_eq!(chart.series[0].at[0].map(|s| s.median), Some(1500.0));
        assert_eq!(chart.series[1].at[0], None);
        let svg = plot::Chart::svg(&chart).unwrap();
        assert!(svg.contains("JetStream R3 file") && svg.contains("256 B"));
    }

    #[test]
    fn failover_has_every_trial_of_both_systems() {
        let mut r = report(&["--quick"]);
        assert!(r.failover_chart().is_none(), "the phase did not run");
        let mut f = Failover::default();
        f.circuit.described = "circuit R3 memory: 5 hosts".into();
        f.circuit.samples = vec![sample(1174), sample(650), sample(1698)];
        f.jetstream.skipped = Some("nats-server is missing".into());
        r.failover = Some((setup(), f));
        let chart = r.failover_chart().unwrap();
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "circuit R3 memory, first sender (3 trials)",
                "circuit R3 memory, every sender (3 trials)"
            ],
            "JetStream measured nothing"
        );
        assert_eq!(chart.series[0].ms, [650.0, 1174.0, 1698.0]);
        assert_eq!(chart.series[1].ms, [690.0, 1214.0, 1738.0]);
        assert!(
            chart.note.starts_with("a --quick smoke run"),
            "{}",
            chart.note
        );
        assert_eq!(chart.target.as_ref().map(|t| t.1), Some(2000.0));

        let dir = tempfile::tempdir().unwrap();
        r.write_charts(dir.path());
        assert!(r.throughput_charts.is_empty(), "no throughput trial");
        let path = dir.path().join("replicated-failover.svg");
        assert_eq!(
            r.failover_charts,
            [format!(
                "![bench-replicated: failover after kill -9 of the leader]({})",
                path.display()
            )]
        );
        let markdown = r.markdown();
        assert!(
            markdown.contains(&r.failover_charts[0]),
            "the failover table shows it"
        );
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("target: circuit p99 ≤ 2000 ms"));
    }
}
