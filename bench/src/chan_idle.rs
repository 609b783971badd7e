//! `bench-chan-idle`: what an idle channel costs the daemon. Creates channels in steps against a
//! real circuitd and prints the daemon's resident memory after each step, as a Markdown table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use circuit_bench::procfs;
use circuit_bench::report::Table;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let steps: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1000,10000,50000".into())
        .split(',')
        .map(|s| {
            s.parse()
                .context("steps: a comma-separated list of channel counts")
        })
        .collect::<Result<_, _>>()?;
    let binary = std::env::var_os("CIRCUITD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/circuitd"));
    let mut daemon = circuit_bench::bench_daemon(&binary).start()?;
    let client = daemon.connect().await?;
    let idle = procfs::daemon_rss(&mut daemon)?;
    let mut table = Table::new("What an idle channel costs")
        .caption(
            "Channels of capacity 16 created in steps, 512 create requests in flight; the \
             daemon's RSS after each step.",
        )
        .right("channels")
        .right("daemon RSS")
        .right("per channel (over an idle daemon)")
        .right("create rate");
    table.row([
        "0".to_string(),
        format!("{:.1} MiB", mib(idle)),
        String::new(),
        String::new(),
    ]);
    let mut created = 0;
    for step in steps {
        let start = Instant::now();
        let batch = step - created;
        // Many creates in flight at once; each is one request on the shared connection.
        let mut pending = Vec::new();
        for i in created..step {
            let client = client.clone();
            pending.push(tokio::spawn(async move {
                client
                    .chan_create(&format!("idle/{i}"), 16)
                    .await
                    .map(|_| ())
            }));
            if pending.len() == 512 {
                for p in pending.drain(..) {
                    p.await??;
                }
            }
        }
        for p in pending {
            p.await??;
        }
        let rate = batch as f64 / start.elapsed().as_secs_f64();
        created = step;
        let rss = procfs::daemon_rss(&mut daemon)?;
        table.row([
            step.to_string(),
            format!("{:.1} MiB", mib(rss)),
            format!(
                "{:.2} KiB",
                (rss.saturating_sub(idle)) as f64 / 1024.0 / step as f64
            ),
            format!("{rate:.0}/s"),
        ]);
    }
    print!("## bench-chan-idle\n\n{table}");
    daemon.stop(Duration::from_secs(10))?;
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
