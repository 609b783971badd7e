//! `bench-spawn`: how fast circuitd starts and reaps short workers, how much memory it holds idle
//! and with N live workers, and how long one `stop` of N workers takes. Prints a Markdown table.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use circuit_bench::procfs;
use circuit_bench::report::{samples_table, Samples};
use circuit_sdk::proto::{ExitStatus, Reply, Request, SpawnSpec, WorkerInfo, WorkerState};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use futures::StreamExt as _;
use tokio::task::JoinSet;

const USAGE: &str = "\
usage: bench-spawn [--circuitd PATH] [--workers N] [--trials T] [--concurrency C]

  --circuitd PATH   daemon binary [default: circuitd next to this binary]
  --workers N       workers per trial [default: 500]
  --trials T        trials [default: 5]
  --concurrency C   spawn requests in flight, at most 1000 [default: 64]

Exits 0 once it has measured, whether or not the targets pass; non-zero on an error.";

/// Target: median spawns/s, from the first spawn until all have exited.
const TARGET_SPAWNS_PER_S: f64 = 500.0;
/// Target: idle RSS right after start.
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
/// How often the live phase polls `list` for all workers running.
const LIST_POLL: Duration = Duration::from_millis(20);
const MIB: f64 = 1024.0 * 1024.0;
/// `wait` requests per connection: the daemon refuses more than 1024 outstanding requests on
/// one connection, so the waits for a large N are spread over several.
const WAITS_PER_CONNECTION: usize = 512;
/// Most spawn requests in flight, below the daemon's per-connection limit of 1024.
const MAX_CONCURRENCY: usize = 1000;

struct Args {
    circuitd: PathBuf,
    workers: usize,
    trials: usize,
    concurrency: usize,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-spawn: error: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-spawn: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` for `--help`.
fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
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
    stop_n: Samples,
    rss_after: Samples,
    findings: Vec<String>,
}

fn run(args: &Args) -> anyhow::Result<()> {
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
        stop_n: Samples::new(format!("stop {n} live workers, one request (ms)"), 0),
        rss_after: Samples::new("RSS after each trial, workers removed (MiB)", 1),
        findings: Vec::new(),
    };
    let mut daemon = circuit_bench::bench_daemon(&args.circuitd)
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
        results.stop_n,
        results.rss_after,
    ];
    let caption = format!(
        "Per trial: {n} `true` workers spawned ({} requests in flight) until all exited, then \
         {n} `sleep 1000` workers, the RSS, one stop of them all, and their removal.",
        args.concurrency
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

fn spec(name: &str, command: &str, args: &[&str]) -> SpawnSpec {
    SpawnSpec {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Spawns `true` under each name, `concurrency` requests in flight, and waits (one `wait`
/// request per worker, sent on one of `waiters` as its spawn is answered) until all have exited
/// with code 0.
/// Returns the time until the last spawn reply and until the last exit, both from the first
/// spawn request.
async fn spawn_until_exited(
    client: &Client,
    waiters: &[Client],
    names: &[String],
    concurrency: usize,
    deadline: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut spawns = futures::stream::iter(names)
        .map(|name| async move {
            let reply = client
                .call(Request::Spawn(spec(name, "/bin/true", &[])))
                .await;
            (name, reply)
        })
        .buffer_unordered(concurrency);
    let mut waits = JoinSet::new();
    let mut failures = Vec::new();
    let spawned = tokio::time::timeout(deadline, async {
        while let Some((name, reply)) = spawns.next().await {
            match reply {
                Ok(Reply::Worker(_)) => {
                    let client = waiters[waits.len() % waiters.len()].clone();
                    let name = name.clone();
                    waits.spawn(async move {
                        let end = client.call(Request::Wait { name: name.clone() }).await;
                        (name, end, started.elapsed())
                    });
                }
                Ok(other) => failures.push(format!("{name}: unexpected spawn reply {other:?}")),
                Err(e) => failures.push(format!("{name}: spawn failed: {e}")),
            }
        }
    })
    .await;
    let replied = started.elapsed();
    if spawned.is_err() {
        bail!("not all spawns were answered within {deadline:?}");
    }
    fail_on(&failures, names.len(), "spawn")?;

    let mut last = Duration::ZERO;
    let mut pending: HashSet<String> = names.iter().cloned().collect();
    let all_ended = tokio::time::timeout(deadline, async {
        while let Some(joined) = waits.join_next().await {
            let (name, end, at) = joined.context("a wait task panicked")?;
            pending.remove(&name);
            last = last.max(at);
            match end {
                Ok(Reply::End(end))
                    if end.state == WorkerState::Exited
                        && end.exit == Some(ExitStatus::Code { code: 0 }) => {}
                Ok(Reply::End(end)) => failures.push(format!(
                    "{name}: ended {} with {:?} ({})",
                    end.state,
                    end.exit,
                    end.reason.unwrap_or_default()
                )),
                Ok(other) => failures.push(format!("{name}: unexpected wait reply {other:?}")),
                Err(e) => failures.push(format!("{name}: wait failed: {e}")),
            }
        }
        anyhow::Ok(())
    })
    .await;
    match all_ended {
        Ok(result) => result?,
        Err(_) => {
            let states = describe(client, &pending).await;
            bail!(
                "{} of {} workers had not exited {deadline:?} after their spawn replies: {states}",
                pending.len(),
                names.len()
            );
        }
    }
    fail_on(&failures, names.len(), "worker")?;

    // The daemon's own table must agree with what `wait` said.
    let not_exited = not_exited_in_list(client, names).await?;
    fail_on(&not_exited, names.len(), "listed worker")?;
    Ok((replied, last))
}

/// What `list` says of each named worker that is not `exited` (or is missing).
async fn not_exited_in_list(client: &Client, names: &[String]) -> anyhow::Result<Vec<String>> {
    let listed = list(client).await?;
    Ok(names
        .iter()
        .filter_map(|name| match listed.get(name) {
            Some(w) if w.state == WorkerState::Exited => None,
            Some(w) => Some(format!("{name} is {}", w.state)),
            None => Some(format!("{name} is missing from list")),
        })
        .collect())
}

/// Spawns `sleep 1000` under each name and polls `list` until all run. Returns their pids.
async fn spawn_until_running(
    client: &Client,
    names: &[String],
    concurrency: usize,
    deadline: Duration,
) -> anyhow::Result<HashMap<String, u32>> {
    let replies: Vec<_> = futures::stream::iter(names)
        .map(|name| async move {
            let reply = client
                .call(Request::Spawn(spec(name, "/bin/sleep", &["1000"])))
                .await;
            (name, reply)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (name, reply) in replies {
        match reply {
            Ok(Reply::Worker(_)) => {}
            Ok(other) => failures.push(format!("{name}: unexpected spawn reply {other:?}")),
            Err(e) => failures.push(format!("{name}: spawn failed: {e}")),
        }
    }
    fail_on(&failures, names.len(), "spawn")?;

    let until = Instant::now() + deadline;
    loop {
        let listed = list(client).await?;
        let mut pids = HashMap::new();
        let mut waiting = Vec::new();
        for name in names {
            match listed.get(name) {
                Some(w) if w.state == WorkerState::Running => match w.pid {
                    Some(pid) => {
                        pids.insert(name.clone(), pid);
                    }
                    None => waiting.push(format!("{name} is running without a pid")),
                },
                Some(w) if w.state.is_terminal() => bail!(
                    "{name} should sleep but is {} ({:?}, {})",
                    w.state,
                    w.last_exit,
                    w.reason.clone().unwrap_or_default()
                ),
                Some(w) => waiting.push(format!("{name} is {}", w.state)),
                None => bail!("{name} is missing from list after its spawn succeeded"),
            }
        }
        if waiting.is_empty() {
            return Ok(pids);
        }
        if Instant::now() >= until {
            bail!(
                "{} of {} workers not running after {deadline:?}: {}",
                waiting.len(),
                names.len(),
                sample(&waiting)
            );
        }
        tokio::time::sleep(LIST_POLL).await;
    }
}

/// Stops every worker with one request and returns how long the request took. Checks that the
/// reply and `list` show them all exited and that their processes are gone.
async fn stop_all(
    client: &Client,
    names: &[String],
    pids: &HashMap<String, u32>,
    deadline: Duration,
    findings: &mut Vec<String>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let request = Request::Stop {
        names: names.to_vec(),
        signal: None,
        timeout_ms: None,
    };
    let reply = tokio::time::timeout(deadline, client.call(request))
        .await
        .with_context(|| format!("stop did not answer within {deadline:?}"))??;
    let took = started.elapsed();
    let Reply::Workers(stopped) = reply else {
        bail!("stop: unexpected reply {reply:?}");
    };
    if stopped.len() != names.len() {
        bail!(
            "stop of {} workers answered for {}",
            names.len(),
            stopped.len()
        );
    }
    let odd: Vec<String> = stopped
        .iter()
        .filter(|w| w.state != WorkerState::Exited)
        .map(|w| format!("{} is {}", w.name, w.state))
        .collect();
    fail_on(&odd, names.len(), "worker in the stop reply")?;
    let odd = not_exited_in_list(client, names).await?;
    fail_on(&odd, names.len(), "worker listed after stop")?;

    // Reaped processes have no /proc entry; a survivor is a leak (or, rarely, a reused pid).
    let leaked: Vec<(String, u32)> = pids
        .iter()
        .filter(|(_, pid)| is_our_sleep(**pid))
        .map(|(name, pid)| (name.clone(), *pid))
        .collect();
    if !leaked.is_empty() {
        let list: Vec<String> = leaked
            .iter()
            .map(|(n, p)| format!("{n} (pid {p})"))
            .collect();
        findings.push(format!(
            "{} `sleep` processes survived a stop that reported them exited; killed them: {}",
            leaked.len(),
            sample(&list)
        ));
        for (_, pid) in leaked {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    Ok(took)
}

/// True when `pid` is (still) a `sleep 1000` process, alive or a zombie.
fn is_our_sleep(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"/bin/sleep\0"))
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(sleep)"))
}

/// Removes every worker, stopping it if needed.
async fn remove_all(client: &Client, names: &[String], concurrency: usize) -> anyhow::Result<()> {
    let replies: Vec<_> = futures::stream::iter(names)
        .map(|name| async move {
            let request = Request::Remove {
                name: name.clone(),
                force: true,
            };
            (name, client.call(request).await)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failures: Vec<String> = replies
        .into_iter()
        .filter_map(|(name, reply)| match reply {
            Ok(Reply::Done) => None,
            Ok(other) => Some(format!("{name}: unexpected remove reply {other:?}")),
            Err(e) => Some(format!("{name}: remove failed: {e}")),
        })
        .collect();
    fail_on(&failures, names.len(), "remove")
}

/// After a trial: no workers listed and no worker log directories left.
async fn check_clean(
    daemon: &mut Daemon,
    client: &Client,
    trial: usize,
    findings: &mut Vec<String>,
) -> anyhow::Result<()> {
    daemon.check_alive()?;
    let left = list(client).await?;
    if !left.is_empty() {
        let names: Vec<String> = left.keys().cloned().collect();
        bail!(
            "trial {}: {} workers still listed after all were removed: {}",
            trial + 1,
            left.len(),
            sample(&names)
        );
    }
    let table = daemon.data_dir.join("jobs.json");
    let jobs = std::fs::read(&table)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("jobs").and_then(|jobs| jobs.as_array()).map(Vec::len));
    match jobs {
        Some(0) => {}
        Some(n) => findings.push(format!(
            "trial {}: the job table ({}) still holds {n} jobs after all were removed",
            trial + 1,
            table.display()
        )),
        None => findings.push(format!(
            "trial {}: cannot read a job list from {}",
            trial + 1,
            table.display()
        )),
    }
    let dirs = std::fs::read_dir(daemon.data_dir.join("workers"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    if dirs > 0 {
        findings.push(format!(
            "trial {}: {dirs} worker log directories left in the data dir after remove",
            trial + 1
        ));
    }
    Ok(())
}

/// Every worker the daemon knows, by name.
async fn list(client: &Client) -> anyhow::Result<HashMap<String, WorkerInfo>> {
    match client.call(Request::List { all: true }).await? {
        Reply::Workers(workers) => Ok(workers.into_iter().map(|w| (w.name.clone(), w)).collect()),
        other => bail!("list: unexpected reply {other:?}"),
    }
}

/// The state of each pending worker, for an error message.
async fn describe(client: &Client, pending: &HashSet<String>) -> String {
    match list(client).await {
        Ok(listed) => {
            let mut states: Vec<String> = pending
                .iter()
                .map(|name| match listed.get(name) {
                    Some(w) => format!("{name} {} (pid {:?})", w.state, w.pid),
                    None => format!("{name} missing"),
                })
                .collect();
            states.sort();
            sample(&states)
        }
        Err(e) => format!("(list failed: {e:#})"),
    }
}

/// Fails with a count and the first few messages when there are any.
fn fail_on(failures: &[String], of: usize, what: &str) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    bail!(
        "{} of {of} {what}s failed: {}",
        failures.len(),
        sample(failures)
    )
}

/// The first five items, and how many more there are.
fn sample(items: &[String]) -> String {
    let shown = items.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    match items.len().saturating_sub(5) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
    }
}
