//! `circuit stop`: stops workers (the stop signal to each process group, SIGKILL after the
//! grace period) and prints how each one ended.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use circuit_sdk::proto::{ExitStatus, Request, WorkerInfo};

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
    let mut names = args.names.clone();
    let started = Instant::now();
    let reply = loop {
        let call = client.call(stop(names.clone()));
        let result = match ctx.json {
            true => call.await,
            false => say_while_waiting(call, &names).await,
        };
        match result {
            // A name that is no worker may be a set: its copies, then.
            Err(e) if e.is_not_found() && names == args.names => {
                let node = args.node.node.as_deref();
                names = super::sets::expand(&client, args.names.clone(), node).await?;
                if names == args.names {
                    return Err(e.into());
                }
            }
            other => break other?,
        }
    };
    let workers = expect_workers(reply)?;
    if ctx.json {
        output::json_list("workers", &workers)?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in &workers {
        let mut text = match w.last_exit {
            Some(exit) => format!("{}: {} ({exit})", w.name, w.state),
            None => format!("{}: {}", w.name, w.state),
        };
        if let Some(why) = killed(w, args.signal.as_deref(), args.timeout, started.elapsed()) {
            text.push_str(&format!(" — {why}"));
        }
        if !w.escaped.is_empty() {
            text.push_str(&format!(
                "; it also stopped {} that had left the worker's process group",
                output::processes(&w.escaped)
            ));
        }
        output::line(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a stop may take before the user is told what it waits for.
const PATIENCE: Duration = Duration::from_secs(1);

/// Awaits `call`; if it takes longer than [`PATIENCE`], says once on stderr what it waits for.
async fn say_while_waiting<T>(call: impl Future<Output = T>, names: &[String]) -> T {
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => return result,
        () = tokio::time::sleep(PATIENCE) => {}
    }
    eprintln!(
        "waiting for {} to exit; circuitd sends SIGKILL when the grace period ends",
        names.join(", ")
    );
    call.await
}

/// Why `w` ended by SIGKILL when it was asked to stop with another signal: it did not exit
/// within its grace period. `None` when it exited on the stop signal.
fn killed(
    w: &WorkerInfo,
    signal: Option<&str>,
    timeout: Option<humantime::Duration>,
    took: Duration,
) -> Option<String> {
    let asked = signal.unwrap_or(&w.spec.stop.signal);
    let asked_kill = matches!(
        asked
            .trim_start_matches("SIG")
            .to_ascii_uppercase()
            .as_str(),
        "KILL" | "9"
    );
    if asked_kill || w.last_exit != Some(ExitStatus::Signal { signal: 9 }) {
        return None;
    }
    let grace = timeout.map_or(Duration::from_millis(w.spec.stop.grace_ms), Into::into);
    Some(format!(
        "it did not exit on SIG{} within its {} grace period, so circuitd sent SIGKILL \
         (the stop took {})",
        asked.trim_start_matches("SIG").to_ascii_uppercase(),
        output::duration(grace),
        output::duration(took),
    ))
}
