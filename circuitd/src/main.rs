//! `circuitd`: parse flags, set up logging, bind listeners, run until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The circuit daemon: supervises worker processes and serves the circuit API.
#[derive(Parser, Debug)]
#[command(name = "circuitd", version, about)]
struct Args {
    /// Unix socket to serve [default: /run/circuit/circuitd.sock for root, else
    /// $XDG_RUNTIME_DIR/circuit/circuitd.sock or /tmp/circuit-$UID/circuitd.sock]
    #[arg(long, env = "CIRCUIT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Mesh port: gossip (UDP), peer links and the API (TCP) at HOST[:PORT] (port 7711 by
    /// default; loopback only without a cluster key, see --insecure). Without it the daemon
    /// is a single node serving its Unix socket
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The mesh address other nodes reach this one at [default: the --listen address]
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Join the mesh through the node at HOST[:PORT]; repeatable; retried until one answers
    #[arg(long, value_name = "ADDR")]
    join: Vec<String>,
    /// A label of this node (k=v, repeatable), for `spawn --label k=v`
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Serve the mesh port on non-loopback addresses without authentication. Anyone who can
    /// reach the port can run processes here: only for networks you fully trust (test hosts)
    #[arg(long)]
    insecure: bool,
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
}

fn main() {
    // Workers are started through this binary in trampoline mode (see `spawner`).
    circuitd::exec_trampoline_if_requested();
    // An empty CIRCUIT_SOCKET means unset, as it does for the CLI and the SDK.
    if std::env::var_os("CIRCUIT_SOCKET").is_some_and(|v| v.is_empty()) {
        std::env::remove_var("CIRCUIT_SOCKET");
    }
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    if let (Some(listen), None) = (&args.listen, advertise) {
        if resolve_one(listen).is_ok_and(|a| a.ip().is_unspecified()) && args.insecure {
            anyhow::bail!(
                "--listen {listen} is not an address other nodes can reach: add --advertise HOST:PORT"
            );
        }
    }
    config.max_payload = args.max_payload;
    // A frame carries one value plus its headers.
    config.max_frame = config.max_frame.max(args.max_payload as usize + 64 * 1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listeners =
            circuitd::Listeners::bind(&config.socket, args.listen.as_deref(), args.insecure)
                .await?;
        if let Some(tcp) = &listeners.tcp {
            let at = tcp.local_addr()?;
            config.listen = Some(at.to_string());
            config.advertise = Some(advertise.unwrap_or(at));
        }
        let shutdown = CancellationToken::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
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
