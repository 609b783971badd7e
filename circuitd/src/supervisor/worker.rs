//! One task per worker: starts its process, watches it, restarts it by policy, stops it on
//! request. The task owns the worker's state and publishes it through a `watch` channel.
//!
//! ```text
//!   start ──ok──▶ running ──exit──▶ decide ──restart──▶ backoff ──delay──▶ start
//!     │                │                  ├─exit──────▶ idle (exited)
//!     │ error          │ stop/shutdown    └─give up───▶ idle (failed)
//!     ▼                ▼
//!   idle (failed)   stopping ──▶ idle (exited)          idle ──restart──▶ start
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use circuit_sdk::proto::{
    ExitStatus, LogStream, SpawnSpec, WorkerEvent, WorkerEventKind, WorkerInfo, WorkerState,
};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::error::SupervisorError;
use super::escaped::{self, Escapee};
use super::logs::{self, LogFile};
use super::restart::{Decision, Restarts};
use super::spawner::{self, WorkerEnv};
use super::stdin::pipe::{Pipe, Taken};
use super::table::{Desired, JobRecord, ProcessIdentity};
use super::{validate, Shared};
use crate::clock::now_ms;

/// How long the log pumps may keep reading after the process group is gone (a daemonised
/// descendant that escaped the group can hold a pipe open forever).
const PUMP_DRAIN: Duration = Duration::from_secs(2);

/// Reply channel of a request that completes when the worker has (re)started.
pub type StartReply = oneshot::Sender<Result<WorkerInfo, SupervisorError>>;

/// A request to a worker task.
pub enum Command {
    /// Stop the process; the worker stays, exited.
    Stop {
        /// Overrides the spec's stop signal.
        signal: Option<Signal>,
        /// Overrides the spec's grace period.
        grace: Option<Duration>,
        /// Gets the final state.
        reply: oneshot::Sender<WorkerInfo>,
    },
    /// Stop if needed, forget the restart history, start again.
    Restart {
        /// Gets the state once started (or why not).
        reply: StartReply,
    },
    /// Signal the main process or its whole group.
    Signal {
        /// Which signal.
        signal: Signal,
        /// The whole group.
        group: bool,
        /// Done, or not running.
        reply: oneshot::Sender<Result<(), SupervisorError>>,
    },
    /// Forget the worker (stopping it first with `force`).
    Remove {
        /// Stop a running worker instead of refusing.
        force: bool,
        /// Done, or refused.
        reply: oneshot::Sender<Result<(), SupervisorError>>,
    },
    /// Hand the running process's stdin pipe to a writer (`worker_stdin`).
    AttachStdin {
        /// The pipe, or why not (no `stdin`, taken, closed, not running).
        reply: oneshot::Sender<Result<Taken, SupervisorError>>,
    },
    /// A writer is done with the stdin of run `pid`.
    ReleaseStdin {
        /// The run it was taken from: another run's pipe is dropped.
        pid: u32,
        /// The pipe, open; `None` when the writer closed it (or found it closed).
        pipe: Option<ChildStdin>,
    },
}

/// Where the task goes next.
enum Phase {
    Start,
    Running(Box<Process>),
    Backoff(Duration),
    Idle,
    Gone,
}

struct Process {
    child: Child,
    pid: i32,
    started: Instant,
    pumps: Vec<JoinHandle<()>>,
    /// The write end of its stdin, kept out of `child` (whose `wait` would close it).
    stdin: Pipe,
}

/// A worker task's state.
pub struct Worker {
    pub(super) spec: SpawnSpec,
    pub(super) shared: Arc<Shared>,
    pub(super) info: watch::Sender<WorkerInfo>,
    pub(super) log: Arc<LogFile>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) desired: Desired,
    pub(super) restarts: Restarts,
    /// Who waits for the next start to succeed or fail (the spawn or restart request).
    pub(super) pending_start: Option<StartReply>,
    /// Whether a failure of the next start removes the worker (its very first start).
    pub(super) first_start: bool,
    /// The live process group, recorded so a crashed daemon's successor can kill it.
    pub(super) identity: Option<ProcessIdentity>,
}

impl Worker {
    /// Runs the worker until it is removed or the daemon shuts down.
    pub async fn run(mut self, start: bool) {
        let mut phase = if start { Phase::Start } else { Phase::Idle };
        loop {
            phase = match phase {
                Phase::Start => self.start().await,
                Phase::Running(process) => self.supervise(process).await,
                Phase::Backoff(delay) => self.backoff(delay).await,
                Phase::Idle => self.idle().await,
                Phase::Gone => return,
            };
        }
    }

    async fn start(&mut self) -> Phase {
        self.set(|i| {
            i.state = WorkerState::Starting;
            i.next_start_at_ms = None;
        });
        match self.launch().await {
            Ok(process) => {
                let now = now_ms();
                let pid = process.pid;
                self.set(|i| {
                    i.state = WorkerState::Running;
                    i.pid = Some(pid as u32);
                    i.started_at_ms = Some(now);
                    i.reason = None;
                });
                self.identity = Some(ProcessIdentity {
                    pgid: pid,
                    start_ticks: super::recovery::start_ticks(pid),
                });
                if self.info.borrow().exited_at_ms.is_some() {
                    self.note(&format!("started again (pid {pid})"));
                }
                self.event(WorkerEventKind::Started { pid: pid as u32 });
                if let Err(e) = self.shared.table.put(self.record()).await {
                    if self.first_start {
                        // Unrecorded, the process could outlive a crash unsupervised: undo.
                        self.reap(Box::new(process)).await;
                        self.abandon_first_start(SupervisorError::SpawnFailed(format!(
                            "cannot record the worker in the job table: {e}"
                        )));
                        return Phase::Gone;
                    }
                    tracing::error!(worker = %self.info.borrow().name, error = %e, "worker not recorded in the job table");
                }
                self.first_start = false;
                if let Some(reply) = self.pending_start.take() {
                    let _ = reply.send(Ok(self.info.borrow().clone()));
                }
                Phase::Running(Box::new(process))
            }
            Err(e) => {
                let reason = e.to_string();
                if self.first_start {
                    self.abandon_first_start(e);
                    return Phase::Gone;
                }
                if let Some(reply) = self.pending_start.take() {
                    let _ = reply.send(Err(e));
                }
                self.event(WorkerEventKind::GaveUp {
                    reason: reason.clone(),
                });
                self.set(|i| {
                    i.state = WorkerState::Failed;
                    i.pid = None;
                    i.reason = Some(reason);
                });
                self.shared.table.put_later(self.record());
                Phase::Idle
            }
        }
    }

    /// A first start that failed leaves nothing behind, and the name is free again before the
    /// requester hears of the failure.
    fn abandon_first_start(&mut self, error: SupervisorError) {
        let name = self.info.borrow().name.clone();
        let _ = std::fs::remove_dir_all(self.log.dir());
        self.shared.table.remove_later(&name);
        self.shared.forget(&name);
        if let Some(reply) = self.pending_start.take() {
            let _ = reply.send(Err(error));
        }
    }

    async fn launch(&mut self) -> Result<Process, SupervisorError> {
        // A spawn checked this just now; restarts check again (files change).
        if !self.first_start {
            validate::runnable(&self.spec)?;
        }
        let env = WorkerEnv {
            socket: &self.shared.socket,
            node: &self.shared.config.name,
            worker: &self.info.borrow().name.clone(),
            keepalive: self.shared.config.keepalive,
        };
        let command = spawner::command(&self.spec, &env);
        let mut child = self.shared.spawner.spawn(command).await.map_err(|e| {
            SupervisorError::SpawnFailed(format!(
                "cannot start {}: {}",
                self.spec.command,
                validate::plain_io(&e)
            ))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| SupervisorError::SpawnFailed("the process vanished at start".into()))?
            as i32;
        let mut pumps = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(logs::pump(
                out,
                LogStream::Stdout,
                self.log.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(logs::pump(
                err,
                LogStream::Stderr,
                self.log.clone(),
            )));
        }
        let stdin = child.stdin.take().map_or(Pipe::Unused, Pipe::Free);
        Ok(Process {
            child,
            pid,
            started: Instant::now(),
            pumps,
            stdin,
        })
    }

    async fn supervise(&mut self, mut process: Box<Process>) -> Phase {
        loop {
            tokio::select! {
                status = process.child.wait() => {
                    let status = convert(status);
                    let uptime = process.started.elapsed();
                    self.reap(process).await;
                    return self.after_exit(status, uptime);
                }
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        self.terminate(&mut process, None, None).await;
                        self.reap(process).await;
                        return Phase::Gone;
                    };
                    match command {
                        Command::Stop { signal, grace, reply } => {
                            // The intent is durable first: a crash during the grace period
                            // must not bring the worker back.
                            self.desired = Desired::Stopped;
                            self.persist().await;
                            let status = self.terminate(&mut process, signal, grace).await;
                            self.reap(process).await;
                            self.exited(status, None);
                            self.event(WorkerEventKind::Stopped { last_exit: Some(status) });
                            self.persist().await;
                            let _ = reply.send(self.info.borrow().clone());
                            return Phase::Idle;
                        }
                        Command::Restart { reply } => {
                            let status = self.terminate(&mut process, None, None).await;
                            self.reap(process).await;
                            self.event(WorkerEventKind::Stopped { last_exit: Some(status) });
                            return self.restart_now(reply);
                        }
                        Command::Signal { signal, group, reply } => {
                            let pid = Pid::from_raw(process.pid);
                            let sent = if group { killpg(pid, signal) } else { kill(pid, signal) };
                            let _ = reply.send(sent.map_err(|e| {
                                SupervisorError::InvalidState(format!("cannot signal: {}", e.desc()))
                            }));
                        }
                        Command::Remove { force: false, reply } => {
                            let _ = reply.send(Err(self.still_active()));
                        }
                        Command::Remove { force: true, reply } => {
                            let status = self.terminate(&mut process, None, None).await;
                            self.reap(process).await;
                            self.exited(status, None);
                            self.event(WorkerEventKind::Stopped { last_exit: Some(status) });
                            return self.remove(reply).await;
                        }
                        Command::AttachStdin { reply } => {
                            let name = self.info.borrow().name.clone();
                            let _ = reply.send(process.stdin.take(&name, process.pid as u32));
                        }
                        Command::ReleaseStdin { pid, pipe } => {
                            if pid == process.pid as u32 {
                                process.stdin.release(pipe);
                            }
                        }
                    }
                }
                () = self.shared.shutdown.cancelled() => {
                    let status = self.terminate(&mut process, None, None).await;
                    self.reap(process).await;
                    self.exited(status, Some("stopped by daemon shutdown".into()));
                    self.event(WorkerEventKind::Stopped { last_exit: Some(status) });
                    // `desired` is unchanged: a daemon restart brings the worker back.
                    let mut record = self.record();
                    record.interrupted = true;
                    if let Err(e) = self.shared.table.put(record).await {
                        tracing::error!(error = %e, "cannot record the worker before shutdown");
                    }
                    return Phase::Gone;
                }
            }
        }
    }

    async fn backoff(&mut self, delay: Duration) -> Phase {
        let due = now_ms() + delay.as_millis() as u64;
        self.set(|i| {
            i.state = WorkerState::Backoff;
            i.pid = None;
            i.next_start_at_ms = Some(due);
        });
        self.shared.table.put_later(self.record());
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return Phase::Start,
                command = self.commands.recv() => match command {
                    None => return Phase::Gone,
                    Some(command) => if let Some(next) = self.when_not_running(command).await {
                        return next;
                    },
                },
                () = self.shared.shutdown.cancelled() => {
                    // A daemon that stops leaves nothing of its workers running.
                    self.stop_escaped(None, None).await;
                    return Phase::Gone;
                }
            }
        }
    }

    /// Ends what the worker's last run left outside its group (it runs no process now):
    /// `signal` (its stop signal by default), the grace period, then SIGKILL.
    async fn stop_escaped(&mut self, signal: Option<Signal>, grace: Option<Duration>) {
        let escaped = self.escaped_now(None).await;
        let signal = signal
            .or_else(|| validate::signal(&self.spec.stop.signal).ok())
            .unwrap_or(Signal::SIGTERM);
        for e in &escaped {
            e.signal(signal);
        }
        let grace = grace.unwrap_or(Duration::from_millis(self.spec.stop.grace_ms));
        self.end_escaped(escaped, grace).await;
    }

    async fn idle(&mut self) -> Phase {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return Phase::Gone,
                    Some(command) => if let Some(next) = self.when_not_running(command).await {
                        return next;
                    },
                },
                () = self.shared.shutdown.cancelled() => {
                    // A daemon that stops leaves nothing of its workers running.
                    self.stop_escaped(None, None).await;
                    return Phase::Gone;
                }
            }
        }
    }

    /// Handles a command while no process runs (backoff or idle); `Some` changes phase.
    async fn when_not_running(&mut self, command: Command) -> Option<Phase> {
        match command {
            Command::Stop {
                signal,
                grace,
                reply,
            } => {
                let in_backoff = self.info.borrow().state == WorkerState::Backoff;
                self.desired = Desired::Stopped;
                // What its last run left outside its group ends too.
                self.stop_escaped(signal, grace).await;
                if in_backoff {
                    self.set(|i| {
                        i.state = WorkerState::Exited;
                        i.next_start_at_ms = None;
                    });
                    self.event(WorkerEventKind::Stopped { last_exit: None });
                }
                self.persist().await;
                let _ = reply.send(self.info.borrow().clone());
                in_backoff.then_some(Phase::Idle)
            }
            Command::Restart { reply } => {
                // As a stop then a start: what its last run left ends first.
                self.stop_escaped(None, None).await;
                Some(self.restart_now(reply))
            }
            Command::Signal { reply, .. } => {
                let _ = reply.send(Err(self.not_running()));
                None
            }
            Command::AttachStdin { reply } => {
                let _ = reply.send(Err(self.not_running()));
                None
            }
            // The run it was taken from is over: the pipe goes with it.
            Command::ReleaseStdin { .. } => None,
            Command::Remove { force, reply } => {
                if self.info.borrow().state == WorkerState::Backoff && !force {
                    let _ = reply.send(Err(self.still_active()));
                    return None;
                }
                // Nothing would name them once the worker is forgotten.
                self.stop_escaped(None, None).await;
                Some(self.remove(reply).await)
            }
        }
    }

    fn restart_now(&mut self, reply: StartReply) -> Phase {
        self.restarts.reset();
        self.desired = Desired::Running;
        self.set(|i| i.restarts = 0);
        self.pending_start = Some(reply);
        Phase::Start
    }

    async fn remove(&mut self, reply: oneshot::Sender<Result<(), SupervisorError>>) -> Phase {
        let name = self.info.borrow().name.clone();
        if let Err(e) = self.shared.table.remove(&name).await {
            tracing::error!(worker = %name, error = %e, "removed worker may reappear after a restart");
        }
        let dir = self.log.dir().to_path_buf();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        // A worker that never wrote a line has no log directory: NotFound is fine.
        if let Ok(Err(e)) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(worker = %name, error = %e, "cannot delete worker logs");
            }
        }
        self.shared.forget(&name);
        let _ = reply.send(Ok(()));
        Phase::Gone
    }

    fn not_running(&self) -> SupervisorError {
        let info = self.info.borrow();
        SupervisorError::InvalidState(format!(
            "worker \"{}\" is not running ({})",
            info.name, info.state
        ))
    }

    fn still_active(&self) -> SupervisorError {
        let info = self.info.borrow();
        SupervisorError::InvalidState(format!(
            "worker \"{}\" is {}; stop it first or use --force",
            info.name, info.state
        ))
    }

    /// Decides what follows an exit the worker made on its own.
    fn after_exit(&mut self, status: ExitStatus, uptime: Duration) -> Phase {
        let jitter = fastrand::f64();
        let decision =
            self.restarts
                .on_exit(&self.spec.restart, status, uptime, Instant::now(), jitter);
        self.event(WorkerEventKind::Exited { last_exit: status });
        match decision {
            Decision::Exit => {
                self.exited(status, None);
                self.shared.table.put_later(self.record());
                Phase::Idle
            }
            Decision::Restart(delay) => {
                self.set(|i| {
                    i.last_exit = Some(status);
                    i.exited_at_ms = Some(now_ms());
                    i.restarts += 1;
                });
                let in_ms = delay.as_millis() as u64;
                self.note(&format!("exited ({status}), restarting in {in_ms}ms"));
                self.event(WorkerEventKind::Restarting { in_ms });
                Phase::Backoff(delay)
            }
            Decision::GiveUp(reason) => {
                tracing::warn!(worker = %self.info.borrow().name, %reason, "worker failed");
                self.event(WorkerEventKind::GaveUp {
                    reason: reason.clone(),
                });
                self.exited(status, Some(reason));
                self.set(|i| i.state = WorkerState::Failed);
                self.shared.table.put_later(self.record());
                Phase::Idle
            }
        }
    }

    /// Signals the group, waits up to the grace period, then SIGKILLs it.
    async fn terminate(
        &mut self,
        process: &mut Process,
        signal: Option<Signal>,
        grace: Option<Duration>,
    ) -> ExitStatus {
        self.set(|i| i.state = WorkerState::Stopping);
        let signal = signal
            .or_else(|| validate::signal(&self.spec.stop.signal).ok())
            .unwrap_or(Signal::SIGTERM);
        let grace = grace.unwrap_or(Duration::from_millis(self.spec.stop.grace_ms));
        let escaped = self.escaped_now(Some(process.pid as u32)).await;
        let asked = Instant::now();
        let group = Pid::from_raw(process.pid);
        let _ = killpg(group, signal);
        for e in &escaped {
            e.signal(signal);
        }
        let status = match tokio::time::timeout(grace, process.child.wait()).await {
            Ok(status) => convert(status),
            Err(_) => {
                let _ = killpg(group, Signal::SIGKILL);
                convert(process.child.wait().await)
            }
        };
        self.end_escaped(escaped, grace.saturating_sub(asked.elapsed()))
            .await;
        status
    }

    /// This worker's escaped descendants now: below its process `leader` while it runs, those
    /// the latest sample knew, and orphans whose environment names it.
    ///
    /// The leader's tree is a few reads, done here. A scan of every process of the host runs
    /// on a blocking thread, and not during the daemon's shutdown, when every worker stops at
    /// once: then the latest sample (at most a second old) says what escaped.
    async fn escaped_now(&self, leader: Option<u32>) -> Vec<Escapee> {
        let name = self.info.borrow().name.clone();
        let known = self.shared.escaped_of(&name);
        let tree = leader.filter(|_| escaped::children_listed());
        if tree.is_some() || self.shared.shutdown.is_cancelled() {
            return escaped::find_now(&name, tree, &known, false);
        }
        tokio::task::spawn_blocking(move || escaped::find_now(&name, leader, &known, true))
            .await
            .unwrap_or_default()
    }

    /// Gives the escaped descendants a stop has signalled `patience` to exit, SIGKILLs the
    /// rest, and names them in the worker's info (the stop's answer shows them).
    async fn end_escaped(&self, escaped: Vec<Escapee>, patience: Duration) {
        if !escaped.is_empty() {
            escaped::wait_or_kill(&escaped, patience).await;
            let name = self.info.borrow().name.clone();
            tracing::info!(worker = %name, processes = escaped.len(), "stopped escaped descendants");
            self.shared.forget_escaped(&name);
        }
        self.set(|i| i.escaped = escaped.iter().map(Escapee::public).collect());
    }

    /// After the main process is gone: kill what is left of its group, drain the pipes.
    async fn reap(&mut self, process: Box<Process>) {
        let _ = killpg(Pid::from_raw(process.pid), Signal::SIGKILL);
        self.identity = None;
        for mut pump in process.pumps {
            if tokio::time::timeout(PUMP_DRAIN, &mut pump).await.is_err() {
                pump.abort();
            }
        }
    }

    fn exited(&mut self, status: ExitStatus, reason: Option<String>) {
        let now = now_ms();
        self.set(|i| {
            i.state = WorkerState::Exited;
            i.pid = None;
            i.last_exit = Some(status);
            i.exited_at_ms = Some(now);
            i.next_start_at_ms = None;
            i.reason = reason;
        });
    }

    /// Tells `events` streams what happened.
    fn event(&self, kind: WorkerEventKind) {
        let _ = self.shared.events.send(WorkerEvent {
            ts_ms: now_ms(),
            node: self.shared.config.name.clone(),
            worker: self.info.borrow().name.clone(),
            kind,
        });
    }

    /// Notes in the worker's log, between its runs, what happened (`logs` shows such lines
    /// marked, on stderr). Only between runs: the end of the last run is what `logs -f` ends
    /// with anyway.
    fn note(&self, text: &str) {
        self.log.write_lines(LogStream::Circuit, [text.as_bytes()]);
    }

    fn set(&self, change: impl FnOnce(&mut WorkerInfo)) {
        self.info.send_modify(change);
    }

    fn record(&self) -> JobRecord {
        JobRecord {
            info: self.info.borrow().clone(),
            desired: self.desired,
            process: self.identity,
            interrupted: false,
        }
    }

    /// Writes the worker's record and waits for the disk; a failure is logged.
    async fn persist(&self) {
        if let Err(e) = self.shared.table.put(self.record()).await {
            tracing::error!(worker = %self.info.borrow().name, error = %e, "cannot update the job table");
        }
    }
}

fn convert(status: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ExitStatus::Code { code },
            (None, Some(signal)) => ExitStatus::Signal { signal },
            (None, None) => ExitStatus::Code { code: -1 },
        },
        Err(_) => ExitStatus::Code { code: -1 },
    }
}
