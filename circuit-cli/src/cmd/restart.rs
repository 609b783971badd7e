//! `circuit restart`: stops a worker if needed and starts it again, clearing `failed` and its
//! restart count.

use std::process::ExitCode;

use circuit_sdk::proto::Request;

use super::{expect_worker, Ctx, NodeFlag};
use crate::output;

/// Arguments of `circuit restart`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit restart web\n  circuit restart --node h3 web")]
pub struct Args {
    /// The worker.
    #[arg(value_name = "WORKER")]
    pub name: String,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Restarts the worker and prints its name (or its description, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let request = args.node.wrap(Request::Restart { name: args.name });
    let info = expect_worker(client.call(request).await?)?;
    if ctx.json {
        output::json(&info)?;
    } else {
        output::line(&info.name)?;
    }
    Ok(ExitCode::SUCCESS)
}
