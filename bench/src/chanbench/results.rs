//! Every trial's outcome by system, scenario and size, in round order, and what the tables and
//! the targets read from it: medians, per-round ratios ([`RoundRatios`]), losses.

use std::collections::HashMap;

use super::driver::{Outcome, RttOutcome, StreamOutcome};
use super::ratios::RoundRatios;
use super::{Scenario, System};
use crate::report::Samples;

pub(super) type Key = (System, Scenario, usize);

/// Every trial's outcome, by system, scenario and size; each list is in round order, one entry
/// per round (a failure too), so entry `i` of two systems ran in the same round.
#[derive(Debug)]
pub struct Results {
    pub(super) systems: Vec<System>,
    pub(super) scenarios: Vec<Scenario>,
    pub(super) sizes: Vec<usize>,
    pub(super) trials: HashMap<Key, Vec<Result<Outcome, String>>>,
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

    pub(super) fn streams(&self, key: Key) -> Vec<&StreamOutcome> {
        self.ok(key)
            .filter_map(|o| match o {
                Outcome::Stream(s) => Some(s),
                Outcome::Rtt(_) => None,
            })
            .collect()
    }

    pub(super) fn rtts(&self, key: Key) -> Vec<&RttOutcome> {
        self.ok(key)
            .filter_map(|o| match o {
                Outcome::Rtt(r) => Some(r),
                Outcome::Stream(_) => None,
            })
            .collect()
    }

    pub(super) fn ok(&self, key: Key) -> impl Iterator<Item = &Outcome> {
        self.trials.get(&key).into_iter().flatten().flatten()
    }

    pub(super) fn failures(&self, key: Key) -> Vec<&str> {
        let trials = self.trials.get(&key).into_iter().flatten();
        trials
            .filter_map(|t| t.as_ref().err())
            .map(String::as_str)
            .collect()
    }

    /// The throughput scenarios of the run.
    pub(super) fn stream_scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        let streams = self.scenarios.iter().copied();
        streams.filter(|s| matches!(s, Scenario::Stream { .. }))
    }

    /// The run's payload sizes.
    pub(super) fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub(super) fn has_rtt(&self) -> bool {
        self.scenarios.contains(&Scenario::RoundTrip)
    }

    pub(super) fn takes_part(&self, system: System, scenario: Scenario) -> bool {
        self.systems.contains(&system) && system.runs(scenario)
    }

    /// A metric of each round's trial, `None` where it failed or `metric` has no value.
    pub(super) fn per_round(
        &self,
        key: Key,
        metric: impl Fn(&Outcome) -> Option<f64>,
    ) -> Vec<Option<f64>> {
        let trials = self.trials.get(&key).into_iter().flatten();
        trials.map(|t| t.as_ref().ok().and_then(&metric)).collect()
    }

    /// Per-round ratios of delivery rates, `a` ÷ `b`, in `scenario` at `size`.
    pub(super) fn rate_ratios(
        &self,
        a: System,
        b: System,
        scenario: Scenario,
        size: usize,
    ) -> RoundRatios {
        let rate = |o: &Outcome| match o {
            Outcome::Stream(s) => Some(s.rate()),
            Outcome::Rtt(_) => None,
        };
        RoundRatios::of(
            &self.per_round((a, scenario, size), rate),
            &self.per_round((b, scenario, size), rate),
        )
    }

    /// Per-round ratios of p50 (or p99) round trips, `a` ÷ `b`, at `size`.
    pub(super) fn latency_ratios(
        &self,
        a: System,
        b: System,
        size: usize,
        p99: bool,
    ) -> RoundRatios {
        let latency = |o: &Outcome| match o {
            Outcome::Rtt(r) => Some(if p99 { r.rtts.p99_ns } else { r.rtts.p50_ns } as f64),
            Outcome::Stream(_) => None,
        };
        let key = |s| (s, Scenario::RoundTrip, size);
        RoundRatios::of(
            &self.per_round(key(a), latency),
            &self.per_round(key(b), latency),
        )
    }

    /// Messages lost and duplicated over every throughput trial that completed, and the trials
    /// that failed.
    pub(super) fn losses(&self) -> (u64, u64, usize) {
        let (mut lost, mut duplicated, mut failed) = (0, 0, 0);
        for trials in self.trials.values() {
            for trial in trials {
                match trial {
                    Ok(Outcome::Stream(s)) => {
                        lost += s.merged.lost;
                        duplicated += s.merged.duplicates;
                    }
                    Ok(Outcome::Rtt(_)) => {}
                    Err(_) => failed += 1,
                }
            }
        }
        (lost, duplicated, failed)
    }

    /// The median p50 or p99 in µs.
    pub(super) fn latency(&self, key: Key, p99: bool) -> Option<f64> {
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
    pub(super) fn cpu_per_million(&self, key: Key, clients: bool) -> Option<f64> {
        let values = self.per_round(key, |o| cpu_per_million(o, clients));
        let values = Samples::of(values.into_iter().flatten());
        (!values.values.is_empty()).then(|| values.median())
    }
}

/// Server (or, with `clients`, all roles') CPU-seconds per million messages of one trial — per
/// million round trips in a round-trip trial; `None` without a server.
pub(super) fn cpu_per_million(outcome: &Outcome, clients: bool) -> Option<f64> {
    let (cpu, count) = match outcome {
        Outcome::Rtt(r) => (
            if clients {
                Some(r.client_cpu)
            } else {
                r.server_cpu
            },
            r.total,
        ),
        Outcome::Stream(s) => (
            if clients {
                Some(s.client_cpu)
            } else {
                s.server_cpu
            },
            s.merged.distinct,
        ),
    };
    Some(cpu?.as_secs_f64() / (count as f64 / 1e6))
}
