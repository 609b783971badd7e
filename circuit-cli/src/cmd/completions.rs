//! `circuit completions SHELL`: a completion script for bash, zsh or fish. The script calls
//! `circuit` back while completing (with `CIRCUIT_COMPLETE` set), so flags come from the same
//! clap definition that parses the command line, and worker, set, channel and node names from
//! the daemon (see `complete.rs`).

use std::process::ExitCode;

use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

/// Arguments of `circuit completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit completions bash > /etc/bash_completion.d/circuit\n  \
    circuit completions zsh > \"${fpath[1]}/_circuit\"\n  \
    circuit completions fish > ~/.config/fish/completions/circuit.fish\n  \
    source <(circuit completions bash)          # this shell only")]
pub struct Args {
    /// The shell to write the script for: bash, zsh or fish.
    #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// Writes the script to stdout. It calls back the `circuit` found on `PATH` when completing.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shell: &dyn EnvCompleter = match args.shell.as_str() {
        "zsh" => &Zsh,
        "fish" => &Fish,
        _ => &Bash,
    };
    let mut out = std::io::stdout().lock();
    shell.write_registration(
        crate::complete::ENV,
        "circuit",
        "circuit",
        "circuit",
        &mut out,
    )?;
    Ok(ExitCode::SUCCESS)
}
