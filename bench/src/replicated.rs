//! `bench-replicated`: replicated channels (`--replicas 3`) beside circuit's one-owner channels
//! and NATS JetStream R3 — throughput, round trips, and failover after `kill -9` of the leader.
//! The work is in `replbench`.

use std::process::ExitCode;

use circuit_bench::chanbench::{self, ctx::RoleArgs};
use circuit_bench::replbench::{self, RunArgs};
use clap::{Parser, Subcommand};

/// Replicated channels against one-owner channels and NATS JetStream R3, side by side, in
/// interleaved rounds. Prints Markdown tables on stdout (progress on stderr). Exits 0 once it
/// has measured, whether or not the targets pass; non-zero on an error.
#[derive(Debug, Parser)]
#[command(name = "bench-replicated", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// One client process of a trial; the harness starts these itself.
    #[command(hide = true)]
    Role(RoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Role::Role(args)) = cli.role {
        return chanbench::role::main(args);
    }
    match replbench::run(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-replicated: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
