//! The pipeline example (`examples/pipeline`) end to end: run in one process and run as circuitd
//! workers, it gives the same result — also when an analyzer is SIGKILLed mid-stream.

use std::process::{Output, Stdio};
use std::time::Duration;

use circuit_sdk::proto::{ExitStatus, Reply, Request, WorkerState};
use circuit_testkit::{bin, inspect, list, wait_until_async, Daemon};

/// The corpus and the pipeline's shape, the same for every run here.
const SHAPE: &str = "--docs 300 --seed 7 --analyzers 3";

/// `pipeline <line>`, talking to `daemon`; killed if dropped.
fn command(daemon: &Daemon, line: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin("pipeline"));
    cmd.args(line.split_whitespace())
        .env("CIRCUIT_SOCKET", &daemon.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The result line of a run that must have succeeded. Its stderr is shown with `--nocapture`
/// (a run with a kill notes the duplicates it dropped, if any).
fn result_line(line: &str, output: std::io::Result<Output>) -> String {
    let out = output.expect("run pipeline");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status = out.status;
    assert!(
        status.success(),
        "pipeline {line} failed ({status}): {stderr}"
    );
    eprint!("{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `pipeline <line>` to the end (15 s at most); returns its result line.
async fn run(daemon: &Daemon, line: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(15), command(daemon, line).output())
        .await
        .unwrap_or_else(|_| panic!("pipeline {line} did not finish within 15 s"));
    result_line(line, output)
}

fn digest(line: &str) -> String {
    let summary: serde_json::Value = serde_json::from_str(line).expect("a JSON result line");
    summary["digest"].as_str().expect("a digest").to_string()
}

#[tokio::test]
async fn local_and_distributed_runs_give_the_same_result() {
    let daemon = Daemon::start();
    let client = daemon.client().await;

    let local = run(&daemon, &format!("local {SHAPE}")).await;
    let distributed = run(&daemon, &format!("distributed {SHAPE}")).await;
    assert_eq!(local, distributed);

    // The line summarises the corpus: another seed gives another aggregate.
    assert!(local.starts_with(r#"{"docs":300,"words":"#), "{local}");
    let other = run(&daemon, "local --docs 300 --seed 8").await;
    assert_ne!(digest(&local), digest(&other));

    // The distributed run removed the workers and channels it created.
    assert_eq!(list(&client, true).await, vec![]);
    assert_eq!(client.chan_list().await.expect("chan ls"), vec![]);
}

#[tokio::test]
async fn an_analyzer_killed_mid_stream_changes_nothing() {
    let daemon = Daemon::start();
    let client = daemon.client().await;
    let expected = run(&daemon, &format!("local {SHAPE}")).await;

    // 300 documents, 20 ms each, over 3 analyzers: about 2 s, so there is time to kill one.
    let line = format!("distributed {SHAPE} --analyze-delay-ms 20 --prefix k-");
    let mut child = command(&daemon, &line).spawn().expect("start pipeline");

    let counted = |at_least: u64| {
        let client = &client;
        async move {
            let counts = client.chan_stat("k-counts").await.ok()?;
            (counts.sent >= at_least).then_some(())
        }
    };
    wait_until_async(Duration::from_secs(10), "30 documents are counted", || {
        counted(30)
    })
    .await;
    let kill = Request::Signal {
        name: "k-analyze-2".into(),
        signal: "KILL".into(),
        group: false,
    };
    assert_eq!(client.call(kill).await.expect("signal"), Reply::Done);
    let killed = wait_until_async(Duration::from_secs(5), "k-analyze-2 has ended", || async {
        let info = inspect(&client, "k-analyze-2").await;
        info.state.is_terminal().then_some(info)
    })
    .await;
    assert_eq!(killed.last_exit, Some(ExitStatus::Signal { signal: 9 }));
    assert_eq!(killed.state, WorkerState::Exited, "restart policy never");

    // The kill came mid-stream: the run is still going, far from all counts sent.
    assert!(counted(300).await.is_none(), "the kill came too late");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended early"
    );

    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the run finishes within 15 s of the kill");
    assert_eq!(result_line(&line, output), expected);
    assert_eq!(list(&client, true).await, vec![]);
}
