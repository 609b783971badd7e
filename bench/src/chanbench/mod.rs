//! `bench-channels`: circuit's channels beside NATS core and JetStream (through async-nats and
//! through the official C client), ZeroMQ and a raw Unix socket, one run, same payload sizes —
//! throughput 1 → 1 and N → N, round-trip latency, the server's CPU, and every message checked
//! for loss and duplication. circuit runs twice: tuned, and written the plain way with defaults.
//!
//! # Layout
//! - [`protocol`]: the JSON lines roles print, the stamp each payload carries, the clock.
//! - [`tally`]: which messages a receiver took; the check for lost and duplicated ones.
//! - [`ctx`]: what a role is given ([`ctx::RoleArgs`]) and its view of the harness
//!   ([`ctx::Ctx`]); [`server`]: a contender's server ([`server::Server`]).
//! - [`circuit`], [`circuit_defaults`], [`nats`], [`rawsock`]: each contender's server and roles
//!   in Rust; [`jetstream`]: the JetStream roles `bench-replicated` runs against its own cluster
//!   (see `replbench`), and the stream each trial uses.
//! - [`cprog`]: the contenders whose roles are C programs (`bench/c/`: NATS core, JetStream,
//!   ZeroMQ), which a role process execs; [`natsc`], [`zmq`]: their servers.
//! - [`role`]: a role process (`bench-channels role …`) and its dispatch to a contender;
//!   [`host`]: starting each contender's server.
//! - [`trial`]: what the roles of one trial share, and where each side runs.
//! - [`fleet`]: the role processes of a trial, their output, and their end.
//! - [`driver`]: one trial from the harness's side: start roles, `go`, follow, check.
//! - [`ratios`]: per-round ratios; [`results`]: every trial's outcome and what is read from it;
//!   [`targets`]: the targets' verdicts; [`table`]: the tables, the targets and the notes;
//!   [`charts`]: throughput by size as SVG charts.
//!
//! Dependencies point down this list. Each system has a role function per [`ctx::Kind`] (or a
//! C program) and a [`server::Server`]; adding one is a variant here, an arm in [`host::start`]
//! and one in each `match system` of [`role`].

pub mod charts;
pub mod circuit;
pub mod circuit_defaults;
pub mod cprog;
pub mod ctx;
pub mod driver;
pub mod fleet;
pub mod host;
pub mod jetstream;
pub mod nats;
pub mod natsc;
pub mod protocol;
pub mod ratios;
pub mod rawsock;
pub mod results;
pub mod role;
pub mod server;
pub mod table;
pub mod tally;
pub mod targets;
pub mod trial;
pub mod zmq;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::plot::PlotArgs;
use driver::Outcome;
use protocol::STAMP_LEN;
use results::Results;
use server::Server;
use trial::Trial;

/// Largest payload: the raw reader's frames must fit its buffer, and NATS's default limit is
/// 1 MB.
const MAX_SIZE: usize = 64 * 1024;

/// A contender. The tables list them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum System {
    /// circuitd's channels through the SDK, tuned: pipelined `submit`, receivers prefetching.
    Circuit,
    /// circuitd's channels through the SDK written the plain way, no option set:
    /// `send().await` and `recv().await` in a loop.
    CircuitDefaults,
    /// NATS core: `nats-server` with `async-nats`, a queue group, request/reply.
    Nats,
    /// NATS core through the official C client (`bench-c-nats`): a queue group, request/reply.
    NatsC,
    /// NATS JetStream through the official C client (`bench-c-jetstream`): a work-queue stream,
    /// asynchronous publishes with bounded outstanding acks, a pull consumer with explicit acks.
    #[value(name = "jetstream-c")]
    JetStreamC,
    /// ZeroMQ PUSH/PULL (and REQ/REP) over Unix sockets, no broker (`bench-c-zmq`).
    Zmq,
    /// A Unix stream socket between two processes: the floor.
    Raw,
    /// NATS JetStream: publishes awaiting acks, pull consumers with explicit acks. Only
    /// `bench-replicated` runs it (on a cluster of its own), so `--systems` does not offer it.
    #[value(name = "jetstream", hide = true)]
    JetStream,
}

impl System {
    /// Its name on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Circuit => "circuit",
            Self::CircuitDefaults => "circuit-defaults",
            Self::Nats => "nats",
            Self::NatsC => "nats-c",
            Self::JetStreamC => "jetstream-c",
            Self::Zmq => "zmq",
            Self::Raw => "raw",
            Self::JetStream => "jetstream",
        }
    }

    /// Its server process in the CPU table; `None` for the brokerless ones.
    pub fn server(self) -> Option<&'static str> {
        match self {
            Self::Circuit | Self::CircuitDefaults => Some("circuitd"),
            Self::Nats | Self::NatsC | Self::JetStreamC | Self::JetStream => Some("nats-server"),
            Self::Zmq | Self::Raw => None,
        }
    }

    /// The C program that plays its roles ([`cprog`]), next to this binary; `None` when the
    /// roles are this binary's own.
    pub fn c_program(self) -> Option<&'static str> {
        match self {
            Self::NatsC => Some("bench-c-nats"),
            Self::JetStreamC => Some("bench-c-jetstream"),
            Self::Zmq => Some("bench-c-zmq"),
            _ => None,
        }
    }

    /// Whether it takes part in `scenario`: the raw socket is a floor, one writer, one reader;
    /// JetStream has no round-trip roles.
    pub fn runs(self, scenario: Scenario) -> bool {
        match (self, scenario) {
            (Self::Raw, Scenario::Stream { senders, receivers }) => senders == 1 && receivers == 1,
            (Self::JetStream | Self::JetStreamC, Scenario::RoundTrip) => false,
            _ => true,
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Circuit => "circuit tuned",
            Self::CircuitDefaults => "circuit defaults",
            Self::Nats => "NATS async-nats",
            Self::NatsC => "NATS C",
            Self::JetStreamC => "JetStream C",
            Self::Zmq => "ZeroMQ",
            Self::Raw => "raw socket",
            Self::JetStream => "JetStream",
        })
    }
}

/// What a trial measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Throughput: `senders` processes send as fast as they can to `receivers` processes.
    Stream {
        /// Sending processes.
        senders: u32,
        /// Receiving processes, each taking a share.
        receivers: u32,
    },
    /// Latency: one pinger and one echo, one message in flight.
    RoundTrip,
}

impl Scenario {
    /// A name fit for a NATS subject, a channel and a file (`1-1`, `rtt`).
    pub fn slug(self) -> String {
        match self {
            Self::Stream { senders, receivers } => format!("{senders}-{receivers}"),
            Self::RoundTrip => "rtt".into(),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream { senders, receivers } => write!(f, "{senders} → {receivers}"),
            Self::RoundTrip => f.write_str("round trip"),
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "rtt" {
            return Ok(Self::RoundTrip);
        }
        let parsed = s
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        match parsed {
            Some((senders, receivers)) if senders > 0 && receivers > 0 => {
                Ok(Self::Stream { senders, receivers })
            }
            _ => Err(format!(
                "\"{s}\" is not a scenario: use SENDERS-RECEIVERS (like 4-4) or rtt"
            )),
        }
    }
}

/// The benchmark's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Rounds: each runs every system once per size and scenario, the systems interleaved
    /// (each round starting with the next one); the tables show medians over rounds.
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Messages per throughput trial, split among its senders
    /// [default: 1000000 up to 1 KiB, 200000 above: long enough that start-up is not what is
    /// measured].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Payload sizes in bytes, at least 8 (the stamp).
    #[arg(long, value_delimiter = ',', default_value = "16,256,4096")]
    pub sizes: Vec<usize>,
    /// Contenders.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "circuit,circuit-defaults,nats,nats-c,jetstream-c,zmq,raw"
    )]
    pub systems: Vec<System>,
    /// Scenarios: SENDERS-RECEIVERS for throughput, rtt for round trips.
    #[arg(long, value_delimiter = ',', default_value = "1-1,4-4,rtt")]
    pub scenarios: Vec<Scenario>,
    /// Round trips measured per trial, after the warm-up.
    #[arg(long, default_value_t = 10_000)]
    pub roundtrips: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Capacity of circuit's channel in throughput trials (and JetStream's `max_ack_pending`).
    /// 16384 values: still far less than the NATS roles let a subscription buffer (2^21
    /// messages), and enough that a receiver descheduled for a few milliseconds (a time slice,
    /// 3 processes on 2 CPUs) does not fill the channel and stall its senders, as 4096 did.
    #[arg(long, default_value_t = 16384)]
    pub capacity: u64,
    /// Capacity of circuit's ping and pong channels.
    #[arg(long, default_value_t = 1)]
    pub rtt_capacity: u64,
    /// Runtime threads per client process; 1 is a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Longest a trial may take before it fails.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Once every sender is done, how long receivers may make no progress before what is
    /// missing counts as lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub stall: Duration,
    /// The daemon binary [default: circuitd next to this binary].
    #[arg(long)]
    pub circuitd: Option<PathBuf>,
    /// The NATS server binary [default: nats-server on the PATH, or /usr/sbin/nats-server].
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// Where the charts go (`channels-1-1.svg`, …: throughput by size per scenario).
    #[command(flatten)]
    pub plots: PlotArgs,
}

impl RunArgs {
    /// Messages in one throughput trial of `size` bytes.
    pub fn messages_for(&self, size: usize) -> u64 {
        self.messages
            .unwrap_or(if size <= 1024 { 1_000_000 } else { 200_000 })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.trials == 0 || self.sizes.is_empty() || self.systems.is_empty() {
            bail!("--trials, --sizes and --systems need at least one value");
        }
        if let Some(&bad) = self
            .sizes
            .iter()
            .find(|&&s| !(STAMP_LEN..=MAX_SIZE).contains(&s))
        {
            bail!("--sizes: {bad} is outside {STAMP_LEN}..={MAX_SIZE} bytes");
        }
        let most = u64::from(u32::MAX);
        for scenario in &self.scenarios {
            if let Scenario::Stream { senders, .. } = *scenario {
                for &size in &self.sizes {
                    let per_sender = self.messages_for(size) / u64::from(senders);
                    if per_sender == 0 || per_sender > most {
                        bail!("--messages: {per_sender} per sender in {scenario}");
                    }
                }
            }
        }
        if self.roundtrips == 0 || self.roundtrips + self.warmup > most {
            bail!("--roundtrips must be positive and, with --warmup, at most {most}");
        }
        Ok(())
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

/// A contender's server, or why it did not start.
type Started = Result<Box<dyn Server>, String>;

async fn bench(args: &RunArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let mut systems = args.systems.clone();
    systems.sort();
    systems.dedup();
    let mut servers: Vec<(System, Started)> = Vec::new();
    for &system in &systems {
        let server = host::start(system, args)
            .await
            .map_err(|e| format!("{e:#}"));
        if let Err(e) = &server {
            eprintln!("{system}: cannot start: {e}");
        }
        servers.push((system, server));
    }
    let mut results = Results::new(&systems, &args.scenarios, &args.sizes);
    for trial in 1..=args.trials {
        for &size in &args.sizes {
            for &scenario in &args.scenarios {
                // Each round starts with the next system, so none is always first or last.
                let n = servers.len();
                for k in 0..n {
                    let (system, server) = &mut servers[(k + trial - 1) % n];
                    if !system.runs(scenario) {
                        continue;
                    }
                    let outcome = match server {
                        Ok(server) => {
                            one(&exe, *system, server.as_mut(), scenario, size, trial, args)
                                .await
                                .map_err(|e| format!("{e:#}"))
                        }
                        Err(e) => Err(e.clone()),
                    };
                    eprintln!(
                        "trial {trial}/{}: {} {scenario} {system}: {}",
                        args.trials,
                        crate::report::size_label(size),
                        table::summary(&outcome)
                    );
                    results.record(*system, scenario, size, outcome);
                }
            }
        }
    }
    let described: Vec<String> = servers
        .iter()
        .map(|(system, server)| match server {
            Ok(server) => format!("{system}: {}", server.describe()),
            Err(_) => format!("{system}: did not start"),
        })
        .collect();
    let charts = match args.plots.dir() {
        Some(dir) => results.write_charts(dir),
        None => Vec::new(),
    };
    print!("{}", results.markdown(args, &described, &charts));
    // Dropping the servers stops nats-server and circuitd by pid.
    drop(servers);
    Ok(())
}

/// One trial of one system: create what it needs, run it, remove it, check the server lives.
async fn one(
    exe: &std::path::Path,
    system: System,
    server: &mut dyn Server,
    scenario: Scenario,
    size: usize,
    trial: usize,
    args: &RunArgs,
) -> anyhow::Result<Outcome> {
    // No `.`: a JetStream stream takes the name too, and stream names cannot hold one.
    let name = format!("t{trial}-s{size}-{}", scenario.slug());
    let capacity = match scenario {
        Scenario::RoundTrip => args.rtt_capacity,
        Scenario::Stream { .. } => args.capacity,
    };
    server
        .open(&name, scenario, capacity)
        .await
        .context("cannot set the trial up")?;
    let (sender, receiver) = Trial::same_side(server.endpoint());
    let t = Trial {
        exe: exe.to_path_buf(),
        system,
        sender,
        receiver,
        name: name.clone(),
        size,
        threads: args.client_threads,
        window: trial::DEFAULT_WINDOW,
        server_pid: server.pid(),
        deadline: tokio::time::Instant::now() + args.deadline,
        stall: args.stall,
    };
    let outcome = match scenario {
        Scenario::Stream { senders, receivers } => {
            let per_sender = args.messages_for(size) / u64::from(senders);
            driver::stream(&t, senders, receivers, per_sender)
                .await
                .map(Outcome::Stream)
        }
        Scenario::RoundTrip => driver::round_trip(&t, args.roundtrips, args.warmup)
            .await
            .map(Outcome::Rtt),
    };
    let closed = server.close(&name, scenario).await;
    server.check_alive()?;
    let outcome = outcome?;
    closed.context("cannot tidy the trial up")?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        assert_eq!("rtt".parse(), Ok(Scenario::RoundTrip));
        assert_eq!(
            "4-2".parse(),
            Ok(Scenario::Stream {
                senders: 4,
                receivers: 2
            })
        );
        for bad in ["", "4", "0-1", "a-b", "1-1-1"] {
            assert!(bad.parse::<Scenario>().is_err(), "{bad}");
        }
        assert!(System::Raw.runs("1-1".parse().unwrap()));
        assert!(!System::Raw.runs("4-4".parse().unwrap()));
    }
}
