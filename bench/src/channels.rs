//! `bench-channels`: circuit's channels beside NATS core and JetStream (async-nats and the C
//! client), ZeroMQ and a raw Unix socket — throughput, round-trip latency, server CPU and lost or
//! duplicated messages at the same payload sizes. The work is in `chanbench`.

use std::process::ExitCode;

use circuit_bench::chanbench::{self, ctx::RoleArgs, RunArgs};
use clap::{Parser, Subcommand};

/// Circuit's channels against NATS core, JetStream, ZeroMQ and a raw Unix socket, side by side.
/// Prints Markdown tables on stdout (progress on stderr). Exits 0 once it has measured, whether
/// or not the targets are met; non-zero on an error. The C contenders' programs must sit next to
/// this binary: `scripts/bench-channels.sh` compiles them.
#[derive(Debug, Parser)]
#[command(name = "bench-channels", args_conflicts_with_subcommands = true)]
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
    match chanbench::run(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-channels: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
