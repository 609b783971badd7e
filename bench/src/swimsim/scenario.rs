//! The trials, as scripts on the virtual clock. A join trial boots a cold cluster and times
//! its convergence; a steady trial starts from converged views, runs quietly (false
//! suspicions, gossip load), then kills members one at a time and times their detection.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use super::clock::{millis, nanos, Nanos};
use super::cluster::{Cluster, Load};
use super::network::{NetModel, Network};
use super::tuning::Tuning;

/// Longest wait for a killed member to be declared down everywhere.
const DETECT_LIMIT: Duration = Duration::from_secs(60);
/// Steady trials: time after the warm start before the quiet run is measured, so that every
/// member's probe cycle and periodic timers are running.
const WARMUP: Duration = Duration::from_secs(5);
/// Steady trials: members start over this window, so their probe periods are not in phase.
const WARM_SPREAD: Duration = Duration::from_millis(500);
/// Steady trials: longest wait, after a kill is detected, for its news to finish spreading.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How often the settle condition is checked.
const SETTLE_STEP: Duration = Duration::from_millis(100);

/// What every trial of one cell shares.
#[derive(Debug, Clone, Copy)]
pub struct TrialSpec {
    /// Cluster size.
    pub n: usize,
    /// Network model.
    pub net: NetModel,
    /// Join: members start one after the other, evenly over this window (zero: all at once).
    pub join_window: Duration,
    /// Join: longest wait for convergence, from the last member's start.
    pub join_limit: Duration,
    /// Steady: the failure-free run measured for false suspicions and load.
    pub quiet: Duration,
    /// Seed of every random draw in the trial.
    pub seed: u64,
    /// Overrides of the daemon's SWIM configuration (none by default).
    pub tuning: Tuning,
    /// Steady: each member changes its metadata this often (none by default).
    pub meta_every: Option<Duration>,
}

/// What one join trial measured; `None` where the limit passed first.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    /// Last start → 99 % of all view entries present (ms).
    pub to_99_ms: Option<f64>,
    /// Last start → 99.9 % of all view entries present (ms).
    pub to_999_ms: Option<f64>,
    /// Last start → every member's view holds all the others (ms).
    pub full_ms: Option<f64>,
    /// View entries (member A knows member B) still missing when the trial ended.
    pub missing_at_end: usize,
    /// Suspicions of live members during the join.
    pub false_suspicions: u64,
    /// Live members declared down by somebody during the join.
    pub falsely_downed: usize,
    /// Errors foca returned (none expected).
    pub errors: u64,
}

/// What one steady trial measured.
#[derive(Debug, Clone)]
pub struct SteadyOutcome {
    /// Send rates over the quiet run.
    pub load: Load,
    /// Suspicions of live members during the quiet run.
    pub false_suspicions: u64,
    /// Live members declared down by somebody, over the whole trial.
    pub falsely_downed: usize,
    /// One entry per kill, in order.
    pub kills: Vec<KillOutcome>,
    /// Errors foca returned (none expected).
    pub errors: u64,
}

/// How one killed member was detected; `None` where the limit passed first.
#[derive(Debug, Clone, Copy)]
pub struct KillOutcome {
    /// Kill → first suspicion anywhere (ms).
    pub first_suspicion_ms: Option<f64>,
    /// Kill → declared down by every live member (ms).
    pub down_on_all_ms: Option<f64>,
    /// Live members that had not declared it down when detection ended (0 unless the limit
    /// passed).
    pub unaware: usize,
}

/// Boots a cold cluster: member 0 first, then each member announces to member 0 at its start
/// time; runs until every view is complete or the limit passes.
pub fn join_trial(spec: &TrialSpec) -> JoinOutcome {
    let n = spec.n;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut cluster = Cluster::new(
        n,
        spec.tuning,
        Network::new(spec.net, rng.random()),
        rng.random(),
    );
    let window = nanos(spec.join_window);
    let start_of = |i: usize| window * i as u64 / n as u64;
    let every = spec
        .tuning
        .sync_every_ms
        .map_or(0, |ms| nanos(Duration::from_millis(ms)));
    for i in 0..n {
        cluster.start_at(i, start_of(i));
        if every > 0 {
            cluster.sync_from(i, start_of(i) + rng.random_range(0..every));
        }
    }
    let last_start = start_of(n - 1);
    let limit = last_start + nanos(spec.join_limit);
    let reach = |cluster: &mut Cluster, share: f64| -> Option<f64> {
        let done = |c: &Cluster| c.converged() || c.coverage() >= share;
        (done(cluster) || cluster.run_until(limit, done))
            .then(|| millis(cluster.now().saturating_sub(last_start)))
    };
    // Coverage counts only running members' views, so wait for everyone to start first.
    cluster.run_until(last_start, |_| false);
    let to_99_ms = reach(&mut cluster, 0.99);
    let to_999_ms = reach(&mut cluster, 0.999);
    let full_ms = (cluster.converged() || cluster.run_until(limit, Cluster::converged))
        .then(|| millis(cluster.now() - last_start));
    JoinOutcome {
        to_99_ms,
        to_999_ms,
        full_ms,
        missing_at_end: cluster.missing(),
        false_suspicions: cluster.obs.false_suspicions,
        falsely_downed: cluster.obs.falsely_downed.len(),
        errors: cluster.obs.errors,
    }
}

/// Starts every member with a complete view and runs the quiet period; then, `kills` times,
/// kills one random live member, waits until every live member has declared it down, and
/// waits for the news to finish spreading (every update backlog empty) before the next.
pub fn steady_trial(spec: &TrialSpec, kills: usize) -> SteadyOutcome {
    let n = spec.n;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut cluster = Cluster::new(
        n,
        spec.tuning,
        Network::new(spec.net, rng.random()),
        rng.random(),
    );
    let spread = nanos(WARM_SPREAD);
    let every = spec
        .tuning
        .sync_every_ms
        .map_or(0, |ms| nanos(Duration::from_millis(ms)));
    for i in 0..n {
        cluster.start_warm_at(i, rng.random_range(0..spread));
        if every > 0 {
            cluster.sync_from(i, spread + rng.random_range(0..every));
        }
    }
    if let Some(every) = spec.meta_every.map(nanos).filter(|&e| e > 0) {
        for i in 0..n {
            cluster.republish_from(i, spread + rng.random_range(0..every), every);
        }
    }
    cluster.run_until(nanos(WARMUP), |_| false);
    let before = cluster.obs.false_suspicions;
    cluster.reset_counters();
    let quiet_end: Nanos = cluster.now() + nanos(spec.quiet);
    cluster.run_until(quiet_end, |_| false);
    let load = cluster.load();
    let false_suspicions = cluster.obs.false_suspicions - before;

    let mut outcomes = Vec::with_capacity(kills);
    for _ in 0..kills.min(n - 2) {
        let victim = loop {
            let i = rng.random_range(0..n);
            if cluster.is_running(i) {
                break i;
            }
        };
        let killed_at = cluster.now();
        cluster.kill(victim);
        cluster.run_until(killed_at + nanos(DETECT_LIMIT), Cluster::down_on_all);
        let watch = cluster.watch.as_ref().expect("kill sets the watch");
        outcomes.push(KillOutcome {
            first_suspicion_ms: watch.first_suspicion.map(|t| millis(t - killed_at)),
            down_on_all_ms: watch.down_on_all.map(|t| millis(t - killed_at)),
            unaware: cluster.running() - watch.down_count,
        });
        let limit = cluster.now() + nanos(SETTLE_LIMIT);
        while cluster.max_backlog() > 0 && cluster.now() < limit {
            let step = cluster.now() + nanos(SETTLE_STEP);
            cluster.run_until(step, |_| false);
        }
    }
    SteadyOutcome {
        load,
        false_suspicions,
        falsely_downed: cluster.obs.falsely_downed.len(),
        kills: outcomes,
        errors: cluster.obs.errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: usize, seed: u64) -> TrialSpec {
        TrialSpec {
            n,
            net: NetModel {
                latency_min: Duration::from_micros(100),
                latency_max: Duration::from_millis(1),
                loss: 0.0,
                processing: Duration::ZERO,
            },
            join_window: Duration::from_millis(200),
            join_limit: Duration::from_secs(120),
            quiet: Duration::from_secs(10),
            seed,
            tuning: Tuning::default(),
            meta_every: None,
        }
    }

    #[test]
    fn a_small_cluster_converges_and_detects_a_kill() {
        let join = join_trial(&spec(12, 7));
        let full = join.full_ms.expect("12 members converge within 2 minutes");
        assert!(join.to_99_ms.unwrap() <= full);
        assert_eq!(join.missing_at_end, 0);

        let steady = steady_trial(&spec(12, 7), 2);
        assert_eq!(steady.kills.len(), 2);
        for kill in &steady.kills {
            let suspected = kill.first_suspicion_ms.expect("suspected");
            let down = kill.down_on_all_ms.expect("declared down everywhere");
            assert!(suspected < down && down < 10_000.0, "{kill:?}");
        }
        assert!(
            steady.load.packets_mean > 1.0,
            "members probe: {:?}",
            steady.load
        );
        assert_eq!((steady.false_suspicions, steady.errors), (0, 0));
    }

    #[test]
    fn a_trial_is_a_function_of_its_seed() {
        let a = steady_trial(&spec(8, 3), 1);
        let b = steady_trial(&spec(8, 3), 1);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
