//! What the SWIM task counts for `/metrics`: gossip bytes at the UDP socket, suspicions seen,
//! and the round trip of direct probes. Updated by the task, read by the HTTP listener.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Bucket bounds of the probe round trip, in seconds: from a loopback mesh (well under a
/// millisecond) to a probe that nearly timed out (foca's probe RTT is 500 ms to 3 s).
const RTT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The mesh's counters. Cheap to clone: every field shares its value with its clones.
#[derive(Debug, Clone)]
pub struct Meters {
    /// Bytes of gossip sent, as written to the UDP socket (sealed, with a key).
    pub gossip_sent_bytes: Counter,
    /// Bytes of gossip received, as read from the UDP socket (refused packets included).
    pub gossip_received_bytes: Counter,
    /// Times a member became suspect in this node's table (this node's own suspicions and
    /// those gossiped to it).
    pub suspicions: Counter,
    /// Round trip of this node's direct probes: a ping out to its ack back, in seconds.
    pub probe_rtt: Histogram,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            gossip_sent_bytes: Counter::default(),
            gossip_received_bytes: Counter::default(),
            suspicions: Counter::default(),
            probe_rtt: Histogram::new(RTT_BUCKETS),
        }
    }
}
