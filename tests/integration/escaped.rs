//! A worker's escaped descendants (issue 17): processes that left its process group (`setsid`,
//! a daemon's double fork) are found by the daemon — below the worker's process, or adopted by
//! the daemon (a child subreaper) when their parent exits — listed by `ps --json` and `ps`,
//! and ended and named by `stop`; the daemon waits for them once they exit, so none stays a
//! zombie.

use std::time::Duration;

use circuit_testkit::{alive, json_list, wait_until, Daemon};
use serde_json::Value;

/// The worker `name` in `ps -a --json`.
fn worker(d: &Daemon, name: &str) -> Value {
    let ps: Vec<Value> =
        json_list(d.cli_ok(&["ps", "-a", "--json"]), "workers").expect("ps --json");
    ps.into_iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name} in ps"))
}

/// The escaped descendants of worker `name` as (pid, command), once there are `n` of them.
fn escaped(d: &Daemon, name: &str, n: usize) -> Vec<(i32, String)> {
    let mut got = Vec::new();
    wait_until(
        Duration::from_secs(20),
        &format!("{name} has {n} escaped processes"),
        || {
            got = worker(d, name)["escaped"]
                .as_array()
                .expect("an escaped list")
                .iter()
                .map(|e| {
                    let pid = e["pid"].as_i64().expect("a pid") as i32;
                    (pid, e["command"].as_str().expect("a command").to_string())
                })
                .collect();
            got.len() == n
        },
    );
    got
}

/// Waits until process `pid` is gone: not running, and not left a zombie either.
fn reaped(pid: i32) {
    wait_until(
        Duration::from_secs(10),
        &format!("process {pid} is gone and waited for"),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    );
}

/// Spawns worker `name`, which leaves `sleep SECS` running outside its group and exits once it
/// has (what is still in the group when the worker exits is killed with it); waits until the
/// worker has exited and its escapee is listed, and returns that escapee.
fn exits_leaving(d: &Daemon, name: &str, secs: u32) -> (i32, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ready = dir.path().join("ready");
    let script = format!(
        "(setsid sh -c 'touch {0}; exec sleep {secs}' &); \
         while [ ! -e {0} ]; do sleep 0.01; done; exit 0",
        ready.display()
    );
    d.cli_ok(&[
        "spawn",
        "--name",
        name,
        "--restart",
        "never",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    wait_until(Duration::from_secs(20), &format!("{name} exits"), || {
        worker(d, name)["state"] == "exited"
    });
    escaped(d, name, 1).remove(0)
}

#[test]
fn stop_ends_and_names_the_processes_that_left_the_group() {
    let d = Daemon::start();
    // One escapee stays the child of the worker's process; the other's parent exits at once,
    // so the daemon adopts it.
    d.cli_ok(&[
        "spawn",
        "--name",
        "w",
        "--",
        "sh",
        "-c",
        "setsid sleep 1002 & (setsid sleep 1001 &); exec sleep 1000",
    ]);
    let found = escaped(&d, "w", 2);
    let commands: Vec<&str> = found.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        commands.contains(&"sleep 1001") && commands.contains(&"sleep 1002"),
        "{found:?}"
    );
    assert!(found.iter().all(|&(pid, _)| alive(pid)));

    let ps = d.cli(&["ps"]);
    let table = String::from_utf8_lossy(&ps.stdout);
    let note = String::from_utf8_lossy(&ps.stderr);
    assert!(table.contains("2 escaped processes"), "{table}");
    assert!(
        note.contains("w: 2 processes (")
            && found.iter().all(|(pid, _)| note.contains(&pid.to_string())),
        "{note}"
    );

    let out = d.cli_ok(&["stop", "w"]);
    assert!(
        out.contains("it also stopped 2 processes (")
            && out.contains("sleep 1001")
            && out.contains("sleep 1002"),
        "{out}"
    );
    for &(pid, _) in &found {
        assert!(!alive(pid), "{pid} still runs after the stop");
        reaped(pid);
    }
    let again: Vec<Value> =
        json_list(d.cli_ok(&["stop", "--json", "w"]), "workers").expect("stop --json");
    assert_eq!(
        again[0]["escaped"],
        serde_json::json!([]),
        "a second stop has nothing left to end"
    );
    assert_eq!(worker(&d, "w")["escaped"], serde_json::json!([]));
}

#[test]
fn processes_that_outlive_their_worker_are_listed_until_a_stop_ends_them() {
    let d = Daemon::start();
    // Nothing links this one to the worker but its environment: its parent is gone before
    // any scan can see it under the worker.
    let (pid, command) = exits_leaving(&d, "gone", 1003);
    assert_eq!(command, "sleep 1003");
    let out = d.cli_ok(&["stop", "gone"]);
    assert!(
        out.contains("it also stopped 1 process (") && out.contains("sleep 1003"),
        "{out}"
    );
    reaped(pid);

    // Removing such a worker ends them too: nothing would name them afterwards.
    let (pid, _) = exits_leaving(&d, "gone2", 1003);
    d.cli_ok(&["rm", "gone2"]);
    reaped(pid);
}

#[test]
fn a_daemon_that_stops_leaves_no_escaped_process_behind() {
    let mut d = Daemon::start();
    let left = exits_leaving(&d, "left", 1004);
    d.cli_ok(&[
        "spawn",
        "--name",
        "runs",
        "--",
        "sh",
        "-c",
        "setsid sleep 1005 & exec sleep 1000",
    ]);
    let runs = escaped(&d, "runs", 1);
    let stopped = d.stop(Duration::from_secs(10)).expect("the daemon stops");
    assert!(!stopped.killed, "the daemon needed SIGKILL");
    for (pid, command) in [&left, &runs[0]] {
        assert!(!alive(*pid), "{command} ({pid}) outlived its daemon");
    }
}

#[test]
fn an_escaped_process_that_ignores_the_stop_signal_is_killed_after_the_grace_period() {
    let d = Daemon::start();
    d.cli_ok(&[
        "spawn",
        "--name",
        "stubborn",
        "--",
        "sh",
        "-c",
        "(setsid sh -c 'trap \"\" TERM; exec tail -f /dev/null' &); exec sleep 1000",
    ]);
    let found = escaped(&d, "stubborn", 1);
    let (pid, _) = found[0].clone();
    let out = d.cli_ok(&["stop", "--timeout", "1s", "stubborn"]);
    assert!(out.contains("it also stopped 1 process ("), "{out}");
    assert!(
        !alive(pid),
        "{pid} ignored SIGTERM and still runs after the stop"
    );
    reaped(pid);
}
