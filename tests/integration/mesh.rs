//! A mesh on loopback (no root needed): daemons on `127.0.0.1:0`, joining by the port each one
//! got. Bad input to the mesh, create races, graceful leave, restart. The failure scenarios
//! across real network namespaces are in `netns_mesh.rs`.

use std::time::Duration;

use circuit_sdk::proto::{NodeState, Reply, Request};
use circuit_testkit::{converged, json_list, stderr, wait_until, Daemon};

/// A daemon with a mesh port on loopback, joined to `join` if given.
fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if let Some(addr) = join {
        args.extend(["--join", addr]);
    }
    Daemon::start_named(name, &args)
}

/// Nodes a, b and c on loopback, each seeing the others alive.
fn three_nodes() -> (Daemon, Daemon, Daemon) {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let b = node("b", Some(&addr));
    let c = node("c", Some(&addr));
    wait_until(Duration::from_secs(10), "a, b, c converge", || {
        converged(&[&a, &b, &c])
    });
    (a, b, c)
}

/// The owner of channel `name`, as `d` sees it.
/// Waits until `d` sees channel `name` owned by `owner` (another node's channels reach it by
/// gossip, so not at once); fails with what it saw last.
fn wait_owner(d: &Daemon, name: &str, owner: &str) {
    let mut seen = String::new();
    let found = |seen: &mut String| {
        let out = d.cli(&["--json", "chan", "stat", name]);
        if !out.status.success() {
            *seen = stderr(&out);
            return false;
        }
        let chan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("chan json");
        *seen = chan["owner"].as_str().unwrap_or_default().to_string();
        seen == owner
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !found(&mut seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: channel {name} owned by {owner}? last seen: {seen}",
            d.name
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// A loopback port nothing listens on: bound (TCP and UDP) to learn it, then let go.
fn closed_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("tcp address").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn state_of(d: &Daemon, name: &str) -> Option<NodeState> {
    d.nodes()
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.state)
}

#[test]
fn bad_mesh_input_gets_clear_errors_and_changes_nothing() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let b = node("b", Some(&addr));
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        converged(&[&a, &b])
    });

    let cases: [(&[&str], &str); 7] = [
        (
            &["spawn", "--node", "nosuch", "--", "true"],
            "no node named \"nosuch\"",
        ),
        (
            &["spawn", "--label", "gpu=yes", "--", "true"],
            "no live node has the labels gpu=yes",
        ),
        (
            &["logs", "--node", "nosuch", "w"],
            "no node named \"nosuch\"",
        ),
        (&["join", "no.such.host.invalid"], "cannot resolve"),
        (
            &["join", "--timeout", "0", "127.0.0.1:9"],
            "a join timeout of 0s is out of range",
        ),
        (
            &["chan", "create", "q", "--node", "nosuch"],
            "no node named \"nosuch\"",
        ),
        (&["recv", "ghost", "-n", "1"], "no channel named \"ghost\""),
    ];
    for (args, want) in cases {
        let out = a.cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }

    // Garbage on the gossip port: dropped, the mesh unharmed.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..2000u32 {
        let len = (i % 1500) as usize + 1;
        let junk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
        let _ = udp.send_to(&junk, &addr);
    }
    // Garbage on the TCP side of the mesh port too.
    for _ in 0..20 {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.write_all(b"\x00\x00\x00\x05\x01hello-not-json");
        }
    }
    assert!(converged(&[&a, &b]), "the mesh survived garbage");
    let out = a.cli(&[
        "spawn", "--node", "b", "--name", "after", "--", "sleep", "30",
    ]);
    assert!(
        out.status.success(),
        "spawn after garbage: {}",
        stderr(&out)
    );
    let out = a.cli(&["ps", "--json"]);
    let ps: Vec<serde_json::Value> = json_list(&out.stdout, "workers").expect("ps json");
    assert!(
        ps.iter().any(|w| w["name"] == "after" && w["node"] == "b"),
        "{ps:?}"
    );
    assert!(a.cli(&["stop", "after"]).status.success());
}

#[test]
fn daemon_flags_for_the_mesh_are_checked() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("cluster.key");
    let key = key.to_str().expect("utf-8 path");
    assert!(circuit_testkit::cli_raw(&["keygen", key]).status.success());
    let missing = keys.path().join("missing.key");
    let missing = missing.to_str().expect("utf-8 path");
    let bad: [(&[&str], &str); 5] = [
        (&["--join", "127.0.0.1:1"], "--join needs --listen"),
        (
            &["--listen", "0.0.0.0:0"],
            "refusing to listen on 0.0.0.0:0 without a cluster key",
        ),
        (
            &["--listen", "0.0.0.0:0", "--key-file", key],
            "add --advertise",
        ),
        (
            &["--listen", "127.0.0.1:0", "--key-file", missing],
            "missing.key",
        ),
        (&["--insecure"], "unexpected argument"),
    ];
    for (args, want) in bad {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(circuit_testkit::bin("circuitd"))
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .expect("run circuitd");
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(
            !dir.path().join("s.sock").exists(),
            "{args:?} left a socket"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_creating_one_name_at_once_agree_on_one_winner() {
    let a = node("a", None);
    let b = node("b", Some(&a.mesh_addr()));
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        converged(&[&a, &b])
    });
    let (ca, cb) = (a.client().await, b.client().await);
    for i in 0..30 {
        let name = format!("race-{i}");
        let create = |c: &circuit_sdk::Client| {
            let c = c.clone();
            let name = name.clone();
            async move {
                c.call(Request::ChanCreate {
                    name,
                    capacity: 1,
                    exist_ok: false,
                    replicas: None,
                    replica_labels: Vec::new(),
                    storage: None,
                })
                .await
            }
        };
        let (ra, rb) = tokio::join!(create(&ca), create(&cb));
        let won: Vec<&str> = [("a", &ra), ("b", &rb)]
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(won.len(), 1, "{name}: a {ra:?}, b {rb:?}");
        let loser = if ra.is_ok() { &rb } else { &ra };
        let err = loser.as_ref().expect_err("one lost");
        assert_eq!(
            err.code(),
            Some(circuit_sdk::proto::ErrorCode::AlreadyExists),
            "{err}"
        );
        // Both nodes agree where it lives.
        for c in [&ca, &cb] {
            match c.call(Request::ChanStat { name: name.clone() }).await {
                Ok(Reply::Chan(info)) => assert_eq!(info.owner, won[0], "{name}"),
                other => panic!("stat {name}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_stopped_node_is_left_and_a_restarted_one_rejoins() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let mut b = node("b", Some(&addr));
    let mut c = node("c", Some(&addr));
    wait_until(Duration::from_secs(10), "a, b, c converge", || {
        converged(&[&a, &b, &c])
    });

    // SIGTERM: the others see it leave, not die.
    assert!(c.terminate().success());
    wait_until(Duration::from_secs(5), "a sees c left", || {
        state_of(&a, "c") == Some(NodeState::Left)
    });
    assert_eq!(state_of(&b, "c").map(|s| s.is_up()), Some(false));

    // kill -9 and start again: a new generation replaces the dead one.
    let before = a
        .nodes()
        .into_iter()
        .find(|n| n.name == "b")
        .expect("b")
        .generation;
    b.kill9();
    wait_until(Duration::from_secs(10), "a sees b dead", || {
        state_of(&a, "b") == Some(NodeState::Dead)
    });
    b.launch();
    wait_until(Duration::from_secs(10), "b rejoins", || {
        a.nodes()
            .into_iter()
            .any(|n| n.name == "b" && n.state == NodeState::Alive && n.generation > before)
    });
}

#[test]
fn create_after_rival_create_and_rm_succeeds() {
    let (a, b, c) = three_nodes();
    assert_eq!(b.cli_ok(&["chan", "create", "x"]), "x\n");
    b.cli_ok(&["chan", "rm", "x"]);
    // b's create ended long ago: no node may still hold its claim.
    assert_eq!(c.cli_ok(&["chan", "create", "x"]), "x\n");
    wait_owner(&a, "x", "c");
    c.cli_ok(&["chan", "rm", "x"]);
    assert_eq!(a.cli_ok(&["chan", "create", "x"]), "x\n");
    wait_owner(&b, "x", "a");
}

#[test]
fn create_after_a_refused_rival_create_succeeds() {
    let (a, b, c) = three_nodes();
    a.cli_ok(&["chan", "create", "x"]);
    // b claims the name with a and c, then learns that a owns it: its create fails.
    let out = b.cli(&["chan", "create", "x"]);
    assert!(!out.status.success(), "b created a second x");
    assert!(
        stderr(&out).contains("already exists on node a"),
        "{}",
        stderr(&out)
    );
    a.cli_ok(&["chan", "rm", "x"]);
    assert_eq!(c.cli_ok(&["chan", "create", "x"]), "x\n");
    wait_owner(&b, "x", "c");
}

#[test]
fn create_exist_ok_after_the_owner_died_succeeds() {
    let (_a, mut b, c) = three_nodes();
    assert_eq!(b.cli_ok(&["chan", "create", "y", "--cap", "4"]), "y\n");
    b.kill9();
    // b's y died with b; its create had ended, so nothing stands in the way of c's.
    let made = c.cli_ok(&["--json", "chan", "create", "y", "--cap", "4", "--exist-ok"]);
    let chan: serde_json::Value = serde_json::from_str(&made).expect("chan json");
    assert_eq!(
        (chan["owner"].as_str(), chan["capacity"].as_u64()),
        (Some("c"), Some(4))
    );
}

#[test]
fn join_to_a_closed_port_fails_with_the_reason() {
    let a = node("a", None);
    let b = node("b", Some(&a.mesh_addr()));
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        converged(&[&a, &b])
    });
    // b has a member already; that is no sign of having joined through the closed port.
    let closed = format!("127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    let out = b.cli(&["join", &closed]);
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "joined through {closed}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("nothing listens at {closed}: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    // A refused port is a clear answer: no need to wait for the whole timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn join_to_another_daemon_returns_once_it_is_a_member() {
    let a = node("a", None);
    let b = node("b", None);
    let addr = a.mesh_addr();
    assert_eq!(b.cli_ok(&["join", &addr]), format!("joined via {addr}\n"));
    // No waiting here: join has waited for it.
    assert_eq!(state_of(&b, "a").map(NodeState::is_up), Some(true));
}

/// `circuit join` on a node already in a mesh reaches a node outside it: the two meshes merge.
#[test]
fn join_from_a_meshed_node_merges_the_two_meshes() {
    let a = node("a", None);
    let b = node("b", Some(&a.mesh_addr()));
    let c = node("c", None);
    let d = node("d", Some(&c.mesh_addr()));
    wait_until(Duration::from_secs(10), "two meshes of two", || {
        converged(&[&a, &b]) && converged(&[&c, &d])
    });
    let addr = c.mesh_addr();
    assert_eq!(b.cli_ok(&["join", &addr]), format!("joined via {addr}\n"));
    wait_until(Duration::from_secs(15), "one mesh of four", || {
        converged(&[&a, &b, &c, &d])
    });
}

#[test]
fn join_to_the_nodes_own_address_fails() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let out = a.cli(&["join", &addr]);
    assert!(!out.status.success(), "a joined itself");
    assert!(
        stderr(&out).contains(&format!("{addr} answers as \"a\", this node's own name")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_worker_name_on_two_nodes_gets_the_same_refusal_from_every_node() {
    let (a, b, c) = three_nodes();
    a.cli_ok(&["spawn", "--node", "a", "--name", "x", "--", "sleep", "1000"]);
    b.cli_ok(&["spawn", "--node", "b", "--name", "x", "--", "sleep", "1000"]);
    // Every node knows both once the gossip has the names.
    wait_until(Duration::from_secs(10), "every node hears of both", || {
        [&a, &b, &c].iter().all(|d| {
            d.nodes()
                .iter()
                .filter(|n| n.worker_names.iter().any(|w| w == "x"))
                .count()
                == 2
        })
    });
    for d in [&a, &b, &c] {
        for verb in ["stop", "logs", "restart"] {
            let out = d.cli(&[verb, "x"]);
            assert!(!out.status.success(), "{verb} x succeeded");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).lines().next(),
                Some("error: a worker named \"x\" runs on nodes a, b: pick one with --node"),
                "{verb} x"
            );
        }
    }
    // Both still run; --node picks one.
    c.cli_ok(&["stop", "--node", "b", "x"]);
    c.cli_ok(&["stop", "--node", "a", "x"]);
}
