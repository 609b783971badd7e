//! `Client`: one connection to a daemon, shared by many concurrent requests.
//! A reader task routes replies by request id; a writer task owns the write half.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::Error;
use crate::proto::{
    ClientMessage, Frame, FrameCodec, Item, Reply, Request, ServerMessage, PROTOCOL_VERSION,
};

type Route = mpsc::UnboundedSender<Result<ServerMessage, Error>>;

/// A connection to a circuitd. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    out: mpsc::Sender<Frame>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    node: String,
    daemon_version: String,
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
        let path = path.as_ref();
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                target: path.display().to_string(),
                source,
            })?;
        let (r, w) = stream.into_split();
        Self::handshake(r, w).await
    }

    /// Connects to a daemon's TCP API (`host:port`).
    pub async fn connect_tcp(addr: &str) -> Result<Self, Error> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect {
                target: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Self::handshake(r, w).await
    }

    /// Runs the hello exchange over an already-open transport and starts the reader and writer.
    pub async fn handshake<R, W>(read: R, write: W) -> Result<Self, Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: format!("circuit-sdk/{}", env!("CARGO_PKG_VERSION")),
        };
        writer.send(encode(&hello)?).await?;
        let (node, daemon_version) = match reader.next().await {
            None => return Err(Error::Disconnected),
            Some(frame) => match decode(frame?)? {
                ServerMessage::Hello {
                    version,
                    node,
                    daemon_version,
                } => {
                    if version != PROTOCOL_VERSION {
                        return Err(Error::Protocol(format!(
                            "circuitd {daemon_version} speaks protocol {version}, \
                             this client speaks {PROTOCOL_VERSION}"
                        )));
                    }
                    (node, daemon_version)
                }
                ServerMessage::Error { code, message, .. } => {
                    return Err(Error::Remote { code, message })
                }
                other => return Err(Error::Protocol(format!("expected hello, got {other:?}"))),
            },
        };

        let routes: Arc<Mutex<Routes>> = Arc::new(Mutex::new(Some(HashMap::new())));
        let (out, mut out_rx) = mpsc::channel::<Frame>(1024);
        tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if writer.feed(frame).await.is_err() {
                    return;
                }
                while let Ok(frame) = out_rx.try_recv() {
                    if writer.feed(frame).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    return;
                }
            }
        });
        let reader_routes = routes.clone();
        tokio::spawn(async move {
            let mut notice = None;
            let failure = loop {
                match reader.next().await {
                    None => break notice.take().unwrap_or(Error::Disconnected),
                    Some(Err(e)) => break Error::Frame(e),
                    Some(Ok(frame)) => match decode(frame) {
                        Err(e) => break e,
                        Ok(msg) => {
                            if let Some(err) = route(&reader_routes, &mut notice, msg) {
                                break err;
                            }
                        }
                    },
                }
            };
            let taken = reader_routes.lock().expect("routes lock").take();
            for (_, tx) in taken.into_iter().flatten() {
                let _ = tx.send(Err(clone_error(&failure)));
            }
        });

        Ok(Self {
            inner: Arc::new(Inner {
                out,
                routes,
                next_id: AtomicU64::new(1),
                node,
                daemon_version,
            }),
        })
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
                map.insert(id, tx);
            }
            None => return Err(Error::Disconnected),
        }
        let frame = encode(&ClientMessage::Request { id, request })?;
        if self.inner.out.send(frame).await.is_err() {
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
                let _ = self.client.inner.out.try_send(frame);
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
    let tx = if terminal {
        map.remove(&id)
    } else {
        map.get(&id).cloned()
    };
    drop(guard);
    if let Some(tx) = tx {
        let _ = tx.send(Ok(msg));
    }
    None
}

fn encode(msg: &ClientMessage) -> Result<Frame, Error> {
    let json = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(Frame::Control(Bytes::from(json)))
}

fn decode(frame: Frame) -> Result<ServerMessage, Error> {
    match frame {
        Frame::Control(body) => serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol(format!("bad message from daemon: {e}"))),
        Frame::Data { .. } => Err(Error::Protocol("unexpected data frame".into())),
    }
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
