//! The panes of `circuit top` as text: each pane's columns and, from a [`Snapshot`], its rows
//! of cells in the pane's sort order; and the one-line summary of the mesh. The live view and
//! `--once` both lay out these same cells. Pure.

use circuit_sdk::proto::{NodeInfo, WorkerInfo, WorkerState};

use super::snapshot::{ChanRow, Snapshot};
use super::sort::{self, Pane, Sort};
use crate::output;

/// Where a cell's text sits in its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Against the left edge (words).
    Left,
    /// Against the right edge (figures, so their units line up).
    Right,
}

/// A column of a pane.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The title, in capitals.
    pub title: &'static str,
    /// Where its cells sit.
    pub align: Align,
    /// May be cut (with `…`) when the pane is too narrow; the others keep their width.
    pub flex: bool,
}

const fn left(title: &'static str) -> Column {
    Column {
        title,
        align: Align::Left,
        flex: false,
    }
}

const fn right(title: &'static str) -> Column {
    Column {
        title,
        align: Align::Right,
        flex: false,
    }
}

const fn flex(title: &'static str) -> Column {
    Column {
        title,
        align: Align::Left,
        flex: true,
    }
}

/// The node pane's columns.
pub const NODE_COLUMNS: &[Column] = &[
    flex("NAME"),
    left("STATE"),
    flex("ADDR"),
    right("LOAD"),
    right("MEM"),
    right("WORKERS"),
    right("CHANNELS"),
];

/// The worker pane's columns.
pub const WORKER_COLUMNS: &[Column] = &[
    left("NODE"),
    flex("NAME"),
    left("STATE"),
    right("PID"),
    right("CPU"),
    right("MEM"),
    right("RESTARTS"),
    right("UPTIME"),
    flex("LAST EXIT"),
];

/// The channel pane's columns.
pub const CHAN_COLUMNS: &[Column] = &[
    flex("NAME"),
    left("OWNER"),
    right("LEN/CAP"),
    right("IN/S"),
    right("OUT/S"),
    right("WAIT-SEND"),
    right("WAIT-RECV"),
    left("STATE"),
];

/// A pane as text: its columns and its rows, in order.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The columns.
    pub columns: &'static [Column],
    /// One cell per column in each row.
    pub rows: Vec<Vec<String>>,
}

/// `pane` of `snapshot`, sorted by `sort`.
pub fn grid(pane: Pane, snapshot: &Snapshot, sort: Sort) -> Grid {
    match pane {
        Pane::Nodes => Grid {
            columns: NODE_COLUMNS,
            rows: sort::nodes(&snapshot.nodes, sort)
                .into_iter()
                .map(node_row)
                .collect(),
        },
        Pane::Workers => Grid {
            columns: WORKER_COLUMNS,
            rows: sort::workers(&snapshot.workers, sort)
                .into_iter()
                .map(|w| worker_row(w, snapshot.at_ms))
                .collect(),
        },
        Pane::Channels => Grid {
            columns: CHAN_COLUMNS,
            rows: sort::chans(&snapshot.chans, sort)
                .into_iter()
                .map(chan_row)
                .collect(),
        },
    }
}

/// `-` for nothing to show.
const NONE: &str = "-";

fn node_row(n: &NodeInfo) -> Vec<String> {
    let up = n.state.is_up();
    let name = if n.is_self {
        format!("{}*", n.name)
    } else {
        n.name.clone()
    };
    let mem = match sort::used_memory(n) {
        Some(used) if up => format!("{}/{}", output::mem(used), output::mem(n.mem_total_bytes)),
        _ => NONE.into(),
    };
    vec![
        name,
        n.state.to_string(),
        if n.addr.is_empty() {
            NONE.into()
        } else {
            n.addr.clone()
        },
        if up {
            format!("{:.1}", n.load)
        } else {
            NONE.into()
        },
        mem,
        n.workers.to_string(),
        n.channels.len().to_string(),
    ]
}

fn worker_row(w: &WorkerInfo, now_ms: u64) -> Vec<String> {
    let usage = w.usage.as_ref();
    let running = matches!(w.state, WorkerState::Running | WorkerState::Stopping);
    vec![
        w.node.clone(),
        w.name.clone(),
        w.state.to_string(),
        w.pid.map_or_else(|| NONE.into(), |pid| pid.to_string()),
        match usage.and_then(|u| u.group_cpu_percent) {
            Some(p) => format!("{p:.1}%"),
            None => NONE.into(),
        },
        usage.map_or_else(|| NONE.into(), |u| output::mem(u.group_rss_bytes)),
        w.restarts.to_string(),
        match w.started_at_ms {
            Some(at) if running => output::ago(at, now_ms),
            _ => NONE.into(),
        },
        last_exit(w, now_ms),
    ]
}

/// How the last process ended and how long ago (`code 3, 5s ago`); for a worker that could
/// not start, why.
fn last_exit(w: &WorkerInfo, now_ms: u64) -> String {
    match (w.last_exit, w.exited_at_ms) {
        (Some(exit), Some(at)) => format!("{exit}, {} ago", output::ago(at, now_ms)),
        (Some(exit), None) => exit.to_string(),
        (None, _) => w.reason.clone().unwrap_or_else(|| NONE.into()),
    }
}

fn chan_row(c: &ChanRow) -> Vec<String> {
    let info = &c.info;
    vec![
        info.name.clone(),
        if info.owner.is_empty() {
            NONE.into()
        } else {
            info.owner.clone()
        },
        format!("{}/{}", info.len, info.capacity),
        rate(c.rate_in),
        rate(c.rate_out),
        info.waiting_senders.to_string(),
        info.waiting_receivers.to_string(),
        if info.closed { "closed" } else { "open" }.into(),
    ]
}

/// Values per second: one decimal below 10, whole above; `-` when not known yet.
fn rate(r: Option<f64>) -> String {
    match r {
        None => NONE.into(),
        Some(r) if r < 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

/// The mesh in one line: `2 nodes (1 alive, 1 dead) · 5 workers (4 running, 1 failed) · 3
/// channels`.
pub fn summary(snapshot: &Snapshot) -> String {
    fn counted<'a>(
        n: usize,
        what: &str,
        parts: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> String {
        let mut text = format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let parts: Vec<String> = parts
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(state, count)| format!("{count} {state}"))
            .collect();
        if !parts.is_empty() {
            text.push_str(&format!(" ({})", parts.join(", ")));
        }
        text
    }
    let node_states = ["alive", "suspect", "dead", "left"].map(|state| {
        let count = snapshot
            .nodes
            .iter()
            .filter(|n| n.state.as_str() == state)
            .count();
        (state, count)
    });
    let worker_states = [
        WorkerState::Starting,
        WorkerState::Running,
        WorkerState::Backoff,
        WorkerState::Stopping,
        WorkerState::Exited,
        WorkerState::Failed,
        WorkerState::Lost,
    ]
    .map(|state| {
        let count = snapshot.workers.iter().filter(|w| w.state == state).count();
        (state.as_str(), count)
    });
    let chans = snapshot.chans.len();
    [
        counted(snapshot.nodes.len(), "node", node_states),
        counted(snapshot.workers.len(), "worker", worker_states),
        counted(chans, "channel", []),
    ]
    .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::{chan, node, worker};
    use circuit_sdk::proto::{ExitStatus, NodeState, WorkerUsage};

    #[test]
    fn rows_show_what_each_pane_is_about() {
        let mut h1 = node("h1", NodeState::Alive);
        (h1.is_self, h1.load, h1.workers) = (true, 0.7, 2);
        (h1.mem_total_bytes, h1.mem_available_bytes) = (16 << 30, 12 << 30);
        h1.channels = vec!["jobs".into()];
        let h2 = node("h2", NodeState::Dead);
        let mut web = worker("web", "h1", WorkerState::Running);
        (web.pid, web.restarts) = (Some(4242), 2);
        web.usage = Some(WorkerUsage {
            cpu_seconds: 0.0,
            cpu_percent: Some(12.0),
            rss_bytes: 10 << 20,
            group_cpu_percent: Some(12.5),
            group_rss_bytes: 12_900_000,
            group_processes: 2,
            sampled_at_ms: 130_500,
        });
        let mut job = worker("job", "h2", WorkerState::Exited);
        (job.exited_at_ms, job.last_exit) = (Some(126_000), Some(ExitStatus::Code { code: 3 }));
        let mut bad = worker("bad", "h1", WorkerState::Failed);
        bad.reason = Some("no such file".into());
        let mut jobs = ChanRow {
            info: chan("jobs", 16, "h1"),
            rate_in: Some(120.4),
            rate_out: Some(2.24),
        };
        (
            jobs.info.len,
            jobs.info.waiting_senders,
            jobs.info.waiting_receivers,
        ) = (3, 1, 0);
        let snapshot = Snapshot {
            at_ms: 131_000,
            nodes: vec![h2, h1],
            workers: vec![web, job, bad],
            chans: vec![jobs],
        };
        let rows = |pane| grid(pane, &snapshot, Sort::NAME).rows;
        assert_eq!(
            rows(Pane::Nodes),
            [
                [
                    "h1*",
                    "alive",
                    "10.0.0.1:7711",
                    "0.7",
                    "4.0G/16.0G",
                    "2",
                    "1"
                ],
                ["h2", "dead", "10.0.0.2:7711", "-", "-", "0", "0"],
            ]
        );
        assert_eq!(
            rows(Pane::Workers),
            [
                [
                    "h1",
                    "bad",
                    "failed",
                    "-",
                    "-",
                    "-",
                    "0",
                    "-",
                    "no such file"
                ],
                [
                    "h2",
                    "job",
                    "exited",
                    "-",
                    "-",
                    "-",
                    "0",
                    "-",
                    "code 3, 5s ago"
                ],
                ["h1", "web", "running", "4242", "12.5%", "12.3M", "2", "2m10s", "-"],
            ]
        );
        assert_eq!(
            rows(Pane::Channels),
            [["jobs", "h1", "3/16", "120", "2.2", "1", "0", "open"]]
        );
        assert_eq!(
            summary(&snapshot),
            "2 nodes (1 alive, 1 dead) · 3 workers (1 running, 1 exited, 1 failed) · 1 channel"
        );
        assert_eq!(
            summary(&Snapshot::default()),
            "0 nodes · 0 workers · 0 channels"
        );
    }
}
