//! Channel throughput across nodes: the channel benchmark's sender and receiver roles
//! (`chanbench`, a pipelining SDK sender and a receiver prefetching 1024), each run inside a
//! host's namespace on that host's daemon, against a channel owned by the same or another host.
//!
//! The roles are this binary's hidden `role` subcommand. The harness gives them a placed
//! endpoint (`netns:{json}` naming a namespace and socket for the sender and for the receiver);
//! a role given one re-executes itself in its namespace through `ip netns exec` with the plain
//! socket (same pid), and from there is exactly `bench-channels`' role.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use circuit_sdk::Client;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::cluster::Cluster;
use super::RunArgs;
use crate::chanbench::driver::{self, Trial};
use crate::chanbench::role::{self, Kind, RoleArgs};
use crate::chanbench::System;
use crate::procfs;

/// How a placed endpoint starts.
const PLACED: &str = "netns:";
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

/// One role's namespace and daemon socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spot {
    netns: String,
    socket: PathBuf,
}

/// A placed endpoint: where the sender runs and where the receiver runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Placed {
    send: Spot,
    recv: Spot,
}

/// The hidden `role` subcommand: re-executes in its namespace if its endpoint is placed, else
/// plays the channel benchmark's role.
pub fn role_main(args: RoleArgs) -> ExitCode {
    let Some(json) = args.endpoint.strip_prefix(PLACED) else {
        return role::main(args);
    };
    let placed: Placed = match serde_json::from_str(json) {
        Ok(placed) => placed,
        Err(e) => {
            eprintln!("bench-mesh role: bad placed endpoint: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spot = match args.kind {
        Kind::Send | Kind::Ping => placed.send,
        Kind::Recv | Kind::Echo => placed.recv,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("bench-mesh role: cannot find this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let argv = with_endpoint(
        std::env::args_os().skip(1).collect(),
        spot.socket.as_os_str(),
    );
    // `exec` replaces this process (the harness keeps its pid); it returns only on failure.
    let err = std::process::Command::new("ip")
        .args(["netns", "exec", &spot.netns])
        .arg(exe)
        .args(argv)
        .env("CIRCUIT_SOCKET", &spot.socket)
        .exec();
    eprintln!(
        "bench-mesh role: cannot run ip netns exec {}: {err}",
        spot.netns
    );
    ExitCode::FAILURE
}

/// `argv` with the value of `--endpoint` replaced.
fn with_endpoint(argv: Vec<OsString>, endpoint: &OsStr) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut replace_next = false;
    for arg in argv {
        if replace_next {
            out.push(endpoint.to_os_string());
            replace_next = false;
        } else if arg == "--endpoint" {
            out.push(arg);
            replace_next = true;
        } else if arg.to_string_lossy().starts_with("--endpoint=") {
            let mut joined = OsString::from("--endpoint=");
            joined.push(endpoint);
            out.push(joined);
        } else {
            out.push(arg);
        }
    }
    out
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
pub async fn run(cluster: &Cluster, args: &RunArgs) -> anyhow::Result<ChanResult> {
    let n = cluster.n();
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
                        let client = Client::connect_unix(cluster.socket(owner))
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
                let spot = |i: usize| Spot {
                    netns: cluster.netns(i),
                    socket: cluster.socket(i),
                };
                let placed = Placed {
                    send: spot(send),
                    recv: spot(recv),
                };
                let spec = Trial {
                    exe: exe.clone(),
                    system: System::Circuit,
                    endpoint: format!("{PLACED}{}", serde_json::to_string(&placed)?),
                    name: name.clone(),
                    size,
                    threads: 1,
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
fn daemons_cpu(cluster: &Cluster, hosts: &[usize]) -> Duration {
    hosts
        .iter()
        .filter_map(|&i| cluster.daemon_pid(i))
        .filter_map(|pid| procfs::cpu_time(pid as u32).ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_replaced_in_either_form() {
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            with_endpoint(
                argv(&["role", "--endpoint", "netns:{}", "--size", "16"]),
                OsStr::new("/s")
            ),
            argv(&["role", "--endpoint", "/s", "--size", "16"])
        );
        assert_eq!(
            with_endpoint(argv(&["role", "--endpoint=netns:{}"]), OsStr::new("/s")),
            argv(&["role", "--endpoint=/s"])
        );
    }

    #[test]
    fn placements_name_distinct_hosts() {
        assert_eq!(Placement::Same.hosts(), (1, 1, 1));
        let (s, o, r) = Placement::Three.hosts();
        assert!(s != o && o != r && s != r);
    }
}
