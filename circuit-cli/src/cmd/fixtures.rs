//! Nodes, workers and channels as the daemon describes them, for the subcommands' unit tests: each test
//! starts from these and changes the fields it is about.

use circuit_sdk::proto::{ChanInfo, NodeInfo, NodeState, SpawnSpec, WorkerInfo, WorkerState};

/// A node in `state`, not this one, with no labels, workers or channels; its address is
/// 10.0.0.N:7711 for a name ending in N (`h1`, `n3`).
pub fn node(name: &str, state: NodeState) -> NodeInfo {
    let number = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    NodeInfo {
        name: name.into(),
        addr: format!("10.0.0.{number}:7711"),
        state,
        is_self: false,
        generation: 1,
        labels: Default::default(),
        version: "0.1.0".into(),
        started_at_ms: 1_000,
        workers: 0,
        worker_names: Vec::new(),
        load: 0.0,
        mem_total_bytes: 0,
        mem_available_bytes: 0,
        channels: Vec::new(),
        meta_version: 1,
        updated_at_ms: 1_000,
    }
}

/// An open, empty channel owned by `owner`, created at 1 s past the epoch.
pub fn chan(name: &str, capacity: u64, owner: &str) -> ChanInfo {
    ChanInfo {
        name: name.into(),
        capacity,
        len: 0,
        in_flight: 0,
        waiting_senders: 0,
        waiting_receivers: 0,
        senders: 0,
        receivers: 0,
        sent: 0,
        received: 0,
        closed: false,
        owner: owner.into(),
        max_payload: 16 << 20,
        created_at_ms: 1_000,
        ..Default::default()
    }
}

/// A worker of `node` in `state` running `sleep 60`, started at 1 s past the epoch, with no
/// pid, restarts or usage.
pub fn worker(name: &str, node: &str, state: WorkerState) -> WorkerInfo {
    WorkerInfo {
        name: name.into(),
        node: node.into(),
        state,
        pid: None,
        restarts: 0,
        started_at_ms: Some(1_000),
        exited_at_ms: None,
        last_exit: None,
        reason: None,
        next_start_at_ms: None,
        spec: SpawnSpec {
            command: "sleep".into(),
            args: vec!["60".into()],
            ..SpawnSpec::default()
        },
        usage: None,
        escaped: Vec::new(),
    }
}
