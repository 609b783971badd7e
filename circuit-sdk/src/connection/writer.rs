//! The writer task: it owns the write half and writes everything queued before it flushes, so
//! what piles up while it is busy goes out in one write. A [`Pull`](super::Pull) source
//! produces its frames at the moment they are written (acknowledgements and credit made
//! meanwhile go out as one frame). Dropped with the runtime, it still writes what is queued,
//! waiting up to [`EXIT_LINGER`] for the socket to take it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;

use super::keepalive::Keepalive;
use super::Outgoing;
use crate::linger::Linger;
use crate::proto::{Frame, FrameCodec};

/// Longest the writer's last write waits for the socket to take what is queued when the
/// runtime goes away (a daemon that reads nothing for this long is stuck, and the program
/// exits without the rest).
pub(crate) const EXIT_LINGER: Duration = Duration::from_secs(10);

/// Writes what is queued, coalesced into as few writes as possible, and pings after
/// `keepalive` of silence, until every sender of the queue is gone or a write fails.
///
/// Every frame taken from the queue waits in `Writer::ready` until the codec has it, never in
/// a local of this future: the task may be dropped at any `.await` (the runtime going away),
/// and the writer's drop writes only what `Writer` holds.
pub(super) async fn write_loop<W: Linger>(
    writer: FramedWrite<W, FrameCodec>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    keepalive: Option<Duration>,
) {
    let mut w = Writer {
        framed: writer,
        rx,
        ready: VecDeque::new(),
        done: false,
    };
    let mut keepalive = Keepalive::new(keepalive);
    while let Some(first) = keepalive.next(&mut w.rx).await {
        let mut next = Some(first);
        while let Some(out) = next {
            w.take(out);
            while !w.ready.is_empty() {
                // Room in the write buffer first (this may write, and wait); then the frame
                // goes from `ready` into the buffer with no wait in between.
                let room = std::future::poll_fn(|cx| Pin::new(&mut w.framed).poll_ready(cx));
                if room.await.is_err() {
                    w.done = true;
                    return;
                }
                let frame = w.ready.pop_front().expect("a frame is ready");
                if Pin::new(&mut w.framed).start_send(frame).is_err() {
                    w.done = true;
                    return;
                }
            }
            next = w.rx.try_recv().ok();
        }
        if w.framed.flush().await.is_err() {
            w.done = true;
            return;
        }
        keepalive.sent();
    }
    // Every handle is gone: end the sending side (the daemon reads to the end, then closes).
    let _ = w.framed.close().await;
    w.done = true;
}

/// The writer task's state. Dropping it — which is what happens to the task when the runtime
/// shuts down because `main` returned — writes what is still queued, straight to the socket
/// (the runtime's I/O driver no longer runs), waiting up to [`EXIT_LINGER`] for room: the
/// values whose `send` completed on reserved room (CHANNELS.md rule 2), and the
/// acknowledgements and stream ends a program's handles queued as they were dropped on its
/// way out. Without this, such a value would be lost, and a value the application received
/// just before exiting would go back to its channel and be delivered again (rule 8).
struct Writer<W: Linger> {
    framed: FramedWrite<W, FrameCodec>,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    /// Frames taken from the queue (or pulled) that the codec does not have yet, in order.
    ready: VecDeque<Frame>,
    /// The loop ended: a write failed, or it closed the sending side itself. Nothing is left
    /// for the drop to write.
    done: bool,
}

impl<W: Linger> Writer<W> {
    /// Moves what `out` stands for into `ready`.
    fn take(&mut self, out: Outgoing) {
        match out {
            Outgoing::Frame(frame) => self.ready.push_back(frame),
            Outgoing::Pull(source, token) => source.pull(token, &mut self.ready),
        }
    }
}

impl<W: Linger> Drop for Writer<W> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        while let Ok(out) = self.rx.try_recv() {
            self.take(out);
        }
        for frame in self.ready.drain(..) {
            // Encoding into the write buffer never waits; only the write to the socket may.
            if Pin::new(&mut self.framed).start_send(frame).is_err() {
                return;
            }
        }
        // Even with nothing left to write: over TCP the last write also waits until the
        // daemon has read what was written before (see `Linger`).
        let bytes = self.framed.write_buffer_mut().split();
        let deadline = Instant::now() + EXIT_LINGER;
        let _ = self.framed.get_mut().write_last(&bytes, deadline);
    }
}
