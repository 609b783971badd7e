//! `circuit send`: puts values into a channel — the argument, or each line of stdin — and
//! returns only once the channel has accepted every one (at capacity 0: a receiver took it).
//! Lines are pipelined with the SDK's default window, which keeps stdin from being read far
//! ahead; no option is tuned here (the defaults are the fast path).

use std::process::ExitCode;

use circuit_sdk::chan::{ChanError, Raw, SendOptions, Sender};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Ctx;
use crate::error::{self, CliError};

/// Most lines read from stdin and not yet accepted by the channel: how far `send` reads ahead
/// (the SDK's default window).
const WINDOW: u32 = 4096;

/// Size of the stdin read buffer.
const STDIN_BUFFER: usize = 64 << 10;

/// What `--help` says above the options.
pub const LONG_ABOUT: &str = "\
Send VALUE to the channel NAME, or, without VALUE, each line of stdin (without its newline) as
one value, in order.

send returns only once every value is accepted: in the channel's buffer, or, at capacity 0,
taken by a receiver. While the channel is full it waits, and so does reading stdin:
at most 4096 lines are read ahead of what the channel has accepted. It prints nothing.

Exit status: 0 when every value was accepted; 1 when one was not (no such channel, the channel
is closed, a value larger than the channel accepts, circuitd gone). Values before the failing
one may have been accepted; a line too large for the channel stops send once every line before
it was accepted.";

/// Arguments of `circuit send`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit send jobs 'resize photo-17.jpg'\n  \
    seq 1000 | circuit send jobs\n  \
    circuit send jobs < tasks.txt && circuit chan close jobs")]
pub struct Args {
    /// The channel.
    #[arg(value_name = "NAME", add = crate::complete::channels())]
    name: String,

    /// The value to send, as its UTF-8 bytes [default: each line of stdin].
    #[arg(value_name = "VALUE")]
    value: Option<String>,
}

/// Sends the value (or the lines of stdin) and waits until each one is accepted.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    let client = ctx.connect().await?;
    let chan = client.chan(name).await.map_err(|e| error::chan(e, name))?;
    let options = SendOptions::default();
    debug_assert_eq!(options.window, WINDOW);
    let tx = chan
        .sender_with(Raw, options)
        .await
        .map_err(|e| error::chan(e, name))?;
    match args.value {
        Some(value) => tx
            .send(value.into_bytes())
            .await
            .map_err(|e| error::chan(e, name))?,
        None => send_lines(&tx, name).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits each line of stdin as it is read, then waits until all are accepted.
async fn send_lines(tx: &Sender<Vec<u8>, Raw>, name: &str) -> anyhow::Result<()> {
    let mut stdin = BufReader::with_capacity(STDIN_BUFFER, tokio::io::stdin());
    let mut number: u64 = 0;
    loop {
        let mut line = Vec::new();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| CliError::plain(format!("cannot read stdin: {e}")))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // Waits while WINDOW values are unaccepted; the ticket is not needed, since `flush`
        // reports the first failure of any value.
        match tx.submit(line).await {
            Ok(ticket) => drop(ticket),
            Err(e @ ChanError::TooLarge { .. }) => {
                // The lines before it are fine: see them accepted, so that the outcome is
                // exact (all lines before this one, none after), then report this one.
                tx.flush().await.map_err(|e| error::chan(e, name))?;
                let message = error::render(&error::chan(e, name));
                return Err(CliError::plain(format!("line {number}: {message}")));
            }
            Err(e) => return Err(error::chan(e, name)),
        }
    }
    tx.flush().await.map_err(|e| error::chan(e, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_read_ahead() {
        assert!(LONG_ABOUT.contains(&format!("at most {WINDOW} lines")));
    }
}
