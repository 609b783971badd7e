//! `circuit scale SET N`: makes replica set SET have N copies. New copies take the next
//! numbers and the spec of the set's lowest-numbered copy, placed like `spawn` places them;
//! removed copies are the highest-numbered, stopped and forgotten; the others are not touched.

use std::process::ExitCode;

use circuit_sdk::proto::{Placement, Request, MAX_REPLICAS};

use super::sets::{all_workers, members};
use super::{expect_done, expect_workers, Ctx};
use crate::error::CliError;
use crate::output;

/// Arguments of `circuit scale`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit spawn --replicas 3 --name api -- ./api\n  \
    circuit scale api 5   # adds api-4 and api-5\n  \
    circuit scale api 2   # removes api-5, api-4 and api-3")]
pub struct Args {
    /// The set (the `--name` of `spawn --replicas`).
    #[arg(value_name = "SET", add = crate::complete::workers())]
    pub set: String,

    /// How many copies it should have.
    #[arg(value_name = "N", value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_REPLICAS)))]
    pub copies: u32,
}

/// Adds or removes copies and prints what it did (the set's copies, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let workers = all_workers(&client, None).await?;
    let copies = members(&workers, &args.set);
    let Some((_, first)) = copies.first() else {
        return Err(CliError::hinted(
            format!("no replica set named \"{}\"", args.set),
            "sets are made by `circuit spawn --replicas N --name SET`; see `circuit ps`",
        ));
    };
    let want = args.copies as usize;
    let mut lines = Vec::new();
    if want > copies.len() {
        let first_new = copies.last().map_or(1, |(i, _)| i + 1);
        let added = (want - copies.len()) as u32;
        for next in first_new..first_new + added {
            let mut spec = first.spec.clone();
            spec.name = Some(format!("{}-{next}", args.set));
            let placement = Placement {
                spec,
                replicas: 1,
                ..Placement::default()
            };
            for w in expect_workers(client.call(Request::Place(placement)).await?)? {
                lines.push(format!("started {} on {}", w.name, w.node));
            }
        }
    }
    for (_, w) in copies.iter().rev().take(copies.len().saturating_sub(want)) {
        let remove = Request::On {
            node: w.node.clone(),
            request: Box::new(Request::Remove {
                name: w.name.clone(),
                force: true,
            }),
        };
        expect_done(client.call(remove).await?)?;
        lines.push(format!("removed {} on {}", w.name, w.node));
    }
    if ctx.json {
        let workers = all_workers(&client, None).await?;
        let now: Vec<_> = members(&workers, &args.set)
            .into_iter()
            .map(|(_, w)| w.clone())
            .collect();
        output::json_list("workers", &now)?;
    } else if lines.is_empty() {
        output::line(&format!("{} has {want} copies already", args.set))?;
    } else {
        for line in lines {
            output::line(&line)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
