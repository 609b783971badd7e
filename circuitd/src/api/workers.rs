//! Worker requests on this node: spawn, list, inspect, stop, restart, signal, wait, remove,
//! each a call on the supervisor.

use std::time::Duration;

use circuit_sdk::proto::{Reply, Request};

use super::error::ApiError;
use super::Context;

/// Runs a worker request on this node's supervisor.
pub(crate) async fn handle(request: Request, ctx: &Context) -> Result<Reply, ApiError> {
    let sup = &ctx.supervisor;
    Ok(match request {
        Request::Spawn(spec) => Reply::Worker(Box::new(sup.spawn(spec).await?)),
        Request::List { all } => Reply::Workers(sup.list(all)),
        Request::Inspect { name } => Reply::Worker(Box::new(sup.inspect(&name)?)),
        Request::Stop {
            names,
            signal,
            timeout_ms,
        } => {
            if names.is_empty() {
                return Err(ApiError::InvalidArgument("no worker named to stop".into()));
            }
            let grace = timeout_ms.map(Duration::from_millis);
            Reply::Workers(sup.stop(&names, signal.as_deref(), grace).await?)
        }
        Request::Restart { name } => Reply::Worker(Box::new(sup.restart(&name).await?)),
        Request::Signal {
            name,
            signal,
            group,
        } => {
            sup.signal(&name, &signal, group).await?;
            Reply::Done
        }
        Request::Wait { name } => Reply::End(sup.wait(&name).await?),
        Request::Remove { name, force } => {
            sup.remove(&name, force).await?;
            Reply::Done
        }
        other => {
            return Err(ApiError::Internal(format!(
                "not a worker request: {other:?}"
            )))
        }
    })
}
