//! `circuit chan create`: asks the daemon for a new channel and prints its name (or its
//! description, with `--json`), as `circuit spawn` does for a worker.

use std::process::ExitCode;

use circuit_sdk::chan::ChanError;
use circuit_sdk::proto::{Reply, Request};

use crate::cmd::{on, unexpected, Ctx};
use crate::error::{self, CliError};
use crate::output;

/// Arguments of `circuit chan create`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit chan create jobs               # unbuffered: each send waits for a receiver\n  \
    circuit chan create results --cap 64   # holds 64 values before a send waits\n  \
    circuit chan create jobs --exist-ok    # fine if jobs (capacity 0) exists already\n  \
    circuit chan create jobs --node h3     # owned by h3\n  \
    circuit chan create q --cap 64 --replicas 3   # held by 3 nodes: survives the loss of 1\n  \
    circuit chan create q --replicas 3 --replica-labels zone=a")]
pub struct Args {
    /// Values the channel holds before a send waits. 0 is a rendezvous channel, like Go's
    /// `make(chan T)`: every send waits until a receiver takes the value.
    #[arg(long, value_name = "N", default_value_t = 0, allow_hyphen_values = true,
          value_parser = crate::parse::capacity)]
    cap: u64,

    /// Succeed if a channel of this name and capacity exists already.
    #[arg(long)]
    exist_ok: bool,

    /// The node that owns the channel [default: the one circuit talks to].
    #[arg(long, value_name = "NAME", add = crate::complete::nodes(), value_parser = clap::builder::NonEmptyStringValueParser::new())]
    node: Option<String>,

    /// How many nodes hold the channel: 1 (one owner), or 3 or 5 (replicated through Raft: it
    /// keeps serving, losing nothing, while a majority of them is alive).
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: u32,

    /// Replicas only on nodes with these labels (KEY=VALUE, comma-separated).
    #[arg(long, value_name = "K=V,...", value_delimiter = ',')]
    replica_labels: Vec<String>,

    /// Where a replicated channel keeps its log: memory (the default).
    #[arg(long, value_name = "memory|disk", add = crate::complete::values(&["memory", "disk"]))]
    storage: Option<String>,

    /// The channel: 1 to 128 characters of A-Z a-z 0-9 . _ - /
    #[arg(value_name = "NAME")]
    name: String,
}

/// Creates the channel and prints its name (or its description, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let request = on(
        args.node,
        Request::ChanCreate {
            name: args.name.clone(),
            capacity: args.cap,
            exist_ok: args.exist_ok,
            replicas: (args.replicas != 1).then_some(args.replicas),
            replica_labels: args.replica_labels,
            storage: args.storage,
        },
    );
    let info = match client.call(request).await.map_err(ChanError::from) {
        Ok(Reply::Chan(info)) => info,
        Ok(other) => return Err(unexpected("a channel", &other)),
        Err(ChanError::AlreadyExists(message)) => {
            let hint = if args.exist_ok {
                "--exist-ok accepts only a channel of the same capacity".to_string()
            } else {
                format!(
                    "pass --exist-ok to use it, or remove it first with `circuit chan rm {}`",
                    args.name
                )
            };
            return Err(CliError::hinted(message, hint));
        }
        Err(e) => return Err(error::chan(e, &args.name)),
    };
    if ctx.json {
        output::json(&info)?;
    } else {
        output::line(&info.name)?;
    }
    Ok(ExitCode::SUCCESS)
}
