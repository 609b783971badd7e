//! `circuit chan close`: closes channels, as Go's `close(ch)`: sends fail from then on, and
//! receivers get what is left, then the end of the channel.

use std::process::ExitCode;

use crate::cmd::Ctx;

/// Arguments of `circuit chan close`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit chan close jobs\n  \
    circuit recv jobs   # prints what is left, then exits 0")]
pub struct Args {
    /// Channels to close. Closing a closed channel is an error.
    #[arg(value_name = "NAME", add = crate::complete::channels(), required = true)]
    names: Vec<String>,
}

/// Closes each channel and prints its name; exits 1 if any could not be closed.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    super::each(ctx, args.names, async |client, name| {
        client.chan_close(name).await
    })
    .await
}
