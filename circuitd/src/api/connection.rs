//! One client connection: the hello, then the read loop. Each request runs in a task of its own
//! (the router's); each stream's frames, batched, go to whoever serves the stream (the
//! channel's actor, a relay to the node that serves it, a worker's stdin writer); replies are
//! written by the outbox's writer task.
//! Bad input is answered with an error; bytes that cannot be framed close the connection, and
//! so does silence past the idle timeout. Nothing a client sends can stop the daemon serving
//! others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use circuit_sdk::proto::{
    next_buffered, ClientMessage, Frame, FrameCodec, Request, ServerMessage, PROTOCOL_VERSION,
    READ_BUFFER,
};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::outbox::Outbox;
use super::{router, Context};
use crate::broker::{BrokerError, ChanInbox, Served};
use crate::peer::raft_link;
use crate::peer::relay::{self, RelayInbox};
use crate::stream::{StreamKey, StreamMsg, StreamOut};
use crate::supervisor::stdin::StdinInbox;

/// How long a connection's last replies may take to drain once the daemon is stopping.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Data frames read before they are handed to a channel in one batch.
const DATA_BATCH: usize = 256;

/// An open channel stream on this connection.
struct Route {
    key: StreamKey,
    server: Server,
}

/// Whoever serves one of this connection's streams (the contract in [`crate::stream`]).
enum Server {
    /// The channel's actor: this node owns the channel.
    Chan(ChanInbox),
    /// A relay to the node that serves the stream (owns the channel, runs the worker).
    Relay(RelayInbox),
    /// The writer of a worker's stdin: the worker runs here.
    Stdin(StdinInbox),
}

impl Server {
    /// Hands the server a message of the stream, waiting while its inbox is full.
    async fn send(&self, msg: StreamMsg) -> bool {
        match self {
            Self::Chan(inbox) => inbox.send(msg).await,
            Self::Relay(inbox) => inbox.send(msg).await,
            Self::Stdin(inbox) => inbox.send(msg).await,
        }
    }
}

pub(crate) async fn serve<R, W>(read: R, write: W, peer: String, ctx: Arc<Context>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _open = ctx.meters.connection();
    let codec = FrameCodec::new(ctx.config.max_frame);
    let mut reader = FramedRead::with_capacity(read, codec, READ_BUFFER);
    let (outbox, writer) = Outbox::start(write, ctx.config.max_frame);
    match handshake(&mut reader, &outbox, &ctx).await {
        Ok(client) => {
            tracing::debug!(%peer, %client, "client connected");
            read_loop(reader, &outbox, &ctx, &peer).await;
        }
        Err(refused) => {
            tracing::debug!(%peer, %refused, "handshake refused");
            outbox.send(refused.reply(None)).await;
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
) -> Result<String, ApiError> {
    let first = tokio::select! {
        first = tokio::time::timeout(ctx.config.handshake_timeout, reader.next()) => first,
        () = ctx.shutdown.cancelled() => {
            return Err(ApiError::ShuttingDown)
        }
    };
    let frame = match first {
        Err(_) => {
            return Err(ApiError::HandshakeRequired(
                "no hello within the handshake timeout".into(),
            ))
        }
        Ok(None) => return Err(ApiError::HandshakeRequired("closed before hello".into())),
        Ok(Some(Err(e))) => return Err(ApiError::BadFrame(e.to_string())),
        Ok(Some(Ok(frame))) => frame,
    };
    let Frame::Control(body) = frame else {
        return Err(ApiError::HandshakeRequired(
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
                    instance: ctx.instance,
                })
                .await;
            Ok(client)
        }
        Ok(ClientMessage::Hello { version, .. }) => Err(ApiError::VersionMismatch(format!(
            "protocol version mismatch: client speaks {version}, circuitd {} speaks {PROTOCOL_VERSION}",
            env!("CARGO_PKG_VERSION")
        ))),
        Ok(_) | Err(_) => Err(ApiError::HandshakeRequired(
            "the first message must be a hello".into(),
        )),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FramedRead<R, FrameCodec>,
    outbox: &Outbox,
    ctx: &Arc<Context>,
    peer: &str,
) {
    let connection = ctx.shutdown.child_token();
    let mut conn = Conn {
        requests: HashMap::new(),
        streams: Default::default(),
        batch: None,
        ended: Default::default(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let (stream_done_tx, mut stream_done_rx) = mpsc::unbounded_channel::<(u64, StreamKey)>();
    let mut idle = IdleClock::new(ctx.config.idle_timeout, Instant::now());
    let mut idle_check = std::pin::pin!(tokio::time::sleep(ctx.config.idle_timeout));
    'read: loop {
        let frame = tokio::select! {
            // Finished requests first: a client may reuse an id as soon as it has the reply.
            biased;
            Some(id) = done_rx.recv() => {
                conn.requests.remove(&id);
                idle.heard(Instant::now());
                continue;
            }
            Some((id, key)) = stream_done_rx.recv() => {
                if conn.streams.get(&id).is_some_and(|r| r.key == key) {
                    conn.streams.remove(&id);
                    conn.ended(id);
                }
                idle.heard(Instant::now());
                continue;
            }
            () = ctx.shutdown.cancelled() => break,
            frame = reader.next() => frame,
            () = &mut idle_check => {
                let busy = !conn.requests.is_empty() || !conn.streams.is_empty();
                match idle.check(Instant::now(), busy, reader.read_buffer().len()) {
                    Some(next) => {
                        idle_check.as_mut().reset(next);
                        continue;
                    }
                    None => {
                        let timeout = ctx.config.idle_timeout;
                        tracing::debug!(%peer, ?timeout, "closing an idle connection");
                        let idle = ApiError::LimitReached(format!(
                            "closed after {} with nothing sent and nothing open (--idle-timeout)",
                            humantime::format_duration(timeout)
                        ));
                        outbox.try_send(idle.reply(None));
                        break;
                    }
                }
            }
        };
        let mut frame = frame;
        // Handle every frame already buffered before waiting again, so data frames reach their
        // channel in batches.
        loop {
            let body = match frame {
                None => break 'read,
                Some(Err(e)) => {
                    conn.flush_batch().await;
                    let msg = ApiError::BadFrame(e.to_string()).reply(None);
                    notify(outbox, msg, ctx).await;
                    break 'read;
                }
                Some(Ok(Frame::Data { id, seq, payload })) => {
                    if let Err(why) = conn.data(id, seq, payload).await {
                        notify(outbox, conn.reject(Some(id), why), ctx).await;
                    }
                    None
                }
                Some(Ok(Frame::Signal { id, op, a, b })) => {
                    conn.flush_batch().await;
                    match conn.streams.get(&id) {
                        Some(route) => {
                            let msg = StreamMsg::Signal {
                                stream: route.key,
                                op,
                                a,
                                b,
                            };
                            route.server.send(msg).await;
                        }
                        None if conn.was_stream(id) => {}
                        None => {
                            let why = format!("signal for request {id}, which is not a stream");
                            notify(outbox, conn.reject(Some(id), why), ctx).await;
                        }
                    }
                    None
                }
                Some(Ok(Frame::Control(body))) => {
                    conn.flush_batch().await;
                    Some(body)
                }
            };
            if let Some(body) = body {
                conn.control(&body, outbox, ctx, &connection, &done_tx, &stream_done_tx)
                    .await;
            }
            match next_buffered(&mut reader) {
                Some(next) => frame = Some(next),
                None => break,
            }
        }
        idle.heard(Instant::now());
        conn.flush_batch().await;
    }
    conn.flush_batch().await;
    // The client is gone (or the daemon is stopping): end its requests, e.g. a `logs -f`, and
    // give its streams' values back to their channels.
    connection.cancel();
    for (_, route) in conn.streams.drain() {
        let gone = StreamMsg::Gone {
            stream: route.key,
            cancelled: false,
        };
        route.server.send(gone).await;
    }
}

/// When a connection counts as idle: nothing heard from it for `timeout` while it had nothing
/// open. Time is passed in, so it is tested without sleeping.
struct IdleClock {
    timeout: Duration,
    /// The last frame read, or the last moment something was open.
    last_active: Instant,
    /// Bytes of a partial frame buffered at the last check: a large frame arriving slowly is
    /// not silence.
    buffered: usize,
}

impl IdleClock {
    fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            last_active: now,
            buffered: 0,
        }
    }

    /// A frame arrived, or the last request or stream ended.
    fn heard(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// At a check: when to check again, or `None` to close. `busy` when a request or stream
    /// is open; `buffered` the bytes of a partial frame read so far.
    fn check(&mut self, now: Instant, busy: bool, buffered: usize) -> Option<Instant> {
        if busy || buffered != self.buffered {
            self.buffered = buffered;
            self.last_active = now;
        }
        let due = self.last_active + self.timeout;
        (due > now).then_some(due)
    }
}

/// What a connection has open.
struct Conn {
    /// Requests running as tasks, by id.
    requests: HashMap<u64, CancellationToken>,
    /// Channel streams, by request id.
    streams: rustc_hash::FxHashMap<u64, Route>,
    /// Values read for one stream and not yet handed to its channel.
    batch: Option<(u64, Vec<(u64, Bytes)>)>,
    /// Streams the server ended lately, oldest first: the client may still send frames on
    /// them until it reads the end, and those are dropped, not refused (a refusal with the
    /// stream's id would look like the stream's end to the client).
    ended: std::collections::VecDeque<u64>,
}

impl Conn {
    fn in_use(&self, id: u64) -> bool {
        self.requests.contains_key(&id) || self.streams.contains_key(&id)
    }

    /// A `bad_request` for a message that was not accepted. It carries the message's id only
    /// if no accepted request has that id: a request gets exactly one terminal reply, its own.
    /// Without an id it is a connection-level notice; the connection stays open.
    fn reject(&self, id: Option<u64>, message: String) -> ServerMessage {
        ApiError::BadRequest(message).reply(id.filter(|id| !self.in_use(*id)))
    }

    /// Stream `id` was ended by its server.
    fn ended(&mut self, id: u64) {
        /// Ended streams remembered, at most.
        const REMEMBERED: usize = 1024;
        if self.ended.len() == REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back(id);
    }

    /// Whether `id` is a stream its server ended lately (frames for it are dropped).
    fn was_stream(&self, id: u64) -> bool {
        !self.in_use(id) && self.ended.contains(&id)
    }

    /// A value for a send stream: batched until the next frame of another kind or stream.
    async fn data(&mut self, id: u64, seq: u64, payload: Bytes) -> Result<(), String> {
        if self.was_stream(id) {
            return Ok(());
        }
        if !self.streams.contains_key(&id) {
            return Err(format!(
                "data frame for request {id}, which is not a stream"
            ));
        }
        if self.batch.as_ref().is_some_and(|(b, _)| *b != id) {
            self.flush_batch().await;
        }
        let (_, values) = self.batch.get_or_insert_with(|| (id, Vec::new()));
        values.push((seq, payload));
        if values.len() >= DATA_BATCH {
            self.flush_batch().await;
        }
        Ok(())
    }

    async fn flush_batch(&mut self) {
        let Some((id, values)) = self.batch.take() else {
            return;
        };
        if let Some(route) = self.streams.get(&id) {
            let msg = StreamMsg::Values {
                stream: route.key,
                values,
            };
            route.server.send(msg).await;
        }
    }

    async fn control(
        &mut self,
        body: &Bytes,
        outbox: &Outbox,
        ctx: &Arc<Context>,
        connection: &CancellationToken,
        done_tx: &mpsc::UnboundedSender<u64>,
        stream_done_tx: &mpsc::UnboundedSender<(u64, StreamKey)>,
    ) {
        match parse(body) {
            Ok(ClientMessage::Request { id, request }) => {
                if self.in_use(id) {
                    let why = format!("request id {id} is already in use");
                    notify(outbox, self.reject(Some(id), why), ctx).await;
                    return;
                }
                let limit = ctx.config.max_requests_per_connection;
                if self.requests.len() + self.streams.len() >= limit {
                    let many = ApiError::TooManyRequests(format!(
                        "more than {limit} requests outstanding on one connection"
                    ));
                    notify(outbox, many.reply(Some(id)), ctx).await;
                    return;
                }
                ctx.meters.request(request.op());
                match request {
                    Request::ChanSend {
                        name,
                        sender,
                        reserve_from,
                        direct,
                    } => {
                        let open = |stream, out| StreamMsg::OpenSend {
                            stream,
                            sender,
                            reserve_from,
                            out,
                        };
                        self.open_stream(id, &name, direct, ctx, outbox, stream_done_tx, open)
                            .await;
                    }
                    Request::ChanRecv {
                        name,
                        receiver,
                        held,
                        acked,
                        direct,
                    } => {
                        let open = |stream, out| StreamMsg::OpenRecv {
                            stream,
                            out,
                            receiver,
                            held,
                            acked,
                        };
                        self.open_stream(id, &name, direct, ctx, outbox, stream_done_tx, open)
                            .await;
                    }
                    Request::WorkerStdin {
                        name,
                        node,
                        keep_open,
                    } => {
                        self.open_stdin(id, name, node, keep_open, ctx, outbox, stream_done_tx)
                            .await;
                    }
                    Request::RaftLink => {
                        let server =
                            Server::Relay(raft_link::serve(ctx.broker.clone(), &ctx.tracker));
                        let key = ctx.stream_keys.next();
                        let out = StreamOut::new(id, key, outbox.streams(), stream_done_tx.clone());
                        let open = StreamMsg::OpenSend {
                            stream: key,
                            sender: 0,
                            reserve_from: None,
                            out,
                        };
                        if server.send(open).await {
                            self.streams.insert(id, Route { key, server });
                        }
                    }
                    request => {
                        let cancel = connection.child_token();
                        self.requests.insert(id, cancel.clone());
                        let (ctx2, outbox2, done) = (ctx.clone(), outbox.clone(), done_tx.clone());
                        ctx.tracker.spawn(async move {
                            router::run(id, request, &ctx2, &outbox2, &cancel).await;
                            let _ = done.send(id);
                        });
                    }
                }
            }
            Ok(ClientMessage::Cancel { id }) => {
                if let Some(token) = self.requests.get(&id) {
                    token.cancel();
                } else if let Some(route) = self.streams.remove(&id) {
                    let msg = StreamMsg::Gone {
                        stream: route.key,
                        cancelled: true,
                    };
                    route.server.send(msg).await;
                }
            }
            Ok(ClientMessage::Hello { .. }) => {
                let why = "hello was already exchanged".to_string();
                notify(outbox, self.reject(None, why), ctx).await;
            }
            Err((id, why)) => {
                notify(outbox, self.reject(id, why), ctx).await;
            }
        }
    }

    /// Opens a send or receive stream on the named channel; the channel answers with the
    /// stream's first item. A channel another node owns is served by a relay to its owner,
    /// unless the stream is `direct` (relayed here already: served here or refused).
    #[allow(clippy::too_many_arguments)]
    async fn open_stream(
        &mut self,
        id: u64,
        name: &str,
        direct: bool,
        ctx: &Context,
        outbox: &Outbox,
        done: &mpsc::UnboundedSender<(u64, StreamKey)>,
        open: impl FnOnce(StreamKey, StreamOut) -> StreamMsg,
    ) {
        let server = match ctx.broker.inbox(name) {
            Ok(Served::Here(inbox)) => Server::Chan(inbox),
            Ok(Served::Leader(node)) if !direct => Server::Relay(relay::start(
                ctx.peers.clone(),
                name.to_string(),
                Some(node),
                &ctx.tracker,
            )),
            Ok(Served::Leader(node)) => {
                let why = ApiError::Broker(BrokerError::Unavailable(format!(
                    "replicated channel \"{name}\" is led by node {node}, not by this one"
                )));
                notify(outbox, why.reply(Some(id)), ctx).await;
                return;
            }
            Err(BrokerError::NotFound(_)) if !direct && ctx.membership.meshed() => Server::Relay(
                relay::start(ctx.peers.clone(), name.to_string(), None, &ctx.tracker),
            ),
            Err(e) => {
                notify(outbox, ApiError::from(e).reply(Some(id)), ctx).await;
                return;
            }
        };
        let key = ctx.stream_keys.next();
        let out = StreamOut::new(id, key, outbox.streams(), done.clone());
        if !server.send(open(key, out)).await {
            let removed = ApiError::NotFound(format!("channel \"{name}\" was removed"));
            notify(outbox, removed.reply(Some(id)), ctx).await;
            return;
        }
        self.streams.insert(id, Route { key, server });
    }

    /// Opens a stream on a worker's stdin: served here when the worker runs here (or `node`
    /// names this node, or there is no mesh to search), else by a relay to its node, which
    /// finds that node itself. Either answers with the stream's first item, or its error.
    #[allow(clippy::too_many_arguments)]
    async fn open_stdin(
        &mut self,
        id: u64,
        name: String,
        node: Option<String>,
        keep_open: bool,
        ctx: &Context,
        outbox: &Outbox,
        done: &mpsc::UnboundedSender<(u64, StreamKey)>,
    ) {
        let here = match &node {
            Some(node) => *node == ctx.config.name,
            None => ctx.supervisor.has(&name) || !ctx.membership.meshed(),
        };
        let server = if here {
            Server::Stdin(ctx.supervisor.stdin(name, keep_open))
        } else {
            Server::Relay(relay::start_stdin(
                ctx.peers.clone(),
                name,
                node,
                keep_open,
                &ctx.tracker,
            ))
        };
        let key = ctx.stream_keys.next();
        let open = StreamMsg::OpenSend {
            stream: key,
            sender: 0,
            reserve_from: None,
            out: StreamOut::new(id, key, outbox.streams(), done.clone()),
        };
        if server.send(open).await {
            self.streams.insert(id, Route { key, server });
        }
    }
}

/// Sends a reply the daemon itself originates, unless the daemon stops first: a client that
/// does not read must not keep the read loop (and so shutdown) waiting for room.
async fn notify(outbox: &Outbox, msg: ServerMessage, ctx: &Context) {
    tokio::select! {
        _ = outbox.send(msg) => {}
        () = ctx.shutdown.cancelled() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_clock_closes_only_after_a_full_timeout_of_silence_with_nothing_open() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut idle = IdleClock::new(Duration::from_secs(10), t0);
        // Not yet due: check again when it is.
        assert_eq!(idle.check(secs(4), false, 0), Some(secs(10)));
        // A frame at 6 s moves the deadline.
        idle.heard(secs(6));
        assert_eq!(idle.check(secs(10), false, 0), Some(secs(16)));
        // Something open: never idle, however long the silence.
        assert_eq!(idle.check(secs(100), true, 0), Some(secs(110)));
        // The last request ended at 105 s: idle from then on.
        idle.heard(secs(105));
        assert_eq!(idle.check(secs(110), false, 0), Some(secs(115)));
        assert_eq!(idle.check(secs(115), false, 0), None);
    }

    #[test]
    fn idle_clock_counts_a_partial_frame_that_grows_as_activity() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut idle = IdleClock::new(Duration::from_secs(10), t0);
        // Half a large frame arrived since the last check.
        assert_eq!(idle.check(secs(10), false, 4096), Some(secs(20)));
        // More of it.
        assert_eq!(idle.check(secs(20), false, 8192), Some(secs(30)));
        // Stuck at the same size for a whole timeout: silence.
        assert_eq!(idle.check(secs(30), false, 8192), None);
    }
}
