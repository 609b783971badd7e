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
    #[arg(short, long, value_name = "SIG", add = crate::complete::values(crate::complete::SIGNALS))]
    pub signal: Option<String>,

    /// Time to wait before SIGKILL, instead of the worker's grace period.
    #[arg(short, long, value_name = "DUR", value_parser = parse::duration)]
    pub timeout: Option<humantime::Duration>,

    /// Workers to stop (a replica set's name stands for all its copies); none is touched unless
    /// all exist.
    #[arg(value_name = "WORKER", add = crate::complete::workers(), required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Stops the workers and prints `name: state (how it ended)` for each.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let stop = |names: Vec<String>| {
        args.node.wrap(Request::Stop {
            names,
            signal: args.signal.clone(),
            timeout_ms: args.timeout.map(parse::millis),
        })
    };
    let reply = match client.call(stop(args.names.clone())).await {
        // A name that is no worker may be a set: its copies, then.
        Err(e) if e.is_not_found() => {
            let node = args.node.node.as_deref();
            let names = super::sets::expand(&client, args.names.clone(), node).await?;
            if names == args.names {
                return Err(e.into());
            }
            client.call(stop(names)).await?
        }
        other => other?,
    };
    let workers = expect_workers(reply)?;
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
