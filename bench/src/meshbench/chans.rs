//! Channel throughput across nodes: the channel benchmark's sender and receiver roles
//! (`chanbench`, a pipelining SDK sender and a receiver prefetching `circuit::PREFETCH`),
//! each run inside a host's namespace on that host's daemon, against a channel owned by the
//! same or another host.
//!
//! The roles are this binary's hidden `role` subcommand, started through the cluster's
//! launcher for their host (`netns-cluster.sh exec`), so each runs in its host's namespace and
//! connects to its host's daemon; from there it is exactly `bench-channels`' role.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use circuit_sdk::Client;
use circuit_testkit::NetnsCluster;
use tokio::time::Instant;

use super::RunArgs;
use crate::chanbench::driver;
use crate::chanbench::trial::{Side, Trial};
use crate::chanbench::System;
use crate::procfs;

/// Target: cross-node throughput as a share of same-node.
pub const TARGET_CROSS_RATIO: f64 = 0.5;
/// Once the sender is done, how long the receiver may make no progress before what is
/// missing counts as lost.
const STALL: Duration = Duration::from_secs(3);

/// Where the sender, the channel and the receiver are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// All on h1.
    Same,
    /// Sender on h1; channel and receiver on h2.
    Two,
    /// Sender on h1, channel on h2, receiver on h3.
    Three,
}

impl Placement {
    /// Every placement, in table order.
    pub const ALL: [Self; 3] = [Self::Same, Self::Two, Self::Three];

    /// Hosts of the sender, the channel's owner and the receiver.
    pub fn hosts(self) -> (usize, usize, usize) {
        match self {
            Self::Same => (1, 1, 1),
            Self::Two => (1, 2, 2),
            Self::Three => (1, 2, 3),
        }
    }

    /// As the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Same => "same node: sender, channel, receiver on h1",
            Self::Two => "2 hosts: sender h1 → channel + receiver h2",
            Self::Three => "3 hosts: sender h1 → channel h2 → receiver h3",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Two => "two",
            Self::Three => "three",
        }
    }
}

/// One placement at one size, over the trials.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Messages delivered per second, from the sender's first to the receiver's last, per
    /// trial.
    pub rates: Vec<f64>,
    /// CPU seconds of the daemons involved (sender's, owner's, receiver's) per million
    /// messages, per trial, over the whole trial.
    pub daemon_cpu: Vec<f64>,
    /// Messages lost, all trials.
    pub lost: u64,
    /// Messages delivered twice, all trials.
    pub duplicates: u64,
}

/// Channel throughput at one cluster size.
#[derive(Debug, Clone)]
pub struct ChanResult {
    /// Daemons in the cluster.
    pub n: usize,
    /// By placement and payload size.
    pub cells: BTreeMap<(Placement, usize), Cell>,
    /// Trials that failed, and why.
    pub failures: Vec<String>,
}

/// Runs every placement at every size, `args.chan_trials` times, interleaved so that they
/// share the machine's mood.
pub async fn run(cluster: &NetnsCluster, args: &RunArgs) -> anyhow::Result<ChanResult> {
    let n = cluster.hosts().len();
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let mut owners: BTreeMap<usize, Client> = BTreeMap::new();
    let mut result = ChanResult {
        n,
        cells: BTreeMap::new(),
        failures: Vec::new(),
    };
    for trial in 1..=args.chan_trials {
        for &size in &args.chan_sizes {
            for placement in Placement::ALL {
                let (send, owner, recv) = placement.hosts();
                let client = match owners.get(&owner) {
                    Some(client) => client.clone(),
                    None => {
                        let client = Client::connect_unix(&cluster.host(owner).socket)
                            .await
                            .with_context(|| format!("cannot connect to h{owner}'s daemon"))?;
                        owners.insert(owner, client.clone());
                        client
                    }
                };
                let name = format!("bench-mesh-{}-{size}-{trial}", placement.slug());
                client
                    .chan_create(&name, args.chan_capacity)
                    .await
                    .with_context(|| format!("cannot create channel {name} on h{owner}"))?;
                let side = |i: usize| Side {
                    endpoint: cluster.host(i).socket.display().to_string(),
                    launcher: cluster.launcher(i),
                };
                let spec = Trial {
                    exe: exe.clone(),
                    system: System::Circuit,
                    sender: side(send),
                    receiver: side(recv),
                    name: name.clone(),
                    size,
                    threads: 1,
                    window: crate::chanbench::trial::DEFAULT_WINDOW,
                    server_pid: None,
                    deadline: Instant::now() + args.deadline,
                    stall: STALL,
                };
                let mut involved = vec![send, owner, recv];
                involved.dedup();
                let cpu_before = daemons_cpu(cluster, &involved);
                let outcome = driver::stream(&spec, 1, 1, args.chan_messages).await;
                let cpu = daemons_cpu(cluster, &involved).saturating_sub(cpu_before);
                client
                    .chan_close(&name)
                    .await
                    .with_context(|| format!("cannot close channel {name}"))?;
                client
                    .chan_remove(&name)
                    .await
                    .with_context(|| format!("cannot remove channel {name}"))?;
                let cell = result.cells.entry((placement, size)).or_default();
                match outcome {
                    Ok(o) => {
                        let rate = o.rate();
                        cell.rates.push(rate);
                        cell.daemon_cpu
                            .push(cpu.as_secs_f64() * 1e6 / o.merged.distinct.max(1) as f64);
                        cell.lost += o.merged.lost;
                        cell.duplicates += o.merged.duplicates;
                        eprintln!(
                            "chan {n} daemons, trial {trial}/{}: {size} B {}: {rate:.0} msgs/s{}",
                            args.chan_trials,
                            placement.slug(),
                            if o.merged.lost + o.merged.duplicates > 0 {
                                format!(
                                    " (lost {}, duplicated {})",
                                    o.merged.lost, o.merged.duplicates
                                )
                            } else {
                                String::new()
                            }
                        );
                    }
                    Err(e) => {
                        let why = format!("trial {trial}, {size} B, {}: {e:#}", placement.slug());
                        eprintln!("chan {n} daemons, {why}");
                        result.failures.push(why);
                    }
                }
            }
        }
    }
    Ok(result)
}

/// CPU time so far of the daemons on `hosts`.
fn daemons_cpu(cluster: &NetnsCluster, hosts: &[usize]) -> Duration {
    hosts
        .iter()
        .filter_map(|&i| cluster.daemon_pid(i))
        .filter_map(|pid| procfs::cpu_time(pid.unsigned_abs()).ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_name_distinct_hosts() {
        assert_eq!(Placement::Same.hosts(), (1, 1, 1));
        let (s, o, r) = Placement::Three.hosts();
        assert!(s != o && o != r && s != r);
    }
}
