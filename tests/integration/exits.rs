//! Programs that end: a receiver that returns from `main` right after its last `recv()`, the
//! way most programs end, keeps what it received (issue 13, defect 8).

use std::collections::BTreeMap;
use std::time::Duration;

use circuit_testkit::{bin, wait_until, Daemon};
use serde_json::Value;

/// 100 short-lived workers each take one value with `recv()` and return from `main` without
/// closing their receiver (half on tokio's multi-thread runtime, half on the current-thread
/// one): every value is received exactly once and none is left in the channel.
#[test]
fn a_normal_exit_does_not_give_the_last_value_away_again() {
    const N: usize = 100;
    let d = Daemon::start();
    d.cli_ok(&["chan", "create", "q", "--cap", &N.to_string()]);
    let values: Vec<String> = (1..=N).map(|i| format!("v{i}")).collect();
    let mut send = d
        .cli_command(&["send", "q"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run send");
    {
        use std::io::Write;
        let mut stdin = send.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{}\n", values.join("\n")).as_bytes())
            .expect("write values");
    }
    assert!(send.wait().expect("send").success());
    // Closed, so that a worker that finds nothing left ends (with an error) instead of waiting.
    d.cli_ok(&["chan", "close", "q"]);

    let take_one = bin("circuit-test-take-one");
    let take_one = take_one.to_str().expect("utf-8 path");
    for (set, flavour) in [("mt", None), ("ct", Some("--current-thread"))] {
        let replicas = (N / 2).to_string();
        let mut args = vec![
            "spawn",
            "--name",
            set,
            "--replicas",
            &replicas,
            "--chan",
            "in=q",
            "--",
            take_one,
        ];
        args.extend(flavour);
        d.cli_ok(&args);
    }

    let ps = || -> Vec<Value> {
        circuit_testkit::json_list(d.cli_ok(&["ps", "-a", "--json"]), "workers").expect("ps --json")
    };
    wait_until(Duration::from_secs(60), "every worker has exited", || {
        let ps = ps();
        ps.len() == N
            && ps
                .iter()
                .all(|w| w["state"] == "exited" || w["state"] == "failed")
    });

    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for worker in ps() {
        let name = worker["name"].as_str().expect("name").to_string();
        for line in d.cli_ok(&["logs", &name]).lines() {
            received
                .entry(line.to_string())
                .or_default()
                .push(name.clone());
        }
    }
    let twice: Vec<_> = received.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "values received more than once: {twice:?}"
    );
    let got: Vec<&String> = received.keys().collect();
    let mut want: Vec<&String> = values.iter().collect();
    want.sort();
    assert_eq!(got, want, "every value received once");
    let stat: Value =
        serde_json::from_str(&d.cli_ok(&["chan", "stat", "--json", "q"])).expect("stat");
    assert_eq!(
        (&stat["len"], &stat["in_flight"], &stat["received"]),
        (&0.into(), &0.into(), &N.into()),
        "{stat}"
    );
}
