//! The task that owns one channel: it serves the channel's streams (the contract in
//! [`crate::stream`]), feeding their messages to the state machine and turning the resulting
//! effects into frames, one batch per stream per turn, on each stream's [`StreamOut`]. It never
//! waits on a client: its output queues are bounded by the credit and send windows the
//! clients hold.

use circuit_sdk::proto::{ChanInfo, ChanOpened, ErrorCode, Item, SignalOp};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::output::Outputs;
use super::state::ChanState;
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
    outputs: Outputs,
    removed: bool,
}

impl Actor {
    pub fn new(meta: Meta, capacity: u64, closed: bool) -> Self {
        let state = ChanState::new(capacity, meta.max_payload, closed).with_reservations();
        Self {
            meta,
            state,
            outputs: Outputs::default(),
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
                reserve_from,
                out,
            } => {
                self.opened(&out);
                self.outputs.insert(stream, out);
                self.state.open_send(stream, sender, reserve_from, now_ms());
            }
            StreamMsg::OpenRecv { stream, out, .. } => {
                self.opened(&out);
                self.outputs.insert(stream, out);
                self.state.open_recv(stream);
            }
            StreamMsg::Values { stream, values } => {
                for (seq, payload) in values {
                    self.state.send(stream, seq, payload);
                }
            }
            StreamMsg::Signal { stream, op, a, b } => match op {
                SignalOp::Credit => self.state.credit(stream, a),
                SignalOp::Ack => self.state.ack(stream, a),
                SignalOp::Return => self.state.give_back(stream, a, b),
                SignalOp::Waiting => self.state.waiting_for_value(stream, a),
                SignalOp::Recalled => self.state.recalled(stream, a, b),
                SignalOp::Release => self.state.release(stream),
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
                if let Some(out) = self.outputs.remove(stream) {
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
            replicas: 1,
        }));
    }

    /// Ends a stream with an error and forgets it.
    fn fail(&mut self, stream: StreamKey, code: ErrorCode, message: String) {
        self.outputs.fail(stream, code, message);
        self.state.stream_gone(stream, now_ms());
    }

    /// Sends what the state machine produced; a stream that broke the rules is ended and
    /// forgotten (which may produce more).
    fn flush(&mut self) {
        while !self.state.effects.is_empty() {
            let effects = std::mem::take(&mut self.state.effects);
            for stream in self.outputs.effects(effects) {
                self.state.stream_gone(stream, now_ms());
            }
        }
        self.outputs.flush();
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
            redelivered: c.redelivered,
            closed: self.state.is_closed(),
            owner: self.meta.owner.clone(),
            max_payload: self.meta.max_payload,
            created_at_ms: self.meta.created_at_ms,
            ..ChanInfo::default()
        }
    }
}
