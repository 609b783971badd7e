//! `circuit spawn`: builds a `SpawnSpec` from flags and asks the daemon to start it.
//! Flag defaults are the SDK's spec defaults, so `--help` shows what the daemon will use.

use std::path::Path;
use std::process::ExitCode;

use circuit_sdk::proto::{
    EnvMode, ErrorCode, LogSpec, Request, RestartPolicy, RestartSpec, SpawnSpec, StopSpec,
};

use super::{expect_worker, Ctx};
use crate::error::CliError;
use crate::{output, parse};

/// Arguments of `circuit spawn`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit spawn --name web --restart always -- python3 -m http.server\n  \
    circuit spawn --chan in=jobs --chan out=results --env LEVEL=debug -- ./worker")]
pub struct Args {
    /// Worker name, unique on the node [default: derived from the command].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// When to start the worker again after it exits: never, on-failure or always.
    #[arg(long, value_name = "POLICY", default_value = "never")]
    pub restart: RestartPolicy,

    /// Set an environment variable (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub env: Vec<(String, String)>,

    /// Start from an empty environment instead of circuitd's, plus the --env variables.
    #[arg(long)]
    pub env_replace: bool,

    /// Working directory [default: circuitd's].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Attach a label (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,

    /// Bind a channel: `--chan in=jobs` gives the worker CIRCUIT_CHAN_IN=jobs (repeatable).
    #[arg(long = "chan", value_name = "NAME=CHANNEL", value_parser = parse::chan_binding)]
    pub chans: Vec<(String, String)>,

    /// Signal sent to the worker's process group to stop it (TERM, INT, 15, ...).
    #[arg(long, value_name = "SIG", default_value_t = StopSpec::default().signal)]
    pub stop_signal: String,

    /// Time between the stop signal and SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = parse::duration,
          default_value_t = parse::from_millis(StopSpec::default().grace_ms))]
    pub stop_timeout: humantime::Duration,

    /// First delay before a restart; it doubles on each restart.
    #[arg(long, value_name = "DUR", value_parser = parse::duration,
          default_value_t = parse::from_millis(RestartSpec::default().backoff_initial_ms))]
    pub backoff: humantime::Duration,

    /// Largest delay before a restart.
    #[arg(long, value_name = "DUR", value_parser = parse::duration,
          default_value_t = parse::from_millis(RestartSpec::default().backoff_max_ms))]
    pub backoff_max: humantime::Duration,

    /// A run at least this long resets the backoff delay.
    #[arg(long, value_name = "DUR", value_parser = parse::duration,
          default_value_t = parse::from_millis(RestartSpec::default().stable_after_ms))]
    pub stable_after: humantime::Duration,

    /// Give up (state failed) after this many restarts within --restart-window; 0 never gives up.
    #[arg(long, value_name = "N", default_value_t = RestartSpec::default().max_restarts)]
    pub max_restarts: u32,

    /// The window in which --max-restarts are counted.
    #[arg(long, value_name = "DUR", value_parser = parse::duration,
          default_value_t = parse::from_millis(RestartSpec::default().window_ms))]
    pub restart_window: humantime::Duration,

    /// Rotate the worker's log file at this size (4096, 512K, 10M) [default: circuitd's].
    #[arg(long, value_name = "BYTES", value_parser = parse::bytes)]
    pub log_max_size: Option<u64>,

    /// Rotated log files to keep besides the current one [default: circuitd's].
    #[arg(long, value_name = "N")]
    pub log_max_files: Option<u32>,

    /// The program and its arguments, after `--`.
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// Starts the worker and prints its name (or its description, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let spec = spec(args, ctx.is_local())?;
    let client = ctx.connect().await?;
    let info = match client.call(Request::Spawn(spec)).await {
        Ok(reply) => expect_worker(reply)?,
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
            return Err(CliError::hinted(
                e,
                "choose another --name, or remove the old worker with `circuit rm`",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        output::json(&info)?;
    } else {
        output::line(&info.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The spec the flags describe. A relative `--cwd` is made absolute when the daemon is local,
/// since the user meant it relative to where they stand, not to where circuitd started.
fn spec(args: Args, local: bool) -> anyhow::Result<SpawnSpec> {
    let mut words = args.command.into_iter();
    let command = words.next().unwrap_or_default();
    let cwd = match args.cwd {
        Some(dir) if local && Path::new(&dir).is_relative() => {
            let here = std::env::current_dir()
                .map_err(|e| CliError::hinted(e, "pass an absolute --cwd"))?;
            Some(here.join(dir).display().to_string())
        }
        other => other,
    };
    Ok(SpawnSpec {
        command,
        args: words.collect(),
        env: args.env.into_iter().collect(),
        env_mode: if args.env_replace {
            EnvMode::Replace
        } else {
            EnvMode::Merge
        },
        cwd,
        name: args.name,
        labels: args.labels.into_iter().collect(),
        chans: args.chans.into_iter().collect(),
        restart: RestartSpec {
            policy: args.restart,
            backoff_initial_ms: parse::millis(args.backoff),
            backoff_max_ms: parse::millis(args.backoff_max),
            stable_after_ms: parse::millis(args.stable_after),
            max_restarts: args.max_restarts,
            window_ms: parse::millis(args.restart_window),
        },
        stop: StopSpec {
            signal: args.stop_signal,
            grace_ms: parse::millis(args.stop_timeout),
        },
        log: LogSpec {
            max_bytes: args.log_max_size,
            max_files: args.log_max_files,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn spec_of(argv: &[&str]) -> SpawnSpec {
        let cli = Cli::try_parse_from(std::iter::once("spawn").chain(argv.iter().copied()))
            .expect("parse");
        spec(cli.args, false).expect("spec")
    }

    #[test]
    fn no_flags_give_the_sdk_defaults() {
        let want = SpawnSpec {
            command: "sleep".into(),
            args: vec!["1".into()],
            ..SpawnSpec::default()
        };
        assert_eq!(spec_of(&["--", "sleep", "1"]), want);
    }

    #[test]
    fn flags_fill_the_spec() {
        let s = spec_of(&[
            "--restart",
            "on-failure",
            "--env",
            "A=1=2",
            "--chan",
            "in=jobs",
            "--backoff",
            "500ms",
            "--cwd",
            "rel",
            "--log-max-size",
            "1M",
            "--",
            "./w",
            "-v",
        ]);
        assert_eq!(s.restart.policy, RestartPolicy::OnFailure);
        assert_eq!(s.env.get("A").map(String::as_str), Some("1=2"));
        assert_eq!(s.chans.get("in").map(String::as_str), Some("jobs"));
        assert_eq!(s.restart.backoff_initial_ms, 500);
        assert_eq!(
            (s.cwd.as_deref(), s.log.max_bytes),
            (Some("rel"), Some(1 << 20))
        );
        assert_eq!(
            (s.command.as_str(), s.args.as_slice()),
            ("./w", &["-v".to_string()][..])
        );
    }
}
