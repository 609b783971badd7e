//! The `circuit` binary end to end: output a person reads, `--json` a script reads, exit codes,
//! and one clear error line for each mistake.

use std::io::Write;
use std::time::Duration;

use circuit_testkit::{alive, wait_until, Daemon};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn spawn_wait_and_logs_of_a_worker_that_exits_3() {
    let daemon = Daemon::start();
    let name = daemon.cli_ok(&[
        "spawn",
        "--name",
        "w",
        "--",
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(name, "w\n");
    let out = daemon.cli(&["wait", "w"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    // The same field name as in `ps --json` and in events.
    let end: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["--json", "wait", "w"]).stdout).expect("json");
    assert_eq!(end["last_exit"]["code"], 3, "{end}");
    let ps: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["--json", "ps", "-a"])).expect("ps json");
    assert_eq!(ps["workers"][0]["last_exit"]["code"], 3, "{ps}");
    assert_eq!(daemon.cli_ok(&["logs", "w"]), "hi\n");
    let out = daemon.cli(&["logs", "--stderr", "w"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(stderr_of(&out), "oops\n");
    let stamped = daemon.cli_ok(&["logs", "--stdout", "--timestamps", "w"]);
    let (stamp, text) = stamped
        .trim_end()
        .split_once(' ')
        .expect("timestamp and text");
    assert_eq!(text, "hi");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{stamp}");
}

#[test]
fn stop_leaves_no_grandchild_behind() {
    let daemon = Daemon::start();
    daemon.cli_ok(&[
        "spawn",
        "--name",
        "sleepy",
        "--",
        "sh",
        "-c",
        "sleep 1000 & echo $!; sleep 1000 & echo $!; wait",
    ]);
    let mut pids = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "both sleeps report their pids",
        || {
            pids = daemon
                .cli_ok(&["logs", "sleepy"])
                .lines()
                .filter_map(|l| l.parse::<i32>().ok())
                .collect();
            pids.len() == 2
        },
    );
    assert!(pids.iter().all(|&p| alive(p)));
    let out = daemon.cli_ok(&["stop", "sleepy"]);
    assert!(out.contains("sleepy"), "{out}");
    for pid in pids {
        assert!(!alive(pid), "sleep {pid} survived `circuit stop`");
    }
}

#[test]
fn ps_status_and_json() {
    let daemon = Daemon::start();
    daemon.cli_ok(&[
        "spawn",
        "--name",
        "web",
        "--worker-label",
        "role=api",
        "--chan",
        "in=jobs",
        "--",
        "sleep",
        "1000",
    ]);
    daemon.cli_ok(&["spawn", "--name", "once", "--", "true"]);
    assert_eq!(daemon.cli(&["wait", "once"]).status.code(), Some(0));

    let ps = daemon.cli_ok(&["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().expect("header");
    for column in ["NAME", "STATE", "PID", "COMMAND"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "exited workers are hidden without -a:\n{ps}");
    assert!(
        rows[0].starts_with("web ") && rows[0].contains("running") && rows[0].contains("in=jobs"),
        "{ps}"
    );
    let all = daemon.cli_ok(&["ps", "-a"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("once ") && l.contains("exited")),
        "{all}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["ps", "-a", "--json"])).expect("ps --json");
    let names: Vec<&str> = json["workers"]
        .as_array()
        .expect("array")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["once", "web"]);
    assert_eq!(json["workers"][1]["spec"]["labels"]["role"], "api");

    let status = daemon.cli_ok(&["status"]);
    for expected in [
        "test",
        env!("CARGO_PKG_VERSION"),
        &daemon.data_dir.display().to_string(),
    ] {
        assert!(
            status.contains(expected),
            "{expected} missing from:\n{status}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["status", "--json"])).expect("status --json");
    assert_eq!(json["name"], "test");
    assert_eq!(json["workers"]["running"], 1);
}

#[test]
fn mistakes_get_one_clear_line_and_a_non_zero_exit() {
    let daemon = Daemon::start();
    daemon.cli_ok(&["spawn", "--name", "dup", "--", "sleep", "1000"]);
    let cases: [(&[&str], &str); 7] = [
        (&["logs", "ghost"], "no worker named \"ghost\""),
        (&["wait", "ghost"], "no worker named \"ghost\""),
        (&["spawn", "--name", "dup", "--", "true"], "already exists"),
        (
            &["spawn", "--", "/no/such/binary"],
            "no such file or directory",
        ),
        (
            &["spawn", "--cwd", "/no/such/dir", "--", "true"],
            "working directory",
        ),
        (&["signal", "NOPE", "dup"], "unknown signal"),
        (&["rm", "dup"], "--force"),
    ];
    for (args, text) in cases {
        let out = daemon.cli(args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "circuit {args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(text),
            "circuit {args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Remote {"),
            "{err}"
        );
    }
    // Nothing above changed the worker.
    assert!(daemon.cli_ok(&["ps"]).contains("running"));

    let out = std::process::Command::new(circuit_testkit::bin("circuit"))
        .args(["ps"])
        .env("CIRCUIT_SOCKET", daemon.dir.path().join("nobody-here.sock"))
        .output()
        .expect("run circuit");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.starts_with("error: cannot connect to circuitd") && err.contains("is circuitd running"),
        "{err}"
    );
}

#[test]
fn with_json_errors_are_one_json_document_and_usage_errors_exit_2() {
    let d = Daemon::start();
    let error_of = |out: &std::process::Output| -> serde_json::Value {
        let err = stderr_of(out);
        assert_eq!(err.lines().count(), 1, "one document: {err}");
        serde_json::from_str(&err).unwrap_or_else(|e| panic!("{e}: {err}"))
    };
    // A failure the daemon reports: its code and message.
    let out = d.cli(&["--json", "stop", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = error_of(&out);
    assert_eq!(doc["error"]["code"], "not_found", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ghost")),
        "{doc}"
    );
    assert!(out.stdout.is_empty());
    // A usage error: exit 2, as clap's own, and a JSON document when --json is on the line.
    for args in [&["--json", "bogus"][..], &["ps", "--json", "--frobnicate"]] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let doc = error_of(&out);
        assert_eq!(doc["error"]["code"], "usage", "{doc}");
    }
    let out = d.cli(&["bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).starts_with("error: "),
        "{}",
        stderr_of(&out)
    );
    // Help is not an error.
    let out = d.cli(&["--json", "ps", "--help"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn logs_of_several_workers_are_prefixed_and_since_keeps_recent_lines() {
    let d = Daemon::start();
    d.cli_ok(&[
        "spawn",
        "--name",
        "a",
        "--",
        "sh",
        "-c",
        r"echo one; printf '\033]0;owned\007\n'",
    ]);
    d.cli_ok(&["spawn", "--name", "b", "--", "sh", "-c", "echo two >&2"]);
    wait_until(Duration::from_secs(10), "a and b have exited", || {
        let ps: serde_json::Value =
            serde_json::from_str(&d.cli_ok(&["ps", "-a", "--json"])).expect("ps --json");
        ps["workers"]
            .as_array()
            .is_some_and(|ws| ws.iter().all(|w| w["state"] == "exited"))
    });
    let out = d.cli(&["logs", "a", "b"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // Not a terminal: the worker's bytes are passed on as they are.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a | one\na | \u{1b}]0;owned\u{7}\n"
    );
    assert_eq!(stderr_of(&out), "b | two\n");
    // One worker: no prefix.
    assert_eq!(
        d.cli_ok(&["logs", "--since", "1h", "a"]).lines().next(),
        Some("one")
    );
    // --since: lines older than the duration are left out.
    wait_until(
        Duration::from_secs(10),
        "the lines are older than 50ms",
        || d.cli_ok(&["logs", "--since", "50ms", "a"]).is_empty(),
    );
    let out = d.cli(&["logs", "--since", "soon", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

#[test]
fn nodes_of_a_single_daemon_has_real_counts_and_no_address() {
    let d = Daemon::start();
    d.cli_ok(&["spawn", "--name", "w", "--", "sleep", "1000"]);
    d.cli_ok(&["chan", "create", "jobs"]);
    let nodes: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["nodes", "--json"])).expect("nodes --json");
    let me = &nodes["nodes"][0];
    assert_eq!(
        (me["workers"].as_u64(), me["addr"].as_str()),
        (Some(1), Some("")),
        "{me}"
    );
    assert_eq!(me["channels"], serde_json::json!(["jobs"]), "{me}");
    let table = d.cli_ok(&["nodes"]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    // NAME ADDR STATE LABELS WORKERS CHANNELS …
    assert_eq!((row[1], row[4], row[5]), ("-", "1", "1"), "{table}");
    d.cli_ok(&["stop", "w"]);
}

#[test]
fn logs_follow_ends_with_the_worker_and_exits_with_its_code() {
    let daemon = Daemon::start();
    daemon.cli_ok(&[
        "spawn",
        "--name",
        "counter",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.1; done; exit 5",
    ]);
    let out = daemon.cli(&["logs", "-f", "counter"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n");
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr_of(&out).contains("exited (code 5)"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(daemon.cli_ok(&["logs", "--tail", "2", "counter"]), "2\n3\n");
}

#[test]
fn restart_policy_flags_and_signal_and_restart_commands() {
    let daemon = Daemon::start();
    daemon.cli_ok(&[
        "spawn",
        "--name",
        "crashy",
        "--restart",
        "on-failure",
        "--backoff",
        "50ms",
        "--max-restarts",
        "2",
        "--",
        "sh",
        "-c",
        "exit 9",
    ]);
    let out = daemon.cli(&["wait", "crashy"]);
    assert_eq!(out.status.code(), Some(9));
    let ps = daemon.cli_ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("crashy") && l.contains("failed")),
        "{ps}"
    );
    daemon.cli_ok(&["restart", "crashy"]);

    daemon.cli_ok(&[
        "spawn",
        "--name",
        "hup",
        "--",
        "sh",
        "-c",
        "trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.05; done",
    ]);
    wait_until(Duration::from_secs(10), "ready", || {
        daemon.cli_ok(&["logs", "hup"]).contains("ready")
    });
    daemon.cli_ok(&["signal", "HUP", "hup"]);
    wait_until(Duration::from_secs(10), "the trap ran", || {
        daemon.cli_ok(&["logs", "hup"]).contains("got HUP")
    });
    let out = daemon.cli(&["stop", "--signal", "KILL", "hup"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signal KILL"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    daemon.cli_ok(&["rm", "hup"]);
    assert!(!daemon.cli_ok(&["ps", "-a"]).contains("hup"));
}

#[test]
fn random_bytes_on_the_socket_do_not_stop_ps() {
    let daemon = Daemon::start();
    daemon.cli_ok(&["spawn", "--name", "steady", "--", "sleep", "1000"]);
    for seed in 1..=5u8 {
        let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).expect("connect");
        let garbage: Vec<u8> = (0..2048u32)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        let _ = stream.write_all(&garbage);
    }
    let ps = daemon.cli_ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("steady") && l.contains("running")),
        "{ps}"
    );
}

#[test]
fn the_socket_is_private_and_tcp_is_loopback_only() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start_with(&["--listen", "127.0.0.1:0"]);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().expect("socket dir")), 0o700);

    // The TCP API answers the same requests.
    let status: serde_json::Value =
        serde_json::from_str(&daemon.cli_ok(&["status", "--json"])).expect("json");
    let addr = status["listen"]
        .as_str()
        .expect("listen address")
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    daemon.cli_ok(&["spawn", "--name", "viatcp", "--", "sleep", "1000"]);
    let out = std::process::Command::new(circuit_testkit::bin("circuit"))
        .args(["--addr", &addr, "ps"])
        .env_remove("CIRCUIT_SOCKET")
        .output()
        .expect("run circuit");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("viatcp"));

    // Without a cluster key, a non-loopback address is refused with one line saying why.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(circuit_testkit::bin("circuitd"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("run circuitd");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("loopback"),
        "{err}"
    );
    assert!(!dir.path().join("s.sock").exists());
}

/// Issue 13, defect 5: `--addr` to a server that does not speak circuit (a silent socket, an
/// HTTP server) hung for minutes. It must fail within the handshake timeout, saying so.
#[test]
fn addr_to_a_server_that_does_not_speak_circuit_fails_within_the_handshake_timeout() {
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Instant;

    // A silent server: accepts, reads, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    // An HTTP-like server: answers whatever it is sent with an HTTP error and closes.
    let http = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http_addr = http.local_addr().expect("addr").to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let servers: Vec<_> = [(silent, false), (http, true)]
        .into_iter()
        .map(|(listener, answers)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    if answers {
                        let mut buf = [0; 64];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                    } else {
                        held.push(conn);
                    }
                }
            })
        })
        .collect();

    // The default timeout (5 s) against the silent server.
    let started = Instant::now();
    let out = circuit_testkit::cli_raw(&["--addr", &silent_addr, "ps"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "{silent_addr} did not answer the circuit handshake"
        )),
        "{err}"
    );
    assert!(err.contains("within 5s"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // A shorter bound is honoured.
    let out =
        circuit_testkit::cli_raw(&["--connect-timeout", "300ms", "--addr", &silent_addr, "ps"]);
    assert!(stderr_of(&out).contains("within 300ms"), "{out:?}");
    // Another protocol's answer is named as such, at once.
    let out = circuit_testkit::cli_raw(&["--addr", &http_addr, "ps"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("{http_addr} did not answer the circuit handshake"))
            && err.contains("something else"),
        "{err}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for addr in [&silent_addr, &http_addr] {
        let _ = std::net::TcpStream::connect(addr.as_str());
    }
    for server in servers {
        server.join().expect("server thread");
    }
}

/// Issue 13, defect 5: the SDK's connect has the same bound, as an option.
#[tokio::test]
async fn sdk_connect_to_a_silent_socket_fails_within_its_handshake_timeout() {
    use circuit_sdk::{Client, ConnectOptions, Error, Target};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            conns.push(conn);
        }
    });
    let options = ConnectOptions::default().handshake_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let result = Client::connect_with(&Target::Unix(path.clone()), options).await;
    let took = started.elapsed();
    match result {
        Err(e @ Error::NoHandshake { .. }) => {
            assert!(
                e.to_string()
                    .contains("did not answer the circuit handshake"),
                "{e}"
            );
        }
        other => panic!("expected no handshake, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
    held.abort();
}

/// What the completion script gets for `circuit WORDS…` with the cursor on the last word.
fn complete(d: &Daemon, words: &[&str]) -> Vec<String> {
    let mut line = vec!["--", "circuit"];
    line.extend_from_slice(words);
    let out = d
        .cli_command(&line)
        .env("CIRCUIT_COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", words.len().to_string())
        .env("_CLAP_IFS", "\n")
        .output()
        .expect("run circuit");
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completion_offers_the_clusters_names_and_enum_values() {
    let d = Daemon::start();
    d.cli_ok(&["spawn", "--name", "web", "--", "sleep", "1000"]);
    d.cli_ok(&[
        "spawn",
        "--replicas",
        "2",
        "--name",
        "api",
        "--",
        "sleep",
        "1000",
    ]);
    d.cli_ok(&["chan", "create", "jobs"]);
    assert_eq!(complete(&d, &["stop", "a"]), ["api", "api-1", "api-2"]);
    assert!(complete(&d, &["logs", ""]).contains(&"web".to_string()));
    assert_eq!(complete(&d, &["recv", "j"]), ["jobs"]);
    assert_eq!(complete(&d, &["chan", "stat", "j"]), ["jobs"]);
    let node = d.nodes()[0].name.clone();
    assert_eq!(complete(&d, &["ps", "--node", ""]), [node]);
    assert_eq!(
        complete(&d, &["spawn", "--restart", ""]),
        ["never", "on-failure", "always"]
    );
    assert_eq!(
        complete(&d, &["chan", "create", "--storage", "d"]),
        ["disk"]
    );
    // The script the user installs calls circuit back.
    for shell in ["bash", "zsh", "fish"] {
        let script = d.cli_ok(&["completions", shell]);
        assert!(script.contains("CIRCUIT_COMPLETE"), "{shell}: {script}");
    }
    d.cli_ok(&["stop", "web", "api"]);
}

#[test]
fn tables_fit_columns_unless_wide() {
    let d = Daemon::start();
    let long = "x".repeat(120);
    d.cli_ok(&[
        "spawn",
        "--name",
        "w",
        "--",
        "sh",
        "-c",
        "sleep 1000",
        &long,
    ]);
    let fitted = d
        .cli_command(&["ps"])
        .env("COLUMNS", "100")
        .output()
        .expect("ps");
    let fitted = String::from_utf8_lossy(&fitted.stdout).into_owned();
    assert!(fitted.contains('…'), "{fitted}");
    for line in fitted.lines() {
        assert!(line.chars().count() <= 100, "wider than 100: {line:?}");
    }
    let wide = d
        .cli_command(&["ps", "--wide"])
        .env("COLUMNS", "100")
        .output()
        .expect("ps --wide");
    let wide = String::from_utf8_lossy(&wide.stdout).into_owned();
    assert!(
        wide.contains(&long),
        "--wide shows the whole command: {wide}"
    );
    // Not a terminal and no COLUMNS: whole lines for grep, and no colour codes.
    let piped = d
        .cli_command(&["ps"])
        .env_remove("COLUMNS")
        .output()
        .expect("ps");
    let piped = String::from_utf8_lossy(&piped.stdout).into_owned();
    assert!(
        piped.contains(&long) && !piped.contains('\u{1b}'),
        "{piped}"
    );
    d.cli_ok(&["stop", "w"]);
}

#[test]
fn stop_of_a_worker_that_ignores_sigterm_says_it_waits_and_when_it_sent_sigkill() {
    let d = Daemon::start();
    d.cli_ok(&[
        "spawn",
        "--name",
        "stubborn",
        "--stop-timeout",
        "2s",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 1; done",
    ]);
    wait_until(Duration::from_secs(10), "the worker traps TERM", || {
        d.cli_ok(&["logs", "stubborn"]).contains("ready")
    });
    let out = d.cli(&["stop", "stubborn"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split(" (the stop took")
            .next(),
        Some(
            "stubborn: exited (signal KILL) — it did not exit on SIGTERM within its 2s grace \
             period, so circuitd sent SIGKILL"
        ),
        "{stdout}"
    );
    assert!(
        stderr_of(&out).contains("waiting for stubborn to exit"),
        "{}",
        stderr_of(&out)
    );
}
