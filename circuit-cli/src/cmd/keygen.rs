//! `circuit keygen FILE`: a fresh cluster key from the OS CSPRNG, written to a new 0600 file.

use std::path::PathBuf;
use std::process::ExitCode;

use circuit_sdk::secure::{write_key_file, Key};

use crate::output;

/// Arguments of `circuit keygen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit keygen /etc/circuit/cluster.key\n  \
    circuitd --listen 10.0.0.1 --key-file /etc/circuit/cluster.key\n  \
    circuit --addr 10.0.0.1:7711 --key-file /etc/circuit/cluster.key nodes")]
pub struct Args {
    /// Where to write the key (created 0600; an existing file is never overwritten). `-`
    /// prints the key instead, to pipe it somewhere safe
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Writes the key and prints its fingerprint (never the key itself, unless `-`).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = Key::generate()?;
    if args.file.as_os_str() == "-" {
        output::line(&key.to_hex())?;
        return Ok(ExitCode::SUCCESS);
    }
    write_key_file(&args.file, std::slice::from_ref(&key), false)?;
    output::line(&format!(
        "wrote a new cluster key to {} (fingerprint {})\n\
         copy it to every host (mode 0600) and start each circuitd with --key-file {}",
        args.file.display(),
        key.fingerprint(),
        args.file.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
