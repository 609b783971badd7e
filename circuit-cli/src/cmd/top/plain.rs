//! `circuit top --once`: one snapshot as plain text — the mesh in one line, then the nodes,
//! workers and channels as tables with the columns of the live view.

use super::rows;
use super::snapshot::Snapshot;
use super::sort::{Pane, Sort};
use crate::output::Table;

/// The snapshot as text, each pane sorted as `sort_of` says.
pub fn text(snapshot: &Snapshot, sort_of: impl Fn(Pane) -> Sort) -> String {
    let mut out = rows::summary(snapshot);
    out.push('\n');
    for pane in Pane::ALL {
        let grid = rows::grid(pane, snapshot, sort_of(pane));
        let titles: Vec<&str> = grid.columns.iter().map(|c| c.title).collect();
        let mut table = Table::new(&titles);
        for row in grid.rows {
            table.row(row);
        }
        out.push_str(&format!("\n{}:\n{}", pane.title(), table.render()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::{chan, node, worker};
    use crate::cmd::top::snapshot::ChanRow;
    use circuit_sdk::proto::{NodeState, WorkerState};

    #[test]
    fn one_snapshot_is_the_summary_and_three_tables() {
        let snapshot = Snapshot {
            at_ms: 131_000,
            nodes: vec![node("h1", NodeState::Alive)],
            workers: vec![worker("web", "h1", WorkerState::Running)],
            chans: vec![ChanRow {
                info: chan("jobs", 4, "h1"),
                rate_in: Some(3.0),
                rate_out: None,
            }],
        };
        let want = "\
1 node (1 alive) · 1 worker (1 running) · 1 channel

Nodes:
NAME   STATE   ADDR            LOAD   MEM   WORKERS   CHANNELS
h1     alive   10.0.0.1:7711   0.0    -     0         0

Workers:
NODE   NAME   STATE     PID   CPU   MEM   RESTARTS   UPTIME   LAST EXIT
h1     web    running   -     -     -     0          2m10s    -

Channels:
NAME   OWNER   LEN/CAP   IN/S   OUT/S   WAIT-SEND   WAIT-RECV   STATE
jobs   h1      0/4       3.0    -       0           0           open
";
        assert_eq!(text(&snapshot, |_| Sort::NAME), want);
    }
}
