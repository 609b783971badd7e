//! `circuit chan ls`: the channel table, one row per channel with its counts, like `circuit ps`
//! for workers.

use std::process::ExitCode;

use circuit_sdk::proto::ChanInfo;

use crate::cmd::Ctx;
use crate::output::{self, Table};

/// Arguments of `circuit chan ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  circuit chan ls\n  circuit chan ls --json")]
pub struct Args {}

/// Lists channels as a table (or as a JSON array, with `--json`).
pub async fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let chans = client.chan_list().await?;
    if ctx.json {
        output::json_list("channels", &chans)?;
    } else {
        table(&chans).print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table for `chans`: capacity and what is in the channel now (LEN buffered, IN-FLIGHT
/// delivered and not yet acknowledged), open streams, totals since creation.
fn table(chans: &[ChanInfo]) -> Table {
    let mut table = Table::new(&[
        "name",
        "cap",
        "len",
        "in-flight",
        "senders",
        "receivers",
        "sent",
        "received",
        "state",
        "owner",
        "replicas",
    ])
    .states(8);
    for c in chans {
        table.row(vec![
            c.name.clone(),
            c.capacity.to_string(),
            c.len.to_string(),
            c.in_flight.to_string(),
            c.senders.to_string(),
            c.receivers.to_string(),
            c.sent.to_string(),
            c.received.to_string(),
            state(c).into(),
            if c.owner.is_empty() {
                "-".into()
            } else {
                c.owner.clone()
            },
            replicas(c),
        ]);
    }
    table
}

/// `1` for a channel with one owner; for a replicated one its count, and how many are lost or
/// catching up.
fn replicas(c: &ChanInfo) -> String {
    if c.replicas.is_empty() {
        return "1".into();
    }
    let count = |state: &str| c.replicas.iter().filter(|r| r.state == state).count();
    let mut notes = Vec::new();
    for state in ["lost", "catching up"] {
        let n = count(state);
        if n > 0 {
            notes.push(format!("{n} {state}"));
        }
    }
    if count("leader") == 0 {
        notes.push("no leader".into());
    }
    if notes.is_empty() {
        c.replicas.len().to_string()
    } else {
        format!("{} ({})", c.replicas.len(), notes.join(", "))
    }
}

/// `open` or `closed`.
fn state(c: &ChanInfo) -> &'static str {
    if c.closed {
        "closed"
    } else {
        "open"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel as the daemon describes it, with counts to fill in.
    fn chan(name: &str, capacity: u64) -> ChanInfo {
        crate::cmd::fixtures::chan(name, capacity, "h1")
    }

    #[test]
    fn rows_show_counts_and_state() {
        let mut jobs = chan("jobs", 16);
        (jobs.len, jobs.in_flight, jobs.senders, jobs.receivers) = (3, 1, 2, 1);
        (jobs.sent, jobs.received) = (1_204, 1_200);
        let mut done = chan("pipeline/done", 0);
        done.closed = true;
        let want = "\
NAME            CAP   LEN   IN-FLIGHT   SENDERS   RECEIVERS   SENT   RECEIVED   STATE    OWNER   REPLICAS
jobs            16    3     1           2         1           1204   1200       open     h1      1
pipeline/done   0     0     0           0         0           0      0          closed   h1      1
";
        assert_eq!(table(&[jobs, done]).render(), want);
    }

    #[test]
    fn no_channels_prints_only_the_header() {
        assert_eq!(
            table(&[]).render(),
            "NAME   CAP   LEN   IN-FLIGHT   SENDERS   RECEIVERS   SENT   RECEIVED   STATE   OWNER   REPLICAS\n"
        );
    }
}
