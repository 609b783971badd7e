//! One throughput trial of one contender: make its channel (circuit, asked of node a) or its
//! stream (JetStream), put the senders on a node (or server) that does not lead it and the
//! receivers on the other one, run the channel benchmark's roles
//! (`chanbench::driver::stream`: senders pipelining up to the window, receivers prefetching or
//! pulling 1024), and remove what it made.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::contender::{Contender, Tried};
use super::jscluster::JsCluster;
use super::mesh::{self, Mesh, NotMade};
use crate::chanbench::driver::{self, StreamOutcome};
use crate::chanbench::jetstream::{self as js, StreamSpec};
use crate::chanbench::trial::{Side, Trial};
use crate::chanbench::System;

/// How the trials of a run are set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// This binary, re-executed as each role.
    pub exe: PathBuf,
    /// Senders' window: values (circuit) or publish acks (JetStream) outstanding.
    pub window: u32,
    /// Capacity of a circuit channel; a JetStream consumer's most unacked deliveries.
    pub capacity: u64,
    /// Longest a trial may take.
    pub deadline: Duration,
    /// Once every sender is done, how long receivers may make no progress before what is
    /// missing counts as lost.
    pub stall: Duration,
}

impl Setup {
    /// The roles' shared settings for a trial of `system` on channel or stream `name`; both
    /// sides are filled in by the caller.
    pub fn trial(
        &self,
        system: System,
        name: &str,
        size: usize,
        sender: Side,
        receiver: Side,
    ) -> Trial {
        Trial {
            exe: self.exe.clone(),
            system,
            sender,
            receiver,
            name: name.to_string(),
            size,
            threads: 1,
            window: self.window,
            server_pid: None,
            deadline: Instant::now() + self.deadline,
            stall: self.stall,
        }
    }
}

/// What one throughput trial measured, and where its clients were.
#[derive(Debug, Clone)]
pub struct Run {
    /// Rates, losses, duplicates.
    pub outcome: StreamOutcome,
    /// `senders' node → leader → receivers' node` (`b → a → c`).
    pub placement: String,
}

/// How many senders and receivers, and how many messages each sender sends.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Sending processes.
    pub senders: u32,
    /// Receiving processes.
    pub receivers: u32,
    /// Messages per sender.
    pub per_sender: u64,
}

/// A trial on a circuit channel of `contender`'s kind named `name`.
pub async fn circuit(
    mesh: &mut Mesh,
    setup: &Setup,
    contender: Contender,
    name: &str,
    size: usize,
    load: Load,
) -> Tried<Run> {
    let leader = match mesh.create(name, setup.capacity, contender).await {
        Ok(leader) => leader,
        Err(NotMade::NotServed(why)) => return Tried::NotServed(why),
        Err(NotMade::Failed(e)) => return Tried::Failed(format!("{e:#}")),
    };
    let (send_on, recv_on) = mesh::others(&leader);
    let sides = (|| anyhow::Ok((mesh.socket(&send_on)?, mesh.socket(&recv_on)?)))();
    let outcome = match sides {
        Ok((send_socket, recv_socket)) => {
            let trial = setup.trial(
                System::Circuit,
                name,
                size,
                Side::local(send_socket.display().to_string()),
                Side::local(recv_socket.display().to_string()),
            );
            driver::stream(&trial, load.senders, load.receivers, load.per_sender).await
        }
        Err(e) => Err(e),
    };
    let removed = mesh.remove(name).await;
    let alive = mesh.check_alive();
    match (outcome, removed, alive) {
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Tried::Failed(format!("{e:#}")),
        (Ok(outcome), Ok(()), Ok(())) => Tried::Ran(Run {
            outcome,
            placement: format!("{send_on} → {leader} → {recv_on}"),
        }),
    }
}

/// A trial on a JetStream stream of `contender`'s storage named `name`.
pub async fn jetstream(
    cluster: &mut JsCluster,
    setup: &Setup,
    contender: Contender,
    name: &str,
    size: usize,
    load: Load,
) -> Tried<Run> {
    let Some(storage) = contender.js_storage() else {
        return Tried::Failed(format!("{contender} is not a JetStream stream"));
    };
    let spec = StreamSpec {
        replicas: super::jscluster::SERVERS,
        storage,
        ack_wait: THROUGHPUT_ACK_WAIT,
        max_ack_pending: i64::try_from(setup.capacity).unwrap_or(i64::MAX),
    };
    if let Err(e) = js::create(cluster.js(), name, &spec).await {
        return Tried::Failed(format!("{e:#}"));
    }
    let outcome = async {
        let leader = stream_leader(cluster, name).await?;
        let (send_on, recv_on) = ((leader + 1) % 3, (leader + 2) % 3);
        let trial = setup.trial(
            System::JetStream,
            name,
            size,
            Side::local(cluster.urls_from(send_on)),
            Side::local(cluster.urls_from(recv_on)),
        );
        let outcome = driver::stream(&trial, load.senders, load.receivers, load.per_sender).await?;
        anyhow::Ok(Run {
            outcome,
            placement: format!(
                "{} → {} → {}",
                cluster.name(send_on),
                cluster.name(leader),
                cluster.name(recv_on)
            ),
        })
    }
    .await;
    let deleted = js::delete(cluster.js(), name).await;
    let alive = cluster.check_alive();
    match (outcome, deleted, alive) {
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Tried::Failed(format!("{e:#}")),
        (Ok(run), Ok(()), Ok(())) => Tried::Ran(run),
    }
}

/// How long a delivered message may go unacked in a throughput trial before it is delivered
/// again: JetStream's default (nothing fails in these trials).
const THROUGHPUT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a new stream may take to name its leader.
const LEADER_WITHIN: Duration = Duration::from_secs(20);

/// The index of the server leading stream `name`, once its info names one.
pub async fn stream_leader(cluster: &JsCluster, name: &str) -> anyhow::Result<usize> {
    let deadline = Instant::now() + LEADER_WITHIN;
    loop {
        let leader = js::leader(cluster.js(), name).await?;
        if let Some(i) = leader.as_deref().and_then(|l| cluster.index_of(l)) {
            return Ok(i);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("stream {name} named no leader within {LEADER_WITHIN:?} ({leader:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
