//! `/api/state`: the whole mesh as the dashboard draws it — nodes, workers and channels of
//! every live node, gathered by the API's mesh-wide lists. Workers are shown without their
//! environment and arguments, which may hold secrets.

use std::collections::BTreeMap;

use circuit_sdk::proto::{ChanInfo, NodeInfo, WorkerInfo, WorkerState, WorkerUsage};
use serde::Serialize;

use crate::api::{view, Context};
use crate::clock::now_ms;

/// The content type of the JSON.
pub(super) const CONTENT_TYPE: &str = "application/json";

/// The document.
#[derive(Debug, Serialize)]
struct State {
    /// The node that answered.
    node: String,
    /// When (ms since the Unix epoch): the page computes rates from it.
    at_ms: u64,
    nodes: Vec<NodeInfo>,
    workers: Vec<Worker>,
    chans: Vec<ChanInfo>,
}

/// A worker as the dashboard shows it.
#[derive(Debug, Serialize)]
struct Worker {
    name: String,
    node: String,
    state: WorkerState,
    pid: Option<u32>,
    restarts: u32,
    started_at_ms: Option<u64>,
    exited_at_ms: Option<u64>,
    reason: Option<String>,
    usage: Option<WorkerUsage>,
    /// The program, without its arguments.
    command: String,
    labels: BTreeMap<String, String>,
}

impl From<WorkerInfo> for Worker {
    fn from(w: WorkerInfo) -> Self {
        Self {
            name: w.name,
            node: w.node,
            state: w.state,
            pid: w.pid,
            restarts: w.restarts,
            started_at_ms: w.started_at_ms,
            exited_at_ms: w.exited_at_ms,
            reason: w.reason,
            usage: w.usage,
            command: w.spec.command,
            labels: w.spec.labels,
        }
    }
}

/// The mesh as JSON, or why it could not be gathered.
pub(super) async fn render(ctx: &Context) -> Result<String, crate::api::ApiError> {
    let mesh = view::mesh(ctx).await?;
    let state = State {
        node: ctx.config.name.clone(),
        at_ms: now_ms(),
        nodes: mesh.nodes,
        workers: mesh.workers.into_iter().map(Worker::from).collect(),
        chans: mesh.chans,
    };
    Ok(serde_json::to_string(&state).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot encode the state: {e}") }).to_string()
    }))
}
