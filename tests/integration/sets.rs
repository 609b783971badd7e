//! Replica sets as one thing (issue 17): `spawn --replicas N --name api` makes copies
//! `api-1..N` over a loopback mesh; `scale` adds and removes copies (highest numbers first,
//! survivors untouched); `restart --rolling`, `stop`, `logs` and `rm` act on the whole set;
//! a second set of the same name is refused, and unnamed sets get names unique in the mesh.

use std::collections::BTreeMap;
use std::time::Duration;

use circuit_testkit::{converged, json_list, wait_until, Daemon};
use serde_json::Value;

fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if let Some(addr) = join {
        args.extend(["--join", addr]);
    }
    Daemon::start_named(name, &args)
}

/// The set's copies as `ps -a --json` lists them: name → (state, pid).
fn copies(d: &Daemon, set: &str) -> BTreeMap<String, (String, Option<u64>)> {
    let ps: Vec<Value> = json_list(d.cli_ok(&["ps", "-a", "--json"]), "workers").expect("ps");
    ps.iter()
        .filter(|w| w["spec"]["labels"]["circuit.set"] == set)
        .map(|w| {
            let name = w["name"].as_str().expect("name").to_string();
            let state = w["state"].as_str().expect("state").to_string();
            (name, (state, w["pid"].as_u64()))
        })
        .collect()
}

fn names(map: &BTreeMap<String, (String, Option<u64>)>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

#[test]
fn a_replica_set_scales_restarts_rolling_stops_and_goes_as_one() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let b = node("b", Some(&addr));
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        converged(&[&a, &b])
    });
    let script = "echo up $CIRCUIT_WORKER; exec sleep 1000";
    a.cli_ok(&[
        "spawn",
        "--replicas",
        "3",
        "--name",
        "api",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let three = copies(&a, "api");
    assert_eq!(names(&three), ["api-1", "api-2", "api-3"]);

    // A second set of that name is refused before anything starts.
    let out = a.cli(&[
        "spawn",
        "--replicas",
        "5",
        "--name",
        "api",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("circuit scale api N"), "{err}");
    assert_eq!(copies(&a, "api").len(), 3);

    // Scale up: api-4 and api-5 join; the first three are the same processes.
    let out = a.cli_ok(&["scale", "api", "5"]);
    assert!(
        out.contains("started api-4") && out.contains("started api-5"),
        "{out}"
    );
    wait_until(Duration::from_secs(10), "five copies run", || {
        copies(&a, "api")
            .values()
            .filter(|(s, _)| s == "running")
            .count()
            == 5
    });
    let five = copies(&a, "api");
    for name in ["api-1", "api-2", "api-3"] {
        assert_eq!(five[name].1, three[name].1, "{name} was not touched");
    }
    // Scale down: the highest numbers go, the survivors stay as they were.
    a.cli_ok(&["scale", "api", "2"]);
    let two = copies(&a, "api");
    assert_eq!(names(&two), ["api-1", "api-2"]);
    assert_eq!(two["api-1"].1, three["api-1"].1);
    assert_eq!(
        a.cli_ok(&["scale", "api", "2"]),
        "api has 2 copies already\n"
    );

    // Rolling restart: one at a time, each running again, with a new process.
    let out = a.cli_ok(&["restart", "--rolling", "api"]);
    assert_eq!(out, "api-1\napi-2\n");
    let restarted = copies(&a, "api");
    for (name, (state, pid)) in &restarted {
        assert_eq!(state, "running", "{name}");
        assert_ne!(*pid, two[name].1, "{name} has a new process");
    }

    // logs of the set: every copy's lines, prefixed.
    wait_until(Duration::from_secs(10), "both copies have written", || {
        let logs = a.cli_ok(&["logs", "api"]);
        logs.contains("api-1 | up api-1") && logs.contains("api-2 | up api-2")
    });

    // stop and rm act on the whole set.
    let out = a.cli_ok(&["stop", "api"]);
    assert!(
        out.starts_with("api-1: exited") && out.contains("api-2: exited"),
        "{out}"
    );
    a.cli_ok(&["rm", "api"]);
    assert!(copies(&a, "api").is_empty());
    let out = a.cli(&["scale", "api", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no replica set named \"api\""));

    // Unnamed sets are named after the command, unique in the mesh.
    a.cli_ok(&["spawn", "--replicas", "2", "--", "sleep", "1000"]);
    b.cli_ok(&["spawn", "--replicas", "2", "--", "sleep", "1000"]);
    // (`sleep-2` is a copy of the first set, so the second is `sleep-3`.)
    assert_eq!(names(&copies(&a, "sleep")), ["sleep-1", "sleep-2"]);
    assert_eq!(names(&copies(&a, "sleep-3")), ["sleep-3-1", "sleep-3-2"]);
    a.cli_ok(&["rm", "-f", "sleep", "sleep-3"]);
    assert!(copies(&a, "sleep").is_empty() && copies(&a, "sleep-3").is_empty());
}
