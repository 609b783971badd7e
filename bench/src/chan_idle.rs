//! `bench-chan-idle`: what an idle channel costs the daemon. Creates channels in steps against a
//! real circuitd and prints the daemon's resident memory after each step, as a Markdown table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use circuit_bench::procfs;

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
    println!("| channels | daemon RSS | per channel (over an idle daemon) | create rate |");
    println!("|---:|---:|---:|---:|");
    println!("| 0 | {:.1} MiB | | |", mib(idle));
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
        println!(
            "| {step} | {:.1} MiB | {:.2} KiB | {:.0}/s |",
            mib(rss),
            (rss.saturating_sub(idle)) as f64 / 1024.0 / step as f64,
            rate
        );
    }
    daemon.stop(Duration::from_secs(10))?;
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
