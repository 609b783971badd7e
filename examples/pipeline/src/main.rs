//! `pipeline`: runs the example in one process (`local`), as circuit workers (`distributed`),
//! or as one of those workers (`fetch`, `analyze`, `store`). The result is one line of JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use circuit_pipeline::distributed::{self, Nodes, Setup};
use circuit_pipeline::{local, remote, Params};

/// fetch → analyze → store, in one process or spread over circuit workers.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
#[command(after_help = "Examples:\n  \
    pipeline local --docs 1000 --seed 7\n  \
    pipeline distributed --docs 1000 --seed 7 --analyzers 4   # needs a running circuitd\n  \
    pipeline distributed --nodes h1,h2,h3                      # fetch on h1, analyze on h2, store on h3")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every stage in this process, on tokio channels, and prints the result.
    Local(#[command(flatten)] Params),
    /// Runs every stage as a circuitd worker, on named channels, and prints the result.
    Distributed {
        #[command(flatten)]
        params: Params,
        /// Starts the names of the channels and workers this run creates.
        #[arg(long, default_value = "pipeline-")]
        prefix: String,
        /// Makes each analyzer wait this long between passing counts on and acknowledging the
        /// document: slows the run down and widens the window a crash leaves a duplicate in.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        analyze_delay_ms: u64,
        /// Runs fetch, the analyzers and store on these mesh nodes (channels live with the
        /// stage that reads them) [default: all on the daemon at CIRCUIT_SOCKET].
        #[arg(long, value_name = "FETCH,ANALYZE,STORE")]
        nodes: Option<Nodes>,
        /// Replicas of each channel: 1, or 3 or 5 (replicated channels, placed by circuitd,
        /// which survive the death of their leader's node).
        #[arg(long, default_value_t = 1, value_parser = replica_count)]
        replicas: u32,
    },
    /// Worker: generates the documents into the channel bound to `out`, then closes it.
    Fetch {
        /// Documents to generate.
        #[arg(long)]
        docs: u64,
        /// Seed of the generator.
        #[arg(long)]
        seed: u64,
    },
    /// Worker: counts the words of documents from `in` into `out` until `in` is drained.
    Analyze {
        /// Pause between passing a document's counts on and acknowledging it.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        pause_ms: u64,
    },
    /// Worker: adds up the counts from `in` and sends the summary of all documents to `out`.
    Store {
        /// Documents to expect.
        #[arg(long)]
        docs: u64,
    },
}

/// `--replicas`: 1, 3 or 5.
fn replica_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err(format!("{s}: expected 1, 3 or 5")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Local(params) => local::run(&params).await.map(Some),
        Command::Distributed {
            params,
            prefix,
            analyze_delay_ms,
            nodes,
            replicas,
        } => {
            let setup = Setup {
                params,
                prefix,
                analyze_pause: Duration::from_millis(analyze_delay_ms),
                nodes,
                replicas,
            };
            distributed::run(&setup).await.map(Some)
        }
        Command::Fetch { docs, seed } => remote::fetch(seed, docs).await.map(|()| None),
        Command::Analyze { pause_ms } => remote::analyze(Duration::from_millis(pause_ms))
            .await
            .map(|()| None),
        Command::Store { docs } => remote::store(docs).await.map(Some),
    };
    match result {
        Ok(report) => {
            if let Some(report) = report {
                println!("{}", report.summary.to_line());
                if report.duplicates > 0 {
                    let n = report.duplicates;
                    eprintln!(
                        "note: dropped {n} duplicate counts (documents redone after a crash)"
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
