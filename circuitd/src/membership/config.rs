//! SWIM timing, re-tuned as the cluster grows: fast failure detection on a LAN without
//! suspecting a busy node.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Probe period: each member probes one other member per period.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// Wait this long for a direct ack before asking others to probe indirectly.
pub const PROBE_RTT: Duration = Duration::from_millis(200);
/// Largest gossip packet; fits an Ethernet MTU.
pub const MAX_PACKET: usize = 1400;

/// The SWIM configuration for a cluster of `members` (this node included).
///
/// Against memberlist's LAN defaults (1 s probes, suspicion 4·log10(n)·1 s, about 6–10 s from
/// kill to dead) this probes twice as often and keeps suspicion short but proportional to
/// log(n), so that the news of a suspicion reaches the suspect (which refutes it) before the
/// timeout at any size. The membership task runs on its own thread, so a busy daemon still
/// answers probes in time.
pub fn swim_config(members: usize) -> foca::Config {
    let n = members.max(1) as f64;
    let log_n = (n + 1.0).log10().max(1.0);
    // Dissemination: an update is piggybacked this many times (memberlist: 4·log10(n+1)),
    // but never fewer than 20: while a cluster is small (as every cluster is while it boots)
    // 4·log10(n+1) is about 4, and the simulation showed joiners whose news died out after
    // 4 sends, leaving views incomplete for tens of seconds.
    let max_tx = (4.0 * log_n).ceil().clamp(20.0, 255.0) as u8;
    // Suspicion: 2 probe periods per decade of members, at least 1 s.
    let suspicion = PROBE_PERIOD
        .mul_f64(2.0 * log_n)
        .max(Duration::from_secs(1));
    foca::Config {
        probe_period: PROBE_PERIOD,
        probe_rtt: PROBE_RTT,
        // Six helpers probe a silent member before it is suspected (memberlist: 3). In the
        // simulation at 1 % packet loss this took false suspicions in 10 minutes at 1000–2000
        // members from 6–7 to 0, for about 0.3 more packets per second per member.
        num_indirect_probes: NonZeroUsize::new(6).expect("non-zero"),
        max_transmissions: NonZeroU8::new(max_tx).expect("non-zero"),
        suspect_to_down_after: suspicion,
        // Remember dead members for a day so a stale one is not taken back.
        remove_down_after: Some(Duration::from_secs(24 * 3600)),
        // Room for the seal (header and tag) within MAX_PACKET.
        max_packet_size: NonZeroUsize::new(MAX_PACKET - super::seal::OVERHEAD).expect("non-zero"),
        notify_down_members: true,
        // Announce to a random member now and then, so split views merge.
        periodic_announce: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        }),
        // And to members we think are dead: after a partition heals they learn it and rejoin.
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        }),
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(200),
            num_members: NonZeroUsize::new(3).expect("non-zero"),
        }),
    }
}

/// Sizes at which the configuration is recomputed: it changes slowly with n.
pub fn size_bucket(members: usize) -> u32 {
    (members.max(1) as f64).log2().ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_grows_with_the_cluster_but_stays_fast() {
        let small = swim_config(3);
        let twenty = swim_config(20);
        let big = swim_config(2000);
        assert!(small.suspect_to_down_after <= twenty.suspect_to_down_after);
        assert!(twenty.suspect_to_down_after <= Duration::from_millis(1500));
        assert!(big.suspect_to_down_after > twenty.suspect_to_down_after);
        assert!(big.max_transmissions >= small.max_transmissions);
        assert!(
            small.max_transmissions.get() >= 20,
            "news outlives a small cluster's boot"
        );
    }
}
