//! `bench-spawn`: how fast circuitd starts and reaps short workers, how much memory it holds idle
//! and with N live workers, and how long one `stop` of N workers takes. The work is in
//! `spawnbench`.

use std::process::ExitCode;

use circuit_bench::spawnbench::{self, USAGE};

fn main() -> ExitCode {
    let args = match spawnbench::parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-spawn: error: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match spawnbench::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-spawn: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
