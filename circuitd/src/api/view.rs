//! The whole mesh at once, for the HTTP dashboard: every node, every worker (exited ones too)
//! and every channel, gathered as `circuit nodes`, `circuit ps -a` and `circuit chan ls` gather
//! them — the same handlers, which ask the other live nodes over the peer links.

use circuit_sdk::proto::{ChanInfo, NodeInfo, Reply, WorkerInfo};

use super::error::ApiError;
use super::{chans, cluster, Context};

/// What the mesh holds, as this node can find out now.
pub(crate) struct Mesh {
    /// Every node this one knows, itself included.
    pub nodes: Vec<NodeInfo>,
    /// Every worker of every node, by node then name; those of a dead node as `lost`.
    pub workers: Vec<WorkerInfo>,
    /// Every channel, by name (a replicated channel once, as its freshest replica says).
    pub chans: Vec<ChanInfo>,
}

/// Gathers the mesh: the node table here, the workers and channels of every live node.
pub(crate) async fn mesh(ctx: &Context) -> Result<Mesh, ApiError> {
    let Reply::Nodes(nodes) = cluster::nodes(ctx) else {
        return Err(ApiError::Internal("nodes: not a node list".into()));
    };
    let (workers, chans) = tokio::join!(cluster::list_workers(true, ctx), chans::list_all(ctx));
    let Reply::Workers(workers) = workers? else {
        return Err(ApiError::Internal("workers: not a worker list".into()));
    };
    let Reply::Chans(chans) = chans? else {
        return Err(ApiError::Internal("channels: not a channel list".into()));
    };
    Ok(Mesh {
        nodes,
        workers,
        chans,
    })
}
