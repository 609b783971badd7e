//! `Client`: one connection to a daemon, shared by many concurrent requests and channel streams.
//! A reader task routes replies and stream frames by request id; a writer task owns the write
//! half and coalesces what is queued into as few writes as possible.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::Error;
use crate::proto::{
    ClientMessage, Frame, FrameCodec, Item, Reply, Request, ServerMessage, PROTOCOL_VERSION,
};
use crate::secure::{noise, Key, Keyring};

/// Largest frame a client reads or writes: the largest value a daemon can be configured for.
const CLIENT_MAX_FRAME: usize = (1 << 30) + 64 * 1024;

/// Most frames of one stream handed to it at once.
const READ_BATCH: usize = 256;

/// Bytes the writer buffers before writing without waiting for more.
const WRITE_BUFFER: usize = 256 * 1024;

/// Where replies to one request go.
enum Route {
    /// A request: its messages go to the waiting caller.
    Reply(mpsc::UnboundedSender<Result<ServerMessage, Error>>),
    /// A channel stream: its messages and frames go to the stream's handler.
    Stream(Arc<dyn StreamHandler>),
}

/// The side of a channel stream that the reader task drives. Public for relays (a daemon
/// passing a stream on to the channel's owner); workers use [`crate::chan`] instead.
pub trait StreamHandler: Send + Sync {
    /// A control message for the stream (its opening item, or its terminal error).
    fn on_message(&self, msg: ServerMessage);
    /// Data and signal frames for the stream, in order, as many as were read in one go.
    fn on_frames(&self, frames: Vec<Frame>);
    /// The connection is gone.
    fn on_lost(&self, error: Error);
}

/// Produces frames when the writer gets to it, so many small updates (acks, credit) queued
/// while the writer was busy go out as one frame.
pub(crate) trait Pull: Send + Sync {
    /// Appends the frames to write now; `token` is what was given to [`Client::schedule`].
    fn pull(&self, token: u64, out: &mut Vec<Frame>);
}

/// What the writer task writes.
pub(crate) enum Outgoing {
    Frame(Frame),
    Pull(Arc<dyn Pull>, u64),
}

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

/// How long connecting and the handshake may take by default (see [`ConnectOptions`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open a connection: [`Client::connect_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The cluster key for TCP (`None`: plain frames, for a keyless daemon on loopback).
    pub key: Option<Key>,
    /// How long connecting and the handshake (preamble, Noise, hello) may take in all;
    /// [`HANDSHAKE_TIMEOUT`] by default.
    pub handshake_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            key: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
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
}

/// A connection to a circuitd. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    out: mpsc::UnboundedSender<Outgoing>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    node: String,
    daemon_version: String,
    instance: u64,
    target: Option<Target>,
    /// The cluster key a TCP connection was made with, to reconnect with it.
    key: Option<Key>,
    /// How long the handshake of a reconnection may take.
    handshake_timeout: Duration,
}

/// Replies in flight, by request id; `None` once the connection is gone.
type Routes = Option<HashMap<u64, Route>>;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// What [`ReplyStream::next`] yields.
#[derive(Debug)]
pub enum Next {
    /// A streamed part; more follow.
    Item(Item),
    /// The terminal result; the stream is over.
    End(Reply),
}

/// The replies to one streaming request. Dropping it before the end cancels the request.
#[derive(Debug)]
pub struct ReplyStream {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<ServerMessage, Error>>,
    client: Client,
    finished: bool,
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

    /// Connects to a target. Over TCP the cluster key is the first key of the file named by
    /// `CIRCUIT_KEY_FILE`, when it is set; see [`Client::connect_with_key`].
    pub async fn connect(target: &Target) -> Result<Self, Error> {
        let key = match target {
            Target::Unix(_) => None,
            Target::Tcp(_) => Keyring::from_env()
                .map_err(|e| Error::Key(e.to_string()))?
                .map(|ring| ring.primary()),
        };
        Self::connect_with_key(target, key).await
    }

    /// Connects to a target; over TCP, authenticates and encrypts with `key` (Noise `NNpsk0`,
    /// see [`crate::secure::noise`]), or speaks plain frames without one (a daemon without a
    /// key, on loopback). The Unix socket needs no key: the daemon checks the caller's uid.
    /// The handshake must finish within [`HANDSHAKE_TIMEOUT`]; see [`Client::connect_with`].
    pub async fn connect_with_key(target: &Target, key: Option<Key>) -> Result<Self, Error> {
        Self::connect_with(target, ConnectOptions::default().key(key)).await
    }

    /// Connects to a target with `options`: the cluster key for TCP, and how long connecting
    /// and the handshake may take. A peer that accepts the connection but does not answer
    /// circuit's handshake in time (another protocol, a silent socket, a stuck daemon) fails
    /// with [`Error::NoHandshake`] instead of waiting forever.
    pub async fn connect_with(target: &Target, options: ConnectOptions) -> Result<Self, Error> {
        let timeout = options.handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
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
                tokio::time::timeout_at(
                    deadline,
                    Self::start(r, w, Some(target.clone()), None, timeout),
                )
                .await
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
                let key = options.key.clone();
                let target = target.clone();
                tokio::time::timeout_at(deadline, async move {
                    let session = noise::connect(&mut stream, key.as_ref())
                        .await
                        .map_err(|error| handshake_failed(&target, error))?;
                    let (r, w) = stream.into_split();
                    match session {
                        Some(session) => {
                            let (r, w) = session.wrap(r, w);
                            Self::start(r, w, Some(target), key, timeout).await
                        }
                        None => Self::start(r, w, Some(target), None, timeout).await,
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
            Some(target) => {
                let options = ConnectOptions::default()
                    .key(self.inner.key.clone())
                    .handshake_timeout(self.inner.handshake_timeout);
                Self::connect_with(target, options).await
            }
            None => Err(Error::Protocol(
                "this client was made over a transport it cannot reopen".into(),
            )),
        }
    }

    /// Runs the hello exchange over an already-open transport and starts the reader and writer.
    pub async fn handshake<R, W>(read: R, write: W) -> Result<Self, Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Self::start(read, write, None, None, HANDSHAKE_TIMEOUT).await
    }

    async fn start<R, W>(
        read: R,
        write: W,
        target: Option<Target>,
        key: Option<Key>,
        handshake_timeout: Duration,
    ) -> Result<Self, Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        // A daemon may be configured for values up to 1 GiB; the client takes what it sends.
        let mut reader = FramedRead::new(read, FrameCodec::new(CLIENT_MAX_FRAME));
        let mut writer = FramedWrite::new(write, FrameCodec::new(CLIENT_MAX_FRAME));
        writer.set_backpressure_boundary(WRITE_BUFFER);
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: format!("circuit-sdk/{}", env!("CARGO_PKG_VERSION")),
        };
        writer.send(encode(&hello)?).await?;
        // Anything but a hello (or a daemon's refusal) means the peer does not speak circuit.
        let peer = target
            .as_ref()
            .map_or("the peer".to_string(), Target::to_string);
        let not_circuit = |what: String| Error::NoHandshake {
            target: peer.clone(),
            reason: format!("it answered with something else ({what})"),
        };
        let (node, daemon_version, instance) = match reader.next().await {
            None => return Err(Error::Disconnected),
            Some(Err(e)) => return Err(not_circuit(e.to_string())),
            Some(Ok(Frame::Control(body))) => match decode_message(&body) {
                Ok(ServerMessage::Hello {
                    version,
                    node,
                    daemon_version,
                    instance,
                }) => {
                    if version != PROTOCOL_VERSION {
                        return Err(Error::Protocol(format!(
                            "circuitd {daemon_version} speaks protocol {version}, \
                             this client speaks {PROTOCOL_VERSION}"
                        )));
                    }
                    (node, daemon_version, instance)
                }
                Ok(ServerMessage::Error { code, message, .. }) => {
                    return Err(Error::Remote { code, message })
                }
                Ok(other) => return Err(not_circuit(format!("expected hello, got {other:?}"))),
                Err(e) => return Err(not_circuit(e.to_string())),
            },
            Some(Ok(other)) => return Err(not_circuit(format!("expected hello, got {other:?}"))),
        };

        let routes: Arc<Mutex<Routes>> = Arc::new(Mutex::new(Some(HashMap::new())));
        let (out, out_rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(write_loop(writer, out_rx));
        let reader_routes = routes.clone();
        tokio::spawn(async move {
            let mut notice = None;
            let failure = loop {
                match reader.next().await {
                    None => break notice.take().unwrap_or(Error::Disconnected),
                    Some(Err(e)) => break Error::Frame(e),
                    Some(Ok(Frame::Control(body))) => match decode_message(&body) {
                        Err(e) => break e,
                        Ok(msg) => {
                            if let Some(err) = route(&reader_routes, &mut notice, msg) {
                                break err;
                            }
                        }
                    },
                    Some(Ok(frame)) => {
                        // Hand over every frame of this stream already read, in one batch.
                        let id = stream_of(&frame);
                        let mut batch = vec![frame];
                        let mut after = None;
                        while batch.len() < READ_BATCH {
                            match reader.next().now_or_never() {
                                Some(Some(Ok(next))) if stream_of(&next) == id => batch.push(next),
                                Some(next) => {
                                    after = Some(next);
                                    break;
                                }
                                None => break,
                            }
                        }
                        route_frames(&reader_routes, id, batch);
                        match after {
                            None => {}
                            Some(None) => break notice.take().unwrap_or(Error::Disconnected),
                            Some(Some(Err(e))) => break Error::Frame(e),
                            Some(Some(Ok(Frame::Control(body)))) => match decode_message(&body) {
                                Err(e) => break e,
                                Ok(msg) => {
                                    if let Some(err) = route(&reader_routes, &mut notice, msg) {
                                        break err;
                                    }
                                }
                            },
                            Some(Some(Ok(frame))) => {
                                let id = stream_of(&frame);
                                route_frames(&reader_routes, id, vec![frame]);
                            }
                        }
                    }
                }
            };
            let taken = reader_routes.lock().expect("routes lock").take();
            for (_, route) in taken.into_iter().flatten() {
                match route {
                    Route::Reply(tx) => {
                        let _ = tx.send(Err(clone_error(&failure)));
                    }
                    Route::Stream(handler) => handler.on_lost(clone_error(&failure)),
                }
            }
        });

        Ok(Self {
            inner: Arc::new(Inner {
                out,
                routes,
                next_id: AtomicU64::new(1),
                node,
                daemon_version,
                instance,
                target,
                key,
                handshake_timeout,
            }),
        })
    }

    /// The daemon's instance: random per daemon start, so a restart can be told apart.
    pub fn instance(&self) -> u64 {
        self.inner.instance
    }

    /// True once the connection is gone: every request on it fails from now on.
    pub fn is_closed(&self) -> bool {
        self.inner.out.is_closed() || self.inner.routes.lock().expect("routes lock").is_none()
    }

    /// How this client reached its daemon, if it made the connection itself.
    pub fn target(&self) -> Option<&Target> {
        self.inner.target.as_ref()
    }

    /// Opens a stream request: its messages and frames go to `handler` until it ends.
    /// Low-level, for relays; workers use [`crate::chan`].
    pub fn open_stream(
        &self,
        request: Request,
        handler: Arc<dyn StreamHandler>,
    ) -> Result<u64, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        match self.inner.routes.lock().expect("routes lock").as_mut() {
            Some(map) => {
                map.insert(id, Route::Stream(handler));
            }
            None => return Err(Error::Disconnected),
        }
        let frame = encode(&ClientMessage::Request { id, request })?;
        if self.inner.out.send(Outgoing::Frame(frame)).is_err() {
            self.forget(id);
            return Err(Error::Disconnected);
        }
        Ok(id)
    }

    /// Ends a stream from this side: its route is dropped and the daemon told.
    pub fn close_stream(&self, id: u64) {
        self.forget(id);
        if let Ok(frame) = encode(&ClientMessage::Cancel { id }) {
            let _ = self.inner.out.send(Outgoing::Frame(frame));
        }
    }

    /// Asks the daemon to end a stream, keeping its route so the terminal reply is seen.
    pub fn cancel_stream(&self, id: u64) {
        if let Ok(frame) = encode(&ClientMessage::Cancel { id }) {
            let _ = self.inner.out.send(Outgoing::Frame(frame));
        }
    }

    /// Queues a frame; false when the connection is gone.
    pub fn send_frame(&self, frame: Frame) -> bool {
        self.inner.out.send(Outgoing::Frame(frame)).is_ok()
    }

    /// Asks the writer to call `pull` when it gets to it.
    pub(crate) fn schedule(&self, pull: Arc<dyn Pull>, token: u64) -> bool {
        self.inner.out.send(Outgoing::Pull(pull, token)).is_ok()
    }

    /// The name of the node this client is connected to.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The version of the daemon this client is connected to.
    pub fn daemon_version(&self) -> &str {
        &self.inner.daemon_version
    }

    /// Sends a request and waits for its terminal reply, skipping any streamed items.
    pub async fn call(&self, request: Request) -> Result<Reply, Error> {
        let mut stream = self.stream(request).await?;
        loop {
            if let Next::End(reply) = stream.next().await? {
                return Ok(reply);
            }
        }
    }

    /// Sends a request and returns its stream of replies.
    pub async fn stream(&self, request: Request) -> Result<ReplyStream, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        match self.inner.routes.lock().expect("routes lock").as_mut() {
            Some(map) => {
                map.insert(id, Route::Reply(tx));
            }
            None => return Err(Error::Disconnected),
        }
        let frame = encode(&ClientMessage::Request { id, request })?;
        if self.inner.out.send(Outgoing::Frame(frame)).is_err() {
            self.forget(id);
            return Err(Error::Disconnected);
        }
        Ok(ReplyStream {
            id,
            rx,
            client: self.clone(),
            finished: false,
        })
    }

    fn forget(&self, id: u64) {
        if let Some(map) = self.inner.routes.lock().expect("routes lock").as_mut() {
            map.remove(&id);
        }
    }
}

impl ReplyStream {
    /// The next streamed item, or the terminal reply. After the terminal reply, `Disconnected`.
    pub async fn next(&mut self) -> Result<Next, Error> {
        if self.finished {
            return Err(Error::Disconnected);
        }
        let msg = match self.rx.recv().await {
            Some(msg) => msg,
            None => Err(Error::Disconnected),
        };
        match msg {
            Ok(ServerMessage::Item { item, .. }) => Ok(Next::Item(item)),
            Ok(ServerMessage::Ok { reply, .. }) => {
                self.finished = true;
                Ok(Next::End(reply))
            }
            Ok(ServerMessage::Error { code, message, .. }) => {
                self.finished = true;
                Err(Error::Remote { code, message })
            }
            Ok(other) => {
                self.finished = true;
                Err(Error::Protocol(format!("unexpected message {other:?}")))
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        self.client.forget(self.id);
        if !self.finished {
            if let Ok(frame) = encode(&ClientMessage::Cancel { id: self.id }) {
                let _ = self.client.inner.out.send(Outgoing::Frame(frame));
            }
        }
    }
}

/// Delivers one message to its request. Returns an error that ends the connection, if any.
/// A connection-level error (no id) is kept as the likely reason should the connection close.
fn route(routes: &Mutex<Routes>, notice: &mut Option<Error>, msg: ServerMessage) -> Option<Error> {
    let (id, terminal) = match &msg {
        ServerMessage::Item { id, .. } => (*id, false),
        ServerMessage::Ok { id, .. } => (*id, true),
        ServerMessage::Error { id: Some(id), .. } => (*id, true),
        ServerMessage::Error {
            id: None,
            code,
            message,
        } => {
            tracing::debug!(%code, %message, "connection-level error from circuitd");
            *notice = Some(Error::Remote {
                code: *code,
                message: message.clone(),
            });
            return None;
        }
        ServerMessage::Hello { .. } => return Some(Error::Protocol("second hello".into())),
    };
    let mut guard = routes.lock().expect("routes lock");
    let map = guard.as_mut()?;
    let route = if terminal {
        map.remove(&id)
    } else {
        match map.get(&id) {
            Some(Route::Reply(tx)) => Some(Route::Reply(tx.clone())),
            Some(Route::Stream(h)) => Some(Route::Stream(h.clone())),
            None => None,
        }
    };
    drop(guard);
    match route {
        Some(Route::Reply(tx)) => {
            let _ = tx.send(Ok(msg));
        }
        Some(Route::Stream(handler)) => handler.on_message(msg),
        None => {}
    }
    None
}

/// The stream a data or signal frame belongs to.
fn stream_of(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::Data { id, .. } | Frame::Signal { id, .. } => Some(*id),
        Frame::Control(_) => None,
    }
}

/// Delivers data and signal frames of one stream; frames of streams already ended are dropped.
fn route_frames(routes: &Mutex<Routes>, id: Option<u64>, frames: Vec<Frame>) {
    let Some(id) = id else {
        return;
    };
    let handler = match routes.lock().expect("routes lock").as_ref() {
        Some(map) => match map.get(&id) {
            Some(Route::Stream(h)) => h.clone(),
            _ => return,
        },
        None => return,
    };
    handler.on_frames(frames);
}

/// The writer task: everything queued, coalesced into as few writes as possible.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: FramedWrite<W, FrameCodec>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut w = Writer {
        framed: writer,
        rx,
        pulled: Vec::new(),
        broken: false,
    };
    let mut keepalive = Keepalive::new(keepalive_interval());
    while let Some(first) = keepalive.next(&mut w.rx).await {
        let mut next = Some(first);
        while let Some(out) = next {
            match out {
                Outgoing::Frame(frame) => {
                    if w.framed.feed(frame).await.is_err() {
                        w.broken = true;
                        return;
                    }
                }
                Outgoing::Pull(source, token) => {
                    source.pull(token, &mut w.pulled);
                    for frame in std::mem::take(&mut w.pulled) {
                        if w.framed.feed(frame).await.is_err() {
                            w.broken = true;
                            return;
                        }
                    }
                }
            }
            next = w.rx.try_recv().ok();
        }
        if w.framed.flush().await.is_err() {
            w.broken = true;
            return;
        }
        keepalive.sent();
    }
}

/// The writer task's state. Dropping it — which is what happens to the task when the runtime
/// shuts down because `main` returned — writes what is still queued without waiting: the
/// acknowledgements and stream ends a program's handles queued as they were dropped on its
/// way out. Without this, a value the application received just before exiting would go back
/// to its channel and be delivered again (CHANNELS.md rule 8).
struct Writer<W: AsyncWrite + Unpin> {
    framed: FramedWrite<W, FrameCodec>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    pulled: Vec<Frame>,
    /// A write failed: nothing more can go out.
    broken: bool,
}

impl<W: AsyncWrite + Unpin> Drop for Writer<W> {
    fn drop(&mut self) {
        if self.broken {
            return;
        }
        let mut queued = false;
        while let Ok(out) = self.rx.try_recv() {
            match out {
                Outgoing::Frame(frame) => self.pulled.push(frame),
                Outgoing::Pull(source, token) => source.pull(token, &mut self.pulled),
            }
        }
        for frame in self.pulled.drain(..) {
            // Encoding into the write buffer never waits; only the write to the socket may.
            if Pin::new(&mut self.framed).start_send(frame).is_err() {
                return;
            }
            queued = true;
        }
        if queued || !self.framed.write_buffer().is_empty() {
            // One attempt, without waiting: a socket with room takes these few bytes now.
            let _ = self.framed.flush().now_or_never();
        }
    }
}

/// The environment variable that sets the keepalive interval in milliseconds (`0`: no pings).
pub const KEEPALIVE_ENV: &str = "CIRCUIT_KEEPALIVE_MS";

/// Keepalive interval without [`KEEPALIVE_ENV`]: a quarter of a daemon's default idle timeout.
pub const KEEPALIVE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client may send nothing before it pings: [`KEEPALIVE_ENV`], else
/// [`KEEPALIVE_DEFAULT`]; `None` for no pings. Read once per process.
fn keepalive_interval() -> Option<std::time::Duration> {
    static INTERVAL: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *INTERVAL.get_or_init(|| {
        let Some(value) = std::env::var_os(KEEPALIVE_ENV).filter(|v| !v.is_empty()) else {
            return Some(KEEPALIVE_DEFAULT);
        };
        match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(0) => None,
            Some(ms) => Some(std::time::Duration::from_millis(ms)),
            None => {
                tracing::warn!(
                    ?value,
                    "{KEEPALIVE_ENV} is not a number of milliseconds: using 30000"
                );
                Some(KEEPALIVE_DEFAULT)
            }
        }
    })
}

/// Pings the daemon when the client has written nothing for `interval`, so a quiet but healthy
/// connection outlives the daemon's idle timeout (which closes connections that send nothing
/// and have nothing open). Lives in the writer task: it sees every write, and ends with it.
///
/// A ping is a `ping` request with an id counting down from `u64::MAX`, which request ids
/// (counting up from 1) never reach. It has no route: its reply is dropped by [`route`] as
/// that of an unknown request, so nothing is left behind.
struct Keepalive {
    interval: Option<std::time::Duration>,
    /// When the writer last flushed.
    last_sent: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    next_id: u64,
}

impl Keepalive {
    fn new(interval: Option<std::time::Duration>) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            interval,
            last_sent: now,
            // Without an interval the timer is never polled.
            timer: Box::pin(tokio::time::sleep_until(now + interval.unwrap_or_default())),
            next_id: u64::MAX,
        }
    }

    /// The writer wrote something out.
    fn sent(&mut self) {
        if self.interval.is_some() {
            self.last_sent = tokio::time::Instant::now();
        }
    }

    /// The next thing to write: queued output, or a ping once the client has been quiet for
    /// the interval. `None` when every sender is gone.
    async fn next(&mut self, rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Option<Outgoing> {
        let Some(interval) = self.interval else {
            return rx.recv().await;
        };
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => return out,
                () = self.timer.as_mut() => {
                    let (now, due) = (tokio::time::Instant::now(), self.last_sent + interval);
                    if now < due {
                        self.timer.as_mut().reset(due);
                        continue;
                    }
                    self.timer.as_mut().reset(now + interval);
                    let id = self.next_id;
                    self.next_id -= 1;
                    let ping = ClientMessage::Request { id, request: Request::Ping };
                    if let Ok(frame) = encode(&ping) {
                        return Some(Outgoing::Frame(frame));
                    }
                }
            }
        }
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
fn handshake_failed(target: &Target, error: crate::secure::HandshakeError) -> Error {
    match error {
        crate::secure::HandshakeError::BadPreamble => Error::NoHandshake {
            target: target.to_string(),
            reason: "it answered with something else (another protocol?)".into(),
        },
        error => Error::Handshake {
            target: target.to_string(),
            error,
        },
    }
}

fn encode(msg: &ClientMessage) -> Result<Frame, Error> {
    let json = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(Frame::Control(Bytes::from(json)))
}

fn decode_message(body: &[u8]) -> Result<ServerMessage, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("bad message from daemon: {e}")))
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Remote { code, message } => Error::Remote {
            code: *code,
            message: message.clone(),
        },
        Error::Disconnected => Error::Disconnected,
        other => Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ping_id(out: Option<Outgoing>) -> u64 {
        match out {
            Some(Outgoing::Frame(Frame::Control(body))) => {
                match serde_json::from_slice::<ClientMessage>(&body).expect("json") {
                    ClientMessage::Request {
                        id,
                        request: Request::Ping,
                    } => id,
                    other => panic!("expected a ping, got {other:?}"),
                }
            }
            _ => panic!("expected a control frame"),
        }
    }

    #[tokio::test]
    async fn keepalive_pings_only_when_quiet_with_ids_no_request_uses() {
        let interval = Duration::from_millis(300);
        let mut keepalive = Keepalive::new(Some(interval));
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Queued output goes first.
        tx.send(Outgoing::Frame(Frame::Control(Bytes::from_static(b"{}"))))
            .expect("send");
        assert!(matches!(
            keepalive.next(&mut rx).await,
            Some(Outgoing::Frame(Frame::Control(_)))
        ));
        keepalive.sent();
        // Just written: no ping for a while.
        let early = tokio::time::timeout(interval / 4, keepalive.next(&mut rx)).await;
        assert!(early.is_err(), "pinged a connection that just wrote");
        // Quiet: pings, with fresh ids from the top of the range.
        let wait = Duration::from_secs(10);
        let first = tokio::time::timeout(wait, keepalive.next(&mut rx)).await;
        assert_eq!(ping_id(first.expect("a ping")), u64::MAX);
        keepalive.sent();
        let second = tokio::time::timeout(wait, keepalive.next(&mut rx)).await;
        assert_eq!(ping_id(second.expect("a ping")), u64::MAX - 1);
        // Every sender gone: the writer ends.
        drop(tx);
        assert!(keepalive.next(&mut rx).await.is_none());
    }

    #[test]
    fn the_reply_to_a_ping_is_dropped_without_a_route() {
        let routes = Mutex::new(Some(HashMap::new()));
        let mut notice = None;
        let reply = ServerMessage::Ok {
            id: u64::MAX,
            reply: Reply::Done,
        };
        assert!(route(&routes, &mut notice, reply).is_none());
        assert!(notice.is_none());
        assert!(routes
            .lock()
            .expect("routes")
            .as_ref()
            .is_some_and(HashMap::is_empty));
    }
}
