//! `circuit completions SHELL`: a completion script for bash, zsh or fish, from the same clap
//! definition that parses the command line, so it never drifts from the flags.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Arguments of `circuit completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit completions bash > /etc/bash_completion.d/circuit\n  \
    circuit completions zsh > \"${fpath[1]}/_circuit\"\n  \
    circuit completions fish > ~/.config/fish/completions/circuit.fish\n  \
    source <(circuit completions bash)          # this shell only")]
pub struct Args {
    /// The shell to write the script for.
    #[arg(value_name = "SHELL", value_parser = parse_shell)]
    pub shell: Shell,
}

/// The shells we support: the three the issue names. clap_complete also knows elvish and
/// PowerShell; they are accepted too, but not advertised.
fn parse_shell(s: &str) -> Result<Shell, String> {
    match s {
        "bash" => Ok(Shell::Bash),
        "zsh" => Ok(Shell::Zsh),
        "fish" => Ok(Shell::Fish),
        "elvish" => Ok(Shell::Elvish),
        "powershell" => Ok(Shell::PowerShell),
        other => Err(format!(
            "unknown shell \"{other}\" (expected bash, zsh or fish)"
        )),
    }
}

/// Writes the script to stdout.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = crate::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "circuit", &mut out);
    Ok(ExitCode::SUCCESS)
}
