//! Starting worker processes so that they die with the daemon. Each worker gets
//! `PR_SET_PDEATHSIG = SIGKILL`, which fires when the parent *thread* exits — so every worker
//! is started from this one long-lived thread (a tokio worker or blocking thread that went idle
//! would take its children with it).
//!
//! Setting the signal in the child before exec would force a full `fork` of the daemon (page
//! tables copied, then copy-on-write faults on every tokio thread until the child execs). So
//! the child is started with `posix_spawn` (vfork semantics, nothing copied) as the circuitd
//! binary itself in trampoline mode: it sets the parent-death signal, checks that the daemon is
//! still its parent, and execs the worker's program in place (same pid, environment, cwd,
//! process group). See [`exec_trampoline_if_requested`].

use std::collections::BTreeMap;
use std::io;
use std::process::Stdio;
use std::sync::{mpsc, Mutex};

use circuit_sdk::client::{KEEPALIVE_DEFAULT, KEEPALIVE_ENV};
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
    /// The daemon's keepalive (`Config::keepalive`), for the worker's SDK.
    pub keepalive: Option<std::time::Duration>,
}

/// First argument that makes the circuitd binary act as the exec trampoline:
/// `circuitd __circuit-exec DAEMON_PID PROGRAM ARGS...`.
pub const TRAMPOLINE_ARG: &str = "__circuit-exec";

/// The trampoline program: the daemon's own binary, even if the file was replaced since.
const TRAMPOLINE: &str = "/proc/self/exe";

/// Exit code of a trampoline that could not exec the worker's program.
pub const EXEC_FAILED: i32 = 127;

/// Builds the command for a spec: environment, cwd, pipes, its own process group, and the
/// trampoline that sets the parent-death signal and execs the program.
pub fn command(spec: &SpawnSpec, env: &WorkerEnv<'_>) -> Command {
    let mut cmd = Command::new(TRAMPOLINE);
    cmd.arg0(format!("circuit-exec {}", spec.command))
        .arg(TRAMPOLINE_ARG)
        .arg(std::process::id().to_string())
        .arg(&spec.command)
        .args(&spec.args);
    if spec.env_mode == EnvMode::Replace {
        cmd.env_clear();
    } else if env.keepalive != Some(KEEPALIVE_DEFAULT) {
        // As if inherited from the daemon: the spec's own environment wins.
        let ms = env.keepalive.map_or(0, |k| k.as_millis().max(1));
        cmd.env(KEEPALIVE_ENV, ms.to_string());
    }
    cmd.envs(&spec.env)
        .envs(circuit_env(spec, env))
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

/// Call first thing in `main` of any binary that runs [`crate::run`]: when the process was
/// started as the exec trampoline, this sets `PR_SET_PDEATHSIG = SIGKILL`, makes sure the
/// daemon that started it is still its parent, and execs the worker's program. It returns
/// only when the process was not started as the trampoline.
pub fn exec_trampoline_if_requested() {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(TRAMPOLINE_ARG)) {
        return;
    }
    let daemon = args.next().and_then(|a| a.to_str()?.parse::<i32>().ok());
    let Some(program) = args.next() else {
        eprintln!("circuitd: {TRAMPOLINE_ARG} needs a daemon pid and a program");
        std::process::exit(EXEC_FAILED);
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL)) {
        eprintln!("circuitd: cannot set the parent-death signal: {e}");
        std::process::exit(EXEC_FAILED);
    }
    // The daemon may have died before the signal was set: then nobody would kill us.
    if daemon != Some(nix::unistd::getppid().as_raw()) {
        std::process::exit(EXEC_FAILED);
    }
    default_signal_dispositions();
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "circuitd: cannot run {}: {error}",
        program.to_string_lossy()
    );
    std::process::exit(EXEC_FAILED);
}

/// Gives the worker every signal's default action, as systemd does for a service. An exec keeps
/// ignored signals ignored, so without this a worker would inherit whatever the daemon was
/// started with: SIGHUP under `nohup`, SIGINT and SIGQUIT when a script started it with `&` —
/// and a shell cannot even `trap` a signal that was ignored when it started. (The signal mask
/// is already empty: std's spawn clears it.)
fn default_signal_dispositions() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL runs no code of ours in a signal handler; this process is
        // single-threaded (the trampoline, just before exec), so no other thread relies on the
        // old dispositions.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
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
