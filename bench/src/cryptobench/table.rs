//! The run's results as tables: throughput plain beside encrypted with the cost of encryption
//! (between medians and per trial pair) and the verdict at the target size, daemon CPU per
//! million messages, the transport microbenchmark, then notes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::micro::{Row, Via};
use super::node::Config;
use super::trial::Sample;
use super::RunArgs;
use crate::report::{size_label, Samples, Table};

/// The payload size the target is about.
pub const TARGET_SIZE: usize = 256;
/// The most throughput encryption may cost at [`TARGET_SIZE`].
pub const TARGET_COST: f64 = 0.15;

/// One trial number's plain and encrypted outcome at one size.
#[derive(Debug, Default)]
struct TrialPair {
    plain: Option<Result<Sample, String>>,
    encrypted: Option<Result<Sample, String>>,
}

impl TrialPair {
    fn get(&self, config: Config) -> Option<&Sample> {
        match config {
            Config::Plain => self.plain.as_ref()?.as_ref().ok(),
            Config::Encrypted => self.encrypted.as_ref()?.as_ref().ok(),
        }
    }

    /// 1 − encrypted/plain, when both succeeded.
    fn cost(&self) -> Option<f64> {
        let (p, e) = (self.get(Config::Plain)?, self.get(Config::Encrypted)?);
        Some(1.0 - e.rate / p.rate)
    }
}

/// Every trial's outcome, by size and trial number.
#[derive(Debug)]
pub struct Results {
    sizes: Vec<usize>,
    messages: BTreeMap<usize, u64>,
    trials: BTreeMap<(usize, usize), TrialPair>,
}

impl Results {
    /// No results yet, for these sizes.
    pub fn new(sizes: &[usize]) -> Self {
        Self {
            sizes: sizes.to_vec(),
            messages: BTreeMap::new(),
            trials: BTreeMap::new(),
        }
    }

    /// Sets the messages every measured trial of `size` sends.
    pub fn set_messages(&mut self, size: usize, messages: u64) {
        self.messages.insert(size, messages);
    }

    /// The messages every measured trial of `size` sends.
    pub fn messages(&self, size: usize) -> u64 {
        self.messages.get(&size).copied().unwrap_or(0)
    }

    /// Adds trial `trial`'s outcome for `config` at `size`, or why it failed.
    pub fn record(
        &mut self,
        size: usize,
        trial: usize,
        config: Config,
        outcome: Result<Sample, String>,
    ) {
        let pair = self.trials.entry((size, trial)).or_default();
        match config {
            Config::Plain => pair.plain = Some(outcome),
            Config::Encrypted => pair.encrypted = Some(outcome),
        }
    }

    fn pairs(&self, size: usize) -> impl Iterator<Item = &TrialPair> {
        self.trials
            .range((size, 0)..=(size, usize::MAX))
            .map(|(_, p)| p)
    }

    fn samples(&self, size: usize, config: Config, f: impl Fn(&Sample) -> f64) -> Samples {
        let mut s = Samples::new("", 0);
        for sample in self.pairs(size).filter_map(|p| p.get(config)) {
            s.push(f(sample));
        }
        s
    }

    fn costs(&self, size: usize) -> Samples {
        let mut s = Samples::new("", 0);
        for cost in self.pairs(size).filter_map(TrialPair::cost) {
            s.push(cost);
        }
        s
    }

    /// The run's header, the tables, the notes and the verdict; `micro` is the transport
    /// microbenchmark, if it ran.
    pub fn markdown(
        &self,
        args: &RunArgs,
        described: &[String],
        micro: Option<&[Row]>,
        took: Duration,
    ) -> String {
        let mut out = String::new();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(
            out,
            "## bench-crypto: cross-node channel throughput, encrypted vs plain\n\n\
             {cores} cores for both daemons and both roles · channel capacity {} · {} trials per \
             cell, plain and encrypted alternating · medians\n",
            args.capacity, args.trials
        );
        let _ = write!(out, "{}", self.throughput());
        let _ = write!(out, "{}", self.cpu());
        if let Some(rows) = micro {
            let _ = write!(out, "{}", micro_table(rows, args));
        }
        out.push_str("#### Notes\n\n");
        let _ = writeln!(
            out,
            "- {cores} cores: each trial runs two daemons (2 runtime threads each) and the two \
             role processes on them, so the encrypted run's extra CPU comes straight out of \
             throughput; on two real machines each daemon would have its own cores."
        );
        let mut unclean = Vec::new();
        let mut failed = Vec::new();
        for (&(size, t), pair) in &self.trials {
            for config in Config::ALL {
                let outcome = match config {
                    Config::Plain => &pair.plain,
                    Config::Encrypted => &pair.encrypted,
                };
                match outcome {
                    Some(Ok(s)) if !s.clean() => unclean.push(format!(
                        "trial {t}, {}, {config}: lost {}, duplicated {}, malformed {}",
                        size_label(size),
                        s.lost,
                        s.duplicates,
                        s.malformed
                    )),
                    Some(Err(e)) => {
                        failed.push(format!("trial {t}, {}, {config}: {e}", size_label(size)))
                    }
                    _ => {}
                }
            }
        }
        if unclean.is_empty() {
            out.push_str("- Every message of every trial arrived exactly once and intact.\n");
        } else {
            for line in unclean {
                let _ = writeln!(out, "- **{line}**");
            }
        }
        for line in failed {
            let _ = writeln!(out, "- **failed**: {line}");
        }
        for line in described {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out, "- The run took {:.0} s.", took.as_secs_f64());
        out
    }

    fn throughput(&self) -> Table {
        let mut table = Table::new("Throughput, plain and encrypted")
            .caption(
                "Messages per second and payload MB/s, medians; cost = 1 − encrypted ÷ plain, \
                 of the medians and the median of the per-trial pairs.",
            )
            .left("size")
            .right("messages/trial")
            .right("plain msgs/s")
            .right("encrypted msgs/s")
            .right("plain MB/s")
            .right("encrypted MB/s")
            .right("cost (of medians)")
            .right("cost (median of pairs)")
            .right("cost min–max")
            .left("target");
        let mut verdict = None;
        for &size in &self.sizes {
            let plain = self.samples(size, Config::Plain, |s| s.rate);
            let enc = self.samples(size, Config::Encrypted, |s| s.rate);
            let costs = self.costs(size);
            let of_medians = 1.0 - enc.median() / plain.median();
            let target = if size == TARGET_SIZE && !costs.values.is_empty() {
                let pass = costs.median() <= TARGET_COST;
                verdict = Some((costs.median(), of_medians, pass));
                format!(
                    "≤ {:.0} %: **{}**",
                    TARGET_COST * 100.0,
                    if pass { "PASS" } else { "FAIL" }
                )
            } else {
                "—".into()
            };
            let mb = |rate: f64| rate * size as f64 / 1e6;
            table.row([
                size_label(size),
                thousands(self.messages(size) as f64),
                thousands(plain.median()),
                thousands(enc.median()),
                format!("{:.1}", mb(plain.median())),
                format!("{:.1}", mb(enc.median())),
                pct(of_medians),
                pct(costs.median()),
                format!("{} – {}", pct(costs.min()), pct(costs.max())),
                target,
            ]);
        }
        table.note(match verdict {
            Some((paired, of_medians, pass)) => format!(
                "**{}: encryption costs {} of throughput at {} (median of the per-trial pairs; \
                 {} between the medians) — {} against the ≤ {:.0} % target.**",
                if pass { "PASS" } else { "FAIL" },
                pct(paired),
                size_label(TARGET_SIZE),
                pct(of_medians),
                if pass { "within" } else { "over" },
                TARGET_COST * 100.0
            ),
            None => format!(
                "No verdict: {} was not measured (or every pair failed).",
                size_label(TARGET_SIZE)
            ),
        });
        table
    }

    fn cpu(&self) -> Table {
        let mut table = Table::new("CPU per million messages")
            .caption(
                "CPU seconds (user + system, from `/proc`) per million messages delivered: both \
                 daemons over the whole trial, and the sender and receiver processes; medians.",
            )
            .left("size")
            .right("daemons plain")
            .right("daemons encrypted")
            .right("increase")
            .right("roles plain")
            .right("roles encrypted")
            .right("CPU-bound cost")
            .right("cores busy plain / encrypted")
            .right("trial s plain / encrypted");
        for &size in &self.sizes {
            let med = |c, f: fn(&Sample) -> f64| self.samples(size, c, f).median();
            let (dp, de) = (
                med(Config::Plain, Sample::cpu_per_million),
                med(Config::Encrypted, Sample::cpu_per_million),
            );
            let (rp, re) = (
                med(Config::Plain, Sample::roles_cpu_per_million),
                med(Config::Encrypted, Sample::roles_cpu_per_million),
            );
            let secs = |s: &Sample| s.elapsed.as_secs_f64();
            table.row([
                size_label(size),
                format!("{dp:.2}"),
                format!("{de:.2}"),
                signed_pct(de / dp - 1.0),
                format!("{rp:.2}"),
                format!("{re:.2}"),
                pct(1.0 - (dp + rp) / (de + re)),
                format!(
                    "{:.2} / {:.2}",
                    med(Config::Plain, Sample::cores_busy),
                    med(Config::Encrypted, Sample::cores_busy)
                ),
                format!(
                    "{:.2} / {:.2}",
                    med(Config::Plain, secs),
                    med(Config::Encrypted, secs)
                ),
            ]);
        }
        table
    }
}

fn micro_table(rows: &[Row], args: &RunArgs) -> Table {
    let mut table = Table::new("The transport alone")
        .caption(format!(
            "`SecureWrite` → `SecureRead` over loopback TCP ({:?} per trial) beside plain TCP, \
             and sealed then opened in memory; MB/s of payload, medians of {} trials.",
            args.micro_duration, args.trials
        ))
        .left("path")
        .right("write size")
        .right("plain MB/s")
        .right("Noise MB/s")
        .right("cost")
        .right("Noise µs per write");
    for row in rows {
        let path = match row.via {
            Via::Tcp => "loopback TCP",
            Via::Memory => "in memory, seal + open",
        };
        let secure = row.secure.median();
        let (plain, cost) = if row.plain.values.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            let plain = row.plain.median();
            (format!("{plain:.0}"), pct(1.0 - secure / plain))
        };
        table.row([
            path.to_string(),
            size_label(row.write),
            plain,
            format!("{secure:.0}"),
            cost,
            format!("{:.2}", row.write as f64 / secure),
        ]);
    }
    table
}

/// One line about a trial for the progress log.
pub fn summary(outcome: &Result<Sample, String>) -> String {
    match outcome {
        Ok(s) => {
            let mut line = format!(
                "{} msgs/s over {:.2} s, daemons {:.2} CPU s / M msgs",
                thousands(s.rate),
                s.elapsed.as_secs_f64(),
                s.cpu_per_million()
            );
            if !s.clean() {
                let _ = write!(
                    line,
                    " (lost {}, duplicated {}, malformed {})",
                    s.lost, s.duplicates, s.malformed
                );
            }
            line
        }
        Err(e) => format!("failed: {e}"),
    }
}

/// A percentage with one decimal; `—` for NaN.
fn pct(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{:.1} %", v * 100.0)
    }
}

/// A signed percentage (`+12.3 %`); `—` for NaN.
fn signed_pct(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{:+.1} %", v * 100.0)
    }
}

/// A whole number with thousands separators (`1,234,567`); `—` for NaN.
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rate: f64) -> Sample {
        Sample {
            rate,
            elapsed: Duration::from_secs(2),
            daemon_cpu: Duration::from_secs(1),
            roles_cpu: Duration::from_secs(1),
            delivered: 1_000_000,
            lost: 0,
            duplicates: 0,
            malformed: 0,
        }
    }

    #[test]
    fn costs_pair_trials_and_judge_the_target_size() {
        let mut r = Results::new(&[256]);
        for (t, (p, e)) in [(100.0, 90.0), (200.0, 150.0), (100.0, 80.0)]
            .into_iter()
            .enumerate()
        {
            r.record(256, t + 1, Config::Plain, Ok(sample(p)));
            r.record(256, t + 1, Config::Encrypted, Ok(sample(e)));
        }
        r.record(256, 4, Config::Plain, Err("boom".into()));
        r.record(256, 4, Config::Encrypted, Ok(sample(1.0)));
        let costs = r.costs(256);
        assert_eq!(costs.values.len(), 3, "the failed pair is left out");
        assert!((costs.median() - 0.2).abs() < 1e-9);
        let args = <RunArgs as clap::Args>::augment_args(clap::Command::new("t"))
            .try_get_matches_from(["t"])
            .map(|m| <RunArgs as clap::FromArgMatches>::from_arg_matches(&m).unwrap())
            .unwrap();
        let md = r.markdown(&args, &[], None, Duration::from_secs(1));
        assert!(md.contains("**FAIL**"), "{md}");
        assert!(md.contains("20.0 %"), "{md}");
        assert!(
            md.contains("**failed**: trial 4, 256 B, plain: boom"),
            "{md}"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(f64::NAN), "—");
    }
}
