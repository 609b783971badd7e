//! The simulated network: member addresses, one-way latency, packet loss and a per-member
//! processing delay. Every random draw comes from one seeded generator per run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use circuitd::membership::NodeId;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use super::clock::{nanos, Nanos};

/// Port every simulated member listens on (the daemon's default mesh port).
pub const PORT: u16 = 7711;
/// Members per /24: member `i` is `10.(i / 250).(i % 250).1`.
const PER_SUBNET: usize = 250;

/// The address of member `i`.
pub fn addr_of(i: usize) -> SocketAddr {
    let hi = u8::try_from(i / PER_SUBNET).expect("at most 64,000 members");
    let lo = (i % PER_SUBNET) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1)), PORT)
}

/// The member listening at `addr`, if it is one of ours.
pub fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr.ip() {
        IpAddr::V4(ip) if addr.port() == PORT => {
            let [ten, hi, lo, one] = ip.octets();
            (ten == 10 && one == 1 && usize::from(lo) < PER_SUBNET)
                .then(|| usize::from(hi) * PER_SUBNET + usize::from(lo))
        }
        _ => None,
    }
}

/// The first identity of member `i`. The generation is fixed (the daemon takes the wall clock)
/// so that a run depends on its seed alone; `renew()` bumps it as in the daemon.
pub fn identity_of(i: usize) -> NodeId {
    NodeId {
        name: format!("node-{i}"),
        addr: addr_of(i),
        generation: 1,
    }
}

/// How packets travel and how long a member takes to handle one.
#[derive(Debug, Clone, Copy)]
pub struct NetModel {
    /// Shortest one-way latency.
    pub latency_min: Duration,
    /// Longest one-way latency; each packet draws uniformly in between.
    pub latency_max: Duration,
    /// Probability that a packet is lost, independently of every other.
    pub loss: f64,
    /// Time a member is busy per event it handles (0: infinitely fast). Events that arrive
    /// while it is busy wait, as on a single-threaded membership task.
    pub processing: Duration,
}

/// A [`NetModel`] with its random draws.
pub struct Network {
    model: NetModel,
    rng: StdRng,
    min: Nanos,
    max: Nanos,
}

impl Network {
    /// The network of one run, drawing from a generator seeded with `seed`.
    pub fn new(model: NetModel, seed: u64) -> Self {
        let min = nanos(model.latency_min);
        Self {
            model,
            rng: StdRng::seed_from_u64(seed),
            min,
            max: nanos(model.latency_max).max(min),
        }
    }

    /// The delay before a packet sent now arrives, or `None` if it is lost.
    pub fn transit(&mut self) -> Option<Nanos> {
        if self.model.loss > 0.0 && self.rng.random_bool(self.model.loss) {
            return None;
        }
        Some(self.rng.random_range(self.min..=self.max))
    }

    /// Time a member is busy per event.
    pub fn processing(&self) -> Nanos {
        nanos(self.model.processing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 249, 250, 1999, 2000] {
            assert_eq!(index_of(addr_of(i)), Some(i));
        }
        assert_eq!(addr_of(251).to_string(), "10.1.1.1:7711");
        assert_eq!(index_of("10.0.0.2:7711".parse().unwrap()), None);
    }
}
