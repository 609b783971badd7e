//! A channel's streams as its server sees them: where each stream's output goes, and the
//! frames one turn of the state machine produced for each, sent as one batch per stream. Both
//! kinds of channel server use it: the actor of a channel this node owns (`actor.rs`) and the
//! leader of a replicated channel (`replica::group`).

use rustc_hash::FxHashMap as HashMap;

use circuit_sdk::proto::{ErrorCode, Frame, SignalOp};

use super::state::Effect;
use crate::stream::{StreamKey, StreamOut};

/// The open streams of one channel and their frames of the current turn.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    streams: HashMap<StreamKey, StreamOut>,
    /// Frames produced this turn, per stream; sent as one batch when the turn ends.
    outgoing: HashMap<StreamKey, Vec<Frame>>,
}

impl Outputs {
    /// Stream `key` writes to `out` from now on.
    pub fn insert(&mut self, key: StreamKey, out: StreamOut) {
        self.streams.insert(key, out);
    }

    /// Forgets stream `key` (its frames of this turn are dropped); returns its output.
    pub fn remove(&mut self, key: StreamKey) -> Option<StreamOut> {
        self.outgoing.remove(&key);
        self.streams.remove(&key)
    }

    /// Turns effects into frames, runs of acceptances into one range signal. A run is kept
    /// open per stream across the effects of other streams (a value accepted is usually
    /// delivered next, on a receiver's stream), so a turn that accepts many values of one
    /// sender answers them with one signal. A stream that broke the rules is ended on its
    /// connection at once (after what it was owed this turn); the keys of those are returned,
    /// for the state machine to forget them.
    pub fn effects(&mut self, effects: Vec<Effect>) -> Vec<StreamKey> {
        let mut failed = Vec::new();
        // Open runs: (stream, op, first seq, count); a turn touches few streams.
        let mut runs: Vec<(StreamKey, SignalOp, u64, u64)> = Vec::new();
        for effect in effects {
            let (stream, op, seq) = match effect {
                Effect::Accepted { stream, seq } => (stream, SignalOp::Accepted, seq),
                Effect::Closed { stream, seq } => (stream, SignalOp::Closed, seq),
                other => {
                    // What this stream is owed goes first, in order.
                    if let Some(i) = runs.iter().position(|r| r.0 == other.stream()) {
                        self.emit_run(runs.swap_remove(i));
                    }
                    if let Some(key) = self.emit(other) {
                        failed.push(key);
                    }
                    continue;
                }
            };
            match runs.iter_mut().find(|r| r.0 == stream) {
                Some(run) if run.1 == op && run.2 + run.3 == seq => run.3 += 1,
                Some(run) => {
                    let done = std::mem::replace(run, (stream, op, seq, 1));
                    self.emit_run(done);
                }
                None => runs.push((stream, op, seq, 1)),
            }
        }
        for run in runs {
            self.emit_run(run);
        }
        failed
    }

    /// Sends each stream its frames of this turn, as one batch.
    pub fn flush(&mut self) {
        for (stream, frames) in self.outgoing.drain() {
            if let Some(out) = self.streams.get(&stream) {
                out.frames(frames);
            }
        }
    }

    /// Ends stream `key` with an error, after the frames it is owed this turn, and forgets it.
    pub fn fail(&mut self, key: StreamKey, code: ErrorCode, message: String) {
        if let Some(frames) = self.outgoing.remove(&key) {
            if let Some(out) = self.streams.get(&key) {
                out.frames(frames);
            }
        }
        if let Some(out) = self.streams.remove(&key) {
            out.fail(code, message);
        }
    }

    /// Ends every stream with an error, after the frames each is owed this turn.
    pub fn fail_all(&mut self, code: ErrorCode, message: &str) {
        let keys: Vec<StreamKey> = self.streams.keys().copied().collect();
        for key in keys {
            self.fail(key, code, message.to_string());
        }
    }

    fn push_frame(&mut self, stream: StreamKey, frame: Frame) {
        self.outgoing.entry(stream).or_default().push(frame);
    }

    fn emit_run(&mut self, (stream, op, a, b): (StreamKey, SignalOp, u64, u64)) {
        self.signal(stream, op, a, b);
    }

    fn signal(&mut self, stream: StreamKey, op: SignalOp, a: u64, b: u64) {
        if let Some(out) = self.streams.get(&stream) {
            let frame = out.signal(op, a, b);
            self.push_frame(stream, frame);
        }
    }

    /// One effect; returns the stream if it must end for breaking the rules.
    fn emit(&mut self, effect: Effect) -> Option<StreamKey> {
        match effect {
            Effect::Accepted { stream, seq } => self.signal(stream, SignalOp::Accepted, seq, 1),
            Effect::Closed { stream, seq } => self.signal(stream, SignalOp::Closed, seq, 1),
            Effect::Full { stream, seq } => self.signal(stream, SignalOp::Full, seq, 0),
            Effect::Withdrawn { stream, seq } => self.signal(stream, SignalOp::Withdrawn, seq, 0),
            Effect::TooLarge { stream, seq, max } => {
                self.signal(stream, SignalOp::TooLarge, seq, max)
            }
            Effect::Empty { stream } => self.signal(stream, SignalOp::Empty, 0, 0),
            Effect::Reserve { stream, upto } => self.signal(stream, SignalOp::Reserve, upto, 0),
            Effect::Revoke { stream } => self.signal(stream, SignalOp::Revoke, 0, 0),
            Effect::Recall { stream, n } => self.signal(stream, SignalOp::Recall, n, 0),
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
            } => {
                self.fail(stream, code, message);
                return Some(stream);
            }
        }
        None
    }
}
