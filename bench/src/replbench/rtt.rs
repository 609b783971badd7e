//! One round-trip trial on circuit channels of one kind: a ping and a pong channel, the channel
//! benchmark's pinger (send, then wait for the pong) and echo (receive, send back) on nodes that
//! lead neither channel where the leaders allow it (`chanbench::driver::round_trip`), and the
//! channels removed.

use super::contender::{Contender, Tried};
use super::mesh::{Mesh, NotMade, NAMES};
use super::throughput::Setup;
use crate::chanbench::driver::{self, RttOutcome};
use crate::chanbench::protocol::{ping_name, pong_name};
use crate::chanbench::trial::Side;
use crate::chanbench::System;

/// What one round-trip trial measured, and where.
#[derive(Debug, Clone)]
pub struct Run {
    /// The pinger's latencies.
    pub outcome: RttOutcome,
    /// `pinger b, echo c; ping led by a, pong by a`.
    pub placement: String,
}

/// How many round trips a trial makes.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    /// Measured.
    pub measured: u64,
    /// Made before measuring.
    pub warmup: u64,
    /// Capacity of the ping and pong channels.
    pub capacity: u64,
}

/// A trial on ping and pong channels of `contender`'s kind, named after `name`.
pub async fn circuit(
    mesh: &mut Mesh,
    setup: &Setup,
    contender: Contender,
    name: &str,
    size: usize,
    count: Count,
) -> Tried<Run> {
    let (ping, pong) = (ping_name(name), pong_name(name));
    let mut made = Vec::new();
    let mut leaders = Vec::new();
    for chan in [&ping, &pong] {
        match mesh.create(chan, count.capacity, contender).await {
            Ok(leader) => {
                made.push(chan.clone());
                leaders.push(leader);
            }
            Err(not) => {
                let tidy = remove_all(mesh, &made).await;
                return match (not, tidy) {
                    (NotMade::NotServed(why), Ok(())) => Tried::NotServed(why),
                    (NotMade::NotServed(_), Err(e)) => Tried::Failed(format!("{e:#}")),
                    (NotMade::Failed(e), _) => Tried::Failed(format!("{e:#}")),
                };
            }
        }
    }
    let (pinger, echo) = places(&leaders[0], &leaders[1]);
    let outcome = async {
        let trial = setup.trial(
            System::Circuit,
            name,
            size,
            Side::local(mesh.socket(pinger)?.display().to_string()),
            Side::local(mesh.socket(echo)?.display().to_string()),
        );
        driver::round_trip(&trial, count.measured, count.warmup).await
    }
    .await;
    let removed = remove_all(mesh, &made).await;
    let alive = mesh.check_alive();
    match (outcome, removed, alive) {
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Tried::Failed(format!("{e:#}")),
        (Ok(outcome), Ok(()), Ok(())) => Tried::Ran(Run {
            outcome,
            placement: format!(
                "pinger {pinger}, echo {echo}; ping led by {}, pong by {}",
                leaders[0], leaders[1]
            ),
        }),
    }
}

async fn remove_all(mesh: &Mesh, chans: &[String]) -> anyhow::Result<()> {
    for chan in chans {
        mesh.remove(chan).await?;
    }
    Ok(())
}

/// Where the pinger and the echo go, given the nodes leading the ping and the pong channel:
/// on the two nodes that lead neither when the same node leads both; otherwise the pinger on
/// the one node that leads neither, the echo on the pong's leader (so that the echo, which
/// receives pings, is not on the ping's leader).
pub fn places<'a>(ping_leader: &str, pong_leader: &str) -> (&'a str, &'a str) {
    let free: Vec<&'a str> = NAMES
        .iter()
        .copied()
        .filter(|n| *n != ping_leader && *n != pong_leader)
        .collect();
    match free[..] {
        [first, second, ..] => (first, second),
        [only] => {
            let echo = NAMES
                .iter()
                .copied()
                .find(|n| *n != only && *n != ping_leader)
                .unwrap_or(NAMES[0]);
            (only, echo)
        }
        [] => (NAMES[1], NAMES[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinger_and_echo_keep_off_the_leaders() {
        assert_eq!(places("a", "a"), ("b", "c"));
        assert_eq!(places("c", "c"), ("a", "b"));
        assert_eq!(places("a", "b"), ("c", "b"));
        assert_eq!(places("b", "a"), ("c", "a"));
    }
}
