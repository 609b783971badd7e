//! The API: one accept loop per listener (Unix socket and TCP alike), one task per connection.

mod chans;
mod connection;
mod dispatch;
mod keys;
mod remote;

use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::Config;
use crate::supervisor::Supervisor;

/// What every connection needs.
pub(crate) struct Context {
    pub config: Config,
    pub supervisor: Supervisor,
    pub broker: Broker,
    pub membership: crate::membership::Membership,
    pub peers: crate::peer::Peers,
    /// Channel names being created, for resolving two creates of one name.
    pub claims: chans::Claims,
    /// Random per start; sent in the hello so reconnecting clients notice a restart.
    pub instance: u64,
    pub started_at_ms: u64,
    pub started: std::time::Instant,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Serves the Unix socket until shutdown.
pub(crate) async fn serve_unix(listener: UnixListener, ctx: Arc<Context>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (r, w) = stream.into_split();
                    ctx.tracker.spawn(connection::serve(r, w, "unix".to_string(), ctx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the unix socket");
                    backoff_after_accept_error().await;
                }
            },
            () = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Serves the TCP listener until shutdown.
pub(crate) async fn serve_tcp(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (r, w) = stream.into_split();
                    ctx.tracker.spawn(connection::serve(r, w, peer.to_string(), ctx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the tcp listener");
                    backoff_after_accept_error().await;
                }
            },
            () = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Out of file descriptors and similar: pause instead of spinning.
async fn backoff_after_accept_error() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}
