//! Failure detection: `kill -9` of one daemon, then how long until some daemon suspects it and
//! until every live daemon has declared it dead, read from every daemon's event stream. The
//! killed daemon is started again and the cluster reconverges before the next trial.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use circuit_sdk::proto::EventKind;
use circuit_testkit::NetnsCluster;
use tokio::time::Instant;

use super::events::Watchers;
use super::views::{Expect, Views};
use super::{now_ms, RunArgs};

/// Target: dead on every live daemon, p99, at [`TARGET_DEAD_AT`] daemons.
pub const TARGET_DEAD_P99_MS: u64 = 5_000;
/// The cluster size the failure-detection target is stated at.
pub const TARGET_DEAD_AT: usize = 20;

/// How often the event log is looked at while waiting for the dead events.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Failure detection at one cluster size.
#[derive(Debug, Clone)]
pub struct KillResult {
    /// Daemons.
    pub n: usize,
    /// Per trial: kill → the first `suspect` of the victim on any live daemon (ms).
    pub first_suspect: Vec<u64>,
    /// Per trial: kill → the first `dead` of the victim on any live daemon (ms).
    pub first_dead: Vec<u64>,
    /// Per trial: kill → the last live daemon's `dead` of the victim (ms).
    pub dead_on_all: Vec<u64>,
    /// Per trial: the restarted daemon's start → every daemon lists it alive with its new
    /// metadata (ms).
    pub rejoin: Vec<u64>,
    /// `suspect` events about daemons that were not killed, over the whole phase.
    pub false_suspects: usize,
    /// `dead` events about daemons that were not killed, over the whole phase.
    pub false_dead: usize,
    /// Trials in which some live daemon reported no `dead` in time, and why.
    pub failures: Vec<String>,
    /// Where the logs of trials slower than the target (or failed) went.
    pub kept: Vec<PathBuf>,
}

/// Runs `args.trials` kills on `cluster`, converged, with a watcher on every host. Victims
/// rotate over h2..hN (h1 is the seed the others join through on restart).
pub async fn run(
    cluster: &mut NetnsCluster,
    views: &mut Views,
    watch: &mut Watchers,
    args: &RunArgs,
) -> anyhow::Result<KillResult> {
    let n = cluster.hosts().len();
    let mut result = KillResult {
        n,
        first_suspect: Vec::new(),
        first_dead: Vec::new(),
        dead_on_all: Vec::new(),
        rejoin: Vec::new(),
        false_suspects: 0,
        false_dead: 0,
        failures: Vec::new(),
        kept: Vec::new(),
    };
    let began_ms = now_ms();
    // Every incarnation that was killed: events about them are expected.
    let mut killed: BTreeSet<(String, u64)> = BTreeSet::new();
    for trial in 1..=args.trials {
        let victim = 2 + (trial - 1) % (n - 1);
        let name = cluster.host(victim).name.clone();
        views.ask(victim).await?;
        let generation = views
            .own(victim)
            .with_context(|| format!("{name}'s view lacks its own entry"))?
            .generation;
        killed.insert((name.clone(), generation));

        let kill_ms = now_ms();
        cluster.try_kill(victim)?;
        watch.stop(victim);
        let live: Vec<usize> = (1..=n).filter(|&i| i != victim).collect();
        let deadline = Instant::now() + args.deadline;
        let (suspect_at, dead_at) = loop {
            let mut suspect_at: Option<u64> = None;
            let mut dead_at: BTreeMap<usize, u64> = BTreeMap::new();
            for seen in watch.between(kill_ms, u64::MAX) {
                let e = &seen.event;
                if e.node != name || e.generation != generation || seen.host == victim {
                    continue;
                }
                match e.kind {
                    EventKind::Suspect => {
                        suspect_at = Some(suspect_at.map_or(e.ts_ms, |t| t.min(e.ts_ms)));
                    }
                    EventKind::Dead => {
                        let t = dead_at.entry(seen.host).or_insert(e.ts_ms);
                        *t = (*t).min(e.ts_ms);
                    }
                    _ => {}
                }
            }
            if live.iter().all(|h| dead_at.contains_key(h)) || Instant::now() >= deadline {
                break (suspect_at, dead_at);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        };
        let slow = dead_at
            .values()
            .max()
            .is_some_and(|&t| t.saturating_sub(kill_ms) > TARGET_DEAD_P99_MS);
        let missing: Vec<String> = live
            .iter()
            .filter(|h| !dead_at.contains_key(h))
            .map(|h| format!("h{h}"))
            .collect();
        if missing.is_empty() {
            let first = dead_at.values().min().copied().unwrap_or(kill_ms);
            let last = dead_at.values().max().copied().unwrap_or(kill_ms);
            if let Some(s) = suspect_at {
                result.first_suspect.push(s.saturating_sub(kill_ms));
            }
            result.first_dead.push(first.saturating_sub(kill_ms));
            result.dead_on_all.push(last.saturating_sub(kill_ms));
            eprintln!(
                "kill {n} daemons, trial {trial}/{} ({name}): first suspect {}, dead on all {} ms",
                args.trials,
                suspect_at.map_or("none".into(), |s| format!(
                    "{} ms",
                    s.saturating_sub(kill_ms)
                )),
                last.saturating_sub(kill_ms)
            );
        } else {
            let why = format!(
                "trial {trial} ({name}): no `dead` within {:?} from {}",
                args.deadline,
                missing.join(", ")
            );
            eprintln!("kill {n} daemons, {why}");
            result.failures.push(why);
        }
        if slow || !missing.is_empty() {
            match cluster.keep_logs(&args.logs, &format!("kill-{n}-trial-{trial}")) {
                Ok(dir) => result.kept.push(dir),
                Err(e) => eprintln!("kill {n} daemons, trial {trial}: {e:#}"),
            }
        }

        tokio::task::block_in_place(|| cluster.try_start(victim))?;
        watch.start(cluster, victim)?;
        views.ask(victim).await?;
        let started = views
            .own(victim)
            .with_context(|| format!("restarted {name}'s view lacks its own entry"))?
            .started_at_ms;
        let expect = Expect::any(n).with_started(&name, started);
        let back = views
            .wait_converged(&expect, args.poll, args.deadline)
            .await
            .with_context(|| format!("the cluster did not take {name} back"))?;
        result.rejoin.push(back.last_ms().saturating_sub(started));
    }
    for seen in watch.between(began_ms, u64::MAX) {
        let e = &seen.event;
        if killed.contains(&(e.node.clone(), e.generation)) {
            continue;
        }
        match e.kind {
            EventKind::Suspect => result.false_suspects += 1,
            EventKind::Dead => result.false_dead += 1,
            _ => {}
        }
    }
    Ok(result)
}
