//! `circuit ps`: the worker table of the whole cluster (or of one node, with `--node`). One row
//! per worker, sorted by name; CPU and MEM are what the worker's process group uses (CPU over
//! the last second, in percent of one core; resident memory), sampled by its daemon; the STATUS
//! column says in words what the state means right now (up for how long, how it exited, why it
//! failed, that its node died).

use std::process::ExitCode;

use circuit_sdk::proto::{Request, WorkerInfo, WorkerState};

use super::{expect_workers, on, Ctx};
use crate::output::{self, Table};

/// Arguments of `circuit ps`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit ps\n  circuit ps -a --node h2 --json")]
pub struct Args {
    /// Also list workers that have exited (failed and lost ones are always listed).
    #[arg(short, long)]
    pub all: bool,

    /// Only the workers of this node [default: every node of the mesh].
    #[arg(long, value_name = "NAME", add = crate::complete::nodes(), value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub node: Option<String>,
}

/// Lists workers as a table (or as a JSON array, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut workers = expect_workers(client.call(request(args)).await?)?;
    workers.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
    if ctx.json {
        output::json_list("workers", &workers)?;
    } else {
        table(&workers, output::now_ms()).print()?;
        for w in workers.iter().filter(|w| !w.escaped.is_empty()) {
            let them = if w.escaped.len() == 1 { "it" } else { "them" };
            eprintln!(
                "{}: {} outside its process group: signals to the group miss {them}; \
                 `circuit stop {}` ends {them} too",
                w.name,
                output::processes(&w.escaped),
                w.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The cluster list, or one node's list with `--node`.
fn request(args: Args) -> Request {
    match args.node {
        Some(node) => on(Some(node), Request::List { all: args.all }),
        None => Request::ClusterList { all: args.all },
    }
}

/// The table for `workers` as seen at `now_ms`. The CHANS column appears only when some
/// worker has channel bindings; STATUS comes last since a failure reason can be long.
fn table(workers: &[WorkerInfo], now_ms: u64) -> Table {
    let with_chans = workers.iter().any(|w| !w.spec.chans.is_empty());
    let mut header = vec!["name", "node", "state", "pid", "cpu", "mem", "restarts"];
    if with_chans {
        header.push("chans");
    }
    header.extend(["command", "status"]);
    let mut table = Table::new(&header).states(2);
    for w in workers {
        let mut row = vec![
            w.name.clone(),
            w.node.clone(),
            w.state.to_string(),
            w.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string()),
            cpu(w),
            mem(w),
            w.restarts.to_string(),
        ];
        if with_chans {
            row.push(chans(w));
        }
        row.push(command(w));
        row.push(status(w, now_ms));
        table.row(row);
    }
    table
}

/// The process group's CPU share, `12.5%`; `-` while not running or not yet sampled twice.
fn cpu(w: &WorkerInfo) -> String {
    match w.usage.as_ref().and_then(|u| u.group_cpu_percent) {
        Some(p) => format!("{p:.1}%"),
        None => "-".into(),
    }
}

/// The process group's resident memory, `12.3M`; `-` while not running or not sampled.
fn mem(w: &WorkerInfo) -> String {
    match &w.usage {
        Some(u) => output::mem(u.group_rss_bytes),
        None => "-".into(),
    }
}

/// The command line (the table cuts it to the terminal's width); `-` when unknown (a lost worker's spec is
/// gone with its node).
fn command(w: &WorkerInfo) -> String {
    if w.spec.command.is_empty() {
        return "-".into();
    }
    output::command_line(&w.spec.command, &w.spec.args)
}

/// Channel bindings as `in=jobs,out=results`, or `-`.
fn chans(w: &WorkerInfo) -> String {
    if w.spec.chans.is_empty() {
        return "-".into();
    }
    let pairs: Vec<String> = w
        .spec
        .chans
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

/// What the worker's state means now: `up 2m10s`, `exited 5s ago (code 3)`, ..., and how
/// many escaped descendants it has.
fn status(w: &WorkerInfo, now: u64) -> String {
    let text = state_status(w, now);
    match w.escaped.len() {
        0 => text,
        1 => format!("{text}, 1 escaped process"),
        n => format!("{text}, {n} escaped processes"),
    }
}

/// The STATUS cell without the escaped descendants.
fn state_status(w: &WorkerInfo, now: u64) -> String {
    let exited = || {
        let mut text = String::from("exited");
        if let Some(at) = w.exited_at_ms {
            text.push_str(&format!(" {} ago", output::ago(at, now)));
        }
        if let Some(exit) = w.last_exit {
            text.push_str(&format!(" ({exit})"));
        }
        text
    };
    match w.state {
        WorkerState::Starting => "starting".into(),
        WorkerState::Running | WorkerState::Stopping => match w.started_at_ms {
            Some(at) => format!("up {}", output::ago(at, now)),
            None => "-".into(),
        },
        WorkerState::Backoff => match w.next_start_at_ms {
            Some(at) if at > now => format!("{}, restart in {}", exited(), output::until(at, now)),
            _ => format!("{}, restarting", exited()),
        },
        WorkerState::Exited => exited(),
        WorkerState::Failed => {
            let reason = w.reason.as_deref().unwrap_or("gave up");
            if w.last_exit.is_some() {
                format!("{}: {reason}", exited())
            } else {
                reason.to_string()
            }
        }
        WorkerState::Lost => format!("node {} is dead", w.node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::{ExitStatus, SpawnSpec, WorkerUsage};

    fn worker(name: &str, state: WorkerState) -> WorkerInfo {
        WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: name.into(),
            node: "n1".into(),
            state,
            pid: None,
            restarts: 0,
            started_at_ms: Some(1_000),
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            spec: SpawnSpec {
                command: "sleep".into(),
                args: vec!["60".into()],
                ..SpawnSpec::default()
            },
        }
    }

    #[test]
    fn rows_describe_each_state() {
        let mut web = worker("web", WorkerState::Running);
        web.pid = Some(4242);
        web.usage = Some(WorkerUsage {
            cpu_percent: Some(12.0),
            rss_bytes: 10 << 20,
            group_cpu_percent: Some(12.5),
            group_rss_bytes: 12_900_000,
            group_processes: 2,
            sampled_at_ms: 130_500,
            cpu_seconds: 3.25,
        });
        let mut job = worker("job", WorkerState::Exited);
        (job.exited_at_ms, job.last_exit) = (Some(126_000), Some(ExitStatus::Code { code: 3 }));
        let mut bad = worker("bad", WorkerState::Failed);
        (bad.restarts, bad.reason) = (5, Some("too many restarts".into()));
        bad.spec.chans.insert("in".into(), "jobs".into());
        let mut gone = worker("gone", WorkerState::Lost);
        gone.node = "h4".into();
        gone.spec = SpawnSpec::default();
        let want = "\
NAME   NODE   STATE     PID    CPU     MEM     RESTARTS   CHANS     COMMAND    STATUS
web    n1     running   4242   12.5%   12.3M   0          -         sleep 60   up 2m10s
job    n1     exited    -      -       -       0          -         sleep 60   exited 5s ago (code 3)
bad    n1     failed    -      -       -       5          in=jobs   sleep 60   too many restarts
gone   h4     lost      -      -       -       0          -         -          node h4 is dead
";
        assert_eq!(table(&[web, job, bad, gone], 131_000).render(), want);
    }

    #[test]
    fn the_cluster_is_listed_unless_a_node_is_named() {
        let args = |node: Option<&str>| Args {
            all: true,
            node: node.map(Into::into),
        };
        assert_eq!(request(args(None)), Request::ClusterList { all: true });
        assert_eq!(
            request(args(Some("h2"))),
            Request::On {
                node: "h2".into(),
                request: Box::new(Request::List { all: true }),
            }
        );
    }

    #[test]
    fn no_workers_prints_only_the_header() {
        assert_eq!(
            table(&[], 0).render(),
            "NAME   NODE   STATE   PID   CPU   MEM   RESTARTS   COMMAND   STATUS\n"
        );
    }
}
