//! The run's results as tables: throughput, round-trip latency and CPU per million messages,
//! medians over trials with ratio rows, then the targets and anything odd that happened.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::driver::{Outcome, RttOutcome, StreamOutcome};
use super::{RunArgs, Scenario, System};
use crate::report::{fmt_rate, size_label, Samples, Table};

/// Pairs compared in ratio rows, when both took part: the target first, then the floor.
const RATIOS: [(System, System); 3] = [
    (System::Circuit, System::Nats),
    (System::Circuit, System::Raw),
    (System::Nats, System::Raw),
];
/// Longest failure reason printed in a cell; the whole reason goes to the notes.
const CELL_REASON: usize = 60;

type Key = (System, Scenario, usize);

/// Every trial's outcome, by system, scenario and size.
#[derive(Debug)]
pub struct Results {
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    sizes: Vec<usize>,
    trials: HashMap<Key, Vec<Result<Outcome, String>>>,
}

impl Results {
    /// No results yet, for this run's systems, scenarios and sizes.
    pub fn new(systems: &[System], scenarios: &[Scenario], sizes: &[usize]) -> Self {
        Self {
            systems: systems.to_vec(),
            scenarios: scenarios.to_vec(),
            sizes: sizes.to_vec(),
            trials: HashMap::new(),
        }
    }

    /// Adds one trial's outcome, or why it failed.
    pub fn record(
        &mut self,
        system: System,
        scenario: Scenario,
        size: usize,
        outcome: Result<Outcome, String>,
    ) {
        self.trials
            .entry((system, scenario, size))
            .or_default()
            .push(outcome);
    }

    fn streams(&self, key: Key) -> Vec<&StreamOutcome> {
        self.ok(key)
            .filter_map(|o| match o {
                Outcome::Stream(s) => Some(s),
                Outcome::Rtt(_) => None,
            })
            .collect()
    }

    fn rtts(&self, key: Key) -> Vec<&RttOutcome> {
        self.ok(key)
            .filter_map(|o| match o {
                Outcome::Rtt(r) => Some(r),
                Outcome::Stream(_) => None,
            })
            .collect()
    }

    fn ok(&self, key: Key) -> impl Iterator<Item = &Outcome> {
        self.trials.get(&key).into_iter().flatten().flatten()
    }

    fn failures(&self, key: Key) -> Vec<&str> {
        let trials = self.trials.get(&key).into_iter().flatten();
        trials
            .filter_map(|t| t.as_ref().err())
            .map(String::as_str)
            .collect()
    }

    fn stream_scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        let streams = self.scenarios.iter().copied();
        streams.filter(|s| matches!(s, Scenario::Stream { .. }))
    }

    fn has_rtt(&self) -> bool {
        self.scenarios.contains(&Scenario::RoundTrip)
    }

    fn takes_part(&self, system: System, scenario: Scenario) -> bool {
        self.systems.contains(&system) && system.runs(scenario)
    }

    /// The median delivery rate, when at least one trial succeeded.
    fn rate(&self, key: Key) -> Option<f64> {
        let rates = Samples::of(self.streams(key).iter().map(|s| s.rate()));
        (!rates.values.is_empty()).then(|| rates.median())
    }

    /// The median p50 or p99 in µs.
    fn latency(&self, key: Key, p99: bool) -> Option<f64> {
        let rtts = self.rtts(key);
        let us = rtts.iter().map(|r| {
            let ns = if p99 { r.rtts.p99_ns } else { r.rtts.p50_ns };
            ns as f64 / 1000.0
        });
        let us = Samples::of(us);
        (!us.values.is_empty()).then(|| us.median())
    }

    /// Median server (or, with `clients`, all roles') CPU-seconds per million messages — per
    /// million round trips in the round-trip scenario.
    fn cpu_per_million(&self, key: Key, clients: bool) -> Option<f64> {
        let per_million = |cpu: Option<std::time::Duration>, count: u64| {
            Some(cpu?.as_secs_f64() / (count as f64 / 1e6))
        };
        let values: Vec<f64> = match key.1 {
            Scenario::RoundTrip => (self.rtts(key).iter())
                .filter_map(|r| {
                    let cpu = if clients {
                        Some(r.client_cpu)
                    } else {
                        r.server_cpu
                    };
                    per_million(cpu, r.total)
                })
                .collect(),
            Scenario::Stream { .. } => (self.streams(key).iter())
                .filter_map(|s| {
                    let cpu = if clients {
                        Some(s.client_cpu)
                    } else {
                        s.server_cpu
                    };
                    per_million(cpu, s.merged.distinct)
                })
                .collect(),
        };
        let values = Samples::of(values);
        (!values.values.is_empty()).then(|| values.median())
    }

    /// The run's header, every table, the targets and the notes.
    pub fn markdown(&self, args: &RunArgs, described: &[String]) -> String {
        let mut out = String::new();
        self.header(&mut out, args, described);
        if self.stream_scenarios().next().is_some() {
            let _ = write!(out, "{}", self.throughput());
        }
        if self.has_rtt() {
            let _ = write!(out, "{}", self.round_trips());
        }
        let _ = write!(out, "{}", self.cpu());
        self.targets(&mut out);
        self.notes(&mut out);
        out
    }

    fn header(&self, out: &mut String, args: &RunArgs, described: &[String]) {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let sizes: Vec<String> = self.sizes.iter().map(|&s| size_label(s)).collect();
        let messages: Vec<String> = (self.sizes.iter())
            .map(|&s| format!("{} at {}", args.messages_for(s), size_label(s)))
            .collect();
        let runtime = match args.client_threads {
            1 => "current-thread".to_string(),
            n => format!("{n} threads"),
        };
        let _ = writeln!(out, "## bench-channels\n");
        let _ = writeln!(
            out,
            "{cpus} CPUs · {} trial(s), medians · payloads {} · messages per throughput trial: \
             {} · {} round trips after {} warm-up · circuit channel capacity {} (round trip: \
             {}) · each client a process with a {runtime} tokio runtime\n",
            args.trials,
            sizes.join(", "),
            messages.join(", "),
            args.roundtrips,
            args.warmup,
            args.capacity,
            args.rtt_capacity,
        );
        for line in described {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }

    fn throughput(&self) -> Table {
        let mut table = Table::new("Throughput")
            .caption(
                "Messages delivered per second, from the first sender's first message to the \
                 last receiver's last (median; slowest trial in brackets), and payload MB/s.",
            )
            .left("system")
            .left("scenario");
        for &size in &self.sizes {
            let label = size_label(size);
            table = table
                .right(format!("{label} msgs/s"))
                .right(format!("{label} MB/s"));
        }
        for &system in &self.systems {
            for scenario in self.stream_scenarios() {
                if !system.runs(scenario) {
                    continue;
                }
                let mut row = vec![system.to_string(), scenario.to_string()];
                for &size in &self.sizes {
                    let (rate, mbs) = self.throughput_cells((system, scenario, size));
                    row.extend([rate, mbs]);
                }
                table.row(row);
            }
        }
        for (a, b) in RATIOS {
            for scenario in self.stream_scenarios() {
                if !(self.takes_part(a, scenario) && self.takes_part(b, scenario)) {
                    continue;
                }
                let mut row = vec![format!("**{a} ÷ {b}**"), scenario.to_string()];
                for &size in &self.sizes {
                    let ratio = ratio(
                        self.rate((a, scenario, size)),
                        self.rate((b, scenario, size)),
                    );
                    row.extend([ratio, String::new()]);
                }
                table.row(row);
            }
        }
        table
    }

    fn throughput_cells(&self, key: Key) -> (String, String) {
        let ok = self.streams(key);
        let failed = self.failures(key);
        if ok.is_empty() {
            let reason = failed.first().map_or("no trial", |r| r);
            return (format!("failed: {}", short(reason)), String::new());
        }
        let rates = Samples::of(ok.iter().map(|s| s.rate()));
        let mut cell = format!("{} ({})", fmt_rate(rates.median()), fmt_rate(rates.min()));
        if !failed.is_empty() {
            let _ = write!(
                cell,
                " · {} of {} failed",
                failed.len(),
                failed.len() + ok.len()
            );
        }
        let lost: u64 = ok.iter().map(|s| s.merged.lost).sum();
        let expected: u64 = ok.iter().map(|s| s.expected).sum();
        let duplicates: u64 = ok.iter().map(|s| s.merged.duplicates).sum();
        let malformed: u64 = ok.iter().map(|s| s.merged.malformed).sum();
        if lost > 0 {
            let _ = write!(cell, " · **lost {lost} of {expected}**");
        }
        if duplicates > 0 {
            let _ = write!(cell, " · **{duplicates} duplicated**");
        }
        if malformed > 0 {
            let _ = write!(cell, " · **{malformed} malformed**");
        }
        let mbs = rates.median() * key.2 as f64 / 1e6;
        (cell, format!("{mbs:.1}"))
    }

    fn round_trips(&self) -> Table {
        let mut table = Table::new("Round trip")
            .caption(
                "One message in flight (circuit: over two channels; NATS: request/reply); \
                 latency in µs, median over trials of each trial's p50 and p99.",
            )
            .left("system");
        for &size in &self.sizes {
            let label = size_label(size);
            table = table
                .right(format!("{label} p50"))
                .right(format!("{label} p99"));
        }
        for &system in &self.systems {
            let mut row = vec![system.to_string()];
            for &size in &self.sizes {
                let key = (system, Scenario::RoundTrip, size);
                let (p50, p99) = (self.latency(key, false), self.latency(key, true));
                match (p50, p99) {
                    (Some(p50), Some(p99)) => {
                        let mut p99 = format!("{p99:.1}");
                        let failed = self.failures(key).len();
                        if failed > 0 {
                            let _ = write!(p99, " · {failed} failed");
                        }
                        row.extend([format!("{p50:.1}"), p99]);
                    }
                    _ => {
                        let failures = self.failures(key);
                        let reason = failures.first().copied().unwrap_or("no trial");
                        row.extend([format!("failed: {}", short(reason)), String::new()]);
                    }
                }
            }
            table.row(row);
        }
        for (a, b) in RATIOS {
            if !(self.systems.contains(&a) && self.systems.contains(&b)) {
                continue;
            }
            let mut row = vec![format!("**{a} ÷ {b}**")];
            for &size in &self.sizes {
                let (ka, kb) = (
                    (a, Scenario::RoundTrip, size),
                    (b, Scenario::RoundTrip, size),
                );
                row.push(ratio(self.latency(ka, false), self.latency(kb, false)));
                row.push(ratio(self.latency(ka, true), self.latency(kb, true)));
            }
            table.row(row);
        }
        table
    }

    fn cpu(&self) -> Table {
        let mut table = Table::new("CPU per million messages")
            .caption(
                "CPU-seconds (user + system, from /proc) per million messages delivered (per \
                 million round trips in the round-trip rows).",
            )
            .left("process")
            .left("scenario");
        for &size in &self.sizes {
            table = table.right(size_label(size));
        }
        let row = |table: &mut Table,
                   label: String,
                   scenario: Scenario,
                   key: &dyn Fn(usize) -> Option<f64>| {
            let mut row = vec![label, scenario.to_string()];
            row.extend(self.sizes.iter().map(|&size| match key(size) {
                Some(v) => format!("{v:.2}"),
                None => "—".into(),
            }));
            table.row(row);
        };
        for &system in &self.systems {
            let Some(server) = system.server() else {
                continue;
            };
            for &scenario in &self.scenarios {
                row(&mut table, server.to_string(), scenario, &|size| {
                    self.cpu_per_million((system, scenario, size), false)
                });
            }
        }
        if self.systems.contains(&System::Circuit) && self.systems.contains(&System::Nats) {
            for &scenario in &self.scenarios {
                let mut cells = vec![
                    "**circuitd ÷ nats-server**".to_string(),
                    scenario.to_string(),
                ];
                for &size in &self.sizes {
                    cells.push(ratio(
                        self.cpu_per_million((System::Circuit, scenario, size), false),
                        self.cpu_per_million((System::Nats, scenario, size), false),
                    ));
                }
                table.row(cells);
            }
        }
        for &system in &self.systems {
            for &scenario in &self.scenarios {
                if !system.runs(scenario) {
                    continue;
                }
                row(&mut table, format!("{system} clients"), scenario, &|size| {
                    self.cpu_per_million((system, scenario, size), true)
                });
            }
        }
        table
    }

    fn targets(&self, out: &mut String) {
        let (c, n) = (System::Circuit, System::Nats);
        let _ = writeln!(out, "#### Targets\n");
        let mut worst: Option<(f64, String)> = None;
        for scenario in self.stream_scenarios() {
            for &size in &self.sizes {
                let (a, b) = (
                    self.rate((c, scenario, size)),
                    self.rate((n, scenario, size)),
                );
                if let (Some(a), Some(b)) = (a, b) {
                    let r = a / b;
                    if worst.as_ref().is_none_or(|(w, _)| r < *w) {
                        worst = Some((r, format!("{scenario}, {}", size_label(size))));
                    }
                }
            }
        }
        let verdict = match worst {
            Some((r, at)) => format!(
                "{} (lowest circuit ÷ NATS: {r:.2}× at {at})",
                if r >= 1.0 { "PASS" } else { "FAIL" }
            ),
            None => "not measured (needs circuit and NATS results)".into(),
        };
        let _ = writeln!(out, "- circuit ≥ NATS throughput at every size: {verdict}");
        let mut worst: Option<(f64, String)> = None;
        for &size in &self.sizes {
            let key = |s| (s, Scenario::RoundTrip, size);
            let (a, b) = (self.latency(key(c), false), self.latency(key(n), false));
            if let (Some(a), Some(b)) = (a, b) {
                let r = a / b;
                if worst.as_ref().is_none_or(|(w, _)| r > *w) {
                    worst = Some((r, size_label(size)));
                }
            }
        }
        let verdict = match worst {
            Some((r, at)) => format!(
                "{} (highest circuit ÷ NATS: {r:.2}× at {at})",
                if r <= 1.0 { "PASS" } else { "FAIL" }
            ),
            None => "not measured (needs circuit and NATS results)".into(),
        };
        let _ = writeln!(
            out,
            "- circuit p50 round trip ≤ NATS at every size: {verdict}\n"
        );
    }

    /// Failures, losses and client events, each distinct text once with where it happened.
    fn notes(&self, out: &mut String) {
        // Text, and where it happened when the text does not say.
        let mut found: Vec<(String, Option<String>)> = Vec::new();
        for &system in &self.systems {
            for &scenario in &self.scenarios {
                for &size in &self.sizes {
                    let trials = self.trials.get(&(system, scenario, size));
                    for (i, trial) in trials.into_iter().flatten().enumerate() {
                        let place =
                            format!("{system} {scenario} {} trial {}", size_label(size), i + 1);
                        let client_notes = match trial {
                            Err(e) => {
                                found.push((format!("failed: {e}"), Some(place)));
                                continue;
                            }
                            Ok(Outcome::Rtt(r)) => &r.notes,
                            Ok(Outcome::Stream(s)) => {
                                let m = &s.merged;
                                if m.lost + m.duplicates + m.malformed > 0 {
                                    let text = format!(
                                        "{place}: of {} sent, {} arrived, {} lost, {} \
                                         duplicated, {} malformed",
                                        s.expected, m.distinct, m.lost, m.duplicates, m.malformed
                                    );
                                    found.push((text, None));
                                }
                                &s.notes
                            }
                        };
                        for note in client_notes {
                            found.push((note.clone(), Some(place.clone())));
                        }
                    }
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (text, place) in found {
            grouped.entry(text).or_default().extend(place);
        }
        let _ = writeln!(out, "#### Notes\n");
        for (text, places) in grouped {
            let text = text.replace('\n', "\n  ");
            let _ = match places.len() {
                0 => writeln!(out, "- {text}"),
                1..=3 => writeln!(out, "- {} — {text}", places.join("; ")),
                n => writeln!(
                    out,
                    "- {}; and {} more — {text}",
                    places[..2].join("; "),
                    n - 2
                ),
            };
        }
        out.push('\n');
    }
}

/// One line about a trial for the progress log.
pub fn summary(outcome: &Result<Outcome, String>) -> String {
    match outcome {
        Ok(Outcome::Stream(s)) => {
            let mut line = format!(
                "{} msgs/s over {:.2} s",
                fmt_rate(s.rate()),
                s.elapsed.as_secs_f64()
            );
            if s.merged.lost > 0 {
                let _ = write!(line, ", lost {} of {}", s.merged.lost, s.expected);
            }
            line
        }
        Ok(Outcome::Rtt(r)) => format!(
            "p50 {:.1} µs, p99 {:.1} µs",
            r.rtts.p50_ns as f64 / 1000.0,
            r.rtts.p99_ns as f64 / 1000.0
        ),
        Err(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
    }
}

/// `a ÷ b` as `0.85×`, or `—` when either is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

/// The first line of a reason, cut to fit a cell, without the characters that break a table.
fn short(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default().replace('|', "/");
    match line.char_indices().nth(CELL_REASON) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(ratio(None, Some(4.0)), "—");
        assert_eq!(short("a | b\nsecond line"), "a / b");
        assert_eq!(short(&"x".repeat(100)).chars().count(), CELL_REASON + 1);
    }
}
