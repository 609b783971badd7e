//! `circuit chan`: the life of named channels — create, list, describe, close, remove — one
//! file per subcommand. Moving values is `circuit send` and `circuit recv`.

mod close;
mod create;
mod ls;
mod rm;
mod stat;

use std::process::ExitCode;

use circuit_sdk::chan::ChanError;
use circuit_sdk::Client;
use clap::Subcommand;

use super::Ctx;
use crate::{error, output};

/// Arguments of `circuit chan`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit chan create jobs --cap 16\n  \
    circuit chan ls\n  \
    circuit chan stat jobs\n  \
    circuit chan close jobs\n  \
    circuit chan rm jobs")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// A subcommand of `circuit chan`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a channel (capacity 0 by default: every send waits for a receiver).
    Create(create::Args),
    /// List channels with their counts.
    Ls(ls::Args),
    /// Describe one channel.
    Stat(stat::Args),
    /// Close channels: sends fail from now on, receivers drain what is left.
    Close(close::Args),
    /// Remove channels; the values still in them are dropped.
    Rm(rm::Args),
}

/// Runs the `chan` subcommand.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Create(args) => create::run(ctx, args).await,
        Command::Ls(args) => ls::run(ctx, args).await,
        Command::Stat(args) => stat::run(ctx, args).await,
        Command::Close(args) => close::run(ctx, args).await,
        Command::Rm(args) => rm::run(ctx, args).await,
    }
}

/// Applies `op` to each named channel in turn, printing each name it succeeded on (not with
/// `--json`) and one error line for each it failed on; exits 1 if any failed.
async fn each(
    ctx: &Ctx,
    names: Vec<String>,
    op: impl AsyncFn(&Client, &str) -> Result<(), ChanError>,
) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut code = ExitCode::SUCCESS;
    for name in names {
        match op(&client, &name).await {
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
