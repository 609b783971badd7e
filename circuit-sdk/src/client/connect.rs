//! Reaching a daemon: a [`Target`] (Unix socket or TCP address) and [`ConnectOptions`] (the
//! cluster key, the handshake timeout, the keepalive). The `connect*` calls open the transport
//! (TCP with the Noise handshake when there is a key) and start a connection on it. Only the
//! calls that read the environment anyway (`connect_default`, `connect`, …) read
//! [`KEEPALIVE_ENV`]; `connect_with` takes everything from its options.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::AsyncRead;

use super::Client;
use crate::connection::Connection;
use crate::error::Error;
use crate::linger::Linger;
use crate::secure::{noise, HandshakeError, Key, Keyring};

/// How long connecting and the handshake may take by default (see [`ConnectOptions`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variable that sets the keepalive interval in milliseconds (`0`: no pings),
/// for clients made by [`Client::connect`] and the calls built on it.
pub const KEEPALIVE_ENV: &str = "CIRCUIT_KEEPALIVE_MS";

/// The keepalive interval by default: a quarter of a daemon's default idle timeout.
pub const KEEPALIVE_DEFAULT: Duration = Duration::from_secs(30);

/// How a client reached its daemon, so a stream can reconnect the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address (`host:port`).
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// How to open a connection: [`Client::connect_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The cluster key for TCP (`None`: plain frames, for a keyless daemon on loopback).
    pub key: Option<Key>,
    /// How long connecting and the handshake (preamble, Noise, hello) may take in all;
    /// [`HANDSHAKE_TIMEOUT`] by default.
    pub handshake_timeout: Duration,
    /// How long the client may write nothing before it pings the daemon, so that a quiet
    /// connection outlives the daemon's idle timeout; `None`: never. [`KEEPALIVE_DEFAULT`] by
    /// default; a daemon with a shorter idle timeout needs at most a third of it.
    pub keepalive: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            key: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            keepalive: Some(KEEPALIVE_DEFAULT),
        }
    }
}

impl ConnectOptions {
    /// With this cluster key (TCP only).
    pub fn key(mut self, key: Option<Key>) -> Self {
        self.key = key;
        self
    }

    /// With this bound on connecting and the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// With this keepalive interval (`None`: no pings).
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval;
        self
    }

    /// With the keepalive interval [`KEEPALIVE_ENV`] sets, if it is set; otherwise unchanged.
    /// The variable is read once per process; a value that is not a number of milliseconds
    /// is ignored, with a warning.
    pub fn keepalive_from_env(mut self) -> Self {
        if let Some(interval) = env_keepalive() {
            self.keepalive = interval;
        }
        self
    }
}

/// The keepalive [`KEEPALIVE_ENV`] asks for, if it is set: `Some(None)` for `0` (no pings).
fn env_keepalive() -> Option<Option<Duration>> {
    static INTERVAL: OnceLock<Option<Option<Duration>>> = OnceLock::new();
    *INTERVAL.get_or_init(|| {
        let value = std::env::var_os(KEEPALIVE_ENV).filter(|v| !v.is_empty())?;
        match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(0) => Some(None),
            Some(ms) => Some(Some(Duration::from_millis(ms))),
            None => {
                tracing::warn!(
                    ?value,
                    "{KEEPALIVE_ENV} is not a number of milliseconds: ignored"
                );
                None
            }
        }
    })
}

impl Client {
    /// Connects to the socket named by `CIRCUIT_SOCKET`, or the default path.
    pub async fn connect_default() -> Result<Self, Error> {
        Self::connect_unix(crate::paths::socket_path()).await
    }

    /// Connects to a daemon's Unix socket.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect(&Target::Unix(path.as_ref().to_path_buf())).await
    }

    /// Connects to a daemon's TCP API (`host:port`), with the cluster key named by
    /// `CIRCUIT_KEY_FILE` when it is set.
    pub async fn connect_tcp(addr: &str) -> Result<Self, Error> {
        Self::connect(&Target::Tcp(addr.to_string())).await
    }

    /// Connects to a target, configured by the environment: over TCP the cluster key is the
    /// first key of the file named by `CIRCUIT_KEY_FILE`, when it is set (see
    /// [`Client::connect_with_key`]), and the keepalive is [`KEEPALIVE_ENV`]'s when it is set.
    pub async fn connect(target: &Target) -> Result<Self, Error> {
        let key = match target {
            Target::Unix(_) => None,
            Target::Tcp(_) => Keyring::from_env()
                .map_err(|e| Error::Key(e.to_string()))?
                .map(|ring| ring.primary()),
        };
        let options = ConnectOptions::default().key(key).keepalive_from_env();
        Self::connect_with(target, options).await
    }

    /// Connects to a target; over TCP, authenticates and encrypts with `key` (Noise `NNpsk0`,
    /// see [`crate::secure::noise`]), or speaks plain frames without one (a daemon without a
    /// key, on loopback). The Unix socket needs no key: the daemon checks the caller's uid.
    /// The handshake must finish within [`HANDSHAKE_TIMEOUT`], and the keepalive is
    /// [`KEEPALIVE_DEFAULT`]; see [`Client::connect_with`].
    pub async fn connect_with_key(target: &Target, key: Option<Key>) -> Result<Self, Error> {
        Self::connect_with(target, ConnectOptions::default().key(key)).await
    }

    /// Connects to a target with `options`: the cluster key for TCP, how long connecting
    /// and the handshake may take, and the keepalive. A peer that accepts the connection but
    /// does not answer circuit's handshake in time (another protocol, a silent socket, a
    /// stuck daemon) fails with [`Error::NoHandshake`] instead of waiting forever.
    pub async fn connect_with(target: &Target, options: ConnectOptions) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + options.handshake_timeout;
        let within = format!("{:?}", options.handshake_timeout);
        let failed = |reason| Error::Connect {
            target: target.to_string(),
            reason,
        };
        let no_answer = || Error::NoHandshake {
            target: target.to_string(),
            reason: format!("no answer within {within}"),
        };
        let connected = match target {
            Target::Unix(path) => {
                let stream =
                    tokio::time::timeout_at(deadline, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| failed(timed_out(&within)))?
                        .map_err(failed)?;
                let (r, w) = stream.into_split();
                let start = Self::start(r, w, Some(target.clone()), options);
                tokio::time::timeout_at(deadline, start).await
            }
            Target::Tcp(addr) => {
                let mut stream = tokio::time::timeout_at(
                    deadline,
                    tokio::net::TcpStream::connect(addr.as_str()),
                )
                .await
                .map_err(|_| failed(timed_out(&within)))?
                .map_err(failed)?;
                stream.set_nodelay(true)?;
                let target = target.clone();
                tokio::time::timeout_at(deadline, async move {
                    let session = noise::connect(&mut stream, options.key.as_ref())
                        .await
                        .map_err(|error| handshake_failed(&target, error))?;
                    let (r, w) = stream.into_split();
                    match session {
                        Some(session) => {
                            let (r, w) = session.wrap(r, w);
                            Self::start(r, w, Some(target), options).await
                        }
                        None => Self::start(r, w, Some(target), options).await,
                    }
                })
                .await
            }
        };
        connected.map_err(|_| no_answer())?
    }

    /// Connects again the way this client connected (a new connection, not shared).
    pub async fn reconnect(&self) -> Result<Self, Error> {
        match &self.inner.target {
            Some(target) => Self::connect_with(target, self.inner.options.clone()).await,
            None => Err(Error::Protocol(
                "this client was made over a transport it cannot reopen".into(),
            )),
        }
    }

    /// Runs the hello exchange over an already-open transport and starts the reader and
    /// writer. The keepalive is [`KEEPALIVE_ENV`]'s when it is set, else the default. The
    /// write half's [`Linger`] makes the last write when the runtime goes away (Unix and TCP
    /// halves wait for room; other transports get the default, one attempt).
    pub async fn handshake<R, W>(read: R, write: W) -> Result<Self, Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: Linger + Send + 'static,
    {
        let options = ConnectOptions::default().keepalive_from_env();
        Self::start(read, write, None, options).await
    }

    /// Starts a connection over `read` and `write` and makes it a client.
    async fn start<R, W>(
        read: R,
        write: W,
        target: Option<Target>,
        options: ConnectOptions,
    ) -> Result<Self, Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: Linger + Send + 'static,
    {
        let peer = target
            .as_ref()
            .map_or("the peer".to_string(), Target::to_string);
        let (conn, hello) = Connection::start(read, write, &peer, options.keepalive).await?;
        Ok(Self::new(conn, hello, target, options))
    }
}

/// The reason of a connect that got no answer in time.
fn timed_out(within: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {within}"),
    )
}

/// A failed Noise handshake; a status byte circuit does not know means another protocol answered.
fn handshake_failed(target: &Target, error: HandshakeError) -> Error {
    match error {
        HandshakeError::BadPreamble => Error::NoHandshake {
            target: target.to_string(),
            reason: "it answered with something else (another protocol?)".into(),
        },
        error => Error::Handshake {
            target: target.to_string(),
            error,
        },
    }
}
