//! The two-daemon meshes the benchmark compares: a [`Node`] is one `circuitd` child with a mesh
//! port on `127.0.0.1:0`, and a [`Pair`] is node a (which owns the channels) joined by node b,
//! with or without a cluster key. Everything is stopped by pid and deleted when dropped.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_sdk::proto::{Reply, Request};
use circuit_sdk::secure::{write_key_file, Key};
use circuit_sdk::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::procfs;

/// How often start-up, joining and shutdown check their condition.
const POLL: Duration = Duration::from_millis(10);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Whether the pair's TCP (peer links, API) and gossip are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Config {
    /// No key: loopback-only development mode, plain TCP and gossip.
    Plain,
    /// Both daemons hold the same cluster key: Noise on TCP, sealed gossip.
    Encrypted,
}

impl Config {
    /// Both configurations, in table order.
    pub const ALL: [Self; 2] = [Self::Plain, Self::Encrypted];

    fn slug(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Encrypted => "enc",
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            Self::Encrypted => "encrypted",
        })
    }
}

/// One `circuitd` child serving a Unix socket and a mesh port on loopback.
#[derive(Debug)]
pub struct Node {
    name: String,
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    socket: PathBuf,
    /// The daemon's stderr, for error messages.
    log: PathBuf,
    /// Where its mesh port is, as it reports it.
    addr: String,
    /// The harness's connection, which creates and removes the trials' channels.
    client: Option<Client>,
    /// Socket, data dir and log; deleted on drop, after the child has been stopped (in
    /// `Drop::drop`, which runs before the fields are dropped).
    _dir: TempDir,
}

impl Node {
    /// Starts `binary` as node `name` on a fresh temp dir, listening on `127.0.0.1:0`, joining
    /// `join` and holding `key_file` when given; waits until it answers on its socket.
    async fn start(
        binary: &Path,
        name: &str,
        join: Option<&str>,
        key_file: Option<&Path>,
        within: Duration,
    ) -> anyhow::Result<Self> {
        // Private, as circuitd expects of its socket's directory.
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-crypto-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create a temp dir")?;
        let socket = dir.path().join("circuitd.sock");
        let log = dir.path().join("circuitd.log");
        let stderr = File::create(&log).context("cannot create the daemon's log file")?;
        let mut cmd = Command::new(binary);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", name, "--log-level", "warn"])
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(addr) = join {
            cmd.args(["--join", addr]);
        }
        if let Some(file) = key_file {
            cmd.arg("--key-file").arg(file);
        }
        // The plain pair must not pick a key up from the caller's environment.
        let child = cmd
            .env_remove("CIRCUIT_KEY_FILE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut node = Self {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            socket,
            log,
            addr: String::new(),
            client: None,
            _dir: dir,
        };
        let client = node.connect(within).await?;
        node.addr = match client.call(Request::Status).await {
            Ok(Reply::Status(status)) => status
                .listen
                .with_context(|| format!("node {name} reports no mesh port"))?,
            Ok(other) => bail!("node {name} answered status with {other:?}"),
            Err(e) => return Err(e).with_context(|| format!("node {name}: status")),
        };
        node.client = Some(client);
        Ok(node)
    }

    async fn connect(&mut self, within: Duration) -> anyhow::Result<Client> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            match Client::connect_unix(&self.socket).await {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => bail!(
                    "node {} did not accept a connection within {within:?}: {e}{}",
                    self.name,
                    self.log_tail()
                ),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The harness's client to this node.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("set once started")
    }

    /// The Unix socket its roles connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails, with the end of its log, if the daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("node {} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait().context("cannot poll circuitd")? {
            self.child = None;
            bail!(
                "node {} (pid {}) exited unexpectedly: {status}{}",
                self.name,
                self.pid,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// How many nodes this one sees up, itself included.
    async fn nodes_up(&self) -> anyhow::Result<usize> {
        match self.client().call(Request::Nodes).await {
            Ok(Reply::Nodes(nodes)) => Ok(nodes.iter().filter(|n| n.state.is_up()).count()),
            Ok(other) => bail!("node {} answered nodes with {other:?}", self.name),
            Err(e) => Err(e).with_context(|| format!("node {}: nodes", self.name)),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
        format!("\n  circuitd stderr (last lines):\n  {tail}")
    }

    /// SIGTERM, then SIGKILL if the daemon has not exited within [`STOP_GRACE`].
    fn stop(&mut self) -> anyhow::Result<()> {
        // The harness's connection goes first, so the daemon is not left serving it.
        self.client = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait().context("cannot poll circuitd")?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM to circuitd")?;
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while std::time::Instant::now() < deadline {
            if child.try_wait().context("cannot poll circuitd")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        eprintln!(
            "warning: node {} (pid {}) ignored SIGTERM for {STOP_GRACE:?} and was killed",
            self.name, self.pid
        );
        child.kill().context("cannot send SIGKILL to circuitd")?;
        child.wait().context("cannot reap circuitd")?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "warning: stopping node {} (pid {}): {e:#}",
                self.name, self.pid
            );
        }
    }
}

/// Two joined daemons of one [`Config`]: a owns the channels and hosts the receiver, b hosts the
/// sender, so every value crosses the a↔b peer link.
#[derive(Debug)]
pub struct Pair {
    /// Which configuration it is.
    pub config: Config,
    /// Owns the channels; the receiver's daemon.
    pub a: Node,
    /// The sender's daemon.
    pub b: Node,
    /// Holds the key file of the encrypted pair; declared last, deleted after the daemons.
    _keys: Option<TempDir>,
}

impl Pair {
    /// Starts a, then b joining it, and waits until each sees the other up.
    pub async fn start(binary: &Path, config: Config, within: Duration) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "no circuitd at {} — build it with `cargo build --release -p circuitd` or pass \
                 --circuitd PATH",
                binary.display()
            );
        }
        let (keys, key_file) = match config {
            Config::Plain => (None, None),
            Config::Encrypted => {
                let dir = tempfile::Builder::new()
                    .prefix("circuit-bench-key-")
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir()
                    .context("cannot create a temp dir for the key")?;
                let file = dir.path().join("cluster.key");
                let key = Key::generate().context("cannot generate a cluster key")?;
                write_key_file(&file, &[key], false).context("cannot write the key file")?;
                (Some(dir), Some(file))
            }
        };
        let slug = config.slug();
        let a = Node::start(
            binary,
            &format!("{slug}-a"),
            None,
            key_file.as_deref(),
            within,
        )
        .await?;
        let b = Node::start(
            binary,
            &format!("{slug}-b"),
            Some(&a.addr),
            key_file.as_deref(),
            within,
        )
        .await?;
        let mut pair = Self {
            config,
            a,
            b,
            _keys: keys,
        };
        pair.until_joined(within).await?;
        Ok(pair)
    }

    async fn until_joined(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            if self.a.nodes_up().await? == 2 && self.b.nodes_up().await? == 2 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the {} pair did not join within {within:?}{}{}",
                    self.config,
                    self.a.log_tail(),
                    self.b.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fails if either daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.a.check_alive()?;
        self.b.check_alive()
    }

    /// CPU time (user + system) both daemons have used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        Ok(procfs::cpu_time(self.a.pid())? + procfs::cpu_time(self.b.pid())?)
    }

    /// The two mesh addresses, for the table's notes.
    pub fn describe(&self) -> String {
        format!(
            "{}: a {} (pid {}), b {} (pid {})",
            self.config, self.a.addr, self.a.pid, self.b.addr, self.b.pid
        )
    }
}
