//! One connection to a daemon: the hello, then a reader task that routes what the daemon sends
//! and a writer task that owns the write half. [`Connection`] is the shared handle to both (the
//! writer's queue and the table of routes); `crate::client` builds the client API on it. The
//! contract between a connection and the streams it carries ([`StreamHandler`], [`Pull`])
//! lives here too, so neither side depends on the other.

mod hello;
mod keepalive;
mod reader;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

pub(crate) use hello::Hello;

use crate::error::Error;
use crate::linger::Linger;
use crate::proto::{ClientMessage, Frame, FrameCodec, Request, ServerMessage, READ_BUFFER};

/// Largest frame a client reads or writes: the largest value a daemon can be configured for.
const CLIENT_MAX_FRAME: usize = (1 << 30) + 64 * 1024;

/// Bytes the writer buffers before writing without waiting for more.
const WRITE_BUFFER: usize = 256 * 1024;

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
    /// Appends the frames to write now to the writer's queue; `token` is what was given with
    /// the pull.
    fn pull(&self, token: u64, out: &mut VecDeque<Frame>);
}

/// What the writer task writes.
pub(crate) enum Outgoing {
    /// A frame, written as it is.
    Frame(Frame),
    /// A source asked to produce its frames at the moment they are written.
    Pull(Arc<dyn Pull>, u64),
}

/// Where the messages for one request id go.
pub(crate) enum Route {
    /// A request: its messages go to the waiting caller.
    Reply(mpsc::UnboundedSender<Result<ServerMessage, Error>>),
    /// A channel stream: its messages and frames go to the stream's handler.
    Stream(Arc<dyn StreamHandler>),
}

/// Routes in flight, by request id; `None` once the connection is gone.
type Routes = Option<HashMap<u64, Route>>;

/// The shared handle to one connection: cheap to share, the tasks end when the last one goes.
pub(crate) struct Connection {
    out: mpsc::UnboundedSender<Outgoing>,
    routes: Arc<Mutex<Routes>>,
}

impl Connection {
    /// Says hello over `read` and `write` and, when the daemon answers in kind, starts the
    /// reader and the writer (which pings after `keepalive` of silence; `None`: never).
    /// `peer` names the other end in errors.
    pub(crate) async fn start<R, W>(
        read: R,
        write: W,
        peer: &str,
        keepalive: Option<Duration>,
    ) -> Result<(Self, Hello), Error>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: Linger + Send + 'static,
    {
        // A daemon may be configured for values up to 1 GiB; the client takes what it sends.
        let codec = FrameCodec::new(CLIENT_MAX_FRAME);
        let mut reader = FramedRead::with_capacity(read, codec, READ_BUFFER);
        let mut writer = FramedWrite::new(write, FrameCodec::new(CLIENT_MAX_FRAME));
        writer.set_backpressure_boundary(WRITE_BUFFER);
        let hello = hello::exchange(&mut reader, &mut writer, peer).await?;
        let routes: Arc<Mutex<Routes>> = Arc::new(Mutex::new(Some(HashMap::new())));
        let (out, out_rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(writer::write_loop(writer, out_rx, keepalive));
        tokio::spawn(reader::read_loop(reader, routes.clone()));
        Ok((Self { out, routes }, hello))
    }

    /// Sends request `id`, its messages going to `route` until its terminal one.
    pub(crate) fn request(&self, id: u64, request: Request, route: Route) -> Result<(), Error> {
        let frame = encode(&ClientMessage::Request { id, request })?;
        // The route first: the answer may come as soon as the request is written.
        match self.routes.lock().expect("routes lock").as_mut() {
            Some(map) => {
                map.insert(id, route);
            }
            None => return Err(Error::Disconnected),
        }
        if !self.send(Outgoing::Frame(frame)) {
            self.forget(id);
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Tells the daemon to end request `id` (its route stays, to see the terminal reply).
    pub(crate) fn cancel(&self, id: u64) {
        if let Ok(frame) = encode(&ClientMessage::Cancel { id }) {
            self.send(Outgoing::Frame(frame));
        }
    }

    /// Queues output for the writer; false when the connection is gone.
    pub(crate) fn send(&self, out: Outgoing) -> bool {
        self.out.send(out).is_ok()
    }

    /// Drops the route of request `id`: what still comes for it is dropped.
    pub(crate) fn forget(&self, id: u64) {
        if let Some(map) = self.routes.lock().expect("routes lock").as_mut() {
            map.remove(&id);
        }
    }

    /// True once the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.out.is_closed() || self.routes.lock().expect("routes lock").is_none()
    }
}

/// A control message as a frame.
fn encode(msg: &ClientMessage) -> Result<Frame, Error> {
    let json = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(Frame::Control(Bytes::from(json)))
}

/// A control frame's body as a daemon's message.
fn decode_message(body: &[u8]) -> Result<ServerMessage, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("bad message from daemon: {e}")))
}
