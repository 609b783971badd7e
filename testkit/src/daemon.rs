//! [`Daemon`]: one `circuitd` child process with its own socket and data dir in a temp dir,
//! started by a [`DaemonBuilder`] (name, flags, environment, key, listen, join and HTTP
//! addresses, a launcher), waited for until its socket answers, and stopped by pid when asked
//! or dropped.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use circuit_sdk::proto::NodeInfo;
use circuit_sdk::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::bin::{bin, binary_in, stderr};
use crate::error::{Error, Result};
use crate::wait::POLL;

/// How long a daemon may take to answer on its socket unless the builder says otherwise.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a dropped daemon gets to exit after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(20);
/// How long [`Daemon::terminate`] waits for the daemon to exit after SIGTERM.
const TERMINATE_GRACE: Duration = Duration::from_secs(30);
/// Lines of the daemon's log an error message ends with.
const LOG_TAIL_LINES: usize = 20;

/// How a daemon is started: every choice [`Daemon::launch`] needs to start it again the same way.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    /// The `circuitd` binary; `None`: the one in [`bin_dir`](crate::bin_dir).
    binary: Option<PathBuf>,
    name: String,
    /// Flags after the kit's own (`--socket`, `--data-dir`, `--name`, `--log-level`).
    args: Vec<OsString>,
    /// Set in the daemon's environment, and so its workers' (`PATH`, say).
    env: Vec<(OsString, OsString)>,
    /// A program (and its arguments) that execs circuitd, its path and flags appended.
    launcher: Vec<OsString>,
    log_level: String,
    ready_within: Duration,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            name: "test".into(),
            args: Vec::new(),
            env: Vec::new(),
            launcher: Vec::new(),
            log_level: "info".into(),
            ready_within: READY_WITHIN,
        }
    }
}

impl DaemonBuilder {
    /// The node name (`--name`); `test` by default.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Appends one flag or value to the daemon's command line.
    pub fn flag(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends flags and values to the daemon's command line.
    pub fn flags<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `--listen ADDR`: the mesh port (`127.0.0.1:0` for one the kernel picks).
    pub fn listen(self, addr: &str) -> Self {
        self.flags(["--listen", addr])
    }

    /// `--http ADDR`: the HTTP listener, `/metrics` and the dashboard (`127.0.0.1:0` for a
    /// port the kernel picks; [`Daemon::http_addr`] tells which).
    pub fn http(self, addr: &str) -> Self {
        self.flags(["--http", addr])
    }

    /// `--join ADDR`: a node to join.
    pub fn join(self, addr: &str) -> Self {
        self.flags(["--join", addr])
    }

    /// `--key-file PATH`: the cluster key. Without it the daemon holds no key, whatever the
    /// caller's `CIRCUIT_KEY_FILE` says.
    pub fn key_file(self, path: &Path) -> Self {
        self.flag("--key-file").flag(path)
    }

    /// Sets a variable in the daemon's environment, which its workers inherit.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Starts circuitd through `launcher`, a command that execs the circuitd path and flags
    /// appended to it (so the pid is circuitd's): e.g. a shell that first changes what circuitd
    /// inherits.
    pub fn launcher<S: AsRef<OsStr>>(mut self, launcher: impl IntoIterator<Item = S>) -> Self {
        self.launcher = launcher
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        self
    }

    /// The `circuitd` binary to run instead of the workspace's.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// `--log-level`; `info` by default.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// How long the daemon may take to answer on its socket; 10 s by default.
    pub fn ready_within(mut self, within: Duration) -> Self {
        self.ready_within = within;
        self
    }

    /// Starts the daemon on a fresh temp dir and waits until its socket accepts a connection.
    pub fn start(self) -> Result<Daemon> {
        let binary = match &self.binary {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => return Err(Error::MissingBinary(path.clone())),
            None => binary_in(None, "circuitd")?,
        };
        let dir = tempfile::Builder::new()
            .prefix("circuit-kit-")
            .tempdir()
            .map_err(|e| Error::io("create a temp dir", e))?;
        let mut daemon = Daemon {
            socket: dir.path().join("run/circuitd.sock"),
            data_dir: dir.path().join("data"),
            name: self.name.clone(),
            log: dir.path().join("circuitd.log"),
            dir,
            child: None,
            binary,
            spec: self,
        };
        daemon.try_launch()?;
        Ok(daemon)
    }
}

/// How the daemon ended when [`Daemon::stop`] stopped it.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// How long it took to exit after SIGTERM (or to be killed).
    pub took: Duration,
    /// True when it ignored SIGTERM for the whole grace and was sent SIGKILL.
    pub killed: bool,
}

/// A circuitd child process on its own temp dir. Dropping it stops the daemon (SIGTERM, then
/// SIGKILL after 20 s) and then deletes the dir.
#[derive(Debug)]
pub struct Daemon {
    /// Keeps the directory alive; removed on drop, after the daemon has stopped.
    pub dir: tempfile::TempDir,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The data dir.
    pub data_dir: PathBuf,
    /// Node name.
    pub name: String,
    /// The daemon's stderr, every start appended.
    log: PathBuf,
    /// `None` while stopped.
    child: Option<Child>,
    binary: PathBuf,
    spec: DaemonBuilder,
}

impl Daemon {
    /// A builder: name, flags, environment, key, listen and join addresses, launcher.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Starts a daemon named `test` and waits until it answers; panics if it does not.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a daemon named `test` with extra flags; panics if it does not answer.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_named("test", extra)
    }

    /// Starts a daemon named `name` with extra flags; panics if it does not answer.
    pub fn start_named(name: &str, extra: &[&str]) -> Self {
        let started = Self::builder().name(name).flags(extra).start();
        started.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The daemon's pid; panics if it is stopped.
    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("daemon running");
        i32::try_from(child.id()).expect("a pid fits an i32")
    }

    /// Starts the daemon process (again) on the same paths and with the same flags, and waits
    /// until it answers on its socket.
    pub fn try_launch(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::State(format!(
                "circuitd {:?} is already running",
                self.name
            )));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::io(format!("open {}", self.log.display()), e))?;
        let spec = &self.spec;
        let mut command = match spec.launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--name", &spec.name, "--log-level", &spec.log_level])
            .args(&spec.args)
            .env_remove("CIRCUIT_SOCKET")
            .env_remove("CIRCUIT_KEY_FILE")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("start {}", self.binary.display()), e))?;
        self.child = Some(child);
        let within = spec.ready_within;
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut {
                    what: format!("circuitd {:?} answers on its socket", self.name),
                    after: within,
                    log: self.log_tail(),
                });
            }
            std::thread::park_timeout(POLL);
        }
    }

    /// [`try_launch`](Self::try_launch) for tests: panics if the daemon does not answer.
    pub fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!("{e}");
        }
    }

    /// [`Error::Exited`], with the end of the daemon's log, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::State(format!(
                "circuitd {:?} was stopped",
                self.name
            )));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(Error::Exited {
                    what: format!("circuitd {:?}", self.name),
                    status,
                    log: self.log_tail(),
                })
            }
            Err(e) => Err(Error::io("poll circuitd", e)),
        }
    }

    /// The daemon's own log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the daemon's log, as a suffix for an error message.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n  ");
        format!("\n  circuitd stderr (last lines):\n  {tail}")
    }

    /// SIGKILLs the daemon and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon: SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<Stopped> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::State(format!(
                "circuitd {:?} was already stopped",
                self.name
            )));
        };
        let started = Instant::now();
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits an i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = started + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Ok(Stopped {
                        status,
                        took: started.elapsed(),
                        killed: false,
                    })
                }
                Ok(None) => std::thread::park_timeout(POLL),
                Err(e) => return Err(Error::io("poll circuitd", e)),
            }
        }
        let _ = child.kill();
        let status = child.wait().map_err(|e| Error::io("reap circuitd", e))?;
        Ok(Stopped {
            status,
            took: started.elapsed(),
            killed: true,
        })
    }

    /// SIGTERMs the daemon and waits for it to exit; returns its exit status. Panics if it
    /// ignored SIGTERM for 30 s (it is then killed).
    pub fn terminate(&mut self) -> ExitStatus {
        let stopped = self.stop(TERMINATE_GRACE).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !stopped.killed,
            "circuitd did not exit within {TERMINATE_GRACE:?} of SIGTERM"
        );
        stopped.status
    }

    /// Connects an SDK client to the daemon's socket.
    pub async fn connect(&self) -> Result<Client> {
        Client::connect_unix(&self.socket).await.map_err(|e| {
            Error::State(format!(
                "cannot connect to circuitd {:?} at {}: {e}",
                self.name,
                self.socket.display()
            ))
        })
    }

    /// Connects an SDK client; panics if it cannot.
    pub async fn client(&self) -> Client {
        self.connect().await.unwrap_or_else(|e| panic!("{e}"))
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
            .env_remove("COLUMNS")
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

    /// The mesh address it listens on (started with `--listen`), as `circuit status` shows it.
    pub fn mesh_addr(&self) -> String {
        let out = self.cli(&["--json", "status"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        status["listen"]
            .as_str()
            .expect("listen address")
            .to_string()
    }

    /// The address of its HTTP listener (started with `--http`), as `circuit status` shows it.
    pub fn http_addr(&self) -> String {
        let out = self.cli(&["--json", "status"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        status["http"]
            .as_str()
            .expect("an http address: start the daemon with --http")
            .to_string()
    }

    /// Its node table, as `circuit nodes` shows it.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let out = self.cli(&["--json", "nodes"]);
        assert!(out.status.success(), "nodes failed: {}", stderr(&out));
        crate::json_list(&out.stdout, "nodes").expect("nodes json")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // Never panic here: this also runs while a failed test unwinds.
        match self.stop(DROP_GRACE) {
            Ok(stopped) if stopped.killed => eprintln!(
                "warning: circuitd {:?} ignored SIGTERM for {DROP_GRACE:?} and was killed",
                self.name
            ),
            Ok(_) => {}
            Err(e) => eprintln!("warning: stopping circuitd {:?}: {e}", self.name),
        }
    }
}
