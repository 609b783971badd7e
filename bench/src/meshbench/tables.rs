//! What `bench-mesh` prints: a header with the date, the machine and the command, one
//! Markdown table per measurement with its definition above it, and the targets beside
//! what was measured.

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
use crate::chanbench::table::size_label;

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
}

impl Report {
    /// Notes the date, the machine, the build and the command line now, before the run.
    pub fn new(args: &RunArgs, bin_dir: &Path) -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let header = format!(
            "`bench-mesh {}` — {}; {}; {}; circuitd {} from `{}`. One circuitd per network \
             namespace (`scripts/netns-cluster.sh`: one bridge, hosts h1..hN at 10.X.Y.i:7711, \
             no route out), every client inside its host's namespace.",
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
        self.join_table(&mut out);
        self.kill_table(&mut out);
        self.idle_table(&mut out);
        self.chan_table(&mut out);
        self.soak_table(&mut out);
        self.targets(&mut out);
        out
    }

    fn join_table(&self, out: &mut String) {
        if self.join.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "#### Join convergence\n\n\
             Each trial is a fresh cluster made by `netns-cluster.sh up N`: h1 starts; once it \
             answers, h2..hN start together, each with `--join h1`. **Converged** = every \
             daemon's `nodes` (what `circuit nodes --json` prints; asked over each daemon's \
             socket every {} ms, all daemons at once) lists all N nodes `alive` with metadata \
             (`version` non-empty, `started_at_ms` > 0), confirmed by one more round on every \
             daemon. The time is when the reply that showed the last daemon's view complete \
             arrived: an upper bound, late by at most one poll plus one call. **Zero** is the \
             last daemon's own `started_at_ms` (taken once its data dir is open, before its \
             gossip starts); the second row counts from h1's start instead, the third is how \
             far apart the script started h1 and the last daemon. p50 and p99 are nearest-rank \
             (with 20 trials, p99 is the slowest).\n\n\
             | daemons | trials | measured | p50 (ms) | p99 (ms) | min | max | target |\n\
             |---:|---:|---|---:|---:|---:|---:|---|",
            self.poll.as_millis()
        );
        for r in &self.join {
            let trials = r.from_last.len();
            let target = verdict(
                pct(&r.from_last, 0.5).is_some_and(|p| p <= TARGET_JOIN_P50_MS),
                &format!("p50 ≤ {TARGET_JOIN_P50_MS} ms"),
            );
            row_ms(
                out,
                r.n,
                trials,
                "last daemon's start → all converged",
                &r.from_last,
                &target,
            );
            row_ms(
                out,
                r.n,
                trials,
                "h1's start → all converged",
                &r.from_first,
                "",
            );
            row_ms(
                out,
                r.n,
                trials,
                "h1's start → last daemon's start",
                &r.start_spread,
                "",
            );
        }
        failures(out, self.join.iter().map(|r| (r.n, &r.failures)));
        kept(out, self.join.iter().flat_map(|r| &r.kept));
        out.push('\n');
    }

    fn kill_table(&self, out: &mut String) {
        if self.kill.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "#### Failure detection after `kill -9`\n\n\
             A converged cluster with `circuit --json events` running in every namespace. Each \
             trial SIGKILLs one daemon by pid (victims rotate over h2..hN); **zero** is the \
             harness's wall clock just before `kill(2)`, the event times are the `ts_ms` the \
             live daemons stamp on their `suspect` and `dead` lines for the killed incarnation \
             (all on this machine: one clock, ms resolution). Then the victim is started again \
             (`netns-cluster.sh start`), and the trial ends when every daemon lists it `alive` \
             with its new metadata (last row, from the restarted daemon's `started_at_ms`).\n\n\
             | daemons | trials | measured | p50 (ms) | p99 (ms) | min | max | target |\n\
             |---:|---:|---|---:|---:|---:|---:|---|"
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
            row_ms(
                out,
                r.n,
                r.first_suspect.len(),
                "kill → first `suspect` (any daemon)",
                &r.first_suspect,
                "",
            );
            row_ms(
                out,
                r.n,
                t,
                "kill → first `dead` (any daemon)",
                &r.first_dead,
                "",
            );
            row_ms(
                out,
                r.n,
                t,
                "kill → `dead` on every live daemon",
                &r.dead_on_all,
                &target,
            );
            row_ms(
                out,
                r.n,
                r.rejoin.len(),
                "restart → every daemon lists it alive with metadata",
                &r.rejoin,
                "",
            );
        }
        out.push('\n');
        for r in &self.kill {
            let _ = writeln!(
                out,
                "{} daemons: events about daemons that were not killed, over all trials: \
                 {} `suspect`, {} `dead`.",
                r.n, r.false_suspects, r.false_dead
            );
        }
        failures(out, self.kill.iter().map(|r| (r.n, &r.failures)));
        kept(out, self.kill.iter().flat_map(|r| &r.kept));
        out.push('\n');
    }

    fn idle_table(&self, out: &mut String) {
        if self.idle.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "#### Gossip traffic of an idle cluster, per node\n\n\
             A freshly converged cluster, left alone for {:.0} s, then counted over the \
             window: bytes and frames on each namespace's `eth0` (`ip -s -j link show`: \
             Ethernet frames, so SWIM's UDP, the TCP push-pull every 2 s with one random node, \
             and ARP), the namespace's UDP datagrams and TCP segments sent \
             (`/proc/net/snmp`), and the TCP payload its connections sent (`ss -ti` \
             `bytes_sent`, summed over the peer links, which stay open). Mean over nodes, \
             (min–max) in brackets.\n\n\
             | daemons | window | sent B/s | sent frames/s | received B/s | UDP datagrams/s sent | TCP segments/s sent | TCP payload B/s sent | events in window |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---|",
            self.settle.as_secs_f64()
        );
        for r in &self.idle {
            let _ = writeln!(
                out,
                "| {} | {:.0} s | {} | {} | {} | {} | {} | {} | {} |",
                r.n,
                r.window.as_secs_f64(),
                spread(&r.tx_bytes, 0),
                spread(&r.tx_packets, 1),
                spread(&r.rx_bytes, 0),
                spread(&r.udp_out, 1),
                spread(&r.tcp_out, 1),
                spread(&r.tcp_bytes, 0),
                counts_cell(&r.events)
            );
        }
        out.push('\n');
    }

    fn chan_table(&self, out: &mut String) {
        if self.chans.is_empty() {
            return;
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
        let _ = write!(
            out,
            "#### Channel throughput, same node and across nodes\n\n\
             The channel benchmark's roles (one SDK sender pipelining `submit`, one receiver \
             prefetching 1024; channel capacity {}), each its own process inside its host's \
             namespace, on its host's daemon: a value sent on h1 to a channel owned by h2 goes \
             through h1's daemon, the peer link to h2, and for a receiver on h3 the link from h2 \
             to h3. Messages per second from the sender's first message to the receiver's last; \
             median of {trials} trials (slowest in brackets); every message checked for loss and \
             duplication. Placements take turns within each trial. ÷ same node is the median \
             over the same-node median (target ≥ {:.0} %). Daemon CPU: CPU-seconds of the \
             daemons involved per million messages, whole trial.\n\n\
             | daemons | placement |",
            self.chan_capacity,
            TARGET_CROSS_RATIO * 100.0
        );
        for &size in &sizes {
            let l = size_label(size);
            let _ = write!(out, " {l} msgs/s | {l} ÷ same node |");
        }
        for &size in &sizes {
            let _ = write!(out, " daemon CPU, {} |", size_label(size));
        }
        out.push_str("\n|---:|---|");
        for _ in 0..sizes.len() * 3 {
            out.push_str("---:|");
        }
        out.push('\n');
        for r in &self.chans {
            for placement in Placement::ALL {
                let _ = write!(out, "| {} | {} |", r.n, placement.label());
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
                    let _ = write!(out, " {shown} | {ratio} |");
                }
                for &size in &sizes {
                    let cpu = r
                        .cells
                        .get(&(placement, size))
                        .map(|c| median(&c.daemon_cpu));
                    let _ = write!(
                        out,
                        " {} |",
                        cpu.filter(|c| c.is_finite())
                            .map_or("—".into(), |c| format!("{c:.2} s"))
                    );
                }
                out.push('\n');
            }
        }
        out.push('\n');
        for r in &self.chans {
            let lost: u64 = r.cells.values().map(|c| c.lost).sum();
            let dup: u64 = r.cells.values().map(|c| c.duplicates).sum();
            let _ = writeln!(
                out,
                "{} daemons: {lost} messages lost, {dup} delivered twice, over every trial.",
                r.n
            );
        }
        failures(out, self.chans.iter().map(|r| (r.n, &r.failures)));
        out.push('\n');
    }

    fn soak_table(&self, out: &mut String) {
        let Some(s) = &self.soak else { return };
        let _ = writeln!(
            out,
            "#### Soak: an idle cluster under full CPU load\n\n\
             A converged cluster with `circuit --json events` in every namespace, then \
             `stress-ng --cpu {}` for the window; every membership event any daemon reported \
             in the window is counted (no daemon was killed, so any `suspect` or `dead` is a \
             false alarm). CPU busy is the machine's, from `/proc/stat`.\n\n\
             | daemons | minutes | CPU busy | `suspect` | `dead` | `recover` | other events | all converged after |\n\
             |---:|---:|---:|---:|---:|---:|---:|---|",
            s.workers
        );
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.0} % | {} | {} | {} | {} | {} |",
            s.n,
            s.window.as_secs_f64() / 60.0,
            s.cpu_busy * 100.0,
            s.counts.suspect,
            s.counts.dead,
            s.counts.recover,
            s.counts.other,
            if s.converged_after { "yes" } else { "no" }
        );
        if !s.by_node.is_empty() {
            let parts: Vec<String> = s
                .by_node
                .iter()
                .map(|(node, c)| format!("{node}: {} suspect, {} dead", c.suspect, c.dead))
                .collect();
            let _ = writeln!(out, "\nSuspected or declared dead: {}.", parts.join("; "));
        }
        out.push('\n');
    }

    fn targets(&self, out: &mut String) {
        out.push_str("#### Targets\n\n| target | measured | |\n|---|---|---|\n");
        if let Some(r) = self.kill.iter().find(|r| r.n == TARGET_DEAD_AT) {
            let p99 = pct(&r.dead_on_all, 0.99);
            let met = p99.is_some_and(|p| p <= TARGET_DEAD_P99_MS) && r.failures.is_empty();
            let _ = writeln!(
                out,
                "| dead on all ≤ {} s p99 at {TARGET_DEAD_AT} daemons | {} ms p99 over {} trials{} | {} |",
                TARGET_DEAD_P99_MS / 1000,
                p99.map_or("—".into(), |p| p.to_string()),
                r.dead_on_all.len(),
                if r.failures.is_empty() { String::new() } else { format!(", {} trials without every `dead`", r.failures.len()) },
                met_word(met)
            );
        }
        for r in &self.join {
            let p50 = pct(&r.from_last, 0.5);
            let _ = writeln!(
                out,
                "| join convergence ≤ 1 s p50 ({} daemons, from the last daemon's start) | {} ms p50 over {} trials | {} |",
                r.n,
                p50.map_or("—".into(), |p| p.to_string()),
                r.from_last.len(),
                met_word(p50.is_some_and(|p| p <= TARGET_JOIN_P50_MS))
            );
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
                let _ = writeln!(
                    out,
                    "| cross-node throughput ≥ {:.0} % of same-node ({} daemons) | lowest {:.0} % ({which}) | {} |",
                    TARGET_CROSS_RATIO * 100.0,
                    r.n,
                    x * 100.0,
                    met_word(x >= TARGET_CROSS_RATIO)
                );
            }
        }
        if let Some(s) = &self.soak {
            let alarms = s.counts.suspect + s.counts.dead;
            let full = s.window >= Duration::from_secs(600);
            let _ = writeln!(
                out,
                "| zero false suspicions in a 10-minute soak under full CPU load | {} `suspect`, {} `dead` in {:.1} min, {} daemons, CPU {:.0} % busy | {} |",
                s.counts.suspect,
                s.counts.dead,
                s.window.as_secs_f64() / 60.0,
                s.n,
                s.cpu_busy * 100.0,
                if !full { "too short to tell".to_string() } else { met_word(alarms == 0).to_string() }
            );
        }
        out.push('\n');
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

/// One row of milliseconds: p50, p99, min, max.
fn row_ms(out: &mut String, n: usize, trials: usize, what: &str, values: &[u64], target: &str) {
    let show = |v: Option<u64>| v.map_or("—".into(), |v| v.to_string());
    let _ = writeln!(
        out,
        "| {n} | {trials} | {what} | {} | {} | {} | {} | {target} |",
        show(pct(values, 0.5)),
        show(pct(values, 0.99)),
        show(values.iter().copied().min()),
        show(values.iter().copied().max()),
    );
}

fn failures<'a>(out: &mut String, all: impl Iterator<Item = (usize, &'a Vec<String>)>) {
    for (n, list) in all {
        for why in list {
            let _ = writeln!(out, "\n{n} daemons, failed {why}");
        }
    }
}

fn kept<'a>(out: &mut String, dirs: impl Iterator<Item = &'a std::path::PathBuf>) {
    let dirs: Vec<String> = dirs.map(|d| format!("`{}`", d.display())).collect();
    if !dirs.is_empty() {
        let _ = writeln!(
            out,
            "\nDaemon logs of the trials over the target: {}.",
            dirs.join(", ")
        );
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
    let mut s = crate::Samples::new("", 0);
    values.iter().for_each(|v| s.push(*v));
    s.median()
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

/// `1.23M`, `812k`, `5.4k`, `950`.
fn fmt_rate(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.0}k", r / 1e3),
        r if r >= 1e3 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
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
        assert_eq!(fmt_rate(812_345.0), "812k");
    }
}
