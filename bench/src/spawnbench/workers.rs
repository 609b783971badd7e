//! N workers through one daemon, each step checked against what the daemon reports: spawn
//! `true` and wait until all exited, spawn `sleep` and wait until all run, stop them all with
//! one request, remove them, and check that nothing is left.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use circuit_sdk::proto::{ExitStatus, Reply, Request, SpawnSpec, WorkerInfo, WorkerState};
use circuit_sdk::Client;
use circuit_testkit::Daemon;
use futures::StreamExt as _;
use tokio::task::JoinSet;

/// How often the live phase polls `list` for all workers running.
const LIST_POLL: Duration = Duration::from_millis(20);

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
pub async fn spawn_until_exited(
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
pub async fn spawn_until_running(
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
pub async fn stop_all(
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
pub async fn remove_all(
    client: &Client,
    names: &[String],
    concurrency: usize,
) -> anyhow::Result<()> {
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
pub async fn check_clean(
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
