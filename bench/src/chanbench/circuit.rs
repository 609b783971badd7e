//! The circuit contender: circuitd as a child (the kit's [`Daemon`]) and roles driving its channels
//! through the SDK — a pipelining sender, a steady sender that times each acknowledgement,
//! prefetching receivers, ping-pong over two channels.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use circuit_sdk::chan::{Raw, Receiver, RecvOptions, SendOptions, Sender, Ticket};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use futures::future::LocalBoxFuture;

use super::ctx::{Ctx, Span};
use super::protocol::{now_ns, ping_name, pong_name, read_stamp, Acked};
use super::server::Server;
use super::tally::Inbox;
use super::{Scenario, System};

/// Values a throughput receiver lets the daemon stream ahead of `recv`: the SDK's automatic
/// prefetch, the fastest setting measured (1024 was slower at 16 B 1 → 1, 4096 slower still).
pub(crate) const PREFETCH: u32 = 2048;
/// How long a steady sender's and a receiver's handles keep trying to reach the channel (a
/// replicated channel between two leaders) before they fail.
const FOLLOW_FOR: Duration = Duration::from_secs(30);

/// A running circuitd and the harness's client to it, which creates each trial's channels.
#[derive(Debug)]
pub struct CircuitServer {
    /// Declared before the daemon: disconnects before the daemon is stopped.
    client: Client,
    daemon: Daemon,
    version: String,
    /// Whose roles run against it ([`System::Circuit`] or [`System::CircuitDefaults`]), for
    /// the table's header.
    system: System,
}

impl CircuitServer {
    /// Starts `binary` on a fresh temp dir and connects to it, for `system`'s roles.
    pub async fn start(
        binary: &Path,
        ready_within: Duration,
        system: System,
    ) -> anyhow::Result<Self> {
        let daemon = crate::bench_daemon(binary)
            .ready_within(ready_within)
            .start()?;
        let client = daemon.connect().await?;
        let version = client.daemon_version().to_string();
        Ok(Self {
            client,
            daemon,
            version,
            system,
        })
    }
}

/// The channels a trial uses.
fn channels(name: &str, scenario: Scenario) -> Vec<String> {
    match scenario {
        Scenario::Stream { .. } => vec![name.to_string()],
        Scenario::RoundTrip => vec![ping_name(name), pong_name(name)],
    }
}

impl Server for CircuitServer {
    fn endpoint(&self) -> String {
        self.daemon.socket.display().to_string()
    }

    fn pid(&self) -> Option<u32> {
        u32::try_from(self.daemon.pid()).ok()
    }

    fn describe(&self) -> String {
        let roles = match self.system {
            System::CircuitDefaults => {
                "no option set: `send().await` in a loop, `recv().await` in a loop".to_string()
            }
            _ => format!("pipelined `submit`, receivers prefetching {PREFETCH}"),
        };
        format!(
            "circuitd {} (a daemon of its own); SDK clients, Raw codec, {roles}",
            self.version
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        Ok(self.daemon.check_alive()?)
    }

    fn open<'a>(
        &'a self,
        name: &'a str,
        scenario: Scenario,
        capacity: u64,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for chan in channels(name, scenario) {
                self.client
                    .chan_create(&chan, capacity)
                    .await
                    .with_context(|| format!("cannot create channel {chan}"))?;
            }
            Ok(())
        })
    }

    fn close<'a>(
        &'a self,
        name: &'a str,
        scenario: Scenario,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            for chan in channels(name, scenario) {
                self.client
                    .chan_close(&chan)
                    .await
                    .with_context(|| format!("cannot close channel {chan}"))?;
                self.client
                    .chan_remove(&chan)
                    .await
                    .with_context(|| format!("cannot remove channel {chan}"))?;
            }
            Ok(())
        })
    }
}

/// A client connected to the circuitd the role was pointed at.
pub(super) async fn connect(ctx: &Ctx) -> anyhow::Result<Client> {
    Client::connect_unix(&ctx.args.endpoint)
        .await
        .with_context(|| format!("cannot connect to circuitd at {}", ctx.args.endpoint))
}

/// A sender on channel `name` with `opts`.
pub(super) async fn sender(
    client: &Client,
    name: &str,
    opts: SendOptions,
) -> anyhow::Result<Sender<Bytes, Raw>> {
    let chan = client
        .chan(name)
        .await
        .with_context(|| format!("cannot open channel {name}"))?;
    chan.sender_with(Raw, opts)
        .await
        .with_context(|| format!("cannot open a sender on {name}"))
}

/// A receiver on channel `name` with `opts`.
pub(super) async fn receiver(
    client: &Client,
    name: &str,
    opts: RecvOptions,
) -> anyhow::Result<Receiver<Bytes, Raw>> {
    let chan = client
        .chan(name)
        .await
        .with_context(|| format!("cannot open channel {name}"))?;
    chan.receiver_with(Raw, opts)
        .await
        .with_context(|| format!("cannot open a receiver on {name}"))
}

/// Submits `count` stamped values after `go` without waiting for each, then flushes.
pub async fn send(ctx: &mut Ctx) -> anyhow::Result<Span> {
    let client = connect(ctx).await?;
    let opts = SendOptions {
        window: ctx.args.window,
        ..SendOptions::default()
    };
    let tx = sender(&client, &ctx.args.name, opts).await?;
    let mut payload = ctx.payload();
    let (index, count) = (ctx.args.index, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    for seq in 0..count {
        // The ticket is dropped: `flush` reports any value that was refused.
        drop(
            tx.submit(payload.stamped(index, seq as u32))
                .await
                .context("submit")?,
        );
    }
    tx.flush().await.context("flush")?;
    Ok(Span {
        start_ns,
        end_ns: now_ns(),
    })
}

/// Submits `count` stamped values after `go`, one every `1/rate` s on a fixed schedule (at once
/// while behind it), and times each value's acknowledgement.
pub async fn send_steady(ctx: &mut Ctx) -> anyhow::Result<(Span, Vec<Acked>)> {
    let client = connect(ctx).await?;
    let opts = SendOptions {
        window: ctx.args.window,
        reconnect_for: FOLLOW_FOR,
        ..SendOptions::default()
    };
    let tx = sender(&client, &ctx.args.name, opts).await?;
    let mut payload = ctx.payload();
    let (index, count, rate) = (ctx.args.index, ctx.args.count, ctx.args.rate.max(1));
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    let start = tokio::time::Instant::now();
    // Values are accepted in the order they were submitted, so one task awaits the tickets in
    // that order and stamps each as it completes.
    let (tickets, mut in_line) = tokio::sync::mpsc::unbounded_channel::<(u64, Ticket)>();
    let timer = tokio::spawn(async move {
        let mut timeline = Vec::new();
        while let Some((sent_ns, ticket)) = in_line.recv().await {
            let seq = timeline.len();
            ticket
                .await
                .with_context(|| format!("value {seq} was refused"))?;
            timeline.push(Acked {
                sent_ns,
                acked_ns: now_ns(),
            });
        }
        anyhow::Ok(timeline)
    });
    for seq in 0..count {
        let due = start + Duration::from_nanos(seq * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let sent_ns = now_ns();
        let ticket = tx
            .submit(payload.stamped(index, seq as u32))
            .await
            .context("submit")?;
        if tickets.send((sent_ns, ticket)).is_err() {
            break;
        }
    }
    drop(tickets);
    let timeline = timer.await.context("the ticket task failed")??;
    tx.flush().await.context("flush")?;
    Ok((
        Span {
            start_ns,
            end_ns: now_ns(),
        },
        timeline,
    ))
}

/// Receives from the trial's channel until stdin closes (or the channel is closed and drained).
pub async fn recv(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    recv_with(ctx, inbox, prefetching(PREFETCH)).await
}

/// As [`recv`], with the receiver's options `opts` (the defaults contender passes none).
pub(super) async fn recv_with(
    ctx: &mut Ctx,
    inbox: &mut Inbox,
    opts: RecvOptions,
) -> anyhow::Result<()> {
    let client = connect(ctx).await?;
    let mut rx = receiver(&client, &ctx.args.name, opts).await?;
    ctx.ready();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        // `recv` is cancel-safe: a value that arrives as stdin closes is not lost.
        tokio::select! {
            // The value first: the stop is looked at only while none is ready, as a plain
            // loop would not look at it at all.
            biased;
            value = rx.recv() => match value {
                Ok(value) => inbox.take(&value),
                Err(e) if e.is_closed() => return Ok(()),
                Err(e) => return Err(e).context("recv"),
            },
            () = &mut stopped => return Ok(()),
        }
    }
}

/// A tuned receiver's options: `prefetch`, following a replicated channel's leader.
fn prefetching(prefetch: u32) -> RecvOptions {
    RecvOptions {
        prefetch,
        reconnect_for: FOLLOW_FOR,
        ..RecvOptions::default()
    }
}

/// Receives each ping and sends it back on the pong channel, until stdin closes; one value
/// per `recv`.
pub async fn echo(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    echo_with(ctx, inbox, prefetching(1)).await
}

/// [`echo`] with the ping receiver's options `recv`.
pub(super) async fn echo_with(
    ctx: &mut Ctx,
    inbox: &mut Inbox,
    recv: RecvOptions,
) -> anyhow::Result<()> {
    let client = connect(ctx).await?;
    let mut pings = receiver(&client, &ping_name(&ctx.args.name), recv).await?;
    let pongs = sender(&client, &pong_name(&ctx.args.name), SendOptions::default()).await?;
    ctx.ready();
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        let ping = tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            ping = pings.recv() => match ping {
                Ok(ping) => ping,
                Err(e) if e.is_closed() => return Ok(()),
                Err(e) => return Err(e).context("recv ping"),
            },
        };
        inbox.take(&ping);
        pongs.send(ping).await.context("send pong")?;
    }
}

/// Sends a ping and receives its pong, `warmup + count` times after `go`; returns the measured
/// latencies. The pong receiver takes one value per `recv`.
pub async fn ping(ctx: &mut Ctx) -> anyhow::Result<Vec<u64>> {
    ping_with(ctx, prefetching(1)).await
}

/// [`ping`] with the pong receiver's options `recv`.
pub(super) async fn ping_with(ctx: &mut Ctx, recv: RecvOptions) -> anyhow::Result<Vec<u64>> {
    let client = connect(ctx).await?;
    let pings = sender(&client, &ping_name(&ctx.args.name), SendOptions::default()).await?;
    let mut pongs = receiver(&client, &pong_name(&ctx.args.name), recv).await?;
    let mut payload = ctx.payload();
    let (warmup, count) = (ctx.args.warmup, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..warmup + count {
        let seq = i as u32;
        let msg = payload.stamped(0, seq);
        let sent = now_ns();
        pings
            .send(msg)
            .await
            .with_context(|| format!("send ping {i}"))?;
        let pong = pongs
            .recv()
            .await
            .with_context(|| format!("recv pong {i}"))?;
        let rtt = now_ns() - sent;
        if read_stamp(&pong) != Some((0, seq)) {
            bail!("the pong for ping {i} carries another ping's stamp");
        }
        if i >= warmup {
            rtts.push(rtt);
        }
    }
    Ok(rtts)
}
