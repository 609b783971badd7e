//! `circuit recv`: prints values from a channel, one per line, until the channel is closed and
//! drained or enough were printed. A value is acknowledged (leaves the channel) only once the
//! reader has it: written to a terminal or a file, or read out of a pipe. One that is not goes
//! back to the channel.

use std::process::ExitCode;

use circuit_sdk::chan::{automatic_prefetch, ChanError, Raw, Receiver, RecvOptions};

use super::Ctx;
use crate::error::{self, CliError};
use crate::parse;
use crate::stdout::{Fate, Stdout};

/// Exit status when `--timeout` passes without a value (as timeout(1) uses).
const TIMEOUT_EXIT: u8 = 124;

/// What `--help` says above the options.
pub const LONG_ABOUT: &str = "\
Print values from the channel NAME, one per line (the value's bytes, then a newline), until the
channel is closed and everything in it was received, or COUNT values were printed.

A value leaves the channel only once the reader has it. Into a terminal or a file, that is when
it is written. Into a pipe (`| head -1`, `| sort`), recv writes one value at a time and waits
until the reader has read it out of the pipe before it takes the next; if the reader goes away
first, that value goes back to the channel. recv notices a reader that went away at once, also
while it waits for a value, and exits 0 without taking anything more. So
`circuit recv q | head -1` takes exactly one value.

recv fetches values ahead for speed (the SDK's default: up to 2048, at most half the
channel's capacity, about 4 MiB, on a channel one node owns, one at a time on a replicated
channel; with -n, at most COUNT). Values fetched ahead are not taken: they go back to the channel when recv stops,
and to another receiver that waits meanwhile, so a waiting receiver is never left without a
value that recv holds but has not printed.

With --json, each value is printed as a JSON string (invalid UTF-8 replaced by U+FFFD), so a
value that contains newlines stays on one line.

Exit status: 0 after COUNT values, when the channel is closed and drained (even if fewer than
COUNT values came), or when the reader of stdout went away; 124 when --timeout passed with no
value; 1 on any other failure.";

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
    #[arg(value_name = "NAME", add = crate::complete::channels())]
    name: String,
}

/// Prints values until the channel is drained, COUNT is reached, the timeout passes, or the
/// reader of stdout goes away.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    let stdout = Stdout::detect();
    let client = ctx.connect().await?;
    let chan = client.chan(name).await.map_err(|e| error::chan(e, name))?;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let defaults = RecvOptions::default();
    // With a count, nothing beyond it is fetched (a count at or above the automatic prefetch
    // leaves it automatic).
    let automatic = automatic_prefetch(chan.capacity());
    let options = RecvOptions {
        prefetch: args
            .count
            .filter(|n| *n < automatic)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(defaults.prefetch),
        ..defaults
    };
    let mut rx = chan
        .receiver_with(Raw, options)
        .await
        .map_err(|e| error::chan(e, name))?;
    let result = receive(&mut rx, &args, ctx.json, &stdout).await;
    // Wait until the owner has the acknowledgements and has taken back what was not printed.
    rx.close().await;
    result
}

/// The receive loop; `Ok` carries the exit status.
async fn receive(
    rx: &mut Receiver<Vec<u8>, Raw>,
    args: &Args,
    json: bool,
    stdout: &Stdout,
) -> anyhow::Result<ExitCode> {
    let mut hangup = stdout.hangup();
    let mut printed: u64 = 0;
    while args.count.is_none_or(|count| printed < count) {
        let wait = async {
            match args.timeout {
                Some(limit) => tokio::time::timeout(limit.into(), rx.recv_delivery())
                    .await
                    .unwrap_or(Err(ChanError::Timeout)),
                None => rx.recv_delivery().await,
            }
        };
        let next = tokio::select! {
            biased;
            // The reader went away while we waited: take nothing more (a dropped recv takes
            // nothing, and gives back what arrives for it).
            Ok(()) = &mut hangup => return Ok(ExitCode::SUCCESS),
            next = wait => next,
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
        match stdout.write_taken(&line(&delivery, json)?).await? {
            Fate::Taken => delivery.ack(),
            // Dropped unacknowledged, the value goes back to the channel.
            Fate::ReaderGone => return Ok(ExitCode::SUCCESS),
        }
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// One value as the line that is printed for it.
fn line(value: &[u8], json: bool) -> serde_json::Result<Vec<u8>> {
    let mut line = if json {
        serde_json::to_vec(&String::from_utf8_lossy(value))?
    } else {
        value.to_vec()
    };
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_prefetch_and_the_exit_status() {
        assert!(LONG_ABOUT.contains("up to 2048, at most half the\nchannel's capacity"));
        assert!(LONG_ABOUT.contains("`circuit recv q | head -1` takes exactly one value"));
        assert!(LONG_ABOUT.contains(&format!("{TIMEOUT_EXIT} when --timeout passed")));
    }
}
