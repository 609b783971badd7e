//! `Daemon`: one `circuitd` child process with its own socket and data dir in a temp dir.
//! It is stopped by pid (SIGTERM, then SIGKILL after a grace) when asked or when dropped.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use circuit_sdk::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::procfs;

/// How often start-up and shutdown check their condition.
const POLL: Duration = Duration::from_millis(5);

/// The `circuitd` binary: `given` (a `--circuitd` flag), else the one next to this binary
/// (`target/release/`).
pub fn circuitd_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let dir = exe
        .parent()
        .context("this binary has no parent directory")?;
    Ok(dir.join("circuitd"))
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

/// A running `circuitd` child. Dropping it stops the daemon and deletes its temp dir.
#[derive(Debug)]
pub struct Daemon {
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    socket: PathBuf,
    data_dir: PathBuf,
    /// The daemon's stderr, so its warnings do not interleave with the table.
    log: PathBuf,
    /// Declared last: deleted only after the child has been stopped.
    dir: TempDir,
}

impl Daemon {
    /// Starts `binary` on a fresh temp dir and waits until its socket accepts a client.
    pub async fn start(binary: &Path, ready_within: Duration) -> anyhow::Result<(Self, Client)> {
        Self::start_as(binary, "bench", &[], ready_within).await
    }

    /// Starts `binary` as node `name` with `extra` flags (a mesh port, a key file, ...), on a
    /// fresh temp dir, and waits until its socket accepts a client. The caller's
    /// `CIRCUIT_KEY_FILE` is not passed on: a daemon holds a key only when `extra` says so.
    pub async fn start_as(
        binary: &Path,
        name: &str,
        extra: &[std::ffi::OsString],
        ready_within: Duration,
    ) -> anyhow::Result<(Self, Client)> {
        if !binary.is_file() {
            bail!(
                "no circuitd at {} — build it with `cargo build --release -p circuitd` or pass \
                 --circuitd PATH",
                binary.display()
            );
        }
        // Private, as circuitd expects of its socket's directory.
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create a temp dir")?;
        let socket = dir.path().join("circuitd.sock");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("circuitd.log");
        let stderr = File::create(&log).context("cannot create the daemon's log file")?;
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--name", name, "--log-level", "warn"])
            .args(extra)
            .env_remove("CIRCUIT_KEY_FILE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut daemon = Self {
            pid: child.id(),
            child: Some(child),
            socket,
            data_dir,
            log,
            dir,
        };
        let client = daemon.connect(ready_within).await?;
        Ok((daemon, client))
    }

    /// Connects to the daemon, retrying until `within` has passed or the daemon has exited.
    pub async fn connect(&mut self, within: Duration) -> anyhow::Result<Client> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            match Client::connect_unix(&self.socket).await {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => {
                    // `e` already names its cause; chaining it would print that twice.
                    bail!(
                        "circuitd did not accept a connection within {within:?}: {e}{}",
                        self.log_tail()
                    )
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The Unix socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its data directory (job table and worker logs).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Fails, with the end of the daemon's log, if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("circuitd was already stopped");
        };
        if let Some(status) = child.try_wait().context("cannot poll circuitd")? {
            self.child = None;
            bail!(
                "circuitd (pid {}) exited unexpectedly: {status}{}",
                self.pid,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Resident set size (`VmRSS`) in bytes.
    pub fn rss_bytes(&mut self) -> anyhow::Result<u64> {
        self.check_alive()?;
        procfs::rss_bytes(self.pid)
    }

    /// CPU time (user + system, all threads, live and exited) the daemon has used so far.
    pub fn cpu_time(&mut self) -> anyhow::Result<Duration> {
        self.check_alive()?;
        procfs::cpu_time(self.pid)
    }

    /// Stops the daemon: SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<Stopped> {
        let Some(mut child) = self.child.take() else {
            bail!("circuitd was already stopped");
        };
        let started = Instant::now();
        if let Some(status) = child.try_wait().context("cannot poll circuitd")? {
            bail!("circuitd (pid {}) had already exited: {status}", self.pid);
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM to circuitd")?;
        let deadline = started + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("cannot poll circuitd")? {
                return Ok(Stopped {
                    status,
                    took: started.elapsed(),
                    killed: false,
                });
            }
            std::thread::sleep(POLL);
        }
        child.kill().context("cannot send SIGKILL to circuitd")?;
        let status = child.wait().context("cannot reap circuitd")?;
        Ok(Stopped {
            status,
            took: started.elapsed(),
            killed: true,
        })
    }

    /// The last lines the daemon wrote to stderr, as a suffix for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
        format!("\n  circuitd stderr (last lines):\n  {tail}")
    }

    /// The temp dir holding the socket, data dir and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            match self.stop(Duration::from_secs(20)) {
                Ok(stopped) if stopped.killed => eprintln!(
                    "warning: circuitd (pid {}) ignored SIGTERM for 20 s and was killed",
                    self.pid
                ),
                Ok(_) => {}
                Err(e) => eprintln!("warning: stopping circuitd (pid {}): {e:#}", self.pid),
            }
        }
    }
}
