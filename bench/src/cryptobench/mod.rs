//! `bench-crypto`: what the cluster key costs a cross-node channel. Two pairs of daemons on
//! loopback run side by side — one plain (no key, development mode), one encrypted (both with
//! the same key: Noise on the peer link) — and trials alternate between them at each payload
//! size. A microbenchmark of the Noise transport alone follows.
//!
//! # Layout
//! - [`node`]: a `circuitd` child with a mesh port ([`node::Node`]) and a joined [`node::Pair`].
//! - [`trial`]: one trial — channel on a, receiver on a, sender on b.
//! - [`micro`]: `SecureWrite` → `SecureRead` over loopback TCP and in memory, beside plain TCP.
//! - [`table`]: medians, per-trial cost ratios, the target, and the Markdown.

pub mod micro;
pub mod node;
pub mod table;
pub mod trial;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;

use crate::chanbench::protocol::STAMP_LEN;
use node::{Config, Pair};
use table::Results;
use trial::Setup;

/// Largest payload, as in `bench-channels`.
const MAX_SIZE: usize = 64 * 1024;
/// How long a pair may take to start and join.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Calibrated trials send this much more than the warm-up rate needs for `--duration`, as the
/// warm-up rate includes the stream's ramp-up.
const CALIBRATION_MARGIN: f64 = 1.3;

/// The benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Measured trials per configuration and size; the tables show medians. Plain and
    /// encrypted alternate (plain first in odd trials, encrypted first in even ones), so each
    /// trial gives one plain/encrypted pair run back to back.
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Payload sizes in bytes, 8 (the stamp) to 65536.
    #[arg(long, value_delimiter = ',', default_value = "16,256,4096")]
    pub sizes: Vec<usize>,
    /// How long each measured trial should stream: its message count is the plain pair's
    /// warm-up rate at that size times this (plus 30 %). The encrypted trial sends the same
    /// count, so it runs longer if it is slower.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Messages per measured trial at every size, instead of calibrating from --duration.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Messages in the warm-up trial each pair runs at each size before measuring; the plain
    /// pair's warm-up rate calibrates the count (see --duration).
    #[arg(long, default_value_t = 100_000)]
    pub warmup: u64,
    /// Capacity of each trial's channel.
    #[arg(long, default_value_t = 4096)]
    pub capacity: u64,
    /// How long each TCP microbenchmark trial writes (plain TCP, then Noise records, at
    /// 64 KiB and 256 B writes; `--trials` of each).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub micro_duration: Duration,
    /// Skip the transport microbenchmark.
    #[arg(long)]
    pub skip_micro: bool,
    /// Longest a trial may take before it fails.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Once the sender is done, how long the receiver may make no progress before what is
    /// missing counts as lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub stall: Duration,
    /// The daemon binary [default: circuitd next to this binary].
    #[arg(long)]
    pub circuitd: Option<PathBuf>,
}

impl RunArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.trials == 0 || self.sizes.is_empty() {
            bail!("--trials and --sizes need at least one value");
        }
        if let Some(&bad) = self
            .sizes
            .iter()
            .find(|&&s| !(STAMP_LEN..=MAX_SIZE).contains(&s))
        {
            bail!("--sizes: {bad} is outside {STAMP_LEN}..={MAX_SIZE} bytes");
        }
        let most = u64::from(u32::MAX);
        for (flag, n) in [
            ("--messages", self.messages),
            ("--warmup", Some(self.warmup)),
        ] {
            if n.is_some_and(|n| n == 0 || n > most) {
                bail!("{flag} must be 1 to {most}");
            }
        }
        if self.duration.is_zero() || self.micro_duration.is_zero() {
            bail!("--duration and --micro-duration must be positive");
        }
        Ok(())
    }

    /// The `circuitd` binary: `--circuitd`, else the one next to this binary.
    fn circuitd(&self) -> anyhow::Result<PathBuf> {
        match &self.circuitd {
            Some(path) => Ok(path.clone()),
            None => Ok(circuit_testkit::bin_dir()?.join("circuitd")),
        }
    }
}

/// Runs every trial and prints the tables on stdout; progress goes to stderr.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(bench(args))
}

async fn bench(args: &RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let load_before = load_average();
    let binary = args.circuitd()?;
    let setup = Setup {
        exe: std::env::current_exe().context("cannot find this binary's path")?,
        capacity: args.capacity,
        deadline: args.deadline,
        stall: args.stall,
    };
    eprintln!("starting the plain and the encrypted pair");
    let mut plain = Pair::start(&binary, Config::Plain, READY_WITHIN).await?;
    let mut encrypted = Pair::start(&binary, Config::Encrypted, READY_WITHIN).await?;
    let mut described = vec![plain.describe(), encrypted.describe()];

    let mut results = Results::new(&args.sizes);
    for &size in &args.sizes {
        let mut plain_rate = 0.0;
        for pair in [&mut plain, &mut encrypted] {
            let name = format!("warmup-{}-{size}", pair.config);
            let sample = trial::run(pair, &setup, &name, size, args.warmup)
                .await
                .with_context(|| format!("{} warm-up at {size} B", pair.config))?;
            eprintln!(
                "warm-up {size} B {}: {:.0} msgs/s",
                pair.config, sample.rate
            );
            if pair.config == Config::Plain {
                plain_rate = sample.rate;
            }
        }
        let messages = args
            .messages
            .unwrap_or_else(|| calibrated(plain_rate, args.duration));
        results.set_messages(size, messages);
    }

    for t in 1..=args.trials {
        for &size in &args.sizes {
            let order = if t % 2 == 1 {
                [Config::Plain, Config::Encrypted]
            } else {
                [Config::Encrypted, Config::Plain]
            };
            for config in order {
                let pair = match config {
                    Config::Plain => &mut plain,
                    Config::Encrypted => &mut encrypted,
                };
                let name = format!("t{t}-{size}-{config}");
                let messages = results.messages(size);
                let outcome = trial::run(pair, &setup, &name, size, messages)
                    .await
                    .map_err(|e| format!("{e:#}"));
                eprintln!(
                    "trial {t}/{}: {size} B {config}: {}",
                    args.trials,
                    table::summary(&outcome)
                );
                results.record(size, t, config, outcome);
            }
        }
    }
    // Stopped before the microbenchmark, which wants the cores to itself.
    drop(plain);
    drop(encrypted);

    let micro = if args.skip_micro {
        None
    } else {
        Some(micro::run(args.trials, args.micro_duration).await?)
    };
    described.push(format!(
        "Load average (1, 5, 15 min) at the start: {load_before}; at the end: {}. Anything \
         else running on the machine competes for the same cores.",
        load_average()
    ));
    print!(
        "{}",
        results.markdown(args, &described, micro.as_deref(), started.elapsed())
    );
    Ok(())
}

/// The machine's load averages from `/proc/loadavg`, as printed there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Messages for a trial of about `duration` at `rate` msgs/s, in thousands.
fn calibrated(rate: f64, duration: Duration) -> u64 {
    let n = rate * duration.as_secs_f64() * CALIBRATION_MARGIN;
    let thousands = (n / 1000.0)
        .ceil()
        .clamp(1.0, f64::from(u32::MAX) / 1000.0 - 1.0);
    thousands as u64 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_rounds_up_to_thousands() {
        assert_eq!(calibrated(100_000.0, Duration::from_secs(2)), 260_000);
        assert_eq!(calibrated(10.0, Duration::from_secs(2)), 1_000);
        assert!(calibrated(f64::INFINITY, Duration::from_secs(2)) <= u64::from(u32::MAX));
    }
}
