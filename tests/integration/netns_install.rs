//! `circuit install` and `circuit uninstall` over real OpenSSH, to three hosts in network
//! namespaces (each with its own sshd, hostname and empty `/opt`): a fresh install forms a mesh
//! that runs remote workers; running it again changes nothing; a new binary upgrades every
//! host in place; a wrong host key, an unreachable host and a node that cannot join fail
//! loudly without touching anything else; uninstall leaves the hosts clean, and is idempotent.
//!
//! A cluster of hosts with sshd is slow to set up, so the scenarios are named steps of one test
//! on one cluster ([`Steps`]): a step that fails is reported by name and the later steps still
//! run, so one failure does not hide the others.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use circuit_sdk::proto::{NodeInfo, NodeState};
use circuit_testkit::netns::{NetnsCluster, UpOptions, MESH_PORT};
use circuit_testkit::{alive, bin, keygen, Steps};
use serde_json::Value;

/// How long the mesh may take to look the same from every host after an install returned.
const CONVERGE: Duration = Duration::from_secs(15);

/// Runs the built `circuit` with `args`, nothing inherited that would aim it elsewhere.
fn circuit(args: &[&str]) -> Output {
    Command::new(bin("circuit"))
        .args(args)
        .env_remove("CIRCUIT_SOCKET")
        .env_remove("CIRCUIT_KEY_FILE")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run circuit")
}

/// `circuit [--key-file KEY] [--json] COMMAND --identity ID --ssh-timeout 5s --known-hosts KH
/// EXTRA...`: the cluster's own client key and known_hosts, and a short timeout, unless `extra`
/// gives its own.
fn run(
    cluster: &NetnsCluster,
    key: Option<&Path>,
    json: bool,
    command: &str,
    extra: &[&str],
) -> Output {
    let (identity, known_hosts) = (cluster.ssh_identity(), cluster.ssh_known_hosts());
    let mut args: Vec<&str> = Vec::new();
    if let Some(key) = key {
        args.extend(["--key-file", key.to_str().expect("utf-8 path")]);
    }
    if json {
        args.push("--json");
    }
    args.extend([
        command,
        "--identity",
        identity.to_str().expect("utf-8 path"),
    ]);
    if !extra.contains(&"--ssh-timeout") {
        args.extend(["--ssh-timeout", "5s"]);
    }
    if !extra.contains(&"--known-hosts") {
        args.extend(["--known-hosts", known_hosts.to_str().expect("utf-8 path")]);
    }
    args.extend_from_slice(extra);
    circuit(&args)
}

/// The per-host reports of a `--json` run, in the order the hosts were given.
fn json_reports(out: &Output) -> Vec<Value> {
    circuit_testkit::json_list::<Vec<Value>>(&out.stdout, "hosts").unwrap_or_else(|e| {
        panic!(
            "no JSON reports ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts that `out` succeeded and every host's result is `want`; returns the reports.
fn all(out: &Output, want: &str) -> Vec<Value> {
    let reports = json_reports(out);
    let results: Vec<&str> = reports
        .iter()
        .map(|r| r["result"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        out.status.success() && results.iter().all(|r| *r == want),
        "wanted every host {want}, got {results:?} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    reports
}

/// The daemon's pid from its pidfile on host `i`, read over ssh.
fn remote_pid(cluster: &NetnsCluster, i: usize) -> u64 {
    let out = cluster.ssh(i, "cat /opt/circuit/run/circuitd.pid");
    assert!(
        out.status.success(),
        "no pidfile on h{i}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a pid")
}

/// The hash in the output of a `sha256sum` run (here, or on a host over ssh).
fn sha256(out: Output) -> String {
    assert!(
        out.status.success(),
        "sha256sum: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The nodes as the daemon at `ip` sees them, through its TCP API with the key.
fn nodes(ip: Ipv4Addr, key: &Path) -> Result<Vec<NodeInfo>, String> {
    let addr = format!("{ip}:{MESH_PORT}");
    let out = circuit(&[
        "--addr",
        &addr,
        "--key-file",
        key.to_str().unwrap(),
        "nodes",
        "--json",
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    circuit_testkit::json_list(&out.stdout, "nodes").map_err(|e| e.to_string())
}

/// Polls until every host's daemon sees h1..h3 alive with the label `zone=lab`.
fn wait_mesh(cluster: &NetnsCluster, key: &Path) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let seen: Result<(), String> = (1..=3).try_for_each(|i| {
            let nodes = nodes(cluster.ip(i), key)?;
            let ok = (1..=3).all(|j| {
                nodes.iter().any(|n| {
                    n.name == format!("h{j}")
                        && n.state == NodeState::Alive
                        && n.labels.get("zone").map(String::as_str) == Some("lab")
                })
            });
            if ok && nodes.len() == 3 {
                Ok(())
            } else {
                let view: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{} {} {:?}", n.name, n.state, n.labels))
                    .collect();
                Err(format!("h{i} sees {view:?}"))
            }
        });
        match seen {
            Ok(()) => return,
            Err(why) => assert!(
                Instant::now() < deadline,
                "the mesh did not form within {CONVERGE:?}: {why}"
            ),
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// `hosts` then `extra`.
fn and<'a>(hosts: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    hosts.iter().chain(extra).copied().collect()
}

/// An address on the cluster's subnet where nobody answers.
fn nobody(cluster: &NetnsCluster) -> Ipv4Addr {
    let [a, b, c, _] = cluster.ip(1).octets();
    Ipv4Addr::new(a, b, c, 99)
}

#[test]
fn install_upgrade_and_uninstall_over_ssh() {
    let started = Instant::now();
    let options = UpOptions {
        daemons: false,
        sshd: true,
        ..UpOptions::default()
    };
    let Some(cluster) = NetnsCluster::up_with(3, &options) else {
        return;
    };
    eprintln!("3 hosts with sshd up in {:?}", started.elapsed());
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "cluster.key");
    let targets: Vec<String> = (1..=3).map(|i| cluster.ssh_target(i)).collect();
    let hosts: Vec<&str> = targets.iter().map(String::as_str).collect();
    // A different binary to upgrade to (circuitd with bytes appended still runs).
    let v2 = dir.path().join("circuitd-v2");
    std::fs::copy(bin("circuitd"), &v2).expect("copy circuitd");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&v2)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"v2"))
        .expect("append");
    let v2_sha = sha256(
        Command::new("sha256sum")
            .arg(&v2)
            .output()
            .expect("sha256sum"),
    );
    let known = std::fs::read_to_string(cluster.ssh_known_hosts()).expect("known_hosts");
    // A known_hosts file that starts empty: refused below, then trusted on first use.
    let fresh = dir.path().join("fresh_known_hosts");
    std::fs::write(&fresh, "").expect("write");
    let fresh_path = fresh.to_str().unwrap();
    let all_pids = || (1..=3).map(|i| remote_pid(&cluster, i)).collect::<Vec<_>>();

    // Each step checks one scenario and says what it leaves; a failed step is reported by
    // name and the next steps still run (they can fail because of it: the first failure
    // named is the one to read first).
    let mut steps = Steps::new("install_upgrade_and_uninstall_over_ssh");

    steps.run("a fresh install forms a mesh", || {
        // The default binary (the circuitd beside circuit), the table on stdout, plain
        // progress lines on stderr (it is not a terminal).
        let out = run(
            &cluster,
            Some(&key),
            false,
            "install",
            &and(&hosts, &["--label", "zone=lab"]),
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "install failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        let installed: Vec<&str> = stdout
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(2) == Some("installed"))
            .collect();
        assert_eq!(installed.len(), 3, "installed ×3 in the summary:\n{stdout}");
        for i in 1..=3 {
            assert!(
                stdout.lines().any(
                    |l| l.starts_with(&cluster.ssh_target(i)) && l.contains(&format!(" h{i} "))
                ),
                "h{i} in the summary:\n{stdout}"
            );
        }
        assert!(
            stderr.contains(&format!("{}: uploading circuitd (", hosts[0])),
            "{stderr}"
        );
        eprintln!("fresh install of 3 hosts done at {:?}", started.elapsed());
        wait_mesh(&cluster, &key);
        let layout = cluster.ssh(2, "stat -c '%a %n' /opt/circuit/etc/cluster.key /opt/circuit/bin/circuitd; cat /opt/circuit/etc/circuitd.toml");
        let layout = String::from_utf8_lossy(&layout.stdout);
        assert!(
            layout.contains("600 /opt/circuit/etc/cluster.key"),
            "{layout}"
        );
        assert!(
            layout.contains(&format!("advertise = \"{}:{MESH_PORT}\"", cluster.ip(2))),
            "{layout}"
        );
    });

    steps.run(
        "a worker spawned on h3 through h1 runs there and its logs come back",
        || {
            // It runs in h3: its hostname says so.
            let addr1 = format!("{}:{MESH_PORT}", cluster.ip(1));
            let k = key.to_str().unwrap();
            let spawn = circuit(&[
                "--addr",
                &addr1,
                "--key-file",
                k,
                "spawn",
                "--node",
                "h3",
                "--name",
                "hello",
                "--",
                "sh",
                "-c",
                "echo hello from $(hostname)",
            ]);
            assert!(
                spawn.status.success(),
                "spawn: {}",
                String::from_utf8_lossy(&spawn.stderr)
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let logs = circuit(&[
                    "--addr",
                    &addr1,
                    "--key-file",
                    k,
                    "logs",
                    "--node",
                    "h3",
                    "hello",
                ]);
                if String::from_utf8_lossy(&logs.stdout).contains("hello from h3") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no `hello from h3` in the worker's logs: {logs:?}"
                );
                std::thread::park_timeout(Duration::from_millis(50));
            }
        },
    );

    steps.run("the same install again changes nothing", || {
        // Nothing to do: the same daemons keep running.
        let pids = all_pids();
        let again = run(
            &cluster,
            Some(&key),
            true,
            "install",
            &and(&hosts, &["--label", "zone=lab"]),
        );
        let reports = all(&again, "unchanged");
        for (i, r) in reports.iter().enumerate() {
            assert_eq!(
                r["pid"].as_u64(),
                Some(pids[i]),
                "h{} kept its daemon: {r}",
                i + 1
            );
            assert_eq!(remote_pid(&cluster, i + 1), pids[i]);
        }
    });

    steps.run("a new binary upgrades every host in place", || {
        let pids = all_pids();
        let upgrade = run(
            &cluster,
            Some(&key),
            true,
            "install",
            &and(
                &hosts,
                &["--label", "zone=lab", "--binary", v2.to_str().unwrap()],
            ),
        );
        let reports = all(&upgrade, "upgraded");
        for (i, r) in reports.iter().enumerate() {
            let host = i + 1;
            assert_eq!(r["sha256"].as_str(), Some(v2_sha.as_str()));
            let pid = remote_pid(&cluster, host);
            assert_ne!(pid, pids[i], "h{host} runs a new daemon");
            assert_eq!(r["pid"].as_u64(), Some(pid));
            assert_eq!(
                sha256(cluster.ssh(host, "sha256sum /opt/circuit/bin/circuitd")),
                v2_sha,
                "h{host}'s binary"
            );
            // The hosts share this machine's pid space (their own UTS and mount namespaces
            // only).
            let old = i32::try_from(pids[i]).expect("a pid");
            assert!(!alive(old), "h{host}'s old daemon {old} is gone");
        }
        wait_mesh(&cluster, &key);
    });

    steps.run(
        "a host key that does not match known_hosts is refused, the host untouched",
        || {
            // The new label would have reconfigured it.
            let pid = remote_pid(&cluster, 1);
            let h2_key = known
                .lines()
                .find(|l| l.starts_with(&format!("{} ", cluster.ip(2))))
                .expect("h2's line");
            let forged = dir.path().join("known_hosts");
            let h2_key_fields = h2_key.split_once(' ').expect("fields").1;
            std::fs::write(
                &forged,
                format!("# forged\n{} {h2_key_fields}\n", cluster.ip(1)),
            )
            .expect("write");
            let config_before = sha256(cluster.ssh(1, "sha256sum /opt/circuit/etc/circuitd.toml"));
            let mismatch = run(
                &cluster,
                Some(&key),
                false,
                "install",
                &[
                    hosts[0],
                    "--label",
                    "zone=other",
                    "--known-hosts",
                    forged.to_str().unwrap(),
                ],
            );
            let err = String::from_utf8_lossy(&mismatch.stderr);
            assert!(!mismatch.status.success(), "a forged host key was accepted");
            assert!(
                err.contains("HOST KEY MISMATCH")
                    && err.contains(&format!("{} line 2", forged.display())),
                "{err}"
            );
            assert_eq!(remote_pid(&cluster, 1), pid);
            assert_eq!(
                sha256(cluster.ssh(1, "sha256sum /opt/circuit/etc/circuitd.toml")),
                config_before
            );
        },
    );

    steps.run(
        "a host not in known_hosts is refused without --accept-new-host-keys",
        || {
            let pid = remote_pid(&cluster, 1);
            let args = [
                hosts[0],
                "--label",
                "zone=other",
                "--known-hosts",
                fresh_path,
            ];
            let unknown = run(&cluster, Some(&key), false, "install", &args);
            let err = String::from_utf8_lossy(&unknown.stderr);
            assert!(
                !unknown.status.success(),
                "an unknown host key was accepted"
            );
            assert!(
                err.contains("is not in") && err.contains("--accept-new-host-keys"),
                "{err}"
            );
            assert_eq!(std::fs::read_to_string(&fresh).expect("read"), "");
            assert_eq!(remote_pid(&cluster, 1), pid);
        },
    );

    steps.run("an unreachable host among good ones fails alone", || {
        // The others succeed (unchanged); the exit code says one failed.
        let pids = all_pids();
        let lost = format!("root@{}", nobody(&cluster));
        let mixed = run(
            &cluster,
            Some(&key),
            true,
            "install",
            &and(
                &hosts,
                &[
                    "--label",
                    "zone=lab",
                    "--binary",
                    v2.to_str().unwrap(),
                    // Short, so the lost host fails soon; not so short that a good host's
                    // handshake misses it on a machine busy with the rest of the suite.
                    "--ssh-timeout",
                    "6s",
                    &lost,
                ],
            ),
        );
        assert!(
            !mixed.status.success(),
            "an unreachable host must fail the command"
        );
        let reports = json_reports(&mixed);
        let results: Vec<(&str, &str)> = reports
            .iter()
            .map(|r| (r["host"].as_str().unwrap(), r["result"].as_str().unwrap()))
            .collect();
        let mut want: Vec<(&str, &str)> = hosts.iter().map(|h| (*h, "unchanged")).collect();
        want.push((&lost, "failed"));
        assert_eq!(results, want);
        assert!(
            reports[3]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("cannot connect"),
            "{}",
            reports[3]
        );
        assert_eq!(all_pids(), pids);
    });

    steps.run("bad input fails before any host is touched", || {
        let pids = all_pids();
        let cases: [(Option<&Path>, Vec<&str>, &str); 4] = [
            (None, and(&hosts, &[]), "circuit keygen"),
            (
                Some(&key),
                and(&hosts, &["--prefix", "opt/c"]),
                "not an absolute path",
            ),
            (Some(&key), vec!["root@"], "USER@HOST"),
            (
                Some(&key),
                and(&hosts, &["--label", "nolabel"]),
                "KEY=VALUE",
            ),
        ];
        for (key, args, want) in cases {
            let out = run(&cluster, key, false, "install", &args);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(want),
                "{args:?}: {out:?}"
            );
        }
        assert_eq!(all_pids(), pids);
    });

    steps.run(
        "uninstall leaves every host clean, and again finds nothing",
        || {
            let removed = run(&cluster, Some(&key), true, "uninstall", &and(&hosts, &[]));
            all(&removed, "removed");
            assert_clean(&cluster);
            let absent = run(&cluster, Some(&key), true, "uninstall", &and(&hosts, &[]));
            all(&absent, "absent");
        },
    );

    steps.run(
        "a node that cannot join fails its host after --wait-timeout",
        || {
            // It shows its log. It is a new host for `fresh`: trusted on first use and recorded,
            // with the key the cluster's own known_hosts has for it.
            let join = format!("{}:{MESH_PORT}", nobody(&cluster));
            let lonely = run(
                &cluster,
                Some(&key),
                true,
                "install",
                &[
                    hosts[0],
                    "--join",
                    &join,
                    "--wait-timeout",
                    "3s",
                    "--known-hosts",
                    fresh_path,
                    "--accept-new-host-keys",
                ],
            );
            let reports = json_reports(&lonely);
            assert!(!lonely.status.success());
            let error = reports[0]["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("not in the mesh after 3s") && error.contains("the end of its log"),
                "{error}"
            );
            let recorded = std::fs::read_to_string(&fresh).expect("read");
            let h1_line = known
                .lines()
                .find(|l| l.starts_with(&format!("{} ", cluster.ip(1))))
                .expect("h1's line");
            let fields = |line: &str| {
                line.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(fields(&recorded), fields(h1_line), "recorded: {recorded}");
            assert_eq!(recorded.lines().count(), 1, "recorded: {recorded}");
            // The recorded key lets the next command in without the flag.
            let args = [hosts[0], "--known-hosts", fresh_path];
            all(
                &run(&cluster, Some(&key), true, "uninstall", &args),
                "removed",
            );
            assert_clean(&cluster);
        },
    );

    eprintln!(
        "install, upgrade, failures and uninstall took {:?}",
        started.elapsed()
    );
    steps.finish();
}

/// No circuitd in any host's namespace, no /opt/circuit, nothing listening on the mesh port.
fn assert_clean(cluster: &NetnsCluster) {
    for i in 1..=3 {
        for pid in cluster.pids(i) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains("circuitd"),
                "h{i} still runs {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            );
        }
        let gone = cluster.ssh(i, "test ! -e /opt/circuit");
        assert!(gone.status.success(), "/opt/circuit is still on h{i}");
        let addr = SocketAddr::from((cluster.ip(i), MESH_PORT));
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "something answers on h{i}:{MESH_PORT}: {refused:?}"
        );
    }
}
