//! One cross-node trial on a [`Pair`]: a channel created on node a, the channel benchmark's
//! receiver on a and its pipelining sender on b (so every value crosses the peer link), and the
//! daemons' CPU time around it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::node::Pair;
use crate::chanbench::driver::{self, StreamOutcome};
use crate::chanbench::trial::{Side, Trial};
use crate::chanbench::System;

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
        sender: Side::local(pair.b.socket().display().to_string()),
        receiver: Side::local(pair.a.socket().display().to_string()),
        name: name.to_string(),
        size,
        threads: 1,
        window: crate::chanbench::trial::DEFAULT_WINDOW,
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
