//! Replicated channels (`--replicas 3`) on real daemons meshed on loopback: the rules R1..R7 of
//! `docs/CHANNELS.md` that one machine can show. The namespace scenarios (a host's link cut,
//! five hosts) are in `netns_replicated.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use circuit_sdk::chan::{ChanError, ChanOptions, Json, SendOptions, Sender, Storage};
use circuit_sdk::proto::{ChanInfo, NodeState, Reply, Request};
use circuit_sdk::Client;
use circuit_testkit::{wait_until, wait_until_async, Daemon};

const SOON: Duration = Duration::from_secs(20);

/// Three daemons meshed on loopback, named a, b and c.
struct Mesh {
    nodes: Vec<Daemon>,
}

impl Mesh {
    fn start() -> Self {
        Self::start_with(&["a", "b", "c"], &[])
    }

    /// Daemons named `names`, with `extra` flags each, meshed and seeing each other.
    fn start_with(names: &[&str], extra: &[&str]) -> Self {
        let start = |name: &str, flags: &[&str]| {
            Daemon::builder()
                .name(name)
                .flags(flags)
                .flags(extra)
                .log_level("info,circuitd=debug,openraft=warn")
                .start()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let first = start(names[0], &["--listen", "127.0.0.1:0"]);
        let addr = first.mesh_addr();
        let join = ["--listen", "127.0.0.1:0", "--join", addr.as_str()];
        let mut nodes = vec![first];
        for name in &names[1..] {
            nodes.push(start(name, &join));
        }
        for d in &nodes {
            wait_until(SOON, "the nodes see each other alive", || {
                d.nodes()
                    .iter()
                    .filter(|n| n.state == NodeState::Alive)
                    .count()
                    == names.len()
            });
        }
        Self { nodes }
    }

    fn by_name(&self, name: &str) -> &Daemon {
        self.nodes
            .iter()
            .find(|d| d.name == name)
            .expect("a node of the mesh")
    }

    fn kill9(&mut self, name: &str) {
        let i = self.index_of(name);
        self.nodes[i].kill9();
    }

    /// Prints every node's log lines about replicas, for a failure's message.
    fn dump_replica_logs(&self) {
        for n in &self.nodes {
            let log = n.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("replica") && !l.contains("openraft"))
                .collect();
            eprintln!("==== {}\n{}", n.name, lines.join("\n"));
        }
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|d| d.name == name)
            .expect("a node of the mesh")
    }
}

async fn stat(client: &Client, name: &str) -> Option<ChanInfo> {
    match client
        .call(Request::ChanStat {
            name: name.to_string(),
        })
        .await
    {
        Ok(Reply::Chan(info)) => Some(info),
        _ => None,
    }
}

/// The channel's leader, once one serves and every replica is a follower or the leader.
async fn leader(client: &Client, name: &str) -> String {
    wait_until_async(SOON, "a leader and its followers", || async {
        let info = stat(client, name).await?;
        let settled = info.replicas.iter().filter(|r| r.state == "leader").count() == 1
            && !info.owner.is_empty();
        settled.then_some(info.owner)
    })
    .await
}

/// R1, R2, R3: a replicated channel is held by three nodes, one of which leads; its values
/// survive the leader's `kill -9` mid-stream: the receiver gets every value sent, once, in
/// order, with senders and receivers on the other nodes following the new leader by
/// themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r2_the_leaders_death_loses_nothing_and_doubles_nothing() {
    let mut mesh = Mesh::start();
    let a = mesh.by_name("a").client().await;
    let created = a
        .chan_create_with("q", 64, ChanOptions::replicated(3), false)
        .await
        .expect("create q --replicas 3");
    assert_eq!(created.capacity(), 64);
    let info = stat(&a, "q").await.expect("stat");
    let mut nodes: Vec<&str> = info.replicas.iter().map(|r| r.node.as_str()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["a", "b", "c"], "{info:?}");
    assert_eq!(info.storage, "memory");
    let lead = leader(&a, "q").await;
    // Sender and receiver on the two nodes that do not lead.
    let others: Vec<String> = ["a", "b", "c"]
        .iter()
        .filter(|n| **n != lead)
        .map(|n| n.to_string())
        .collect();
    let tx_client = mesh.by_name(&others[0]).client().await;
    let rx_client = mesh.by_name(&others[1]).client().await;
    let opts = SendOptions {
        reconnect_for: SOON,
        ..SendOptions::default()
    };
    let tx = tx_client
        .chan("q")
        .await
        .expect("open q")
        .sender_with(Json, opts)
        .await
        .expect("sender");
    let total: u64 = 3000;
    let sending = tokio::spawn(async move {
        for i in 1..=total {
            tx.send(i).await.unwrap_or_else(|e| panic!("send {i}: {e}"));
        }
    });
    let rx_chan = rx_client.chan("q").await.expect("open q");
    let mut rx = rx_chan.receiver::<u64>().await.expect("receiver");
    let mut got = Vec::new();
    let mut killed = None;
    let mut longest = Duration::ZERO;
    let mut last = Instant::now();
    while got.len() < total as usize {
        let v = tokio::time::timeout(SOON, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no value after {} of {total}", got.len()))
            .unwrap_or_else(|e| panic!("recv after {} values: {e}", got.len()));
        got.push(v);
        longest = longest.max(last.elapsed());
        last = Instant::now();
        if got.len() == 1000 && killed.is_none() {
            let i = mesh.index_of(&lead);
            mesh.nodes[i].kill9();
            killed = Some(Instant::now());
        }
    }
    sending.await.expect("sender task");
    let mut seen = HashMap::new();
    for v in &got {
        *seen.entry(*v).or_insert(0) += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "values received twice: {doubled:?}");
    let want: Vec<u64> = (1..=total).collect();
    assert_eq!(got, want, "every value once, in order");
    // The survivors name a new leader, and the old one as lost.
    let info = wait_until_async(SOON, "a new leader", || async {
        let info = stat(&rx_client, "q").await?;
        (info.owner != lead && !info.owner.is_empty()).then_some(info)
    })
    .await;
    assert!(
        info.replicas
            .iter()
            .any(|r| r.node == lead && r.state == "lost"),
        "{info:?}"
    );
    let killed = killed.expect("the leader was killed");
    if longest > Duration::from_secs(3) {
        for d in &mesh.nodes {
            eprintln!("==== {}\n{}", d.name, d.log());
        }
    }
    eprintln!(
        "the rest of the stream took {:?}; the longest pause between two values {longest:?}",
        killed.elapsed()
    );
}

/// R4: without a majority, a send fails with `unavailable` within `reconnect_for` instead of
/// hanging; and the channel serves again, with the values it held, as soon as a majority is
/// back (two of three daemons paused, then one of them resumed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r4_without_a_majority_sends_fail_with_unavailable_in_bounded_time() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mesh = Mesh::start();
    let a = mesh.by_name("a").client().await;
    a.chan_create_with("q", 8, ChanOptions::replicated(3), false)
        .await
        .expect("create");
    leader(&a, "q").await;
    let tx: Sender<u64> = a
        .chan("q")
        .await
        .expect("open")
        .sender::<u64>()
        .await
        .expect("sender");
    tx.send(1).await.expect("send while all are up");
    drop(tx);
    // Keep a; pause b and c (they keep their replicas, as a node cut off does).
    let paused: Vec<Pid> = ["b", "c"]
        .iter()
        .map(|n| Pid::from_raw(mesh.by_name(n).pid()))
        .collect();
    for pid in &paused {
        kill(*pid, Signal::SIGSTOP).expect("SIGSTOP");
    }
    let resume_all = || {
        for pid in &paused {
            let _ = kill(*pid, Signal::SIGCONT);
        }
    };
    let opts = SendOptions {
        reconnect_for: Duration::from_secs(3),
        ..SendOptions::default()
    };
    let started = Instant::now();
    let result = async {
        let tx: Sender<u64> = a.chan("q").await?.sender_with(Json, opts).await?;
        tx.send(2).await
    }
    .await;
    let took = started.elapsed();
    if !matches!(result, Err(ChanError::Unavailable(_))) || took >= Duration::from_secs(15) {
        resume_all();
        panic!("expected unavailable within 15 s, got {result:?} after {took:?}");
    }
    // One of the two comes back: a majority again, and the channel serves with what it held.
    kill(paused[0], Signal::SIGCONT).expect("SIGCONT");
    let opts = SendOptions {
        reconnect_for: SOON,
        ..SendOptions::default()
    };
    let sent = async {
        let tx: Sender<u64> = a.chan("q").await?.sender_with(Json, opts).await?;
        tx.send(3).await
    }
    .await;
    let mut rx = a
        .chan("q")
        .await
        .expect("open")
        .receiver::<u64>()
        .await
        .expect("receiver");
    let mut got = Vec::new();
    while got.last() != Some(&3) {
        match tokio::time::timeout(SOON, rx.recv()).await {
            Ok(Ok(v)) => got.push(v),
            other => {
                resume_all();
                panic!("recv after {got:?}: {other:?}");
            }
        }
    }
    resume_all();
    sent.expect("a send once the majority is back");
    // 2 failed unconfirmed: it may have reached the leader's log and committed once the
    // majority was back (its outcome is unknown, as a timeout's), but never twice.
    assert!(
        got == [1, 3] || got == [1, 2, 3],
        "the value held before, then the new one: {got:?}"
    );
}

/// Bad input: replica counts other than 1, 3 and 5, labels no node has, and more replicas
/// than nodes are refused with a clear message, and nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replica_options_are_refused_and_change_nothing() {
    let mesh = Mesh::start();
    let a = mesh.by_name("a");
    for (args, says) in [
        (vec!["--replicas", "2"], "a channel has 1 replica"),
        (vec!["--replicas", "0"], "a channel has 1 replica"),
        (vec!["--replicas", "7"], "a channel has 1 replica"),
        (vec!["--replicas", "5"], "needs 5 live nodes"),
        (
            vec!["--replicas", "3", "--replica-labels", "zone=nowhere"],
            "with the labels zone=nowhere",
        ),
        (
            vec!["--replicas", "3", "--replica-labels", "zone"],
            "expected KEY=VALUE",
        ),
        (
            vec!["--replicas", "3", "--storage", "tape"],
            "expected memory or disk",
        ),
        (
            vec!["--replica-labels", "zone=a"],
            "for replicated channels",
        ),
    ] {
        let mut full = vec!["chan", "create", "q"];
        full.extend(args.iter().copied());
        let out = a.cli(&full);
        assert!(!out.status.success(), "{full:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{full:?}: {err}");
    }
    let ls = a.cli_ok(&["chan", "ls", "--json"]);
    assert!(no_channels(&ls), "nothing was made: {ls}");
}

/// R5: a leader paused (SIGSTOP) long enough for the mesh to give up on it is replaced; when
/// it resumes it serves nothing (its first attempt meets the newer term), and no value is
/// accepted twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r5_a_paused_leader_is_replaced_and_never_serves_beside_the_new_one() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mesh = Mesh::start();
    let a = mesh.by_name("a").client().await;
    a.chan_create_with("q", 16, ChanOptions::replicated(3), false)
        .await
        .expect("create");
    let lead = leader(&a, "q").await;
    let others: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != lead).collect();
    let tx_client = mesh.by_name(others[0]).client().await;
    let rx_client = mesh.by_name(others[1]).client().await;
    let opts = SendOptions {
        reconnect_for: SOON,
        ..SendOptions::default()
    };
    let tx: Sender<u64> = tx_client
        .chan("q")
        .await
        .expect("open")
        .sender_with(Json, opts)
        .await
        .expect("sender");
    let total: u64 = 1500;
    let sending = tokio::spawn(async move {
        for i in 1..=total {
            tx.send(i).await.unwrap_or_else(|e| panic!("send {i}: {e}"));
        }
    });
    let mut rx = rx_client
        .chan("q")
        .await
        .expect("open")
        .receiver::<u64>()
        .await
        .expect("receiver");
    let paused = Pid::from_raw(mesh.by_name(&lead).pid());
    let mut got = Vec::new();
    let mut stopped_at = None;
    let mut resumed = false;
    while got.len() < total as usize {
        let v = tokio::time::timeout(SOON, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no value after {} of {total}", got.len()))
            .unwrap_or_else(|e| panic!("recv after {} values: {e}", got.len()));
        got.push(v);
        if got.len() == 300 {
            kill(paused, Signal::SIGSTOP).expect("SIGSTOP");
            stopped_at = Some(Instant::now());
        }
        // Resume it while the stream still runs, once it has been out for longer than the
        // mesh takes to declare it dead.
        if !resumed && stopped_at.is_some_and(|at| at.elapsed() > Duration::from_secs(4)) {
            kill(paused, Signal::SIGCONT).expect("SIGCONT");
            resumed = true;
        }
    }
    if !resumed {
        kill(paused, Signal::SIGCONT).expect("SIGCONT");
    }
    sending.await.expect("sender task");
    let want: Vec<u64> = (1..=total).collect();
    assert_eq!(got, want, "every value once, in order");
    // The resumed node knows it does not lead: it names the new leader, of a newer term.
    let old = mesh.by_name(&lead).client().await;
    let info = wait_until_async(SOON, "the old leader to follow", || async {
        let info = stat(&old, "q").await?;
        (!info.owner.is_empty() && info.owner != lead).then_some(info)
    })
    .await;
    let now = stat(&rx_client, "q").await.expect("stat");
    assert_eq!(info.owner, now.owner, "one leader: {info:?} {now:?}");
}

/// R6: close and rm are replicated: a close asked on any node ends the stream after the
/// values already in the channel, and rm removes every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_close_and_rm_are_replicated() {
    let mesh = Mesh::start();
    let a = mesh.by_name("a");
    a.cli_ok(&["chan", "create", "q", "--cap", "8", "--replicas", "3"]);
    let client = a.client().await;
    let lead = leader(&client, "q").await;
    let other = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != lead)
        .expect("a follower");
    let d = mesh.by_name(other);
    for v in ["1", "2", "3"] {
        d.cli_ok(&["send", "q", v]);
    }
    d.cli_ok(&["chan", "close", "q"]);
    let out = d.cli(&["send", "q", "4"]);
    assert!(!out.status.success(), "a send after close must fail");
    assert_eq!(d.cli_ok(&["recv", "q", "-n", "3"]), "1\n2\n3\n");
    let stat: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["--json", "chan", "stat", "q"])).expect("json");
    assert_eq!(stat["closed"], true, "{stat}");
    d.cli_ok(&["chan", "rm", "q"]);
    for node in &mesh.nodes {
        let what = format!("{}'s replica removed", node.name);
        if circuit_testkit::try_wait_until(SOON, &what, || {
            no_channels(&node.cli_ok(&["chan", "ls", "--json"]))
        })
        .is_err()
        {
            mesh.dump_replica_logs();
            panic!("{what}: ls {}", node.cli_ok(&["chan", "ls", "--json"]));
        }
    }
}

/// R7: repair. A replica's node dead for `--replica-repair-after` is replaced by a new replica
/// on another live node, which catches up; the channel keeps its values and serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r7_a_dead_replica_is_replaced_and_the_count_returns_to_three() {
    let mut mesh = Mesh::start_with(&["a", "b", "c", "d"], &["--replica-repair-after", "2s"]);
    let a = mesh.by_name("a").client().await;
    a.chan_create_with("q", 64, ChanOptions::replicated(3), false)
        .await
        .expect("create");
    let lead = leader(&a, "q").await;
    let info = stat(&a, "q").await.expect("stat");
    let holders: Vec<String> = info.replicas.iter().map(|r| r.node.clone()).collect();
    let spare = ["a", "b", "c", "d"]
        .into_iter()
        .find(|n| !holders.iter().any(|h| h == n))
        .expect("one node without a replica");
    // A follower's node dies for good, with 10 values in the channel.
    let victim = holders
        .iter()
        .find(|n| **n != lead)
        .expect("a follower")
        .clone();
    for v in 1..=10 {
        mesh.by_name(spare).cli_ok(&["send", "q", &v.to_string()]);
    }
    mesh.kill9(&victim);
    let client = mesh.by_name(spare).client().await;
    let info = wait_until_async(SOON, "three replicas again, none lost", || async {
        let info = stat(&client, "q").await?;
        let ok = info.replicas.len() == 3
            && info
                .replicas
                .iter()
                .all(|r| r.state == "leader" || r.state == "follower")
            && info.replicas.iter().any(|r| r.node == spare);
        ok.then_some(info)
    })
    .await;
    eprintln!("repaired: {info:?}");
    assert!(!info.replicas.iter().any(|r| r.node == victim), "{info:?}");
    // Nothing was lost, and the new replica holds the values: kill the leader too, and the
    // two left (the new one among them) still serve them all.
    for v in 11..=20 {
        mesh.by_name(spare).cli_ok(&["send", "q", &v.to_string()]);
    }
    mesh.kill9(&lead);
    let want: String = (1..=20).map(|v| format!("{v}\n")).collect();
    assert_eq!(mesh.by_name(spare).cli_ok(&["recv", "q", "-n", "20"]), want);
}

/// R7 after a quick restart: a memory replica whose daemon restarted before the mesh called
/// it dead holds nothing; it shows as lost, and the leader replaces it (on the same node, the
/// only one free) once it has taken no entries for `--replica-repair-after`, so that losing
/// another replica afterwards still leaves a majority holding every value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r7_a_memory_replica_restarted_empty_is_replaced() {
    let mut mesh = Mesh::start_with(&["a", "b", "c"], &["--replica-repair-after", "2s"]);
    let a = mesh.by_name("a").client().await;
    a.chan_create_with("q", 64, ChanOptions::replicated(3), false)
        .await
        .expect("create");
    let lead = leader(&a, "q").await;
    let followers: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != lead).collect();
    // Restart a follower other than a (whose address the others join).
    let restarted = followers
        .iter()
        .copied()
        .find(|n| *n != "a")
        .expect("a follower");
    let other = followers
        .iter()
        .copied()
        .find(|n| *n != restarted)
        .expect("the other follower");
    for v in 1..=10 {
        mesh.by_name(&lead).cli_ok(&["send", "q", &v.to_string()]);
    }
    let i = mesh.index_of(restarted);
    mesh.nodes[i].kill9();
    mesh.nodes[i].launch();
    if restarted != "a" {
        let addr = mesh.by_name("a").mesh_addr();
        mesh.by_name(restarted).cli_ok(&["join", &addr]);
    }
    let l = mesh.by_name(&lead).client().await;
    let replaced = circuit_testkit::try_wait_until_async(
        SOON,
        "the restarted replica replaced and caught up",
        || async {
            let info = stat(&l, "q").await?;
            let live = info
                .replicas
                .iter()
                .filter(|r| r.state == "leader" || r.state == "follower")
                .count();
            let repaired = mesh
                .by_name(&lead)
                .log()
                .contains("replacing a replica that takes no entries");
            (repaired && live == 3 && info.replicas.len() == 3).then_some(())
        },
    )
    .await;
    if let Err(e) = replaced {
        mesh.dump_replica_logs();
        panic!("{e}: {:?}", stat(&l, "q").await);
    }
    for v in 11..=20 {
        mesh.by_name(&lead).cli_ok(&["send", "q", &v.to_string()]);
    }
    // The other follower dies: the leader and the new replica are the majority.
    mesh.kill9(other);
    let want: String = (1..=20).map(|v| format!("{v}\n")).collect();
    assert_eq!(
        mesh.by_name(restarted).cli_ok(&["recv", "q", "-n", "20"]),
        want
    );
}

/// R8: `--storage disk`. Every daemon of a replicated channel killed and started again: every
/// accepted value is still there, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r8_a_disk_channel_survives_the_restart_of_all_its_daemons() {
    let mut mesh = Mesh::start();
    let a = mesh.by_name("a");
    a.cli_ok(&[
        "chan",
        "create",
        "q",
        "--cap",
        "500",
        "--replicas",
        "3",
        "--storage",
        "disk",
    ]);
    let values: String = (1..=300).map(|v| format!("{v}\n")).collect();
    let mut send = a
        .cli_command(&["send", "q"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("circuit send");
    std::io::Write::write_all(send.stdin.as_mut().expect("stdin"), values.as_bytes())
        .expect("write values");
    drop(send.stdin.take());
    assert!(send.wait().expect("send").success());
    for d in &mut mesh.nodes {
        d.kill9();
    }
    for d in &mut mesh.nodes {
        d.launch();
    }
    // They listen on new ports (the kernel picks them): b and c join a again.
    let addr = mesh.by_name("a").mesh_addr();
    for name in ["b", "c"] {
        mesh.by_name(name).cli_ok(&["join", &addr]);
    }
    for d in &mesh.nodes {
        wait_until(SOON, "the nodes see each other alive again", || {
            d.nodes()
                .iter()
                .filter(|n| n.state == NodeState::Alive)
                .count()
                == 3
        });
    }
    let b = mesh.by_name("b");
    assert_eq!(b.cli_ok(&["recv", "q", "-n", "300"]), values);
    let stat: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["--json", "chan", "stat", "q"])).expect("json");
    assert_eq!(
        (&stat["len"], &stat["storage"]),
        (&0.into(), &"disk".into()),
        "{stat}"
    );
}

/// R8 with one replica: a channel kept on disk by a daemon without a mesh keeps its values
/// across the daemon's restart; one in memory does not.
#[test]
fn rule_r8_one_daemon_keeps_a_disk_channel_across_its_restart() {
    let mut d = Daemon::start();
    d.cli_ok(&["chan", "create", "kept", "--cap", "10", "--storage", "disk"]);
    d.cli_ok(&["chan", "create", "lost", "--cap", "10"]);
    for v in ["1", "2", "3"] {
        d.cli_ok(&["send", "kept", v]);
        d.cli_ok(&["send", "lost", v]);
    }
    d.kill9();
    d.launch();
    assert_eq!(d.cli_ok(&["recv", "kept", "-n", "3"]), "1\n2\n3\n");
    let lost: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["--json", "chan", "stat", "lost"])).expect("json");
    assert_eq!(
        lost["len"], 0,
        "values in memory die with the daemon: {lost}"
    );
}

/// R6: a disk replica that was down while its channel was removed does not bring the
/// channel back when it returns, even after every daemon restarted: the nodes that applied
/// the removal remember it (in their data dir) and tell the returning replica, which deletes
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_a_disk_replica_down_during_rm_is_not_resurrected() {
    let mut mesh = Mesh::start();
    let a = mesh.by_name("a").client().await;
    let disk = ChanOptions::replicated(3).storage(Storage::Disk);
    a.chan_create_with("q", 8, disk, false)
        .await
        .expect("create");
    let lead = leader(&a, "q").await;
    // A follower other than a (a's address is where the others join again).
    let away = ["b", "c"]
        .into_iter()
        .find(|n| *n != lead)
        .expect("a follower")
        .to_string();
    mesh.kill9(&away);
    let here = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != away)
        .expect("a survivor");
    mesh.by_name(here).cli_ok(&["chan", "rm", "q"]);
    // Every daemon restarts: the removal is known only from the survivors' data dirs.
    for d in &mut mesh.nodes {
        if d.name != away {
            d.kill9();
        }
    }
    for d in &mut mesh.nodes {
        d.launch();
    }
    let addr = mesh.by_name("a").mesh_addr();
    for name in ["b", "c"] {
        mesh.by_name(name).cli_ok(&["join", &addr]);
    }
    let returned = mesh.by_name(&away);
    let what = format!("{away}'s disk replica deleting itself");
    if circuit_testkit::try_wait_until(SOON, &what, || {
        no_channels(&returned.cli_ok(&["chan", "ls", "--json"]))
    })
    .is_err()
    {
        eprintln!("==== {away}\n{}", returned.log());
        panic!("{what}: ls {}", returned.cli_ok(&["chan", "ls", "--json"]));
    }
    for d in &mesh.nodes {
        assert!(
            no_channels(&d.cli_ok(&["chan", "ls", "--json"])),
            "{}",
            d.name
        );
        let out = d.cli(&["chan", "stat", "q"]);
        assert!(!out.status.success(), "q is gone on {}", d.name);
    }
    let dir = returned.data_dir.join("replicas").join("c-q");
    wait_until(SOON, "its files deleted", || !dir.exists());
}

/// R6 after failures: an R5 channel whose leader and one follower were killed and restarted
/// (their memory replicas gone) is still removed everywhere by `rm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_r6_rm_removes_every_replica_after_two_of_five_restarted() {
    let names = ["a", "b", "c", "d", "e"];
    let mut mesh = Mesh::start_with(&names, &["--replica-repair-after", "1s"]);
    let a = mesh.by_name("a").client().await;
    a.chan_create_with("five", 8, ChanOptions::replicated(5), false)
        .await
        .expect("create");
    let lead = leader(&a, "five").await;
    let second = names
        .iter()
        .find(|n| **n != lead)
        .expect("another")
        .to_string();
    for name in [lead.clone(), second.clone()] {
        mesh.kill9(&name);
    }
    // Dead long enough for the new leader to try a repair (there is no spare node to use).
    wait_until(SOON, "a repair tried", || {
        mesh.nodes
            .iter()
            .any(|d| d.log().contains("replacing the replica of a dead node"))
    });
    for name in [lead.clone(), second.clone()] {
        let i = mesh.index_of(&name);
        mesh.nodes[i].launch();
    }
    let first = mesh.nodes[0].mesh_addr();
    for name in [&lead, &second] {
        if *name != "a" {
            mesh.by_name(name).cli_ok(&["join", &first]);
        }
    }
    let survivor = names
        .iter()
        .find(|n| **n != lead && **n != second)
        .expect("a survivor");
    let s = mesh.by_name(survivor).client().await;
    let new = wait_until_async(SOON, "a new leader", || async {
        let info = stat(&s, "five").await?;
        (!info.owner.is_empty() && info.owner != lead).then_some(info.owner)
    })
    .await;
    eprintln!("old leader {lead}, restarted {second}, new leader {new}");
    mesh.by_name(survivor).cli_ok(&["chan", "rm", "five"]);
    for node in &mesh.nodes {
        let what = format!("{}'s replica removed", node.name);
        if circuit_testkit::try_wait_until(SOON, &what, || {
            no_channels(&node.cli_ok(&["chan", "ls", "--json"]))
        })
        .is_err()
        {
            mesh.dump_replica_logs();
            panic!("{what}: ls {}", node.cli_ok(&["chan", "ls", "--json"]));
        }
    }
}

/// Whether `chan ls --json` printed an empty list.
fn no_channels(json: &str) -> bool {
    circuit_testkit::json_list::<Vec<serde_json::Value>>(json, "channels")
        .is_ok_and(|list| list.is_empty())
}
