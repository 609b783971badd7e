//! The task that owns one channel: it serves the channel's streams (the contract in
//! [`crate::stream`]), feeding their messages to the state machine and turning the resulting
//! effects into frames, one batch per stream per turn, on each stream's [`StreamOut`]. It never
//! waits on a client: its output queues are bounded by the credit and send windows the
//! clients hold.

use rustc_hash::FxHashMap as HashMap;

use circuit_sdk::proto::{ChanInfo, ChanOpened, ErrorCode, Frame, Item, SignalOp};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::state::{ChanState, Effect};
use crate::clock::now_ms;
use crate::stream::{StreamKey, StreamMsg, StreamOut};

/// Inbox size of a channel actor; senders wait when it is full (backpressure on the reader).
pub(crate) const INBOX: usize = 1024;
/// Messages handled between two flushes of output.
const BATCH: usize = 256;

/// A message to a channel actor.
#[derive(Debug)]
pub(crate) enum ChanMsg {
    /// A message of one of the channel's streams, from its connection.
    Stream(StreamMsg),
    /// Describe the channel.
    Stat(oneshot::Sender<ChanInfo>),
    /// Close the channel.
    Close(oneshot::Sender<Result<(), String>>),
    /// Delete the channel: end every stream with `not_found` and stop.
    Remove(oneshot::Sender<()>),
}

/// Fixed facts about a channel.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub name: String,
    pub owner: String,
    pub max_payload: u64,
    pub created_at_ms: u64,
}

pub(crate) struct Actor {
    meta: Meta,
    state: ChanState,
    streams: HashMap<StreamKey, StreamOut>,
    /// Frames produced this turn, per stream; sent as one batch when the turn ends.
    outgoing: HashMap<StreamKey, Vec<Frame>>,
    removed: bool,
}

impl Actor {
    pub fn new(meta: Meta, capacity: u64, closed: bool) -> Self {
        let state = ChanState::new(capacity, meta.max_payload, closed);
        Self {
            meta,
            state,
            streams: HashMap::default(),
            outgoing: HashMap::default(),
            removed: false,
        }
    }

    /// Serves the inbox until the channel is removed or the daemon stops.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ChanMsg>, shutdown: CancellationToken) {
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                () = shutdown.cancelled() => None,
            };
            let Some(msg) = msg else { break };
            self.handle(msg);
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.flush();
            if self.removed {
                break;
            }
        }
    }

    fn handle(&mut self, msg: ChanMsg) {
        match msg {
            ChanMsg::Stream(msg) => self.stream(msg),
            ChanMsg::Stat(reply) => {
                let _ = reply.send(self.info());
            }
            ChanMsg::Close(reply) => {
                let _ = reply.send(self.state.close());
            }
            ChanMsg::Remove(reply) => {
                self.flush();
                for stream in self.state.streams() {
                    self.fail(
                        stream,
                        ErrorCode::NotFound,
                        format!("channel \"{}\" was removed", self.meta.name),
                    );
                }
                self.state.effects.clear();
                self.removed = true;
                let _ = reply.send(());
            }
        }
    }

    /// A message of one of the channel's streams.
    fn stream(&mut self, msg: StreamMsg) {
        match msg {
            StreamMsg::OpenSend {
                stream,
                sender,
                out,
            } => {
                self.opened(&out);
                self.streams.insert(stream, out);
                self.state.open_send(stream, sender, now_ms());
            }
            StreamMsg::OpenRecv { stream, out } => {
                self.opened(&out);
                self.streams.insert(stream, out);
                self.state.open_recv(stream);
            }
            StreamMsg::Values { stream, values } => {
                for (seq, payload) in values {
                    self.state.send(stream, seq, payload);
                }
            }
            StreamMsg::Signal { stream, op, a } => match op {
                SignalOp::Credit => self.state.credit(stream, a),
                SignalOp::Ack => self.state.ack(stream, a),
                SignalOp::Return => self.state.give_back(stream, a),
                SignalOp::TryRecv => self.state.try_recv(stream),
                SignalOp::Withdraw => self.state.withdraw(stream),
                SignalOp::TrySend => self.state.mark_try(stream, a),
                SignalOp::CancelSend => self.state.cancel_send(stream, a),
                other => self.fail(
                    stream,
                    ErrorCode::BadRequest,
                    format!("signal {other:?} is not sent by clients"),
                ),
            },
            StreamMsg::Gone { stream, cancelled } => {
                self.state.stream_gone(stream, now_ms());
                if let Some(out) = self.streams.remove(&stream) {
                    if cancelled {
                        out.fail(ErrorCode::Cancelled, "stream closed by the client".into());
                    } else {
                        out.end();
                    }
                }
            }
        }
    }

    fn opened(&self, out: &StreamOut) {
        out.item(Item::ChanOpened(ChanOpened {
            capacity: self.state.capacity(),
            max_payload: self.meta.max_payload,
            owner: self.meta.owner.clone(),
        }));
    }

    /// Ends a stream with an error and forgets it.
    fn fail(&mut self, stream: StreamKey, code: ErrorCode, message: String) {
        self.send_outgoing(stream);
        if let Some(out) = self.streams.remove(&stream) {
            out.fail(code, message);
        }
        self.state.stream_gone(stream, now_ms());
    }

    /// Sends what the state machine produced; runs of acceptances become one range signal.
    fn flush(&mut self) {
        while !self.state.effects.is_empty() {
            let effects = std::mem::take(&mut self.state.effects);
            let mut run: Option<(StreamKey, SignalOp, u64, u64)> = None;
            for effect in effects {
                let (stream, op, seq) = match effect {
                    Effect::Accepted { stream, seq } => (stream, SignalOp::Accepted, seq),
                    Effect::Closed { stream, seq } => (stream, SignalOp::Closed, seq),
                    other => {
                        self.emit_run(run.take());
                        self.emit(other);
                        continue;
                    }
                };
                match &mut run {
                    Some((s, o, start, n)) if *s == stream && *o == op && *start + *n == seq => {
                        *n += 1;
                    }
                    _ => {
                        self.emit_run(run.take());
                        run = Some((stream, op, seq, 1));
                    }
                }
            }
            self.emit_run(run);
        }
        for (stream, frames) in self.outgoing.drain() {
            if let Some(out) = self.streams.get(&stream) {
                out.frames(frames);
            }
        }
    }

    /// Hands a stream's frames of this turn to its connection before it is ended.
    fn send_outgoing(&mut self, stream: StreamKey) {
        if let Some(frames) = self.outgoing.remove(&stream) {
            if let Some(out) = self.streams.get(&stream) {
                out.frames(frames);
            }
        }
    }

    fn push_frame(&mut self, stream: StreamKey, frame: Frame) {
        self.outgoing.entry(stream).or_default().push(frame);
    }

    fn emit_run(&mut self, run: Option<(StreamKey, SignalOp, u64, u64)>) {
        if let Some((stream, op, a, b)) = run {
            self.signal(stream, op, a, b);
        }
    }

    fn signal(&mut self, stream: StreamKey, op: SignalOp, a: u64, b: u64) {
        if let Some(out) = self.streams.get(&stream) {
            let frame = out.signal(op, a, b);
            self.push_frame(stream, frame);
        }
    }

    fn emit(&mut self, effect: Effect) {
        match effect {
            Effect::Accepted { stream, seq } => self.signal(stream, SignalOp::Accepted, seq, 1),
            Effect::Closed { stream, seq } => self.signal(stream, SignalOp::Closed, seq, 1),
            Effect::Full { stream, seq } => self.signal(stream, SignalOp::Full, seq, 0),
            Effect::Withdrawn { stream, seq } => self.signal(stream, SignalOp::Withdrawn, seq, 0),
            Effect::TooLarge { stream, seq, max } => {
                self.signal(stream, SignalOp::TooLarge, seq, max)
            }
            Effect::Empty { stream } => self.signal(stream, SignalOp::Empty, 0, 0),
            Effect::Drained { stream } => self.signal(stream, SignalOp::Drained, 0, 0),
            Effect::Deliver {
                stream,
                id,
                payload,
            } => {
                if let Some(out) = self.streams.get(&stream) {
                    let frame = out.data(id, payload);
                    self.push_frame(stream, frame);
                }
            }
            Effect::Fail {
                stream,
                code,
                message,
            } => self.fail(stream, code, message),
        }
    }

    fn info(&self) -> ChanInfo {
        let c = self.state.counts();
        ChanInfo {
            name: self.meta.name.clone(),
            capacity: self.state.capacity(),
            len: c.len,
            in_flight: c.in_flight,
            waiting_senders: c.waiting_senders,
            waiting_receivers: c.waiting_receivers,
            senders: c.senders,
            receivers: c.receivers,
            sent: c.sent,
            received: c.received,
            closed: self.state.is_closed(),
            owner: self.meta.owner.clone(),
            max_payload: self.meta.max_payload,
            created_at_ms: self.meta.created_at_ms,
        }
    }
}
