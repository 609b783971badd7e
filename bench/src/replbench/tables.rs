//! The run's results as tables (`report::Table`): throughput and round trips with the exact
//! count of lost and duplicated messages in every row, ratios as the median of per-round
//! ratios, failover percentiles, the targets, and the notes. What the tables measure is written
//! in BENCHMARKS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::contender::{Contender, Tried};
use super::failover::{self, Failover, Sample};
use super::{
    rtt, throughput, RunArgs, Settings, TARGET_FAILOVER, TARGET_R3_OF_R1, TARGET_R3_OF_R1_SIZE,
};
use crate::chanbench::protocol::quantile;
use crate::chanbench::Scenario;
use crate::report::{fmt_rate, size_label, Samples, Table};

/// Longest failure reason printed in a cell; the whole reason goes to the notes.
const CELL_REASON: usize = 60;
/// What a cell says of a kind of channel this build does not serve.
const NOT_SERVED: &str = "not served by this build";

/// Throughput ratios shown, first ÷ second, when both took part.
const THROUGHPUT_RATIOS: [(Contender, Contender); 5] = [
    (Contender::R3Memory, Contender::JsMemory),
    (Contender::R3Memory, Contender::JsFile),
    (Contender::R3Disk, Contender::JsFile),
    (Contender::R3Memory, Contender::R1),
    (Contender::R3Disk, Contender::R1),
];
/// Round-trip ratios shown, first ÷ second.
const RTT_RATIOS: [(Contender, Contender); 2] = [
    (Contender::R3Memory, Contender::R1),
    (Contender::R3Disk, Contender::R1),
];

/// Each round's outcome, with its round number.
pub(super) type Rounds<T> = Vec<(usize, Tried<T>)>;

/// Every trial's outcome, and what the run was.
pub struct Report {
    /// The line under the title: machine, settings.
    header: String,
    /// What each contender ran on.
    described: Vec<String>,
    /// A `--quick` run, which the charts say too.
    pub(super) quick: bool,
    pub(super) rounds: usize,
    pub(super) contenders: Vec<Contender>,
    pub(super) scenarios: Vec<Scenario>,
    pub(super) sizes: Vec<usize>,
    pub(super) stream: BTreeMap<(Contender, Scenario, usize), Rounds<throughput::Run>>,
    rtt: BTreeMap<(Contender, usize), Rounds<rtt::Run>>,
    /// The failover phase's setup and outcome, if it ran.
    pub failover: Option<(failover::Setup, Failover)>,
    /// How long the whole run took.
    pub took: Duration,
    /// Printed under the throughput table: its charts' image lines ([`super::charts`]).
    pub throughput_charts: Vec<String>,
    /// Printed under the failover table: its chart's image line.
    pub failover_charts: Vec<String>,
}

impl Report {
    /// No results yet.
    pub fn new(args: &RunArgs, settings: &Settings, contenders: &[Contender]) -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let messages: Vec<String> = (args.sizes.iter())
            .map(|&s| format!("{} at {}", args.messages_for(s), size_label(s)))
            .collect();
        let mut header = String::new();
        if settings.quick {
            header.push_str("**A `--quick` smoke run: too short to quote.** ");
        }
        let _ = write!(
            header,
            "{cpus} CPUs · {} round(s), contenders taking turns within each · messages per \
             throughput trial: {} · senders' window {} · channel capacity {} (JetStream: most \
             unacked deliveries) · {} round trips after {} warm-up, ping and pong capacity {} · \
             every client a process with a current-thread runtime · failover: {} trial(s) per \
             system, {} senders at {} msgs/s each and {} receivers, {} payloads, the leader \
             killed {} after the start, {} of the schedule after it",
            settings.rounds,
            messages.join(", "),
            args.window,
            args.capacity,
            settings.roundtrips,
            settings.warmup,
            args.rtt_capacity,
            settings.failover_trials,
            args.failover_senders,
            args.failover_rate,
            args.failover_receivers,
            size_label(args.failover_size),
            humantime::format_duration(args.failover_warm),
            humantime::format_duration(args.failover_after),
        );
        Self {
            header,
            described: Vec::new(),
            quick: settings.quick,
            rounds: settings.rounds,
            contenders: contenders.to_vec(),
            scenarios: args.scenarios.clone(),
            sizes: args.sizes.clone(),
            stream: BTreeMap::new(),
            rtt: BTreeMap::new(),
            failover: None,
            took: Duration::ZERO,
            throughput_charts: Vec::new(),
            failover_charts: Vec::new(),
        }
    }

    /// Adds a line about what a contender ran on.
    pub fn describe(&mut self, line: String) {
        self.described.push(line);
    }

    /// Adds one throughput trial's outcome.
    pub fn record_stream(
        &mut self,
        contender: Contender,
        scenario: Scenario,
        size: usize,
        round: usize,
        tried: Tried<throughput::Run>,
    ) {
        let trials = self.stream.entry((contender, scenario, size)).or_default();
        trials.push((round, tried));
    }

    /// Adds one round-trip trial's outcome.
    pub fn record_rtt(
        &mut self,
        contender: Contender,
        size: usize,
        round: usize,
        tried: Tried<rtt::Run>,
    ) {
        self.rtt
            .entry((contender, size))
            .or_default()
            .push((round, tried));
    }

    /// The run's header, every table, the targets and the notes.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## bench-replicated\n\n{}\n", self.header);
        for line in &self.described {
            let _ = writeln!(out, "- {line}");
        }
        if let Some((_, f)) = &self.failover {
            for run in [&f.circuit, &f.jetstream] {
                if !run.described.is_empty() {
                    let _ = writeln!(out, "- failover, {}", run.described);
                }
            }
        }
        let _ = writeln!(
            out,
            "- the run took {:.1} min\n",
            self.took.as_secs_f64() / 60.0
        );
        if !self.stream.is_empty() {
            let mut table = self.throughput();
            for line in &self.throughput_charts {
                table.note(line.as_str());
            }
            let _ = write!(out, "{table}");
        }
        if !self.rtt.is_empty() {
            let _ = write!(out, "{}", self.round_trips());
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            let _ = write!(out, "{ratios}");
        }
        if let Some((setup, f)) = &self.failover {
            let mut table = failover_table(setup, f);
            for line in &self.failover_charts {
                table.note(line.as_str());
            }
            let _ = write!(out, "{table}");
        }
        let _ = write!(out, "{}", self.targets());
        self.notes(&mut out);
        out
    }

    fn stream_scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        self.scenarios.iter().copied()
    }

    /// Per round, the rate of the trial that ran.
    pub(super) fn rates(&self, key: (Contender, Scenario, usize)) -> BTreeMap<usize, f64> {
        let trials = self.stream.get(&key).into_iter().flatten();
        trials
            .filter_map(|(round, t)| t.ran().map(|r| (*round, r.outcome.rate())))
            .collect()
    }

    fn throughput(&self) -> Table {
        let mut table = Table::new("Throughput")
            .caption(
                "Messages delivered per second, from the first sender's first message to the \
                 last receiver's last: median over rounds (slowest round in brackets). Lost and \
                 duplicated: exact counts over every trial of the row. Where: senders' node → \
                 leader (or owner) → receivers' node.",
            )
            .left("contender")
            .left("scenario");
        for &size in &self.sizes {
            table = table.right(format!("{} msgs/s", size_label(size)));
        }
        table = table.right("lost").right("duplicated").left("where");
        for &contender in &self.contenders {
            for scenario in self.stream_scenarios() {
                let mut row = vec![contender.to_string(), scenario.to_string()];
                let mut all: Vec<&Tried<throughput::Run>> = Vec::new();
                for &size in &self.sizes {
                    let trials = self.stream.get(&(contender, scenario, size));
                    let trials: Vec<&Tried<throughput::Run>> =
                        trials.into_iter().flatten().map(|(_, t)| t).collect();
                    let rates: Vec<f64> = (trials.iter())
                        .filter_map(|t| t.ran().map(|r| r.outcome.rate()))
                        .collect();
                    row.push(rate_cell(&trials, &rates));
                    all.extend(trials);
                }
                let ran: Vec<&throughput::Run> = all.iter().filter_map(|t| t.ran()).collect();
                let (lost, dup) = if ran.is_empty() {
                    ("—".to_string(), "—".to_string())
                } else {
                    let lost: u64 = ran.iter().map(|r| r.outcome.merged.lost).sum();
                    let sent: u64 = ran.iter().map(|r| r.outcome.expected).sum();
                    let dup: u64 = ran.iter().map(|r| r.outcome.merged.duplicates).sum();
                    (format!("{lost} of {sent}"), dup.to_string())
                };
                let places: BTreeSet<&str> = ran.iter().map(|r| r.placement.as_str()).collect();
                row.extend([lost, dup, places.into_iter().collect::<Vec<_>>().join("; ")]);
                table.row(row);
            }
        }
        table
    }

    /// Per round, a round-trip trial's p50 or p99 in µs.
    fn latencies(&self, key: (Contender, usize), p99: bool) -> BTreeMap<usize, f64> {
        let trials = self.rtt.get(&key).into_iter().flatten();
        trials
            .filter_map(|(round, t)| {
                let r = &t.ran()?.outcome.rtts;
                let ns = if p99 { r.p99_ns } else { r.p50_ns };
                Some((*round, ns as f64 / 1000.0))
            })
            .collect()
    }

    fn round_trips(&self) -> Table {
        let mut table = Table::new("Round trip")
            .caption(
                "One value in flight: the pinger sends on the ping channel, the echo sends it \
                 back on the pong channel. µs, median over rounds of each round's p50 and p99. \
                 Lost and duplicated: pings the echo missed or saw twice, over every trial of \
                 the row that completed (one that loses or doubles a ping fails; see the notes).",
            )
            .left("contender");
        for &size in &self.sizes {
            let label = size_label(size);
            table = table
                .right(format!("{label} p50"))
                .right(format!("{label} p99"));
        }
        table = table.right("lost").right("duplicated").left("where");
        for contender in self.contenders.iter().copied().filter(|c| c.is_circuit()) {
            let mut row = vec![contender.to_string()];
            let mut all: Vec<&Tried<rtt::Run>> = Vec::new();
            for &size in &self.sizes {
                let trials: Vec<&Tried<rtt::Run>> = (self.rtt.get(&(contender, size)))
                    .into_iter()
                    .flatten()
                    .map(|(_, t)| t)
                    .collect();
                let p50 = Samples::of(self.latencies((contender, size), false).into_values());
                let p99 = Samples::of(self.latencies((contender, size), true).into_values());
                if p50.values.is_empty() {
                    row.extend([unmeasured(&trials), String::new()]);
                } else {
                    let mut p99 = format!("{:.1}", p99.median());
                    let failed = trials
                        .iter()
                        .filter(|t| matches!(t, Tried::Failed(_)))
                        .count();
                    if failed > 0 {
                        let _ = write!(p99, " · {failed} of {} failed", trials.len());
                    }
                    row.extend([format!("{:.1}", p50.median()), p99]);
                }
                all.extend(trials);
            }
            let ran: Vec<&rtt::Run> = all.iter().filter_map(|t| t.ran()).collect();
            let places: BTreeSet<&str> = ran.iter().map(|r| r.placement.as_str()).collect();
            let (lost, dup) = if ran.is_empty() {
                ("—".to_string(), "—".to_string())
            } else {
                let pings: u64 = ran.iter().map(|r| r.outcome.total).sum();
                (format!("0 of {pings}"), "0".to_string())
            };
            row.extend([lost, dup, places.into_iter().collect::<Vec<_>>().join("; ")]);
            table.row(row);
        }
        table
    }

    fn ratios(&self) -> Table {
        let mut table = Table::new("Ratios")
            .caption(
                "Each round's ratio of the two contenders' figures, then the median over rounds \
                 (lowest–highest in brackets); only rounds in which both ran count. Throughput: \
                 above 1 the first is faster. Round trip: below 1 the first is quicker.",
            )
            .left("ratio")
            .left("measure");
        for &size in &self.sizes {
            table = table.right(size_label(size));
        }
        let takes_part = |c: &Contender| self.contenders.contains(c);
        for (a, b) in THROUGHPUT_RATIOS {
            if !(takes_part(&a) && takes_part(&b)) || self.stream.is_empty() {
                continue;
            }
            for scenario in self.stream_scenarios() {
                let mut row = vec![format!("**{a} ÷ {b}**"), format!("throughput {scenario}")];
                for &size in &self.sizes {
                    let ratios = per_round(
                        &self.rates((a, scenario, size)),
                        &self.rates((b, scenario, size)),
                    );
                    row.push(ratio_cell(&ratios));
                }
                table.row(row);
            }
        }
        for (a, b) in RTT_RATIOS {
            if !(takes_part(&a) && takes_part(&b)) || self.rtt.is_empty() {
                continue;
            }
            for (p99, label) in [(false, "round trip p50"), (true, "round trip p99")] {
                let mut row = vec![format!("**{a} ÷ {b}**"), label.to_string()];
                for &size in &self.sizes {
                    let ratios = per_round(
                        &self.latencies((a, size), p99),
                        &self.latencies((b, size), p99),
                    );
                    row.push(ratio_cell(&ratios));
                }
                table.row(row);
            }
        }
        table
    }

    /// The per-round ratios of `a` over `b` at every size and scenario.
    fn throughput_ratios(&self, a: Contender, b: Contender) -> Vec<(Scenario, usize, Samples)> {
        let mut out = Vec::new();
        for scenario in self.stream_scenarios() {
            for &size in &self.sizes {
                let ratios = per_round(
                    &self.rates((a, scenario, size)),
                    &self.rates((b, scenario, size)),
                );
                out.push((scenario, size, ratios));
            }
        }
        out
    }

    fn targets(&self) -> Table {
        let mut table = Table::new("Targets")
            .caption("The issue's targets, as this run measured them.")
            .left("target")
            .left("measured")
            .left("verdict");
        // Failover.
        match &self.failover {
            Some((_, f)) if !f.circuit.samples.is_empty() => {
                let firsts = millis(&f.circuit.samples, |s| s.first);
                let p99 = quantile(&firsts, 0.99);
                table.row([
                    format!(
                        "failover ≤ {} ms p99 (kill → first send acknowledged, circuit R3)",
                        TARGET_FAILOVER.as_millis()
                    ),
                    format!("{p99} ms p99 over {} trials", firsts.len()),
                    verdict(u128::from(p99) <= TARGET_FAILOVER.as_millis()),
                ]);
            }
            _ => table.row([
                format!("failover ≤ {} ms p99", TARGET_FAILOVER.as_millis()),
                "not measured".to_string(),
                "—".to_string(),
            ]),
        }
        // R3 against JetStream R3.
        for (a, b) in [
            (Contender::R3Memory, Contender::JsMemory),
            (Contender::R3Memory, Contender::JsFile),
            (Contender::R3Disk, Contender::JsFile),
        ] {
            let target = format!("{a} ≥ {b} throughput at every size");
            let ratios = self.throughput_ratios(a, b);
            let lowest = ratios
                .iter()
                .filter(|(_, _, r)| !r.values.is_empty())
                .map(|(sc, size, r)| (r.median(), format!("{sc}, {}", size_label(*size))))
                .min_by(|x, y| x.0.total_cmp(&y.0));
            let measured = self.measured_count(&ratios);
            match lowest {
                Some((r, at)) if measured.0 == measured.1 => {
                    table.row([target, format!("lowest {r:.2}× ({at})"), verdict(r >= 1.0)])
                }
                Some((r, at)) => table.row([
                    target,
                    format!(
                        "lowest {r:.2}× ({at}); {} of {} cells measured",
                        measured.0, measured.1
                    ),
                    "not measured everywhere".to_string(),
                ]),
                None => table.row([target, self.why_unmeasured(a, b), "—".to_string()]),
            }
        }
        // R3 against R1 at 256 B.
        let target = format!(
            "circuit R3 memory ≥ {TARGET_R3_OF_R1} × circuit R1 at {}",
            size_label(TARGET_R3_OF_R1_SIZE)
        );
        let at_size: Vec<(Scenario, f64)> = self
            .throughput_ratios(Contender::R3Memory, Contender::R1)
            .into_iter()
            .filter(|(_, size, r)| *size == TARGET_R3_OF_R1_SIZE && !r.values.is_empty())
            .map(|(sc, _, r)| (sc, r.median()))
            .collect();
        match at_size.iter().min_by(|x, y| x.1.total_cmp(&y.1)) {
            Some((sc, r)) => table.row([
                target,
                format!("lowest {r:.2}× ({sc})"),
                verdict(*r >= TARGET_R3_OF_R1),
            ]),
            None => table.row([target, "not measured".to_string(), "—".to_string()]),
        }
        // Nothing lost, nothing doubled.
        let (lost, dup, sent) = self.circuit_losses();
        table.row([
            "zero lost, zero duplicated (every circuit trial)".to_string(),
            format!("{lost} lost, {dup} duplicated of {sent} sent"),
            if sent == 0 {
                "—".to_string()
            } else {
                verdict(lost + dup == 0)
            },
        ]);
        table
    }

    /// Cells with a ratio, of all cells.
    fn measured_count(&self, ratios: &[(Scenario, usize, Samples)]) -> (usize, usize) {
        let with = ratios
            .iter()
            .filter(|(_, _, r)| !r.values.is_empty())
            .count();
        (with, ratios.len())
    }

    fn why_unmeasured(&self, a: Contender, b: Contender) -> String {
        for c in [a, b] {
            if !self.contenders.contains(&c) {
                return format!("not measured ({c} not in --contenders)");
            }
            let served = self.stream.iter().any(|((k, _, _), trials)| {
                *k == c
                    && trials
                        .iter()
                        .any(|(_, t)| !matches!(t, Tried::NotServed(_)))
            });
            if !served && self.stream.keys().any(|(k, _, _)| *k == c) {
                return format!("not measured: {c} is {NOT_SERVED}");
            }
        }
        "not measured".to_string()
    }

    /// Lost, duplicated and sent, over every circuit trial that completed (a round trip that
    /// loses or doubles a ping fails instead, and its reason is in the notes).
    fn circuit_losses(&self) -> (u64, u64, u64) {
        let (mut lost, mut dup, mut sent) = (0, 0, 0);
        for trials in self.rtt.values() {
            sent += (trials.iter())
                .filter_map(|(_, t)| t.ran())
                .map(|r| r.outcome.total)
                .sum::<u64>();
        }
        for ((c, _, _), trials) in &self.stream {
            if !c.is_circuit() {
                continue;
            }
            for run in trials.iter().filter_map(|(_, t)| t.ran()) {
                lost += run.outcome.merged.lost;
                dup += run.outcome.merged.duplicates;
                sent += run.outcome.expected;
            }
        }
        if let Some((_, f)) = &self.failover {
            for s in &f.circuit.samples {
                lost += s.merged.lost;
                dup += s.merged.duplicates;
                sent += s.expected;
            }
        }
        (lost, dup, sent)
    }

    /// Failures, kinds not served, and client notes, each distinct text once with where.
    fn notes(&self, out: &mut String) {
        let mut found: Vec<(String, Option<String>)> = Vec::new();
        for ((c, scenario, size), trials) in &self.stream {
            for (round, t) in trials {
                let place = format!("{c} {scenario} {} round {round}", size_label(*size));
                match t {
                    Tried::Ran(r) => {
                        let m = &r.outcome.merged;
                        if m.lost + m.duplicates + m.malformed > 0 {
                            found.push((
                                format!(
                                    "{place}: of {} sent, {} arrived, {} lost, {} duplicated, {} \
                                     malformed",
                                    r.outcome.expected,
                                    m.distinct,
                                    m.lost,
                                    m.duplicates,
                                    m.malformed
                                ),
                                None,
                            ));
                        }
                        for note in fold_counts(&r.outcome.notes) {
                            found.push((note, Some(place.clone())));
                        }
                    }
                    Tried::NotServed(why) => {
                        found.push((format!("{NOT_SERVED}: {why}"), Some(place)))
                    }
                    Tried::Failed(why) => found.push((format!("failed: {why}"), Some(place))),
                }
            }
        }
        for ((c, size), trials) in &self.rtt {
            for (round, t) in trials {
                let place = format!("{c} round trip {} round {round}", size_label(*size));
                match t {
                    Tried::Ran(r) => {
                        for note in fold_counts(&r.outcome.notes) {
                            found.push((note, Some(place.clone())));
                        }
                    }
                    Tried::NotServed(why) => {
                        found.push((format!("{NOT_SERVED}: {why}"), Some(place)))
                    }
                    Tried::Failed(why) => found.push((format!("failed: {why}"), Some(place))),
                }
            }
        }
        if let Some((_, f)) = &self.failover {
            for (system, run) in [("circuit", &f.circuit), ("JetStream", &f.jetstream)] {
                if let Some(why) = &run.skipped {
                    found.push((format!("failover not measured: {why}"), Some(system.into())));
                }
                for why in &run.failures {
                    found.push((format!("failover failed: {why}"), Some(system.into())));
                }
                for (i, s) in run.samples.iter().enumerate() {
                    let place = format!("{system} failover trial {}", i + 1);
                    found.push((
                        format!(
                            "{}: first ack {} ms, every sender {} ms, lost {} of {}, duplicated {}",
                            s.placement,
                            s.first.as_millis(),
                            s.every.as_millis(),
                            s.merged.lost,
                            s.expected,
                            s.merged.duplicates
                        ),
                        Some(place.clone()),
                    ));
                    for note in fold_counts(&s.notes) {
                        found.push((note, Some(place.clone())));
                    }
                }
                if !run.kept_logs.is_empty() {
                    found.push((
                        format!("logs kept: {}", run.kept_logs.join(", ")),
                        Some(format!("{system} failover")),
                    ));
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

/// Notes of one trial with counts summed: the roles' `what: N×` lines with the same `what`
/// become one line; other notes stay as they are, once each.
fn fold_counts(notes: &[String]) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut other: BTreeSet<&str> = BTreeSet::new();
    for note in notes {
        let parsed = note
            .rsplit_once(": ")
            .and_then(|(what, n)| Some((what, n.strip_suffix('×')?.parse::<u64>().ok()?)));
        match parsed {
            Some((what, n)) => *counts.entry(what).or_default() += n,
            None => {
                other.insert(note);
            }
        }
    }
    let counted = counts
        .into_iter()
        .map(|(what, n)| format!("{what}: {n}× in all"));
    counted
        .chain(other.into_iter().map(str::to_string))
        .collect()
}

/// The failover table: both systems' distributions.
fn failover_table(setup: &failover::Setup, f: &Failover) -> Table {
    let mut table = Table::new("Failover")
        .caption(format!(
            "`kill -9` of the leader under steady load ({} senders at {} msgs/s each, {} \
             receivers, {} payloads, all on hosts that do not lead). ms from the kill to the \
             first acknowledgement of a send made after it, at the first sender to see one and \
             at the last; nearest-rank p50 and p99 over trials. Lost and duplicated: exact \
             counts over every trial, once the run drained.",
            setup.senders,
            setup.rate,
            setup.receivers,
            size_label(setup.size)
        ))
        .left("system")
        .left("measured")
        .right("trials")
        .right("p50 (ms)")
        .right("p99 (ms)")
        .right("max (ms)")
        .right("lost")
        .right("duplicated");
    for (label, run) in failover_runs(f) {
        if run.samples.is_empty() {
            let why = match (&run.skipped, run.failures.first()) {
                (Some(why), _) => format!("not measured: {}", short(why)),
                (None, Some(why)) => format!("failed: {}", short(why)),
                (None, None) => "not measured".to_string(),
            };
            table.row([
                label,
                why,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "—".into(),
                "—".into(),
            ]);
            continue;
        }
        let lost: u64 = run.samples.iter().map(|s| s.merged.lost).sum();
        let sent: u64 = run.samples.iter().map(|s| s.expected).sum();
        let dup: u64 = run.samples.iter().map(|s| s.merged.duplicates).sum();
        let failed = run.failures.len();
        for (measured, pick) in [
            (
                "kill → first send acknowledged (first sender)",
                (|s: &Sample| s.first) as fn(&Sample) -> Duration,
            ),
            ("kill → every sender acknowledged again", |s: &Sample| {
                s.every
            }),
        ] {
            let ms = millis(&run.samples, pick);
            let mut trials = ms.len().to_string();
            if failed > 0 {
                let _ = write!(trials, " ({failed} failed)");
            }
            table.row([
                label.clone(),
                measured.to_string(),
                trials,
                quantile(&ms, 0.5).to_string(),
                quantile(&ms, 0.99).to_string(),
                ms.last().copied().unwrap_or(0).to_string(),
                format!("{lost} of {sent}"),
                dup.to_string(),
            ]);
        }
    }
    table
}

/// Both systems' failover runs, each with its name: the start of what it ran on (`circuit R3
/// memory`, `JetStream R3 file`), or a stand-in when it did not start.
pub(super) fn failover_runs(f: &Failover) -> [(String, &failover::Run); 2] {
    let label = |run: &failover::Run, otherwise: &str| match &run.described {
        d if d.is_empty() => otherwise.to_string(),
        d => d.split(':').next().unwrap_or(otherwise).to_string(),
    };
    [
        (
            label(&f.circuit, "circuit R3 memory, 5 namespace hosts"),
            &f.circuit,
        ),
        (
            label(&f.jetstream, "JetStream R3, 3 servers on loopback"),
            &f.jetstream,
        ),
    ]
}

/// Sorted milliseconds of one measure over the samples.
pub(super) fn millis(samples: &[Sample], pick: impl Fn(&Sample) -> Duration) -> Vec<u64> {
    let mut ms: Vec<u64> = samples
        .iter()
        .map(|s| u64::try_from(pick(s).as_millis()).unwrap_or(u64::MAX))
        .collect();
    ms.sort_unstable();
    ms
}

/// The ratios of `a` over `b` in the rounds where both have a figure.
fn per_round(a: &BTreeMap<usize, f64>, b: &BTreeMap<usize, f64>) -> Samples {
    Samples::of(
        a.iter()
            .filter_map(|(round, x)| b.get(round).filter(|y| **y > 0.0).map(|y| x / y)),
    )
}

fn ratio_cell(ratios: &Samples) -> String {
    match ratios.values.len() {
        0 => "—".to_string(),
        1 => format!("{:.2}×", ratios.median()),
        _ => format!(
            "{:.2}× ({:.2}–{:.2})",
            ratios.median(),
            ratios.min(),
            ratios.max()
        ),
    }
}

/// A throughput cell: the median rate (slowest in brackets), or why there is none.
fn rate_cell(trials: &[&Tried<throughput::Run>], rates: &[f64]) -> String {
    if rates.is_empty() {
        return unmeasured(trials);
    }
    let rates = Samples::of(rates.iter().copied());
    let mut cell = format!("{} ({})", fmt_rate(rates.median()), fmt_rate(rates.min()));
    let failed = trials
        .iter()
        .filter(|t| matches!(t, Tried::Failed(_)))
        .count();
    if failed > 0 {
        let _ = write!(cell, " · {failed} of {} failed", trials.len());
    }
    cell
}

/// Why a cell has no figure: not served, the first failure, or no trial.
fn unmeasured<T>(trials: &[&Tried<T>]) -> String {
    if trials.iter().any(|t| matches!(t, Tried::NotServed(_))) {
        return NOT_SERVED.to_string();
    }
    match trials.iter().find_map(|t| match t {
        Tried::Failed(why) => Some(why),
        _ => None,
    }) {
        Some(why) => format!("failed: {}", short(why)),
        None => "no trial".to_string(),
    }
}

fn verdict(met: bool) -> String {
    if met { "met" } else { "**not met**" }.to_string()
}

/// One line about a throughput trial for the progress log.
pub fn summary_stream(tried: &Tried<throughput::Run>) -> String {
    match tried {
        Tried::Ran(r) => format!(
            "{} msgs/s over {:.2} s ({}), lost {}, duplicated {}",
            fmt_rate(r.outcome.rate()),
            r.outcome.elapsed.as_secs_f64(),
            r.placement,
            r.outcome.merged.lost,
            r.outcome.merged.duplicates
        ),
        Tried::NotServed(why) => format!("{NOT_SERVED} ({why})"),
        Tried::Failed(why) => format!("failed: {}", why.lines().next().unwrap_or_default()),
    }
}

/// One line about a round-trip trial for the progress log.
pub fn summary_rtt(tried: &Tried<rtt::Run>) -> String {
    match tried {
        Tried::Ran(r) => format!(
            "p50 {:.1} µs, p99 {:.1} µs ({})",
            r.outcome.rtts.p50_ns as f64 / 1000.0,
            r.outcome.rtts.p99_ns as f64 / 1000.0,
            r.placement
        ),
        Tried::NotServed(why) => format!("{NOT_SERVED} ({why})"),
        Tried::Failed(why) => format!("failed: {}", why.lines().next().unwrap_or_default()),
    }
}

/// The first line of a reason, cut to fit a cell.
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
    fn ratios_pair_rounds_and_skip_missing_ones() {
        let a: BTreeMap<usize, f64> = [(1, 10.0), (2, 30.0), (3, 8.0)].into();
        let b: BTreeMap<usize, f64> = [(1, 5.0), (3, 4.0)].into();
        let r = per_round(&a, &b);
        assert_eq!(r.values, vec![2.0, 2.0]);
        assert_eq!(ratio_cell(&r), "2.00× (2.00–2.00)");
        assert_eq!(ratio_cell(&per_round(&a, &BTreeMap::new())), "—");
    }

    #[test]
    fn counted_notes_of_a_trial_add_up() {
        let notes = [
            "jetstream publisher: sent again after TimedOut: 2×".to_string(),
            "jetstream publisher: sent again after TimedOut: 3×".to_string(),
            "nats client: disconnected".to_string(),
            "nats client: disconnected".to_string(),
        ];
        assert_eq!(
            fold_counts(&notes),
            [
                "jetstream publisher: sent again after TimedOut: 5× in all",
                "nats client: disconnected"
            ]
        );
    }

    #[test]
    fn cells_say_why_they_are_empty() {
        let not: Tried<throughput::Run> = Tried::NotServed("--storage disk is not served".into());
        let failed: Tried<throughput::Run> = Tried::Failed("boom\nmore".into());
        assert_eq!(rate_cell(&[&not, &not], &[]), NOT_SERVED);
        assert_eq!(rate_cell(&[&failed], &[]), "failed: boom");
        assert_eq!(
            rate_cell(&[&failed], &[1000.0]),
            "1.0k (1.0k) · 1 of 1 failed"
        );
        assert_eq!(verdict(false), "**not met**");
    }
}
