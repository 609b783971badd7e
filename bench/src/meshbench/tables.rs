//! What `bench-mesh` prints: a header with the date, the machine and the command, one table
//! per measurement, and the targets beside what was measured. What each table measures
//! is defined in BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::chans::{ChanResult, Placement, TARGET_CROSS_RATIO};
use super::failure::{KillResult, TARGET_DEAD_AT, TARGET_DEAD_P99_MS};
use super::idle::IdleResult;
use super::join::{JoinResult, TARGET_JOIN_P50_MS};
use super::machine;
use super::soak::SoakResult;
use super::RunArgs;
use crate::chanbench::protocol::quantile;
use crate::report::{fmt_rate, size_label, Samples, Table};

/// Everything measured, and the circumstances.
#[derive(Debug)]
pub struct Report {
    header: String,
    poll: Duration,
    settle: Duration,
    chan_capacity: u64,
    /// Join convergence per size.
    pub join: Vec<JoinResult>,
    /// Idle traffic per size.
    pub idle: Vec<IdleResult>,
    /// Channel throughput per size.
    pub chans: Vec<ChanResult>,
    /// Failure detection per size.
    pub kill: Vec<KillResult>,
    /// The soak, if one ran.
    pub soak: Option<SoakResult>,
    /// Wall time of the whole run.
    pub took: Duration,
    /// Printed under the failure-detection table: its chart's image line
    /// ([`super::charts`]).
    pub kill_charts: Vec<String>,
}

impl Report {
    /// Notes the date, the machine, the build and the command line now, before the run.
    pub fn new(args: &RunArgs, bin_dir: &Path) -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let header = format!(
            "`bench-mesh {}` — {}; {}; {}; circuitd {} from `{}`.",
            argv.join(" "),
            machine::utc_now(),
            machine::machine(),
            machine::commit(),
            env!("CARGO_PKG_VERSION"),
            bin_dir.display(),
        );
        Self {
            header,
            poll: args.poll,
            settle: args.settle,
            chan_capacity: args.chan_capacity,
            join: Vec::new(),
            idle: Vec::new(),
            chans: Vec::new(),
            kill: Vec::new(),
            soak: None,
            took: Duration::ZERO,
            kill_charts: Vec::new(),
        }
    }

    /// The whole report.
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("## Mesh: joins, failure detection, gossip, channels across nodes\n\n");
        let _ = writeln!(
            out,
            "{} The run took {:.1} min.\n",
            self.header,
            self.took.as_secs_f64() / 60.0
        );
        let kill = self.kill_table().map(|mut table| {
            for line in &self.kill_charts {
                table.note(line.as_str());
            }
            table
        });
        let tables = [
            self.join_table(),
            kill,
            self.idle_table(),
            self.chan_table(),
            self.soak_table(),
        ];
        for table in tables.into_iter().flatten() {
            let _ = write!(out, "{table}");
        }
        let _ = write!(out, "{}", self.targets());
        out
    }

    fn join_table(&self) -> Option<Table> {
        if self.join.is_empty() {
            return None;
        }
        let mut table = ms_table("Join convergence").caption(format!(
            "A fresh cluster per trial, every daemon's `nodes` polled every {} ms until all list \
             all N alive with metadata; p50 and p99 nearest-rank.",
            self.poll.as_millis()
        ));
        for r in &self.join {
            let trials = r.from_last.len();
            let target = verdict(
                pct(&r.from_last, 0.5).is_some_and(|p| p <= TARGET_JOIN_P50_MS),
                &format!("p50 ≤ {TARGET_JOIN_P50_MS} ms"),
            );
            let rows: [(&str, &[u64], &str); 3] = [
                ("last daemon's start → all converged", &r.from_last, &target),
                ("h1's start → all converged", &r.from_first, ""),
                ("h1's start → last daemon's start", &r.start_spread, ""),
            ];
            for (what, values, target) in rows {
                row_ms(&mut table, r.n, trials, what, values, target);
            }
        }
        failures(&mut table, self.join.iter().map(|r| (r.n, &r.failures)));
        kept(&mut table, self.join.iter().flat_map(|r| &r.kept));
        Some(table)
    }

    fn kill_table(&self) -> Option<Table> {
        if self.kill.is_empty() {
            return None;
        }
        let mut table = ms_table("Failure detection after `kill -9`").caption(
            "From just before `kill(2)` to the `ts_ms` the live daemons stamp on their events \
             about the victim (victims rotate over h2..hN), then its restart until every daemon \
             lists it again.",
        );
        for r in &self.kill {
            let target = if r.n == TARGET_DEAD_AT {
                verdict(
                    pct(&r.dead_on_all, 0.99).is_some_and(|p| p <= TARGET_DEAD_P99_MS)
                        && r.failures.is_empty(),
                    &format!("p99 ≤ {TARGET_DEAD_P99_MS} ms at {TARGET_DEAD_AT}"),
                )
            } else {
                String::new()
            };
            let t = r.dead_on_all.len();
            let rows: [(usize, &str, &[u64], &str); 4] = [
                (
                    r.first_suspect.len(),
                    "kill → first `suspect` (any daemon)",
                    &r.first_suspect,
                    "",
                ),
                (t, "kill → first `dead` (any daemon)", &r.first_dead, ""),
                (
                    t,
                    "kill → `dead` on every live daemon",
                    &r.dead_on_all,
                    &target,
                ),
                (
                    r.rejoin.len(),
                    "restart → every daemon lists it alive with metadata",
                    &r.rejoin,
                    "",
                ),
            ];
            for (trials, what, values, target) in rows {
                row_ms(&mut table, r.n, trials, what, values, target);
            }
        }
        for r in &self.kill {
            table.note(format!(
                "{} daemons: events about daemons that were not killed, over all trials: \
                 {} `suspect`, {} `dead`.",
                r.n, r.false_suspects, r.false_dead
            ));
        }
        failures(&mut table, self.kill.iter().map(|r| (r.n, &r.failures)));
        kept(&mut table, self.kill.iter().flat_map(|r| &r.kept));
        Some(table)
    }

    fn idle_table(&self) -> Option<Table> {
        if self.idle.is_empty() {
            return None;
        }
        let mut table = Table::new("Gossip traffic of an idle cluster, per node")
            .caption(format!(
                "A converged cluster left alone for {:.0} s, then counted over the window; mean \
                 over nodes, (min–max) in brackets.",
                self.settle.as_secs_f64()
            ))
            .right("daemons")
            .right("window")
            .right("sent B/s")
            .right("sent frames/s")
            .right("received B/s")
            .right("UDP datagrams/s sent")
            .right("TCP segments/s sent")
            .right("TCP payload B/s sent")
            .left("events in window");
        for r in &self.idle {
            table.row([
                r.n.to_string(),
                format!("{:.0} s", r.window.as_secs_f64()),
                spread(&r.tx_bytes, 0),
                spread(&r.tx_packets, 1),
                spread(&r.rx_bytes, 0),
                spread(&r.udp_out, 1),
                spread(&r.tcp_out, 1),
                spread(&r.tcp_bytes, 0),
                counts_cell(&r.events),
            ]);
        }
        Some(table)
    }

    fn chan_table(&self) -> Option<Table> {
        if self.chans.is_empty() {
            return None;
        }
        let sizes: Vec<usize> = {
            let mut s: Vec<usize> = self
                .chans
                .iter()
                .flat_map(|r| r.cells.keys().map(|(_, size)| *size))
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let trials = self
            .chans
            .iter()
            .flat_map(|r| r.cells.values().map(|c| c.rates.len()))
            .max()
            .unwrap_or(0);
        let mut table = Table::new("Channel throughput, same node and across nodes")
            .caption(format!(
                "One pipelining sender, one receiver prefetching {}, channel capacity {}; \
                 msgs/s median of {trials} trials (slowest in brackets); ÷ same node: target ≥ \
                 {:.0} %; daemon CPU-seconds per million messages.",
                crate::chanbench::circuit::PREFETCH,
                self.chan_capacity,
                TARGET_CROSS_RATIO * 100.0
            ))
            .right("daemons")
            .left("placement");
        for &size in &sizes {
            let l = size_label(size);
            table = table
                .right(format!("{l} msgs/s"))
                .right(format!("{l} ÷ same node"));
        }
        for &size in &sizes {
            table = table.right(format!("daemon CPU, {}", size_label(size)));
        }
        for r in &self.chans {
            for placement in Placement::ALL {
                let mut row = vec![r.n.to_string(), placement.label().to_string()];
                for &size in &sizes {
                    let cell = r.cells.get(&(placement, size));
                    let rate = cell.map(|c| median(&c.rates));
                    let same = r
                        .cells
                        .get(&(Placement::Same, size))
                        .map(|c| median(&c.rates));
                    let slowest =
                        cell.map(|c| c.rates.iter().copied().fold(f64::INFINITY, f64::min));
                    let shown = match (rate, slowest) {
                        (Some(r), Some(s)) if r.is_finite() => {
                            format!("{} ({})", fmt_rate(r), fmt_rate(s))
                        }
                        _ => "—".into(),
                    };
                    let ratio = match (rate, same) {
                        (_, _) if placement == Placement::Same => String::new(),
                        (Some(r), Some(s)) if s > 0.0 && r.is_finite() => {
                            let x = r / s;
                            format!(
                                "{:.0} %{}",
                                x * 100.0,
                                if x >= TARGET_CROSS_RATIO {
                                    ""
                                } else {
                                    " (below)"
                                }
                            )
                        }
                        _ => "—".into(),
                    };
                    row.extend([shown, ratio]);
                }
                for &size in &sizes {
                    let cpu = r
                        .cells
                        .get(&(placement, size))
                        .map(|c| median(&c.daemon_cpu));
                    row.push(
                        cpu.filter(|c| c.is_finite())
                            .map_or("—".into(), |c| format!("{c:.2} s")),
                    );
                }
                table.row(row);
            }
        }
        for r in &self.chans {
            let lost: u64 = r.cells.values().map(|c| c.lost).sum();
            let dup: u64 = r.cells.values().map(|c| c.duplicates).sum();
            table.note(format!(
                "{} daemons: {lost} messages lost, {dup} delivered twice, over every trial.",
                r.n
            ));
        }
        failures(&mut table, self.chans.iter().map(|r| (r.n, &r.failures)));
        Some(table)
    }

    fn soak_table(&self) -> Option<Table> {
        let s = self.soak.as_ref()?;
        let mut table = Table::new("Soak: an idle cluster under full CPU load")
            .caption(format!(
                "A converged cluster under `stress-ng --cpu {}` for the window; every membership \
                 event any daemon reported in it (no daemon was killed); CPU busy from \
                 `/proc/stat`.",
                s.workers
            ))
            .right("daemons")
            .right("minutes")
            .right("CPU busy")
            .right("`suspect`")
            .right("`dead`")
            .right("`recover`")
            .right("other events")
            .left("all converged after");
        table.row([
            s.n.to_string(),
            format!("{:.1}", s.window.as_secs_f64() / 60.0),
            format!("{:.0} %", s.cpu_busy * 100.0),
            s.counts.suspect.to_string(),
            s.counts.dead.to_string(),
            s.counts.recover.to_string(),
            s.counts.other.to_string(),
            if s.converged_after { "yes" } else { "no" }.to_string(),
        ]);
        if !s.by_node.is_empty() {
            let parts: Vec<String> = s
                .by_node
                .iter()
                .map(|(node, c)| format!("{node}: {} suspect, {} dead", c.suspect, c.dead))
                .collect();
            table.note(format!("Suspected or declared dead: {}.", parts.join("; ")));
        }
        Some(table)
    }

    fn targets(&self) -> Table {
        let mut table = Table::new("Targets")
            .left("target")
            .left("measured")
            .left("");
        if let Some(r) = self.kill.iter().find(|r| r.n == TARGET_DEAD_AT) {
            let p99 = pct(&r.dead_on_all, 0.99);
            let met = p99.is_some_and(|p| p <= TARGET_DEAD_P99_MS) && r.failures.is_empty();
            table.row([
                format!(
                    "dead on all ≤ {} s p99 at {TARGET_DEAD_AT} daemons",
                    TARGET_DEAD_P99_MS / 1000
                ),
                format!(
                    "{} ms p99 over {} trials{}",
                    p99.map_or("—".into(), |p| p.to_string()),
                    r.dead_on_all.len(),
                    if r.failures.is_empty() {
                        String::new()
                    } else {
                        format!(", {} trials without every `dead`", r.failures.len())
                    }
                ),
                met_word(met).to_string(),
            ]);
        }
        for r in &self.join {
            let p50 = pct(&r.from_last, 0.5);
            table.row([
                format!(
                    "join convergence ≤ 1 s p50 ({} daemons, from the last daemon's start)",
                    r.n
                ),
                format!(
                    "{} ms p50 over {} trials",
                    p50.map_or("—".into(), |p| p.to_string()),
                    r.from_last.len()
                ),
                met_word(p50.is_some_and(|p| p <= TARGET_JOIN_P50_MS)).to_string(),
            ]);
        }
        for r in &self.chans {
            let mut worst: Option<(f64, String)> = None;
            for ((placement, size), cell) in &r.cells {
                if *placement == Placement::Same {
                    continue;
                }
                let Some(same) = r.cells.get(&(Placement::Same, *size)) else {
                    continue;
                };
                let x = median(&cell.rates) / median(&same.rates);
                if x.is_finite() && worst.as_ref().is_none_or(|(w, _)| x < *w) {
                    worst = Some((
                        x,
                        format!("{}, {}", placement_short(*placement), size_label(*size)),
                    ));
                }
            }
            if let Some((x, which)) = worst {
                table.row([
                    format!(
                        "cross-node throughput ≥ {:.0} % of same-node ({} daemons)",
                        TARGET_CROSS_RATIO * 100.0,
                        r.n
                    ),
                    format!("lowest {:.0} % ({which})", x * 100.0),
                    met_word(x >= TARGET_CROSS_RATIO).to_string(),
                ]);
            }
        }
        if let Some(s) = &self.soak {
            let alarms = s.counts.suspect + s.counts.dead;
            let full = s.window >= Duration::from_secs(600);
            table.row([
                "zero false suspicions in a 10-minute soak under full CPU load".to_string(),
                format!(
                    "{} `suspect`, {} `dead` in {:.1} min, {} daemons, CPU {:.0} % busy",
                    s.counts.suspect,
                    s.counts.dead,
                    s.window.as_secs_f64() / 60.0,
                    s.n,
                    s.cpu_busy * 100.0
                ),
                if full {
                    met_word(alarms == 0).to_string()
                } else {
                    "too short to tell".to_string()
                },
            ]);
        }
        table
    }
}

fn placement_short(p: Placement) -> &'static str {
    match p {
        Placement::Same => "same node",
        Placement::Two => "2 hosts",
        Placement::Three => "3 hosts",
    }
}

fn met_word(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

fn verdict(met: bool, what: &str) -> String {
    format!("{what}: {}", met_word(met))
}

/// A table of milliseconds per cluster size: p50, p99, min, max and a target.
fn ms_table(title: &str) -> Table {
    Table::new(title)
        .right("daemons")
        .right("trials")
        .left("measured")
        .right("p50 (ms)")
        .right("p99 (ms)")
        .right("min")
        .right("max")
        .left("target")
}

/// One row of [`ms_table`].
fn row_ms(table: &mut Table, n: usize, trials: usize, what: &str, values: &[u64], target: &str) {
    let show = |v: Option<u64>| v.map_or("—".into(), |v| v.to_string());
    table.row([
        n.to_string(),
        trials.to_string(),
        what.to_string(),
        show(pct(values, 0.5)),
        show(pct(values, 0.99)),
        show(values.iter().copied().min()),
        show(values.iter().copied().max()),
        target.to_string(),
    ]);
}

fn failures<'a>(table: &mut Table, all: impl Iterator<Item = (usize, &'a Vec<String>)>) {
    for (n, list) in all {
        for why in list {
            table.note(format!("{n} daemons, failed {why}"));
        }
    }
}

fn kept<'a>(table: &mut Table, dirs: impl Iterator<Item = &'a std::path::PathBuf>) {
    let dirs: Vec<String> = dirs.map(|d| format!("`{}`", d.display())).collect();
    if !dirs.is_empty() {
        table.note(format!(
            "Daemon logs of the trials over the target: {}.",
            dirs.join(", ")
        ));
    }
}

/// The nearest-rank `q` quantile; `None` when there are no values.
pub fn pct(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(quantile(&sorted, q))
}

/// The median, NaN when empty.
fn median(values: &[f64]) -> f64 {
    Samples::of(values.iter().copied()).median()
}

/// `mean (min–max)`.
fn spread(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

fn counts_cell(c: &super::events::Counts) -> String {
    if c.suspect + c.dead + c.recover + c.other == 0 {
        return "none".into();
    }
    format!(
        "{} suspect, {} dead, {} recover, {} other",
        c.suspect, c.dead, c.recover, c.other
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cells() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(pct(&v, 0.5), Some(10));
        assert_eq!(pct(&v, 0.99), Some(20));
        assert_eq!(pct(&[], 0.5), None);
        assert_eq!(spread(&[1.0, 3.0], 1), "2.0 (1.0–3.0)");
    }
}
