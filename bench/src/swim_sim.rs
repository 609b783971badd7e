//! `bench-swim-sim`: the membership layer at 100 to 2,000 members, simulated on a virtual clock
//! (real foca, the daemon's identity and configuration). The work is in `swimsim`.

use std::process::ExitCode;

use circuit_bench::swimsim::{self, RunArgs};
use clap::Parser;

/// Simulates SWIM membership at sizes one machine cannot host as real daemons: join
/// convergence, failure detection, false suspicions and gossip load, on a virtual clock.
/// Prints Markdown tables on stdout, every one labelled SIMULATED; progress on stderr.
#[derive(Debug, Parser)]
#[command(name = "bench-swim-sim")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match swimsim::run(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-swim-sim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
