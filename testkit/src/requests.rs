//! SDK requests a test makes again and again — spawn, list, stop, inspect, a worker's log —
//! each asserting that the daemon answered as it should (they panic otherwise).

use circuit_sdk::proto::{Reply, Request, SpawnSpec, WorkerInfo};
use circuit_sdk::Client;

/// Spawns a worker through the SDK and returns its description.
pub async fn spawn(client: &Client, spec: SpawnSpec) -> WorkerInfo {
    match client.call(Request::Spawn(spec)).await.expect("spawn") {
        Reply::Worker(info) => *info,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Lists workers (`all`: exited ones too), by name.
pub async fn list(client: &Client, all: bool) -> Vec<WorkerInfo> {
    match client.call(Request::List { all }).await.expect("list") {
        Reply::Workers(workers) => workers,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Stops workers with their own stop signal and grace; returns their final descriptions.
pub async fn stop(client: &Client, names: &[&str]) -> Vec<WorkerInfo> {
    let request = Request::Stop {
        names: names.iter().map(|n| n.to_string()).collect(),
        signal: None,
        timeout_ms: None,
    };
    match client.call(request).await.expect("stop") {
        Reply::Workers(workers) => workers,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A spec running `sh -c script`, named `name`.
pub fn sh(name: &str, script: &str) -> SpawnSpec {
    SpawnSpec {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        name: Some(name.into()),
        ..SpawnSpec::default()
    }
}

/// One worker's current description.
pub async fn inspect(client: &Client, name: &str) -> WorkerInfo {
    match client
        .call(Request::Inspect { name: name.into() })
        .await
        .expect("inspect")
    {
        Reply::Worker(info) => *info,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// All log lines of a worker, as text.
pub async fn log_lines(client: &Client, name: &str) -> Vec<String> {
    let mut stream = client
        .stream(Request::Logs(circuit_sdk::proto::LogsRequest {
            name: name.into(),
            ..Default::default()
        }))
        .await
        .expect("logs");
    let mut lines = Vec::new();
    loop {
        match stream.next().await.expect("logs reply") {
            circuit_sdk::Next::Item(circuit_sdk::proto::Item::Log(l)) => lines.push(l.line),
            circuit_sdk::Next::End(_) => return lines,
            circuit_sdk::Next::Item(other) => panic!("unexpected item in a log: {other:?}"),
        }
    }
}
