//! One client connection: the hello, then control messages read and dispatched concurrently,
//! replies written by one writer task. Bad input is answered with an error; bytes that cannot be
//! framed close the connection. Nothing a client sends can stop the daemon serving others.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use circuit_sdk::proto::{
    ClientMessage, ErrorCode, Frame, FrameCodec, ServerMessage, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::{dispatch, Context};

/// Replies waiting to be written, per connection.
const OUTBOX: usize = 256;

/// How long a connection's last replies may take to drain once the daemon is stopping.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a request task sends its replies.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
}

impl Outbox {
    /// Queues a message; false when the connection is gone.
    pub async fn send(&self, msg: ServerMessage) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Queues a message if there is room, never waiting for a client that does not read.
    pub fn try_send(&self, msg: ServerMessage) {
        let _ = self.tx.try_send(msg);
    }
}

pub(crate) async fn serve<R, W>(read: R, write: W, peer: String, ctx: Arc<Context>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FramedRead::new(read, FrameCodec::new(ctx.config.max_frame));
    let (tx, rx) = mpsc::channel(OUTBOX);
    let writer = tokio::spawn(write_loop(
        FramedWrite::new(write, FrameCodec::new(ctx.config.max_frame)),
        rx,
    ));
    let outbox = Outbox { tx };
    match handshake(&mut reader, &outbox, &ctx).await {
        Ok(client) => {
            tracing::debug!(%peer, %client, "client connected");
            read_loop(reader, &outbox, &ctx).await;
        }
        Err((code, message)) => {
            tracing::debug!(%peer, %message, "handshake refused");
            outbox.send(connection_error(code, message)).await;
        }
    }
    drop(outbox);
    // Let the last replies go out, but a client that does not read cannot hold up shutdown.
    let mut writer = writer;
    tokio::select! {
        _ = &mut writer => {}
        () = ctx.shutdown.cancelled() => {
            if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
}

async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut FramedRead<R, FrameCodec>,
    outbox: &Outbox,
    ctx: &Context,
) -> Result<String, (ErrorCode, String)> {
    let first = tokio::select! {
        first = tokio::time::timeout(ctx.config.handshake_timeout, reader.next()) => first,
        () = ctx.shutdown.cancelled() => {
            return Err((ErrorCode::ShuttingDown, "circuitd is shutting down".into()))
        }
    };
    let frame = match first {
        Err(_) => {
            return Err((
                ErrorCode::HandshakeRequired,
                "no hello within the handshake timeout".into(),
            ))
        }
        Ok(None) => return Err((ErrorCode::HandshakeRequired, "closed before hello".into())),
        Ok(Some(Err(e))) => return Err((ErrorCode::BadFrame, e.to_string())),
        Ok(Some(Ok(frame))) => frame,
    };
    let Frame::Control(body) = frame else {
        return Err((
            ErrorCode::HandshakeRequired,
            "expected a hello, got a data frame".into(),
        ));
    };
    match serde_json::from_slice::<ClientMessage>(&body) {
        Ok(ClientMessage::Hello { version, client }) if version == PROTOCOL_VERSION => {
            outbox
                .send(ServerMessage::Hello {
                    version: PROTOCOL_VERSION,
                    node: ctx.config.name.clone(),
                    daemon_version: env!("CARGO_PKG_VERSION").to_string(),
                })
                .await;
            Ok(client)
        }
        Ok(ClientMessage::Hello { version, .. }) => Err((
            ErrorCode::VersionMismatch,
            format!(
                "protocol version mismatch: client speaks {version}, circuitd {} speaks {PROTOCOL_VERSION}",
                env!("CARGO_PKG_VERSION")
            ),
        )),
        Ok(_) | Err(_) => Err((
            ErrorCode::HandshakeRequired,
            "the first message must be a hello".into(),
        )),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FramedRead<R, FrameCodec>,
    outbox: &Outbox,
    ctx: &Arc<Context>,
) {
    let connection = ctx.shutdown.child_token();
    let mut requests: HashMap<u64, CancellationToken> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    loop {
        let frame = tokio::select! {
            // Finished requests first: a client may reuse an id as soon as it has the reply.
            biased;
            Some(id) = done_rx.recv() => {
                requests.remove(&id);
                continue;
            }
            () = ctx.shutdown.cancelled() => break,
            frame = reader.next() => frame,
        };
        let body = match frame {
            None => break,
            Some(Err(e)) => {
                let msg = connection_error(ErrorCode::BadFrame, e.to_string());
                notify(outbox, msg, ctx).await;
                break;
            }
            Some(Ok(Frame::Data { id, .. })) => {
                let why = "unexpected data frame: no request takes data yet";
                notify(outbox, reject(&requests, Some(id), why.into()), ctx).await;
                continue;
            }
            Some(Ok(Frame::Control(body))) => body,
        };
        match parse(&body) {
            Ok(ClientMessage::Request { id, request }) => {
                if requests.contains_key(&id) {
                    let why = format!("request id {id} is already in use");
                    notify(outbox, reject(&requests, Some(id), why), ctx).await;
                    continue;
                }
                let limit = ctx.config.max_requests_per_connection;
                if requests.len() >= limit {
                    let msg = ServerMessage::Error {
                        id: Some(id),
                        code: ErrorCode::TooManyRequests,
                        message: format!(
                            "more than {limit} requests outstanding on one connection"
                        ),
                    };
                    notify(outbox, msg, ctx).await;
                    continue;
                }
                let cancel = connection.child_token();
                requests.insert(id, cancel.clone());
                let (ctx2, outbox2, done) = (ctx.clone(), outbox.clone(), done_tx.clone());
                ctx.tracker.spawn(async move {
                    dispatch::run(id, request, &ctx2, &outbox2, &cancel).await;
                    let _ = done.send(id);
                });
            }
            Ok(ClientMessage::Cancel { id }) => {
                if let Some(token) = requests.get(&id) {
                    token.cancel();
                }
            }
            Ok(ClientMessage::Hello { .. }) => {
                let why = "hello was already exchanged".to_string();
                notify(outbox, reject(&requests, None, why), ctx).await;
            }
            Err((id, why)) => {
                notify(outbox, reject(&requests, id, why), ctx).await;
            }
        }
    }
    // The client is gone (or the daemon is stopping): end its requests, e.g. a `logs -f`.
    connection.cancel();
}

/// Sends a reply the daemon itself originates, unless the daemon stops first: a client that
/// does not read must not keep the read loop (and so shutdown) waiting for room.
async fn notify(outbox: &Outbox, msg: ServerMessage, ctx: &Context) {
    tokio::select! {
        _ = outbox.send(msg) => {}
        () = ctx.shutdown.cancelled() => {}
    }
}

/// A `bad_request` for a message that was not accepted. It carries the message's id only if no
/// accepted request has that id: a request gets exactly one terminal reply, its own. Without an
/// id it is a connection-level notice; the connection stays open.
fn reject(
    requests: &HashMap<u64, CancellationToken>,
    id: Option<u64>,
    message: String,
) -> ServerMessage {
    ServerMessage::Error {
        id: id.filter(|id| !requests.contains_key(id)),
        code: ErrorCode::BadRequest,
        message,
    }
}

/// Parses a control message; on failure returns the request id if one can be found.
fn parse(body: &Bytes) -> Result<ClientMessage, (Option<u64>, String)> {
    serde_json::from_slice::<ClientMessage>(body).map_err(|e| {
        let id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
        (id, format!("bad request: {e}"))
    })
}

fn connection_error(code: ErrorCode, message: String) -> ServerMessage {
    ServerMessage::Error {
        id: None,
        code,
        message,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<ServerMessage>,
) {
    while let Some(msg) = rx.recv().await {
        let mut next = Some(msg);
        while let Some(msg) = next {
            let json = match serde_json::to_vec(&msg) {
                Ok(json) => json,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a reply");
                    next = rx.try_recv().ok();
                    continue;
                }
            };
            if writer
                .feed(Frame::Control(Bytes::from(json)))
                .await
                .is_err()
            {
                return;
            }
            next = rx.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}
