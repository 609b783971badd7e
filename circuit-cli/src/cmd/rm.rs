//! `circuit rm`: forgets workers and deletes their logs, one request per worker; a failure for
//! one worker is reported and the others are still removed.

use std::process::ExitCode;

use circuit_sdk::proto::Request;

use super::{expect_done, Ctx, NodeFlag};
use crate::error;
use crate::output;

/// Arguments of `circuit rm`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  circuit rm job\n  circuit rm -f web worker-2\n  circuit rm --node h3 job"
)]
pub struct Args {
    /// Stop workers that are still active before removing them.
    #[arg(short, long)]
    pub force: bool,

    /// Workers to remove (a replica set's name stands for all its copies).
    #[arg(value_name = "WORKER", add = crate::complete::workers(), required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// Removes each worker and prints its name; exits 1 if any could not be removed.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut code = ExitCode::SUCCESS;
    let mut names: std::collections::VecDeque<String> = args.names.into();
    while let Some(name) = names.pop_front() {
        let request = args.node.wrap(Request::Remove {
            name: name.clone(),
            force: args.force,
        });
        let result = match client.call(request).await {
            // A name that is no worker may be a set: its copies are removed in its place.
            Err(e) if e.is_not_found() => {
                let node = args.node.node.as_deref();
                match super::sets::copies_of(&client, &name, node).await? {
                    Some(copies) => {
                        for copy in copies.into_iter().rev() {
                            names.push_front(copy);
                        }
                        continue;
                    }
                    None => Err(e.into()),
                }
            }
            Ok(reply) => expect_done(reply),
            // The daemon's refusal says what to do already (`stop it first or use --force`).
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) if ctx.json => {}
            Ok(()) => output::line(&name)?,
            Err(e) => {
                error::print(&e);
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
