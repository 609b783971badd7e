//! `bench-swim-sim`: the membership layer of 100 to 2,000 daemons, simulated in one process on
//! a virtual clock — real `foca` instances with the daemon's [`NodeId`] and [`swim_config`],
//! a modelled network between them. Every number it prints is labelled simulated.
//!
//! # Layout
//! - [`clock`]: the virtual clock, an event queue ordered by (time, insertion order).
//! - [`network`]: member addresses, latency, loss and the processing-delay model.
//! - [`cluster`]: the N foca instances, the event loop, and what is observed of them.
//! - [`scenario`]: the trials: a cold join; a steady run ending in a kill.
//! - [`table`]: percentiles, the Markdown tables and the verdicts against the targets.
//! - [`tuning`]: `swim_config(n)`, and experimental overrides of it.
//!
//! [`NodeId`]: circuitd::membership::NodeId
//! [`swim_config`]: circuitd::membership::swim_config

pub mod clock;
pub mod cluster;
pub mod network;
pub mod scenario;
pub mod table;
pub mod tuning;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;

use network::NetModel;
use scenario::{JoinOutcome, SteadyOutcome, TrialSpec};
use table::Cell;
use tuning::Tuning;

/// What to simulate. A run is deterministic in `--seed`, whatever `--jobs` is.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Cluster sizes for steady trials (quiet run, then kills), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub sizes: Vec<usize>,
    /// Cluster sizes for join trials, comma-separated. A join at 2000 costs about 5 minutes
    /// of CPU per trial, so it is not in the default run.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    pub join_sizes: Vec<usize>,
    /// Kills per size and loss rate (failure-detection samples), before `--member-kills`;
    /// shared among the steady clusters, one after another in each.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Caps members × kills per size and loss rate (never below one kill). 0: no cap.
    #[arg(long, default_value_t = 20_000)]
    pub member_kills: usize,
    /// Steady clusters per size and loss rate, each with its own seed and one quiet run,
    /// before `--member-trials` (0: no steady trials).
    #[arg(long, default_value_t = 20)]
    pub clusters: usize,
    /// Join trials per size and join loss rate, each with its own seed, before
    /// `--member-trials` (0: no join trials).
    #[arg(long, default_value_t = 20)]
    pub join_trials: usize,
    /// Caps members × trials per size for join trials and for steady clusters, so that large
    /// clusters cost about what small ones do (never below one). 0: no cap.
    #[arg(long, default_value_t = 1_000)]
    pub member_trials: usize,
    /// Packet loss rates for steady trials, comma-separated probabilities.
    #[arg(long, value_delimiter = ',', default_value = "0,0.01")]
    pub loss: Vec<f64>,
    /// Packet loss rates for join trials (which cost the most), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub join_loss: Vec<f64>,
    /// Shortest one-way latency, in milliseconds.
    #[arg(long, default_value_t = 0.1)]
    pub latency_min_ms: f64,
    /// Longest one-way latency, in milliseconds (uniform in between).
    #[arg(long, default_value_t = 1.0)]
    pub latency_max_ms: f64,
    /// Time a member is busy per packet or timer, in microseconds (0: instant).
    #[arg(long, default_value_t = 0.0)]
    pub processing_us: f64,
    /// Join: members start evenly over this window, each announcing to member 0 (0s: all at
    /// once).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub join_window: Duration,
    /// Join: longest wait for every view to be complete, from the last member's start.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub join_limit: Duration,
    /// Steady: each member changes its metadata this often (as a daemon whose load average
    /// moves does, at most every 10 s), broadcasting it; default: never after its start.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub meta_every: Option<Duration>,
    /// Steady: the failure-free run before the kill, measured for false suspicions and load.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub quiet: Duration,
    /// Seed of the whole run; each trial's derives from it.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trials run in parallel (default: one per CPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Experimental overrides of the daemon's configuration (none by default).
    #[command(flatten)]
    pub tuning: Tuning,
}

impl RunArgs {
    fn spec(&self, n: usize, loss: f64, seed: u64) -> TrialSpec {
        TrialSpec {
            n,
            net: NetModel {
                latency_min: Duration::from_secs_f64(self.latency_min_ms / 1e3),
                latency_max: Duration::from_secs_f64(self.latency_max_ms / 1e3),
                loss,
                processing: Duration::from_secs_f64(self.processing_us / 1e6),
            },
            join_window: self.join_window,
            join_limit: self.join_limit,
            quiet: self.quiet,
            seed,
            tuning: self.tuning,
            meta_every: self.meta_every,
        }
    }

    /// `wanted` at cluster size `n`, capped at `budget / n` (but not below one); 0: no cap.
    fn capped(wanted: usize, budget: usize, n: usize) -> usize {
        if budget == 0 || wanted == 0 {
            wanted
        } else {
            (budget / n.max(1)).clamp(1, wanted)
        }
    }

    /// Join trials at cluster size `n`.
    pub fn join_trials_at(&self, n: usize) -> usize {
        Self::capped(self.join_trials, self.member_trials, n)
    }

    /// Kills in each steady cluster at size `n`, spread evenly over the clusters.
    pub fn kills_at(&self, n: usize) -> Vec<usize> {
        let clusters = Self::capped(self.clusters, self.member_trials, n);
        let kills = Self::capped(self.trials, self.member_kills, n);
        (0..clusters)
            .map(|c| kills / clusters + usize::from(c < kills % clusters))
            .collect()
    }

    fn check(&self) -> anyhow::Result<()> {
        if self
            .sizes
            .iter()
            .chain(&self.join_sizes)
            .any(|&n| !(3..=64_000).contains(&n))
        {
            bail!("--sizes and --join-sizes: each size must be between 3 and 64000");
        }
        if self
            .loss
            .iter()
            .chain(&self.join_loss)
            .any(|p| !(0.0..1.0).contains(p))
        {
            bail!("--loss: each rate must be in [0, 1)");
        }
        if !(self.latency_min_ms >= 0.0 && self.latency_max_ms >= self.latency_min_ms) {
            bail!("--latency-min-ms and --latency-max-ms: need 0 ≤ min ≤ max");
        }
        if self.processing_us.is_nan() || self.processing_us < 0.0 {
            bail!("--processing-us: must not be negative");
        }
        self.tuning.check()
    }

    /// The line every table is printed under.
    pub fn header(&self) -> String {
        let mut h = format!(
            "SIMULATED (virtual clock, foca + circuitd::membership::swim_config, latency U[{},{}] ms",
            self.latency_min_ms, self.latency_max_ms
        );
        if self.processing_us > 0.0 {
            h.push_str(&format!(", {} µs processing per event", self.processing_us));
        }
        if let Some(every) = self.meta_every {
            h.push_str(&format!(
                ", metadata republished every {}",
                humantime::format_duration(every)
            ));
        }
        if let Some(o) = self.tuning.describe() {
            h.push_str(&format!(", NOT the daemon's tuning: overrides {o}"));
        }
        h.push(')');
        h
    }
}

/// One unit of work for a thread: a trial of a cell.
enum Job {
    Join(TrialSpec),
    /// A steady cluster and how many kills it runs.
    Steady(TrialSpec, usize),
}

/// What a job produced.
enum Outcome {
    Join(JoinOutcome),
    Steady(SteadyOutcome),
}

impl Job {
    fn spec(&self) -> &TrialSpec {
        match self {
            Job::Join(s) | Job::Steady(s, _) => s,
        }
    }

    /// A rough cost, to start the longest jobs first.
    fn weight(&self) -> usize {
        match self {
            Job::Join(s) => s.n * s.n * 3,
            Job::Steady(s, _) => s.n * s.n,
        }
    }

    fn run(&self) -> Outcome {
        match self {
            Job::Join(s) => Outcome::Join(scenario::join_trial(s)),
            Job::Steady(s, kills) => Outcome::Steady(scenario::steady_trial(s, *kills)),
        }
    }
}

/// Runs every trial and prints the tables on stdout (progress on stderr).
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    args.check()?;
    let started = Instant::now();
    let mut cells: Vec<Cell> = Vec::new();
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    let mut losses = args.loss.clone();
    for &loss in &args.join_loss {
        if !losses.contains(&loss) {
            losses.push(loss);
        }
    }
    let mut sizes: Vec<usize> = args.sizes.iter().chain(&args.join_sizes).copied().collect();
    sizes.sort_unstable();
    sizes.dedup();
    for &loss in &losses {
        let bits = loss.to_bits();
        for &n in &sizes {
            let join = args.join_loss.contains(&loss)
                && args.join_sizes.contains(&n)
                && args.join_trials_at(n) > 0;
            let steady = args.loss.contains(&loss)
                && args.sizes.contains(&n)
                && !args.kills_at(n).is_empty();
            if !(join || steady) {
                continue;
            }
            let c = cells.len();
            if join {
                for t in 0..args.join_trials_at(n) {
                    let seed = mix(args.seed, &[1, n as u64, bits, t as u64]);
                    jobs.push((c, Job::Join(args.spec(n, loss, seed))));
                }
            }
            if steady {
                for (t, kills) in args.kills_at(n).into_iter().enumerate() {
                    let seed = mix(args.seed, &[2, n as u64, bits, t as u64]);
                    jobs.push((c, Job::Steady(args.spec(n, loss, seed), kills)));
                }
            }
            cells.push(Cell {
                n,
                loss,
                join: Vec::new(),
                steady: Vec::new(),
                cpu_secs: 0.0,
            });
        }
    }
    // Results go back in job order, so the tables do not depend on thread timing.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].1.weight()));
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    eprintln!(
        "bench-swim-sim: {} trials on {threads} threads, {}",
        jobs.len(),
        args.header()
    );

    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (jobs, order, next) = (&jobs, &order, &next);
            s.spawn(move || {
                while let Some(&j) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let clock = Instant::now();
                    let outcome = jobs[j].1.run();
                    if tx.send((j, outcome, clock.elapsed())).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (done, (j, outcome, took)) in rx.iter().enumerate() {
            let (c, job) = &jobs[j];
            cells[*c].cpu_secs += took.as_secs_f64();
            let spec = job.spec();
            let what = match &outcome {
                Outcome::Join(o) => format!("join, all views in {} ms", opt(o.full_ms)),
                Outcome::Steady(o) => format!(
                    "steady, {} suspicions of live members, down on all in [{}] ms",
                    o.false_suspicions,
                    o.kills
                        .iter()
                        .map(|k| match k.down_on_all_ms {
                            Some(ms) => format!("{ms:.0}"),
                            None => format!("never ({} unaware)", k.unaware),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            eprintln!(
                "[{:>3}/{}] N={} loss={}%: {what} ({:.1} s)",
                done + 1,
                jobs.len(),
                spec.n,
                spec.net.loss * 100.0,
                took.as_secs_f64()
            );
            outcomes[j] = Some(outcome);
        }
    });
    for ((c, _), outcome) in jobs.iter().zip(outcomes) {
        match outcome.context("a trial thread ended without a result")? {
            Outcome::Join(o) => cells[*c].join.push(o),
            Outcome::Steady(o) => cells[*c].steady.push(o),
        }
    }
    print(args, &cells, threads, started.elapsed());
    Ok(())
}

fn print(args: &RunArgs, cells: &[Cell], threads: usize, wall: Duration) {
    println!("## {}\n", args.header());
    let caption = format!(
        "Joins: members start over {}, timed from the last start for at most {}; steady: \
         {} of quiet run, then kills one at a time (limit 60 s); \"never\": not within the \
         limit (+∞ in the percentiles).",
        humantime::format_duration(args.join_window),
        humantime::format_duration(args.join_limit),
        humantime::format_duration(args.quiet),
    );
    let mut losses: Vec<f64> = cells.iter().map(|c| c.loss).collect();
    losses.dedup();
    for loss in losses {
        let at: Vec<&Cell> = cells.iter().filter(|c| c.loss == loss).collect();
        let title = format!("Simulated, packet loss {} %", loss * 100.0);
        print!("{}", table::results(&title, &caption, &at));
    }
    let all: Vec<&Cell> = cells.iter().collect();
    let mut verdicts = table::verdicts(&all, args.quiet);
    let errors: u64 = cells
        .iter()
        .map(|c| {
            c.join.iter().map(|o| o.errors).sum::<u64>()
                + c.steady.iter().map(|o| o.errors).sum::<u64>()
        })
        .sum();
    verdicts.note(format!(
        "Simulation cost: {:.0} s wall on {threads} threads; trial time per cell: {}. Errors \
         returned by foca: {errors}.",
        wall.as_secs_f64(),
        cells
            .iter()
            .map(|c| format!("N={} {}% {:.0} s", c.n, c.loss * 100.0, c.cpu_secs))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    print!("{verdicts}");
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "never".into(), |v| format!("{v:.0}"))
}

/// A seed derived from `base` and `parts` (splitmix64 steps), so trials do not share draws.
fn mix(base: u64, parts: &[u64]) -> u64 {
    let mut x = base;
    for &p in parts {
        x = x.wrapping_add(p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}
