//! `circuit events`: streams membership events (join, leave, suspect, recover, dead, rejoin)
//! as the answering daemon sees them, and worker events (started, exited, restarting, gave up,
//! stopped) from every node, one line each, until Ctrl-C or the daemon ends the stream. With
//! `--json` each is one object per line; worker events are those with a `worker` field.
//! Each line is flushed as it is written, so a script reading through a pipe sees it at once.

use std::io::{self, Write};
use std::process::ExitCode;

use circuit_sdk::proto::{Item, MeshEvent, Reply, Request, WorkerEvent};
use circuit_sdk::Next;

use super::{unexpected, Ctx};
use crate::output;

/// Width of the longest event kind (`suspect`, `recover`), so that node names line up.
const KIND_WIDTH: usize = 7;

/// Arguments of `circuit events`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit events\n  \
    circuit events --json | grep --line-buffered '\"dead\"'\n  \
    circuit events --json | grep --line-buffered '\"gave_up\"'")]
pub struct Args {}

/// Prints events as they arrive (one JSON object per line, with `--json`).
pub async fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut events = client.stream(Request::Events).await?;
    loop {
        match events.next().await? {
            Next::Item(Item::Event(event)) if ctx.json => {
                emit(&serde_json::to_string(&event)?)?;
            }
            Next::Item(Item::Event(event)) => emit(&render(&event))?,
            Next::Item(Item::WorkerEvent(event)) if ctx.json => {
                emit(&serde_json::to_string(&event)?)?;
            }
            Next::Item(Item::WorkerEvent(event)) => emit(&render_worker(&event))?,
            Next::Item(_) => {}
            Next::End(Reply::Done) => return Ok(ExitCode::SUCCESS),
            Next::End(other) => return Err(unexpected("done", &other)),
        }
    }
}

/// Writes one line and flushes it. A write error (a closed pipe) is returned as the bare
/// `io::Error`, so that `main` can tell a gone reader from a failure.
fn emit(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// `2026-11-21T10:00:00.123Z  dead     h4 (10.0.0.4:7711)`.
fn render(e: &MeshEvent) -> String {
    format!(
        "{}  {:<KIND_WIDTH$}  {} ({})",
        output::timestamp(e.ts_ms),
        e.kind.as_str(),
        e.node,
        e.addr
    )
}

/// `2026-11-21T10:00:00.123Z  worker   web on h2: exited (code 1)`.
fn render_worker(e: &WorkerEvent) -> String {
    format!(
        "{}  {:<KIND_WIDTH$}  {} on {}: {}",
        output::timestamp(e.ts_ms),
        "worker",
        e.worker,
        e.node,
        e.kind
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::EventKind;

    fn event(kind: EventKind) -> MeshEvent {
        MeshEvent {
            ts_ms: 1_795_255_200_123,
            kind,
            node: "h4".into(),
            addr: "10.0.0.4:7711".into(),
            generation: 2,
        }
    }

    #[test]
    fn lines_show_time_kind_node_and_address() {
        assert_eq!(
            render(&event(EventKind::Dead)),
            "2026-11-21T10:00:00.123Z  dead     h4 (10.0.0.4:7711)"
        );
        assert_eq!(
            render(&event(EventKind::Recover)),
            "2026-11-21T10:00:00.123Z  recover  h4 (10.0.0.4:7711)"
        );
    }

    #[test]
    fn every_kind_fits_its_column() {
        use EventKind::*;
        for kind in [Join, Leave, Suspect, Recover, Dead, Rejoin] {
            assert!(kind.as_str().len() <= KIND_WIDTH, "{kind}");
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = serde_json::to_string(&event(EventKind::Rejoin)).expect("json");
        assert_eq!(
            line,
            r#"{"ts_ms":1795255200123,"kind":"rejoin","node":"h4","addr":"10.0.0.4:7711","generation":2}"#
        );
    }

    #[test]
    fn worker_lines_show_time_worker_node_and_what_happened() {
        use circuit_sdk::proto::{ExitStatus, WorkerEventKind};
        let event = |kind| WorkerEvent {
            ts_ms: 1_795_255_200_123,
            node: "h2".into(),
            worker: "web".into(),
            kind,
        };
        let exited = WorkerEventKind::Exited {
            last_exit: ExitStatus::Code { code: 1 },
        };
        assert_eq!(
            render_worker(&event(exited)),
            "2026-11-21T10:00:00.123Z  worker   web on h2: exited (code 1)"
        );
        let restarting = WorkerEventKind::Restarting { in_ms: 200 };
        assert_eq!(
            render_worker(&event(restarting)),
            "2026-11-21T10:00:00.123Z  worker   web on h2: restarting in 200ms"
        );
        let json = serde_json::to_value(event(WorkerEventKind::Started { pid: 42 })).expect("json");
        assert_eq!(json["kind"], "started");
        assert_eq!(
            (json["worker"].as_str(), json["pid"].as_u64()),
            (Some("web"), Some(42))
        );
    }
}
