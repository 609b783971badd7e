//! Plain data shared by the daemon and its clients: spawn specs, worker and daemon descriptions.
//! Times are milliseconds since the Unix epoch; durations are milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a worker's environment is built from the daemon's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvMode {
    /// The daemon's environment plus the spec's `env` (the spec wins).
    #[default]
    Merge,
    /// Only the spec's `env` (plus the `CIRCUIT_*` variables).
    Replace,
}

/// When a worker is started again after it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: an exit is final.
    #[default]
    Never,
    /// After an exit with a non-zero code or by a signal.
    OnFailure,
    /// After every exit.
    Always,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" | "no" => Ok(Self::Never),
            "on-failure" | "on_failure" => Ok(Self::OnFailure),
            "always" => Ok(Self::Always),
            other => Err(format!(
                "unknown restart policy \"{other}\" (expected never, on-failure or always)"
            )),
        }
    }
}

/// Restart policy with its timing. Delays grow as `initial * 2^n` up to `max`, with ±20 % jitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartSpec {
    /// When to restart.
    pub policy: RestartPolicy,
    /// First backoff delay.
    pub backoff_initial_ms: u64,
    /// Largest backoff delay.
    pub backoff_max_ms: u64,
    /// A run at least this long resets the backoff to `backoff_initial_ms`.
    pub stable_after_ms: u64,
    /// Give up (state `failed`) when this many restarts happened within `window_ms`. 0: never.
    pub max_restarts: u32,
    /// The window for `max_restarts`.
    pub window_ms: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::Never,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            stable_after_ms: 10_000,
            max_restarts: 5,
            window_ms: 60_000,
        }
    }
}

/// How a worker is stopped: a signal to its whole process group, then SIGKILL after the grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopSpec {
    /// Signal name (`TERM`, `SIGINT`, `15`, ...).
    pub signal: String,
    /// How long to wait before SIGKILL.
    pub grace_ms: u64,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: "TERM".into(),
            grace_ms: 10_000,
        }
    }
}

/// Size-based rotation of a worker's log file. `None` fields take the daemon's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSpec {
    /// Rotate once the file reaches this many bytes.
    pub max_bytes: Option<u64>,
    /// Rotated files kept besides the current one.
    pub max_files: Option<u32>,
}

/// Longest worker name.
pub const MAX_WORKER_NAME: usize = 64;

/// Checks a worker name: 1–64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (it names
/// a directory of the daemon's data dir).
pub fn validate_worker_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_WORKER_NAME
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid worker name \"{name}\": use 1-{MAX_WORKER_NAME} of A-Z a-z 0-9 . _ - \
             (not starting with . or -)"
        ))
    }
}

/// Everything needed to start (and restart) a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpawnSpec {
    /// Program to run: a path, or a name looked up in `PATH`.
    pub command: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Whether `env` adds to or replaces the daemon's environment.
    pub env_mode: EnvMode,
    /// Working directory; the daemon's when absent.
    pub cwd: Option<String>,
    /// Unique name on the node; generated from the command when absent.
    pub name: Option<String>,
    /// Free-form labels, for people and for placement.
    pub labels: BTreeMap<String, String>,
    /// Channel bindings: `in` → `jobs` gives the worker `CIRCUIT_CHAN_IN=jobs`.
    pub chans: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartSpec,
    /// Stop signal and grace period.
    pub stop: StopSpec,
    /// Log rotation.
    pub log: LogSpec,
    /// Give the worker a pipe as its stdin, which `worker_stdin` streams (`circuit stdin`)
    /// write to, instead of `/dev/null`. Left out of the JSON when false, so that daemons from
    /// before the field still read every other spec (and job table).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Being started.
    Starting,
    /// Its process is alive.
    Running,
    /// Exited; waiting to be restarted.
    Backoff,
    /// Being stopped: signalled, within its grace period.
    Stopping,
    /// Exited for good (or stopped) — see `last_exit`.
    Exited,
    /// The supervisor gave up — see `reason`. `restart` brings it back.
    Failed,
    /// Its node was declared dead: nothing is known of it any more. Only in cluster lists.
    Lost,
}

impl WorkerState {
    /// Lower-case name, as shown by `circuit ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    /// True for exited and failed: nothing will happen without a request.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Exited | Self::Failed | Self::Lost)
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code {
        /// The exit code.
        code: i32,
    },
    /// A signal killed it.
    Signal {
        /// The signal number.
        signal: i32,
    },
}

impl ExitStatus {
    /// Shell convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code { code } => code,
            Self::Signal { signal } => 128 + signal,
        }
    }

    /// True for exit code 0.
    pub fn success(self) -> bool {
        matches!(self, Self::Code { code: 0 })
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Code { code } => write!(f, "code {code}"),
            Self::Signal { signal } => match nix::sys::signal::Signal::try_from(signal) {
                Ok(sig) => write!(f, "signal {}", &sig.as_str()[3..]),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Something that happened to a worker: `circuit events` shows these from every node, and
/// the worker's log records them between its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// When the daemon saw it (ms since the Unix epoch).
    pub ts_ms: u64,
    /// The node the worker runs on.
    pub node: String,
    /// The worker's name.
    pub worker: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: WorkerEventKind,
}

/// What happened to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerEventKind {
    /// A process was started.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The process ended by itself (or was killed by someone other than `stop`).
    Exited {
        /// How it ended.
        last_exit: ExitStatus,
    },
    /// The supervisor starts it again after a delay.
    Restarting {
        /// The delay, in milliseconds.
        in_ms: u64,
    },
    /// The supervisor gave up on it (too many restarts, or it could not start).
    GaveUp {
        /// Why.
        reason: String,
    },
    /// Stopped on request (`stop`, `rm`, a manifest), or by the daemon's shutdown.
    Stopped {
        /// How the process ended, if one was running.
        last_exit: Option<ExitStatus>,
    },
}

impl std::fmt::Display for WorkerEventKind {
    /// `started (pid 42)`, `exited (code 1)`, `restarting in 200ms`, `gave up: …`, `stopped`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Started { pid } => write!(f, "started (pid {pid})"),
            Self::Exited { last_exit } => write!(f, "exited ({last_exit})"),
            Self::Restarting { in_ms } => write!(f, "restarting in {in_ms}ms"),
            Self::GaveUp { reason } => write!(f, "gave up: {reason}"),
            Self::Stopped {
                last_exit: Some(exit),
            } => write!(f, "stopped ({exit})"),
            Self::Stopped { last_exit: None } => write!(f, "stopped"),
        }
    }
}

/// What a running worker uses, sampled by its daemon from `/proc` about once a second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerUsage {
    /// CPU used by the worker's own process over the last interval, in percent of one core
    /// (200 is two cores busy); `None` until it has been sampled twice.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the worker's own process, in bytes.
    pub rss_bytes: u64,
    /// Like `cpu_percent`, summed over the worker's whole process group (what it forked).
    pub group_cpu_percent: Option<f64>,
    /// Resident memory summed over the worker's process group, in bytes (pages shared
    /// between its processes count once per process, as `ps` counts them).
    pub group_rss_bytes: u64,
    /// Processes in the worker's process group.
    pub group_processes: u32,
    /// When the sample was taken (ms since the Unix epoch).
    pub sampled_at_ms: u64,
    /// CPU time the worker's own process has used since it started (user and system), in
    /// seconds: a counter that starts again with each new process.
    #[serde(default)]
    pub cpu_seconds: f64,
}

/// A worker as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique name on its node.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Current state.
    pub state: WorkerState,
    /// Pid of the current process (also its process group id).
    pub pid: Option<u32>,
    /// Restarts done by the supervisor since the spawn (or the last manual restart).
    pub restarts: u32,
    /// When the current or last process started.
    pub started_at_ms: Option<u64>,
    /// When the last process exited.
    pub exited_at_ms: Option<u64>,
    /// How the last process ended.
    pub last_exit: Option<ExitStatus>,
    /// Why the worker failed or could not start.
    pub reason: Option<String>,
    /// In backoff: when the next start is due.
    pub next_start_at_ms: Option<u64>,
    /// The spec it was spawned with.
    pub spec: SpawnSpec,
    /// What its current process uses, while it runs and once sampled.
    #[serde(default)]
    pub usage: Option<WorkerUsage>,
    /// Its escaped descendants: processes it started (or they started) that left its process
    /// group (`setsid`, a daemon's double fork), so signals to the group miss them. Sampled
    /// about once a second, also after the worker exits while they outlive it; in the answer
    /// to `stop` and `restart`, the ones that stop ended too.
    #[serde(default)]
    pub escaped: Vec<EscapedProcess>,
}

/// A descendant of a worker outside its process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscapedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its command line (arguments joined by spaces, cut at 200 characters), or its name when
    /// the command line cannot be read.
    pub command: String,
}

/// The first item of a `worker_stdin` stream: the daemon holds the worker's stdin for this
/// stream, and says how much the client may send ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinOpened {
    /// The worker.
    pub worker: String,
    /// The node it runs on.
    pub node: String,
    /// The process whose stdin this is: a restart gives the next run a new one.
    pub pid: u32,
    /// Most chunks the client may have sent that are not yet `accepted` (written to the pipe).
    pub window: u32,
    /// Largest chunk (the payload of one data frame), in bytes.
    pub max_chunk: u64,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// The supervisor's own note of a lifecycle event (started, exited, restarting, ...),
    /// written between a restarting worker's runs.
    Circuit,
}

/// One line of a worker's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the daemon read it.
    pub ts_ms: u64,
    /// The stream it came from.
    pub stream: LogStream,
    /// The text, without the newline (invalid UTF-8 replaced).
    pub line: String,
}

/// How a worker ended, as `wait` and `logs -f` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEnd {
    /// The worker's name.
    pub name: String,
    /// `exited` or `failed`.
    pub state: WorkerState,
    /// How its last process ended, if it ever ran. `last_exit` in JSON, as in a worker's
    /// description and its events.
    #[serde(rename = "last_exit", alias = "exit")]
    pub exit: Option<ExitStatus>,
    /// Why it failed, if it did.
    pub reason: Option<String>,
}

impl WorkerEnd {
    /// The exit code `circuit wait` gives: the worker's code, 128 + signal, or 1 if it never
    /// ran. A failed worker never gives 0.
    pub fn shell_code(&self) -> i32 {
        match self.exit.map_or(1, ExitStatus::shell_code) {
            0 if self.state == WorkerState::Failed => 1,
            code => code,
        }
    }
}

/// The daemon's description of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Node name.
    pub name: String,
    /// Daemon version.
    pub version: String,
    /// Wire protocol version.
    pub protocol: u32,
    /// Daemon pid.
    pub pid: u32,
    /// When it started.
    pub started_at_ms: u64,
    /// How long it has run.
    pub uptime_ms: u64,
    /// Where it keeps its state.
    pub data_dir: String,
    /// Its Unix socket.
    pub socket: String,
    /// Its TCP address, if any.
    pub listen: Option<String>,
    /// Worker counts by state.
    pub workers: BTreeMap<WorkerState, usize>,
    /// Channels this node owns.
    #[serde(default)]
    pub channels: usize,
    /// Its HTTP listener (`/metrics` and the dashboard), if any (`--http`).
    #[serde(default)]
    pub http: Option<String>,
}
