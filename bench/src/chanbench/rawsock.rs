//! The floor: two processes on one Unix stream socket, no broker. Messages are framed as a
//! `u32` little-endian length and the payload; 1 → 1 only, plus a ping-pong for latency.

use std::io::ErrorKind;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};

use super::ctx::{Ctx, Span};
use super::protocol::{now_ns, read_stamp, Payload};
use super::server::Server;
use super::tally::Inbox;

/// Bytes a reader takes per `read` and a writer gathers per `write`.
const BUF: usize = 256 * 1024;
/// Bytes before each payload: its length.
const HEAD: usize = 4;

/// The directory the trials' sockets live in; there is no server process.
#[derive(Debug)]
pub struct RawDir {
    dir: TempDir,
}

impl RawDir {
    /// A fresh private temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-raw-")
            .tempdir()
            .context("cannot create a temp dir")?;
        Ok(Self { dir })
    }
}

impl Server for RawDir {
    fn endpoint(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn describe(&self) -> String {
        "Unix stream socket, no broker".into()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn socket_path(ctx: &Ctx) -> PathBuf {
    PathBuf::from(&ctx.args.endpoint).join(format!("{}.sock", ctx.args.name))
}

/// Listens on the trial's socket and waits for one peer (or stdin's end: `None`).
async fn accept(ctx: &mut Ctx) -> anyhow::Result<Option<UnixStream>> {
    let path = socket_path(ctx);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    ctx.ready();
    tokio::select! {
        () = ctx.stopped() => Ok(None),
        accepted = listener.accept() => Ok(Some(accepted.context("accept")?.0)),
    }
}

async fn connect(ctx: &Ctx) -> anyhow::Result<UnixStream> {
    let path = socket_path(ctx);
    UnixStream::connect(&path)
        .await
        .with_context(|| format!("cannot connect to {}", path.display()))
}

/// Writes `count` framed messages through a large buffer after `go`, then flushes and closes.
pub async fn send(ctx: &mut Ctx) -> anyhow::Result<Span> {
    let stream = connect(ctx).await?;
    let payload = ctx.payload();
    let len = u32::try_from(payload.len()).context("payload too large")?;
    let (index, count) = (ctx.args.index, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let start_ns = now_ns();
    let mut out = BufWriter::with_capacity(BUF, stream);
    for seq in 0..count {
        out.write_all(&len.to_le_bytes()).await?;
        out.write_all(&Payload::stamp(index, seq as u32)).await?;
        out.write_all(payload.filler()).await?;
    }
    out.flush().await.context("flush")?;
    out.into_inner().shutdown().await.context("shutdown")?;
    Ok(Span {
        start_ns,
        end_ns: now_ns(),
    })
}

/// Reads framed messages from one writer until it closes the socket or stdin closes.
pub async fn recv(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    let Some(mut stream) = accept(ctx).await? else {
        return Ok(());
    };
    let mut buf = vec![0u8; BUF];
    // Unparsed bytes are buf[start..end].
    let (mut start, mut end) = (0, 0);
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        // Move a partial frame to the front so a whole one always fits.
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        let read = tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            read = stream.read(&mut buf[end..]) => read.context("read")?,
        };
        if read == 0 {
            if end > 0 {
                bail!("the writer closed the socket in the middle of a message");
            }
            return Ok(());
        }
        end += read;
        while end - start >= HEAD {
            let head: [u8; HEAD] = buf[start..start + HEAD].try_into().expect("HEAD bytes");
            let len = u32::from_le_bytes(head) as usize;
            if len > BUF - HEAD {
                bail!("a frame of {len} bytes: the stream is corrupt");
            }
            if end - start < HEAD + len {
                break;
            }
            inbox.take(&buf[start + HEAD..start + HEAD + len]);
            start += HEAD + len;
        }
    }
}

/// Reads one frame into `body`; `false` at a clean end of stream.
async fn read_frame(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    body: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    let mut head = [0u8; HEAD];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(anyhow::Error::new(e).context("read")),
    }
    body.resize(u32::from_le_bytes(head) as usize, 0);
    reader.read_exact(body).await.context("read")?;
    Ok(true)
}

/// Sends every frame back as it arrives, until the pinger closes or stdin closes.
pub async fn echo(ctx: &mut Ctx, inbox: &mut Inbox) -> anyhow::Result<()> {
    let Some(stream) = accept(ctx).await? else {
        return Ok(());
    };
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(BUF, reader);
    let (mut body, mut frame) = (Vec::new(), Vec::new());
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        let more = tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            more = read_frame(&mut reader, &mut body) => more?,
        };
        if !more {
            return Ok(());
        }
        inbox.take(&body);
        frame.clear();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        writer.write_all(&frame).await.context("write")?;
    }
}

/// Writes one frame and reads its echo, `warmup + count` times after `go`; returns the
/// measured latencies.
pub async fn ping(ctx: &mut Ctx) -> anyhow::Result<Vec<u64>> {
    let stream = connect(ctx).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(BUF, reader);
    let payload = ctx.payload();
    let len = u32::try_from(payload.len()).context("payload too large")?;
    let (warmup, count) = (ctx.args.warmup, ctx.args.count);
    ctx.ready();
    ctx.go().await?;
    let (mut frame, mut body) = (Vec::new(), Vec::new());
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..warmup + count {
        let seq = i as u32;
        frame.clear();
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&Payload::stamp(0, seq));
        frame.extend_from_slice(payload.filler());
        let sent = now_ns();
        writer.write_all(&frame).await.context("write")?;
        if !read_frame(&mut reader, &mut body).await? {
            bail!("the echo closed the socket after {i} round trips");
        }
        let rtt = now_ns() - sent;
        if read_stamp(&body) != Some((0, seq)) {
            bail!("the echo of ping {i} carries another ping's stamp");
        }
        if i >= warmup {
            rtts.push(rtt);
        }
    }
    Ok(rtts)
}
