//! `circuit status FILE`: every channel and worker copy the manifest declares, as it is in the
//! mesh now, or `missing`. Exits 0 only when everything declared exists and no worker failed.

use std::path::Path;
use std::process::ExitCode;

use circuit_sdk::proto::{ChanInfo, WorkerInfo, WorkerState};
use serde::Serialize;

use super::mesh::{self, Mesh};
use super::validate::Manifest;
use crate::cmd::Ctx;
use crate::output::{self, Table};

/// One declared channel and what exists of it.
#[derive(Debug, Serialize)]
struct ChannelRow<'a> {
    name: &'a str,
    capacity: u64,
    node: Option<&'a str>,
    /// `None`: missing.
    found: Option<&'a ChanInfo>,
}

/// One declared worker copy and what exists of it.
#[derive(Debug, Serialize)]
struct WorkerRow<'a> {
    name: String,
    /// `None`: missing.
    found: Option<&'a WorkerInfo>,
}

/// The status of a whole manifest.
#[derive(Debug, Serialize)]
struct Report<'a> {
    manifest: &'a str,
    /// Everything exists and no worker failed.
    ok: bool,
    channels: Vec<ChannelRow<'a>>,
    workers: Vec<WorkerRow<'a>>,
}

/// Prints the manifest's channels and workers as two tables and a summary line (or a JSON
/// document, with `--json`).
pub async fn run(ctx: &Ctx, file: &Path) -> anyhow::Result<ExitCode> {
    let manifest = super::load(ctx, file)?;
    let client = ctx.connect().await?;
    let mesh = mesh::observe(&client).await?;
    let report = report(&manifest, &mesh);
    if ctx.json {
        output::json(&report)?;
    } else {
        let text = render(&report);
        output::line(text.trim_end())?;
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn report<'a>(m: &'a Manifest, mesh: &'a Mesh) -> Report<'a> {
    let channels: Vec<ChannelRow> = m
        .channels
        .iter()
        .map(|c| ChannelRow {
            name: &c.name,
            capacity: c.capacity,
            node: c.node.as_deref(),
            found: mesh.chans.iter().find(|i| i.name == c.name),
        })
        .collect();
    let workers: Vec<WorkerRow> = m
        .workers
        .iter()
        .flat_map(|w| w.instances())
        .map(|name| {
            let found = mesh
                .workers
                .iter()
                .filter(|w| w.name == name)
                // One that runs is what matters; a lost copy only when there is nothing else.
                .min_by_key(|w| w.state == WorkerState::Lost);
            WorkerRow { name, found }
        })
        .collect();
    let ok = channels.iter().all(|c| c.found.is_some())
        && workers.iter().all(|w| {
            w.found
                .is_some_and(|f| !matches!(f.state, WorkerState::Failed | WorkerState::Lost))
        });
    Report {
        manifest: &m.name,
        ok,
        channels,
        workers,
    }
}

/// The two tables and the summary line.
fn render(r: &Report) -> String {
    let dash = || "-".to_string();
    let mut chans = Table::new(&[
        "channel",
        "node",
        "len/cap",
        "state",
        "senders",
        "receivers",
    ])
    .states(3);
    for c in &r.channels {
        chans.row(match c.found {
            Some(i) => vec![
                c.name.to_string(),
                i.owner.clone(),
                format!("{}/{}", i.len, i.capacity),
                if i.closed { "closed" } else { "open" }.into(),
                i.senders.to_string(),
                i.receivers.to_string(),
            ],
            None => vec![
                c.name.to_string(),
                c.node.map_or_else(dash, str::to_string),
                format!("-/{}", c.capacity),
                "missing".into(),
                dash(),
                dash(),
            ],
        });
    }
    let mut workers =
        Table::new(&["worker", "node", "state", "pid", "restarts", "last exit"]).states(2);
    for w in &r.workers {
        workers.row(match w.found {
            Some(i) => vec![
                w.name.clone(),
                i.node.clone(),
                i.state.to_string(),
                i.pid.map_or_else(dash, |p| p.to_string()),
                i.restarts.to_string(),
                i.last_exit.map_or_else(dash, |e| e.to_string()),
            ],
            None => vec![
                w.name.clone(),
                dash(),
                "missing".into(),
                dash(),
                dash(),
                dash(),
            ],
        });
    }
    let missing = r.channels.iter().filter(|c| c.found.is_none()).count()
        + r.workers.iter().filter(|w| w.found.is_none()).count();
    let failed = r
        .workers
        .iter()
        .filter(|w| w.found.is_some_and(|f| f.state == WorkerState::Failed))
        .count();
    let lost = r
        .workers
        .iter()
        .filter(|w| w.found.is_some_and(|f| f.state == WorkerState::Lost))
        .count();
    let total = r.channels.len() + r.workers.len();
    let summary = if r.ok {
        format!("{}: all {total} declared exist, none failed", r.manifest)
    } else {
        format!(
            "{}: {missing} of {total} missing, {failed} failed, {lost} lost",
            r.manifest
        )
    };
    let mut text = String::new();
    if !r.channels.is_empty() {
        text.push_str(&chans.render());
        text.push('\n');
    }
    if !r.workers.is_empty() {
        text.push_str(&workers.render());
        text.push('\n');
    }
    text.push_str(&summary);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::manifest::mesh::fixtures::chan;
    use crate::cmd::manifest::validate::{parse, Source};
    use circuit_sdk::proto::{ExitStatus, SpawnSpec};

    fn manifest() -> Manifest {
        let text = "[channels.docs]\ncapacity = 4\nnode = \"n2\"\n[channels.out]\n\
                    [workers.a]\ncommand = \"x\"\nreplicas = 2\n";
        parse(Source {
            file: "m.toml",
            text,
            base: None,
            dir: std::path::Path::new("."),
        })
        .expect("parse")
    }

    fn worker(name: &str, state: WorkerState) -> WorkerInfo {
        WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: name.into(),
            node: "n2".into(),
            state,
            pid: (state == WorkerState::Running).then_some(42),
            restarts: 1,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: (state == WorkerState::Failed).then_some(ExitStatus::Code { code: 3 }),
            reason: None,
            next_start_at_ms: None,
            spec: SpawnSpec::default(),
        }
    }

    #[test]
    fn missing_and_failed_things_are_shown_and_fail_the_status() {
        let m = manifest();
        let mut mesh = Mesh::default();
        let mut docs = chan("docs", 0, "n2");
        (docs.capacity, docs.len, docs.senders, docs.receivers) = (4, 2, 1, 2);
        docs.closed = true;
        mesh.chans.push(docs);
        mesh.workers.push(worker("a-1", WorkerState::Running));
        mesh.workers.push(worker("a-2", WorkerState::Failed));
        let r = report(&m, &mesh);
        assert!(!r.ok);
        let want = "\
CHANNEL   NODE   LEN/CAP   STATE     SENDERS   RECEIVERS
docs      n2     2/4       closed    1         2
out       -      -/0       missing   -         -

WORKER   NODE   STATE     PID   RESTARTS   LAST EXIT
a-1      n2     running   42    1          -
a-2      n2     failed    -     1          code 3

m: 1 of 4 missing, 1 failed, 0 lost";
        assert_eq!(render(&r), want);
    }

    #[test]
    fn everything_there_is_ok() {
        let m = manifest();
        let mut mesh = Mesh {
            chans: vec![chan("docs", 0, "n2"), chan("out", 0, "n1")],
            ..Mesh::default()
        };
        mesh.workers.push(worker("a-1", WorkerState::Exited));
        mesh.workers.push(worker("a-2", WorkerState::Running));
        let r = report(&m, &mesh);
        assert!(r.ok);
        assert!(render(&r).ends_with("\nm: all 4 declared exist, none failed"));
    }
}
