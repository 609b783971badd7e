//! The NATS contender: a `nats-server` child on a random loopback port, and roles driving it
//! with `async-nats` — core publish to a queue group, and request/reply for the round trip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::{Client, ConnectOptions, Event, Subject};
use futures::StreamExt as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::ctx::{Ctx, Notes, Span};
use super::protocol::{now_ns, read_stamp};
use super::server::Server;
use super::tally::Inbox;

/// The queue group every subscriber joins, so each message goes to one of them.
const QUEUE: &str = "bench";
/// Messages a subscription buffers in the client before it drops them as a slow consumer:
/// more than a default trial sends, so NATS is measured at its best rather than by its drops.
const SUBSCRIPTION_CAPACITY: usize = 1 << 21;
/// How often start-up and shutdown check their condition.
const POLL: Duration = Duration::from_millis(5);

/// A running `nats-server` child. Dropping it stops the server (by pid) and deletes its dir.
#[derive(Debug)]
pub struct NatsServer {
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    url: String,
    version: String,
    log: PathBuf,
    /// Declared last: deleted only after the child has been stopped.
    dir: TempDir,
}

impl NatsServer {
    /// Starts `binary` on `127.0.0.1` with a port the kernel picks, and waits until it accepts.
    pub fn start(binary: &Path, ready_within: Duration) -> anyhow::Result<Self> {
        Self::launch(binary, ready_within, false)
    }

    /// Like [`NatsServer::start`], with JetStream enabled (its store in the server's temp dir).
    pub fn start_jetstream(binary: &Path, ready_within: Duration) -> anyhow::Result<Self> {
        Self::launch(binary, ready_within, true)
    }

    fn launch(binary: &Path, ready_within: Duration, jetstream: bool) -> anyhow::Result<Self> {
        let version = version(binary)?;
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-nats-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let log = dir.path().join("nats-server.log");
        // `-p -1`: a random free port, written to the ports file once the server listens.
        let mut command = Command::new(binary);
        command
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(dir.path())
            .arg("-l")
            .arg(&log);
        if jetstream {
            command
                .args(["-js", "-sd"])
                .arg(dir.path().join("jetstream"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self {
            pid: child.id(),
            child: Some(child),
            url: String::new(),
            version,
            log,
            dir,
        };
        server.url = server.wait_for_port(ready_within)?;
        Ok(server)
    }

    /// Reads the client URL from the ports file and waits until the port accepts a connection.
    fn wait_for_port(&mut self, within: Duration) -> anyhow::Result<String> {
        let ports = self
            .dir
            .path()
            .join(format!("nats-server_{}.ports", self.pid));
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            let url = std::fs::read(&ports)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|v| v["nats"][0].as_str().map(str::to_string));
            let addr = url.as_deref().and_then(|u| u.strip_prefix("nats://"));
            if let Some(addr) = addr {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Ok(url.unwrap_or_default());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server did not listen within {within:?}{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// `nats-server v2.9.10`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The last lines of the server's log, as a suffix for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        format!("\n  nats-server log (last lines):\n  {tail}")
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM to nats-server")?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        child.kill().context("cannot send SIGKILL to nats-server")?;
        child.wait().context("cannot reap nats-server")?;
        Ok(())
    }
}

impl Server for NatsServer {
    fn endpoint(&self) -> String {
        self.url.clone()
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "nats-server {}; async-nats clients, core publish to a queue group, request/reply",
            self.version
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("nats-server was already stopped");
        };
        if let Some(status) = child.try_wait().context("cannot poll nats-server")? {
            self.child = None;
            bail!(
                "nats-server (pid {}) exited unexpectedly: {status}{}",
                self.pid,
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(5)) {
            eprintln!("warning: stopping nats-server (pid {}): {e:#}", self.pid);
        }
    }
}

/// `nats-server` on the PATH, else where the Debian package puts it.
pub fn default_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// `v2.9.10` from `nats-server --version` (`nats-server: v2.9.10`).
pub fn version(binary: &Path) -> anyhow::Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} — install it with `apt-get install nats-server` or pass \
                 --nats-server PATH",
                binary.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or("(unknown version)")
        .to_string())
}

/// Connects with a large subscription buffer; connection events other than the first connect
/// become notes under the tables.
async fn connect(ctx: &Ctx) -> anyhow::Result<Client> {
    let notes = ctx.notes();
    ConnectOptions::new()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            note(&notes, event);
            std::future::ready(())
        })
        .connect(ctx.args.endpoint.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", ctx.args.endpoint))
}

fn note(notes: &Notes, event: Event) {
    if !matches!(event, Event::Connected) {
        let mut notes = notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.push(format!("nats client: {event}"));
    }
}

/// One round trip to the server. It handles a connection's commands in order, so once this
/// returns, the subscriptions and messages sent before it have been processed. (`flush` only
/// empties the client's buffer: a publisher that exits after it can lose its last messages.)
async fn sync(client: &Client) -> anyhow::Result<()> {
    client.flush().await.context("flush")?;
    // Nobody answers this subject: the server replies "no responders" itself.
    match client
        .request("bench.sync", bytes::Bytes::new())
        .await
        .map_err(|e| e.kind())
    {
        Ok(_) | Err(async_nats::RequestErrorKind::NoResponders) => Ok(()),
        Err(kind) => bail!("round trip to nats-server failed: {kind:?}"),
    }
}

/// Publishes `count` stamped messages to the trial's subject after `go`, then waits until the
/// server has them all.
pub async fn send(ctx: &mut Ctx) -> anyhow::Result<Span> {
    let client = connect(ctx).await?;
    let mut payload = ctx.payload();
    let subject = Subject::from(ctx.args.name.as_str());
    let (index, count) = (ctx.args.index, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    for seq in 0..count {
        client
            .publish(subject.clone(), payload.stamped(index, seq as u32))
            .await
            .context("publish")?;
    }
    sync(&client).await?;
    Ok(Span {
        start_ns,
        end_ns: now_ns(),
    })
}

/// Takes messages from the trial's subject, in the queue group, until stdin closes.
pub async fn recv(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    let client = connect(ctx).await?;
    let mut sub = client
        .queue_subscribe(ctx.args.name.clone(), QUEUE.into())
        .await
        .context("queue_subscribe")?;
    sync(&client).await?;
    ctx.ready();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            msg = sub.next() => match msg {
                Some(msg) => inbox.take(&msg.payload),
                None => bail!("the subscription ended after {} messages", inbox.received()),
            },
        }
    }
}

/// Answers each request on the trial's subject with its own payload until stdin closes.
pub async fn echo(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    let client = connect(ctx).await?;
    let mut sub = client
        .queue_subscribe(ctx.args.name.clone(), QUEUE.into())
        .await
        .context("queue_subscribe")?;
    sync(&client).await?;
    ctx.ready();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            msg = sub.next() => msg.with_context(|| {
                format!("the subscription ended after {} requests", inbox.received())
            })?,
        };
        inbox.take(&msg.payload);
        let reply = msg
            .reply
            .context("a request came without a reply subject")?;
        client
            .publish(reply, msg.payload)
            .await
            .context("publish reply")?;
    }
}

/// Sends `warmup + count` requests one at a time after `go`; returns the measured latencies.
pub async fn ping(ctx: &mut Ctx) -> anyhow::Result<Vec<u64>> {
    let client = connect(ctx).await?;
    // Also sets up the client's reply subscription before the clock starts.
    sync(&client).await?;
    let mut payload = ctx.payload();
    let subject = Subject::from(ctx.args.name.as_str());
    let (warmup, count) = (ctx.args.warmup, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..warmup + count {
        let seq = i as u32;
        let msg = payload.stamped(0, seq);
        let sent = now_ns();
        let reply = client
            .request(subject.clone(), msg)
            .await
            .with_context(|| format!("request {i}"))?;
        let rtt = now_ns() - sent;
        if read_stamp(&reply.payload) != Some((0, seq)) {
            bail!("the reply to request {i} carries another request's stamp");
        }
        if i >= warmup {
            rtts.push(rtt);
        }
    }
    Ok(rtts)
}
