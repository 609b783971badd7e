//! Test harness: real `circuitd` processes on temp paths, the real `circuit` binary, and
//! polling with deadlines instead of sleeps.
//!
//! # Layout
//! - [`Daemon`]: a circuitd child process with its own socket and data dir.
//! - [`bin`]: where the built binaries are.
//! - [`wait_until`], [`wait_until_async`]: poll a condition until a deadline.
//! - [`alive`]: whether a pid is a live (non-zombie) process.
//! - [`netns`]: test hosts as network namespaces ([`NetnsCluster`]), one circuitd in each.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use circuit_sdk::proto::{NodeInfo, NodeState, Reply, Request, SpawnSpec, WorkerInfo};
use circuit_sdk::Client;

pub mod netns;
pub use netns::NetnsCluster;

/// Path of a binary built from this workspace (`circuitd`, `circuit`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/integration-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// A command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when every daemon sees every other one alive.
pub fn converged(ds: &[&Daemon]) -> bool {
    ds.iter().all(|d| {
        let ns = d.nodes();
        ds.iter().all(|o| {
            ns.iter()
                .any(|n| n.name == o.name && n.state == NodeState::Alive)
        })
    })
}

/// Runs the `circuit` CLI with `args` and nothing from the environment that aims it.
pub fn cli_raw(args: &[&str]) -> Output {
    Command::new(bin("circuit"))
        .args(args)
        .env_remove("CIRCUIT_SOCKET")
        .env_remove("CIRCUIT_KEY_FILE")
        .output()
        .expect("run circuit")
}

/// Writes a fresh cluster key to `dir/name` with `circuit keygen`; returns its path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = cli_raw(&["keygen", path.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "keygen: {out:?}");
    path
}

/// Polls `cond` every 10 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Async form of [`wait_until`]: `cond` returns `Some(value)` when done.
pub async fn wait_until_async<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(10)).await;
    }
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A circuitd child process on its own temp dir.
pub struct Daemon {
    /// Keeps the directory alive; removed on drop.
    pub dir: tempfile::TempDir,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The data dir.
    pub data_dir: PathBuf,
    /// Node name.
    pub name: String,
    child: Option<Child>,
    extra: Vec<String>,
    /// Variables set in the daemon's environment (and so its workers'), e.g. `PATH`.
    env: Vec<(String, String)>,
    /// A program (and its arguments) that execs circuitd, its path and flags appended.
    launcher: Vec<String>,
}

impl Daemon {
    /// Starts a daemon named `test` and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_named("test", extra)
    }

    /// Starts a daemon named `name` with extra flags.
    pub fn start_named(name: &str, extra: &[&str]) -> Self {
        Self::start_named_env(name, extra, &[])
    }

    /// Starts a daemon named `name` with extra flags and extra environment variables, which
    /// its workers inherit (`PATH` to find a program by name, say).
    pub fn start_named_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_via(&[], name, extra, env)
    }

    /// Starts a daemon through `launcher`, a command that execs the circuitd path and flags
    /// appended to it (so the pid is circuitd's): e.g. a shell that first changes what circuitd
    /// inherits.
    pub fn start_via(launcher: &[&str], name: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/circuitd.sock");
        let data_dir = dir.path().join("data");
        let mut daemon = Self {
            dir,
            socket,
            data_dir,
            name: name.into(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            launcher: launcher.iter().map(|s| s.to_string()).collect(),
        };
        daemon.launch();
        daemon
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("daemon running").id() as i32
    }

    /// Starts the daemon process (again) on the same paths and waits until it answers.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("circuitd.log"))
            .expect("daemon log");
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin("circuitd"));
                command
            }
            None => Command::new(bin("circuitd")),
        };
        let child = command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--name", &self.name, "--log-level", "info"])
            .args(&self.extra)
            .env_remove("CIRCUIT_SOCKET")
            .env_remove("CIRCUIT_KEY_FILE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start circuitd");
        self.child = Some(child);
        let socket = self.socket.clone();
        wait_until(
            Duration::from_secs(10),
            "circuitd answers on its socket",
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        );
    }

    /// The daemon's own log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("circuitd.log")).unwrap_or_default()
    }

    /// SIGKILLs the daemon and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs the daemon and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("circuitd did not exit within 30 s of SIGTERM");
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    /// The mesh address it listens on (started with `--listen`).
    pub fn mesh_addr(&self) -> String {
        let out = self.cli(&["--json", "status"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        status["listen"]
            .as_str()
            .expect("listen address")
            .to_string()
    }

    /// Its node table, as `circuit nodes` shows it.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let out = self.cli(&["--json", "nodes"]);
        assert!(out.status.success(), "nodes failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("nodes json")
    }

    /// Connects an SDK client.
    pub async fn client(&self) -> Client {
        Client::connect_unix(&self.socket).await.expect("connect")
    }

    /// Runs the `circuit` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run circuit")
    }

    /// A `circuit` command aimed at this daemon, to run as the caller likes.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("circuit"));
        cmd.args(args)
            .env("CIRCUIT_SOCKET", &self.socket)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "circuit {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
    }
}

/// Spawns a worker through the SDK and returns its description.
pub async fn spawn(client: &Client, spec: SpawnSpec) -> WorkerInfo {
    match client.call(Request::Spawn(spec)).await.expect("spawn") {
        Reply::Worker(info) => *info,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Lists workers (`all`: exited ones too), by name.
pub async fn list(client: &Client, all: bool) -> Vec<WorkerInfo> {
    match client.call(Request::List { all }).await.expect("list") {
        Reply::Workers(workers) => workers,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Stops workers with their own stop signal and grace; returns their final descriptions.
pub async fn stop(client: &Client, names: &[&str]) -> Vec<WorkerInfo> {
    let request = Request::Stop {
        names: names.iter().map(|n| n.to_string()).collect(),
        signal: None,
        timeout_ms: None,
    };
    match client.call(request).await.expect("stop") {
        Reply::Workers(workers) => workers,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A spec running `sh -c script`, named `name`.
pub fn sh(name: &str, script: &str) -> SpawnSpec {
    SpawnSpec {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        name: Some(name.into()),
        ..SpawnSpec::default()
    }
}

/// One worker's current description.
pub async fn inspect(client: &Client, name: &str) -> WorkerInfo {
    match client
        .call(Request::Inspect { name: name.into() })
        .await
        .expect("inspect")
    {
        Reply::Worker(info) => *info,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// All log lines of a worker, as text.
pub async fn log_lines(client: &Client, name: &str) -> Vec<String> {
    let mut stream = client
        .stream(Request::Logs(circuit_sdk::proto::LogsRequest {
            name: name.into(),
            ..Default::default()
        }))
        .await
        .expect("logs");
    let mut lines = Vec::new();
    loop {
        match stream.next().await.expect("logs reply") {
            circuit_sdk::Next::Item(circuit_sdk::proto::Item::Log(l)) => lines.push(l.line),
            circuit_sdk::Next::End(_) => return lines,
            circuit_sdk::Next::Item(other) => panic!("unexpected item in a log: {other:?}"),
        }
    }
}
