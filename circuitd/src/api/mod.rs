//! The API: one accept loop per listener (Unix socket and TCP alike), one task per connection,
//! and the connection limits (`Gate`).
//!
//! A request's path, one file per step; each file uses only those after it:
//! - `connection`: the hello and the read loop; each request goes to the router in a task of
//!   its own, each channel stream's messages to whoever serves the stream ([`crate::stream`]).
//! - `router`: decides once where a request runs (here, on node N, per node, fan-out) and
//!   sends its one terminal reply.
//! - `remote`: running a request on another node; finding which node has a worker.
//! - the leaf handlers, one per area: `workers`, `logs`, `chans` (with `claims`), `cluster`,
//!   `keys`. They never call back into the router; those that ask other nodes use the peer
//!   links directly.
//! - `outbox`: the connection's output queues and its writer task; `error`: `ApiError`;
//!   `meters`: connections and requests counted for `/metrics`.
//! - `view`: the whole mesh at once (nodes, workers, channels) for the HTTP dashboard, from
//!   the same handlers as `nodes`, `ps -a` and `chan ls`.

mod chans;
mod claims;
mod cluster;
mod connection;
mod error;
mod events;
mod keys;
mod logs;
pub(crate) mod meters;
mod outbox;
mod remote;
mod replicated;

pub(crate) use replicated::repairs;
mod router;
pub(crate) mod view;
mod workers;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{Frame, FrameCodec};
use circuit_sdk::secure::noise::{self, Accepted, HandshakeError, Status};
use circuit_sdk::secure::Keyring;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::Config;
use crate::supervisor::Supervisor;
pub(crate) use error::ApiError;

/// What every connection needs.
pub(crate) struct Context {
    pub config: Config,
    pub supervisor: Supervisor,
    pub broker: Broker,
    pub membership: crate::membership::Membership,
    pub peers: crate::peer::Peers,
    /// Channel names being created, for resolving two creates of one name.
    pub claims: claims::Claims,
    /// Keys for the channel streams of every connection.
    pub stream_keys: crate::stream::Keys,
    /// Random per start; sent in the hello so reconnecting clients notice a restart.
    pub instance: u64,
    pub started_at_ms: u64,
    pub started: std::time::Instant,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// Connection limits.
    pub gate: Gate,
    /// Connections and requests, counted for `/metrics`.
    pub meters: meters::Meters,
}

/// Connection limits and the record of refused peers, shared by both listeners.
pub(crate) struct Gate {
    /// One permit per connection served (Unix socket and TCP).
    connections: Arc<Semaphore>,
    /// One permit per TCP connection in its handshake.
    handshakes: Arc<Semaphore>,
    /// Addresses already warned about a failed authentication (logged once per peer).
    warned: Mutex<HashSet<IpAddr>>,
}

impl Gate {
    pub fn new(config: &Config) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
            warned: Mutex::default(),
        }
    }

    /// Logs a refused handshake: a warning the first time for an address, then debug lines.
    fn refused(&self, peer: SocketAddr, why: &HandshakeError) {
        let auth = matches!(
            why,
            HandshakeError::AuthFailed | HandshakeError::KeyRequired
        );
        let first = auth && {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            warned.len() < 4096 && warned.insert(peer.ip())
        };
        if first {
            tracing::warn!(
                %peer,
                "connection refused: {why} (further refusals from this address are logged at debug level)"
            );
        } else {
            tracing::debug!(%peer, error = %why, "connection refused");
        }
    }
}

/// Serves the Unix socket until shutdown. Only this daemon's user (and root) may connect.
pub(crate) async fn serve_unix(listener: UnixListener, ctx: Arc<Context>) {
    let me = nix::unistd::geteuid().as_raw();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let uid = stream.peer_cred().map(|c| c.uid());
                    let admitted = match uid {
                        Ok(uid) if uid == me || uid == 0 => ctx
                            .gate
                            .connections
                            .clone()
                            .try_acquire_owned()
                            .map_err(|_| busy(&ctx)),
                        Ok(uid) => Err(ApiError::PermissionDenied(
                            format!("uid {uid} may not use this circuitd (it serves uid {me} and root only)"),
                        )),
                        Err(ref e) => Err(ApiError::PermissionDenied(format!("cannot check the caller's uid: {e}"))),
                    };
                    let (r, w) = stream.into_split();
                    match admitted {
                        Ok(permit) => {
                            ctx.tracker.spawn(connection::serve(r, w, "unix".to_string(), ctx.clone())
                                .map(move |()| drop(permit)));
                        }
                        Err(refused) => {
                            tracing::debug!(uid = ?uid.as_ref().ok(), %refused, "unix connection refused");
                            ctx.tracker.spawn(refuse_framed(r, w, refused));
                        }
                    }
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

/// The refusal of a connection over the limit.
fn busy(ctx: &Context) -> ApiError {
    ApiError::LimitReached(format!(
        "circuitd serves {} connections, its limit (--max-connections)",
        ctx.config.max_connections
    ))
}

/// Answers a connection's hello with an error and closes it.
async fn refuse_framed<R, W>(read: R, write: W, refused: ApiError)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FramedRead::new(read, FrameCodec::new(64 * 1024));
    let mut writer = FramedWrite::new(write, FrameCodec::new(64 * 1024));
    // Read the hello first, so closing does not reset the connection under the reply.
    let _ = tokio::time::timeout(REFUSE_WAIT, reader.next()).await;
    if let Ok(body) = serde_json::to_vec(&refused.reply(None)) {
        let _ = tokio::time::timeout(REFUSE_WAIT, writer.send(Frame::Control(body.into()))).await;
    }
}

/// How long a refused connection is given to say hello and read why.
const REFUSE_WAIT: Duration = Duration::from_secs(1);

/// Serves the TCP listener until shutdown: the handshake (with the cluster key, when the
/// daemon has one) within the handshake timeout, then the protocol over its records.
pub(crate) async fn serve_tcp(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = ctx.gate.connections.clone().try_acquire_owned();
                    let hs = ctx.gate.handshakes.clone().try_acquire_owned();
                    let (Ok(conn), Ok(hs)) = (conn, hs) else {
                        // Over a limit: say so without waiting for anything, and close.
                        tracing::debug!(%peer, "connection refused: at the connection or handshake limit");
                        let _ = stream.try_write(&[Status::Busy as u8]);
                        continue;
                    };
                    ctx.tracker.spawn(serve_tcp_connection(stream, peer, ctx.clone(), conn, hs));
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

async fn serve_tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    conn: OwnedSemaphorePermit,
    hs: OwnedSemaphorePermit,
) {
    let keys = ctx.config.keys.as_ref();
    let handshake = async {
        let mode = noise::read_preamble(&mut stream).await?;
        noise::accept(&mut stream, mode, keys).await
    };
    let accepted = tokio::select! {
        done = tokio::time::timeout(ctx.config.handshake_timeout, handshake) => done,
        () = ctx.shutdown.cancelled() => return,
    };
    drop(hs);
    let session = match accepted {
        Err(_) => {
            tracing::debug!(%peer, "connection dropped: no handshake within the handshake timeout");
            return;
        }
        Ok(Err(e)) => {
            ctx.gate.refused(peer, &e);
            return;
        }
        Ok(Ok(Accepted::Plain)) => {
            let (r, w) = stream.into_split();
            connection::serve(r, w, peer.to_string(), ctx).await;
            drop(conn);
            return;
        }
        Ok(Ok(Accepted::Secure(session))) => session,
    };
    let keys = keys.expect("a secure session needs keys").clone();
    let fingerprint = session.fingerprint().to_string();
    let (r, w) = stream.into_split();
    let (r, w) = session.wrap(r, w);
    tokio::select! {
        () = connection::serve(r, w, peer.to_string(), ctx.clone()) => {}
        () = retired(&keys, &fingerprint) => {
            tracing::info!(%peer, key = %fingerprint, "connection closed: its cluster key was retired");
        }
    }
    drop(conn);
}

/// Resolves once the key `fingerprint` is no longer held.
async fn retired(keys: &Keyring, fingerprint: &str) {
    let mut changed = keys.subscribe();
    loop {
        if !keys.holds(fingerprint) {
            return;
        }
        if changed.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Out of file descriptors and similar: pause instead of spinning.
async fn backoff_after_accept_error() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}
