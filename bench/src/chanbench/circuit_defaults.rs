//! The "circuit defaults" contender: the same daemon as [`super::circuit`], with roles written the
//! plain way a Go programmer would — no option set (`SendOptions::default()`,
//! `RecvOptions::default()`), `send().await` and `recv().await` one value at a time. The payload
//! travels as [`Raw`] bytes, as in the tuned roles (NATS carries bytes too).

use anyhow::Context as _;
use bytes::Bytes;
use circuit_sdk::chan::{Raw, RecvOptions, SendOptions, Sender};
use circuit_sdk::Client;

use super::circuit::{self, connect};
use super::ctx::{Ctx, Span};
use super::protocol::now_ns;
use super::tally::Inbox;

async fn sender(client: &Client, name: &str) -> anyhow::Result<Sender<Bytes, Raw>> {
    circuit::sender(client, name, SendOptions::default()).await
}

/// Sends `count` stamped values after `go`, awaiting each `send`; done when the last returns.
pub async fn send(ctx: &mut Ctx) -> anyhow::Result<Span> {
    let client = connect(ctx).await?;
    let tx = sender(&client, &ctx.args.name).await?;
    let mut payload = ctx.payload();
    let (index, count) = (ctx.args.index, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    for seq in 0..count {
        tx.send(payload.stamped(index, seq as u32))
            .await
            .with_context(|| format!("send {seq}"))?;
    }
    Ok(Span {
        start_ns,
        end_ns: now_ns(),
    })
}

/// Awaits `recv` in a loop until stdin closes (or the channel is closed and drained).
pub async fn recv(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    circuit::recv_with(ctx, inbox, RecvOptions::default()).await
}

/// Receives each ping and sends it back on the pong channel, until stdin closes.
pub async fn echo(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    circuit::echo_with(ctx, inbox, RecvOptions::default()).await
}

/// Sends a ping and receives its pong, `warmup + count` times after `go`; returns the measured
/// latencies.
pub async fn ping(ctx: &mut Ctx) -> anyhow::Result<Vec<u64>> {
    circuit::ping_with(ctx, RecvOptions::default()).await
}
