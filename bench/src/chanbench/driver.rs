//! The harness side of one trial: start the role processes (receivers first), wait until each
//! is ready, say `go`, follow their progress with deadlines, and check what arrived.

use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use super::ctx::Kind;
use super::fleet::Fleet;
use super::protocol::{Line, Received, RoundTrips, Sent};
use super::tally::{merge, Merged};
use super::trial::Trial;
use crate::procfs;

/// What one trial measured.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A throughput trial.
    Stream(StreamOutcome),
    /// A round-trip trial.
    Rtt(RttOutcome),
}

/// What one throughput trial measured.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// Messages sent.
    pub expected: u64,
    /// What arrived, checked across receivers.
    pub merged: Merged,
    /// From the first sender's first message to the last receiver's last message.
    pub elapsed: Duration,
    /// The server's CPU time over the trial; `None` without a server.
    pub server_cpu: Option<Duration>,
    /// CPU time of all roles, from `ready` to their report.
    pub client_cpu: Duration,
    /// What the roles' clients reported as odd.
    pub notes: Vec<String>,
}

impl StreamOutcome {
    /// Distinct messages delivered per second.
    pub fn rate(&self) -> f64 {
        self.merged.distinct as f64 / self.elapsed.as_secs_f64()
    }
}

/// What one round-trip trial measured.
#[derive(Debug, Clone)]
pub struct RttOutcome {
    /// The pinger's latencies.
    pub rtts: RoundTrips,
    /// The server's CPU time over the measured and warm-up round trips.
    pub server_cpu: Option<Duration>,
    /// CPU time of the pinger and the echo.
    pub client_cpu: Duration,
    /// Round trips made, warm-up included: what the CPU times are divided by.
    pub total: u64,
    /// What the roles' clients reported as odd.
    pub notes: Vec<String>,
}

/// `senders` senders of `per_sender` messages each, to `receivers` receivers.
pub async fn stream(
    trial: &Trial,
    senders: u32,
    receivers: u32,
    per_sender: u64,
) -> anyhow::Result<StreamOutcome> {
    let mut fleet = Fleet::new(trial);
    let mut recv_ids = Vec::new();
    for i in 0..receivers {
        let args = role_args(0, senders, per_sender, 0);
        recv_ids.push(fleet.spawn(format!("receiver {i}"), Kind::Recv, args)?);
    }
    fleet.until_ready(&recv_ids).await?;
    let mut send_ids = Vec::new();
    for i in 0..senders {
        let args = role_args(i, senders, per_sender, 0);
        send_ids.push(fleet.spawn(format!("sender {i}"), Kind::Send, args)?);
    }
    fleet.until_ready(&send_ids).await?;

    let expected = u64::from(senders) * per_sender;
    let cpu_before = server_cpu(trial)?;
    for &id in &send_ids {
        fleet.go(id).await?;
    }
    let mut progress = vec![0u64; fleet.len()];
    let mut sent: Vec<Option<Sent>> = vec![None; fleet.len()];
    let mut received: Vec<Option<Received>> = vec![None; fleet.len()];
    let mut last_change = Instant::now();
    loop {
        let arrived: u64 = recv_ids.iter().map(|&id| progress[id]).sum();
        let senders_done = send_ids.iter().all(|&id| sent[id].is_some());
        if senders_done && arrived >= expected {
            break;
        }
        let until = if senders_done {
            trial.deadline.min(last_change + trial.stall)
        } else {
            trial.deadline
        };
        let Some((id, line)) = fleet.next_until(until).await? else {
            if Instant::now() < trial.deadline {
                // Stalled after every sender finished: what is missing is lost.
                break;
            }
            let done = send_ids.iter().filter(|&&id| sent[id].is_some()).count();
            bail!(
                "the trial did not finish in time: {done} of {senders} senders done, \
                 {arrived} of {expected} messages arrived"
            );
        };
        match line {
            Line::Progress { received } => {
                progress[id] = received;
                last_change = Instant::now();
            }
            Line::Sent(s) => sent[id] = Some(s),
            Line::Received(r) => {
                progress[id] = r.received;
                received[id] = Some(r);
                last_change = Instant::now();
            }
            other => bail!(
                "{} said {} in the middle of a trial",
                fleet.role(id),
                other.kind()
            ),
        }
    }
    let server_cpu = diff(cpu_before, server_cpu(trial)?);

    for &id in &recv_ids {
        fleet.close_stdin(id);
    }
    while let Some(&missing) = recv_ids.iter().find(|&&id| received[id].is_none()) {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!("{} did not report in time", fleet.role(missing));
        };
        match line {
            Line::Received(r) => received[id] = Some(r),
            Line::Progress { .. } => {}
            other => bail!("{} said {} after the trial", fleet.role(id), other.kind()),
        }
    }
    fleet.reap().await?;

    let sent: Vec<Sent> = sent.into_iter().flatten().collect();
    let received: Vec<Received> = received.into_iter().flatten().collect();
    let merged = merge(&received, senders, per_sender);
    let start_ns = sent.iter().map(|s| s.start_ns).min().unwrap_or(0);
    if merged.distinct == 0 || merged.last_ns <= start_ns {
        bail!("no message arrived after the senders started");
    }
    let mut notes: Vec<String> = sent.iter().flat_map(|s| s.notes.clone()).collect();
    notes.extend(received.iter().flat_map(|r| r.notes.clone()));
    let client_ns =
        sent.iter().map(|s| s.cpu_ns).sum::<u64>() + received.iter().map(|r| r.cpu_ns).sum::<u64>();
    Ok(StreamOutcome {
        expected,
        elapsed: Duration::from_nanos(merged.last_ns - start_ns),
        merged,
        server_cpu,
        client_cpu: Duration::from_nanos(client_ns),
        notes,
    })
}

/// One pinger and one echo: `warmup + count` sequential round trips.
pub async fn round_trip(trial: &Trial, count: u64, warmup: u64) -> anyhow::Result<RttOutcome> {
    let mut fleet = Fleet::new(trial);
    let echo = fleet.spawn("echo".into(), Kind::Echo, role_args(0, 1, count, warmup))?;
    fleet.until_ready(&[echo]).await?;
    let pinger = fleet.spawn("pinger".into(), Kind::Ping, role_args(0, 1, count, warmup))?;
    fleet.until_ready(&[pinger]).await?;

    let cpu_before = server_cpu(trial)?;
    fleet.go(pinger).await?;
    // The raw echo reports as soon as the pinger hangs up, maybe before the pinger's report.
    let (mut rtts, mut echoed) = (None, None);
    while rtts.is_none() {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!(
                "the pinger did not finish {} round trips in time",
                warmup + count
            );
        };
        match line {
            Line::RoundTrips(r) => rtts = Some(r),
            Line::Received(r) => echoed = Some(r),
            Line::Progress { .. } => {}
            other => bail!(
                "{} said {} in the middle of a trial",
                fleet.role(id),
                other.kind()
            ),
        }
    }
    let server_cpu = diff(cpu_before, server_cpu(trial)?);

    fleet.close_stdin(echo);
    while echoed.is_none() {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!("the echo did not report in time");
        };
        match line {
            Line::Received(r) => echoed = Some(r),
            Line::Progress { .. } => {}
            other => bail!("{} said {} after the trial", fleet.role(id), other.kind()),
        }
    }
    let (rtts, echoed) = (
        rtts.expect("loop ends with it"),
        echoed.expect("loop ends with it"),
    );
    fleet.reap().await?;

    let merged = merge(std::slice::from_ref(&echoed), 1, warmup + count);
    if merged.lost + merged.duplicates + merged.malformed > 0 || rtts.count != count {
        bail!(
            "the echo saw {} distinct pings of {}, {} twice, {} malformed; the pinger measured {}",
            merged.distinct,
            warmup + count,
            merged.duplicates,
            merged.malformed,
            rtts.count
        );
    }
    let mut notes = rtts.notes.clone();
    notes.extend(echoed.notes.iter().cloned());
    Ok(RttOutcome {
        client_cpu: Duration::from_nanos(rtts.cpu_ns + echoed.cpu_ns),
        rtts,
        server_cpu,
        total: warmup + count,
        notes,
    })
}

/// The role-specific flags; [`Fleet::spawn`] adds its kind and the trial's.
fn role_args(index: u32, senders: u32, count: u64, warmup: u64) -> Vec<String> {
    [
        ("--index", index.to_string()),
        ("--senders", senders.to_string()),
        ("--count", count.to_string()),
        ("--warmup", warmup.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

fn server_cpu(trial: &Trial) -> anyhow::Result<Option<Duration>> {
    trial.server_pid.map(procfs::cpu_time).transpose()
}

fn diff(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}
