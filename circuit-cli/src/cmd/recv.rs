//! `circuit recv`: prints values from a channel, one per line, until the channel is closed and
//! drained or enough were printed. A value is acknowledged (leaves the channel) only after it
//! was written to stdout, so one that cannot be written goes back to the channel.

use std::io::{self, Write};
use std::process::ExitCode;

use circuit_sdk::chan::{ChanError, Raw, Receiver, RecvOptions};

use super::Ctx;
use crate::error::{self, CliError};
use crate::parse;

/// Exit status when `--timeout` passes without a value (as timeout(1) uses).
const TIMEOUT_EXIT: u8 = 124;

/// Values held ahead of printing when no count is given, for throughput.
const PREFETCH: u32 = 64;

/// What `--help` says above the options.
pub const LONG_ABOUT: &str = "\
Print values from the channel NAME, one per line (the value's bytes, then a newline), until the
channel is closed and everything in it was received, or COUNT values were printed.

A value leaves the channel only once it has been written to stdout: if it cannot be written
(the reader went away, as with `| head -1`), it goes back to the channel and recv exits 0 quietly.
With -n, recv holds at most one value at a time, like a Go receiver, so it never takes more than
it prints. Without -n it fetches up to 64 values ahead for speed; those not printed go back to
the channel when recv stops.

With --json, each value is printed as a JSON string (invalid UTF-8 replaced by U+FFFD), so a
value that contains newlines stays on one line.

Exit status: 0 after COUNT values, or when the channel is closed and drained (even if fewer than
COUNT values came); 124 when --timeout passed with no value; 1 on any other failure.";

/// Arguments of `circuit recv`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit recv jobs                  # until jobs is closed and drained\n  \
    circuit recv -n 1 --timeout 5 jobs # one value, or exit 124 after 5 s\n  \
    circuit recv results | sort")]
pub struct Args {
    /// Stop after printing COUNT values.
    #[arg(short = 'n', long = "count", value_name = "COUNT")]
    count: Option<u64>,

    /// Give up when no value arrives within SECS (or a duration like 500ms): print why on
    /// stderr and exit 124.
    #[arg(long, value_name = "SECS", value_parser = parse::duration)]
    timeout: Option<humantime::Duration>,

    /// The channel.
    #[arg(value_name = "NAME")]
    name: String,
}

/// Prints values until the channel is drained, COUNT is reached, or the timeout passes.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    let client = ctx.connect().await?;
    let chan = client.chan(name).await.map_err(|e| error::chan(e, name))?;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let options = RecvOptions {
        prefetch: if args.count.is_some() { 1 } else { PREFETCH },
        ..RecvOptions::default()
    };
    let mut rx = chan
        .receiver_with(Raw, options)
        .await
        .map_err(|e| error::chan(e, name))?;
    let result = receive(&mut rx, &args, ctx.json).await;
    // Wait until the owner has the acknowledgements: the process exits right after, and a
    // value printed but not acknowledged would go back to the channel.
    rx.close().await;
    result
}

/// The receive loop; `Ok` carries the exit status.
async fn receive(
    rx: &mut Receiver<Vec<u8>, Raw>,
    args: &Args,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut printed: u64 = 0;
    while args.count.is_none_or(|count| printed < count) {
        let next = match args.timeout {
            Some(limit) => tokio::time::timeout(limit.into(), rx.recv_delivery())
                .await
                .unwrap_or(Err(ChanError::Timeout)),
            None => rx.recv_delivery().await,
        };
        let delivery = match next {
            Ok(delivery) => delivery,
            Err(ChanError::Closed) => break,
            Err(ChanError::Timeout) => {
                let limit = args.timeout.map(|t| t.to_string()).unwrap_or_default();
                error::print(&CliError::plain(format!(
                    "no value arrived on channel \"{}\" within {limit}",
                    args.name
                )));
                return Ok(ExitCode::from(TIMEOUT_EXIT));
            }
            Err(e) => return Err(error::chan(e, &args.name)),
        };
        // On a write error the delivery is dropped unacknowledged: the value goes back.
        print(&delivery, json)?;
        delivery.ack();
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one value and a newline to stdout, and flushes. The error is the bare `io::Error`,
/// so that `main` can tell a reader that went away from a failure.
fn print(value: &[u8], json: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        out.write_all(serde_json::to_string(&String::from_utf8_lossy(value))?.as_bytes())?;
    } else {
        out.write_all(value)?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_prefetch_and_the_exit_status() {
        assert!(LONG_ABOUT.contains(&format!("up to {PREFETCH} values ahead")));
        assert!(LONG_ABOUT.contains(&format!("{TIMEOUT_EXIT} when --timeout passed")));
    }
}
