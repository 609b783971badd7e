//! `bench-replicated`: replicated channels (`--replicas 3`, Raft) beside circuit's one-owner
//! channels and NATS JetStream R3 streams, in one run — throughput 1 → 1 and N → N and round
//! trips in interleaved rounds, then failover after `kill -9` of the leader — with every
//! message stamped by its sender and checked for loss and duplication by the receivers.
//!
//! # Layout
//! - [`contender`]: what is compared ([`Contender`]) and a trial's outcome ([`contender::Tried`]).
//! - [`mesh`]: three circuitd daemons meshed on loopback; [`jscluster`]: three JetStream
//!   servers routed on loopback.
//! - [`throughput`], [`rtt`]: one trial of one contender, on the channel benchmark's roles
//!   (`chanbench`).
//! - [`failover`]: steady load, `kill -9` of the leader, time until sends are acknowledged
//!   again; circuit on network-namespace hosts, JetStream on loopback.
//! - [`tables`]: medians, per-round ratios, the tables, the targets; [`charts`]: throughput by
//!   size and the failover times as SVG charts.
//!
//! Dependencies point down this list.

pub mod charts;
pub mod contender;
pub mod failover;
pub mod jscluster;
pub mod mesh;
pub mod rtt;
pub mod tables;
pub mod throughput;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::stream::StorageType;
use circuit_testkit::UpOptions;

use crate::chanbench::protocol::STAMP_LEN;
use crate::chanbench::{nats, Scenario};
use crate::plot::PlotArgs;
use contender::{Contender, Tried};
use jscluster::JsCluster;
use mesh::Mesh;
use tables::Report;

/// Largest payload: NATS's default limit is 1 MB, the channel benchmark's roles 64 KiB.
const MAX_SIZE: usize = 64 * 1024;
/// How long the daemons and servers may take to come up.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A part of the benchmark, to run only some (`--phases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Throughput, every contender, every size and scenario.
    Throughput,
    /// Round trips on circuit channels.
    Rtt,
    /// `kill -9` of the leader under load.
    Failover,
}

/// Where JetStream's failover streams keep their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageArg {
    /// Memory storage (like circuit's R3 memory).
    Memory,
    /// File storage.
    File,
}

/// The benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A short smoke run: 1 round, 5000 messages per throughput trial, 300 round trips, 2
    /// failover trials (flags given explicitly still win).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of throughput and round-trip trials; a round runs every contender once at every
    /// size and scenario, taking turns [default: 3; 1 with --quick].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// What to run.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "throughput,rtt,failover"
    )]
    pub phases: Vec<Phase>,
    /// Contenders: the throughput table has them all, the round-trip table the circuit ones.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "r1,r3-memory,r3-disk,js-memory,js-file"
    )]
    pub contenders: Vec<Contender>,
    /// Messages per throughput trial up to 1 KiB payloads, split among its senders; above,
    /// scaled down by size (4 KiB: a quarter) [default: 50000; 5000 with --quick].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Payload sizes in bytes, at least 8 (the stamp).
    #[arg(long, value_delimiter = ',', default_value = "16,256,4096")]
    pub sizes: Vec<usize>,
    /// Throughput scenarios, SENDERS-RECEIVERS.
    #[arg(long, value_delimiter = ',', default_value = "1-1,4-4")]
    pub scenarios: Vec<Scenario>,
    /// Capacity of circuit's throughput channels; JetStream consumers' most unacked deliveries.
    #[arg(long, default_value_t = 4096)]
    pub capacity: u64,
    /// Senders' window: circuit values submitted and not yet accepted, JetStream publish acks
    /// outstanding.
    #[arg(long, default_value_t = 1024)]
    pub window: u32,
    /// Round trips measured per trial [default: 3000; 300 with --quick].
    #[arg(long)]
    pub roundtrips: Option<u64>,
    /// Round trips before measuring [default: 300; 50 with --quick].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Capacity of the ping and pong channels.
    #[arg(long, default_value_t = 1)]
    pub rtt_capacity: u64,
    /// Failover trials per system [default: 20; 2 with --quick].
    #[arg(long)]
    pub failover_trials: Option<usize>,
    /// Namespace hosts of circuit's failover cluster (one circuitd each).
    #[arg(long, default_value_t = 5)]
    pub failover_hosts: usize,
    /// Senders during a failover trial.
    #[arg(long, default_value_t = 4)]
    pub failover_senders: u32,
    /// Receivers during a failover trial.
    #[arg(long, default_value_t = 4)]
    pub failover_receivers: u32,
    /// Messages per second each failover sender sends.
    #[arg(long, default_value_t = 500)]
    pub failover_rate: u64,
    /// Payload size of the failover trials.
    #[arg(long, default_value_t = 256)]
    pub failover_size: usize,
    /// How long the senders run before the leader is killed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub failover_warm: Duration,
    /// How much of the senders' schedule follows the kill.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub failover_after: Duration,
    /// JetStream's failover streams' storage.
    #[arg(long, value_enum, default_value = "memory")]
    pub failover_storage: StorageArg,
    /// Once a failover run's messages all arrived, how long receivers must take nothing more
    /// before the counts are final.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub failover_quiet: Duration,
    /// Once a failover run's senders are done, how long receivers may make no progress before
    /// what is missing counts as lost.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub failover_stall: Duration,
    /// Longest a trial may take before it fails.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Once a throughput trial's senders are done, how long receivers may make no progress
    /// before what is missing counts as lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub stall: Duration,
    /// Where the logs of failover trials that failed, lost, duplicated or missed the target
    /// are copied.
    #[arg(long, default_value = "/tmp/bench-replicated-logs")]
    pub logs: PathBuf,
    /// Where `circuitd` and `circuit` are [default: next to this binary].
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// The NATS server binary [default: nats-server on the PATH, or /usr/sbin/nats-server].
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// `scripts/netns-cluster.sh` [default: the one in this repository].
    #[arg(long)]
    pub netns_script: Option<PathBuf>,
    /// Cluster ID for the namespace hosts (namespaces `c<ID>-h<i>`) [default: a free one].
    #[arg(long)]
    pub id: Option<u32>,
    /// Where the charts go (`replicated-1-1.svg`, …: throughput by size per scenario;
    /// `replicated-failover.svg`).
    #[command(flatten)]
    pub plots: PlotArgs,
}

/// Target: kill → sends acknowledged again, p99.
pub const TARGET_FAILOVER: Duration = Duration::from_secs(2);
/// Target: R3 throughput as a share of R1's at 256 B.
pub const TARGET_R3_OF_R1: f64 = 0.25;
/// The payload size of that target.
pub const TARGET_R3_OF_R1_SIZE: usize = 256;

/// The flags with `--quick` and the defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Was `--quick` given.
    pub quick: bool,
    /// Rounds of throughput and round trips.
    pub rounds: usize,
    /// Messages per throughput trial up to 1 KiB.
    pub messages: u64,
    /// Round trips measured per trial.
    pub roundtrips: u64,
    /// Round trips before measuring.
    pub warmup: u64,
    /// Failover trials per system.
    pub failover_trials: usize,
}

impl RunArgs {
    /// The settings this run uses.
    pub fn settings(&self) -> Settings {
        let q = self.quick;
        Settings {
            quick: q,
            rounds: self.rounds.unwrap_or(if q { 1 } else { 3 }),
            messages: self.messages.unwrap_or(if q { 5_000 } else { 50_000 }),
            roundtrips: self.roundtrips.unwrap_or(if q { 300 } else { 3_000 }),
            warmup: self.warmup.unwrap_or(if q { 50 } else { 300 }),
            failover_trials: self.failover_trials.unwrap_or(if q { 2 } else { 20 }),
        }
    }

    /// Messages in one throughput trial of `size` bytes.
    pub fn messages_for(&self, size: usize) -> u64 {
        let base = self.settings().messages;
        if size <= 1024 {
            base
        } else {
            (base * 1024 / size as u64).max(1)
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let s = self.settings();
        if s.rounds == 0 || self.sizes.is_empty() || self.contenders.is_empty() {
            bail!("--rounds, --sizes and --contenders need at least one");
        }
        let sizes = self.sizes.iter().chain([&self.failover_size]);
        if let Some(&bad) = sizes
            .clone()
            .find(|&&s| !(STAMP_LEN..=MAX_SIZE).contains(&s))
        {
            bail!("payload size {bad} is outside {STAMP_LEN}..={MAX_SIZE} bytes");
        }
        for scenario in &self.scenarios {
            let Scenario::Stream { senders, .. } = *scenario else {
                bail!("--scenarios: throughput only (SENDERS-RECEIVERS); round trips are --phases rtt");
            };
            for &size in &self.sizes {
                let per_sender = self.messages_for(size) / u64::from(senders);
                if per_sender == 0 || per_sender > u64::from(u32::MAX) {
                    bail!("--messages: {per_sender} per sender in {scenario}");
                }
            }
        }
        if s.roundtrips == 0 || s.roundtrips + s.warmup > u64::from(u32::MAX) {
            bail!("--roundtrips must be positive and, with --warmup, fit a u32");
        }
        if self.window == 0 || self.failover_rate == 0 {
            bail!("--window and --failover-rate must be positive");
        }
        if self.failover_senders == 0 || self.failover_receivers == 0 {
            bail!("--failover-senders and --failover-receivers must be positive");
        }
        if self.failover_hosts < 4 {
            bail!("--failover-hosts: at least 4 (three replicas and a host that holds none)");
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
        // Dropping the benchmark's future on a signal drops its daemons, servers and clusters,
        // which stop.
        tokio::select! {
            result = bench(args) => result,
            why = signalled() => bail!("stopped by {why}; daemons, servers and hosts stopped"),
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

/// What the throughput and round-trip trials run on: each, or why it did not start.
struct Places {
    mesh: Result<Mesh, String>,
    jetstream: Result<JsCluster, String>,
}

async fn bench(args: &RunArgs) -> anyhow::Result<()> {
    let settings = args.settings();
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let bin_dir = match &args.bin {
        Some(dir) => dir.clone(),
        None => circuit_testkit::bin_dir()?,
    };
    let nats_binary = args
        .nats_server
        .clone()
        .unwrap_or_else(nats::default_binary);
    let nats_version = nats::version(&nats_binary).map_err(|e| format!("{e:#}"));
    let mut phases = args.phases.clone();
    phases.sort();
    phases.dedup();
    let mut contenders = args.contenders.clone();
    contenders.sort();
    contenders.dedup();
    let mut report = Report::new(args, &settings, &contenders);
    let began = std::time::Instant::now();
    let setup = throughput::Setup {
        exe: exe.clone(),
        window: args.window,
        capacity: args.capacity,
        deadline: args.deadline,
        stall: args.stall,
    };

    let measures = |p| phases.contains(&p);
    if measures(Phase::Throughput) || measures(Phase::Rtt) {
        let circuit_wanted = contenders.iter().any(|c| c.is_circuit());
        let js_wanted = measures(Phase::Throughput) && contenders.iter().any(|c| !c.is_circuit());
        let mut places = Places {
            mesh: Err("not needed".into()),
            jetstream: Err("not needed".into()),
        };
        if circuit_wanted {
            eprintln!("== three circuitd daemons on loopback");
            places.mesh = Mesh::start(&bin_dir.join("circuitd"), READY_WITHIN)
                .await
                .map_err(|e| format!("the circuit daemons did not start: {e:#}"));
            match &places.mesh {
                Ok(mesh) => report.describe(format!(
                    "circuit: circuitd {} ×3 on loopback (nodes a, b, c; b and c joined a), SDK \
                     clients; channels made through a",
                    mesh.version()
                )),
                Err(e) => eprintln!("{e}"),
            }
        }
        if js_wanted {
            eprintln!("== three JetStream servers on loopback");
            places.jetstream = match &nats_version {
                Ok(version) => JsCluster::start(&nats_binary, version.clone(), READY_WITHIN)
                    .await
                    .map_err(|e| format!("the JetStream cluster did not start: {e:#}")),
                Err(e) => Err(e.clone()),
            };
            match &places.jetstream {
                Ok(cluster) => report.describe(format!(
                    "JetStream: {}; async-nats clients, work-queue stream, publishes with a \
                     message id awaiting their acks, durable pull consumer, explicit acks",
                    cluster.describe()
                )),
                Err(e) => eprintln!("{e}"),
            }
        }
        for round in 1..=settings.rounds {
            for &size in &args.sizes {
                if measures(Phase::Throughput) {
                    for &scenario in &args.scenarios {
                        for &contender in &contenders {
                            let tried = stream_trial(
                                &mut places,
                                &setup,
                                args,
                                contender,
                                scenario,
                                size,
                                round,
                            )
                            .await;
                            eprintln!(
                                "round {round}/{}: {} {scenario} {contender}: {}",
                                settings.rounds,
                                crate::report::size_label(size),
                                tables::summary_stream(&tried)
                            );
                            report.record_stream(contender, scenario, size, round, tried);
                        }
                    }
                }
                if measures(Phase::Rtt) {
                    for &contender in contenders.iter().filter(|c| c.is_circuit()) {
                        let tried =
                            rtt_trial(&mut places, &setup, args, &settings, contender, size, round)
                                .await;
                        eprintln!(
                            "round {round}/{}: {} round trip {contender}: {}",
                            settings.rounds,
                            crate::report::size_label(size),
                            tables::summary_rtt(&tried)
                        );
                        report.record_rtt(contender, size, round, tried);
                    }
                }
            }
        }
        // Dropping them stops the daemons and servers by pid.
        drop(places);
    }

    if measures(Phase::Failover) {
        eprintln!("== failover");
        let failover_setup = failover::Setup {
            exe,
            size: args.failover_size,
            rate: args.failover_rate,
            senders: args.failover_senders,
            receivers: args.failover_receivers,
            warm: args.failover_warm,
            after: args.failover_after,
            capacity: args.capacity,
            window: args.window,
            deadline: args.deadline,
            quiet: args.failover_quiet,
            stall: args.failover_stall,
            logs: args.logs.join(format!("run-{}", std::process::id())),
            target: TARGET_FAILOVER,
        };
        let up = UpOptions {
            id: args.id,
            bin_dir: Some(bin_dir.clone()),
            script: args.netns_script.clone(),
            ..UpOptions::default()
        };
        let storage = match args.failover_storage {
            StorageArg::Memory => StorageType::Memory,
            StorageArg::File => StorageType::File,
        };
        let outcome = match &nats_version {
            Ok(version) => {
                let js = failover::JetStreamSetup {
                    binary: nats_binary.clone(),
                    version: version.clone(),
                    storage,
                };
                failover::run(
                    &failover_setup,
                    settings.failover_trials,
                    args.failover_hosts,
                    up,
                    &js,
                )
                .await
            }
            Err(e) => {
                let mut outcome = failover::Failover::default();
                outcome.jetstream.skipped = Some(e.clone());
                outcome.circuit.skipped = Some("nats-server is missing (see JetStream)".into());
                outcome
            }
        };
        report.failover = Some((failover_setup, outcome));
    }
    report.took = began.elapsed();
    if let Some(dir) = args.plots.dir() {
        report.write_charts(dir);
    }
    print!("{}", report.markdown());
    Ok(())
}

/// One throughput trial of `contender`.
async fn stream_trial(
    places: &mut Places,
    setup: &throughput::Setup,
    args: &RunArgs,
    contender: Contender,
    scenario: Scenario,
    size: usize,
    round: usize,
) -> Tried<throughput::Run> {
    let Scenario::Stream { senders, receivers } = scenario else {
        return Tried::Failed("not a throughput scenario".into());
    };
    let load = throughput::Load {
        senders,
        receivers,
        per_sender: args.messages_for(size) / u64::from(senders),
    };
    let name = format!("{}-r{round}-s{size}-{}", contender.slug(), scenario.slug());
    if contender.is_circuit() {
        match &mut places.mesh {
            Ok(mesh) => throughput::circuit(mesh, setup, contender, &name, size, load).await,
            Err(e) => Tried::Failed(e.clone()),
        }
    } else {
        match &mut places.jetstream {
            Ok(cluster) => {
                throughput::jetstream(cluster, setup, contender, &name, size, load).await
            }
            Err(e) => Tried::Failed(e.clone()),
        }
    }
}

/// One round-trip trial of circuit `contender`.
async fn rtt_trial(
    places: &mut Places,
    setup: &throughput::Setup,
    args: &RunArgs,
    settings: &Settings,
    contender: Contender,
    size: usize,
    round: usize,
) -> Tried<rtt::Run> {
    let name = format!("{}-r{round}-s{size}-rtt", contender.slug());
    let count = rtt::Count {
        measured: settings.roundtrips,
        warmup: settings.warmup,
        capacity: args.rtt_capacity,
    };
    match &mut places.mesh {
        Ok(mesh) => rtt::circuit(mesh, setup, contender, &name, size, count).await,
        Err(e) => Tried::Failed(e.clone()),
    }
}
