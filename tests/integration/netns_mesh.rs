//! The mesh across network namespaces, one circuitd per host: hosts converge, a killed host is
//! declared dead, a worker spawned on another host streams its logs back, channels carry values
//! between hosts and fail with `OwnerLost` when their owner dies, a partition heals into one
//! cluster, and the pipeline example runs spread over three hosts. Each test reads as a script:
//! start hosts, kill or cut, assert with deadlines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use circuit_sdk::chan::{Binary, ChanError, RecvOptions, SendOptions};
use circuit_sdk::proto::{ChanInfo, NodeState, WorkerInfo, WorkerState};
use circuit_sdk::Client;
use circuit_testkit::netns::NetnsCluster;
use circuit_testkit::{alive, bin};

/// How long a fresh cluster may take until every host sees every other alive.
const CONVERGE: Duration = Duration::from_secs(10);

/// Polls `check` every 20 ms until it returns `Ok`; returns its value and how long it took.
/// Panics after `timeout` with `what` and the last reason `check` gave.
fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return (value, started.elapsed()),
            Err(why) => assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting until {what}: {why}"
            ),
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Node name → state, as host `observer` sees the mesh (`circuit nodes --json` on it).
fn view(cluster: &NetnsCluster, observer: usize) -> Result<BTreeMap<String, NodeState>, String> {
    Ok(cluster
        .nodes(observer)?
        .into_iter()
        .map(|n| (n.name, n.state))
        .collect())
}

/// Ok when host `observer` sees exactly the nodes of `expected`, in those states.
fn sees(
    cluster: &NetnsCluster,
    observer: usize,
    expected: &BTreeMap<String, NodeState>,
) -> Result<(), String> {
    let seen = view(cluster, observer)?;
    if &seen == expected {
        Ok(())
    } else {
        Err(format!("h{observer} sees {seen:?}, not {expected:?}"))
    }
}

/// `h<i>` → `state` for every host of `hosts`.
fn states(hosts: impl IntoIterator<Item = usize>, state: NodeState) -> BTreeMap<String, NodeState> {
    hosts
        .into_iter()
        .map(|i| (format!("h{i}"), state))
        .collect()
}

/// Waits until every host sees every host alive; returns how long that took.
fn wait_converged(cluster: &NetnsCluster, timeout: Duration) -> Duration {
    let n = cluster.hosts().len();
    let all_alive = states(1..=n, NodeState::Alive);
    let (_, took) = eventually(timeout, "every host sees every host alive", || {
        (1..=n).try_for_each(|i| sees(cluster, i, &all_alive))
    });
    took
}

/// A runtime for the SDK side of a test; the cluster is driven from the test's own thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An SDK client of host `i`'s daemon, through its Unix socket.
async fn client(cluster: &NetnsCluster, i: usize) -> Client {
    Client::connect_unix(&cluster.host(i).socket)
        .await
        .unwrap_or_else(|e| panic!("connect to h{i}'s daemon: {e}"))
}

/// The one worker named `name` in `workers`.
fn worker<'a>(workers: &'a [WorkerInfo], name: &str) -> &'a WorkerInfo {
    let mut found = workers.iter().filter(|w| w.name == name);
    let (Some(w), None) = (found.next(), found.next()) else {
        panic!("not exactly one worker named {name} in {workers:#?}");
    };
    w
}

/// The lines a child writes on stdout, read on a thread so that a test can wait with a deadline.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits up to `timeout` for `child` to exit.
fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let (status, _) = eventually(timeout, what, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".into()),
        Err(e) => Err(e.to_string()),
    });
    status
}

#[test]
fn five_hosts_converge() {
    let Some(cluster) = NetnsCluster::up(5, &[]) else {
        return;
    };
    let took = wait_converged(&cluster, CONVERGE);
    eprintln!("five hosts converged {took:?} after `up` returned");

    // Each host lists itself once, as itself, at its own address.
    for host in cluster.hosts() {
        let nodes = cluster.nodes(host.index).expect("nodes");
        let me: Vec<_> = nodes.iter().filter(|n| n.is_self).collect();
        assert_eq!(me.len(), 1, "h{} marks one node as itself", host.index);
        assert_eq!(me[0].name, host.name);
        assert_eq!(me[0].addr, host.mesh_addr);
    }
}

#[test]
fn a_killed_host_is_marked_dead_by_all() {
    let Some(mut cluster) = NetnsCluster::up(5, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);

    cluster.kill(5);
    let killed = Instant::now();
    let mut expected = states(1..=4, NodeState::Alive);
    expected.insert("h5".into(), NodeState::Dead);
    let mut seen_at = Vec::new();
    for i in 1..=4 {
        let timeout = Duration::from_secs(10).saturating_sub(killed.elapsed());
        eventually(timeout, &format!("h{i} sees h5 dead"), || {
            sees(&cluster, i, &expected)
        });
        seen_at.push(format!("h{i} {:?}", killed.elapsed()));
    }
    eprintln!(
        "h5 killed; seen dead (at the latest) by {}",
        seen_at.join(", ")
    );
}

#[test]
fn remote_spawn_and_follow_logs() {
    let Some(cluster) = NetnsCluster::up(5, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);

    // The worker says where it runs, then waits for the gate file so that `logs -f` is
    // following a live worker when its last line comes.
    let gate_dir = tempfile::tempdir().expect("tempdir");
    let gate = gate_dir.path().join("go");
    let script = format!(
        "echo \"hello from $(ip -4 -o addr show dev eth0 | awk '{{print $4}}')\"; echo second; \
         while [ ! -e '{}' ]; do sleep 0.02; done; echo done",
        gate.display()
    );
    let spawned = cluster.cli_ok(
        1,
        &[
            "spawn", "--node", "h4", "--name", "hello", "--", "sh", "-c", &script,
        ],
    );
    assert_eq!(spawned.trim(), "hello");

    // h1's cluster-wide list puts it on h4, and its pid is in h4's namespace.
    let workers = cluster.ps(1, &[]);
    let hello = worker(&workers, "hello");
    assert_eq!(hello.node, "h4");
    assert_eq!(hello.state, WorkerState::Running);
    let pid = hello.pid.expect("a running worker has a pid");
    assert!(
        cluster.pids(4).contains(&pid),
        "worker pid {pid} is not in h4's namespace"
    );
    assert!(!cluster.pids(1).contains(&pid));

    let mut logs = cluster.spawn_cli(1, &["logs", "-f", "hello"]);
    let lines = stdout_lines(&mut logs);
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no {what} line from `logs -f hello` on h1: {e}"))
    };
    let h4 = cluster.host(4).ip;
    assert_eq!(next("first"), format!("hello from {h4}/24"));
    assert_eq!(next("second"), "second");
    assert!(
        logs.try_wait().expect("try_wait").is_none(),
        "`logs -f` ended while the worker runs"
    );

    std::fs::write(&gate, "").expect("open the gate");
    assert_eq!(next("last"), "done");
    let status = wait_exit(
        &mut logs,
        Duration::from_secs(10),
        "`logs -f` ends with the worker",
    );
    assert!(status.success(), "`logs -f hello` exited with {status}");
    assert!(
        lines.recv_timeout(Duration::from_secs(5)).is_err(),
        "a line after the worker's last"
    );
    let hello = worker(&cluster.ps(1, &["-a"]), "hello").clone();
    assert_eq!(hello.state, WorkerState::Exited);
    assert_eq!(hello.node, "h4");
}

#[test]
fn a_hundred_thousand_values_cross_hosts() {
    const N: u64 = 100_000;
    let Some(cluster) = NetnsCluster::up(5, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);

    cluster.cli_ok(
        1,
        &["chan", "create", "jobs", "--cap", "1024", "--node", "h2"],
    );
    let stat: ChanInfo =
        serde_json::from_str(&cluster.cli_ok(3, &["chan", "stat", "jobs", "--json"]))
            .expect("chan stat --json");
    assert_eq!(stat.owner, "h2");

    let rt = runtime();
    let started = Instant::now();
    let run = async {
        // Consumers on h3, h4, h5, all open before the first value.
        let mut consumers = Vec::new();
        for i in [3, 4, 5] {
            let opts = RecvOptions {
                prefetch: 256,
                ..RecvOptions::default()
            };
            let chan = client(&cluster, i).await.chan("jobs").await.expect("open");
            let mut rx = chan
                .receiver_with::<u64, _>(Binary, opts)
                .await
                .expect("receiver");
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(v) => got.push(v),
                        Err(ChanError::Closed) => return got,
                        Err(e) => panic!("consumer on h{i}: {e}"),
                    }
                }
            }));
        }

        // The producer on h1: every value pipelined, all accepted, then close.
        let chan = client(&cluster, 1).await.chan("jobs").await.expect("open");
        let tx = chan
            .sender_with::<u64, _>(Binary, SendOptions::default())
            .await
            .expect("sender");
        for v in 0..N {
            drop(tx.submit(v).await.expect("submit"));
        }
        tx.flush().await.expect("every value accepted");
        chan.close().await.expect("close");

        let mut per_consumer = Vec::new();
        for consumer in consumers {
            per_consumer.push(consumer.await.expect("consumer task"));
        }
        per_consumer
    };
    let per_consumer = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), run).await })
        .expect("100k values through the mesh within 60 s");
    let took = started.elapsed();

    let counts: Vec<usize> = per_consumer.iter().map(Vec::len).collect();
    eprintln!("{N} values h1 → h2 → h3,h4,h5 in {took:?}; per consumer {counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "a consumer got nothing: {counts:?}"
    );
    let total: usize = counts.iter().sum();
    let distinct: BTreeSet<u64> = per_consumer.into_iter().flatten().collect();
    assert_eq!(total, N as usize, "values received, duplicates included");
    assert_eq!(distinct, (0..N).collect::<BTreeSet<_>>());
    assert!(
        took < Duration::from_secs(30),
        "100k values took {took:?}, more than 30 s"
    );
}

#[test]
fn owner_killed_mid_stream_gives_owner_lost() {
    let Some(mut cluster) = NetnsCluster::up(3, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);
    cluster.cli_ok(
        1,
        &["chan", "create", "slow", "--cap", "16", "--node", "h2"],
    );

    let rt = runtime();
    let (received_tx, received) = tokio::sync::watch::channel(0u64);
    let (sender, receiver, chan) = rt.block_on(async {
        // A sender on h1 sending as fast as it can, so that it waits on a full channel.
        let chan = client(&cluster, 1).await.chan("slow").await.expect("open");
        let tx = chan.sender::<u64>().await.expect("sender");
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                if let Err(e) = tx.send(sent).await {
                    return (sent, e);
                }
                sent += 1;
            }
        });
        // A receiver on h3 taking one value every 50 ms.
        let on_h3 = client(&cluster, 3).await.chan("slow").await.expect("open");
        let mut rx = on_h3.receiver::<u64>().await.expect("receiver");
        let receiver = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut got = 0u64;
            loop {
                tick.tick().await;
                match rx.recv().await {
                    Ok(_) => {
                        got += 1;
                        received_tx.send_replace(got);
                    }
                    Err(e) => return (got, e),
                }
            }
        });
        (sender, receiver, chan)
    });

    // Mid-stream: the receiver has taken some values and the sender waits on a full channel.
    eventually(
        Duration::from_secs(10),
        "values flow and the channel is full",
        || {
            let stat = rt.block_on(chan.stat()).map_err(|e| format!("stat: {e}"))?;
            let got = *received.borrow();
            if got >= 3 && stat.len + stat.in_flight == 16 && stat.waiting_senders > 0 {
                Ok(())
            } else {
                Err(format!("received {got}, stat {stat:?}"))
            }
        },
    );

    cluster.kill(2);
    let killed = Instant::now();
    let (sender, receiver) = rt.block_on(async {
        let limit = Duration::from_secs(5);
        let sender = tokio::time::timeout(limit, sender).await;
        let receiver = tokio::time::timeout(limit, receiver).await;
        (sender, receiver)
    });
    let (sent, send_error) = sender
        .expect("the sender hangs 5 s after the owner died")
        .expect("sender task");
    let (got, recv_error) = receiver
        .expect("the receiver hangs 5 s after the owner died")
        .expect("receiver task");
    eprintln!(
        "owner killed after {sent} sends and {got} receives; both failed within {:?}: \
         send: {send_error}; recv: {recv_error}",
        killed.elapsed()
    );
    assert!(
        send_error.is_owner_lost(),
        "send failed with {send_error:?}"
    );
    assert!(
        recv_error.is_owner_lost(),
        "recv failed with {recv_error:?}"
    );
    assert!(got >= 3 && sent >= got, "{sent} sent, {got} received");

    // A later operation on the channel fails too, at once: the owner is gone.
    let stat =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), chan.stat()).await });
    assert!(
        stat.expect("stat hangs after the owner died").is_err(),
        "stat of a channel whose owner died succeeded"
    );
}

#[test]
fn partition_heals_into_one_cluster() {
    let Some(cluster) = NetnsCluster::up(5, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);
    cluster.cli_ok(
        1,
        &[
            "spawn", "--node", "h4", "--name", "sleeper", "--", "sleep", "1000",
        ],
    );
    let before = worker(&cluster.ps(1, &["--node", "h4"]), "sleeper").clone();
    assert_eq!(before.state, WorkerState::Running);
    let pid = before.pid.expect("pid");
    // h1 has heard that h4 runs it, so it can report it lost while h4 is out of reach.
    eventually(Duration::from_secs(10), "h1 knows h4 runs sleeper", || {
        let nodes = cluster.nodes(1)?;
        let h4 = nodes.iter().find(|n| n.name == "h4").ok_or("no h4")?;
        if h4.worker_names.iter().any(|w| w == "sleeper") {
            Ok(())
        } else {
            Err(format!("h1 knows h4's workers as {:?}", h4.worker_names))
        }
    });

    cluster.partition(&[1, 2], &[3, 4, 5]);
    let cut = Instant::now();
    let mut minority = states([1, 2], NodeState::Alive);
    minority.extend(states([3, 4, 5], NodeState::Dead));
    let mut majority = states([1, 2], NodeState::Dead);
    majority.extend(states([3, 4, 5], NodeState::Alive));
    eventually(
        Duration::from_secs(15),
        "each side sees the other dead",
        || {
            sees(&cluster, 1, &minority)?;
            sees(&cluster, 2, &minority)?;
            sees(&cluster, 3, &majority)?;
            sees(&cluster, 5, &majority)
        },
    );
    let split_took = cut.elapsed();
    // From h1, the worker on h4 is lost; on h4 itself it runs on.
    let from_h1 = worker(&cluster.ps(1, &[]), "sleeper").clone();
    assert_eq!(from_h1.state, WorkerState::Lost);
    assert_eq!(from_h1.node, "h4");

    cluster.heal();
    let healed = Instant::now();
    wait_converged(&cluster, Duration::from_secs(30));
    let heal_took = healed.elapsed();
    eprintln!("partition seen on both sides after {split_took:?}; one cluster again {heal_took:?} after heal");

    // The worker on h4 never noticed: same process, running, seen so from h1 again.
    let after = worker(&cluster.ps(1, &["--node", "h4"]), "sleeper").clone();
    assert_eq!(after.state, WorkerState::Running);
    assert_eq!(after.pid, Some(pid));
    assert_eq!(after.restarts, 0);
    assert!(alive(pid as i32) && cluster.pids(4).contains(&pid));
    let from_h1 = worker(&cluster.ps(1, &[]), "sleeper").clone();
    assert_eq!(
        (from_h1.state, from_h1.pid, from_h1.node.as_str()),
        (WorkerState::Running, Some(pid), "h4")
    );
}

#[test]
fn pipeline_over_three_hosts() {
    const SHAPE: &str = "--docs 300 --seed 7 --analyzers 3";
    let local = std::process::Command::new(bin("pipeline"))
        .args(format!("local {SHAPE}").split_whitespace())
        .output()
        .expect("run pipeline local");
    assert!(local.status.success(), "pipeline local failed: {local:?}");
    let expected = String::from_utf8(local.stdout).expect("utf-8");
    assert!(expected.starts_with(r#"{"docs":300,"#), "{expected}");

    let Some(cluster) = NetnsCluster::up(3, &[]) else {
        return;
    };
    wait_converged(&cluster, CONVERGE);

    // Analyzers pause 20 ms per document: a run of about two seconds, long enough to see where
    // every stage and channel is (workers and channels are removed only after the result).
    let line = format!("distributed {SHAPE} --nodes h1,h2,h3 --analyze-delay-ms 20");
    let mut run = cluster
        .exec_command(
            1,
            bin("pipeline"),
            &line.split_whitespace().collect::<Vec<_>>(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pipeline distributed");

    let (placed, _) = eventually(
        Duration::from_secs(10),
        "every stage of the run is listed",
        || {
            let workers = cluster.ps(1, &["-a"]);
            let placed: BTreeMap<String, String> = workers
                .into_iter()
                .filter(|w| w.name.starts_with("pipeline-"))
                .map(|w| (w.name, w.node))
                .collect();
            if placed.len() == 5 {
                Ok(placed)
            } else {
                Err(format!("listed so far: {placed:?}"))
            }
        },
    );
    let expected_placement: BTreeMap<String, String> = [
        ("pipeline-fetch", "h1"),
        ("pipeline-analyze-1", "h2"),
        ("pipeline-analyze-2", "h2"),
        ("pipeline-analyze-3", "h2"),
        ("pipeline-store", "h3"),
    ]
    .into_iter()
    .map(|(w, n)| (w.to_string(), n.to_string()))
    .collect();
    assert_eq!(placed, expected_placement);
    let chans: Vec<ChanInfo> =
        circuit_testkit::json_list(cluster.cli_ok(2, &["chan", "ls", "--json"]), "channels")
            .expect("chan ls");
    let owners: BTreeMap<&str, &str> = chans
        .iter()
        .map(|c| (c.name.as_str(), c.owner.as_str()))
        .collect();
    assert_eq!(
        owners,
        BTreeMap::from([
            ("pipeline-counts", "h3"),
            ("pipeline-docs", "h2"),
            ("pipeline-result", "h1"),
        ])
    );

    let status = wait_exit(
        &mut run,
        Duration::from_secs(30),
        "the distributed run ends",
    );
    let out = run.wait_with_output().expect("pipeline output");
    assert!(
        status.success(),
        "pipeline {line} failed ({status}): {}\nh1's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.daemon_log(1)
    );
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), expected);

    // The run removed what it created, on every host.
    assert_eq!(cluster.ps(1, &["-a"]), vec![]);
    let left: Vec<ChanInfo> =
        circuit_testkit::json_list(cluster.cli_ok(3, &["chan", "ls", "--json"]), "channels")
            .expect("chan ls");
    assert!(left.is_empty(), "{left:?}");
}
