//! The two-daemon meshes the benchmark compares: a [`Node`] is one `circuitd` child with a mesh
//! port on `127.0.0.1:0`, and a [`Pair`] is node a (which owns the channels) joined by node b,
//! with or without a cluster key. Everything is stopped by pid and deleted when dropped.

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_sdk::proto::{Reply, Request};
use circuit_sdk::secure::{write_key_file, Key};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::procfs;

/// How often joining checks its condition.
const POLL: Duration = Duration::from_millis(10);

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
    /// Where its mesh port is, as it reports it.
    addr: String,
    /// The harness's connection, which creates and removes the trials' channels. Declared
    /// before the daemon, so it closes before the daemon is stopped.
    client: Client,
    /// Stopped by pid (and its temp dir deleted) when dropped.
    daemon: Daemon,
}

impl Node {
    /// Starts `binary` as node `name`, listening on `127.0.0.1:0`, joining `join` and holding
    /// `key_file` when given; waits until it answers on its socket.
    async fn start(
        binary: &Path,
        name: &str,
        join: Option<&str>,
        key_file: Option<&Path>,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let mut daemon = crate::bench_daemon(binary)
            .name(name)
            .listen("127.0.0.1:0")
            .ready_within(within);
        if let Some(addr) = join {
            daemon = daemon.join(addr);
        }
        if let Some(file) = key_file {
            daemon = daemon.key_file(file);
        }
        let daemon = daemon.start().with_context(|| format!("node {name}"))?;
        let client = daemon
            .connect()
            .await
            .with_context(|| format!("node {name}"))?;
        let addr = match client.call(Request::Status).await {
            Ok(Reply::Status(status)) => status
                .listen
                .with_context(|| format!("node {name} reports no mesh port"))?,
            Ok(other) => bail!("node {name} answered status with {other:?}"),
            Err(e) => return Err(e).with_context(|| format!("node {name}: status")),
        };
        Ok(Self {
            name: name.to_string(),
            addr,
            client,
            daemon,
        })
    }

    /// The harness's client to this node.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Unix socket its roles connect to.
    pub fn socket(&self) -> &Path {
        &self.daemon.socket
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.daemon.pid()).expect("a pid")
    }

    /// Fails, with the end of its log, if the daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.daemon
            .check_alive()
            .with_context(|| format!("node {}", self.name))
    }

    /// How many nodes this one sees up, itself included.
    async fn nodes_up(&self) -> anyhow::Result<usize> {
        match self.client.call(Request::Nodes).await {
            Ok(Reply::Nodes(nodes)) => Ok(nodes.iter().filter(|n| n.state.is_up()).count()),
            Ok(other) => bail!("node {} answered nodes with {other:?}", self.name),
            Err(e) => Err(e).with_context(|| format!("node {}: nodes", self.name)),
        }
    }

    fn log_tail(&self) -> String {
        self.daemon.log_tail()
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
            self.config,
            self.a.addr,
            self.a.pid(),
            self.b.addr,
            self.b.pid()
        )
    }
}
