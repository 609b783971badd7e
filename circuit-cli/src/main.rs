//! `circuit`: the command-line client of circuitd. Parses flags, runs one subcommand on a
//! single-threaded runtime, and turns failures into one `error: ...` line and an exit code.
//!
//! # Layout
//! - `cmd`: the subcommands, one file each (clap args + `run`), and the shared [`cmd::Ctx`].
//! - `output`: tables, durations, times and JSON printing.
//! - `parse`: value parsers for flags (`K=V`, durations, byte sizes).
//! - `env_file`: `KEY=VALUE` environment files (`spawn --env-file`, a manifest's `env-file`).
//! - `error`: how a failure is shown to the user, with hints.
//! - `stdout`: what stdout is, and whether the reader took what was written (`recv`).

mod cmd;
mod complete;
mod env_file;
mod error;
mod output;
mod parse;
mod stdout;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use circuit_sdk::paths::{default_socket_path, SOCKET_ENV};
use circuit_sdk::secure::KEY_FILE_ENV;

/// Command-line client of circuitd, the cluster process manager.
#[derive(Debug, Parser)]
#[command(name = "circuit", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    circuit spawn --name web --restart always -- python3 -m http.server\n  \
    circuit spawn --node h3 --name analyzer -- ./analyze\n  \
    circuit ps -a\n  \
    circuit nodes\n  \
    circuit logs -f web\n  \
    circuit chan create jobs --cap 16 && seq 100 | circuit send jobs\n  \
    circuit recv -n 1 jobs")]
pub(crate) struct Cli {
    /// circuitd's Unix socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = SOCKET_ENV,
        hide_env_values = true,
        help = socket_help(),
        help_heading = GLOBAL,
        value_parser = clap::builder::OsStringValueParser::new()
    )]
    socket: Option<OsString>,

    /// Connect to circuitd's TCP API at this address instead of the Unix socket.
    #[arg(long, global = true, value_name = "HOST:PORT", help_heading = GLOBAL)]
    addr: Option<String>,

    /// The cluster key file: for --addr (the Unix socket needs none), and the key `install`
    /// puts on hosts.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = KEY_FILE_ENV,
        hide_env_values = true,
        help_heading = GLOBAL,
        value_parser = clap::builder::OsStringValueParser::new()
    )]
    key_file: Option<OsString>,

    /// How long connecting to circuitd and its handshake may take (`500ms`, `10s`, or seconds).
    #[arg(
        long,
        global = true,
        value_name = "DUR",
        default_value = "5s",
        value_parser = parse::duration,
        help_heading = GLOBAL
    )]
    connect_timeout: humantime::Duration,

    /// Print the daemon's replies as JSON (one object per line for streams).
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,

    /// Show tables whole: do not cut columns to the terminal's width.
    #[arg(long, global = true, help_heading = GLOBAL)]
    wide: bool,

    #[command(subcommand)]
    command: cmd::Command,
}

/// Help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

/// Help of `--socket`, naming the default path for this user.
fn socket_help() -> String {
    format!(
        "circuitd's Unix socket [default: {}]",
        default_socket_path().display()
    )
}

fn main() -> ExitCode {
    // Called back by the shell's completion script: prints candidates and exits.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .var(complete::ENV)
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    output::style::init(cli.wide);
    // An empty CIRCUIT_SOCKET means unset, as it does for the daemon and the SDK.
    let socket = match cli.socket {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default_socket_path(),
    };
    // An empty CIRCUIT_KEY_FILE means unset.
    let key_file = cli.key_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    let ctx = cmd::Ctx::new(socket, cli.addr, key_file, cli.json)
        .with_connect_timeout(cli.connect_timeout.into());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let e = anyhow::Error::new(e).context("cannot start the async runtime");
            error::report(&e, cli.json);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run(&ctx)) {
        Ok(code) => code,
        // `circuit logs w | head -1`: the reader went away, which is not a failure.
        Err(e) if error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e, cli.json);
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refused (or `--help`, `--version`): clap's text and exit code 2 for
/// usage errors; with `--json` anywhere on the line, the error as one JSON document instead.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || shown {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let text = e.render().to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    error::print_json("usage", &message);
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command and subcommand shows a short example under `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(path.clone());
                }
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&Cli::command(), "circuit", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }

    #[test]
    fn completion_scripts_call_circuit_back() {
        use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
        let shells: [&dyn EnvCompleter; 3] = [&Bash, &Zsh, &Fish];
        for shell in shells {
            let mut out = Vec::new();
            shell
                .write_registration(complete::ENV, "circuit", "circuit", "circuit", &mut out)
                .expect("script");
            let script = String::from_utf8(out).expect("utf-8");
            assert!(script.contains(complete::ENV), "{}: {script}", shell.name());
        }
    }

    #[test]
    fn spawn_takes_the_command_after_dashes() {
        let cli = Cli::try_parse_from([
            "circuit",
            "--json",
            "spawn",
            "--name",
            "web",
            "--env",
            "A=1",
            "--",
            "python3",
            "-m",
            "http.server",
        ])
        .expect("parse");
        assert!(cli.json);
        let cmd::Command::Spawn(args) = cli.command else {
            panic!("expected spawn");
        };
        assert_eq!(args.command, ["python3", "-m", "http.server"]);
    }

    #[test]
    fn mesh_commands_and_node_flags_parse() {
        for argv in [
            &["circuit", "nodes", "--json"][..],
            &["circuit", "join", "10.0.0.1:7711", "[::1]:7711"],
            &["circuit", "events"],
            &["circuit", "ps", "--node", "h2", "-a"],
            &["circuit", "logs", "--node", "h2", "-f", "w"],
            &["circuit", "stop", "--node", "h2", "w", "v"],
            &["circuit", "restart", "w", "--node", "h2"],
            &["circuit", "signal", "HUP", "w", "--node", "h2"],
            &["circuit", "wait", "--node", "h2", "w"],
            &["circuit", "rm", "-f", "--node", "h2", "w"],
            &["circuit", "chan", "create", "jobs", "--node", "h2"],
            &[
                "circuit",
                "spawn",
                "--label",
                "gpu=yes",
                "--replicas",
                "2",
                "--",
                "true",
            ],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
        for bad in [
            &["circuit", "join"][..],
            &["circuit", "join", "h1:x"],
            &["circuit", "nodes", "extra"],
            &["circuit", "wait", "--node", "w"],
            &["circuit", "stop", "--node", "", "w"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channel_commands_take_global_flags_anywhere() {
        for argv in [
            &[
                "circuit",
                "recv",
                "-n",
                "3",
                "--timeout",
                "500ms",
                "jobs",
                "--json",
            ][..],
            &["circuit", "send", "jobs"],
            &["circuit", "--json", "send", "jobs", "a value"],
            &[
                "circuit",
                "chan",
                "create",
                "jobs",
                "--cap",
                "16",
                "--exist-ok",
            ],
            &["circuit", "chan", "stat", "jobs", "--addr", "127.0.0.1:0"],
            &["circuit", "chan", "rm", "a", "b"],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
        for bad in [
            &["circuit", "recv"][..],
            &["circuit", "recv", "-n", "x", "jobs"],
            &["circuit", "recv", "--timeout", "soon", "jobs"],
            &["circuit", "chan", "create", "jobs", "--cap", "-1"],
            &["circuit", "chan", "close"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
