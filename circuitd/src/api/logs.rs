//! `logs`: a worker's log streamed as items, what is kept (or its tail) and then, when
//! following, new lines until the worker has ended. Reads run on the blocking pool, a step at a
//! time, so a large log streams instead of loading whole.

use circuit_sdk::proto::{Item, LogLine, LogStream, LogsRequest, Reply, ServerMessage};

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
    let (filter, lifecycle) = (req.stream, req.lifecycle);
    let mut cursor = blocking(move || {
        Cursor::open(&dir, max_files, filter).map(|c| c.with_lifecycle(lifecycle))
    })
    .await?;

    // What is there now: all of it, or its last `tail` lines of the worker's own output (with
    // the lifecycle lines among and after them).
    let mut tail = req.tail.map(Tail::new);
    loop {
        let (c, lines, at_end) = read_step(cursor).await?;
        cursor = c;
        match tail.as_mut() {
            Some(keep) => lines.into_iter().for_each(|line| keep.push(line)),
            None => send_lines(id, lines, outbox).await?,
        }
        if at_end {
            break;
        }
    }
    if let Some(keep) = tail {
        send_lines(id, keep.lines.into_iter().collect(), outbox).await?;
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

/// The last `n` lines of a worker's own output, and the supervisor's lifecycle lines among and
/// after them (which `--tail` does not count).
struct Tail {
    n: usize,
    own: usize,
    lines: std::collections::VecDeque<LogLine>,
}

impl Tail {
    fn new(n: usize) -> Self {
        Self {
            n,
            own: 0,
            lines: std::collections::VecDeque::with_capacity(n.min(100_000)),
        }
    }

    fn push(&mut self, line: LogLine) {
        if self.n == 0 {
            return;
        }
        if line.stream != LogStream::Circuit {
            if self.own == self.n {
                // Drop the oldest own line, and the lifecycle lines up to the next one.
                while let Some(old) = self.lines.pop_front() {
                    if old.stream != LogStream::Circuit {
                        break;
                    }
                }
                while self
                    .lines
                    .front()
                    .is_some_and(|l| l.stream == LogStream::Circuit)
                {
                    self.lines.pop_front();
                }
                self.own -= 1;
            }
            self.own += 1;
        }
        self.lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: LogStream, text: &str) -> LogLine {
        LogLine {
            ts_ms: 0,
            stream,
            line: text.into(),
        }
    }

    #[test]
    fn tail_counts_the_workers_own_lines_and_keeps_the_lifecycle_among_them() {
        let mut tail = Tail::new(2);
        for (stream, text) in [
            (LogStream::Stdout, "1"),
            (LogStream::Circuit, "exited (code 1)"),
            (LogStream::Stdout, "2"),
            (LogStream::Circuit, "exited (code 1)"),
            (LogStream::Circuit, "restarting in 200ms"),
            (LogStream::Stderr, "3"),
            (LogStream::Circuit, "exited (code 5)"),
        ] {
            tail.push(line(stream, text));
        }
        let texts: Vec<&str> = tail.lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            texts,
            [
                "2",
                "exited (code 1)",
                "restarting in 200ms",
                "3",
                "exited (code 5)"
            ]
        );
        let mut none = Tail::new(0);
        none.push(line(LogStream::Circuit, "x"));
        assert!(none.lines.is_empty());
    }
}
