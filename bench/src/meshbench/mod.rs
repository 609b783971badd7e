//! `bench-mesh`: the mesh on real daemons, one per Linux network namespace made by
//! `scripts/netns-cluster.sh` — join convergence, failure detection after `kill -9`, idle gossip
//! traffic, channel throughput across nodes, and a soak under full CPU load.
//!
//! The clusters are the test kit's ([`NetnsCluster`]); this module brings them up the same way
//! for every phase ([`up_options`], [`up`]).
//!
//! # Layout
//! - [`views`]: every daemon's `nodes` polled until each lists the whole mesh with metadata.
//! - [`events`]: `circuit events --json` running in every namespace, collected in one log.
//! - [`join`], [`failure`], [`idle`], [`chans`], [`soak`]: one measurement each.
//! - [`tables`]: percentiles and the Markdown tables; [`charts`]: failure detection as an SVG
//!   chart; [`machine`]: date, machine and commit.

pub mod chans;
pub mod charts;
pub mod events;
pub mod failure;
pub mod idle;
pub mod join;
pub mod machine;
pub mod soak;
pub mod tables;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use circuit_testkit::netns::free_id;
use circuit_testkit::{MachineLock, NetnsCluster, UpOptions};

use crate::plot::PlotArgs;
use tables::Report;

/// A part of the benchmark, to run only some (`--phases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Join convergence: a fresh cluster per trial.
    Join,
    /// Idle gossip traffic per node.
    Idle,
    /// Channel throughput, same node against across nodes.
    Chan,
    /// `kill -9` → first suspicion and → dead on every live node.
    Kill,
}

/// The benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Cluster sizes (daemons); every phase runs at each.
    #[arg(long, value_delimiter = ',', default_value = "5,20")]
    pub sizes: Vec<usize>,
    /// Trials of join convergence and of `kill -9`, per size.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Phases to run at each size.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "join,idle,chan,kill"
    )]
    pub phases: Vec<Phase>,
    /// How often every daemon's `nodes` is polled while waiting for convergence.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Longest wait for a cluster to converge, or for a killed node to be declared dead.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Quiet time after a cluster converged before the idle window (joins' gossip dies down).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Length of the idle window whose interface counters give the gossip traffic.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// Trials of every channel placement and size.
    #[arg(long, default_value_t = 5)]
    pub chan_trials: usize,
    /// Channel payload sizes in bytes (at least 8, the stamp).
    #[arg(long, value_delimiter = ',', default_value = "16,256")]
    pub chan_sizes: Vec<usize>,
    /// Messages per channel trial.
    #[arg(long, default_value_t = 200_000)]
    pub chan_messages: u64,
    /// Capacity of the benchmark's channels.
    #[arg(long, default_value_t = 4096)]
    pub chan_capacity: u64,
    /// Soak: minutes of an idle cluster under full CPU load, counting suspicions; 0 = no soak.
    #[arg(long, default_value_t = 0.0)]
    pub soak: f64,
    /// Daemons in the soak's cluster.
    #[arg(long, default_value_t = 20)]
    pub soak_nodes: usize,
    /// `stress-ng --cpu` workers during the soak [default: one per CPU].
    #[arg(long)]
    pub stress_cpus: Option<usize>,
    /// Where the daemon logs of trials that missed a target are copied.
    #[arg(long, default_value = "/tmp/bench-mesh-logs")]
    pub logs: PathBuf,
    /// Cluster ID for the script (namespaces `c<ID>-h<i>`), the same for every cluster of the
    /// run [default: a free one].
    #[arg(long)]
    pub id: Option<u32>,
    /// `scripts/netns-cluster.sh` [default: the one in this repository].
    #[arg(long)]
    pub netns_script: Option<PathBuf>,
    /// Where `circuitd` and `circuit` are [default: next to this binary].
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Where the chart goes (`mesh-kill.svg`: failure-detection times).
    #[command(flatten)]
    pub plots: PlotArgs,
}

impl RunArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.sizes.iter().any(|&n| !(3..=200).contains(&n)) {
            bail!("--sizes: clusters of 3 to 200 daemons (the channel placements use h1..h3)");
        }
        if self.trials == 0 || self.chan_trials == 0 || self.chan_messages == 0 {
            bail!("--trials, --chan-trials and --chan-messages must be positive");
        }
        if let Some(bad) = self.chan_sizes.iter().find(|&&s| !(8..=65536).contains(&s)) {
            bail!("--chan-sizes: {bad} is outside 8..=65536 bytes");
        }
        if self.chan_messages > u64::from(u32::MAX) {
            bail!("--chan-messages: at most {}", u32::MAX);
        }
        if self.soak < 0.0 || (self.soak > 0.0 && !(2..=200).contains(&self.soak_nodes)) {
            bail!("--soak takes minutes ≥ 0; --soak-nodes 2..=200");
        }
        Ok(())
    }
}

/// Runs every phase and prints the tables on stdout; progress goes to stderr.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        // Dropping the benchmark's future on a signal drops its clusters, which go down.
        tokio::select! {
            result = bench(args) => result,
            why = signalled() => bail!("stopped by {why}; clusters taken down"),
        }
    })
}

async fn signalled() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn bench(args: &RunArgs) -> anyhow::Result<()> {
    // This run's logs apart from earlier runs'.
    let args = &RunArgs {
        logs: args.logs.join(format!("run-{}", now_ms() / 1000)),
        ..args.clone()
    };
    let id = match args.id {
        Some(id) => id,
        None => free_id().context(
            "every cluster ID is in use (`scripts/netns-cluster.sh down --all` clears leftovers)",
        )?,
    };
    let args = &RunArgs {
        id: Some(id),
        ..args.clone()
    };
    let bin_dir = match &args.bin {
        Some(dir) => dir.clone(),
        None => circuit_testkit::bin_dir()?,
    };
    let began = std::time::Instant::now();
    let mut report = Report::new(args, &bin_dir);
    eprintln!("bench-mesh: cluster ID {id}; tables on stdout when done");
    let mut phases = args.phases.clone();
    phases.sort();
    phases.dedup();
    for &n in &args.sizes {
        if phases.contains(&Phase::Join) {
            let options = up_options(args, &machine_lock().await?);
            report.join.push(join::run(&options, n, args).await?);
        }
        let rest: Vec<Phase> = phases
            .iter()
            .copied()
            .filter(|p| *p != Phase::Join)
            .collect();
        if rest.is_empty() {
            continue;
        }
        // One cluster for the other phases, in an order that keeps each clean: idle before
        // anything changed metadata, channels before kills left dead identities behind.
        let options = up_options(args, &machine_lock().await?);
        eprintln!("== {n} daemons: up");
        let mut cluster = up(n, options).await?;
        let mut views = views::Views::of(&cluster);
        views
            .wait_converged(&views::Expect::any(n), args.poll, args.deadline)
            .await
            .context("the cluster did not converge")?;
        let mut watch = events::Watchers::new();
        for i in 1..=n {
            watch.start(&cluster, i)?;
        }
        if rest.contains(&Phase::Idle) {
            report.idle.push(idle::run(&cluster, &watch, args).await?);
        }
        if rest.contains(&Phase::Chan) {
            report.chans.push(chans::run(&cluster, args).await?);
        }
        if rest.contains(&Phase::Kill) {
            report
                .kill
                .push(failure::run(&mut cluster, &mut views, &mut watch, args).await?);
        }
        drop(watch);
        drop(cluster);
    }
    if args.soak > 0.0 {
        let options = up_options(args, &machine_lock().await?);
        report.soak = Some(soak::run(options, args).await?);
    }
    report.took = began.elapsed();
    if let Some(dir) = args.plots.dir() {
        report.write_charts(dir);
    }
    print!("{}", report.markdown());
    Ok(())
}

/// How this run brings up its clusters: its ID, binaries and script, under `lock`.
pub fn up_options(args: &RunArgs, lock: &Arc<MachineLock>) -> UpOptions<'static> {
    UpOptions {
        id: args.id,
        bin_dir: args.bin.clone(),
        script: args.netns_script.clone(),
        lock: Some(lock.clone()),
        ..UpOptions::default()
    }
}

/// Waits (off the runtime's threads) until no other cluster is up on this machine.
async fn machine_lock() -> anyhow::Result<Arc<MachineLock>> {
    let lock = tokio::task::spawn_blocking(MachineLock::acquire)
        .await
        .context("the lock task failed")??;
    Ok(Arc::new(lock))
}

/// Brings up `n` hosts (off the runtime's threads) and waits until every daemon answers.
pub async fn up(n: usize, options: UpOptions<'static>) -> anyhow::Result<NetnsCluster> {
    let cluster = tokio::task::spawn_blocking(move || NetnsCluster::try_up(n, &options))
        .await
        .context("the cluster task failed")??;
    Ok(cluster)
}

/// Wall-clock milliseconds since the Unix epoch: the clock of the daemons' event timestamps
/// and `started_at_ms`. Every daemon runs on this machine, so all read the same clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
