//! `circuit wait`: blocks until a worker has ended and exits with its exit code, so that
//! scripts can use `circuit wait job && next-step`.

use std::io::{self, Write};
use std::process::ExitCode;

use circuit_sdk::proto::{Reply, Request, WorkerState};

use super::{exit_code, unexpected, Ctx, NodeFlag};
use crate::output;

/// Arguments of `circuit wait`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit spawn --name job -- ./job.sh && circuit wait job\n  \
    circuit wait --node h3 job")]
pub struct Args {
    /// The worker.
    #[arg(value_name = "WORKER", add = crate::complete::workers())]
    pub name: String,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Waits for the end; exits with the worker's code, or 128 + the signal that killed it.
/// A worker that failed has its reason printed on stderr, and so has one lost with its node.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let request = args.node.wrap(Request::Wait { name: args.name });
    let end = match client.call(request).await? {
        Reply::End(end) => end,
        other => return Err(unexpected("end", &other)),
    };
    if ctx.json {
        output::json(&end)?;
    }
    let explain = match end.state {
        WorkerState::Failed => end.reason.is_some(),
        WorkerState::Lost => true,
        _ => false,
    };
    if explain {
        let _ = writeln!(io::stderr().lock(), "circuit: {}", output::worker_end(&end));
    }
    Ok(exit_code(end.shell_code()))
}
