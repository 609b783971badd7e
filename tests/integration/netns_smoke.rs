//! The network-namespace harness itself, independent of mesh features: every host's daemon
//! answers, a partition cuts exactly the links it names and heals, a killed daemon restarts on
//! its data dir, hosts with sshd are hosts of their own over real ssh, and teardown leaves no
//! namespace or process behind.

use std::process::Command;
use std::time::Instant;

use circuit_testkit::alive;
use circuit_testkit::netns::{NetnsCluster, UpOptions, MESH_PORT};

/// Exit code of `timeout` when the command ran out of time.
const TIMED_OUT: i32 = 124;

/// Tries a TCP connect from host `from` to host `to`'s daemon port for up to 2 s; returns the
/// exit code: 0 connected, 124 timed out, anything else refused or failed.
fn tcp_connect(cluster: &NetnsCluster, from: usize, to: usize) -> i32 {
    let script = format!(
        "timeout 2 bash -c 'exec 3<>/dev/tcp/{}/{MESH_PORT}' 2>/dev/null",
        cluster.host(to).ip
    );
    let out = cluster.exec(from, "bash", &["-c", &script]);
    out.status.code().expect("bash exited")
}

/// The value of `key: value` in `circuit status` output.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key:?} in status:\n{status}"))
        .to_string()
}

#[test]
fn namespaces_answer_partition_heal_kill_and_restart() {
    let started = Instant::now();
    let Some(mut cluster) = NetnsCluster::up(3, &[]) else {
        return;
    };
    let up_took = started.elapsed();

    // Each host's CLI reaches its own daemon, from inside its own namespace.
    let mut data_dirs = Vec::new();
    for host in cluster.hosts().to_vec() {
        let status = cluster.cli_ok(host.index, &["status"]);
        assert_eq!(status_field(&status, "node"), host.name);
        assert_eq!(status_field(&status, "pid"), host.pid.to_string());
        data_dirs.push(status_field(&status, "data dir"));
        let out = cluster.exec(
            host.index,
            "sh",
            &[
                "-c",
                "echo \"$CIRCUIT_SOCKET\"; ip -4 -o addr show dev eth0",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(lines.next(), host.socket.to_str());
        assert!(
            lines
                .next()
                .is_some_and(|l| l.contains(&format!(" {}/24 ", host.ip))),
            "h{} is not at {}: {text}",
            host.index,
            host.ip
        );
    }

    // Every daemon listens on its host's address, reachable from the others.
    for (from, to) in [(1, 2), (2, 1), (3, 1), (2, 3)] {
        assert_eq!(
            tcp_connect(&cluster, from, to),
            0,
            "h{from} → h{to} before any partition"
        );
    }

    // h1 | h2,h3: packets between the groups are lost both ways; h2 ↔ h3 still flows.
    cluster.partition(&[1], &[2, 3]);
    assert_eq!(
        tcp_connect(&cluster, 1, 2),
        TIMED_OUT,
        "h1 → h2 across the partition"
    );
    assert_eq!(
        tcp_connect(&cluster, 3, 1),
        TIMED_OUT,
        "h3 → h1 across the partition"
    );
    assert_eq!(tcp_connect(&cluster, 2, 3), 0, "h2 → h3 on the same side");
    cluster.heal();
    assert_eq!(tcp_connect(&cluster, 1, 2), 0, "h1 → h2 after heal");
    assert_eq!(tcp_connect(&cluster, 3, 1), 0, "h3 → h1 after heal");

    // The rejecting kind fails at once rather than after the timeout.
    cluster.partition_reject(&[1], &[2]);
    let code = tcp_connect(&cluster, 2, 1);
    assert!(
        code != 0 && code != TIMED_OUT,
        "h2 → h1 across a rejecting partition: exit {code}, not an error before the timeout"
    );
    assert_eq!(tcp_connect(&cluster, 3, 1), 0, "h3 is in neither group");
    cluster.heal();
    assert_eq!(tcp_connect(&cluster, 2, 1), 0, "h2 → h1 after heal");

    // SIGKILL h2's daemon, then start it again on the same data dir.
    let old_pid = cluster.host(2).pid;
    cluster.kill(2);
    assert!(!alive(old_pid), "h2's daemon {old_pid} survived kill");
    assert!(
        !cluster.cli(2, &["status"]).status.success(),
        "status of a killed h2 succeeded"
    );
    cluster.start(2);
    let new_pid = cluster.host(2).pid;
    assert_ne!(new_pid, old_pid);
    assert!(alive(new_pid));
    let status = cluster.cli_ok(2, &["status"]);
    assert_eq!(status_field(&status, "pid"), new_pid.to_string());
    assert_eq!(status_field(&status, "data dir"), data_dirs[1]);
    assert_eq!(tcp_connect(&cluster, 1, 2), 0, "h1 → h2 after h2's restart");

    // Teardown stops every daemon and removes every namespace.
    let namespaces: Vec<String> = (1..=3).map(|i| cluster.namespace(i)).collect();
    let pids: Vec<i32> = cluster.hosts().iter().map(|h| h.pid).collect();
    let took = started.elapsed();
    drop(cluster);
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    for ns in &namespaces {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} is left after teardown:\n{list}"
        );
    }
    for pid in pids {
        assert!(!alive(pid), "daemon {pid} is left after teardown");
    }
    eprintln!(
        "netns smoke: up (with the wait for the lock) took {up_took:?}, the scenario {took:?}, \
         teardown {:?}",
        started.elapsed() - took
    );
}

/// Runs `cmd` on host `i` over ssh and asserts success; returns stdout.
fn ssh_ok(cluster: &NetnsCluster, i: usize, cmd: &str) -> String {
    let out = cluster.ssh(i, cmd);
    assert!(
        out.status.success(),
        "ssh {} {cmd:?} failed ({}): {}",
        cluster.ssh_target(i),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn sshd_hosts_have_their_own_hostname_and_opt_and_go_with_the_cluster() {
    let options = UpOptions {
        daemons: false,
        sshd: true,
        ..UpOptions::default()
    };
    let Some(cluster) = NetnsCluster::up_with(2, &options) else {
        return;
    };
    let sshd_pids: Vec<i32> = (1..=2)
        .map(|i| cluster.host(i).sshd_pid.expect("an sshd pid"))
        .collect();
    for i in 1..=2 {
        assert_eq!(cluster.host(i).pid, 0, "h{i} has no daemon");
        assert!(
            !cluster.cli(i, &["status"]).status.success(),
            "a daemon answers on h{i}"
        );
        assert!(
            cluster.pids(i).contains(&(sshd_pids[i - 1] as u32)),
            "h{i}'s sshd is not in its network namespace"
        );
        // Real ssh from this (root) namespace, to the host's own UTS namespace.
        assert_eq!(ssh_ok(&cluster, i, "hostname"), format!("h{i}\n"));
        assert_eq!(ssh_ok(&cluster, i, "ls -A /opt"), "", "/opt on h{i}");
    }

    // /opt is each host's own: a file made on h1 is neither on h2 nor here.
    let marker = format!("netns-smoke-{}", cluster.id());
    assert_eq!(
        ssh_ok(&cluster, 1, &format!("touch /opt/{marker} && ls -A /opt")),
        format!("{marker}\n")
    );
    assert_eq!(ssh_ok(&cluster, 2, "ls -A /opt"), "", "h1's file is on h2");
    assert!(
        !std::path::Path::new("/opt").join(&marker).exists(),
        "h1's file is in the root namespace's /opt"
    );

    // Host keys are checked: without the cluster's known_hosts, ssh refuses the host.
    let out = Command::new("ssh")
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(cluster.ssh_args())
        .args([&cluster.ssh_target(1), "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh");
    assert!(
        !out.status.success(),
        "ssh accepted h1 with no known host key"
    );

    let bridge = format!("cb{}", cluster.id());
    drop(cluster);
    for pid in sshd_pids {
        assert!(!alive(pid), "sshd {pid} is left after teardown");
    }
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .expect("ip link show");
    assert!(
        !link.status.success(),
        "the bridge {bridge} (and its address) is left after teardown"
    );
}
