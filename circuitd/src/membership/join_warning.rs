//! Warnings about a join that does not succeed: when to give them (a slowing schedule,
//! sans-IO), and why it fails, as far as this node can tell.
//!
//! Gossip alone cannot tell why a seed is silent: a seed that cannot open our packets (another
//! cluster key, or none) drops them without a word, as an address where nothing listens does.
//! So the warning asks the seed's TCP port (the same mesh port): nothing there, a refused
//! handshake (the key), or a circuitd that answers over TCP while its gossip does not (UDP
//! blocked, or this node's address unreachable from there).

use std::net::SocketAddr;
use std::time::Duration;

use circuit_sdk::secure::{HandshakeError, Key};
use circuit_sdk::{Client, Target};
use tokio::time::Instant;

/// When the first warnings are given, after the join began; then one every [`EVERY`].
const FIRST: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
];
/// The interval between warnings after [`FIRST`].
const EVERY: Duration = Duration::from_secs(300);
/// Longest wait for the seed's TCP port to answer when finding out why.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// When to warn that a join has not succeeded yet.
#[derive(Debug, Clone)]
pub(crate) struct Warnings {
    began: Instant,
    /// Warnings given (or skipped because the task was late).
    given: u32,
}

impl Warnings {
    /// The schedule of a join that begins at `began`.
    pub fn new(began: Instant) -> Self {
        Self { began, given: 0 }
    }

    /// When the next warning is due.
    pub fn next(&self) -> Instant {
        self.began + offset(self.given)
    }

    /// A warning is given at `now`; returns how long the join has gone on. Warnings missed
    /// while this node could not run (a paused process) are skipped, not given at once.
    pub fn give(&mut self, now: Instant) -> Duration {
        while self.next() <= now {
            self.given += 1;
        }
        now.saturating_duration_since(self.began)
    }

    /// Whether any warning was given.
    pub fn warned(&self) -> bool {
        self.given > 0
    }
}

/// How long after the join began warning `n` (from 0) is due.
fn offset(n: u32) -> Duration {
    match FIRST.get(n as usize) {
        Some(at) => *at,
        None => FIRST[FIRST.len() - 1] + EVERY * (n + 1 - FIRST.len() as u32),
    }
}

/// Why `seed` does not answer gossip, as its TCP port tells: connects with `key` (this node's
/// sending key, if any) as a peer link would, within [`PROBE_TIMEOUT`].
pub(crate) async fn diagnose(seed: SocketAddr, key: Option<Key>) -> String {
    let target = Target::Tcp(seed.to_string());
    let answer = tokio::time::timeout(PROBE_TIMEOUT, Client::connect_with_key(&target, key)).await;
    explain(answer.map(|r| r.map(drop)).ok())
}

/// The reason a warning gives for what the seed's TCP port answered (`None`: nothing in time).
fn explain(answer: Option<Result<(), circuit_sdk::Error>>) -> String {
    const AUTH: &str = "authentication failed: wrong or missing cluster key";
    const UDP: &str = "circuitd answers there over TCP but not over gossip (UDP): is UDP \
                       blocked on the way, or this node's address (--advertise) unreachable \
                       from there?";
    use circuit_sdk::Error as E;
    use HandshakeError as H;
    match answer {
        None => format!(
            "no answer over TCP either within {PROBE_TIMEOUT:?}: is circuitd running there, \
             and reachable from here?"
        ),
        Some(Ok(())) | Some(Err(E::Handshake { error: H::Busy, .. })) => UDP.to_string(),
        Some(Err(E::Connect { reason, .. })) => format!(
            "nothing accepts connections there ({reason}): is circuitd running with --listen \
             on that address?"
        ),
        Some(Err(E::Handshake { error, .. })) => match error {
            H::AuthFailed => format!("{AUTH} (the seed holds another cluster key)"),
            H::KeyRequired => {
                format!("{AUTH} (the seed requires a cluster key; this node has none: --key-file)")
            }
            H::NoKey => format!("{AUTH} (the seed runs without a cluster key; this node has one)"),
            other => format!("something answers over TCP, but not as circuitd would ({other})"),
        },
        Some(Err(other)) => {
            format!("something answers over TCP, but not as circuitd would ({other})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_come_at_5s_30s_1min_2min_then_every_5min() {
        let began = Instant::now();
        let mut schedule = Warnings::new(began);
        assert!(!schedule.warned());
        let mut at = Vec::new();
        for _ in 0..7 {
            let due = schedule.next();
            at.push((due - began).as_secs());
            assert_eq!(schedule.give(due), due - began);
        }
        assert_eq!(at, [5, 30, 60, 120, 420, 720, 1020]);
        assert!(schedule.warned());
    }

    #[test]
    fn a_late_warning_skips_the_ones_it_missed() {
        let began = Instant::now();
        let mut schedule = Warnings::new(began);
        // The node could not run from 4 s to 70 s: one warning then, the next at 2 min.
        let late = began + Duration::from_secs(70);
        assert_eq!(schedule.give(late), Duration::from_secs(70));
        assert_eq!(schedule.next() - began, Duration::from_secs(120));
    }

    #[test]
    fn the_reason_names_the_cause_the_tcp_port_shows() {
        let handshake = |error| {
            Some(Err(circuit_sdk::Error::Handshake {
                target: "10.0.0.1:7711".into(),
                error,
            }))
        };
        let refused = Some(Err(circuit_sdk::Error::Connect {
            target: "10.0.0.1:7711".into(),
            reason: std::io::ErrorKind::ConnectionRefused.into(),
        }));
        let cases = [
            (refused, "nothing accepts connections there"),
            (None, "no answer over TCP either"),
            (
                handshake(HandshakeError::AuthFailed),
                "authentication failed: wrong or missing cluster key (the seed holds another",
            ),
            (
                handshake(HandshakeError::KeyRequired),
                "authentication failed: wrong or missing cluster key (the seed requires a",
            ),
            (
                handshake(HandshakeError::NoKey),
                "authentication failed: wrong or missing cluster key (the seed runs without",
            ),
            (
                Some(Ok(())),
                "answers there over TCP but not over gossip (UDP)",
            ),
            (
                handshake(HandshakeError::BadPreamble),
                "something answers over TCP, but not as circuitd would",
            ),
        ];
        for (answer, want) in cases {
            let got = explain(answer);
            assert!(got.contains(want), "{got:?} should say {want:?}");
        }
    }
}
