//! Channel types shared by the daemon, the SDK and the CLI: names, descriptions, stream opening.

use serde::{Deserialize, Serialize};

/// Longest channel name, in characters.
pub const MAX_CHAN_NAME: usize = 128;

/// Default largest payload of one channel value: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

/// The largest capacity a channel may have: 2^30 values. A channel holds its values in its
/// owner's memory; a capacity beyond this is a mistake (a `-1` meant as "unbounded"), not a
/// plan.
pub const MAX_CAPACITY: u64 = 1 << 30;

/// Checks a channel capacity: 0 (rendezvous) to [`MAX_CAPACITY`].
pub fn validate_capacity(capacity: u64) -> Result<(), String> {
    if capacity > MAX_CAPACITY {
        return Err(format!(
            "capacity {capacity} is more than a channel may hold: at most {MAX_CAPACITY} values"
        ));
    }
    Ok(())
}

/// Checks a channel name: 1–128 characters of `A-Z a-z 0-9 . _ - /`.
pub fn validate_chan_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("channel name is empty".into());
    }
    let chars = name.chars().count();
    if chars > MAX_CHAN_NAME {
        return Err(format!(
            "channel name is {chars} characters long; the limit is {MAX_CHAN_NAME}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!(
            "channel name {name:?} contains {bad:?}; use only A-Z a-z 0-9 . _ - /"
        ));
    }
    Ok(())
}

/// A channel as its owner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChanInfo {
    /// The channel's name.
    pub name: String,
    /// Capacity C: how many values it holds (buffered plus in flight to receivers); 0 is a
    /// rendezvous channel.
    pub capacity: u64,
    /// Values buffered, waiting for a receiver.
    pub len: u64,
    /// Values delivered to receivers and not yet acknowledged.
    pub in_flight: u64,
    /// Sends waiting for room (or, at capacity 0, for a receiver).
    pub waiting_senders: u64,
    /// Receivers waiting for a value.
    pub waiting_receivers: u64,
    /// Open send streams.
    pub senders: u64,
    /// Open receive streams.
    pub receivers: u64,
    /// Values accepted since the channel was created.
    pub sent: u64,
    /// Values acknowledged by receivers since the channel was created.
    pub received: u64,
    /// Values put back in the queue after they were delivered, to be delivered again: their
    /// receiver went away, or gave them back unacknowledged (a recall). Counted by the
    /// owner since it started serving the channel (a replicated channel's leader: since it
    /// leads).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redelivered: u64,
    /// Closed: sends fail; receivers drain what is left.
    pub closed: bool,
    /// The node that owns the channel.
    pub owner: String,
    /// Largest payload accepted, in bytes.
    pub max_payload: u64,
    /// When it was created (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// A replicated channel's replicas (empty for a channel one node owns); `owner` is then
    /// the leader, as the answering node knows it (empty while none is known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaInfo>,
    /// A replicated channel's Raft term (its leader changes make it grow).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub term: u64,
    /// Where a replicated channel keeps its log: `memory` or `disk` (empty for one owner).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One replica of a replicated channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// The node that holds it.
    pub node: String,
    /// `leader`, `follower`, `catching up` (a new replica, or one far behind), `lost` (its node
    /// is not alive).
    pub state: String,
    /// Log entries it is behind the leader's last (as the leader knows; 0 when unknown).
    pub lag: u64,
}

/// First item of a send or receive stream: the stream is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChanOpened {
    /// The channel's capacity.
    pub capacity: u64,
    /// Largest payload accepted, in bytes.
    pub max_payload: u64,
    /// The owner node (a replicated channel's leader).
    pub owner: String,
    /// Replicas of the channel (1: a channel one node owns). A stream on a replicated channel
    /// follows its leader: when it ends with `unavailable`, the handle opens it again.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub replicas: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "jobs", "a.b_c-d/e", "Z9", &"x".repeat(128)] {
            assert!(validate_chan_name(good).is_ok(), "{good}");
        }
        for bad in ["", " ", "a b", "ä", "a:b", "a\n", &"x".repeat(129), "*"] {
            assert!(validate_chan_name(bad).is_err(), "{bad:?}");
        }
    }
}
