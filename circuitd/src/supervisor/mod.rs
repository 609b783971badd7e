//! The supervisor: the registry of workers on this node and the handle every request goes
//! through. Each worker is its own task (`worker`); this module names, creates, finds and
//! forgets them, and restores them from the job table at start-up.

pub mod error;
pub mod escaped;
pub mod logread;
pub mod logs;
pub mod recovery;
pub mod restart;
pub mod spawner;
pub mod stdin;
pub mod table;
pub mod usage;
pub mod validate;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuit_sdk::proto::{SpawnSpec, WorkerEnd, WorkerEvent, WorkerInfo, WorkerState, WorkerUsage};
use tokio::process::ChildStdin;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
pub use error::SupervisorError;
use logs::LogFile;
use restart::Restarts;
use spawner::Spawner;
use table::{Desired, JobRecord, Table};
use worker::{Command, Worker};

/// Worker events an `events` stream may fall behind by before it misses some.
const EVENTS: usize = 1024;

/// The usage sampled for `info`'s current process, while it runs.
fn usage_of(usage: &HashMap<u32, WorkerUsage>, info: &WorkerInfo) -> Option<WorkerUsage> {
    match info.state {
        WorkerState::Running | WorkerState::Stopping => usage.get(&info.pid?).cloned(),
        _ => None,
    }
}

/// State shared by the handle and the worker tasks.
pub(crate) struct Shared {
    config: Config,
    /// The socket path as workers get it.
    socket: String,
    spawner: Spawner,
    table: Table,
    workers: Mutex<HashMap<String, Slot>>,
    /// The latest usage sample of each running worker, by pid.
    usage: Mutex<HashMap<u32, WorkerUsage>>,
    /// The escaped descendants of each worker at the latest sample, by worker name.
    escaped: Mutex<HashMap<String, Vec<escaped::Escapee>>>,
    /// What happens to workers, for `events` streams.
    events: broadcast::Sender<WorkerEvent>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What the registry keeps of a worker: how to reach its task and see its state.
#[derive(Clone)]
struct Slot {
    commands: mpsc::Sender<Command>,
    info: watch::Receiver<WorkerInfo>,
    log: Arc<LogFile>,
}

/// Cloneable handle to this node's workers.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Loads the job table, kills what a crashed predecessor left running, and restores every
    /// worker: those whose policy says so are started again.
    pub async fn start(
        config: Config,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let workers_dir = config.data_dir.join("workers");
        std::fs::create_dir_all(&workers_dir)?;
        let loaded = Table::load(&config.data_dir)?;
        let boot = recovery::boot_id();
        let same_boot = boot.is_some() && loaded.boot_id == boot;
        let mut killed = 0;
        for job in &loaded.jobs {
            if let Some(process) = &job.process {
                if recovery::kill_stale(process, same_boot) {
                    killed += 1;
                }
            }
        }
        if killed > 0 {
            tracing::warn!(
                groups = killed,
                "killed process groups left by a previous daemon"
            );
        }
        let table = Table::start(&config.data_dir, loaded.jobs.clone(), boot, &tracker);
        let shared = Arc::new(Shared {
            socket: config.socket.display().to_string(),
            spawner: Spawner::start(tokio::runtime::Handle::current())?,
            table,
            workers: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            escaped: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENTS).0,
            tracker,
            shutdown,
            config,
        });
        let supervisor = Self { shared };
        supervisor
            .shared
            .tracker
            .spawn(supervisor.clone().sample_usage());
        for job in loaded.jobs {
            supervisor.restore(job)?;
        }
        Ok(supervisor)
    }

    fn restore(&self, job: JobRecord) -> Result<(), SupervisorError> {
        let mut info = job.info;
        // Active when the daemon died, or stopped by the daemon's own shutdown.
        let was_active = !info.state.is_terminal() || job.interrupted;
        let policy = info.spec.restart.policy;
        let start = was_active
            && job.desired == Desired::Running
            && policy != circuit_sdk::proto::RestartPolicy::Never;
        if was_active && !start {
            info.state = WorkerState::Exited;
            info.pid = None;
            info.next_start_at_ms = None;
            if info.reason.is_none() {
                info.reason = Some("the daemon restarted while it ran".into());
            }
        }
        if start {
            tracing::info!(worker = %info.name, "restarting worker after daemon restart");
        }
        if !start && job.process.is_some() {
            // Its old process group is dead (killed above): forget it on disk too.
            self.shared.table.put_later(JobRecord {
                info: info.clone(),
                desired: job.desired,
                process: None,
                interrupted: false,
            });
        }
        let spec = info.spec.clone();
        self.launch(info, spec, job.desired, start, None)?;
        Ok(())
    }

    /// Starts a new worker; resolves once its process runs (or could not start).
    pub async fn spawn(&self, mut spec: SpawnSpec) -> Result<WorkerInfo, SupervisorError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(SupervisorError::ShuttingDown);
        }
        validate::spec(&spec)?;
        validate::runnable(&spec)?;
        let name = match spec.name.clone() {
            Some(name) => name,
            None => self.generate_name(&spec.command),
        };
        spec.name = Some(name.clone());
        let info = WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: name.clone(),
            node: self.shared.config.name.clone(),
            state: WorkerState::Starting,
            pid: None,
            restarts: 0,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            spec: spec.clone(),
        };
        let (reply, started) = oneshot::channel();
        self.launch(info, spec, Desired::Running, true, Some(reply))?;
        match started.await {
            Ok(result) => result,
            Err(_) => Err(SupervisorError::ShuttingDown),
        }
    }

    /// Registers a worker and starts its task. `reply` makes its first start's failure remove it.
    /// A new worker (one with a `reply`) is refused when the table holds `max_workers`; those
    /// restored from the job table are not.
    fn launch(
        &self,
        info: WorkerInfo,
        spec: SpawnSpec,
        desired: Desired,
        start: bool,
        reply: Option<worker::StartReply>,
    ) -> Result<(), SupervisorError> {
        let name = info.name.clone();
        let log = LogFile::open(
            &self.shared.config.data_dir.join("workers").join(&name),
            spec.log
                .max_bytes
                .unwrap_or(self.shared.config.log_max_bytes),
            spec.log
                .max_files
                .unwrap_or(self.shared.config.log_max_files),
        )?;
        let (info_tx, info_rx) = watch::channel(info);
        let (commands_tx, commands) = mpsc::channel(16);
        {
            let mut workers = self.shared.workers.lock().expect("registry lock");
            if workers.contains_key(&name) {
                return Err(SupervisorError::AlreadyExists(name));
            }
            // Every entry counts, exited and failed ones too: each holds a task, a job table
            // entry and its logs until `rm`, so only this keeps the table from growing forever.
            if reply.is_some() && workers.len() >= self.shared.config.max_workers {
                return Err(SupervisorError::LimitReached(workers.len()));
            }
            workers.insert(
                name.clone(),
                Slot {
                    commands: commands_tx,
                    info: info_rx,
                    log: log.clone(),
                },
            );
        }
        let first_start = reply.is_some();
        let worker = Worker {
            spec,
            shared: self.shared.clone(),
            info: info_tx,
            log,
            commands,
            desired,
            restarts: Restarts::default(),
            pending_start: reply,
            first_start,
            identity: None,
        };
        self.shared.tracker.spawn(worker.run(start));
        Ok(())
    }

    fn generate_name(&self, command: &str) -> String {
        let base: String = command
            .rsplit('/')
            .next()
            .unwrap_or(command)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(48)
            .collect();
        let base = base.trim_start_matches(['.', '-']);
        let base = if base.is_empty() { "worker" } else { base };
        let workers = self.shared.workers.lock().expect("registry lock");
        (1..)
            .map(|n| format!("{base}-{n}"))
            .find(|candidate| !workers.contains_key(candidate))
            .expect("an unused name")
    }

    fn slot(&self, name: &str) -> Result<Slot, SupervisorError> {
        self.shared
            .workers
            .lock()
            .expect("registry lock")
            .get(name)
            .cloned()
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))
    }

    /// Every worker (only active and failed ones unless `all`), by name.
    pub fn list(&self, all: bool) -> Vec<WorkerInfo> {
        let mut list: Vec<WorkerInfo> = self
            .shared
            .workers
            .lock()
            .expect("registry lock")
            .values()
            .map(|slot| slot.info.borrow().clone())
            .filter(|info| all || info.state != WorkerState::Exited)
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        for info in &mut list {
            self.shared.sampled(info);
        }
        list
    }

    /// One worker.
    pub fn inspect(&self, name: &str) -> Result<WorkerInfo, SupervisorError> {
        let mut info = self.slot(name)?.info.borrow().clone();
        self.shared.sampled(&mut info);
        Ok(info)
    }

    /// What happens to this node's workers from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    /// Samples what every running worker uses, every [`usage::EVERY`], until shutdown. The
    /// scan of `/proc` runs on a blocking thread.
    async fn sample_usage(self) {
        let mut sampler = usage::Sampler::new();
        let mut tracker = escaped::Tracker::new();
        let mut tick = tokio::time::interval(usage::EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shared.shutdown.cancelled() => return,
            }
            let (leaders, any) = {
                let workers = self.shared.workers.lock().expect("registry lock");
                let leaders: HashMap<u32, String> = workers
                    .iter()
                    .filter_map(|(name, slot)| Some((slot.info.borrow().pid?, name.clone())))
                    .collect();
                (leaders, !workers.is_empty())
            };
            let now = crate::clock::now_ms();
            let sampled = tokio::task::spawn_blocking(move || {
                // Nothing to read when no worker exists and none left anything behind.
                let procs = if any || tracker.watching() {
                    usage::scan()
                } else {
                    Vec::new()
                };
                let pids: Vec<u32> = leaders.keys().copied().collect();
                let usage = sampler.sample(&procs, &pids, now);
                let escaped = tracker.track(&procs, &leaders);
                (sampler, tracker, usage, escaped)
            })
            .await;
            let Ok((back, back_tracker, usage, escaped)) = sampled else {
                return;
            };
            (sampler, tracker) = (back, back_tracker);
            *self.shared.usage.lock().expect("usage lock") = usage;
            *self.shared.escaped.lock().expect("escaped lock") = escaped;
        }
    }

    /// Worker counts by state.
    pub fn counts(&self) -> BTreeMap<WorkerState, usize> {
        let mut counts = BTreeMap::new();
        for slot in self.shared.workers.lock().expect("registry lock").values() {
            *counts.entry(slot.info.borrow().state).or_insert(0) += 1;
        }
        counts
    }

    /// Stops workers, all at once; every name is checked before any is touched.
    pub async fn stop(
        &self,
        names: &[String],
        signal: Option<&str>,
        grace: Option<Duration>,
    ) -> Result<Vec<WorkerInfo>, SupervisorError> {
        let signal = signal.map(validate::signal).transpose()?;
        let slots = names
            .iter()
            .map(|n| self.slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        let stops = slots.into_iter().zip(names).map(|(slot, name)| async move {
            let (reply, rx) = oneshot::channel();
            let command = Command::Stop {
                signal,
                grace,
                reply,
            };
            if slot.commands.send(command).await.is_err() {
                return Err(SupervisorError::NotFound(name.clone()));
            }
            rx.await
                .map_err(|_| SupervisorError::NotFound(name.clone()))
        });
        futures::future::join_all(stops).await.into_iter().collect()
    }

    /// Stops (if needed) and starts a worker again, clearing `failed`.
    pub async fn restart(&self, name: &str) -> Result<WorkerInfo, SupervisorError> {
        let slot = self.slot(name)?;
        let (reply, rx) = oneshot::channel();
        self.send(&slot, name, Command::Restart { reply }).await?;
        rx.await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))?
    }

    /// Signals a worker's main process, or its whole group.
    pub async fn signal(
        &self,
        name: &str,
        signal: &str,
        group: bool,
    ) -> Result<(), SupervisorError> {
        let signal = validate::signal(signal)?;
        let slot = self.slot(name)?;
        let (reply, rx) = oneshot::channel();
        self.send(
            &slot,
            name,
            Command::Signal {
                signal,
                group,
                reply,
            },
        )
        .await?;
        rx.await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))?
    }

    /// Forgets a worker and deletes its logs.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), SupervisorError> {
        let slot = self.slot(name)?;
        let (reply, rx) = oneshot::channel();
        self.send(&slot, name, Command::Remove { force, reply })
            .await?;
        rx.await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))?
    }

    /// True when this node has a worker named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.shared
            .workers
            .lock()
            .expect("registry lock")
            .contains_key(name)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.config.name
    }

    /// Starts the writer of a `worker_stdin` stream to worker `name`; the connection sends the
    /// stream's messages to the inbox returned, the first of which opens the stream.
    pub(crate) fn stdin(&self, name: String, keep_open: bool) -> stdin::StdinInbox {
        stdin::start(self.clone(), name, keep_open)
    }

    /// Takes worker `name`'s stdin for a writer: refused unless the worker was spawned with
    /// `stdin`, runs, and no other writer has its stdin.
    pub(crate) async fn attach_stdin(
        &self,
        name: &str,
    ) -> Result<stdin::Attachment, SupervisorError> {
        let slot = self.slot(name)?;
        if !slot.info.borrow().spec.stdin {
            return Err(stdin::pipe::not_spawned_with_stdin(name));
        }
        let (reply, rx) = oneshot::channel();
        self.send(&slot, name, Command::AttachStdin { reply })
            .await?;
        let taken = rx
            .await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))??;
        Ok(stdin::Attachment {
            pipe: taken.pipe,
            pid: taken.pid,
            info: slot.info,
        })
    }

    /// A writer is done with the stdin of worker `name`'s run `pid`: `Some` gives the pipe
    /// back open, `None` says it is closed. A run that is over already drops it.
    pub(crate) async fn release_stdin(&self, name: &str, pid: u32, pipe: Option<ChildStdin>) {
        if let Ok(slot) = self.slot(name) {
            let _ = slot
                .commands
                .send(Command::ReleaseStdin { pid, pipe })
                .await;
        }
    }

    /// Resolves when the worker has ended (exited or failed).
    pub async fn wait(&self, name: &str) -> Result<WorkerEnd, SupervisorError> {
        let mut info = self.slot(name)?.info;
        let end = info
            .wait_for(|i| i.state.is_terminal())
            .await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))?;
        Ok(end_of(&end))
    }

    /// What a log reader needs: the log, the worker's state, and rotation settings.
    pub fn log_of(
        &self,
        name: &str,
    ) -> Result<(Arc<LogFile>, watch::Receiver<WorkerInfo>, u32), SupervisorError> {
        let slot = self.slot(name)?;
        let max_files = slot
            .info
            .borrow()
            .spec
            .log
            .max_files
            .unwrap_or(self.shared.config.log_max_files);
        Ok((slot.log, slot.info, max_files))
    }

    async fn send(&self, slot: &Slot, name: &str, command: Command) -> Result<(), SupervisorError> {
        slot.commands
            .send(command)
            .await
            .map_err(|_| SupervisorError::NotFound(name.to_string()))
    }
}

impl Shared {
    fn forget(&self, name: &str) {
        self.workers.lock().expect("registry lock").remove(name);
    }

    /// Fills in what the latest sample says of `info`'s worker: its usage while it runs, its
    /// escaped descendants in any state.
    fn sampled(&self, info: &mut WorkerInfo) {
        info.usage = usage_of(&self.usage.lock().expect("usage lock"), info);
        info.escaped = self
            .escaped_of(&info.name)
            .iter()
            .map(escaped::Escapee::public)
            .collect();
    }

    /// The escaped descendants of worker `name` at the latest sample.
    fn escaped_of(&self, name: &str) -> Vec<escaped::Escapee> {
        let escaped = self.escaped.lock().expect("escaped lock");
        escaped.get(name).cloned().unwrap_or_default()
    }

    /// Forgets worker `name`'s escaped descendants until the next sample (a stop ended them).
    fn forget_escaped(&self, name: &str) {
        self.escaped.lock().expect("escaped lock").remove(name);
    }
}

/// A worker's end as `wait` reports it.
pub fn end_of(info: &WorkerInfo) -> WorkerEnd {
    WorkerEnd {
        name: info.name.clone(),
        state: info.state,
        exit: info.last_exit,
        reason: info.reason.clone(),
    }
}
