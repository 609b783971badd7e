//! `circuit signal`: sends a signal to a worker's main process, or to its whole process group.

use std::process::ExitCode;

use circuit_sdk::proto::Request;

use super::{expect_done, Ctx, NodeFlag};
use crate::output;

/// Arguments of `circuit signal`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  circuit signal HUP web\n  circuit signal --group USR1 --node h3 web"
)]
pub struct Args {
    /// Signal name or number (HUP, SIGUSR1, 10, ...).
    #[arg(value_name = "SIG")]
    pub signal: String,

    /// The worker.
    #[arg(value_name = "WORKER", add = crate::complete::workers())]
    pub name: String,

    /// Signal every process in the worker's process group, not only its main process.
    #[arg(short, long)]
    pub group: bool,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Sends the signal and prints the worker's name (nothing, with `--json`: the reply is empty).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let request = args.node.wrap(Request::Signal {
        name: args.name.clone(),
        signal: args.signal,
        group: args.group,
    });
    let client = ctx.connect().await?;
    expect_done(client.call(request).await?)?;
    if !ctx.json {
        output::line(&args.name)?;
    }
    Ok(ExitCode::SUCCESS)
}
