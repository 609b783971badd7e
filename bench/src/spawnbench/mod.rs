//! `bench-spawn`: how fast circuitd starts and reaps short workers, how much memory it holds idle
//! and with N live workers, and how long one `stop` of N workers takes.
//!
//! # Layout
//! - this file: the flags, the trials, and the table.
//! - [`workers`]: spawning, waiting for, stopping and removing N workers, each step checked.

pub mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use circuit_sdk::proto::{Reply, Request};
use circuit_sdk::Client;
use circuit_testkit::Daemon;

use crate::procfs;
use crate::report::{samples_table, Samples};
use workers::{check_clean, remove_all, spawn_until_exited, spawn_until_running, stop_all};

/// What `--help` prints.
pub const USAGE: &str = "\
usage: bench-spawn [--circuitd PATH] [--workers N] [--trials T] [--concurrency C]

  --circuitd PATH   daemon binary [default: circuitd next to this binary]
  --workers N       workers per trial [default: 500]
  --trials T        trials [default: 5]
  --concurrency C   spawn requests in flight, at most 1000 [default: 64]

Exits 0 once it has measured, whether or not the targets pass; non-zero on an error.";

/// Target: median spawns/s, from the first spawn until all have exited.
const TARGET_SPAWNS_PER_S: f64 = 500.0;
/// How long the daemon's CPU is measured while the `sleep` workers run.
const LIVE_CPU_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Target: idle RSS right after start.
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const MIB: f64 = 1024.0 * 1024.0;
/// `wait` requests per connection: the daemon refuses more than 1024 outstanding requests on
/// one connection, so the waits for a large N are spread over several.
const WAITS_PER_CONNECTION: usize = 512;
/// Most spawn requests in flight, below the daemon's per-connection limit of 1024.
const MAX_CONCURRENCY: usize = 1000;

/// The benchmark's flags.
#[derive(Debug, Clone)]
pub struct Args {
    /// The daemon binary.
    pub circuitd: PathBuf,
    /// Workers per trial.
    pub workers: usize,
    /// Trials.
    pub trials: usize,
    /// Spawn requests in flight.
    pub concurrency: usize,
}

/// Parses the flags; `Ok(None)` for `--help`.
pub fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut args = Args {
        circuitd: circuit_testkit::bin_dir()?.join("circuitd"),
        workers: 500,
        trials: 5,
        concurrency: 64,
    };
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .with_context(|| format!("{flag} needs a value"))
        };
        let count = |v: String| -> anyhow::Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{flag} takes a positive integer, not \"{v}\""),
            }
        };
        match flag.as_str() {
            "--circuitd" => args.circuitd = PathBuf::from(value()?),
            "--workers" => args.workers = count(value()?)?,
            "--trials" => args.trials = count(value()?)?,
            "--concurrency" => args.concurrency = count(value()?)?,
            other => bail!("unknown argument \"{other}\""),
        }
    }
    if args.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency is at most {MAX_CONCURRENCY}");
    }
    Ok(Some(args))
}

/// What one run measured, plus anything odd the daemon did that did not stop the run.
struct Results {
    spawn_to_exited: Samples,
    spawn_replies: Samples,
    cpu_per_spawn: Samples,
    client_cpu_per_spawn: Samples,
    idle_rss: Samples,
    live_rss: Samples,
    live_cpu: Samples,
    stop_n: Samples,
    rss_after: Samples,
    findings: Vec<String>,
}

/// Runs every trial and prints the table on stdout.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let n = args.workers;
    let mut results = Results {
        spawn_to_exited: Samples::new(format!("spawns/s, {n} `true` until all exited"), 0),
        spawn_replies: Samples::new(format!("spawns/s, {n} `true` until all replied"), 0),
        cpu_per_spawn: Samples::new("daemon CPU per `true` worker, spawn to reaped (ms)", 2),
        client_cpu_per_spawn: Samples::new("this client's CPU per `true` worker (ms)", 2),
        idle_rss: Samples::new("idle RSS after start (MiB)", 1),
        live_rss: Samples::new(format!("RSS with {n} live workers (MiB)"), 1),
        live_cpu: Samples::new(
            format!(
                "daemon CPU with {n} live idle workers, usage sampled each second (% of a core)"
            ),
            2,
        ),
        stop_n: Samples::new(format!("stop {n} live workers, one request (ms)"), 0),
        rss_after: Samples::new("RSS after each trial, workers removed (MiB)", 1),
        findings: Vec::new(),
    };
    let mut daemon = crate::bench_daemon(&args.circuitd)
        .start()
        .context("cannot start circuitd")?;
    let client = runtime.block_on(daemon.connect())?;
    let version = client.daemon_version().to_string();
    let outcome = runtime.block_on(measure(&mut daemon, &client, args, &mut results));
    drop(client);
    let stopped = daemon.stop(Duration::from_secs(20));
    match stopped {
        Ok(s) if s.killed => results.findings.push(format!(
            "circuitd ignored SIGTERM for {:.1} s and was killed with SIGKILL",
            s.took.as_secs_f64()
        )),
        Ok(s) if !s.status.success() => results
            .findings
            .push(format!("circuitd exited with {} after SIGTERM", s.status)),
        Ok(_) => {}
        Err(e) => results.findings.push(format!("stopping circuitd: {e:#}")),
    }
    if let Err(e) = outcome {
        for finding in &results.findings {
            eprintln!("note: {finding}");
        }
        // The daemon's last words go after the error, which names what the bench was doing.
        bail!("{e:#}{}", daemon.log_tail());
    }

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "## bench-spawn: {n} workers, {} trial(s), {} spawns in flight — circuitd {version}, {cpus} CPUs\n",
        args.trials, args.concurrency
    );
    let spawns = results.spawn_to_exited.median();
    let idle = results.idle_rss.median();
    let rows = [
        results.spawn_to_exited,
        results.spawn_replies,
        results.cpu_per_spawn,
        results.client_cpu_per_spawn,
        results.idle_rss,
        results.live_rss,
        results.live_cpu,
        results.stop_n,
        results.rss_after,
    ];
    let caption = format!(
        "Per trial: {n} `true` workers spawned ({} requests in flight) until all exited, then \
         {n} `sleep 1000` workers, the RSS, the daemon's CPU over {}s while they run, one stop \
         of them all, and their removal.",
        args.concurrency,
        LIVE_CPU_WINDOW.as_secs()
    );
    print!(
        "{}",
        samples_table("Spawn rate and daemon memory", &caption, &rows)
    );
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    println!(
        "target: ≥ {TARGET_SPAWNS_PER_S:.0} spawns/s, idle RSS ≤ {TARGET_IDLE_RSS_MIB:.0} MiB"
    );
    println!(
        "- spawns/s (median {spawns:.0}): {}",
        verdict(spawns >= TARGET_SPAWNS_PER_S)
    );
    println!(
        "- idle RSS (median {idle:.1} MiB): {}",
        verdict(idle <= TARGET_IDLE_RSS_MIB)
    );
    if !results.findings.is_empty() {
        println!("\nnotes:");
        for finding in &results.findings {
            println!("- {finding}");
        }
    }
    Ok(())
}

async fn measure(
    daemon: &mut Daemon,
    client: &Client,
    args: &Args,
    results: &mut Results,
) -> anyhow::Result<()> {
    let Reply::Status(status) = client.call(Request::Status).await? else {
        bail!("status: unexpected reply");
    };
    if i64::from(status.pid) != i64::from(daemon.pid()) {
        bail!(
            "the daemon on the socket has pid {}, not our child's {}",
            status.pid,
            daemon.pid()
        );
    }
    results
        .idle_rss
        .push(procfs::daemon_rss(daemon)? as f64 / MIB);
    let mut waiters = Vec::new();
    for _ in 0..args.workers.div_ceil(WAITS_PER_CONNECTION) {
        waiters.push(daemon.connect().await?);
    }
    // Generous: a slow daemon should show up in the numbers, not as a timeout.
    let deadline = Duration::from_secs(60) + Duration::from_millis(20) * args.workers as u32;

    for trial in 0..args.trials {
        let names: Vec<String> = (0..args.workers)
            .map(|i| format!("t{trial}-true-{i}"))
            .collect();
        let cpu_before = procfs::daemon_cpu(daemon)?;
        let client_cpu_before = procfs::cpu_time(std::process::id())?;
        let (replied, exited) =
            spawn_until_exited(client, &waiters, &names, args.concurrency, deadline)
                .await
                .with_context(|| format!("trial {}: spawning `true` workers", trial + 1))?;
        let n = names.len() as f64;
        let cpu = procfs::daemon_cpu(daemon)?.saturating_sub(cpu_before);
        results.cpu_per_spawn.push(cpu.as_secs_f64() * 1000.0 / n);
        let client_cpu = procfs::cpu_time(std::process::id())?.saturating_sub(client_cpu_before);
        results
            .client_cpu_per_spawn
            .push(client_cpu.as_secs_f64() * 1000.0 / n);
        results.spawn_replies.push(n / replied.as_secs_f64());
        results.spawn_to_exited.push(n / exited.as_secs_f64());
        remove_all(client, &names, args.concurrency)
            .await
            .with_context(|| format!("trial {}: removing `true` workers", trial + 1))?;
        daemon.check_alive()?;

        let names: Vec<String> = (0..args.workers)
            .map(|i| format!("t{trial}-sleep-{i}"))
            .collect();
        let pids = spawn_until_running(client, &names, args.concurrency, deadline)
            .await
            .with_context(|| format!("trial {}: spawning `sleep` workers", trial + 1))?;
        results
            .live_rss
            .push(procfs::daemon_rss(daemon)? as f64 / MIB);
        // What the daemon spends holding them: chiefly the supervisor's /proc scan each second.
        let cpu_before = procfs::daemon_cpu(daemon)?;
        tokio::time::sleep(LIVE_CPU_WINDOW).await;
        let used = procfs::daemon_cpu(daemon)?.saturating_sub(cpu_before);
        results
            .live_cpu
            .push(used.as_secs_f64() / LIVE_CPU_WINDOW.as_secs_f64() * 100.0);
        let took = stop_all(client, &names, &pids, deadline, &mut results.findings)
            .await
            .with_context(|| format!("trial {}: stopping `sleep` workers", trial + 1))?;
        results.stop_n.push(took.as_secs_f64() * 1000.0);
        remove_all(client, &names, args.concurrency)
            .await
            .with_context(|| format!("trial {}: removing `sleep` workers", trial + 1))?;

        check_clean(daemon, client, trial, &mut results.findings).await?;
        results
            .rss_after
            .push(procfs::daemon_rss(daemon)? as f64 / MIB);
    }
    Ok(())
}
