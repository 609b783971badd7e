//! What workers use (issue 17): CPU share and resident memory per worker and summed over its
//! process group, sampled by the daemon from `/proc`, shown by `circuit ps` and `ps --json`.
//! Checked against a worker that holds a known amount of memory (with a child that holds as
//! much) and one that keeps a core busy.

use std::time::Duration;

use circuit_testkit::{bin, json_list, wait_until, Daemon, MachineLock};
use serde_json::Value;

const MIB: f64 = (1 << 20) as f64;

/// Polls `f` until it returns a value (30 s at most).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    wait_until(Duration::from_secs(30), what, || {
        got = f();
        got.is_some()
    });
    got.expect("set when the wait ends")
}

/// The worker named `name` in `ps --json`, once its usage has a CPU share (two samples).
fn sampled(d: &Daemon, name: &str) -> Option<Value> {
    let ps: Vec<Value> = json_list(d.cli_ok(&["ps", "--json"]), "workers").expect("ps --json");
    ps.into_iter()
        .find(|w| w["name"] == name)
        .filter(|w| w["usage"]["group_cpu_percent"].is_number())
}

#[test]
fn ps_shows_what_each_worker_and_its_process_group_use() {
    let d = Daemon::start();
    let hog = bin("circuit-test-hog");
    let hog = hog.to_str().expect("utf-8 path");
    d.cli_ok(&[
        "spawn",
        "--name",
        "holder",
        "--",
        hog,
        "--mib",
        "64",
        "--children",
        "1",
    ]);

    // The holder: 64 MiB resident in its own process, 128 MiB over its group of two, and
    // next to no CPU once its pages are touched.
    let holder = wait_for("the holder's memory is sampled", || {
        sampled(&d, "holder").filter(|w| {
            w["usage"]["group_processes"] == 2
                && w["usage"]["group_rss_bytes"].as_f64() > Some(120.0 * MIB)
        })
    });
    let u = &holder["usage"];
    let own = u["rss_bytes"].as_f64().expect("rss_bytes") / MIB;
    let group = u["group_rss_bytes"].as_f64().expect("group_rss_bytes") / MIB;
    assert!((64.0..90.0).contains(&own), "own RSS {own:.1} MiB: {u}");
    assert!(
        (128.0..180.0).contains(&group),
        "group RSS {group:.1} MiB: {u}"
    );
    let idle = wait_for("the holder is idle", || {
        let w = sampled(&d, "holder")?;
        (w["usage"]["group_cpu_percent"].as_f64()? < 5.0).then_some(w)
    });
    assert!(idle["usage"]["cpu_percent"].as_f64() < Some(5.0), "{idle}");

    // The table has the columns, with figures for running workers.
    let table = d.cli_ok(&["ps"]);
    let header = table.lines().next().expect("a header");
    assert!(header.contains("CPU") && header.contains("MEM"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("holder"))
        .expect("holder's row");
    assert!(row.contains('%') && row.contains('M'), "{table}");

    // The spinner keeps one core busy: close to 100 % (one core), never much more. The
    // machine may be shared with other tests, so the lower bound is loose; and it spins only
    // while no namespace cluster is up (their Raft elections time out in 150–300 ms, and a
    // core taken away makes them churn) and only until it is seen busy.
    // Best effort: a user without access to the lock file runs the test anyway.
    let lock = MachineLock::acquire().ok();
    d.cli_ok(&["spawn", "--name", "spinner", "--", hog, "--spin"]);
    let busy = wait_for("the spinner is seen busy", || {
        let w = sampled(&d, "spinner")?;
        (w["usage"]["cpu_percent"].as_f64()? > 40.0).then_some(w)
    });
    d.cli_ok(&["stop", "spinner"]);
    drop(lock);
    let cpu = busy["usage"]["cpu_percent"].as_f64().expect("cpu_percent");
    assert!(
        cpu <= 110.0,
        "one spinning thread at {cpu} % of a core: {busy}"
    );
    assert_eq!(busy["usage"]["group_processes"], 1);

    // A stopped worker has no usage.
    let ps: Vec<Value> = json_list(d.cli_ok(&["ps", "-a", "--json"]), "workers").expect("ps");
    let spinner = ps.iter().find(|w| w["name"] == "spinner").expect("spinner");
    assert!(spinner["usage"].is_null(), "{spinner}");
    d.cli_ok(&["stop", "holder"]);
}
