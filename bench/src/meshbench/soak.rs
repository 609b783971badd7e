//! Soak: an idle cluster under full CPU load (`stress-ng --cpu`) for some minutes, every
//! daemon's event stream watched; a live daemon suspected or declared dead is a false alarm.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_testkit::UpOptions;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::time::Instant;

use super::events::{Counts, Watchers};
use super::views::{Expect, Views};
use super::{now_ms, up, RunArgs};

/// How often the soak prints its counts so far.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How long stress-ng may take to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// What the soak saw.
#[derive(Debug, Clone)]
pub struct SoakResult {
    /// Daemons.
    pub n: usize,
    /// How long the load ran while events were counted.
    pub window: Duration,
    /// `stress-ng --cpu` workers.
    pub workers: usize,
    /// Share of the machine's CPU time that was busy over the window (from `/proc/stat`).
    pub cpu_busy: f64,
    /// Membership events over the window, all hosts.
    pub counts: Counts,
    /// Per node that any daemon suspected or declared dead: the events about it.
    pub by_node: BTreeMap<String, Counts>,
    /// Whether every daemon still listed the whole mesh alive with metadata at the end.
    pub converged_after: bool,
}

/// Brings up `args.soak_nodes` daemons as `options` say, loads every CPU and counts events for
/// `args.soak` minutes.
pub async fn run(options: UpOptions<'static>, args: &RunArgs) -> anyhow::Result<SoakResult> {
    let n = args.soak_nodes;
    eprintln!(
        "== soak: {n} daemons under full CPU load for {} min",
        args.soak
    );
    let cluster = up(n, options).await?;
    let mut views = Views::of(&cluster);
    views
        .wait_converged(&Expect::any(n), args.poll, args.deadline)
        .await
        .context("the soak's cluster did not converge")?;
    let mut watch = Watchers::new();
    for i in 1..=n {
        watch.start(&cluster, i)?;
    }
    tokio::time::sleep(args.settle).await;

    let workers = args.stress_cpus.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let length = Duration::from_secs_f64(args.soak * 60.0);
    // In h1's namespace (it makes no traffic) so that `down` kills it with the rest should
    // this process die; --timeout is a second backstop.
    let stress_args = [
        "--cpu".to_string(),
        workers.to_string(),
        "--timeout".to_string(),
        format!("{}s", length.as_secs() + 60),
        "--quiet".to_string(),
    ];
    let mut stress = Command::from(cluster.exec_command(1, "stress-ng", &stress_args))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start stress-ng (is it installed? scripts/bench-mesh.sh installs it)")?;
    let stress_pid = stress.id().context("stress-ng exited at once")?;
    let cpu_before = cpu_ticks()?;
    let (from_ms, started) = (now_ms(), Instant::now());
    while started.elapsed() < length {
        let left = length.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(REPORT_EVERY)).await;
        if let Some(status) = stress.try_wait()? {
            bail!("stress-ng ended early ({status}): the load did not last the soak");
        }
        let so_far = Counts::of(&watch.between(from_ms, now_ms()));
        eprintln!(
            "soak: {:.1} min: {} suspect, {} dead, {} recover, {} other events",
            started.elapsed().as_secs_f64() / 60.0,
            so_far.suspect,
            so_far.dead,
            so_far.recover,
            so_far.other
        );
    }
    let to_ms = now_ms();
    let window = started.elapsed();
    let cpu_after = cpu_ticks()?;
    stop(&mut stress, stress_pid).await;

    let seen = watch.between(from_ms, to_ms);
    let mut by_node: BTreeMap<String, Counts> = BTreeMap::new();
    for s in &seen {
        by_node
            .entry(s.event.node.clone())
            .or_default()
            .add(s.event.kind);
    }
    by_node.retain(|_, c| c.suspect + c.dead > 0);
    let converged_after = views
        .wait_converged(&Expect::any(n), args.poll, Duration::from_secs(10))
        .await
        .is_ok();
    let busy = cpu_after.0.saturating_sub(cpu_before.0) as f64;
    let total = cpu_after.1.saturating_sub(cpu_before.1) as f64;
    Ok(SoakResult {
        n,
        window,
        workers,
        cpu_busy: if total > 0.0 { busy / total } else { 0.0 },
        counts: Counts::of(&seen),
        by_node,
        converged_after,
    })
}

/// SIGTERM to stress-ng (it stops its workers), SIGKILL if it lingers.
async fn stop(stress: &mut tokio::process::Child, pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    if tokio::time::timeout(STOP_WITHIN, stress.wait())
        .await
        .is_err()
    {
        let _ = stress.kill().await;
    }
}

/// The machine's (busy, total) CPU ticks from the first line of `/proc/stat`; idle and
/// iowait count as not busy.
fn cpu_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse_cpu_line(stat.lines().next().unwrap_or_default()).context("cannot parse /proc/stat")
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_everything_but_idle_and_iowait() {
        assert_eq!(
            parse_cpu_line("cpu  10 1 5 80 4 0 0 0 0 0"),
            Some((16, 100))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
    }
}
