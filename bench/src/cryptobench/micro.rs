//! The transport alone: bytes through `circuit_sdk::secure::noise` (`SecureWrite` →
//! `SecureRead`) over a loopback TCP pair against the same bytes over plain TCP, and the
//! records sealed then opened in memory with no socket — the cipher and record handling only.

use std::time::Duration;

use anyhow::Context as _;
use circuit_sdk::secure::noise::{self, Accepted};
use circuit_sdk::secure::{Key, Keyring, Session};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::report::Samples;

/// The reader's buffer.
const READ_BUF: usize = 64 * 1024;
/// Bytes sealed then opened per in-memory trial.
const IN_MEMORY_BYTES: usize = 64 << 20;

/// Where the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A loopback TCP connection, a writer task and a reader task.
    Tcp,
    /// Sealed into a buffer, then opened from it: no socket.
    Memory,
}

/// One row: one way at one write size.
#[derive(Debug, Clone)]
pub struct Row {
    /// Where the bytes went.
    pub via: Via,
    /// Bytes per `write` call.
    pub write: usize,
    /// MB/s over plain TCP, per trial; empty in memory (nothing to compare with).
    pub plain: Samples,
    /// MB/s through the Noise records, per trial.
    pub secure: Samples,
}

/// Every row, `trials` times each, alternating plain and secure; `duration` per TCP trial.
pub async fn run(trials: usize, duration: Duration) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for via in [Via::Tcp, Via::Memory] {
        for write in [64 * 1024, 256] {
            let mut row = Row {
                via,
                write,
                plain: Samples::new("plain MB/s", 0),
                secure: Samples::new("Noise MB/s", 0),
            };
            for _ in 0..trials {
                match via {
                    Via::Tcp => {
                        row.plain.push(tcp(false, write, duration).await?);
                        row.secure.push(tcp(true, write, duration).await?);
                    }
                    Via::Memory => row.secure.push(in_memory(write).await?),
                }
            }
            eprintln!(
                "micro: {:?} {} B writes: plain {:.0} MB/s, Noise {:.0} MB/s",
                via,
                write,
                row.plain.median(),
                row.secure.median()
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// A Noise session from a handshake over an in-memory pipe: (initiator's, responder's).
async fn sessions() -> anyhow::Result<(Session, Session)> {
    let key = Key::generate().context("cannot generate a key")?;
    let ring = Keyring::new(vec![key.clone()]).context("cannot make a keyring")?;
    let (mut c, mut s) = tokio::io::duplex(64 * 1024);
    let server = async {
        let mode = noise::read_preamble(&mut s).await?;
        noise::accept(&mut s, mode, Some(&ring)).await
    };
    let (client, server) = tokio::join!(noise::connect(&mut c, Some(&key)), server);
    let client = client?.context("the handshake ended plain")?;
    let Accepted::Secure(server) = server? else {
        anyhow::bail!("the handshake ended plain");
    };
    Ok((client, server))
}

/// MB/s from a writer of `write`-byte calls to a reader, over loopback TCP for `duration`.
async fn tcp(secure: bool, write: usize, duration: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (client, (server, _)) = (client?, accepted?);
    // As circuit's connections are.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (_, cw) = client.into_split();
    let (sr, _) = server.into_split();
    if secure {
        let (tx, rx) = sessions().await?;
        let (_, w) = tx.wrap(tokio::io::empty(), cw);
        let (r, _) = rx.wrap(sr, tokio::io::sink());
        pump(r, w, write, duration).await
    } else {
        pump(sr, cw, write, duration).await
    }
}

/// Writes `write`-byte buffers for `duration` on a task, reads them here; MB/s at the reader.
async fn pump<R, W>(mut r: R, mut w: W, write: usize, duration: Duration) -> anyhow::Result<f64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let end = start + duration;
    let writer = tokio::spawn(async move {
        let buf = vec![0xa5u8; write];
        while Instant::now() < end {
            w.write_all(&buf).await?;
        }
        w.shutdown().await
    });
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.context("read")?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let elapsed = start.elapsed();
    writer
        .await
        .context("the writer task failed")?
        .context("write")?;
    Ok(total as f64 / elapsed.as_secs_f64() / 1e6)
}

/// MB/s of sealing [`IN_MEMORY_BYTES`] in `write`-byte calls into a buffer and opening them.
async fn in_memory(write: usize) -> anyhow::Result<f64> {
    let (tx, rx) = sessions().await?;
    let buf = vec![0xa5u8; write];
    let calls = IN_MEMORY_BYTES / write;
    let mut wire = Vec::with_capacity(IN_MEMORY_BYTES + calls * 32);
    let start = Instant::now();
    {
        let (_, mut w) = tx.wrap(tokio::io::empty(), &mut wire);
        for _ in 0..calls {
            w.write_all(&buf).await?;
        }
        w.flush().await?;
    }
    let (mut r, _) = rx.wrap(&wire[..], tokio::io::sink());
    let mut out = vec![0u8; READ_BUF];
    let mut total = 0usize;
    loop {
        let n = r.read(&mut out).await.context("open")?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(
        total == calls * write,
        "opened {total} bytes of {}",
        calls * write
    );
    Ok(total as f64 / elapsed.as_secs_f64() / 1e6)
}
