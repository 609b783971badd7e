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

/// Resumes a stopped daemon when dropped, so that a failing test still stops it cleanly.
struct Stopped(nix::unistd::Pid);

impl Stopped {
    fn stop(pid: i32) -> Self {
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// A sender that returns from `main` right after its last `send().await` keeps every value,
/// also when far more is unconfirmed than its socket buffers (CHANNELS.md rule 2): its daemon
/// is stopped (SIGSTOP) while it sends 240 values of 4 KiB, nearly all of `ahead_bytes`, so
/// they complete on reserved room but most cannot leave the process; its last write, as the
/// runtime goes away, waits for the daemon to read them. On both of tokio's runtimes, and
/// over TCP, where a socket closed with answers unread would reset and drop what it had not
/// sent.
#[test]
fn a_normal_exit_right_after_send_keeps_every_value() {
    let d = Daemon::builder()
        .listen("127.0.0.1:0")
        .start()
        .expect("daemon");
    let tcp = d.mesh_addr();
    burst_then_exit(&d, "burst-mt", &[]);
    burst_then_exit(&d, "burst-ct", &["--current-thread"]);
    burst_then_exit(&d, "burst-tcp", &["--tcp", &tcp]);
}

/// Runs `circuit-test-send-then-exit` with `args` on channel `chan` as the test above says,
/// and checks that every value arrived once, in order.
fn burst_then_exit(d: &Daemon, chan: &str, args: &[&str]) {
    use std::io::{BufRead, Write};
    const COUNT: u64 = 240;
    const SIZE: usize = 4096;
    let value = |i: u64| {
        let mut v = format!("{i:08}");
        v.extend(std::iter::repeat_n('.', SIZE - 8));
        v
    };
    d.cli_ok(&["chan", "create", chan, "--cap", "4096"]);
    let mut sender = std::process::Command::new(bin("circuit-test-send-then-exit"))
        .args([COUNT.to_string(), SIZE.to_string()])
        .args(args)
        .env("CIRCUIT_SOCKET", &d.socket)
        .env("CIRCUIT_CHAN_OUT", chan)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the sender");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = sender.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the sender never printed {what:?} ({chan})"))
    };
    assert_eq!(next_line("ready"), "ready");
    {
        let _stopped = Stopped::stop(d.pid());
        let mut stdin = sender.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("tell the sender to go");
        // Every send completes on reserved room while the daemon reads nothing.
        assert_eq!(next_line("sent"), "sent");
    }
    let status = sender.wait().expect("the sender exits");
    assert!(status.success(), "sender ({chan}): {status}");
    let out = d.cli(&[
        "recv",
        chan,
        "-n",
        &(COUNT + 1).to_string(),
        "--timeout",
        "10",
    ]);
    let got = String::from_utf8(out.stdout).expect("utf-8 values");
    let got: Vec<&str> = got.lines().collect();
    let want: Vec<String> = (0..=COUNT).map(value).collect();
    let missing: Vec<&str> = want
        .iter()
        .filter(|v| !got.contains(&v.as_str()))
        .map(|v| &v[..8])
        .collect();
    assert!(
        missing.is_empty() && got.len() == want.len(),
        "every value arrives once ({chan}): {} arrived, missing {missing:?}; recv: {}",
        got.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(got == want, "the values arrived in order ({chan})");
    let stat: Value =
        serde_json::from_str(&d.cli_ok(&["chan", "stat", "--json", chan])).expect("stat");
    assert_eq!(stat["len"], 0, "nothing more in {chan}: {stat}");
}
