//! `circuit stdin`: forwards this process's stdin to the stdin of a worker spawned with
//! `--stdin`, wherever in the mesh it runs, and returns once all of it is written to the
//! worker's pipe. At the end of the input the worker's stdin is closed (it reads EOF), unless
//! `--keep-open`. The daemon lets it run at most a window ahead of what the worker reads.

use std::io::Read;
use std::process::ExitCode;

use circuit_sdk::proto::ErrorCode;
use tokio::sync::mpsc;

use super::{Ctx, NodeFlag};
use crate::error::CliError;

/// What `--help` says above the options.
pub const LONG_ABOUT: &str = "\
Forward stdin to the stdin of WORKER, a worker spawned with `circuit spawn --stdin`, on
whichever node of the mesh it runs.

stdin returns once everything it read is written to the worker's stdin. At the end of its
input it closes the worker's stdin, so a worker that reads to the end (cat, a `while read`
loop) sees EOF; with --keep-open it leaves it open for a later `circuit stdin`. Interrupted
(Ctrl-C) it detaches without closing it. While the worker does not read, stdin waits: circuitd
holds at most a small window of input for it.

One `circuit stdin` at a time per worker. A restart of the worker gives its new process a new
stdin and ends an attached `circuit stdin` with an error; so does the worker exiting or
closing its stdin.

Exit status: 0 when all the input was written; 1 when it was not (no such worker, not spawned
with --stdin, attached elsewhere, closed, the worker exited, circuitd gone).";

/// Chunks read from stdin ahead of what the daemon's window takes.
const READ_AHEAD: usize = 1;

/// Arguments of `circuit stdin`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit spawn --stdin --name upper -- tr a-z A-Z && echo hello | circuit stdin upper\n  \
    circuit stdin --keep-open shell < commands.txt\n  \
    circuit stdin --node h2 repl")]
pub struct Args {
    /// The worker.
    #[arg(value_name = "WORKER")]
    pub name: String,

    /// At the end of this input, leave the worker's stdin open (another `circuit stdin` can go
    /// on where this one ended).
    #[arg(long)]
    pub keep_open: bool,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Attaches, forwards stdin until its end, and waits until all of it is written.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut writer = client
        .worker_stdin(&args.name, args.node.node.as_deref(), args.keep_open)
        .await
        .map_err(hinted)?;
    let chunk = usize::try_from(writer.opened().max_chunk).unwrap_or(usize::MAX);
    let mut input = read_stdin(chunk.min(1 << 20));
    loop {
        let read = tokio::select! {
            read = input.recv() => read,
            ended = writer.ended() => return Err(hinted(ended)),
        };
        match read {
            Some(Ok(bytes)) => writer.write(&bytes).await.map_err(hinted)?,
            Some(Err(e)) => return Err(CliError::plain(format!("cannot read stdin: {e}"))),
            None => break,
        }
    }
    writer.finish().await.map_err(hinted)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads stdin on a thread of its own, in chunks of up to `chunk` bytes (what one read
/// returns: a line from a terminal), read only as fast as they are taken. A thread, not the
/// runtime's blocking pool: a read that never returns (a terminal nobody types in, once the
/// worker has exited) must not keep the process from exiting.
fn read_stdin(chunk: usize) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0; chunk];
            loop {
                let read = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = read.is_err();
                if tx.blocking_send(read).is_err() || failed {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(e));
        return rx;
    }
    rx
}

/// The daemon's refusal, with what to do about it where the message does not say.
fn hinted(err: circuit_sdk::Error) -> anyhow::Error {
    let unpiped = err.code() == Some(ErrorCode::InvalidState)
        && err.to_string().contains("not spawned with --stdin");
    if unpiped {
        return CliError::hinted(
            err,
            "spawn it again with `circuit spawn --stdin` to give it a stdin to write to",
        );
    }
    err.into()
}
