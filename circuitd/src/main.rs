//! `circuitd`: parse flags (and `--config FILE`, see `config_file`), set up logging, bind
//! listeners, run until SIGTERM or SIGINT.

mod config_file;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The circuit daemon: supervises worker processes and serves the circuit API.
#[derive(Parser, Debug)]
#[command(name = "circuitd", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Unix socket to serve [default: /run/circuit/circuitd.sock for root, else
    /// $XDG_RUNTIME_DIR/circuit/circuitd.sock or /tmp/circuit-$UID/circuitd.sock]
    #[arg(long, env = "CIRCUIT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Mesh port: gossip (UDP), peer links and the API (TCP) at HOST[:PORT] (port 7711 by
    /// default; loopback only without a cluster key, see --key-file). Without it the daemon
    /// is a single node serving its Unix socket
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve Prometheus metrics at /metrics and a read-only web dashboard of the mesh at / on
    /// HOST[:PORT] (port 9711 by default; loopback only without a cluster key). Off unless
    /// given
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// The mesh address other nodes reach this one at [default: the --listen address]
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Join the mesh through the node at HOST[:PORT]; repeatable; retried until one answers
    #[arg(long, value_name = "ADDR")]
    join: Vec<String>,
    /// A label of this node (k=v, repeatable), for `spawn --label k=v`
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The cluster key file (from `circuit keygen`; 0600): gossip, peer links and the TCP API
    /// are authenticated and encrypted with it. One key per line: the first is used to send,
    /// all are accepted (rotation). Re-read on SIGHUP. Without it the mesh port is loopback
    /// only and unauthenticated
    #[arg(long, env = "CIRCUIT_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Most connections (Unix socket and TCP together) served at once; more are refused
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Most TCP connections in their handshake at once; more are refused at once
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_handshakes: u64,
    /// Where the job table and worker logs live [default: /var/lib/circuit for root, else
    /// $XDG_DATA_HOME/circuit or ~/.local/share/circuit]
    #[arg(long, env = "CIRCUIT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Node name [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// Log filter: error, warn, info, debug, trace (or a tracing directive)
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    /// Default size at which a worker's log rotates, in bytes
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_name = "BYTES")]
    log_max_size: u64,
    /// Default number of rotated log files kept per worker
    #[arg(long, default_value_t = 5, value_name = "N")]
    log_max_files: u32,
    /// Largest channel value accepted, in bytes (1 to 1 GiB)
    #[arg(long, default_value_t = circuit_sdk::proto::DEFAULT_MAX_PAYLOAD,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30), value_name = "BYTES")]
    max_payload: u64,
    /// Most channels this node owns; creating one more fails with limit_reached
    #[arg(long, default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_channels: u64,
    /// Most workers in this node's table, exited ones included (`circuit rm` frees a place);
    /// spawning one more fails with limit_reached
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_workers: u64,
    /// Most requests and channel streams open at once on one connection; one more fails with
    /// too_many_requests
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_requests_per_connection: u64,
    /// How long a new connection may take to say hello (over TCP, its key exchange included),
    /// 1s to 5m
    #[arg(long, default_value = "10s", value_name = "DURATION",
          value_parser = |s: &str| circuitd::config::parse_duration_in(
              s, &circuitd::config::HANDSHAKE_TIMEOUT_RANGE))]
    handshake_timeout: std::time::Duration,
    /// Close a connection that has sent nothing for this long and has no request or channel
    /// stream open, 1s to 1day. SDK clients ping after 30 s of silence (CIRCUIT_KEEPALIVE_MS;
    /// below 2m, this daemon's workers and peer links ping at a quarter of the timeout)
    #[arg(long, default_value = "2m", value_name = "DURATION",
          value_parser = |s: &str| circuitd::config::parse_duration_in(
              s, &circuitd::config::IDLE_TIMEOUT_RANGE))]
    idle_timeout: std::time::Duration,
    /// Replace a replica of a replicated channel whose node has been dead this long with one
    /// on another live node (the channel returns to its replica count by itself), 1s to 1day
    #[arg(long, default_value = "30s", value_name = "DURATION",
          value_parser = |s: &str| circuitd::config::parse_duration_in(
              s, &circuitd::config::REPAIR_AFTER_RANGE))]
    replica_repair_after: std::time::Duration,
    /// Threads that serve connections, channels and the mesh's links, 1 to 1024 [default:
    /// half the CPUs this process may use, at least 1: the other half is left to the workers
    /// and the clients whose values it carries]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// Read flags from a TOML file whose keys are the long flag names, e.g. `name = "web-1"`,
    /// `join = ["10.0.0.1:7711"]` (see below). Flags on the command line win (a repeatable
    /// one's values replace the file's list); the file wins over environment variables.
    /// Relative paths in it are relative to its directory
    #[arg(long, env = "CIRCUIT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the daemon's pid (decimal and a newline, mode 0644) to FILE once it holds its data
    /// dir, and remove it when the daemon stops. A stale one is replaced
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
}

/// Runtime threads without `--threads`: half the CPUs this process may use (its affinity and
/// cgroup quota counted), at least 1. Every value a channel carries passes through the daemon
/// and through two client processes: on a small host, a second daemon thread competes with
/// those clients for the same cores, and the hand-offs between threads (a futex wake each)
/// cost more than the thread brings; on a large one, half the cores serve many channels.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// `--help`'s last words: a config file.
const AFTER_HELP: &str = "\
Config file (--config /etc/circuit/circuitd.toml), one key per long flag:
  name = \"web-1\"
  listen = \"10.0.0.5:7711\"
  join = [\"10.0.0.1:7711\", \"10.0.0.2:7711\"]
  label = [\"zone=a\", \"disk=ssd\"]
  key-file = \"cluster.key\"     # relative to the file's directory
  http = \"127.0.0.1:9711\"       # /metrics and the dashboard
  pidfile = \"/run/circuit/circuitd.pid\"
  max-workers = 500
An error in it names the file, line and column, and circuitd exits 2 before starting.";

fn main() {
    // Workers are started through this binary in trampoline mode (see `spawner`).
    circuitd::exec_trampoline_if_requested();
    // An empty CIRCUIT_SOCKET means unset, as it does for the CLI and the SDK; so does an empty
    // CIRCUIT_CONFIG.
    for var in ["CIRCUIT_SOCKET", "CIRCUIT_CONFIG"] {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(var);
        }
    }
    let args = match config_file::parse::<Args>(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(config_file::ParseError::Usage(e)) => e.exit(),
        Err(config_file::ParseError::Config(e)) => {
            // Exits like a usage error, before anything is bound or created.
            eprintln!("circuitd: error: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file (`2>circuitd.log`) gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = start(args) {
        eprintln!("circuitd: error: {e:#}");
        std::process::exit(1);
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let mut config = circuitd::Config::default();
    if let Some(socket) = args.socket {
        config.socket = absolute(socket)?;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = absolute(dir)?;
    }
    if let Some(name) = args.name {
        config.name = name;
    }
    config.log_max_bytes = args.log_max_size;
    config.log_max_files = args.log_max_files;
    config.listen = args.listen.clone();
    config.join = args.join.clone();
    config.labels = args.labels.iter().cloned().collect();
    config.max_connections = args.max_connections as usize;
    config.max_handshakes = args.max_handshakes as usize;
    if let Some(pidfile) = args.pidfile.filter(|f| !f.as_os_str().is_empty()) {
        config.pidfile = Some(absolute(pidfile)?);
    }
    // An empty CIRCUIT_KEY_FILE means unset.
    if let Some(file) = args.key_file.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        let keys = circuit_sdk::secure::Keyring::from_file(&absolute(file.clone())?)?;
        config.keys = Some(keys);
    }
    if !args.join.is_empty() && args.listen.is_none() {
        anyhow::bail!("--join needs --listen: a node joins the mesh through its mesh port");
    }
    if args.advertise.is_some() && args.listen.is_none() {
        anyhow::bail!("--advertise needs --listen");
    }
    // Checked before anything is bound, so a refused start leaves nothing behind.
    let advertise = match &args.advertise {
        Some(addr) => {
            Some(resolve_one(addr).with_context(|| format!("cannot resolve --advertise {addr}"))?)
        }
        None => None,
    };
    if let (Some(listen), None) = (&args.listen, &config.keys) {
        let full = circuitd::listen::with_default_port(listen);
        circuitd::listen::check_loopback(&full, &circuitd::listen::resolve_listen(&full)?)?;
    }
    if let (Some(http), None) = (&args.http, &config.keys) {
        let full = circuitd::listen::with_port(http, circuitd::listen::DEFAULT_HTTP_PORT);
        circuitd::listen::check_http_loopback(&full, &circuitd::listen::resolve_listen(&full)?)?;
    }
    if let (Some(listen), None) = (&args.listen, advertise) {
        if resolve_one(listen).is_ok_and(|a| a.ip().is_unspecified()) {
            anyhow::bail!(
                "--listen {listen} is not an address other nodes can reach: add --advertise HOST:PORT"
            );
        }
    }
    config.max_payload = args.max_payload;
    config.max_channels = args.max_channels as usize;
    config.max_workers = args.max_workers as usize;
    config.max_requests_per_connection = args.max_requests_per_connection as usize;
    config.handshake_timeout = args.handshake_timeout;
    config.idle_timeout = args.idle_timeout;
    config.replica_repair_after = args.replica_repair_after;
    // This daemon's clients must ping within its idle timeout: its peer links (the mesh shares
    // one setting) and its workers. A quarter of it, at most the SDK's default, unless
    // CIRCUIT_KEEPALIVE_MS (in this daemon's environment) says otherwise.
    let quarter = (args.idle_timeout / 4).min(circuit_sdk::client::KEEPALIVE_DEFAULT);
    config.keepalive = circuit_sdk::ConnectOptions::default()
        .keepalive(Some(quarter))
        .keepalive_from_env()
        .keepalive;
    // A frame carries one value plus its headers.
    config.max_frame = config.max_frame.max(args.max_payload as usize + 64 * 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.map_or_else(default_threads, |n| n as usize))
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listeners = circuitd::Listeners::bind(
            &config.socket,
            args.listen.as_deref(),
            args.http.as_deref(),
            config.keys.is_some(),
        )
        .await?;
        if let Some(http) = &listeners.http {
            config.http = Some(http.local_addr()?.to_string());
        }
        if let Some(tcp) = &listeners.tcp {
            let at = tcp.local_addr()?;
            config.listen = Some(at.to_string());
            config.advertise = Some(advertise.unwrap_or(at));
        }
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        if let Some(keys) = config.keys.clone() {
            let mut hup = signal(SignalKind::hangup())?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match keys.reload() {
                        Ok(true) => tracing::info!(keys = ?keys.fingerprints(), "cluster keys reloaded"),
                        Ok(false) => tracing::info!("SIGHUP: the key file is unchanged"),
                        Err(e) => tracing::warn!(error = %e, "SIGHUP: keys not reloaded, the old ones stay"),
                    }
                }
            });
        }
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            on_signal.cancel();
        });
        circuitd::run(config, listeners, shutdown).await?;
        Ok(())
    })
}

/// Resolves `host[:port]` (port 7711 by default) to its first address.
fn resolve_one(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    let full = circuitd::listen::with_default_port(addr);
    std::net::ToSocketAddrs::to_socket_addrs(&full)?
        .next()
        .with_context(|| format!("{full} resolves to no address"))
}

/// `k=v` → (k, v).
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got \"{s}\"")),
    }
}

/// Workers get the socket path in their environment and may run elsewhere: make it absolute.
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}
