//! `circuit stop`: stops workers (the stop signal to each process group, SIGKILL after the
//! grace period) and prints how each one ended.

use std::process::ExitCode;

use circuit_sdk::proto::Request;

use super::{expect_workers, Ctx, NodeFlag};
use crate::{output, parse};

/// Arguments of `circuit stop`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit stop web\n  \
    circuit stop --signal INT --timeout 30s web worker-2\n  \
    circuit stop --node h3 web")]
pub struct Args {
    /// Signal to send instead of the worker's stop signal (TERM, INT, 15, ...).
    #[arg(short, long, value_name = "SIG")]
    pub signal: Option<String>,

    /// Time to wait before SIGKILL, instead of the worker's grace period.
    #[arg(short, long, value_name = "DUR", value_parser = parse::duration)]
    pub timeout: Option<humantime::Duration>,

    /// Workers to stop; none is touched unless all exist.
    #[arg(value_name = "WORKER", required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Stops the workers and prints `name: state (how it ended)` for each.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let request = args.node.wrap(Request::Stop {
        names: args.names,
        signal: args.signal,
        timeout_ms: args.timeout.map(parse::millis),
    });
    let client = ctx.connect().await?;
    let workers = expect_workers(client.call(request).await?)?;
    if ctx.json {
        output::json(&workers)?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in &workers {
        match w.last_exit {
            Some(exit) => output::line(&format!("{}: {} ({exit})", w.name, w.state))?,
            None => output::line(&format!("{}: {}", w.name, w.state))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
