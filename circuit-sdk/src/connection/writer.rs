//! The writer task: it owns the write half and writes everything queued before it flushes, so
//! what piles up while it is busy goes out in one write. A [`Pull`](super::Pull) source
//! produces its frames at the moment they are written (acknowledgements and credit made
//! meanwhile go out as one frame). Dropped with the runtime, it still writes what is queued.

use std::pin::Pin;
use std::time::Duration;

use futures::{FutureExt, Sink, SinkExt};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;

use super::keepalive::Keepalive;
use super::Outgoing;
use crate::proto::{Frame, FrameCodec};

/// Writes what is queued, coalesced into as few writes as possible, and pings after
/// `keepalive` of silence, until every sender of the queue is gone or a write fails.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    writer: FramedWrite<W, FrameCodec>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    keepalive: Option<Duration>,
) {
    let mut w = Writer {
        framed: writer,
        rx,
        pulled: Vec::new(),
        broken: false,
    };
    let mut keepalive = Keepalive::new(keepalive);
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
