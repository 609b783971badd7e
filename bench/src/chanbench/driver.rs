//! The harness side of one trial: start the role processes (receivers first), wait until each
//! is ready, say `go`, follow their progress with deadlines, and check what arrived.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::protocol::{Line, Received, RoundTrips, Sent, GO};
use super::role::Kind;
use super::tally::{merge, Merged};
use super::System;
use crate::procfs;

/// Lines of a role's stderr kept for an error message.
const STDERR_LINES: usize = 20;
/// How long a role may take to exit once it has reported.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// What every role of one trial shares.
#[derive(Debug, Clone)]
pub struct Trial {
    /// This binary, re-executed as each role.
    pub exe: PathBuf,
    /// The contender.
    pub system: System,
    /// Where its roles connect.
    pub endpoint: String,
    /// Subject, channel or socket name, unique to the trial.
    pub name: String,
    /// Payload size in bytes.
    pub size: usize,
    /// Runtime threads per role.
    pub threads: usize,
    /// The server whose CPU time is measured from `go` until everything arrived.
    pub server_pid: Option<u32>,
    /// When the whole trial must have finished.
    pub deadline: Instant,
    /// How long receivers may make no progress, once every sender is done, before the missing
    /// messages count as lost.
    pub stall: Duration,
}

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
        let args = role_args(Kind::Recv, 0, senders, per_sender, 0);
        recv_ids.push(fleet.spawn(format!("receiver {i}"), args)?);
    }
    fleet.until_ready(&recv_ids).await?;
    let mut send_ids = Vec::new();
    for i in 0..senders {
        let args = role_args(Kind::Send, i, senders, per_sender, 0);
        send_ids.push(fleet.spawn(format!("sender {i}"), args)?);
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
            other => bail!("{} said {other:?} in the middle of a trial", fleet.role(id)),
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
            other => bail!("{} said {other:?} after the trial", fleet.role(id)),
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
    let client_ns = sent.iter().map(|s| s.cpu_ns).sum::<u64>()
        + received.iter().map(|r| r.cpu_ns).sum::<u64>();
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
    let echo = fleet.spawn("echo".into(), role_args(Kind::Echo, 0, 1, count, warmup))?;
    fleet.until_ready(&[echo]).await?;
    let pinger = fleet.spawn("pinger".into(), role_args(Kind::Ping, 0, 1, count, warmup))?;
    fleet.until_ready(&[pinger]).await?;

    let cpu_before = server_cpu(trial)?;
    fleet.go(pinger).await?;
    let rtts = loop {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!("the pinger did not finish {} round trips in time", warmup + count);
        };
        match line {
            Line::RoundTrips(rtts) => break rtts,
            Line::Progress { .. } => {}
            other => bail!("{} said {other:?} in the middle of a trial", fleet.role(id)),
        }
    };
    let server_cpu = diff(cpu_before, server_cpu(trial)?);

    fleet.close_stdin(echo);
    let echoed = loop {
        let Some((id, line)) = fleet.next_until(trial.deadline).await? else {
            bail!("the echo did not report in time");
        };
        match line {
            Line::Received(r) => break r,
            Line::Progress { .. } => {}
            other => bail!("{} said {other:?} after the trial", fleet.role(id)),
        }
    };
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

/// The role-specific flags; [`Fleet::spawn`] adds the trial's.
fn role_args(kind: Kind, index: u32, senders: u32, count: u64, warmup: u64) -> Vec<String> {
    let kind = match kind {
        Kind::Send => "send",
        Kind::Recv => "recv",
        Kind::Echo => "echo",
        Kind::Ping => "ping",
    };
    [
        ("--kind", kind.to_string()),
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

/// What a role's stdout reader passes on.
enum Event {
    Line(Line),
    /// Something that is not a [`Line`].
    Garbage(String),
    /// End of its stdout.
    Closed,
}

/// One role process.
struct Proc {
    role: String,
    child: Child,
    /// `None` once closed: the role's signal to stop.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// It printed its last line; its stdout closing is then expected.
    reported: bool,
}

/// The role processes of one trial. Dropping it kills those still running (by pid, through
/// `kill_on_drop`) and stops the tasks reading their output.
struct Fleet {
    trial: Trial,
    procs: Vec<Proc>,
    events_tx: mpsc::UnboundedSender<(usize, Event)>,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    readers: JoinSet<()>,
}

impl Fleet {
    fn new(trial: &Trial) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            trial: trial.clone(),
            procs: Vec::new(),
            events_tx,
            events,
            readers: JoinSet::new(),
        }
    }

    fn len(&self) -> usize {
        self.procs.len()
    }

    fn role(&self, id: usize) -> &str {
        &self.procs[id].role
    }

    /// Starts this binary as a role with `args`; returns its id.
    fn spawn(&mut self, role: String, args: Vec<String>) -> anyhow::Result<usize> {
        let t = &self.trial;
        let system = t.system.flag();
        let mut child = Command::new(&t.exe)
            .arg("role")
            .args(["--system", system, "--endpoint", &t.endpoint, "--name", &t.name])
            .args(["--size", &t.size.to_string()])
            .args(["--threads", &t.threads.to_string()])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {role}"))?;
        let id = self.procs.len();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let tx = self.events_tx.clone();
        self.readers.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event = match serde_json::from_str(&line) {
                    Ok(parsed) => Event::Line(parsed),
                    Err(_) => Event::Garbage(line),
                };
                if tx.send((id, event)).is_err() {
                    return;
                }
            }
            let _ = tx.send((id, Event::Closed));
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let pipe = child.stderr.take().context("no stderr pipe")?;
        let tail = stderr.clone();
        self.readers.spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        self.procs.push(Proc {
            role,
            stdin: child.stdin.take(),
            child,
            stderr,
            reported: false,
        });
        Ok(id)
    }

    /// Waits until each of `ids` has said it is ready.
    async fn until_ready(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        let mut waiting: Vec<usize> = ids.to_vec();
        while let Some(&first) = waiting.first() {
            let Some((id, line)) = self.next_until(self.trial.deadline).await? else {
                bail!("{} was not ready in time", self.role(first));
            };
            match line {
                Line::Ready => waiting.retain(|&w| w != id),
                Line::Progress { .. } => {}
                other => bail!("{} said {other:?} before everyone was ready", self.role(id)),
            }
        }
        Ok(())
    }

    /// Tells a sender or pinger to start.
    async fn go(&mut self, id: usize) -> anyhow::Result<()> {
        let proc = &mut self.procs[id];
        let stdin = proc.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(format!("{GO}\n").as_bytes())
            .await
            .with_context(|| format!("cannot start {}", proc.role))
    }

    /// Tells a role to report and exit.
    fn close_stdin(&mut self, id: usize) {
        self.procs[id].stdin = None;
    }

    /// The next line any role prints, or `None` once `until` has passed. A role that fails,
    /// prints garbage or exits without its report is an error.
    async fn next_until(&mut self, until: Instant) -> anyhow::Result<Option<(usize, Line)>> {
        loop {
            let Ok(event) = tokio::time::timeout_at(until, self.events.recv()).await else {
                return Ok(None);
            };
            let (id, event) = event.context("every role's output closed")?;
            match event {
                Event::Line(Line::Failed { error }) => {
                    bail!("{} failed: {error}", self.role(id))
                }
                Event::Line(line) => {
                    if matches!(
                        line,
                        Line::Sent(_) | Line::Received(_) | Line::RoundTrips(_)
                    ) {
                        self.procs[id].reported = true;
                    }
                    return Ok(Some((id, line)));
                }
                Event::Garbage(text) => {
                    bail!("{} printed {text:?}{}", self.role(id), self.stderr_tail(id))
                }
                Event::Closed if self.procs[id].reported => {}
                Event::Closed => {
                    let status = match self.wait(id).await {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("{e:#}"),
                    };
                    bail!(
                        "{} exited without a report ({status}){}",
                        self.role(id),
                        self.stderr_tail(id)
                    );
                }
            }
        }
    }

    /// Closes every stdin and waits for each role to exit successfully.
    async fn reap(&mut self) -> anyhow::Result<()> {
        for id in 0..self.procs.len() {
            self.close_stdin(id);
        }
        for id in 0..self.procs.len() {
            let status = self.wait(id).await?;
            if !status.success() {
                bail!("{} exited with {status}{}", self.role(id), self.stderr_tail(id));
            }
        }
        Ok(())
    }

    /// How role `id` exited; kills it if it has not exited within [`EXIT_WITHIN`].
    async fn wait(&mut self, id: usize) -> anyhow::Result<ExitStatus> {
        let proc = &mut self.procs[id];
        match tokio::time::timeout(EXIT_WITHIN, proc.child.wait()).await {
            Ok(status) => status.with_context(|| format!("cannot wait for {}", proc.role)),
            Err(_) => {
                let _ = proc.child.kill().await;
                bail!("{} did not exit within {EXIT_WITHIN:?} and was killed", proc.role)
            }
        }
    }

    fn stderr_tail(&self, id: usize) -> String {
        let tail = self.procs[id]
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("\n  stderr:\n  {}", lines.join("\n  "))
    }
}
