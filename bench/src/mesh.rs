//! `bench-mesh`: the mesh on real daemons in Linux network namespaces — join convergence,
//! failure detection after `kill -9`, idle gossip traffic, channel throughput across nodes and
//! a soak under CPU load. Root only. The work is in `meshbench`.

use std::process::ExitCode;

use circuit_bench::chanbench::{self, ctx::RoleArgs};
use circuit_bench::meshbench::{self, RunArgs};
use clap::{Parser, Subcommand};

/// The mesh measured on circuitd daemons, one per network namespace made by
/// `scripts/netns-cluster.sh`. Prints Markdown tables on stdout (progress on stderr). Exits 0
/// once it has measured, whether or not the targets pass; non-zero on an error.
#[derive(Debug, Parser)]
#[command(name = "bench-mesh", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// A channel sender or receiver of a trial, run in its host's namespace; the harness starts
    /// these itself.
    #[command(hide = true)]
    Role(RoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Role::Role(args)) = cli.role {
        return chanbench::role::main(args);
    }
    match meshbench::run(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-mesh: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
