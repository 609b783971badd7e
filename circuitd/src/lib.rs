//! `circuitd`, the circuit daemon, as a library: `main.rs` parses flags and calls [`run`] with
//! listeners it has bound, so tests can run a daemon on temp paths and `127.0.0.1:0`.
//!
//! # Layout
//! - [`config`]: every setting and its default.
//! - [`listen`]: binding the Unix socket and the TCP listener.
//! - `api`: accept loops, connections (hello, framing, dispatch).
//! - [`supervisor`]: workers: spawning, restart policy, stop, logs, the job table, recovery.
//! - `broker`: the channels this node owns, one actor each.
//! - [`membership`]: SWIM gossip, the node table, metadata and push-pull.
//! - `peer`: links to other daemons, for remote requests and channels.
//! - `persist`: atomic file replacement for the tables in the data dir.
//! - `pidfile`: the `--pidfile`, written once the data dir is ours, removed at exit.

mod api;
mod broker;
pub mod config;
pub mod listen;
pub mod membership;
mod peer;
mod persist;
mod pidfile;
pub mod supervisor;

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use listen::Listeners;
pub use supervisor::spawner::exec_trampoline_if_requested;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A listener could not be bound.
    #[error("{0}")]
    Bind(String),
    /// The data directory is in use or unusable.
    #[error("{0}")]
    DataDir(String),
    /// The supervisor could not start (e.g. an unreadable job table).
    #[error(transparent)]
    Supervisor(#[from] supervisor::SupervisorError),
    /// The broker could not start (e.g. an unreadable channel table).
    #[error("{0}")]
    Broker(String),
    /// The membership task could not start.
    #[error("cannot start gossip: {0}")]
    Mesh(String),
    /// The pidfile could not be written.
    #[error("cannot write the pidfile {path}: {error}")]
    Pidfile {
        /// The `--pidfile` path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Runs a daemon until `shutdown` is cancelled: restores the job table, serves the listeners,
/// then stops every worker within its grace period and removes the socket.
pub async fn run(
    config: Config,
    mut listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let tracker = TaskTracker::new();
    let started = async {
        let lock = lock_data_dir(&config.data_dir)?;
        // Only the one daemon of this data dir writes it; it goes when `run` returns.
        let pidfile = match &config.pidfile {
            Some(path) => {
                Some(
                    pidfile::Pidfile::write(path).map_err(|error| DaemonError::Pidfile {
                        path: path.display().to_string(),
                        error,
                    })?,
                )
            }
            None => None,
        };
        let sup = supervisor::Supervisor::start(config.clone(), tracker.clone(), shutdown.clone())
            .await?;
        let broker = broker::Broker::start(&config, tracker.clone(), shutdown.clone())
            .map_err(|e| DaemonError::Broker(e.to_string()))?;
        Ok::<_, DaemonError>((lock, pidfile, sup, broker))
    };
    let (_lock, pidfile, supervisor, broker) = match started.await {
        Ok(started) => started,
        Err(e) => {
            // Nothing was served: leave no socket behind.
            let _ = std::fs::remove_file(&listeners.unix_path);
            return Err(e);
        }
    };
    let started_at_ms = supervisor::now_ms();
    let membership = start_membership(
        &config,
        listeners.udp.take(),
        started_at_ms,
        &shutdown,
        &tracker,
    )?;
    let peers = peer::Peers::new(membership.clone(), config.keys.clone(), config.keepalive);
    let fixed = membership::publish::Fixed {
        name: config.name.clone(),
        labels: config.labels.clone(),
        started_at_ms,
    };
    tracker.spawn(membership::publish::publish(
        membership.clone(),
        supervisor.clone(),
        broker.clone(),
        fixed,
        shutdown.clone(),
    ));
    if membership.meshed() {
        tracker.spawn(peers.clone().watch(shutdown.clone()));
        tracker.spawn(peers.clone().follow_keys(shutdown.clone()));
        tracker.spawn(membership::publish::anti_entropy(
            membership.clone(),
            peers.clone(),
            shutdown.clone(),
        ));
        let addrs = resolve_all(&config.join);
        if !addrs.is_empty() {
            let _ = membership.join(addrs, None).await;
        }
    }
    tracing::info!(
        node = %config.name,
        socket = %listeners.unix_path.display(),
        listen = ?listeners.tcp.as_ref().and_then(|l| l.local_addr().ok()),
        data_dir = %config.data_dir.display(),
        "circuitd ready"
    );
    let ctx = Arc::new(api::Context {
        gate: api::Gate::new(&config),
        config,
        supervisor,
        broker,
        membership,
        peers,
        claims: Default::default(),
        instance: fastrand::u64(1..),
        started_at_ms,
        started: std::time::Instant::now(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    });
    tracker.spawn(api::serve_unix(listeners.unix, ctx.clone()));
    if let Some(tcp) = listeners.tcp {
        tracker.spawn(api::serve_tcp(tcp, ctx.clone()));
    }
    drop(ctx);
    shutdown.cancelled().await;
    tracing::info!("shutting down: stopping workers");
    tracker.close();
    tracker.wait().await;
    let _ = std::fs::remove_file(&listeners.unix_path);
    drop(pidfile); // removes it, while the data dir is still locked
    tracing::info!("stopped");
    Ok(())
}

/// Starts gossip on the mesh port, or a membership of one without it.
fn start_membership(
    config: &Config,
    udp: Option<std::net::UdpSocket>,
    started_at_ms: u64,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<membership::Membership, DaemonError> {
    let meta = |generation| membership::NodeMeta {
        name: config.name.clone(),
        generation,
        version: 1,
        labels: config.labels.clone(),
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms,
        ..membership::NodeMeta::default()
    };
    let Some(udp) = udp else {
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let me = membership::NodeId::new(config.name.clone(), unspecified);
        let meta = meta(me.generation);
        return Ok(membership::Membership::solo(me, meta));
    };
    let advertise = match config.advertise {
        Some(addr) => addr,
        None => udp
            .local_addr()
            .map_err(|e| DaemonError::Mesh(e.to_string()))?,
    };
    let me = membership::NodeId::new(config.name.clone(), advertise);
    let meta = meta(me.generation);
    membership::Membership::start(
        me,
        meta,
        udp,
        config.keys.clone(),
        shutdown.clone(),
        tracker,
    )
    .map_err(|e| DaemonError::Mesh(e.to_string()))
}

/// Resolves `host[:port]` addresses, warning about those that do not resolve.
pub(crate) fn resolve_all(addrs: &[String]) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for addr in addrs {
        let full = listen::with_default_port(addr);
        match full.to_socket_addrs() {
            Ok(found) => out.extend(found.take(1)),
            Err(e) => tracing::warn!(addr = %full, error = %e, "cannot resolve a join address"),
        }
    }
    out
}

/// Creates the data directory (0700) and takes an exclusive lock on it for the daemon's life,
/// so two daemons never share (and recover over) one job table.
fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    let fail = |why: String| DaemonError::DataDir(format!("data dir {}: {why}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| fail(e.to_string()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| fail("in use by another circuitd".into()))
}
