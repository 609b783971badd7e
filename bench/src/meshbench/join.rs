//! Join convergence: a fresh cluster per trial, formed by the script's `up` as a user would
//! start one (h1, then h2..hN together, each joining h1), every daemon's view polled from the
//! moment its socket answers until all list every node alive with metadata.

use std::path::PathBuf;

use anyhow::Context as _;
use circuit_testkit::{NetnsCluster, UpOptions};

use super::views::{Expect, Views};
use super::RunArgs;

/// Target: join convergence, p50.
pub const TARGET_JOIN_P50_MS: u64 = 1_000;

/// Join convergence at one cluster size.
#[derive(Debug, Clone)]
pub struct JoinResult {
    /// Daemons.
    pub n: usize,
    /// Per trial: from the last daemon's start to the last view complete (ms).
    pub from_last: Vec<u64>,
    /// Per trial: from h1's start to the last view complete (ms).
    pub from_first: Vec<u64>,
    /// Per trial: from h1's start to the last daemon's start (ms), the script's doing.
    pub start_spread: Vec<u64>,
    /// Trials that did not converge, and why.
    pub failures: Vec<String>,
    /// Where the logs of trials slower than the target went.
    pub kept: Vec<PathBuf>,
}

/// Runs `args.trials` trials of `n` daemons, each cluster brought up as `options` say.
pub async fn run(
    options: &UpOptions<'static>,
    n: usize,
    args: &RunArgs,
) -> anyhow::Result<JoinResult> {
    let mut result = JoinResult {
        n,
        from_last: Vec::new(),
        from_first: Vec::new(),
        start_spread: Vec::new(),
        failures: Vec::new(),
        kept: Vec::new(),
    };
    for trial in 1..=args.trials {
        let forming = NetnsCluster::launch(n, options)?;
        let mut views = Views::new((1..=n).map(|i| forming.socket(i)).collect());
        let converged = views
            .wait_converged(&Expect::any(n), args.poll, args.deadline)
            .await;
        let cluster = tokio::task::spawn_blocking(move || forming.finish())
            .await
            .context("the cluster task failed")??;
        let converged = match converged {
            Ok(c) => c,
            Err(e) => {
                eprintln!("join {n} daemons, trial {trial}: {e:#}");
                result.failures.push(format!("trial {trial}: {e:#}"));
                if let Ok(dir) = cluster.keep_logs(&args.logs, &format!("join-{n}-trial-{trial}")) {
                    result.kept.push(dir);
                }
                continue;
            }
        };
        // Each daemon's start as it reports it (`started_at_ms`, taken once its data dir and
        // job table are open, before gossip starts).
        let starts: Vec<u64> = (1..=n)
            .map(|i| views.own(i).map(|me| me.started_at_ms))
            .collect::<Option<_>>()
            .context("a daemon's view lacks its own entry")?;
        let first = starts[0];
        let last = starts.iter().copied().max().unwrap_or(first);
        let done = converged.last_ms();
        if done.saturating_sub(last) > TARGET_JOIN_P50_MS {
            let label = format!("join-{n}-trial-{trial}");
            match cluster.keep_logs(&args.logs, &label) {
                Ok(dir) => result.kept.push(dir),
                Err(e) => eprintln!("join {n} daemons, trial {trial}: {e:#}"),
            }
        }
        result.from_last.push(done.saturating_sub(last));
        result.from_first.push(done.saturating_sub(first));
        result.start_spread.push(last.saturating_sub(first));
        let (slowest, lacked) = converged.slowest();
        eprintln!(
            "join {n} daemons, trial {trial}/{}: {} ms from the last start, {} ms from h1's \
             (starts spread over {} ms); last complete: h{slowest}, which lacked {}",
            args.trials,
            done.saturating_sub(last),
            done.saturating_sub(first),
            last.saturating_sub(first),
            if lacked.is_empty() {
                "nothing".into()
            } else {
                lacked.join(", ")
            }
        );
        drop(views);
        drop(cluster);
    }
    Ok(result)
}
