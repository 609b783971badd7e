//! Supervision: restart policies and backoff, give-up and restart, stop of whole process trees,
//! stop signals and grace, logs, environment, and many workers at once.

use std::time::Duration;

use circuit_sdk::proto::{
    EnvMode, ExitStatus, Reply, Request, RestartPolicy, RestartSpec, SpawnSpec, WorkerState,
};
use circuit_testkit::{alive, inspect, list, log_lines, sh, spawn, stop, wait_until_async, Daemon};

fn restart(policy: RestartPolicy, initial_ms: u64, max_restarts: u32) -> RestartSpec {
    RestartSpec {
        policy,
        backoff_initial_ms: initial_ms,
        backoff_max_ms: 10_000,
        stable_after_ms: 10_000,
        max_restarts,
        window_ms: 60_000,
    }
}

async fn state_is(
    client: &circuit_sdk::Client,
    name: &str,
    state: WorkerState,
) -> Option<circuit_sdk::proto::WorkerInfo> {
    let info = inspect(client, name).await;
    (info.state == state).then_some(info)
}

#[tokio::test]
async fn on_failure_restarts_failures_with_growing_backoff_then_gives_up() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let mut spec = sh("flaky", "echo start; exit 1");
    spec.restart = restart(RestartPolicy::OnFailure, 100, 4);
    spawn(&client, spec).await;

    let failed = wait_until_async(Duration::from_secs(20), "flaky fails", || {
        state_is(&client, "flaky", WorkerState::Failed)
    })
    .await;
    assert_eq!(failed.restarts, 4);
    assert_eq!(failed.last_exit, Some(ExitStatus::Code { code: 1 }));
    assert!(
        failed.reason.as_deref().unwrap_or("").contains("giving up"),
        "{failed:?}"
    );

    // Five runs, started after delays of about 100, 200, 400 and 800 ms (±20 % jitter).
    let mut stream = client
        .stream(Request::Logs(circuit_sdk::proto::LogsRequest {
            name: "flaky".into(),
            ..Default::default()
        }))
        .await
        .expect("logs");
    let mut stamps = Vec::new();
    while let circuit_sdk::Next::Item(circuit_sdk::proto::Item::Log(line)) =
        stream.next().await.expect("logs")
    {
        assert_eq!(line.line, "start");
        stamps.push(line.ts_ms);
    }
    assert_eq!(stamps.len(), 5, "one line per run");
    for (i, pair) in stamps.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let nominal = 100u64 << i;
        assert!(
            gap >= nominal * 8 / 10,
            "gap {i} was {gap} ms, expected about {nominal} ms"
        );
        assert!(
            gap <= nominal * 12 / 10 + 400,
            "gap {i} was {gap} ms, expected about {nominal} ms"
        );
    }

    // `restart` brings a failed worker back with a clean count.
    match client
        .call(Request::Restart {
            name: "flaky".into(),
        })
        .await
        .expect("restart")
    {
        Reply::Worker(info) => assert_eq!(info.restarts, 0),
        other => panic!("unexpected {other:?}"),
    }
    let info = inspect(&client, "flaky").await;
    assert_ne!(info.state, WorkerState::Failed);
}

#[tokio::test]
async fn on_failure_leaves_a_clean_exit_alone_and_always_restarts_it() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let mut clean = sh("clean", "exit 0");
    clean.restart = restart(RestartPolicy::OnFailure, 50, 0);
    spawn(&client, clean).await;
    let mut always = sh("always", "exit 0");
    always.restart = restart(RestartPolicy::Always, 50, 0);
    spawn(&client, always).await;

    let done = wait_until_async(Duration::from_secs(10), "clean exits", || {
        state_is(&client, "clean", WorkerState::Exited)
    })
    .await;
    assert_eq!(done.restarts, 0);
    wait_until_async(
        Duration::from_secs(10),
        "always restarts 3 times",
        || async { (inspect(&client, "always").await.restarts >= 3).then_some(()) },
    )
    .await;
    let stopped = stop(&client, &["always"]).await;
    assert_eq!(stopped[0].state, WorkerState::Exited);
    // Stopped by the user: it stays stopped.
    let after = inspect(&client, "always").await;
    assert_eq!(after.state, WorkerState::Exited);
}

#[tokio::test]
async fn stop_kills_the_whole_process_tree() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    spawn(
        &client,
        sh("tree", "sleep 1000 & echo $!; sleep 1000 & echo $!; wait"),
    )
    .await;
    let pids: Vec<i32> =
        wait_until_async(Duration::from_secs(10), "both children report", || async {
            let lines = log_lines(&client, "tree").await;
            (lines.len() == 2).then(|| lines.iter().map(|l| l.parse().expect("pid")).collect())
        })
        .await;
    let leader = inspect(&client, "tree").await.pid.expect("pid") as i32;
    assert!(pids.iter().all(|&p| alive(p)) && alive(leader));

    stop(&client, &["tree"]).await;
    for pid in pids.iter().chain([&leader]) {
        assert!(!alive(*pid), "process {pid} survived stop");
    }
    let info = inspect(&client, "tree").await;
    assert_eq!(info.last_exit, Some(ExitStatus::Signal { signal: 15 }));
}

#[tokio::test]
async fn stop_sends_the_configured_signal_and_kills_after_the_grace() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let mut polite = sh(
        "polite",
        "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.05; done",
    );
    polite.stop.signal = "INT".into();
    spawn(&client, polite).await;
    let mut stubborn = sh(
        "stubborn",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    stubborn.stop.grace_ms = 300;
    spawn(&client, stubborn).await;
    for name in ["polite", "stubborn"] {
        wait_until_async(Duration::from_secs(10), "ready", || async {
            log_lines(&client, name)
                .await
                .contains(&"ready".to_string())
                .then_some(())
        })
        .await;
    }

    let started = std::time::Instant::now();
    let stopped = stop(&client, &["polite", "stubborn"]).await;
    assert_eq!(stopped[0].last_exit, Some(ExitStatus::Code { code: 7 }));
    assert_eq!(stopped[1].last_exit, Some(ExitStatus::Signal { signal: 9 }));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "KILL came before the grace ended"
    );
    assert!(log_lines(&client, "polite")
        .await
        .contains(&"got INT".to_string()));
}

#[tokio::test]
async fn logs_follow_ends_with_the_worker_and_its_status() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    spawn(
        &client,
        sh(
            "talker",
            "for i in 1 2 3; do echo out $i; echo err $i >&2; sleep 0.1; done; exit 4",
        ),
    )
    .await;
    let mut stream = client
        .stream(Request::Logs(circuit_sdk::proto::LogsRequest {
            name: "talker".into(),
            follow: true,
            ..Default::default()
        }))
        .await
        .expect("logs");
    let mut out = Vec::new();
    let end = loop {
        match stream.next().await.expect("follow") {
            circuit_sdk::Next::Item(circuit_sdk::proto::Item::Log(l)) => {
                out.push((l.stream, l.line))
            }
            circuit_sdk::Next::End(Reply::End(end)) => break end,
            circuit_sdk::Next::End(other) => panic!("unexpected {other:?}"),
            circuit_sdk::Next::Item(other) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(end.exit, Some(ExitStatus::Code { code: 4 }));
    assert_eq!(end.shell_code(), 4);
    let stdout: Vec<&str> = out
        .iter()
        .filter(|(s, _)| *s == circuit_sdk::proto::LogStream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect();
    let stderr: Vec<&str> = out
        .iter()
        .filter(|(s, _)| *s == circuit_sdk::proto::LogStream::Stderr)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(stdout, ["out 1", "out 2", "out 3"]);
    assert_eq!(stderr, ["err 1", "err 2", "err 3"]);
}

#[tokio::test]
async fn logs_rotate_by_size_and_keep_the_newest_lines() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let mut spec = sh(
        "chatty",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
    );
    spec.log.max_bytes = Some(2_000);
    spec.log.max_files = Some(2);
    spawn(&client, spec).await;
    client
        .call(Request::Wait {
            name: "chatty".into(),
        })
        .await
        .expect("wait");
    let lines = log_lines(&client, "chatty").await;
    assert_eq!(lines.last().map(String::as_str), Some("line 299"));
    assert!(lines.len() < 300, "old lines were rotated away");
    // What is kept is contiguous: nothing lost between files.
    let first: usize = lines[0]
        .trim_start_matches("line ")
        .parse()
        .expect("number");
    let expected: Vec<String> = (first..300).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    let dir = daemon.data_dir.join("workers/chatty");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["output.log", "output.log.1", "output.log.2"]);
}

#[tokio::test]
async fn workers_get_their_environment() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let mut spec = sh("envy", "echo $CIRCUIT_SOCKET; echo $CIRCUIT_NODE; echo $CIRCUIT_WORKER; echo $CIRCUIT_CHAN_IN; echo ${FOO:-unset}; echo ${HOME:-nohome}");
    spec.env.insert("FOO".into(), "bar".into());
    spec.chans.insert("in".into(), "jobs".into());
    spawn(&client, spec).await;
    client
        .call(Request::Wait {
            name: "envy".into(),
        })
        .await
        .expect("wait");
    let lines = log_lines(&client, "envy").await;
    assert_eq!(
        lines[..5],
        [
            daemon.socket.display().to_string(),
            "test".into(),
            "envy".into(),
            "jobs".into(),
            "bar".into()
        ]
    );

    let mut replaced = sh("bare", "echo ${HOME:-nohome}; echo $FOO");
    replaced.command = "/bin/sh".into();
    replaced.env_mode = EnvMode::Replace;
    replaced.env.insert("FOO".into(), "only".into());
    spawn(&client, replaced).await;
    client
        .call(Request::Wait {
            name: "bare".into(),
        })
        .await
        .expect("wait");
    assert_eq!(log_lines(&client, "bare").await, ["nohome", "only"]);
}

#[tokio::test]
async fn two_hundred_workers_are_spawned_listed_and_stopped() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let names: Vec<String> = (0..200).map(|i| format!("many-{i:03}")).collect();
    let spawns = names.iter().map(|n| {
        let client = client.clone();
        let spec = SpawnSpec {
            command: "sleep".into(),
            args: vec!["1000".into()],
            name: Some(n.clone()),
            ..SpawnSpec::default()
        };
        async move { client.call(Request::Spawn(spec)).await }
    });
    for result in futures::future::join_all(spawns).await {
        result.expect("spawn");
    }
    let running = list(&client, false).await;
    assert_eq!(running.len(), 200);
    assert!(running.iter().all(|w| w.state == WorkerState::Running));
    let pids: Vec<i32> = running.iter().map(|w| w.pid.expect("pid") as i32).collect();
    let listed: Vec<String> = running.iter().map(|w| w.name.clone()).collect();
    assert_eq!(listed, names);

    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let stopped = stop(&client, &names).await;
    assert!(stopped.iter().all(|w| w.state == WorkerState::Exited));
    assert!(pids.iter().all(|&p| !alive(p)), "a sleep survived");
    let active = list(&client, false).await;
    assert!(active.is_empty());
    let all = list(&client, true).await;
    assert_eq!(all.len(), 200);
}

#[tokio::test]
async fn remove_refuses_a_running_worker_unless_forced_and_deletes_its_logs() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let info = spawn(&client, sh("victim", "echo hello; sleep 1000")).await;
    let err = client
        .call(Request::Remove {
            name: "victim".into(),
            force: false,
        })
        .await
        .expect_err("running");
    assert_eq!(
        err.code(),
        Some(circuit_sdk::proto::ErrorCode::InvalidState)
    );
    assert!(err.to_string().contains("--force"), "{err}");
    client
        .call(Request::Remove {
            name: "victim".into(),
            force: true,
        })
        .await
        .expect("forced");
    assert!(!alive(info.pid.expect("pid") as i32));
    assert!(!daemon.data_dir.join("workers/victim").exists());
    let err = client
        .call(Request::Inspect {
            name: "victim".into(),
        })
        .await
        .expect_err("gone");
    assert!(err.is_not_found());
    // The name is free again.
    spawn(&client, sh("victim", "exit 0")).await;
}

/// Workers get every signal's default action, whatever the daemon inherited: here circuitd is
/// started with SIGHUP, SIGINT and SIGQUIT ignored (as under `nohup`, or from a script with
/// `&`), and a shell worker can still trap all three (a shell cannot trap a signal that was
/// ignored when it started).
#[tokio::test]
async fn workers_get_default_signal_actions_whatever_the_daemon_inherited() {
    let ignoring = ["sh", "-c", "trap '' HUP INT QUIT; exec \"$0\" \"$@\""];
    let daemon = Daemon::builder()
        .launcher(ignoring)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).expect("status");
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("hex"))
        .expect("SigIgn");
    assert_ne!(
        ignored & (1 << (3 - 1)),
        0,
        "the daemon ignores SIGQUIT: {ignored:x}"
    );
    let client = daemon.client().await;
    let script = "for s in HUP INT QUIT; do trap \"echo got $s\" $s; done; echo ready; \
                  while :; do sleep 0.05; done";
    spawn(&client, sh("traps", script)).await;
    let has = |line: &'static str| {
        let client = &client;
        move || async move {
            log_lines(client, "traps")
                .await
                .iter()
                .any(|l| l == line)
                .then_some(())
        }
    };
    wait_until_async(Duration::from_secs(10), "ready", has("ready")).await;
    for sig in ["HUP", "INT", "QUIT"] {
        let reply = client
            .call(Request::Signal {
                name: "traps".into(),
                signal: sig.into(),
                group: false,
            })
            .await
            .expect("signal");
        assert!(matches!(reply, Reply::Worker(_) | Reply::Done), "{reply:?}");
        let line: &'static str = match sig {
            "HUP" => "got HUP",
            "INT" => "got INT",
            _ => "got QUIT",
        };
        wait_until_async(Duration::from_secs(10), line, has(line)).await;
    }
    stop(&client, &["traps"]).await;
}
