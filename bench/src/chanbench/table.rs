//! The run's [`Results`] as tables: throughput, round-trip latency and CPU per million messages,
//! medians over rounds with rows of per-round ratios ([`RoundRatios`]), every row's lost and
//! duplicated messages, then the targets ([`super::targets`]) and anything odd that happened.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::driver::Outcome;
use super::ratios::RoundRatios;
use super::results::{cpu_per_million, Key, Results};
use super::{RunArgs, Scenario, System};
use crate::report::{fmt_rate, size_label, Samples, Table};

/// Pairs compared in ratio rows, when both took part: circuit first, then what it is held to.
const RATIOS: [(System, System); 8] = [
    (System::CircuitDefaults, System::Circuit),
    (System::Circuit, System::NatsC),
    (System::CircuitDefaults, System::NatsC),
    (System::Circuit, System::JetStreamC),
    (System::Circuit, System::Zmq),
    (System::Circuit, System::Nats),
    (System::NatsC, System::Nats),
    (System::Circuit, System::Raw),
];
/// Server CPU compared in ratio rows of the CPU table.
const CPU_RATIOS: [(System, System); 2] = [
    (System::Circuit, System::NatsC),
    (System::CircuitDefaults, System::NatsC),
];
/// Longest failure reason printed in a cell; the whole reason goes to the notes.
const CELL_REASON: usize = 60;

impl Results {
    /// The run's header, every table, the targets and the notes; `charts` (the lines that
    /// show the throughput charts) go under the throughput table.
    pub fn markdown(&self, args: &RunArgs, described: &[String], charts: &[String]) -> String {
        let mut out = String::new();
        self.header(&mut out, args, described);
        if self.stream_scenarios().next().is_some() {
            let mut table = self.throughput();
            for line in charts {
                table.note(line.as_str());
            }
            let _ = write!(out, "{table}");
        }
        if self.has_rtt() {
            let _ = write!(out, "{}", self.round_trips());
        }
        let _ = write!(out, "{}", self.cpu());
        super::targets::write(self, &mut out);
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
            "{cpus} CPUs · {} round(s), the systems interleaved in each, medians over rounds · \
             payloads {} · messages per throughput trial: {} · {} round trips after {} warm-up \
             · circuit channel capacity {} (round trip: {}) · each Rust client a process with a \
             {runtime} tokio runtime, each C client a process\n",
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
                 last receiver's last (median over rounds; slowest round in brackets), and \
                 payload MB/s. Lost and duplicated messages are counted exactly from the stamps \
                 over every round and size. Ratio rows: the median of the per-round ratios \
                 (lowest–highest round).",
            )
            .left("system")
            .left("scenario");
        for &size in &self.sizes {
            let label = size_label(size);
            table = table
                .right(format!("{label} msgs/s"))
                .right(format!("{label} MB/s"));
        }
        table = table.right("lost / dup");
        for &system in &self.systems {
            for scenario in self.stream_scenarios() {
                if !system.runs(scenario) {
                    continue;
                }
                let mut row = vec![system.to_string(), scenario.to_string()];
                let (mut lost, mut duplicated) = (0, 0);
                for &size in &self.sizes {
                    let key = (system, scenario, size);
                    let (rate, mbs) = self.throughput_cells(key);
                    row.extend([rate, mbs]);
                    for s in self.streams(key) {
                        lost += s.merged.lost;
                        duplicated += s.merged.duplicates;
                    }
                }
                row.push(format!("{lost} / {duplicated}"));
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
                    let ratios = self.rate_ratios(a, b, scenario, size);
                    row.extend([ratios.to_string(), String::new()]);
                }
                row.push(String::new());
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
                "One message in flight (circuit: over two channels; NATS: request/reply; \
                 ZeroMQ: REQ/REP); latency in µs, median over rounds of each round's p50 and \
                 p99. A trial whose echo missed or doubled a ping fails. Ratio rows: the median \
                 of the per-round ratios (lowest–highest round); below 1 is faster.",
            )
            .left("system");
        for &size in &self.sizes {
            let label = size_label(size);
            table = table
                .right(format!("{label} p50"))
                .right(format!("{label} p99"));
        }
        let rtt = Scenario::RoundTrip;
        for &system in self.systems.iter().filter(|s| s.runs(rtt)) {
            let mut row = vec![system.to_string()];
            for &size in &self.sizes {
                let key = (system, rtt, size);
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
            if !(self.takes_part(a, rtt) && self.takes_part(b, rtt)) {
                continue;
            }
            let mut row = vec![format!("**{a} ÷ {b}**")];
            for &size in &self.sizes {
                row.push(self.latency_ratios(a, b, size, false).to_string());
                row.push(self.latency_ratios(a, b, size, true).to_string());
            }
            table.row(row);
        }
        table
    }

    fn cpu(&self) -> Table {
        let mut table = Table::new("CPU per million messages")
            .caption(
                "CPU-seconds (user + system, from /proc; the C clients' from getrusage) per \
                 million messages delivered (per million round trips in the round-trip rows), \
                 median over rounds. Ratio rows: the median of the per-round ratios.",
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
            for &scenario in self.scenarios.iter().filter(|&&s| system.runs(s)) {
                row(
                    &mut table,
                    format!("{server} ({system})"),
                    scenario,
                    &|size| self.cpu_per_million((system, scenario, size), false),
                );
            }
        }
        for (a, b) in CPU_RATIOS {
            for &scenario in &self.scenarios {
                if !(self.takes_part(a, scenario) && self.takes_part(b, scenario)) {
                    continue;
                }
                let mut cells = vec![format!("**server: {a} ÷ {b}**"), scenario.to_string()];
                for &size in &self.sizes {
                    let cpu = |system| {
                        self.per_round((system, scenario, size), |o| cpu_per_million(o, false))
                    };
                    cells.push(RoundRatios::of(&cpu(a), &cpu(b)).to_string());
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
        assert_eq!(short("a | b\nsecond line"), "a / b");
        assert_eq!(short(&"x".repeat(100)).chars().count(), CELL_REASON + 1);
    }
}
