//! A connection's output: the [`Outbox`] request tasks and stream servers queue to, and the
//! writer task that owns the socket's write half. It writes everything queued before it
//! flushes, stream traffic first.

use bytes::Bytes;
use circuit_sdk::proto::{Frame, FrameCodec, ServerMessage};
use futures::SinkExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedWrite;

use crate::stream::Out;

/// Replies waiting to be written, per connection.
const OUTBOX: usize = 256;

/// Bytes buffered by the writer before it writes them out without waiting for more.
const WRITE_BUFFER: usize = 256 * 1024;

/// Where a request task sends its replies. Channel streams have their own unbounded queue:
/// what a stream's server sends there is bounded by the credit and windows the client holds,
/// and a channel must never wait for one slow client.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
    streams: mpsc::UnboundedSender<Out>,
}

impl Outbox {
    /// Starts the writer task for `write` (frames up to `max_frame` bytes); it ends once every
    /// clone of the outbox (and every stream's output) is gone, or the socket fails.
    pub fn start<W>(write: W, max_frame: usize) -> (Self, JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let (streams, streams_rx) = mpsc::unbounded_channel();
        let mut framed = FramedWrite::new(write, FrameCodec::new(max_frame));
        framed.set_backpressure_boundary(WRITE_BUFFER);
        let writer = tokio::spawn(write_loop(framed, rx, streams_rx));
        (Self { tx, streams }, writer)
    }

    /// Queues a message; false when the connection is gone.
    pub async fn send(&self, msg: ServerMessage) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Queues a message if there is room, never waiting for a client that does not read.
    pub fn try_send(&self, msg: ServerMessage) {
        let _ = self.tx.try_send(msg);
    }

    /// The queue of channel stream traffic, for a stream's output.
    pub fn streams(&self) -> mpsc::UnboundedSender<Out> {
        self.streams.clone()
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<ServerMessage>,
    mut streams: mpsc::UnboundedReceiver<Out>,
) {
    let mut control_open = true;
    let mut streams_open = true;
    while control_open || streams_open {
        let first = tokio::select! {
            msg = rx.recv(), if control_open => match msg {
                Some(msg) => Out::Msg(msg),
                None => { control_open = false; continue; }
            },
            out = streams.recv(), if streams_open => match out {
                Some(out) => out,
                None => { streams_open = false; continue; }
            },
        };
        let mut next = Some(first);
        while let Some(out) = next {
            let frame = match out {
                Out::Frames(frames) => {
                    for frame in frames {
                        if writer.feed(frame).await.is_err() {
                            return;
                        }
                    }
                    next = take_ready(&mut rx, &mut streams);
                    continue;
                }
                Out::Msg(msg) => match serde_json::to_vec(&msg) {
                    Ok(json) => Frame::Control(Bytes::from(json)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a reply");
                        next = take_ready(&mut rx, &mut streams);
                        continue;
                    }
                },
            };
            if writer.feed(frame).await.is_err() {
                return;
            }
            next = take_ready(&mut rx, &mut streams);
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

/// The next queued output, if any is ready: stream traffic first, it is what clients wait on.
fn take_ready(
    rx: &mut mpsc::Receiver<ServerMessage>,
    streams: &mut mpsc::UnboundedReceiver<Out>,
) -> Option<Out> {
    streams
        .try_recv()
        .ok()
        .or_else(|| rx.try_recv().ok().map(Out::Msg))
}
