//! `circuit restart`: stops a worker if needed and starts it again, clearing `failed` and its
//! restart count. A replica set's name restarts all its copies at once, or with `--rolling`
//! one at a time, each running again before the next is stopped.

use std::process::ExitCode;

use circuit_sdk::proto::{Request, WorkerInfo};

use super::{expect_worker, Ctx, NodeFlag};
use crate::output;

/// Arguments of `circuit restart`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  circuit restart web\n  circuit restart --rolling api\n  circuit restart --node h3 web"
)]
pub struct Args {
    /// One copy at a time: each is running again before the next is stopped.
    #[arg(long)]
    pub rolling: bool,

    /// The worker, or a replica set (all its copies).
    #[arg(value_name = "WORKER", add = crate::complete::workers())]
    pub name: String,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Restarts the worker and prints its name (or its description, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let restart = |name: String| {
        let request = args.node.wrap(Request::Restart { name });
        let client = &client;
        async move { expect_worker(client.call(request).await?) }
    };
    // A worker by that name, or else a set: its copies.
    let names = match restart(args.name.clone()).await {
        Err(e) if super::sets::not_found(&e) => {
            match super::sets::copies_of(&client, &args.name, args.node.node.as_deref()).await? {
                Some(copies) => copies,
                None => return Err(e),
            }
        }
        Ok(info) => {
            if ctx.json {
                output::json(&info)?;
            } else {
                output::line(&info.name)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    let restarted: Vec<WorkerInfo> = if args.rolling {
        let mut done = Vec::new();
        for name in names {
            let info = restart(name).await?;
            if !ctx.json {
                output::line(&info.name)?;
            }
            done.push(info);
        }
        done
    } else {
        let all = futures::future::join_all(names.into_iter().map(restart)).await;
        let done = all.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        if !ctx.json {
            for info in &done {
                output::line(&info.name)?;
            }
        }
        done
    };
    if ctx.json {
        // A set: its copies, however many.
        output::json_list("workers", &restarted)?;
    }
    Ok(ExitCode::SUCCESS)
}
