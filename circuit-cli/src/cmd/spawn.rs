//! `circuit spawn`: builds a `SpawnSpec` from flags and asks the daemon to place it — on a
//! named node, on nodes with given labels, or on the least loaded node — in one or more copies.
//! Flag defaults are the SDK's spec defaults, so `--help` shows what the daemon will use.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use circuit_sdk::proto::{
    EnvMode, ErrorCode, LogSpec, Placement, Request, RestartPolicy, RestartSpec, SpawnSpec,
    StopSpec, WorkerInfo, MAX_REPLICAS,
};

use super::{expect_workers, Ctx};
use crate::error::CliError;
use crate::{env_file, output, parse};

/// Arguments of `circuit spawn`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit spawn --name web --restart always -- python3 -m http.server\n  \
    circuit spawn --node h3 --chan in=jobs --chan out=results --env LEVEL=debug -- ./worker\n  \
    circuit spawn --label gpu=yes --replicas 4 --name analyzer -- ./analyze   # analyzer-1..4\n\n\
On a terminal, spawn prints `started NAME on NODE (pid N)` for each worker; through a pipe,\n\
only each worker's name, one per line: `circuit wait $(circuit spawn -- ./job)`.\n\n\
Directory: through the Unix socket (the default), a worker runs in the directory you run\n\
`circuit spawn` from, so `-- ./run.sh` and `-- python3 app.py` mean what they mean in your\n\
shell. That holds on whichever node it is placed (--node, --label or the least loaded): the\n\
directory must exist there too, or the spawn fails naming the node and the directory.\n\
Through --addr, it runs in circuitd's own directory on that host (your path means nothing\n\
there). --cwd DIR overrides both; a relative DIR is taken from your directory (through\n\
--addr, from circuitd's). A command with a `/` is resolved against the worker's directory;\n\
a bare name is looked up in PATH.\n\n\
Environment: circuitd's own (as circuitd was started, not your shell's), then the\n\
--env-file files in order, then --env (a later one wins), then CIRCUIT_SOCKET, CIRCUIT_NODE,\n\
CIRCUIT_WORKER and CIRCUIT_CHAN_<NAME> for each --chan, which override everything. With\n\
--env-replace circuitd's environment is left out (PATH too, unless you set one).")]
pub struct Args {
    /// Worker name, unique on the node [default: derived from the command]. With --replicas,
    /// copy i is named NAME-i.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Run on this node [default: the least loaded node that matches --label].
    #[arg(long, value_name = "NODE", add = crate::complete::nodes(), value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub node: Option<String>,

    /// Run on a node that has this label (repeatable: all must match). Node labels are given
    /// with `circuitd --label`; see `circuit nodes`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::key_value,
          conflicts_with = "node")]
    pub selector: Vec<(String, String)>,

    /// Copies to start, spread over the matching nodes, least loaded first.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_REPLICAS)))]
    pub replicas: u32,

    /// When to start the worker again after it exits: never, on-failure or always.
    #[arg(long, value_name = "POLICY", default_value = "never",
          add = crate::complete::values(&["never", "on-failure", "always"]))]
    pub restart: RestartPolicy,

    /// Set an environment variable (repeatable); wins over --env-file.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub env: Vec<(String, String)>,

    /// Set the variables of a file of KEY=VALUE lines (repeatable: a later file wins). Blank
    /// lines and `#` comments are skipped, `export KEY=VALUE` is allowed. Read by circuit, on
    /// this host.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// Start from an empty environment instead of circuitd's: only --env-file, --env and the
    /// CIRCUIT_* variables.
    #[arg(long)]
    pub env_replace: bool,

    /// Working directory [default: the one you run circuit from; through --addr, circuitd's].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Attach a label to the worker itself, for people and scripts (repeatable).
    #[arg(long = "worker-label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,

    /// Bind a channel: `--chan in=jobs` gives the worker CIRCUIT_CHAN_IN=jobs (repeatable).
    #[arg(long = "chan", value_name = "NAME=CHANNEL", value_parser = parse::chan_binding)]
    pub chans: Vec<(String, String)>,

    /// Signal sent to the worker's process group to stop it (TERM, INT, 15, ...).
    #[arg(long, value_name = "SIG", default_value_t = StopSpec::default().signal,
          add = crate::complete::values(crate::complete::SIGNALS))]
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

    /// Give the worker a pipe as stdin, which `circuit stdin WORKER` writes to [default:
    /// /dev/null].
    #[arg(long)]
    pub stdin: bool,

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

/// Starts the workers and prints one line for each (one JSON object per line, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let own_cwd = args.cwd.is_none();
    let placement = placement(args, ctx.is_local())?;
    let placed = placement.node.is_some() || !placement.selector.is_empty();
    let relative_command =
        placement.spec.command.contains('/') && Path::new(&placement.spec.command).is_relative();
    let client = ctx.connect().await?;
    let workers = match client.call(Request::Place(placement)).await {
        Ok(reply) => expect_workers(reply)?,
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
            return Err(CliError::hinted(
                e,
                "choose another --name, or remove the old worker with `circuit rm`",
            ))
        }
        Err(e) if placed && e.code() == Some(ErrorCode::NotFound) => {
            return Err(CliError::hinted(
                e,
                "see the nodes and their labels with `circuit nodes`",
            ))
        }
        Err(e) if own_cwd && e.code() == Some(ErrorCode::SpawnFailed) => {
            let hint = if ctx.is_local() && e.to_string().contains("working directory") {
                "without --cwd a worker runs in the directory circuit was run from, which must \
                 exist on the worker's node: pass --cwd"
            } else if !ctx.is_local() && relative_command {
                "through --addr a worker runs in circuitd's directory: pass --cwd, or the \
                 command's absolute path"
            } else {
                return Err(e.into());
            };
            return Err(CliError::hinted(e, hint));
        }
        Err(e) => return Err(e.into()),
    };
    if workers.is_empty() {
        return Err(CliError::hinted(
            "circuitd replied that it started no worker",
            "are circuit and circuitd the same version?",
        ));
    }
    if ctx.json {
        output::json_list("workers", &workers)?;
        return Ok(ExitCode::SUCCESS);
    }
    let terminal = std::io::stdout().is_terminal();
    for w in &workers {
        if terminal {
            output::line(&started(w))?;
        } else {
            output::line(&w.name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `started analyzer-1 on h3 (pid 1234)`; without the pid if the worker has none (yet).
fn started(w: &WorkerInfo) -> String {
    match w.pid {
        Some(pid) => format!("started {} on {} (pid {pid})", w.name, w.node),
        None => format!("started {} on {} ({})", w.name, w.node, w.state),
    }
}

/// Where the flags say to run the spec, and how many copies.
fn placement(mut args: Args, local: bool) -> anyhow::Result<Placement> {
    let node = args.node.take();
    let selector = std::mem::take(&mut args.selector).into_iter().collect();
    let replicas = args.replicas;
    Ok(Placement {
        spec: spec(args, local)?,
        node,
        selector,
        replicas,
    })
}

/// The spec the flags describe. When the daemon is local (its Unix socket), the worker runs
/// where the user stands: the current directory is the default `cwd`, and a relative `--cwd`
/// is made absolute against it. Through `--addr` both go as given (circuitd's directory when
/// none). The `--env-file` files are read here, so a bad one stops the spawn before anything
/// is sent.
fn spec(args: Args, local: bool) -> anyhow::Result<SpawnSpec> {
    let mut words = args.command.into_iter();
    let command = words.next().unwrap_or_default();
    // An option clap does not know starts the command (it takes hyphens, for `-- ls -l`);
    // no program is named like an option, so it was a mistyped or retired flag.
    if command.starts_with('-') {
        return Err(CliError::hinted(
            format!("unknown option \"{command}\""),
            "see `circuit spawn --help`; the program goes after `--`",
        ));
    }
    let cwd = match args.cwd {
        Some(dir) if local && Path::new(&dir).is_relative() => Some(here(&dir)?),
        None if local => Some(here("")?),
        other => other,
    };
    let mut env = BTreeMap::new();
    for file in &args.env_files {
        let vars = env_file::read(file, &file.display().to_string()).map_err(CliError::plain)?;
        env.extend(vars);
    }
    env.extend(args.env);
    Ok(SpawnSpec {
        command,
        args: words.collect(),
        env,
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
        stdin: args.stdin,
    })
}

/// `dir` in the current directory, as text for the spec (`""`: the current directory itself).
fn here(dir: &str) -> anyhow::Result<String> {
    let here = std::env::current_dir().map_err(|e| {
        CliError::hinted(
            format!("cannot read the current directory: {e}"),
            "pass an absolute --cwd",
        )
    })?;
    let path = if dir.is_empty() { here } else { here.join(dir) };
    match path.to_str() {
        Some(text) => Ok(text.to_string()),
        None => Err(CliError::hinted(
            format!("the directory {} is not UTF-8", path.display()),
            "pass --cwd with a UTF-8 path",
        )),
    }
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

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("spawn").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn placement_of(argv: &[&str]) -> Placement {
        placement(parse(argv).expect("parse"), false).expect("placement")
    }

    fn spec_of(argv: &[&str]) -> SpawnSpec {
        placement_of(argv).spec
    }

    /// A file in the temp dir, unique to this test process; tests remove what they write.
    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("circuit-spawn-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn env_files_in_order_then_env_flags() {
        let base = temp_file("base.env", "# shared\nA=base\nB=base\nC=base\n");
        let app = temp_file("app.env", "\nexport B=app\nC=\"app\"\n");
        let s = spec_of(&[
            "--env-file",
            base.to_str().expect("utf-8"),
            "--env-file",
            app.to_str().expect("utf-8"),
            "--env",
            "C=flag",
            "--",
            "true",
        ]);
        let _ = (std::fs::remove_file(base), std::fs::remove_file(app));
        let want: BTreeMap<String, String> = [("A", "base"), ("B", "app"), ("C", "flag")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(s.env, want);
    }

    #[test]
    fn a_bad_env_file_line_is_refused_with_its_file_and_line() {
        let file = temp_file("bad.env", "A=1\n# fine\nnot an assignment\n");
        let bad = file.to_str().expect("utf-8");
        let args = parse(&["--env-file", bad, "--", "true"]).expect("parse");
        let err = crate::error::render(&placement(args, false).unwrap_err());
        let _ = std::fs::remove_file(&file);
        assert_eq!(
            err,
            format!("{bad}:3: expected KEY=VALUE, got \"not an assignment\"")
        );
        let args = parse(&["--env-file", "/definitely/not/here.env", "--", "true"]).expect("parse");
        let err = crate::error::render(&placement(args, false).unwrap_err());
        assert!(
            err.starts_with("/definitely/not/here.env: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn through_the_socket_the_worker_runs_where_the_caller_stands() {
        let here = std::env::current_dir().expect("cwd");
        let local = |argv: &[&str]| placement(parse(argv).expect("parse"), true).expect("spec");
        let s = local(&["--", "./run.sh"]).spec;
        assert_eq!(s.cwd.as_deref(), here.to_str());
        let s = local(&["--cwd", "data", "--", "./run.sh"]).spec;
        assert_eq!(s.cwd, Some(here.join("data").display().to_string()));
        let s = local(&["--cwd", "/srv", "--", "./run.sh"]).spec;
        assert_eq!(s.cwd.as_deref(), Some("/srv"));
        // Through --addr: circuitd's directory, and a relative --cwd as written.
        assert_eq!(spec_of(&["--", "./run.sh"]).cwd, None);
    }

    #[test]
    fn without_placement_flags_circuitd_picks_the_node() {
        let p = placement_of(&["--", "sleep", "1"]);
        assert_eq!((p.node, p.selector.len(), p.replicas), (None, 0, 1));
    }

    #[test]
    fn label_selects_nodes_and_worker_label_labels_the_worker() {
        let p = placement_of(&[
            "--label",
            "gpu=yes",
            "--label",
            "zone=a",
            "--worker-label",
            "role=api",
            "--replicas",
            "3",
            "--",
            "./analyze",
        ]);
        assert_eq!(
            p.selector,
            [("gpu".into(), "yes".into()), ("zone".into(), "a".into())].into()
        );
        assert_eq!(p.spec.labels, [("role".into(), "api".into())].into());
        assert_eq!((p.node, p.replicas), (None, 3));
        let p = placement_of(&["--node", "h3", "--", "true"]);
        assert_eq!(p.node.as_deref(), Some("h3"));
    }

    #[test]
    fn contradictory_or_empty_placements_are_refused() {
        for bad in [
            &["--node", "h3", "--label", "gpu=yes", "--", "true"][..],
            &["--replicas", "0", "--", "true"],
            &["--node", "", "--", "true"],
            &["--label", "gpu", "--", "true"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // `-l` was the worker's labels; an option clap does not know starts the command.
        let retired = parse(&["-l", "role=api", "--", "true"]).expect("parse");
        let err = placement(retired, false).unwrap_err();
        assert!(
            crate::error::render(&err).starts_with("unknown option \"-l\" — see"),
            "{err}"
        );
    }

    #[test]
    fn a_started_worker_is_shown_with_its_node() {
        let mut w = WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: "analyzer-1".into(),
            node: "h3".into(),
            state: circuit_sdk::proto::WorkerState::Running,
            pid: Some(1234),
            restarts: 0,
            started_at_ms: Some(1_000),
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            spec: SpawnSpec::default(),
        };
        assert_eq!(started(&w), "started analyzer-1 on h3 (pid 1234)");
        (w.pid, w.state) = (None, circuit_sdk::proto::WorkerState::Starting);
        assert_eq!(started(&w), "started analyzer-1 on h3 (starting)");
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
            "--stdin",
            "--",
            "./w",
            "-v",
        ]);
        assert!(s.stdin);
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
