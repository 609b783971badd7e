//! `circuitd`, the circuit daemon, as a library: `main.rs` parses flags and calls [`run`] with
//! listeners it has bound, so tests can run a daemon on temp paths and `127.0.0.1:0`.
//!
//! # Layout
//! Dependencies go one way (`python3 ../shared/tools/modcycles.py circuitd/src` finds no
//! cycle): `main → lib → {api, publish, http}; http → api; api, publish → {broker, supervisor,
//! membership, peer}; api, broker, peer, supervisor → stream; peer → membership; broker,
//! membership, supervisor → clock; api, publish → host`; `config`, `listen` and `persist` use
//! nothing of the daemon.
//! - [`config`]: every setting and its default.
//! - [`listen`]: binding the Unix socket and the mesh port; resolving join addresses.
//! - `api`: accept loops and connections; the router that decides where a request runs; one
//!   handler per area (workers, logs, channels, cluster, keys).
//! - `stream`: the contract between a connection and whoever serves one of its streams
//!   (stream keys, messages in, frames out).
//! - `broker`: the channels this node owns, one actor each, serving their streams.
//! - `peer`: links to other daemons: requests run on another node, relays of streams another
//!   node serves (channels it owns, its workers' stdin), the requests only daemons send each
//!   other.
//! - [`supervisor`]: workers: spawning, restart policy, stop, logs, their stdin, the job table,
//!   recovery.
//! - [`membership`]: SWIM gossip and the node table (state and metadata of every node).
//! - `http`: the `--http` listener: `/metrics` (Prometheus text) and the read-only web
//!   dashboard of the mesh.
//! - `publish`: this node's metadata (workers, channels) published to the mesh, and push-pull.
//! - `clock`: the wall clock in milliseconds.
//! - `host`: this host's load average and memory, from `/proc`.
//! - `persist`: atomic file replacement for the tables in the data dir.
//! - `pidfile`: the `--pidfile`, written once the data dir is ours, removed at exit.

mod api;
mod broker;
mod clock;
pub mod config;
mod failover;
mod host;
mod http;
pub mod listen;
pub mod membership;
mod peer;
mod persist;
mod pidfile;
mod publish;
mod stream;
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
    #[error(transparent)]
    Bind(#[from] listen::BindError),
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

/// Runs a daemon until `shutdown` is cancelled: restores the job table and the channel table,
/// starts gossip and the peer links when there is a mesh port (joining the `join` addresses),
/// serves the listeners, then stops every worker within its grace period and removes the
/// socket.
pub async fn run(
    config: Config,
    mut listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let tracker = TaskTracker::new();
    // What a worker's processes leave orphaned is reparented to the daemon, not init, so the
    // supervisor still sees (and a stop still ends) descendants that left the worker's group.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper: descendants that leave a worker's process group go unseen");
    }
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
    let started_at_ms = clock::now_ms();
    let membership = start_membership(
        &config,
        listeners.udp.take(),
        started_at_ms,
        &shutdown,
        &tracker,
    )?;
    let peers = peer::Peers::new(membership.clone(), config.keys.clone(), config.keepalive);
    let fixed = publish::Fixed {
        name: config.name.clone(),
        labels: config.labels.clone(),
        started_at_ms,
    };
    tracker.spawn(publish::publish(
        membership.clone(),
        supervisor.clone(),
        broker.clone(),
        fixed,
        shutdown.clone(),
    ));
    // Replicas reach each other over the peer links (a channel on disk of a daemon without
    // a mesh is a group of one, which never calls).
    broker.set_transport(Arc::new(peer::raft_link::RaftLinks::new(peers.clone())));
    let restored = broker.restore_replicas().await;
    if !restored.is_empty() {
        tracing::info!(channels = ?restored, "channels kept on disk started again");
    }
    if membership.meshed() {
        tracker.spawn(failover::follow(
            membership.clone(),
            broker.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(peers.clone().watch(shutdown.clone()));
        tracker.spawn(peers.clone().follow_keys(shutdown.clone()));
        tracker.spawn(publish::anti_entropy(
            membership.clone(),
            peers.clone(),
            shutdown.clone(),
        ));
        let addrs = listen::resolve_all(&config.join);
        if !addrs.is_empty() {
            let _ = membership.join(addrs, None).await;
        }
    }
    tracing::info!(
        node = %config.name,
        socket = %listeners.unix_path.display(),
        listen = ?listeners.tcp.as_ref().and_then(|l| l.local_addr().ok()),
        http = ?config.http,
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
        stream_keys: Default::default(),
        instance: fastrand::u64(1..),
        started_at_ms,
        started: std::time::Instant::now(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
        meters: Default::default(),
    });
    tracker.spawn(api::repairs(ctx.clone()));
    tracker.spawn(api::serve_unix(listeners.unix, ctx.clone()));
    if let Some(tcp) = listeners.tcp {
        tracker.spawn(api::serve_tcp(tcp, ctx.clone()));
    }
    if let Some(listener) = listeners.http {
        tracker.spawn(http::serve(listener, ctx.clone()));
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
