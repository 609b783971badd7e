//! The contract between a connection and whoever serves one of its streams: a channel's actor
//! when this node owns the channel, a relay to the node that serves the stream when another
//! node does, the writer of a worker's stdin. A stream has a key; the connection sends it [`StreamMsg`]s; the server answers through
//! the stream's [`StreamOut`], which puts control messages and frames, in order, on the
//! connection's stream queue. It belongs to neither party: the broker, the peer relay and the
//! supervisor's stdin writer serve it, and the api's connections use it.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use circuit_sdk::proto::{ErrorCode, Frame, Item, Reply, ServerMessage, SignalOp};
use tokio::sync::mpsc;

/// Identifies one open send or receive stream, unique in the daemon.
pub(crate) type StreamKey = u64;

/// Hands out stream keys: each call a new one.
#[derive(Debug)]
pub(crate) struct Keys(AtomicU64);

impl Default for Keys {
    fn default() -> Self {
        Self(AtomicU64::new(1))
    }
}

impl Keys {
    /// A key no stream of this daemon had before.
    pub fn next(&self) -> StreamKey {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A message from a connection to the server of one of its streams.
#[derive(Debug)]
pub(crate) enum StreamMsg {
    /// A send stream opened; `sender` identifies the sender across reconnects. The other
    /// streams whose data comes from the client open with it too (a raft link, a worker's
    /// stdin), with `sender` 0.
    OpenSend {
        stream: StreamKey,
        sender: u64,
        /// The sender takes reservations for its values from this seq on (see
        /// `Request::ChanSend`).
        reserve_from: Option<u64>,
        out: StreamOut,
    },
    /// A receive stream opened; `receiver` identifies the receiver across reconnects, and one
    /// coming back to a replicated channel names what it holds and acknowledged (value ids).
    OpenRecv {
        stream: StreamKey,
        out: StreamOut,
        receiver: Option<u64>,
        held: Vec<u64>,
        acked: Vec<u64>,
    },
    /// Values from a send stream, in order: (seq, payload), as many as the connection read in
    /// one go (up to 256).
    Values {
        stream: StreamKey,
        values: Vec<(u64, Bytes)>,
    },
    /// A signal from the client (credit, ack, return, …).
    Signal {
        stream: StreamKey,
        op: SignalOp,
        a: u64,
        b: u64,
    },
    /// The stream ended on the client's side; `cancelled` when the client asked (it then gets
    /// a terminal `cancelled`), else its connection is gone.
    Gone { stream: StreamKey, cancelled: bool },
}

/// What a connection's writer writes besides request replies: a control message or one
/// stream's frames, in the order they were queued.
#[derive(Debug)]
pub(crate) enum Out {
    /// A JSON control message.
    Msg(ServerMessage),
    /// Frames for one stream, in order: what its server produced for it in one turn.
    Frames(Vec<Frame>),
}

/// Where a stream's output goes: its connection's stream queue (unbounded: what a server puts
/// there is bounded by the credit and windows the client holds, and a server must never wait
/// for one slow client), under the request id the stream has on that connection. A server
/// builds the stream's frames here, so it never handles the connection's ids itself.
#[derive(Debug, Clone)]
pub(crate) struct StreamOut {
    /// The request id of the stream on its connection.
    id: u64,
    /// The stream, so that an end names it and not a newer stream that reuses the id.
    key: StreamKey,
    /// The connection's stream queue.
    tx: mpsc::UnboundedSender<Out>,
    /// Told (request id, stream) when the server ends the stream, so the connection forgets it.
    done: mpsc::UnboundedSender<(u64, StreamKey)>,
}

impl StreamOut {
    /// The output of stream `key`, request `id` on the connection whose queues these are.
    pub fn new(
        id: u64,
        key: StreamKey,
        tx: mpsc::UnboundedSender<Out>,
        done: mpsc::UnboundedSender<(u64, StreamKey)>,
    ) -> Self {
        Self { id, key, tx, done }
    }

    /// A data frame of this stream.
    pub fn data(&self, seq: u64, payload: Bytes) -> Frame {
        Frame::Data {
            id: self.id,
            seq,
            payload,
        }
    }

    /// A signal frame of this stream.
    pub fn signal(&self, op: SignalOp, a: u64, b: u64) -> Frame {
        Frame::Signal {
            id: self.id,
            op,
            a,
            b,
        }
    }

    /// Queues frames of this stream (made with [`StreamOut::data`] and [`StreamOut::signal`])
    /// as one batch.
    pub fn frames(&self, frames: Vec<Frame>) {
        let _ = self.tx.send(Out::Frames(frames));
    }

    /// Queues frames of the same stream served elsewhere (another node's, read off a peer
    /// link), under this stream's id.
    pub fn pass_frames(&self, mut frames: Vec<Frame>) {
        for frame in &mut frames {
            match frame {
                Frame::Data { id, .. } | Frame::Signal { id, .. } => *id = self.id,
                Frame::Control(_) => {}
            }
        }
        self.frames(frames);
    }

    /// Queues a streamed item (the stream's first, `chan_opened`).
    pub fn item(&self, item: Item) {
        let _ = self
            .tx
            .send(Out::Msg(ServerMessage::Item { id: self.id, item }));
    }

    /// Passes on a reply of the same stream served elsewhere, under this stream's id; a
    /// terminal one ends the stream.
    pub fn pass(&self, msg: ServerMessage) {
        let id = self.id;
        let (msg, terminal) = match msg {
            ServerMessage::Item { item, .. } => (ServerMessage::Item { id, item }, false),
            ServerMessage::Ok { reply, .. } => (ServerMessage::Ok { id, reply }, true),
            ServerMessage::Error { code, message, .. } => (
                ServerMessage::Error {
                    id: Some(id),
                    code,
                    message,
                },
                true,
            ),
            ServerMessage::Hello { .. } => return,
        };
        let _ = self.tx.send(Out::Msg(msg));
        if terminal {
            self.end();
        }
    }

    /// Ends the stream with an error, its terminal reply.
    pub fn fail(&self, code: ErrorCode, message: String) {
        let _ = self.tx.send(Out::Msg(ServerMessage::Error {
            id: Some(self.id),
            code,
            message,
        }));
        self.end();
    }

    /// Ends the stream with `ok`, its terminal reply (a worker's stdin stream, once its input
    /// is written; a channel stream never ends this way).
    pub fn finish(&self, reply: Reply) {
        let _ = self
            .tx
            .send(Out::Msg(ServerMessage::Ok { id: self.id, reply }));
        self.end();
    }

    /// Tells the connection the stream is over (its terminal reply, if any, already queued).
    pub fn end(&self) {
        let _ = self.done.send((self.id, self.key));
    }
}
