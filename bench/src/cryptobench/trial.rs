//! One cross-node trial on a [`Pair`]: a channel created on node a, the channel benchmark's
//! receiver on a and its pipelining sender on b (so every value crosses the peer link), the
//! daemons' CPU time around it, and the role processes' split endpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::node::Pair;
use crate::chanbench::driver::{self, StreamOutcome, Trial};
use crate::chanbench::role::{self, Kind, RoleArgs};
use crate::chanbench::System;

/// How a split endpoint starts.
const SPLIT: &str = "pair:";

/// The sockets of the two roles: the driver gives every role one endpoint, so it carries both.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Split {
    /// Node b's socket, where the sender connects.
    send: PathBuf,
    /// Node a's socket, where the receiver connects.
    recv: PathBuf,
}

/// The hidden `role` subcommand: picks its socket from a split endpoint, then plays the channel
/// benchmark's role.
pub fn role_main(mut args: RoleArgs) -> ExitCode {
    if let Some(json) = args.endpoint.strip_prefix(SPLIT) {
        let split: Split = match serde_json::from_str(json) {
            Ok(split) => split,
            Err(e) => {
                eprintln!("bench-crypto role: bad split endpoint: {e}");
                return ExitCode::FAILURE;
            }
        };
        let socket = match args.kind {
            Kind::Send | Kind::Ping => split.send,
            Kind::Recv | Kind::Echo => split.recv,
        };
        args.endpoint = socket.display().to_string();
    }
    role::main(args)
}

/// What one trial measured.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Distinct messages delivered per second, from the sender's first to the receiver's last.
    pub rate: f64,
    /// From the sender's first message to the receiver's last.
    pub elapsed: Duration,
    /// CPU time both daemons used over the trial (role start-up and channel set-up included).
    pub daemon_cpu: Duration,
    /// CPU time the sender and receiver processes used, from `ready` to their reports.
    pub roles_cpu: Duration,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Messages sent that never arrived.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicates: u64,
    /// Messages of the wrong size or stamp.
    pub malformed: u64,
}

impl Sample {
    fn new(outcome: &StreamOutcome, daemon_cpu: Duration) -> Self {
        Self {
            rate: outcome.rate(),
            elapsed: outcome.elapsed,
            daemon_cpu,
            roles_cpu: outcome.client_cpu,
            delivered: outcome.merged.distinct,
            lost: outcome.merged.lost,
            duplicates: outcome.merged.duplicates,
            malformed: outcome.merged.malformed,
        }
    }

    /// Daemon CPU seconds per million messages delivered.
    pub fn cpu_per_million(&self) -> f64 {
        self.daemon_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// The roles' CPU seconds per million messages delivered.
    pub fn roles_cpu_per_million(&self) -> f64 {
        self.roles_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// Cores kept busy by the daemons and the roles together over the trial.
    pub fn cores_busy(&self) -> f64 {
        (self.daemon_cpu + self.roles_cpu).as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// True when every message arrived exactly once and intact.
    pub fn clean(&self) -> bool {
        self.lost + self.duplicates + self.malformed == 0
    }
}

/// How a trial runs, the same for every trial of a run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// This binary, re-executed as each role.
    pub exe: PathBuf,
    /// Capacity of each trial's channel.
    pub capacity: u64,
    /// Longest a trial may take.
    pub deadline: Duration,
    /// How long the receiver may make no progress, once the sender is done, before what is
    /// missing counts as lost.
    pub stall: Duration,
}

/// Sends `messages` values of `size` bytes from b to a channel on a, received on a.
pub async fn run(
    pair: &mut Pair,
    setup: &Setup,
    name: &str,
    size: usize,
    messages: u64,
) -> anyhow::Result<Sample> {
    let owner = pair.a.client().clone();
    owner
        .chan_create(name, setup.capacity)
        .await
        .with_context(|| format!("cannot create channel {name} on node a"))?;
    let trial = Trial {
        exe: setup.exe.clone(),
        system: System::Circuit,
        endpoint: endpoint(pair.b.socket(), pair.a.socket())?,
        name: name.to_string(),
        size,
        threads: 1,
        server_pid: None,
        deadline: Instant::now() + setup.deadline,
        stall: setup.stall,
    };
    let cpu_before = pair.cpu_time()?;
    let outcome = driver::stream(&trial, 1, 1, messages).await;
    let cpu = pair.cpu_time()?.saturating_sub(cpu_before);
    let closed = async {
        owner.chan_close(name).await?;
        owner.chan_remove(name).await
    }
    .await;
    pair.check_alive()?;
    let outcome = outcome?;
    closed.with_context(|| format!("cannot remove channel {name}"))?;
    Ok(Sample::new(&outcome, cpu))
}

fn endpoint(send: &Path, recv: &Path) -> anyhow::Result<String> {
    let split = Split {
        send: send.to_path_buf(),
        recv: recv.to_path_buf(),
    };
    Ok(format!("{SPLIT}{}", serde_json::to_string(&split)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_endpoint_round_trips() {
        let text = endpoint(Path::new("/b.sock"), Path::new("/a.sock")).unwrap();
        let split: Split = serde_json::from_str(text.strip_prefix(SPLIT).unwrap()).unwrap();
        assert_eq!(split.send, Path::new("/b.sock"));
        assert_eq!(split.recv, Path::new("/a.sock"));
    }
}
