//! Worker lifecycle events (issue 17): `circuit events` streams what happens to the workers of
//! every node of a loopback mesh, and `logs` shows a marked line between the runs of a worker
//! that restarts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use circuit_testkit::{converged, wait_until, Daemon};
use serde_json::Value;

/// A daemon with a mesh port on loopback, joined to `join` if given.
fn node(name: &str, join: Option<&str>) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if let Some(addr) = join {
        args.extend(["--join", addr]);
    }
    Daemon::start_named(name, &args)
}

/// `circuit events --json` against `d`, its lines arriving on the receiver; killed on drop.
struct Events {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Events {
    fn start(d: &Daemon) -> Self {
        let mut child = d
            .cli_command(&["events", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run circuit events");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line).expect("one JSON object per line");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next worker event of `worker` (others are skipped), within 20 s.
    fn next_of(&self, worker: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no more events of {worker}"));
            if event["worker"] == worker {
                return event;
            }
        }
    }
}

impl Events {
    /// Spawns a short worker on `node` (through `d`) and says whether an event of a worker of
    /// `node` arrives within 2 s.
    fn sees_a_worker_of(&self, d: &Daemon, node: &str) -> bool {
        let name = format!("probe-{}", next_suffix());
        d.cli_ok(&[
            "spawn",
            "--node",
            node,
            "--name",
            &name,
            "--restart",
            "never",
            "--",
            "true",
        ]);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        while let Ok(e) = self.lines.recv_timeout(left()) {
            if e["worker"].is_string() && e["node"] == node {
                return true;
            }
        }
        false
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_stream_every_nodes_worker_lifecycle_and_logs_mark_the_restarts() {
    let a = node("a", None);
    let addr = a.mesh_addr();
    let b = node("b", Some(&addr));
    wait_until(Duration::from_secs(10), "a and b see each other", || {
        converged(&[&a, &b])
    });
    let events = Events::start(&a);
    // The stream is open once it reports a worker of a's own (events are not replayed), and
    // b's events come over the peer link once a worker of b's is seen.
    for (d, node) in [(&a, "a"), (&b, "b")] {
        wait_until(
            Duration::from_secs(20),
            &format!("events of {node}'s workers"),
            || events.sees_a_worker_of(d, node),
        );
    }

    // On b: a worker that fails twice, restarted once after 100 ms, then given up on.
    b.cli_ok(&[
        "spawn",
        "--node",
        "b",
        "--name",
        "flaky",
        "--restart",
        "on-failure",
        "--max-restarts",
        "1",
        "--backoff",
        "100ms",
        "--",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    let kinds: Vec<String> = (0..6)
        .map(|_| {
            let e = events.next_of("flaky");
            assert_eq!(e["node"], "b", "{e}");
            e["kind"].as_str().expect("kind").to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "gave_up"
        ]
    );

    // `logs` (here through a, which finds the worker on b) marks the lifecycle between the
    // runs, on stderr; stdout holds only the worker's own lines.
    let out = a.cli(&["logs", "flaky"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "run\nrun\n", "stderr: {stderr}");
    let marks: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("--- circuit: "))
        .collect();
    assert_eq!(marks.len(), 2, "{stderr}");
    assert!(
        marks[0].starts_with("--- circuit: exited (code 3), restarting in "),
        "{stderr}"
    );
    assert!(
        marks[1].starts_with("--- circuit: started again (pid "),
        "{stderr}"
    );

    // Stopping on request is an event too.
    a.cli_ok(&[
        "spawn", "--node", "a", "--name", "sleeper", "--", "sleep", "1000",
    ]);
    assert_eq!(events.next_of("sleeper")["kind"], "started");
    a.cli_ok(&["stop", "sleeper"]);
    let stopped = events.next_of("sleeper");
    assert_eq!(stopped["kind"], "stopped", "{stopped}");
    assert_eq!(stopped["last_exit"]["kind"], "signal", "{stopped}");
}

/// A short unique suffix for probe workers.
fn next_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn apply_replaces_a_changed_replica_set_one_copy_at_a_time() {
    let d = node("solo", None);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("api.toml");
    let write = |seconds: u32| {
        let text =
            format!("[workers.api]\ncommand = \"sleep\"\nargs = [\"{seconds}\"]\nreplicas = 3\n");
        std::fs::write(&file, text).expect("write the manifest");
    };
    write(1000);
    d.cli_ok(&["apply", file.to_str().expect("utf-8 path")]);
    let events = Events::start(&d);
    wait_until(Duration::from_secs(20), "the event stream is open", || {
        events.sees_a_worker_of(&d, "solo")
    });
    write(1001);
    let out = d.cli_ok(&["apply", file.to_str().expect("utf-8 path")]);
    assert!(out.contains("3 replaced"), "{out}");
    // Each copy is stopped and started again before the next one is touched.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let e = events
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("more events");
        let Some(worker) = e["worker"].as_str() else {
            continue;
        };
        if worker.starts_with("api-") && e["kind"] != "exited" {
            seen.push(format!("{} {worker}", e["kind"].as_str().unwrap_or("?")));
        }
    }
    assert_eq!(
        seen,
        [
            "stopped api-1",
            "started api-1",
            "stopped api-2",
            "started api-2",
            "stopped api-3",
            "started api-3"
        ]
    );
    d.cli_ok(&["down", file.to_str().expect("utf-8 path")]);
}
