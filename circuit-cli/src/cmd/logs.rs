//! `circuit logs`: streams a worker's output. Lines from its stdout go to our stdout and lines
//! from its stderr to our stderr, like `docker logs`; `-f` ends with the worker's exit code.

use std::io::{self, Write};
use std::process::ExitCode;

use circuit_sdk::proto::{Item, LogLine, LogStream, LogsRequest, Reply, Request};
use circuit_sdk::Next;

use super::{exit_code, unexpected, Ctx, NodeFlag};
use crate::output;

/// Arguments of `circuit logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit logs web\n  \
    circuit logs -f --tail 20 --timestamps web\n  \
    circuit logs --node h3 web")]
pub struct Args {
    /// Keep printing new lines until the worker ends, then exit with its exit code.
    #[arg(short, long)]
    pub follow: bool,

    /// Start with only the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,

    /// Only the worker's standard output.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,

    /// Only the worker's standard error.
    #[arg(long)]
    pub stderr: bool,

    /// Prefix each line with the time it was read (RFC 3339, UTC, milliseconds).
    #[arg(short, long)]
    pub timestamps: bool,

    /// The worker.
    #[arg(value_name = "WORKER")]
    pub name: String,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Prints the log lines as they arrive (one JSON object per line, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let stream = match (args.stdout, args.stderr) {
        (true, _) => Some(LogStream::Stdout),
        (_, true) => Some(LogStream::Stderr),
        _ => None,
    };
    let request = LogsRequest {
        name: args.name,
        follow: args.follow,
        tail: args.tail,
        stream,
    };
    let client = ctx.connect().await?;
    let mut replies = client
        .stream(args.node.wrap(Request::Logs(request)))
        .await?;
    loop {
        match replies.next().await? {
            Next::Item(Item::Log(line)) if ctx.json => output::json_line(&line)?,
            Next::Item(Item::Log(line)) => print(&line, args.timestamps)?,
            Next::End(Reply::Done) => return Ok(ExitCode::SUCCESS),
            Next::End(Reply::End(end)) => {
                let _ = writeln!(io::stderr().lock(), "circuit: {}", output::worker_end(&end));
                return Ok(exit_code(end.shell_code()));
            }
            Next::End(other) => return Err(unexpected("done or end", &other)),
            Next::Item(_) => {}
        }
    }
}

/// Writes one line to the stream it came from. A write error (a closed pipe) is returned as
/// the bare `io::Error`, so that `main` can tell a gone reader from a failure.
fn print(line: &LogLine, timestamps: bool) -> io::Result<()> {
    let mut text = String::with_capacity(line.line.len() + 40);
    if timestamps {
        text.push_str(&output::timestamp(line.ts_ms));
        text.push(' ');
    }
    text.push_str(&line.line);
    text.push('\n');
    match line.stream {
        LogStream::Stdout => io::stdout().lock().write_all(text.as_bytes()),
        LogStream::Stderr => io::stderr().lock().write_all(text.as_bytes()),
    }
}
