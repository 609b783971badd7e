//! `circuit chan rm`: deletes channels. Values still in them are dropped, and the senders and
//! receivers still using them fail with "removed".

use std::process::ExitCode;

use crate::cmd::Ctx;
use crate::{error, output};

/// Arguments of `circuit chan rm`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit chan rm jobs\n  circuit chan rm jobs results")]
pub struct Args {
    /// Channels to remove.
    #[arg(value_name = "NAME", required = true)]
    names: Vec<String>,
}

/// Removes each channel and prints its name; exits 1 if any could not be removed.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut code = ExitCode::SUCCESS;
    for name in args.names {
        match client.chan_remove(&name).await {
            Ok(()) if ctx.json => {}
            Ok(()) => output::line(&name)?,
            Err(e) => {
                error::print(&error::chan(e, &name));
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
