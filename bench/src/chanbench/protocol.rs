//! What the harness and its role processes say to each other: one JSON [`Line`] per event on a
//! role's stdout, the stamp every payload carries, and the monotonic clock both sides read.

use bytes::{BufMut as _, Bytes, BytesMut};
use nix::time::{clock_gettime, ClockId};
use serde::{Deserialize, Serialize};

/// Bytes at the start of every payload: the sender's index and the message's sequence number,
/// both `u32` little-endian. Smaller payloads cannot be verified, so sizes start here.
pub const STAMP_LEN: usize = 8;

/// What the harness writes on a sender's stdin to start it. Closing stdin stops any role.
pub const GO: &str = "go";

/// One event a role process reports, as a JSON line on its stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    /// Connected (and subscribed, or listening): the role can take part.
    Ready,
    /// A receiver's running count, printed a few times a second while it changes.
    Progress {
        /// Messages taken so far, duplicates included.
        received: u64,
    },
    /// A sender's last line.
    Sent(Sent),
    /// A receiver's (or an echo's) last line.
    Received(Received),
    /// A pinger's last line.
    RoundTrips(RoundTrips),
    /// The role failed; the harness shows `error` in the table.
    Failed {
        /// What went wrong, with its causes.
        error: String,
    },
}

impl Line {
    /// Its tag, for an error message about a line out of place.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Progress { .. } => "progress",
            Self::Sent(_) => "sent",
            Self::Received(_) => "received",
            Self::RoundTrips(_) => "round_trips",
            Self::Failed { .. } => "failed",
        }
    }
}

/// What a sender did between `go` and its last message being accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    /// Messages sent.
    pub count: u64,
    /// When it sent its first message ([`now_ns`]).
    pub start_ns: u64,
    /// When its last message was accepted (after a flush).
    pub end_ns: u64,
    /// CPU time it used from `ready` to the end.
    pub cpu_ns: u64,
    /// Anything odd its client reported (NATS events), for the notes under the tables.
    pub notes: Vec<String>,
    /// A steady sender's messages by sequence number: when each was first sent and when it was
    /// acknowledged ([`now_ns`]). Empty for the other senders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Acked>,
}

/// When one message of a steady sender was first sent and when it was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// When it was first handed to the client ([`now_ns`]).
    pub sent_ns: u64,
    /// When its acknowledgement came back ([`now_ns`]).
    pub acked_ns: u64,
}

/// What a receiver took, checkable against what the senders sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Received {
    /// Messages taken, duplicates included.
    pub received: u64,
    /// Messages this receiver saw twice.
    pub duplicates: u64,
    /// Messages of the wrong size or with a stamp out of range.
    pub malformed: u64,
    /// When it took its last message ([`now_ns`]); 0 if it took none.
    pub last_ns: u64,
    /// Per sender, a bitmap of the sequence numbers it saw, so the harness can find messages
    /// lost, or delivered to two receivers.
    pub seen: Vec<Vec<u64>>,
    /// CPU time it used from `ready` to the end.
    pub cpu_ns: u64,
    /// Anything odd its client reported.
    pub notes: Vec<String>,
}

/// Round-trip latencies a pinger measured, after its warm-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundTrips {
    /// Round trips measured.
    pub count: u64,
    /// Median round trip, in nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile, in nanoseconds.
    pub p99_ns: u64,
    /// Slowest round trip, in nanoseconds.
    pub max_ns: u64,
    /// CPU time it used from `ready` to the end.
    pub cpu_ns: u64,
    /// Anything odd its client reported.
    pub notes: Vec<String>,
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process on the machine, so a sender's
/// start and a receiver's end can be subtracted.
pub fn now_ns() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    // Both fields are non-negative for CLOCK_MONOTONIC.
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// The `q` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Bytes a [`Payload`] allocates at once for the messages it stamps.
const ARENA: usize = 64 * 1024;

/// The payload of one size: a fixed filler behind a per-message stamp. Messages are cut from
/// a shared arena, as a program that makes many small `Bytes` would (the C roles reuse one
/// buffer): one allocation per 64 KiB of messages, not one per message.
#[derive(Debug, Clone)]
pub struct Payload {
    template: Vec<u8>,
    arena: BytesMut,
}

impl Payload {
    /// A payload of `size` bytes; `size` must be at least [`STAMP_LEN`].
    pub fn new(size: usize) -> Self {
        assert!(size >= STAMP_LEN, "payloads hold at least a stamp");
        Self {
            template: (0..size).map(|i| i as u8).collect(),
            arena: BytesMut::new(),
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Never: a payload holds at least a stamp. (Clippy wants it beside `len`.)
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// A new message: `seq` of sender `sender`.
    pub fn stamped(&mut self, sender: u32, seq: u32) -> Bytes {
        let size = self.template.len();
        if self.arena.capacity() < size {
            self.arena = BytesMut::with_capacity(ARENA.max(size));
        }
        self.arena.put_slice(&Self::stamp(sender, seq));
        self.arena.put_slice(&self.template[STAMP_LEN..]);
        self.arena.split().freeze()
    }

    /// The stamp of message `seq` of sender `sender`: the payload's first [`STAMP_LEN`] bytes.
    pub fn stamp(sender: u32, seq: u32) -> [u8; STAMP_LEN] {
        let mut stamp = [0; STAMP_LEN];
        stamp[..4].copy_from_slice(&sender.to_le_bytes());
        stamp[4..].copy_from_slice(&seq.to_le_bytes());
        stamp
    }

    /// What follows the stamp: the same in every message.
    pub fn filler(&self) -> &[u8] {
        &self.template[STAMP_LEN..]
    }
}

/// The sender index and sequence number a payload starts with.
pub fn read_stamp(payload: &[u8]) -> Option<(u32, u32)> {
    let sender = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(payload.get(4..STAMP_LEN)?.try_into().ok()?);
    Some((sender, seq))
}

/// The channel (or subject) a round trip's pings travel on.
pub fn ping_name(name: &str) -> String {
    format!("{name}.ping")
}

/// The channel (or subject) a round trip's pongs travel on.
pub fn pong_name(name: &str) -> String {
    format!("{name}.pong")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut payload = Payload::new(16);
        let msg = payload.stamped(3, 70_000);
        assert_eq!(msg.len(), 16);
        assert_eq!(read_stamp(&msg), Some((3, 70_000)));
        let buf = [&Payload::stamp(1, 2)[..], payload.filler()].concat();
        assert_eq!(buf.len(), 16);
        assert_eq!(read_stamp(&buf), Some((1, 2)));
        assert_eq!(&buf[STAMP_LEN..], &msg[STAMP_LEN..]);
        assert_eq!(read_stamp(&buf[..7]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn lines_are_tagged_json() {
        let line = serde_json::to_string(&Line::Progress { received: 5 }).unwrap();
        assert_eq!(line, r#"{"event":"progress","received":5}"#);
        let back: Line = serde_json::from_str(r#"{"event":"ready"}"#).unwrap();
        assert!(matches!(back, Line::Ready));
    }
}
