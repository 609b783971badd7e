//! Failover: a replicated channel (circuit, three replicas on five network-namespace hosts) or
//! an R3 stream (JetStream, three servers on loopback) under steady load — senders sending on a
//! schedule and timing every acknowledgement, receivers taking everything — all on hosts (or
//! servers) that do not lead it. The leader's daemon (or server) is killed (`kill -9`); a trial
//! measures the time from the kill until a send made after it is acknowledged (the first
//! sender to see one, and the last), then, once the run has drained, what was lost or
//! duplicated. The killed daemon or server is started again before the next trial.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_sdk::chan::ChanOptions;
use circuit_sdk::proto::{Reply, Request};
use circuit_sdk::Client;
use circuit_testkit::{NetnsCluster, UpOptions};
use tokio::time::Instant;

use super::jscluster::{JsCluster, SERVERS};
use super::throughput::stream_leader;
use crate::chanbench::ctx::Kind;
use crate::chanbench::fleet::Fleet;
use crate::chanbench::jetstream::{self as js, StreamSpec};
use crate::chanbench::protocol::{now_ns, Acked, Line, Received, Sent};
use crate::chanbench::tally::{merge, Merged};
use crate::chanbench::trial::{Side, Trial};
use crate::chanbench::System;

/// How long a delivered message may go unacked before JetStream delivers it again, in failover
/// trials: short, so that what a failover makes it deliver twice shows within the run.
pub const FAILOVER_ACK_WAIT: Duration = Duration::from_secs(2);
/// How long a killed daemon's cluster may take to see it back, or a new channel its leader.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// How often settling checks its condition.
const POLL: Duration = Duration::from_millis(20);

/// How every failover trial of a run goes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// This binary, re-executed as each role.
    pub exe: PathBuf,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages per second each sender sends.
    pub rate: u64,
    /// Sending processes.
    pub senders: u32,
    /// Receiving processes.
    pub receivers: u32,
    /// How long the senders run before the kill.
    pub warm: Duration,
    /// How much of the senders' schedule is left after the kill.
    pub after: Duration,
    /// Channel capacity; a JetStream consumer's most unacked deliveries.
    pub capacity: u64,
    /// Senders' window.
    pub window: u32,
    /// Longest a trial may take.
    pub deadline: Duration,
    /// Once every sender is done and every message arrived, how long receivers must take
    /// nothing more before the count is final (late copies count as duplicates).
    pub quiet: Duration,
    /// Once every sender is done, how long receivers may make no progress before what is
    /// missing counts as lost.
    pub stall: Duration,
    /// Where the logs of a trial that failed, lost, duplicated or (circuit) missed the target
    /// are copied.
    pub logs: PathBuf,
    /// Circuit's target: a trial whose kill → first acknowledgement is longer keeps its logs.
    pub target: Duration,
}

impl Setup {
    /// Messages each sender sends: its rate over the warm-up and what follows the kill.
    pub fn per_sender(&self) -> u64 {
        (self.rate as f64 * (self.warm + self.after).as_secs_f64()).ceil() as u64
    }
}

/// One trial's measurements.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Kill → the first acknowledgement, at any sender, of a send made after the kill.
    pub first: Duration,
    /// Kill → the moment every sender had such an acknowledgement.
    pub every: Duration,
    /// Messages sent.
    pub expected: u64,
    /// What arrived, checked across receivers.
    pub merged: Merged,
    /// Leader killed, and where senders and receivers were.
    pub placement: String,
    /// What the roles' clients reported as odd.
    pub notes: Vec<String>,
}

/// Every trial of one system.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Trials that measured.
    pub samples: Vec<Sample>,
    /// Trials that failed, and why.
    pub failures: Vec<String>,
    /// Why the system was not measured at all.
    pub skipped: Option<String>,
    /// What it ran on, for the header.
    pub described: String,
    /// Where the logs of odd trials went.
    pub kept_logs: Vec<String>,
}

/// What [`under_load`] saw.
struct Measured {
    first: Duration,
    every: Duration,
    expected: u64,
    merged: Merged,
    notes: Vec<String>,
}

/// Runs `trial`'s senders (steady) and receivers on `senders` and `receivers`, calls `kill`
/// (which returns the kill's time, [`now_ns`]) once the senders have run `setup.warm`, and
/// follows the run until it has drained.
async fn under_load(
    trial: &Trial,
    senders: &[Side],
    receivers: &[Side],
    setup: &Setup,
    kill: impl FnOnce() -> anyhow::Result<u64>,
) -> anyhow::Result<Measured> {
    let per_sender = setup.per_sender();
    let n = senders.len() as u32;
    let mut fleet = Fleet::new(trial);
    let mut recv_ids = Vec::new();
    for (i, side) in receivers.iter().enumerate() {
        let args = role_args(0, n, per_sender, 0);
        recv_ids.push(fleet.spawn_on(side, format!("receiver {i}"), Kind::Recv, args)?);
    }
    fleet.until_ready(&recv_ids).await?;
    let mut send_ids = Vec::new();
    for (i, side) in senders.iter().enumerate() {
        let args = role_args(i as u32, n, per_sender, setup.rate);
        send_ids.push(fleet.spawn_on(side, format!("sender {i}"), Kind::Steady, args)?);
    }
    fleet.until_ready(&send_ids).await?;
    for &id in &send_ids {
        fleet.go(id).await?;
    }
    let went = Instant::now();
    let expected = u64::from(n) * per_sender;
    let mut follow = Follow {
        progress: vec![0; fleet.len()],
        sent: vec![None; fleet.len()],
        received: vec![None; fleet.len()],
        last_change: Instant::now(),
    };
    // Warm-up: everything runs.
    while let Some((id, line)) = fleet
        .next_until((went + setup.warm).min(trial.deadline))
        .await?
    {
        follow.take(&fleet, id, line)?;
    }
    if Instant::now() >= trial.deadline {
        bail!("the trial's deadline passed before the kill");
    }
    let kill_ns = tokio::task::block_in_place(kill)?;
    // After the kill: until every sender is done and the receivers have drained.
    loop {
        let arrived: u64 = recv_ids.iter().map(|&id| follow.progress[id]).sum();
        let senders_done = send_ids.iter().all(|&id| follow.sent[id].is_some());
        let until = if !senders_done {
            trial.deadline
        } else if arrived >= expected {
            follow.last_change + setup.quiet
        } else {
            follow.last_change + setup.stall
        };
        if senders_done && Instant::now() >= until {
            break;
        }
        match fleet.next_until(until.min(trial.deadline)).await? {
            Some((id, line)) => follow.take(&fleet, id, line)?,
            None if Instant::now() >= trial.deadline => {
                let done = send_ids
                    .iter()
                    .filter(|&&id| follow.sent[id].is_some())
                    .count();
                bail!(
                    "the trial did not finish in time: {done} of {n} senders done, {arrived} of \
                     {expected} messages arrived"
                );
            }
            None => {}
        }
    }
    for &id in &recv_ids {
        fleet.close_stdin(id);
    }
    while let Some(&missing) = recv_ids.iter().find(|&&id| follow.received[id].is_none()) {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!("{} did not report in time", fleet.role(missing));
        };
        follow.take(&fleet, id, line)?;
    }
    fleet.reap().await?;
    let sent: Vec<Sent> = follow.sent.into_iter().flatten().collect();
    let received: Vec<Received> = follow.received.into_iter().flatten().collect();
    let timelines: Vec<&[Acked]> = sent.iter().map(|s| s.timeline.as_slice()).collect();
    let (first, every) = recovery(&timelines, kill_ns)?;
    let mut notes: Vec<String> = sent.iter().flat_map(|s| s.notes.clone()).collect();
    notes.extend(received.iter().flat_map(|r| r.notes.clone()));
    Ok(Measured {
        first,
        every,
        expected,
        merged: merge(&received, n, per_sender),
        notes,
    })
}

/// What the roles of a failover trial have said so far.
struct Follow {
    progress: Vec<u64>,
    sent: Vec<Option<Sent>>,
    received: Vec<Option<Received>>,
    last_change: Instant,
}

impl Follow {
    fn take(&mut self, fleet: &Fleet, id: usize, line: Line) -> anyhow::Result<()> {
        match line {
            Line::Progress { received } => {
                self.progress[id] = received;
                self.last_change = Instant::now();
            }
            Line::Sent(s) => self.sent[id] = Some(s),
            Line::Received(r) => {
                self.progress[id] = r.received;
                self.received[id] = Some(r);
            }
            other => bail!(
                "{} said {} in the middle of a trial",
                fleet.role(id),
                other.kind()
            ),
        }
        Ok(())
    }
}

/// Kill (at `kill_ns`) → the first acknowledgement of a send made after it, at the first
/// sender to see one and at the last.
pub fn recovery(timelines: &[&[Acked]], kill_ns: u64) -> anyhow::Result<(Duration, Duration)> {
    let mut each = Vec::new();
    for (i, timeline) in timelines.iter().enumerate() {
        let after = timeline.partition_point(|a| a.sent_ns < kill_ns);
        let Some(first) = timeline.get(after) else {
            bail!(
                "sender {i} sent nothing after the kill: its schedule ended first (raise \
                 --failover-after)"
            );
        };
        each.push(Duration::from_nanos(first.acked_ns.saturating_sub(kill_ns)));
    }
    match (each.iter().min(), each.iter().max()) {
        (Some(&first), Some(&every)) => Ok((first, every)),
        _ => bail!("no sender reported"),
    }
}

/// The flags of a role of a failover trial; [`Fleet`] adds the trial's.
fn role_args(index: u32, senders: u32, count: u64, rate: u64) -> Vec<String> {
    [
        ("--index", index.to_string()),
        ("--senders", senders.to_string()),
        ("--count", count.to_string()),
        ("--rate", rate.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// `items` dealt over `places` in turn.
fn spread<T: Clone>(places: &[T], items: u32, offset: usize) -> Vec<T> {
    (0..items as usize)
        .map(|i| places[(i + offset) % places.len()].clone())
        .collect()
}

/// Both systems' failover runs.
#[derive(Debug, Clone, Default)]
pub struct Failover {
    /// Circuit R3 memory on the namespace hosts.
    pub circuit: Run,
    /// JetStream R3 on its own three servers.
    pub jetstream: Run,
}

/// Where JetStream's failover trials run.
#[derive(Debug, Clone)]
pub struct JetStreamSetup {
    /// `nats-server`.
    pub binary: PathBuf,
    /// Its version.
    pub version: String,
    /// The streams' storage.
    pub storage: async_nats::jetstream::stream::StorageType,
}

/// Brings up circuit's `hosts` namespace hosts (each daemon as `up` says) and JetStream's three
/// servers, then runs `trials` trials of each, taking turns so that both see the machine in
/// the same mood. A system that cannot come up is skipped, with why.
pub async fn run(
    setup: &Setup,
    trials: usize,
    hosts: usize,
    up: UpOptions<'static>,
    jetstream: &JetStreamSetup,
) -> Failover {
    let mut out = Failover::default();
    let mut circuit = match bring_up(hosts, up).await {
        Ok(cluster) => {
            out.circuit.described = format!(
                "circuit R3 memory: {hosts} hosts, one circuitd each in its own network \
                 namespace (`scripts/netns-cluster.sh`, cluster {})",
                cluster.id()
            );
            Some(cluster)
        }
        Err(why) => {
            out.circuit.skipped = Some(why);
            None
        }
    };
    let storage = jetstream.storage;
    let mut servers =
        match JsCluster::start(&jetstream.binary, jetstream.version.clone(), SETTLE_WITHIN).await {
            Ok(cluster) => {
                out.jetstream.described = format!(
                    "JetStream R3 {}: {}",
                    storage_name(storage),
                    cluster.describe()
                );
                Some(cluster)
            }
            Err(e) => {
                out.jetstream.skipped = Some(format!("the JetStream cluster did not start: {e:#}"));
                None
            }
        };
    for trial in 1..=trials {
        let name = format!("failover-{trial}");
        if let Some(cluster) = circuit.as_mut() {
            let result = circuit_trial(cluster, setup, &name).await;
            let keep = |label: &str| cluster.keep_logs(&setup.logs, label).map_err(Into::into);
            record(
                &mut out.circuit,
                "circuit",
                trial,
                trials,
                Some(setup.target),
                result,
                keep,
            );
            if let Err(e) = revive(cluster).await {
                eprintln!("failover circuit: {e:#}");
                out.circuit
                    .failures
                    .push("the namespace hosts could not be brought back; trials stopped".into());
                take_down(circuit.take()).await;
            }
        }
        if let Some(cluster) = servers.as_mut() {
            let result = jetstream_trial(cluster, setup, &name, storage).await;
            let keep = |label: &str| cluster.keep_logs(&setup.logs.join(label));
            record(
                &mut out.jetstream,
                "JetStream",
                trial,
                trials,
                None,
                result,
                keep,
            );
            if let Err(e) = cluster.check_alive() {
                eprintln!("failover JetStream: {e:#}");
                out.jetstream
                    .failures
                    .push("the JetStream cluster broke; trials stopped".into());
                servers = None;
            }
        }
    }
    drop(servers);
    take_down(circuit).await;
    out
}

/// Takes the namespace hosts down (a script: off the runtime's threads).
async fn take_down(cluster: Option<NetnsCluster>) {
    if let Some(cluster) = cluster {
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .ok();
    }
}

/// Adds one trial's outcome to `run`, keeping the logs (`keep`) of a trial that failed, lost,
/// duplicated or missed `target`.
fn record(
    run: &mut Run,
    system: &str,
    trial: usize,
    trials: usize,
    target: Option<Duration>,
    result: anyhow::Result<Sample>,
    keep: impl FnOnce(&str) -> anyhow::Result<PathBuf>,
) {
    let label = format!("{}-failover-{trial}", system.to_lowercase());
    let kept = match result {
        Ok(sample) => {
            eprintln!(
                "failover {system} {trial}/{trials}: {}; first ack after {} ms, every sender \
                 after {} ms; lost {}, duplicated {}",
                sample.placement,
                sample.first.as_millis(),
                sample.every.as_millis(),
                sample.merged.lost,
                sample.merged.duplicates
            );
            let odd = odd(&sample, target);
            run.samples.push(sample);
            odd.then(|| keep(&label))
        }
        Err(e) => {
            let why = format!("trial {trial}: {e:#}");
            eprintln!("failover {system} {why}");
            run.failures.push(why);
            Some(keep(&label))
        }
    };
    match kept {
        Some(Ok(dir)) => run.kept_logs.push(dir.display().to_string()),
        Some(Err(e)) => eprintln!("cannot keep the logs of {label}: {e:#}"),
        None => {}
    }
}

/// `memory` or `file`.
pub fn storage_name(storage: async_nats::jetstream::stream::StorageType) -> &'static str {
    match storage {
        async_nats::jetstream::stream::StorageType::Memory => "memory",
        async_nats::jetstream::stream::StorageType::File => "file",
    }
}

/// Brings up `hosts` namespace hosts, or says why not.
async fn bring_up(hosts: usize, up: UpOptions<'static>) -> Result<NetnsCluster, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: the namespace hosts need root and iproute2".into());
    }
    match tokio::task::spawn_blocking(move || NetnsCluster::try_up(hosts, &up)).await {
        Ok(Ok(cluster)) => Ok(cluster),
        Ok(Err(e)) => Err(format!("the namespace hosts did not come up: {e}")),
        Err(e) => Err(format!("bringing the namespace hosts up failed: {e}")),
    }
}

/// True when a trial lost or duplicated something, or (with a `target`) recovered later.
fn odd(sample: &Sample, target: Option<Duration>) -> bool {
    sample.merged.lost + sample.merged.duplicates + sample.merged.malformed > 0
        || target.is_some_and(|t| sample.first > t)
}

/// One circuit trial on channel `name`.
async fn circuit_trial(
    cluster: &mut NetnsCluster,
    setup: &Setup,
    name: &str,
) -> anyhow::Result<Sample> {
    let n = cluster.hosts().len();
    let admin = connect(cluster, 1).await?;
    admin
        .chan_create_with(name, setup.capacity, ChanOptions::replicated(3), false)
        .await
        .with_context(|| format!("cannot create channel {name} --replicas 3"))?;
    let leader = settled_leader(&admin, name).await?;
    let leader_host = cluster
        .hosts()
        .iter()
        .find(|h| h.name == leader)
        .map(|h| h.index)
        .with_context(|| format!("the leader {leader} is not a host of the cluster"))?;
    let others: Vec<usize> = (1..=n).filter(|&i| i != leader_host).collect();
    let side = |i: usize| Side {
        endpoint: cluster.host(i).socket.display().to_string(),
        launcher: cluster.launcher(i),
    };
    let sides: Vec<Side> = others.iter().map(|&i| side(i)).collect();
    let send_sides = spread(&sides, setup.senders, 0);
    let recv_sides = spread(&sides, setup.receivers, 1);
    let names = |count, offset| {
        spread(&others, count, offset)
            .iter()
            .map(|i| format!("h{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let placement = format!(
        "killed {leader}; senders on {}, receivers on {}",
        names(setup.senders, 0),
        names(setup.receivers, 1)
    );
    drop(admin);
    let trial = trial_for(setup, System::Circuit, name, &sides[0]);
    let measured = {
        let cluster = &*cluster;
        under_load(&trial, &send_sides, &recv_sides, setup, || {
            let at = now_ns();
            cluster.try_kill(leader_host)?;
            Ok(at)
        })
        .await
    };
    // Whatever happened, the killed daemon comes back before the next trial.
    let revived = revive(cluster).await;
    let measured = measured?;
    revived?;
    let admin = connect(cluster, 1).await?;
    admin
        .chan_remove(name)
        .await
        .with_context(|| format!("cannot remove channel {name}"))?;
    Ok(Sample {
        first: measured.first,
        every: measured.every,
        expected: measured.expected,
        merged: measured.merged,
        placement,
        notes: measured.notes,
    })
}

/// Starts every host's daemon that is not running and waits until every daemon sees all of
/// them alive.
async fn revive(cluster: &mut NetnsCluster) -> anyhow::Result<()> {
    let n = cluster.hosts().len();
    for i in 1..=n {
        if cluster.daemon_pid(i).is_none() {
            tokio::task::block_in_place(|| cluster.try_start(i))
                .with_context(|| format!("cannot start h{i}'s daemon again"))?;
        }
    }
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let mut all = true;
        for i in 1..=n {
            let up = match connect(cluster, i).await {
                Ok(client) => match client.call(Request::Nodes).await {
                    Ok(Reply::Nodes(nodes)) => nodes.iter().filter(|x| x.state.is_up()).count(),
                    _ => 0,
                },
                Err(_) => 0,
            };
            all &= up == n;
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the hosts did not all see each other up within {SETTLE_WITHIN:?}");
        }
        tokio::time::sleep(POLL * 5).await;
    }
}

async fn connect(cluster: &NetnsCluster, i: usize) -> anyhow::Result<Client> {
    Client::connect_unix(&cluster.host(i).socket)
        .await
        .with_context(|| format!("cannot connect to h{i}'s daemon"))
}

/// The channel's leader once a leader serves and exactly one replica says it leads.
async fn settled_leader(client: &Client, name: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        if let Ok(info) = client.chan_stat(name).await {
            let leaders = info.replicas.iter().filter(|r| r.state == "leader").count();
            if leaders == 1 && !info.owner.is_empty() {
                return Ok(info.owner);
            }
        }
        if Instant::now() >= deadline {
            bail!("channel {name} named no settled leader within {SETTLE_WITHIN:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn trial_for(setup: &Setup, system: System, name: &str, side: &Side) -> Trial {
    Trial {
        exe: setup.exe.clone(),
        system,
        sender: side.clone(),
        receiver: side.clone(),
        name: name.to_string(),
        size: setup.size,
        threads: 1,
        window: setup.window,
        server_pid: None,
        deadline: Instant::now() + setup.deadline,
        stall: setup.stall,
    }
}

/// One JetStream trial on stream `name`.
async fn jetstream_trial(
    cluster: &mut JsCluster,
    setup: &Setup,
    name: &str,
    storage: async_nats::jetstream::stream::StorageType,
) -> anyhow::Result<Sample> {
    let spec = StreamSpec {
        replicas: SERVERS,
        storage,
        ack_wait: FAILOVER_ACK_WAIT,
        max_ack_pending: i64::try_from(setup.capacity).unwrap_or(i64::MAX),
    };
    js::create(cluster.js(), name, &spec).await?;
    let leader = stream_leader(cluster, name).await?;
    let leader_name = cluster.name(leader).to_string();
    let others: Vec<usize> = (0..SERVERS).filter(|&i| i != leader).collect();
    let sides: Vec<Side> = others
        .iter()
        .map(|&i| Side::local(cluster.urls_from(i)))
        .collect();
    let send_sides = spread(&sides, setup.senders, 0);
    let recv_sides = spread(&sides, setup.receivers, 1);
    let names = |count: u32, offset| {
        spread(&others, count, offset)
            .iter()
            .map(|&i| cluster.name(i).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let placement = format!(
        "killed {leader_name}; publishers on {}, consumers on {}",
        names(setup.senders, 0),
        names(setup.receivers, 1)
    );
    let trial = trial_for(setup, System::JetStream, name, &sides[0]);
    let measured = under_load(&trial, &send_sides, &recv_sides, setup, || {
        let at = now_ns();
        cluster.kill9(leader)?;
        Ok(at)
    })
    .await;
    // Whatever happened, the killed server comes back before the next trial.
    let revived = if cluster.pids().len() < SERVERS {
        cluster.restart(leader, SETTLE_WITHIN).await
    } else {
        Ok(())
    };
    let measured = measured?;
    revived?;
    js::delete(cluster.js(), name).await?;
    Ok(Sample {
        first: measured.first,
        every: measured.every,
        expected: measured.expected,
        merged: measured.merged,
        placement,
        notes: measured.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(sent_ns: u64, acked_ns: u64) -> Acked {
        Acked { sent_ns, acked_ns }
    }

    #[test]
    fn recovery_counts_from_the_kill_to_the_first_ack_of_a_later_send() {
        // Sender 0: a send in flight at the kill (100) acked at once, the next (sent at 110)
        // acked at 900. Sender 1: its first send after the kill acked at 1300.
        let a = [
            acked(50, 60),
            acked(95, 101),
            acked(110, 900),
            acked(120, 901),
        ];
        let b = [acked(90, 99), acked(130, 1300)];
        let (first, every) = recovery(&[&a, &b], 100).unwrap();
        assert_eq!(first, Duration::from_nanos(800));
        assert_eq!(every, Duration::from_nanos(1200));
        let early = [acked(10, 20)];
        assert!(
            recovery(&[&early], 100).is_err(),
            "nothing sent after the kill"
        );
    }

    #[test]
    fn roles_are_dealt_over_the_hosts_in_turn() {
        assert_eq!(spread(&[2, 3, 4, 5], 4, 0), [2, 3, 4, 5]);
        assert_eq!(spread(&[2, 3, 4, 5], 4, 1), [3, 4, 5, 2]);
        assert_eq!(spread(&["n2", "n3"], 3, 0), ["n2", "n3", "n2"]);
    }
}
