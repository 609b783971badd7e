//! `logs`: a worker's log streamed as items, what is kept (or its tail) and then, when
//! following, new lines until the worker has ended. Reads run on the blocking pool, a step at a
//! time, so a large log streams instead of loading whole.

use circuit_sdk::proto::{Item, LogLine, LogsRequest, Reply, ServerMessage};

use super::error::ApiError;
use super::outbox::Outbox;
use super::Context;
use crate::supervisor::end_of;
use crate::supervisor::logread::Cursor;

/// Bytes of log read per step, so a large log streams instead of loading whole.
const LOG_STEP: usize = 256 * 1024;

/// Streams a worker's log: what is kept (or its tail), then, when following, new lines until
/// the worker has ended.
pub(crate) async fn stream(
    id: u64,
    req: LogsRequest,
    ctx: &Context,
    outbox: &Outbox,
) -> Result<Reply, ApiError> {
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

fn removed(name: &str) -> ApiError {
    ApiError::NotFound(format!("worker \"{name}\" was removed"))
}

async fn read_step(mut cursor: Cursor) -> Result<(Cursor, Vec<LogLine>, bool), ApiError> {
    blocking(move || {
        let (lines, at_end) = cursor.read(LOG_STEP)?;
        Ok((cursor, lines, at_end))
    })
    .await
}

async fn send_lines(id: u64, lines: Vec<LogLine>, outbox: &Outbox) -> Result<(), ApiError> {
    for line in lines {
        let msg = ServerMessage::Item {
            id,
            item: Item::Log(line),
        };
        if !outbox.send(msg).await {
            return Err(ApiError::ClientGone);
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::Internal(format!("cannot read the log: {e}"))),
        Err(e) => Err(ApiError::Internal(format!("log reader failed: {e}"))),
    }
}
