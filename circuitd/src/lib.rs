//! `circuitd`, the circuit daemon, as a library: `main.rs` parses flags and calls [`run`] with
//! listeners it has bound, so tests can run a daemon on temp paths and `127.0.0.1:0`.
//!
//! # Layout
//! - [`config`]: every setting and its default.
//! - [`listen`]: binding the Unix socket and the TCP listener.
//! - `api`: accept loops, connections (hello, framing, dispatch).
//! - [`supervisor`]: workers: spawning, restart policy, stop, logs, the job table, recovery.
//! - `broker`: the channels this node owns, one actor each.
//! - `persist`: atomic file replacement for the tables in the data dir.

mod api;
mod broker;
pub mod config;
pub mod listen;
mod persist;
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
}

/// Runs a daemon until `shutdown` is cancelled: restores the job table, serves the listeners,
/// then stops every worker within its grace period and removes the socket.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let tracker = TaskTracker::new();
    let started = async {
        let lock = lock_data_dir(&config.data_dir)?;
        let sup = supervisor::Supervisor::start(config.clone(), tracker.clone(), shutdown.clone())
            .await?;
        let broker = broker::Broker::start(&config, tracker.clone(), shutdown.clone())
            .map_err(|e| DaemonError::Broker(e.to_string()))?;
        Ok::<_, DaemonError>((lock, sup, broker))
    };
    let (_lock, supervisor, broker) = match started.await {
        Ok(started) => started,
        Err(e) => {
            // Nothing was served: leave no socket behind.
            let _ = std::fs::remove_file(&listeners.unix_path);
            return Err(e);
        }
    };
    tracing::info!(
        node = %config.name,
        socket = %listeners.unix_path.display(),
        listen = ?listeners.tcp.as_ref().and_then(|l| l.local_addr().ok()),
        data_dir = %config.data_dir.display(),
        "circuitd ready"
    );
    let ctx = Arc::new(api::Context {
        config,
        supervisor,
        broker,
        instance: fastrand::u64(1..),
        started_at_ms: supervisor::now_ms(),
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
    tracing::info!("stopped");
    Ok(())
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
