//! `bench-crypto`: cross-node channel throughput with the cluster key against the same run
//! without it, on loopback, plus the Noise transport alone. The work is in `cryptobench`.

use std::process::ExitCode;

use circuit_bench::chanbench::{self, ctx::RoleArgs};
use circuit_bench::cryptobench::{self, RunArgs};
use clap::{Parser, Subcommand};

/// What encryption costs a cross-node channel. Starts two pairs of circuitd on 127.0.0.1
/// (no root needed): "plain" without a cluster key (loopback development mode) and
/// "encrypted" with one key file on both daemons. In each pair the sender's daemon (b) relays
/// every value over its peer link to the daemon that owns the channel (a), where the receiver
/// takes it. After a warm-up per pair and size, it runs --trials trials per size, alternating
/// plain and encrypted, each sending the same message count (calibrated for --duration), then
/// times the Noise transport alone against plain TCP. Prints Markdown tables on stdout
/// (progress on stderr): msgs/s and MB/s, the cost of encryption (between medians, and the
/// median of the per-trial plain/encrypted pairs) with PASS/FAIL against ≤ 15 % at 256 B,
/// daemon CPU per million messages, and the microbenchmark. Exits 0 once it has measured,
/// whether or not the target passes; non-zero on an error.
#[derive(Debug, Parser)]
#[command(name = "bench-crypto", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The sender or receiver of a trial; the harness starts these itself.
    #[command(hide = true)]
    Role(RoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Role::Role(args)) = cli.role {
        return chanbench::role::main(args);
    }
    match cryptobench::run(&cli.run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-crypto: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
