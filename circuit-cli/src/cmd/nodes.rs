//! `circuit nodes`: the node table, as the answering daemon sees the mesh. One row per node,
//! sorted by name; the answering node is marked with `*` after its name.

use std::collections::BTreeMap;
use std::process::ExitCode;

use circuit_sdk::proto::{NodeInfo, Request};

use super::{expect_nodes, Ctx};
use crate::output::{self, Table};

/// Arguments of `circuit nodes`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit nodes\n  circuit --addr h1:7711 nodes --json")]
pub struct Args {}

/// Lists nodes as a table (or as a JSON array, with `--json`).
pub async fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let mut nodes = expect_nodes(client.call(Request::Nodes).await?)?;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if ctx.json {
        output::json_list("nodes", &nodes)?;
    } else {
        table(&nodes, output::now_ms()).print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table for `nodes` as seen at `now_ms`. A node that is down, or whose metadata has not
/// arrived yet, has no uptime.
fn table(nodes: &[NodeInfo], now_ms: u64) -> Table {
    let mut table = Table::new(&[
        "name", "addr", "state", "labels", "workers", "channels", "version", "uptime",
    ])
    .states(2);
    for n in nodes {
        let name = if n.is_self {
            format!("{}*", n.name)
        } else {
            n.name.clone()
        };
        // A node whose metadata has not arrived yet has no start time.
        let uptime = if n.state.is_up() && n.started_at_ms > 0 {
            output::ago(n.started_at_ms, now_ms)
        } else {
            "-".into()
        };
        table.row(vec![
            name,
            if n.addr.is_empty() {
                "-".to_string()
            } else {
                n.addr.clone()
            },
            n.state.to_string(),
            labels(&n.labels),
            n.workers.to_string(),
            n.channels.len().to_string(),
            n.version.clone(),
            uptime,
        ]);
    }
    table
}

/// Labels as `k=v,k=v`, or `-`.
fn labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::node;
    use circuit_sdk::proto::NodeState;

    #[test]
    fn rows_mark_the_answering_node_and_hide_unknown_uptimes() {
        let mut h1 = node("h1", NodeState::Alive);
        (h1.is_self, h1.workers) = (true, 3);
        h1.labels = [("gpu".into(), "yes".into()), ("zone".into(), "a".into())].into();
        h1.channels = vec!["jobs".into(), "results".into()];
        let h2 = node("h2", NodeState::Suspect);
        let mut h3 = node("h3", NodeState::Alive);
        (h3.version, h3.started_at_ms) = (String::new(), 0);
        let h4 = node("h4", NodeState::Dead);
        let want = "\
NAME   ADDR            STATE     LABELS           WORKERS   CHANNELS   VERSION   UPTIME
h1*    10.0.0.1:7711   alive     gpu=yes,zone=a   3         2          0.1.0     2m10s
h2     10.0.0.2:7711   suspect   -                0         0          0.1.0     2m10s
h3     10.0.0.3:7711   alive     -                0         0                    -
h4     10.0.0.4:7711   dead      -                0         0          0.1.0     -
";
        assert_eq!(table(&[h1, h2, h3, h4], 131_000).render(), want);
    }

    #[test]
    fn no_nodes_prints_only_the_header() {
        assert_eq!(
            table(&[], 0).render(),
            "NAME   ADDR   STATE   LABELS   WORKERS   CHANNELS   VERSION   UPTIME\n"
        );
    }
}
