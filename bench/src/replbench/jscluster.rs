//! Three `nats-server`s with JetStream routed to each other on loopback: kernel-picked client
//! and route ports (kept when a server is started again), a store dir each under one temp dir,
//! the harness's client to all three; a server killed (`kill -9`, by pid) and started again on
//! the same ports and store. Dropping the cluster stops every server by pid, then deletes the
//! dir.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::time::Instant;

/// Servers in the cluster.
pub const SERVERS: usize = 3;
/// The cluster's name (`--cluster_name`).
const CLUSTER: &str = "bench";
/// How often start-up checks its condition.
const POLL: Duration = Duration::from_millis(20);
/// How long a stopped server gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The stream made and deleted to learn that the cluster can place an R3 stream.
const PROBE: &str = "bench-probe";

/// One server of the cluster.
#[derive(Debug)]
struct Server {
    /// `n1`..`n3`, its `--server_name`: what a stream's info calls its leader.
    name: String,
    client_port: u16,
    route_port: u16,
    store: PathBuf,
    log: PathBuf,
    /// `None` while it is stopped.
    child: Option<Child>,
}

impl Server {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }
}

/// The servers, stopped by pid when dropped.
#[derive(Debug)]
struct Servers(Vec<Server>);

impl Servers {
    /// Fails, with the end of its log, if a server that should run has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for server in &mut self.0 {
            let Some(child) = server.child.as_mut() else {
                continue;
            };
            if let Some(status) = child.try_wait().context("cannot poll nats-server")? {
                server.child = None;
                bail!(
                    "nats-server {} exited unexpectedly: {status}{}",
                    server.name,
                    log_tail(&server.log)
                );
            }
        }
        Ok(())
    }

    /// Waits until server `i` accepts connections.
    async fn until_listening(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", self.0[i].client_port);
        loop {
            self.check_alive()?;
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server {} did not listen on {addr} in time{}",
                    self.0[i].name,
                    log_tail(&self.0[i].log)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an R3 stream can be made (a meta leader, three peers), by making and
    /// deleting one.
    async fn until_placeable(&mut self, js: &Context, deadline: Instant) -> anyhow::Result<()> {
        loop {
            self.check_alive()?;
            let made = js
                .create_stream(stream::Config {
                    name: PROBE.to_string(),
                    subjects: vec![PROBE.to_string()],
                    storage: StorageType::Memory,
                    num_replicas: SERVERS,
                    ..Default::default()
                })
                .await;
            let last = match made {
                Ok(_) => match js.delete_stream(PROBE).await {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("deleting the probe stream: {e}"),
                },
                Err(e) => format!("making an R3 probe stream: {e}"),
            };
            if Instant::now() >= deadline {
                bail!("the JetStream cluster did not get ready in time: {last}");
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }
}

impl Drop for Servers {
    /// SIGTERM to each running server by pid, SIGKILL after [`STOP_GRACE`].
    fn drop(&mut self) {
        for server in &mut self.0 {
            let Some(mut child) = server.child.take() else {
                continue;
            };
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = std::time::Instant::now() + STOP_GRACE;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// Three routed JetStream servers and a client to them.
#[derive(Debug)]
pub struct JsCluster {
    binary: PathBuf,
    version: String,
    servers: Servers,
    /// The harness's JetStream context (its client knows every server), which makes and
    /// deletes streams and asks who leads them.
    js: Context,
    /// Declared last: deleted only after the servers have been stopped.
    dir: TempDir,
}

impl JsCluster {
    /// Starts the three servers and waits until the cluster can place an R3 stream.
    pub async fn start(binary: &Path, version: String, within: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-jetstream-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let ports = free_ports(2 * SERVERS)?;
        let mut servers = Servers(
            (0..SERVERS)
                .map(|i| Server {
                    name: format!("n{}", i + 1),
                    client_port: ports[2 * i],
                    route_port: ports[2 * i + 1],
                    store: dir.path().join(format!("n{}", i + 1)),
                    log: dir.path().join(format!("n{}.log", i + 1)),
                    child: None,
                })
                .collect(),
        );
        let routes = routes(&servers.0);
        for server in &mut servers.0 {
            server.child = Some(spawn(binary, server, &routes)?);
        }
        let deadline = Instant::now() + within;
        for i in 0..SERVERS {
            servers.until_listening(i, deadline).await?;
        }
        let urls: Vec<String> = servers.0.iter().map(Server::url).collect();
        let client = async_nats::ConnectOptions::new()
            .connect(urls.as_slice())
            .await
            .context("cannot connect to the JetStream cluster")?;
        let js = jetstream::new(client);
        servers.until_placeable(&js, deadline).await?;
        Ok(Self {
            binary: binary.to_path_buf(),
            version,
            servers,
            js,
            dir,
        })
    }

    /// `nats-server` and its version, for the table's header.
    pub fn describe(&self) -> String {
        format!(
            "nats-server {} ×{SERVERS} (JetStream, routes on loopback, store dirs under {})",
            self.version,
            self.dir.path().display()
        )
    }

    /// The harness's JetStream context.
    pub fn js(&self) -> &Context {
        &self.js
    }

    /// Which server `name` (`n2`) is.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.0.iter().position(|s| s.name == name)
    }

    /// Server `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.servers.0[i].name
    }

    /// Every server's URL, server `i`'s first: a client given these talks to `i`, and to the
    /// next one if `i` dies.
    pub fn urls_from(&self, i: usize) -> String {
        let order = (0..SERVERS).map(|k| (i + k) % SERVERS);
        order
            .map(|k| self.servers.0[k].url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The running servers' pids.
    pub fn pids(&self) -> Vec<u32> {
        self.servers
            .0
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    /// Fails, with the end of its log, if a server that should run has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.servers.check_alive()
    }

    /// SIGKILLs server `i` by pid and reaps it.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        let server = &mut self.servers.0[i];
        let mut child = server
            .child
            .take()
            .with_context(|| format!("nats-server {} is not running", server.name))?;
        child
            .kill()
            .with_context(|| format!("cannot SIGKILL nats-server {}", server.name))?;
        child
            .wait()
            .with_context(|| format!("cannot reap nats-server {}", server.name))?;
        Ok(())
    }

    /// Starts server `i` again on its ports and store, and waits until the cluster can place
    /// an R3 stream again.
    pub async fn restart(&mut self, i: usize, within: Duration) -> anyhow::Result<()> {
        if self.servers.0[i].child.is_some() {
            bail!("nats-server {} is running", self.servers.0[i].name);
        }
        let routes = routes(&self.servers.0);
        let child = spawn(&self.binary, &self.servers.0[i], &routes)?;
        self.servers.0[i].child = Some(child);
        let deadline = Instant::now() + within;
        self.servers.until_listening(i, deadline).await?;
        self.servers.until_placeable(&self.js, deadline).await
    }

    /// Copies every server's log into `dir`; returns where they went.
    pub fn keep_logs(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for server in &self.servers.0 {
            let to = dir.join(format!("{}.log", server.name));
            std::fs::copy(&server.log, &to)
                .with_context(|| format!("cannot copy {}'s log", server.name))?;
        }
        Ok(dir.to_path_buf())
    }
}

/// Starts one server with JetStream, routed to every server's route port (its own included,
/// which it skips).
fn spawn(binary: &Path, server: &Server, routes: &str) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&server.store)
        .with_context(|| format!("cannot create {}", server.store.display()))?;
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &server.client_port.to_string()])
        .arg("-js")
        .arg("-sd")
        .arg(&server.store)
        .args(["--server_name", &server.name, "--cluster_name", CLUSTER])
        .args([
            "-cluster",
            &format!("nats://127.0.0.1:{}", server.route_port),
            "-routes",
            routes,
        ])
        .arg("-l")
        .arg(&server.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

fn routes(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|s| format!("nats://127.0.0.1:{}", s.route_port))
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` distinct ports the kernel picked on loopback, free as this returns (a server may still
/// lose one to another process before it binds it; it then fails to start, loudly).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("cannot find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The last lines of a server's log, as a suffix for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
    format!("\n  nats-server log (last lines):\n  {tail}")
}
