//! The daemon's own life: SIGKILL and restart on the same data dir (the job table comes back,
//! no process of the old generation survives), and a graceful SIGTERM.

use std::time::Duration;

use circuit_sdk::proto::{RestartPolicy, WorkerState};
use circuit_testkit::{alive, inspect, log_lines, sh, spawn, wait_until, wait_until_async, Daemon};

#[tokio::test]
async fn sigkill_and_restart_recovers_the_job_table_and_leaves_no_old_process() {
    let mut daemon = Daemon::start();
    let (old_leader, old_child) = {
        let client = daemon.client().await;
        let mut keeper = sh("keeper", "sleep 1000 & echo $!; wait");
        keeper.restart.policy = RestartPolicy::Always;
        spawn(&client, keeper).await;
        spawn(&client, sh("oneshot", "sleep 1000 & echo $!; wait")).await;
        spawn(&client, sh("done", "echo finished")).await;
        client
            .call(circuit_sdk::proto::Request::Wait {
                name: "done".into(),
            })
            .await
            .expect("wait");
        let child: i32 = wait_until_async(
            Duration::from_secs(10),
            "keeper's child reports",
            || async {
                log_lines(&client, "keeper")
                    .await
                    .first()
                    .and_then(|l| l.parse().ok())
            },
        )
        .await;
        (
            inspect(&client, "keeper").await.pid.expect("pid") as i32,
            child,
        )
    };
    let oneshot_leader = {
        let client = daemon.client().await;
        inspect(&client, "oneshot").await.pid.expect("pid") as i32
    };

    // The exit of "done" is written to the job table in the background: wait for the disk.
    let table = daemon.data_dir.join("jobs.json");
    wait_until(Duration::from_secs(5), "done's exit is on disk", || {
        let Ok(bytes) = std::fs::read(&table) else {
            return false;
        };
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        json["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|job| job["info"]["name"] == "done" && !job["info"]["last_exit"].is_null())
    });
    daemon.kill9();
    // The kernel kills each worker's main process with the daemon (PDEATHSIG).
    wait_until(
        Duration::from_secs(5),
        "old main processes die with the daemon",
        || !alive(old_leader) && !alive(oneshot_leader),
    );
    assert!(
        alive(old_child),
        "the grandchild outlives the daemon until the restart cleans up"
    );

    daemon.launch();
    let client = daemon.client().await;
    wait_until(
        Duration::from_secs(5),
        "the old generation's grandchild is killed",
        || !alive(old_child),
    );
    let keeper = wait_until_async(Duration::from_secs(10), "keeper runs again", || async {
        let info = inspect(&client, "keeper").await;
        (info.state == WorkerState::Running).then_some(info)
    })
    .await;
    assert_ne!(keeper.pid.map(|p| p as i32), Some(old_leader));
    assert!(alive(keeper.pid.expect("pid") as i32));

    // A worker whose policy says never is not started again, and says why.
    let oneshot = inspect(&client, "oneshot").await;
    assert_eq!(oneshot.state, WorkerState::Exited);
    assert!(
        oneshot
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("daemon restarted"),
        "{oneshot:?}"
    );
    // A worker that had already ended is remembered as it was.
    let done = inspect(&client, "done").await;
    assert_eq!(done.state, WorkerState::Exited);
    assert_eq!(
        done.last_exit,
        Some(circuit_sdk::proto::ExitStatus::Code { code: 0 })
    );
    assert!(log_lines(&client, "done")
        .await
        .contains(&"finished".to_string()));
}

#[tokio::test]
async fn sigterm_stops_workers_gracefully_and_removes_the_socket() {
    let mut daemon = Daemon::start();
    let pid = {
        let client = daemon.client().await;
        let mut spec = sh(
            "graceful",
            "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        );
        spec.restart.policy = RestartPolicy::Always;
        let info = spawn(&client, spec).await;
        wait_until_async(Duration::from_secs(10), "ready", || async {
            log_lines(&client, "graceful")
                .await
                .contains(&"ready".to_string())
                .then_some(())
        })
        .await;
        info.pid.expect("pid") as i32
    };
    let status = daemon.terminate();
    assert!(status.success(), "circuitd exited with {status}");
    assert!(!alive(pid));
    assert!(!daemon.socket.exists(), "socket left behind");

    // The worker's goodbye was logged, and a restart brings it back (its policy says always).
    daemon.launch();
    let client = daemon.client().await;
    assert!(log_lines(&client, "graceful")
        .await
        .contains(&"bye".to_string()));
    wait_until_async(Duration::from_secs(10), "graceful runs again", || async {
        (inspect(&client, "graceful").await.state == WorkerState::Running).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_or_socket_is_refused() {
    let daemon = Daemon::start();
    let out = std::process::Command::new(circuit_testkit::bin("circuitd"))
        .arg("--socket")
        .arg(daemon.dir.path().join("other.sock"))
        .arg("--data-dir")
        .arg(&daemon.data_dir)
        .output()
        .expect("run circuitd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another circuitd"), "{stderr}");

    let out = std::process::Command::new(circuit_testkit::bin("circuitd"))
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--data-dir")
        .arg(daemon.dir.path().join("other-data"))
        .output()
        .expect("run circuitd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another circuitd is already serving it"),
        "{stderr}"
    );
    // The first daemon is unharmed.
    daemon.client().await;
}

#[test]
fn the_exec_trampoline_refuses_a_foreign_parent_and_reports_exec_failures() {
    let circuitd = circuit_testkit::bin("circuitd");
    let me = std::process::id().to_string();
    // Started by us with our pid: it execs the program in place.
    let out = std::process::Command::new(&circuitd)
        .args(["__circuit-exec", &me, "sh", "-c", "echo in place $$"])
        .output()
        .expect("run trampoline");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("in place "));
    // Claiming a parent it does not have (the daemon died before PDEATHSIG was set): exit 127.
    let out = std::process::Command::new(&circuitd)
        .args(["__circuit-exec", "1", "sh", "-c", "echo should not run"])
        .output()
        .expect("run trampoline");
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stdout.is_empty());
    // A program that vanished after the spawn-time checks: 127 and one line saying why.
    let out = std::process::Command::new(&circuitd)
        .args(["__circuit-exec", &me, "/no/such/program"])
        .output()
        .expect("run trampoline");
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("circuitd: cannot run /no/such/program:"),
        "{err}"
    );
}
