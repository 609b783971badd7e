//! A daemon started with `--join` to a seed that never answers says so in its log, naming the
//! seed and the likely cause, while it keeps trying.

use std::time::Duration;

use circuit_testkit::{keygen, wait_until, Daemon};

/// How soon a failed join must be reported.
const WARNED_WITHIN: Duration = Duration::from_secs(10);

/// The lines of `d`'s log that warn about the join through `seed`.
fn join_warnings(d: &Daemon, seed: &str) -> Vec<String> {
    let about = format!("join: no answer from {seed} ");
    d.log()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&about))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_join_nobody_answers_is_warned_about() {
    // A port nobody listens on: bound, learnt, released.
    let seed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let d = Daemon::start_named("d", &["--listen", "127.0.0.1:0", "--join", &seed]);
    wait_until(
        WARNED_WITHIN,
        "d warns that its seed does not answer",
        || !join_warnings(&d, &seed).is_empty(),
    );
    let warning = &join_warnings(&d, &seed)[0];
    assert!(
        warning.contains("still trying") && warning.contains("nothing accepts connections there"),
        "{warning}"
    );
}

#[test]
fn a_join_refused_for_its_key_is_warned_about() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (k1, k2) = (keygen(keys.path(), "k1"), keygen(keys.path(), "k2"));
    let a = Daemon::start_named(
        "a",
        &[
            "--listen",
            "127.0.0.1:0",
            "--key-file",
            k1.to_str().expect("utf-8"),
        ],
    );
    let seed = a.mesh_addr();
    let d = Daemon::start_named(
        "d",
        &[
            "--listen",
            "127.0.0.1:0",
            "--key-file",
            k2.to_str().expect("utf-8"),
            "--join",
            &seed,
        ],
    );
    wait_until(
        WARNED_WITHIN,
        "d warns that its seed refuses its key",
        || !join_warnings(&d, &seed).is_empty(),
    );
    let warning = &join_warnings(&d, &seed)[0];
    assert!(
        warning.contains("authentication failed: wrong or missing cluster key"),
        "{warning}"
    );
}
