//! Requests to subsystem calls: each request runs in its own task and ends with exactly one
//! terminal reply (ok or error), or none at all if the client went away.

use std::time::Duration;

use circuit_sdk::proto::{
    DaemonStatus, ErrorCode, Item, LogLine, LogsRequest, Reply, Request, ServerMessage,
    PROTOCOL_VERSION,
};
use tokio_util::sync::CancellationToken;

use super::connection::Outbox;
use super::{chans, remote, Context};
use crate::broker::BrokerError;
use crate::supervisor::logread::Cursor;
use crate::supervisor::{end_of, SupervisorError};

/// Bytes of log read per step, so a large log streams instead of loading whole.
const LOG_STEP: usize = 256 * 1024;

/// A failed request: the code and one line.
pub(crate) struct Failure(pub ErrorCode, pub String);

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure(e.code(), e.to_string())
    }
}

impl From<(ErrorCode, String)> for Failure {
    fn from((code, message): (ErrorCode, String)) -> Self {
        Failure(code, message)
    }
}

impl From<SupervisorError> for Failure {
    fn from(e: SupervisorError) -> Self {
        Failure(e.code(), e.to_string())
    }
}

pub(crate) async fn run(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
    cancel: &CancellationToken,
) {
    let result = tokio::select! {
        result = handle(id, request, ctx, outbox) => result,
        () = cancel.cancelled() => {
            let failure = if ctx.shutdown.is_cancelled() {
                Failure(ErrorCode::ShuttingDown, "circuitd is shutting down".into())
            } else {
                Failure(ErrorCode::Cancelled, "request cancelled".into())
            };
            // The client may be gone or not reading: do not wait for room.
            outbox.try_send(error(id, failure));
            return;
        }
    };
    let msg = match result {
        Ok(reply) => ServerMessage::Ok { id, reply },
        Err(failure) => error(id, failure),
    };
    tokio::select! {
        _ = outbox.send(msg) => {}
        () = cancel.cancelled() => {}
    }
}

fn error(id: u64, Failure(code, message): Failure) -> ServerMessage {
    ServerMessage::Error {
        id: Some(id),
        code,
        message,
    }
}

/// Runs a request from a client: requests about a worker go to the node that has it, mesh
/// requests to `remote`, the rest to [`local`].
pub(crate) async fn handle(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
    let worker = match &request {
        Request::Inspect { name }
        | Request::Restart { name }
        | Request::Signal { name, .. }
        | Request::Wait { name }
        | Request::Remove { name, .. } => Some(name.as_str()),
        Request::Logs(req) => Some(req.name.as_str()),
        _ => None,
    };
    if let Some(name) = worker {
        if let Some(node) = remote::find_worker(name, ctx).await? {
            return remote::on(id, &node, request, ctx, outbox).await;
        }
        return local(id, request, ctx, outbox).await;
    }
    match request {
        Request::Stop {
            names,
            signal,
            timeout_ms,
        } if ctx.membership.meshed() => {
            remote::stop_anywhere(id, names, signal, timeout_ms, ctx, outbox).await
        }
        Request::On { node, request } => remote::on(id, &node, *request, ctx, outbox).await,
        Request::ChanCreate {
            name,
            capacity,
            exist_ok,
        } => chans::create(id, name, capacity, exist_ok, ctx, outbox).await,
        Request::ChanStat { ref name }
        | Request::ChanClose { ref name }
        | Request::ChanRemove { ref name } => {
            let name = name.clone();
            chans::by_owner(id, &name, request, ctx, outbox).await
        }
        Request::ChanList if ctx.membership.meshed() => chans::list(ctx).await,
        Request::ChanClaim { name, node } => chans::claim(name, node, ctx).await,
        Request::ChanRelease { name, node } => Ok(chans::release(&name, &node, ctx)),
        Request::Place(placement) => remote::place(placement, ctx).await,
        Request::ClusterList { all } => remote::cluster_list(all, ctx).await,
        Request::Nodes => Ok(Reply::Nodes(ctx.membership.nodes())),
        Request::Join { addrs, timeout_ms } => remote::join(addrs, timeout_ms, ctx).await,
        Request::Events => remote::events(id, ctx, outbox).await,
        Request::MeshSync { nodes } => remote::mesh_sync(nodes, ctx),
        other => local(id, other, ctx, outbox).await,
    }
}

/// Runs a request on this node only.
pub(crate) async fn local(
    id: u64,
    request: Request,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, Failure> {
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
                return Err(Failure(
                    ErrorCode::InvalidArgument,
                    "no worker named to stop".into(),
                ));
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
        Request::Status => Reply::Status(DaemonStatus {
            name: ctx.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            started_at_ms: ctx.started_at_ms,
            uptime_ms: ctx.started.elapsed().as_millis() as u64,
            data_dir: ctx.config.data_dir.display().to_string(),
            socket: ctx.config.socket.display().to_string(),
            listen: ctx.config.listen.clone(),
            workers: sup.counts(),
            channels: ctx.broker.count(),
        }),
        Request::ChanCreate {
            name,
            capacity,
            exist_ok,
        } => Reply::Chan(ctx.broker.create(&name, capacity, exist_ok).await?),
        Request::ChanList => Reply::Chans(ctx.broker.list().await),
        Request::ChanStat { name } => Reply::Chan(ctx.broker.stat(&name).await?),
        Request::ChanClose { name } => {
            ctx.broker.close(&name).await?;
            Reply::Done
        }
        Request::ChanRemove { name } => {
            ctx.broker.remove(&name).await?;
            Reply::Done
        }
        Request::ChanSend { .. } | Request::ChanRecv { .. } => {
            return Err(Failure(
                ErrorCode::Internal,
                "channel streams are opened by the connection".into(),
            ))
        }
        Request::Logs(req) => logs(id, req, ctx, outbox).await?,
        Request::Ping => Reply::Done,
        Request::KeyList | Request::KeyRotate { .. } => super::keys::handle(request, ctx)?,
        Request::Place(_)
        | Request::On { .. }
        | Request::ClusterList { .. }
        | Request::Nodes
        | Request::Join { .. }
        | Request::Events
        | Request::MeshSync { .. }
        | Request::ChanClaim { .. }
        | Request::ChanRelease { .. } => return Box::pin(handle(id, request, ctx, outbox)).await,
    })
}

/// Streams a worker's log: what is kept (or its tail), then, when following, new lines until
/// the worker has ended.
async fn logs(id: u64, req: LogsRequest, ctx: &Context, outbox: &Outbox) -> Result<Reply, Failure> {
    let (log, mut info, max_files) = ctx.supervisor.log_of(&req.name)?;
    // Subscribe before the first read, so no write between the two goes unnoticed.
    let mut written = log.subscribe();
    let dir = log.dir().to_path_buf();
    let filter = req.stream;
    let mut cursor = blocking(move || Cursor::open(&dir, max_files, filter)).await?;

    // What is there now: all of it, or its last `tail` lines.
    let mut tail = req
        .tail
        .map(|n| std::collections::VecDeque::with_capacity(n.min(100_000)));
    loop {
        let (c, lines, at_end) = read_step(cursor).await?;
        cursor = c;
        match tail.as_mut() {
            Some(keep) => {
                let n = req.tail.unwrap_or(0);
                for line in lines {
                    if keep.len() == n {
                        keep.pop_front();
                    }
                    if n > 0 {
                        keep.push_back(line);
                    }
                }
            }
            None => send_lines(id, lines, outbox).await?,
        }
        if at_end {
            break;
        }
    }
    if let Some(keep) = tail {
        send_lines(id, keep.into_iter().collect(), outbox).await?;
    }
    if !req.follow {
        return Ok(Reply::Done);
    }

    loop {
        let ended = info.borrow_and_update().state.is_terminal();
        // Read everything written so far; after the end, this is the final drain.
        loop {
            let (c, lines, at_end) = read_step(cursor).await?;
            cursor = c;
            send_lines(id, lines, outbox).await?;
            if at_end {
                break;
            }
        }
        if ended {
            return Ok(Reply::End(end_of(&info.borrow())));
        }
        tokio::select! {
            changed = written.changed() => if changed.is_err() { return Err(removed(&req.name)) },
            changed = info.changed() => if changed.is_err() { return Err(removed(&req.name)) },
        }
    }
}

fn removed(name: &str) -> Failure {
    Failure(
        ErrorCode::NotFound,
        format!("worker \"{name}\" was removed"),
    )
}

async fn read_step(mut cursor: Cursor) -> Result<(Cursor, Vec<LogLine>, bool), Failure> {
    blocking(move || {
        let (lines, at_end) = cursor.read(LOG_STEP)?;
        Ok((cursor, lines, at_end))
    })
    .await
}

async fn send_lines(id: u64, lines: Vec<LogLine>, outbox: &Outbox) -> Result<(), Failure> {
    for line in lines {
        let msg = ServerMessage::Item {
            id,
            item: Item::Log(line),
        };
        if !outbox.send(msg).await {
            return Err(Failure(ErrorCode::Cancelled, "client went away".into()));
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure(
            ErrorCode::Internal,
            format!("cannot read the log: {e}"),
        )),
        Err(e) => Err(Failure(
            ErrorCode::Internal,
            format!("log reader failed: {e}"),
        )),
    }
}
