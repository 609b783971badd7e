//! `circuit chan stat`: one channel's description as `key: value` lines, like `circuit status`
//! for the daemon.

use std::process::ExitCode;

use circuit_sdk::proto::ChanInfo;

use crate::cmd::Ctx;
use crate::{error, output};

/// Arguments of `circuit chan stat`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit chan stat jobs\n  circuit chan stat jobs --json")]
pub struct Args {
    /// The channel.
    #[arg(value_name = "NAME", add = crate::complete::channels())]
    name: String,
}

/// Prints the description (or the JSON document, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let info = client
        .chan_stat(&args.name)
        .await
        .map_err(|e| error::chan(e, &args.name))?;
    if ctx.json {
        output::json(&info)?;
    } else {
        output::line(render(&info, output::now_ms()).trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `key: value` lines, in a fixed order that scripts can rely on.
fn render(c: &ChanInfo, now_ms: u64) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let fields = [
        ("name", c.name.clone()),
        ("capacity", c.capacity.to_string()),
        ("len", c.len.to_string()),
        ("in flight", c.in_flight.to_string()),
        ("waiting senders", c.waiting_senders.to_string()),
        ("waiting receivers", c.waiting_receivers.to_string()),
        ("senders", c.senders.to_string()),
        ("receivers", c.receivers.to_string()),
        ("sent", c.sent.to_string()),
        ("received", c.received.to_string()),
        ("closed", yes_no(c.closed)),
        ("owner", c.owner.clone()),
        ("max payload", output::size(c.max_payload)),
        (
            "created",
            format!(
                "{} ({} ago)",
                output::timestamp(c.created_at_ms),
                output::ago(c.created_at_ms, now_ms)
            ),
        ),
    ];
    let mut out: String = fields
        .iter()
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect();
    if !c.replicas.is_empty() {
        out.push_str(&format!(
            "storage: {}\nterm: {}\nreplicas: {}\n",
            c.storage,
            c.term,
            c.replicas.len()
        ));
        for r in &c.replicas {
            out.push_str(&format!("  {}: {} (lag {})\n", r.node, r.state, r.lag));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let info = ChanInfo {
            len: 3,
            in_flight: 1,
            waiting_senders: 2,
            senders: 2,
            receivers: 1,
            sent: 1_204,
            received: 1_200,
            ..crate::cmd::fixtures::chan("jobs", 16, "h1")
        };
        let want = "\
name: jobs
capacity: 16
len: 3
in flight: 1
waiting senders: 2
waiting receivers: 0
senders: 2
receivers: 1
sent: 1204
received: 1200
closed: no
owner: h1
max payload: 16M
created: 1970-01-01T00:00:01.000Z (2m10s ago)
";
        assert_eq!(render(&info, 131_000), want);
    }
}
