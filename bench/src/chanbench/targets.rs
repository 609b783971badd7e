//! The targets a run is held to, each printed as met, NOT MET or not measured, with the
//! per-round ratios ([`RoundRatios`]) behind the verdict: issue 16's (circuit with defaults at
//! least half of circuit tuned; circuit at least 1.2× NATS core's C client with 16-byte
//! messages; nothing lost or duplicated anywhere) and the older ones against async-nats.

use std::fmt::Write as _;

use super::ratios::RoundRatios;
use super::results::Results;
use super::{Scenario, System};
use crate::report::size_label;

/// circuit with defaults ÷ circuit tuned, at every size and throughput scenario.
const DEFAULTS_VS_TUNED: f64 = 0.5;
/// circuit (tuned, and with defaults) ÷ NATS core with the C client, at [`SMALL`] bytes.
const VS_NATS_C: f64 = 1.2;
/// The small message of the NATS C target.
const SMALL: usize = 16;
/// The shapes of the NATS C target.
const SHAPES: [(u32, u32); 2] = [(1, 1), (4, 4)];

/// One place a target is checked: where, and the ratios measured there.
struct Check {
    at: String,
    ratios: RoundRatios,
}

/// Prints the `#### Targets` section.
pub fn write(results: &Results, out: &mut String) {
    let (c, d) = (System::Circuit, System::CircuitDefaults);
    let _ = writeln!(out, "#### Targets\n");
    let _ = writeln!(
        out,
        "Each ratio is the median of the per-round ratios (lowest–highest round).\n"
    );

    let everywhere = |a: System, b: System| -> Vec<Check> {
        let mut checks = Vec::new();
        for scenario in results.stream_scenarios() {
            for &size in results.sizes() {
                checks.push(Check {
                    at: format!("{scenario} {}", size_label(size)),
                    ratios: results.rate_ratios(a, b, scenario, size),
                });
            }
        }
        checks
    };
    let line = verdict(&everywhere(d, c), Bound::AtLeast(DEFAULTS_VS_TUNED), false);
    let _ = writeln!(
        out,
        "- {d} ≥ {DEFAULTS_VS_TUNED}× {c} at every size and shape: {line}"
    );

    let small = |a: System| -> Vec<Check> {
        SHAPES
            .iter()
            .map(|&(senders, receivers)| {
                let scenario = Scenario::Stream { senders, receivers };
                Check {
                    at: format!("{scenario}"),
                    ratios: results.rate_ratios(a, System::NatsC, scenario, SMALL),
                }
            })
            .collect()
    };
    for system in [c, d] {
        let line = verdict(&small(system), Bound::AtLeast(VS_NATS_C), true);
        let _ = writeln!(
            out,
            "- {system} ≥ {VS_NATS_C}× {} at {}, 1 → 1 and 4 → 4: {line}",
            System::NatsC,
            size_label(SMALL)
        );
    }

    let (lost, duplicated, failed) = results.losses();
    let line = match (lost + duplicated, failed) {
        (0, 0) => "met".to_string(),
        (0, failed) => format!("met where measured ({failed} trial(s) failed: see the notes)"),
        _ => format!("NOT MET: {lost} lost, {duplicated} duplicated (see the notes)"),
    };
    let _ = writeln!(out, "- no lost or duplicated message in any row: {line}");

    let line = verdict(&everywhere(c, System::Nats), Bound::AtLeast(1.0), false);
    let _ = writeln!(
        out,
        "- {c} ≥ {} throughput at every size and shape: {line}",
        System::Nats
    );
    let rtt: Vec<Check> = (results.sizes().iter())
        .map(|&size| Check {
            at: size_label(size),
            ratios: results.latency_ratios(c, System::Nats, size, false),
        })
        .collect();
    let line = verdict(&rtt, Bound::AtMost(1.0), false);
    let _ = writeln!(
        out,
        "- {c} p50 round trip ≤ {} at every size: {line}\n",
        System::Nats
    );
}

/// What a ratio must be.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// At least this (throughput).
    AtLeast(f64),
    /// At most this (latency).
    AtMost(f64),
}

impl Bound {
    fn passes(self, ratio: f64) -> bool {
        match self {
            Self::AtLeast(bound) => ratio >= bound,
            Self::AtMost(bound) => ratio <= bound,
        }
    }
}

/// `met`, `NOT MET` or `not measured`, then every check's ratio (`all`), or the worst one and
/// those that missed.
fn verdict(checks: &[Check], bound: Bound, all: bool) -> String {
    let measured: Vec<(&Check, f64)> = checks
        .iter()
        .filter_map(|c| c.ratios.median().map(|m| (c, m)))
        .collect();
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.ratios.median().is_none())
        .map(|c| c.at.as_str())
        .collect();
    let described = |c: &Check| format!("{}: {}", c.at, c.ratios);
    let missed: Vec<String> = measured
        .iter()
        .filter(|(_, m)| !bound.passes(*m))
        .map(|(c, _)| described(c))
        .collect();
    if measured.is_empty() {
        return "not measured".to_string();
    }
    let mut line = if !missed.is_empty() {
        "NOT MET".to_string()
    } else if !missing.is_empty() {
        "met where measured".to_string()
    } else {
        "met".to_string()
    };
    if all {
        let each: Vec<String> = measured.iter().map(|(c, _)| described(c)).collect();
        if !each.is_empty() {
            let _ = write!(line, " ({})", each.join("; "));
        }
    } else {
        let worst = match bound {
            Bound::AtLeast(_) => measured
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(c, _)| ("lowest", c)),
            Bound::AtMost(_) => measured
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(c, _)| ("highest", c)),
        };
        if let Some((which, c)) = worst {
            let _ = write!(line, " ({which} {})", described(c));
        }
        if missed.len() > 1 {
            let _ = write!(line, "; missed at {}", missed.join("; "));
        }
    }
    if !missing.is_empty() {
        let _ = write!(line, "; not measured at {}", missing.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(at: &str, values: &[f64]) -> Check {
        Check {
            at: at.into(),
            ratios: RoundRatios {
                values: values.to_vec(),
            },
        }
    }

    #[test]
    fn a_target_is_met_only_where_every_place_passes() {
        let at_least = Bound::AtLeast(1.2);
        let met = verdict(
            &[check("1 → 1", &[1.3]), check("4 → 4", &[1.25])],
            at_least,
            true,
        );
        assert_eq!(met, "met (1 → 1: 1.30×; 4 → 4: 1.25×)");
        let missed = verdict(
            &[check("1 → 1", &[1.3]), check("4 → 4", &[0.9])],
            at_least,
            true,
        );
        assert!(missed.starts_with("NOT MET"), "{missed}");
        let partial = verdict(
            &[check("1 → 1", &[1.3]), check("4 → 4", &[])],
            at_least,
            true,
        );
        assert_eq!(
            partial,
            "met where measured (1 → 1: 1.30×); not measured at 4 → 4"
        );
        assert!(verdict(&[check("x", &[])], at_least, true).starts_with("not measured"));
    }

    #[test]
    fn a_summary_names_the_worst_place() {
        let at_least = Bound::AtLeast(0.5);
        let line = verdict(
            &[
                check("a", &[0.9, 0.8]),
                check("b", &[0.4]),
                check("c", &[0.3]),
            ],
            at_least,
            false,
        );
        assert_eq!(
            line,
            "NOT MET (lowest c: 0.30×); missed at b: 0.40×; c: 0.30×"
        );
        let at_most = Bound::AtMost(1.0);
        let line = verdict(&[check("a", &[0.5]), check("b", &[0.7])], at_most, false);
        assert_eq!(line, "met (highest b: 0.70×)");
    }
}
