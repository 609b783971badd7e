//! The spawning thread: every worker process is forked from this one long-lived thread, because
//! `PR_SET_PDEATHSIG` fires when the parent *thread* exits — a tokio worker or blocking thread
//! that goes idle would take its children with it. When the daemon dies, so does this thread,
//! and the kernel kills every worker's main process.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::process::Stdio;
use std::sync::{mpsc, Mutex};

use circuit_sdk::paths::{CHAN_ENV_PREFIX, NODE_ENV, SOCKET_ENV, WORKER_ENV};
use circuit_sdk::proto::{EnvMode, SpawnSpec};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

struct Job {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Handle to the spawning thread. The thread ends when the handle is dropped.
pub struct Spawner {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Spawner {
    /// Starts the thread; children are registered with the given runtime's process driver.
    pub fn start(runtime: tokio::runtime::Handle) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("circuit-spawner".into())
            .spawn(move || {
                let _enter = runtime.enter();
                while let Ok(mut job) = rx.recv() {
                    let _ = job.reply.send(job.command.spawn());
                }
            })?;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Starts `command` from the spawning thread.
    pub async fn spawn(&self, command: Command) -> io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .expect("spawner lock")
            .send(Job { command, reply });
        if sent.is_err() {
            return Err(io::Error::other("the spawning thread has stopped"));
        }
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread has stopped")))
    }
}

/// What a worker learns about where it runs.
pub struct WorkerEnv<'a> {
    /// The daemon's socket.
    pub socket: &'a str,
    /// The node name.
    pub node: &'a str,
    /// The worker's name.
    pub worker: &'a str,
}

/// Builds the command for a spec: environment, cwd, pipes, its own process group, and the
/// parent-death signal.
pub fn command(spec: &SpawnSpec, env: &WorkerEnv<'_>) -> Command {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args);
    if spec.env_mode == EnvMode::Replace {
        cmd.env_clear();
    }
    cmd.envs(&spec.env)
        .envs(circuit_env(spec, env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let daemon = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe functions prctl and getppid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The daemon may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() as u32 != daemon {
                return Err(io::Error::other("circuitd exited during spawn"));
            }
            Ok(())
        });
    }
    cmd
}

/// The `CIRCUIT_*` variables a worker gets.
pub fn circuit_env(spec: &SpawnSpec, env: &WorkerEnv<'_>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert(SOCKET_ENV.to_string(), env.socket.to_string());
    vars.insert(NODE_ENV.to_string(), env.node.to_string());
    vars.insert(WORKER_ENV.to_string(), env.worker.to_string());
    for (binding, chan) in &spec.chans {
        vars.insert(
            format!("{CHAN_ENV_PREFIX}{}", binding.to_ascii_uppercase()),
            chan.clone(),
        );
    }
    vars
}
