//! The cluster key, end to end on loopback: a keyed mesh works and shuts out other keys (gossip,
//! peer links and the API are refused with no change of state), recorded traffic replayed is
//! refused, a rolling key rotation keeps the mesh up and then shuts the old key out, a flood of
//! garbage and half-open connections does not disturb a channel workload, and the Unix socket
//! serves only its own user.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use circuit_sdk::chan::{ChanError, Json, RecvOptions};
use circuit_sdk::proto::{EventKind, Item, NodeState, Reply, Request};
use circuit_sdk::secure::{read_key_file, Key};
use circuit_sdk::{Client, Next, Target};
use circuit_testkit::{converged, json_list, keygen, stderr, wait_until, wait_until_async, Daemon};

/// A daemon on `127.0.0.1:0` with its own copy (in `dir`) of the key file `key` (daemons
/// write their key file during a rotation), joined to `join` if given.
fn keyed(dir: &Path, name: &str, key: Option<&Path>, join: Option<&str>, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
    if let Some(key) = key {
        let own = dir.join(format!("{name}.key"));
        std::fs::copy(key, &own).expect("copy the key file");
        args.extend(["--key-file".into(), own.display().to_string()]);
    }
    if let Some(addr) = join {
        args.extend(["--join".into(), addr.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_named(name, &args)
}

/// Nodes a, b and c holding copies of `key`, b and c joined to a; returns once all see all.
fn keyed_trio(dir: &Path, key: &Path) -> (Daemon, Daemon, Daemon) {
    let a = keyed(dir, "a", Some(key), None, &[]);
    let seed = a.mesh_addr();
    let b = keyed(dir, "b", Some(key), Some(&seed), &[]);
    let c = keyed(dir, "c", Some(key), Some(&seed), &[]);
    wait_until(Duration::from_secs(10), "a, b and c see each other", || {
        converged(&[&a, &b, &c])
    });
    (a, b, c)
}

/// The daemon's own key file (the copy made by [`keyed`]).
fn key_file_of(d: &Daemon) -> PathBuf {
    let out = d.cli(&["--json", "key", "ls"]);
    assert!(out.status.success(), "key ls: {}", stderr(&out));
    let rows: Vec<serde_json::Value> = json_list(&out.stdout, "nodes").expect("json");
    let me = rows
        .iter()
        .find(|r| r["node"] == d.name.as_str())
        .expect("own row");
    PathBuf::from(me["file"].as_str().expect("a key file"))
}

fn alive_names(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = d
        .nodes()
        .into_iter()
        .filter(|n| n.state == NodeState::Alive)
        .map(|n| n.name)
        .collect();
    names.sort();
    names
}

fn first_key(path: &Path) -> Key {
    read_key_file(path).expect("key file").swap_remove(0)
}

const AUTH: &str = "authentication failed: wrong or missing cluster key";

async fn connect(addr: &str, key: Option<Key>) -> Result<Client, circuit_sdk::Error> {
    Client::connect_with_key(&Target::Tcp(addr.to_string()), key).await
}

async fn chan_names(c: &Client) -> Vec<String> {
    match c.call(Request::ChanList).await.expect("chan list") {
        Reply::Chans(list) => list.into_iter().map(|c| c.name).collect(),
        other => panic!("chan list: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_mesh_works_and_other_keys_are_shut_out() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (keygen(keys.path(), "k1"), keygen(keys.path(), "k2"));
    let (a, _b, _c) = keyed_trio(keys.path(), &k1);
    let seed = a.mesh_addr();
    let want = vec!["a".to_string(), "b".into(), "c".into()];
    // Peer links work: a spawns on c and reads its log through the mesh.
    let out = a.cli(&[
        "spawn", "--node", "c", "--name", "hi", "--", "echo", "hello",
    ]);
    assert!(out.status.success(), "remote spawn: {}", stderr(&out));
    assert!(a.cli(&["wait", "hi"]).status.success());
    let out = a.cli(&["logs", "hi"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");

    // A fourth daemon with another key, and a fifth with none, cannot join.
    let d = keyed(keys.path(), "d", Some(&k2), Some(&seed), &[]);
    let e = keyed(keys.path(), "e", None, Some(&seed), &[]);
    wait_until(
        Duration::from_secs(10),
        "a refuses d's and e's gossip",
        || {
            a.log()
                .matches("gossip refused: authentication failed")
                .count()
                >= 2
        },
    );
    assert_eq!(alive_names(&a), want, "{}", a.log());
    assert_eq!(alive_names(&d), vec!["d".to_string()]);
    assert_eq!(alive_names(&e), vec!["e".to_string()]);

    // The API over TCP: the wrong key and no key are refused with a clear message.
    let a_tcp = a.mesh_addr();
    for (name, file) in [("wrong key", Some(&k2)), ("no key", None)] {
        let mut args = vec!["--addr", &a_tcp];
        if let Some(f) = file {
            args.extend(["--key-file", f.to_str().expect("utf-8")]);
        }
        args.extend(["spawn", "--name", "intruder", "--", "true"]);
        let out = circuit_testkit::cli_raw(&args);
        assert!(!out.status.success(), "{name}: spawn accepted");
        assert!(stderr(&out).contains(AUTH), "{name}: {}", stderr(&out));
        let sdk = connect(&a_tcp, file.map(|f| first_key(f))).await;
        let err = sdk.expect_err(name);
        assert!(err.is_auth(), "{name}: {err}");
    }
    // Nothing changed: no worker, no channel from the refused attempts.
    let ps = a.cli_ok(&["ps", "-a", "--json"]);
    assert!(!ps.contains("intruder"), "{ps}");
    let warns = a
        .log()
        .matches("connection refused: authentication failed")
        .count();
    assert_eq!(warns, 1, "one warning per peer address:\n{}", a.log());
    // The right key works over TCP.
    let out = circuit_testkit::cli_raw(&[
        "--addr",
        &a_tcp,
        "--key-file",
        k1.to_str().expect("p"),
        "nodes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Forwards one client connection to `to`, recording what the client sent.
fn recording_proxy(to: String) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("accept");
        let mut server = TcpStream::connect(&to).expect("connect");
        let mut back_client = client.try_clone().expect("clone");
        let mut back_server = server.try_clone().expect("clone");
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut back_server, &mut back_client);
            let _ = back_client.shutdown(std::net::Shutdown::Write);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
        recorded
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_replayed_is_refused() {
    let keys = tempfile::tempdir().expect("tempdir");
    let k1 = keygen(keys.path(), "k1");
    let a = keyed(keys.path(), "a", Some(&k1), None, &[]);
    let a_tcp = a.mesh_addr();
    let (proxy, recorder) = recording_proxy(a_tcp.clone());
    {
        let client = connect(&proxy, Some(first_key(&k1)))
            .await
            .expect("via proxy");
        let reply = client
            .call(Request::ChanCreate {
                name: "recorded".into(),
                capacity: 1,
                exist_ok: false,
                replicas: None,
                replica_labels: Vec::new(),
                storage: None,
            })
            .await
            .expect("create");
        assert!(matches!(reply, Reply::Chan(_)), "{reply:?}");
    }
    let recorded = tokio::task::spawn_blocking(move || recorder.join().expect("proxy"))
        .await
        .expect("join");
    assert!(recorded.len() > 100, "recorded {} bytes", recorded.len());
    // Remove the channel, then replay the whole recorded session to the daemon.
    let local = a.client().await;
    local
        .call(Request::ChanRemove {
            name: "recorded".into(),
        })
        .await
        .expect("rm");
    let replay = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&a_tcp).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(&recorded);
        // The daemon answers the handshake (message 1 is valid) and then closes the
        // connection: the recorded records do not decrypt under the new session.
        let mut back = Vec::new();
        let closed = s.read_to_end(&mut back).is_ok();
        (closed, back.len())
    })
    .await
    .expect("replay");
    assert!(replay.0, "the daemon did not close the replayed session");
    assert!(
        !chan_names(&local).await.contains(&"recorded".to_string()),
        "the replayed create ran again"
    );
    // The daemon still serves.
    let again = connect(&a.mesh_addr(), Some(first_key(&k1)))
        .await
        .expect("connect");
    assert!(again.call(Request::Ping).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_key_rotation_keeps_the_mesh_up_then_shuts_the_old_key_out() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (keygen(keys.path(), "k1"), keygen(keys.path(), "k2"));
    let (a, b, c) = keyed_trio(keys.path(), &k1);
    let seed = a.mesh_addr();
    let want = vec!["a".to_string(), "b".into(), "c".into()];
    // Watch membership on every node through the rotation: nobody may be suspected.
    let mut watchers = Vec::new();
    for d in [&a, &b, &c] {
        let client = d.client().await;
        let stream = client.stream(Request::Events).await.expect("events");
        watchers.push((d.name.clone(), client, stream));
    }
    // A channel on b used from a, before and after each step.
    let a_client = a.client().await;
    a_client
        .call(Request::On {
            node: "b".into(),
            request: Box::new(Request::ChanCreate {
                name: "during".into(),
                capacity: 16,
                exist_ok: false,
                replicas: None,
                replica_labels: Vec::new(),
                storage: None,
            }),
        })
        .await
        .expect("create on b");
    let new = first_key(&k2);
    for step in ["add", "use", "retire"] {
        let out = a.cli(&["key", "rotate", k2.to_str().expect("p"), "--step", step]);
        assert!(
            out.status.success(),
            "{step}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        // Requests across the mesh keep working after each step.
        let stat = a_client
            .call(Request::On {
                node: "c".into(),
                request: Box::new(Request::Status),
            })
            .await;
        assert!(stat.is_ok(), "after {step}: {stat:?}");
        let sent = a_client
            .call(Request::On {
                node: "b".into(),
                request: Box::new(Request::ChanStat {
                    name: "during".into(),
                }),
            })
            .await;
        assert!(sent.is_ok(), "after {step}: {sent:?}");
    }
    // Every node holds only the new key, in its own key file too (a restart keeps it).
    for d in [&a, &b, &c] {
        let file = key_file_of(d);
        assert_eq!(
            read_key_file(&file).expect("read"),
            vec![new.clone()],
            "{}",
            d.name
        );
    }
    assert!([&a, &b, &c].iter().all(|d| alive_names(d) == want));
    for (name, _client, stream) in &mut watchers {
        while let Ok(Some(next)) = tokio::time::timeout(Duration::from_millis(1), stream.next())
            .await
            .map(|r| r.ok())
        {
            if let Next::Item(Item::Event(e)) = next {
                assert!(
                    !matches!(
                        e.kind,
                        EventKind::Suspect | EventKind::Dead | EventKind::Leave
                    ),
                    "{name} saw {e:?} during the rotation"
                );
            }
        }
    }
    // The old key is shut out: a daemon with it cannot join, a client with it cannot connect.
    let d = keyed(keys.path(), "d", Some(&k1), Some(&seed), &[]);
    wait_until(
        Duration::from_secs(10),
        "a refuses the old key's gossip",
        || a.log().contains("gossip refused: authentication failed"),
    );
    assert_eq!(alive_names(&a), want);
    assert_eq!(alive_names(&d), vec!["d".to_string()]);
    let err = connect(&seed, Some(first_key(&k1)))
        .await
        .expect_err("old key");
    assert!(err.is_auth(), "{err}");
    let ok = connect(&seed, Some(new)).await.expect("new key");
    assert!(ok.call(Request::Ping).await.is_ok());
    // Bad steps are refused and change nothing.
    let k3 = keygen(keys.path(), "k3");
    let out = a.cli(&["key", "rotate", k3.to_str().expect("p"), "--step", "use"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("run the add step first"), "{stdout}");
    assert!(
        stderr(&out).contains("the Use step failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_key_file(&key_file_of(&a)).expect("read").len(), 1);
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_open_connections_do_not_disturb_a_channel_workload() {
    let keys = tempfile::tempdir().expect("tempdir");
    let k1 = keygen(keys.path(), "k1");
    let a = keyed(
        keys.path(),
        "a",
        Some(&k1),
        None,
        &["--handshake-timeout", "2s"],
    );
    let tcp = a.mesh_addr();
    let key = first_key(&k1);
    let sender = connect(&tcp, Some(key.clone())).await.expect("sender");
    let receiver = connect(&tcp, Some(key.clone())).await.expect("receiver");
    sender
        .call(Request::ChanCreate {
            name: "work".into(),
            capacity: 64,
            exist_ok: false,
            replicas: None,
            replica_labels: Vec::new(),
            storage: None,
        })
        .await
        .expect("create");
    let before = rss_kib(a.pid());
    const N: u64 = 100_000;
    let tx_chan = sender.chan("work").await.expect("chan");
    let rx_chan = receiver.chan("work").await.expect("chan");
    let produce = tokio::spawn(async move {
        let tx = tx_chan.sender::<u64>().await.expect("sender");
        for i in 0..N {
            let _accepted_later = tx.submit(i).await.expect("send");
        }
        tx.flush().await.expect("flush");
        tx_chan.close().await.expect("close");
    });
    let consume = tokio::spawn(async move {
        let opts = RecvOptions {
            prefetch: 64,
            ..RecvOptions::default()
        };
        let mut rx: circuit_sdk::chan::Receiver<u64> =
            rx_chan.receiver_with(Json, opts).await.expect("receiver");
        let mut next = 0u64;
        loop {
            match rx.recv().await {
                Ok(v) => {
                    assert_eq!(v, next, "out of order or lost");
                    next += 1;
                }
                Err(ChanError::Closed) => break next,
                Err(e) => panic!("receive: {e}"),
            }
        }
    });
    // 1,000 hostile connections while it runs: garbage, half-open (silent), a valid preamble
    // with a forged handshake, and garbage on the Unix socket.
    let socket = a.socket.clone();
    let flood_tcp = tcp.clone();
    let flood = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        for i in 0..1000u32 {
            match i % 4 {
                0 => {
                    if let Ok(mut s) = TcpStream::connect(&flood_tcp) {
                        let junk: Vec<u8> = (0..512).map(|j| (i * 31 + j) as u8).collect();
                        let _ = s.write_all(&junk);
                    }
                }
                1 => {
                    if let Ok(s) = TcpStream::connect(&flood_tcp) {
                        held.push(s);
                    }
                }
                2 => {
                    if let Ok(mut s) = TcpStream::connect(&flood_tcp) {
                        let mut m = b"CIRCUIT\x01\x01\x00\x30".to_vec();
                        m.extend((0..48).map(|j| j as u8));
                        let _ = s.write_all(&m);
                        held.push(s);
                    }
                }
                _ => {
                    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
                        let _ = s.write_all(&[0xff; 64]);
                    }
                }
            }
        }
        held
    });
    let held = flood.await.expect("flood");
    let half_open = held.len();
    assert!(
        half_open > 400,
        "only {half_open} flood connections were made"
    );
    produce.await.expect("producer");
    let got = consume.await.expect("consumer");
    assert_eq!(got, N, "values received");
    let after = rss_kib(a.pid());
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    // The half-open connections are dropped at the handshake timeout; new clients get in.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut closed = 0;
    for mut s in held {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .expect("timeout");
        let mut buf = [0u8; 16];
        // EOF (Ok(0)) or a refusal byte then EOF, or a reset: all mean the daemon let go.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break closed += 1,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => break closed += 1,
            }
        }
    }
    assert_eq!(
        closed, half_open,
        "half-open connections still held after the deadline"
    );
    let late = wait_until_async(Duration::from_secs(10), "a new client gets in", || {
        let (tcp, key) = (tcp.clone(), key.clone());
        async move { connect(&tcp, Some(key)).await.ok() }
    })
    .await;
    assert!(late.call(Request::Ping).await.is_ok());
    assert!(
        a.log()
            .matches("connection refused: authentication failed")
            .count()
            <= 1
    );
}

#[test]
fn the_unix_socket_serves_only_its_own_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "*** SKIPPED: the Unix socket uid check needs root (to connect as another uid) ***"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let a = Daemon::start();
    // Open the socket's file permissions so only the daemon's own check stands in the way.
    for dir in [a.dir.path(), a.socket.parent().expect("dir")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    // The build tree may sit in a directory only root can enter: run a copy nobody can reach.
    let exe_dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let circuit = exe_dir.path().join("circuit");
    std::fs::copy(circuit_testkit::bin("circuit"), &circuit).expect("copy circuit");
    let out = std::process::Command::new(&circuit)
        .args([
            "--socket",
            a.socket.to_str().expect("p"),
            "spawn",
            "--name",
            "x",
            "--",
            "true",
        ])
        .env_remove("CIRCUIT_KEY_FILE")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run circuit as nobody");
    assert!(!out.status.success(), "nobody spawned a worker");
    assert!(
        stderr(&out).contains("uid 65534 may not use this circuitd"),
        "{}",
        stderr(&out)
    );
    assert!(!a.cli_ok(&["ps", "-a"]).contains(" x "));
    // The daemon's own user still gets in.
    assert!(a.cli(&["status"]).status.success());
}
