//! `circuit ps`: the worker table. One row per worker; the STATUS column says in words what
//! the state means right now (up for how long, how it exited, why it failed).

use std::process::ExitCode;

use circuit_sdk::proto::{Request, WorkerInfo, WorkerState};

use super::{expect_workers, Ctx};
use crate::output::{self, Table};

/// Widest COMMAND cell; longer command lines are cut with `…`.
const COMMAND_WIDTH: usize = 40;

/// Arguments of `circuit ps`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit ps\n  circuit ps -a --json")]
pub struct Args {
    /// Also list workers that have exited (failed ones are always listed).
    #[arg(short, long)]
    pub all: bool,
}

/// Lists workers as a table (or as a JSON array, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let workers = expect_workers(client.call(Request::List { all: args.all }).await?)?;
    if ctx.json {
        output::json(&workers)?;
    } else {
        table(&workers, output::now_ms()).print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table for `workers` as seen at `now_ms`. The CHANS column appears only when some
/// worker has channel bindings; STATUS comes last since a failure reason can be long.
fn table(workers: &[WorkerInfo], now_ms: u64) -> Table {
    let with_chans = workers.iter().any(|w| !w.spec.chans.is_empty());
    let mut header = vec!["name", "state", "pid", "restarts"];
    if with_chans {
        header.push("chans");
    }
    header.extend(["command", "status"]);
    let mut table = Table::new(&header);
    for w in workers {
        let mut row = vec![
            w.name.clone(),
            w.state.to_string(),
            w.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string()),
            w.restarts.to_string(),
        ];
        if with_chans {
            row.push(chans(w));
        }
        row.push(output::truncate(
            &output::command_line(&w.spec.command, &w.spec.args),
            COMMAND_WIDTH,
        ));
        row.push(status(w, now_ms));
        table.row(row);
    }
    table
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

/// What the worker's state means now: `up 2m10s`, `exited 5s ago (code 3)`, ...
fn status(w: &WorkerInfo, now: u64) -> String {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::{ExitStatus, SpawnSpec};

    fn worker(name: &str, state: WorkerState) -> WorkerInfo {
        WorkerInfo {
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
        let mut job = worker("job", WorkerState::Exited);
        (job.exited_at_ms, job.last_exit) = (Some(126_000), Some(ExitStatus::Code { code: 3 }));
        let mut bad = worker("bad", WorkerState::Failed);
        (bad.restarts, bad.reason) = (5, Some("too many restarts".into()));
        bad.spec.chans.insert("in".into(), "jobs".into());
        let want = "\
NAME   STATE     PID    RESTARTS   CHANS     COMMAND    STATUS
web    running   4242   0          -         sleep 60   up 2m10s
job    exited    -      0          -         sleep 60   exited 5s ago (code 3)
bad    failed    -      5          in=jobs   sleep 60   too many restarts
";
        assert_eq!(table(&[web, job, bad], 131_000).render(), want);
    }

    #[test]
    fn no_workers_prints_only_the_header() {
        assert_eq!(
            table(&[], 0).render(),
            "NAME   STATE   PID   RESTARTS   COMMAND   STATUS\n"
        );
    }
}
