//! `circuit chan rm`: deletes channels. Values still in them are dropped, and the senders and
//! receivers still using them fail with "removed".

use std::process::ExitCode;

use crate::cmd::Ctx;

/// Arguments of `circuit chan rm`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit chan rm jobs\n  circuit chan rm jobs results")]
pub struct Args {
    /// Channels to remove.
    #[arg(value_name = "NAME", add = crate::complete::channels(), required = true)]
    names: Vec<String>,
}

/// Removes each channel and prints its name; exits 1 if any could not be removed.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    super::each(ctx, args.names, async |client, name| {
        client.chan_remove(name).await
    })
    .await
}
