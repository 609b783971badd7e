//! A worker's stdin as a stream (`worker_stdin`; the semantics are in docs/SUPERVISION.md,
//! "Stdin"). One task per attached writer takes the run's pipe from the worker's task
//! ([`pipe`]), writes the chunks its stream brings, in order, and answers each with `accepted`
//! once it is written (`queue` holds the stream's rules). The client keeps at most
//! [`WINDOW`] chunks unanswered, so a writer holds at most `WINDOW × MAX_CHUNK` bytes, and a
//! worker that does not read holds up only its own writer: the task goes on reading its inbox
//! while a write waits, so neither its connection nor a peer link the stream arrives on ever
//! waits for the pipe. It serves the stream contract (`crate::stream`) as a channel's actor
//! does.

pub mod pipe;
pub(crate) mod queue;

use std::io::ErrorKind;

use circuit_sdk::proto::{ErrorCode, Item, Reply, SignalOp, StdinOpened, WorkerInfo, WorkerState};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::stream::{StreamMsg, StreamOut};
use queue::Queue;

/// Most chunks a client may have sent that it has not seen `accepted`.
pub const WINDOW: u32 = 8;

/// Largest chunk, in bytes (a pipe's own buffer on Linux).
pub const MAX_CHUNK: usize = 64 * 1024;

/// Messages a writer may have queued from its connection: a window's chunks (one message each
/// at worst), the end of the input and the end of the stream, with room to spare.
const INBOX: usize = 64;

/// Where a connection sends the messages of a stdin stream.
#[derive(Debug, Clone)]
pub(crate) struct StdinInbox(mpsc::Sender<StreamMsg>);

impl StdinInbox {
    /// Hands the writer a message of its stream, waiting while its inbox is full; false once
    /// the writer has ended.
    pub async fn send(&self, msg: StreamMsg) -> bool {
        self.0.send(msg).await.is_ok()
    }
}

/// A run's stdin, taken by a writer.
pub(crate) struct Attachment {
    /// The pipe's write end.
    pub pipe: ChildStdin,
    /// The run's process: when the worker's pid is another, the run is over.
    pub pid: u32,
    /// The worker's state, to notice the run ending.
    pub info: watch::Receiver<WorkerInfo>,
}

/// Starts the writer of a stdin stream to worker `name`; its first message opens it.
pub(super) fn start(sup: Supervisor, name: String, keep_open: bool) -> StdinInbox {
    let (tx, rx) = mpsc::channel(INBOX);
    let tracker = sup.shared.tracker.clone();
    tracker.spawn(run(sup, name, keep_open, rx));
    StdinInbox(tx)
}

/// How a writer's stream ended.
enum End {
    /// The input ended, and all of it is written.
    Input,
    /// The client went away before its input ended (`cancelled`: it asked to).
    Gone { cancelled: bool },
    /// The client broke a rule of the stream.
    Refused(String),
    /// The worker closed its end of the pipe.
    Closed,
    /// The run whose stdin this is has ended.
    RunOver,
    /// The worker was removed.
    Removed,
    /// The pipe failed otherwise.
    Failed(std::io::Error),
    /// The daemon is stopping.
    Shutdown,
}

async fn run(sup: Supervisor, name: String, keep_open: bool, mut rx: mpsc::Receiver<StreamMsg>) {
    let Some(StreamMsg::OpenSend { out, .. }) = rx.recv().await else {
        return;
    };
    let mut attached = match sup.attach_stdin(&name).await {
        Ok(attached) => attached,
        Err(e) => {
            out.fail(e.code(), e.to_string());
            return;
        }
    };
    out.item(Item::StdinOpened(StdinOpened {
        worker: name.clone(),
        node: sup.node().to_string(),
        pid: attached.pid,
        window: WINDOW,
        max_chunk: MAX_CHUNK as u64,
    }));
    let end = pump(&mut attached, &mut rx, &out, &sup.shared.shutdown).await;
    // Whatever follows may wait for the worker's task: the connection must not wait for room
    // in this inbox meanwhile.
    drop(rx);
    let Attachment { pipe, pid, info } = attached;
    // The pipe goes back (or is closed) before the client hears the end, so that its next
    // attach finds it free and a worker reading to EOF has seen the EOF.
    match end {
        End::Input => {
            sup.release_stdin(&name, pid, keep_open.then_some(pipe))
                .await;
            out.finish(Reply::Done);
        }
        End::Gone { cancelled } => {
            sup.release_stdin(&name, pid, Some(pipe)).await;
            if cancelled {
                out.fail(ErrorCode::Cancelled, "stream closed by the client".into());
            }
        }
        End::Refused(why) => {
            sup.release_stdin(&name, pid, Some(pipe)).await;
            out.fail(ErrorCode::BadRequest, why);
        }
        End::Closed => {
            sup.release_stdin(&name, pid, None).await;
            out.fail(
                ErrorCode::Closed,
                format!("worker \"{name}\" closed its stdin"),
            );
        }
        End::Failed(e) => {
            sup.release_stdin(&name, pid, None).await;
            out.fail(
                ErrorCode::Internal,
                format!("cannot write to worker \"{name}\"'s stdin: {e}"),
            );
        }
        End::RunOver => {
            drop(pipe);
            out.fail(ErrorCode::InvalidState, run_over(&name, &info.borrow()));
        }
        End::Removed => {
            out.fail(
                ErrorCode::NotFound,
                format!("worker \"{name}\" was removed"),
            );
        }
        End::Shutdown => {}
    }
}

/// Writes the stream's chunks until its input ends or something else ends it.
async fn pump(
    attached: &mut Attachment,
    rx: &mut mpsc::Receiver<StreamMsg>,
    out: &StreamOut,
    shutdown: &CancellationToken,
) -> End {
    let Attachment { pipe, pid, info } = attached;
    let pid = *pid;
    if !same_run(&info.borrow_and_update(), pid) {
        return End::RunOver;
    }
    let mut queue = Queue::new(WINDOW, MAX_CHUNK);
    loop {
        if queue.done() {
            return End::Input;
        }
        // A cheap handle on the bytes to write next, so the inbox can fill the queue while a
        // write waits.
        let pending = queue.front();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(StreamMsg::Values { values, .. }) => {
                    if let Err(why) = queue.push(values) {
                        return End::Refused(why);
                    }
                }
                Some(StreamMsg::Signal { op: SignalOp::Eof, a, .. }) => {
                    if let Err(why) = queue.eof(a) {
                        return End::Refused(why);
                    }
                }
                Some(StreamMsg::Gone { cancelled, .. }) => return End::Gone { cancelled },
                None => return End::Gone { cancelled: false },
                // Other signals mean nothing on a stdin stream; it is opened once.
                Some(StreamMsg::Signal { .. } | StreamMsg::OpenSend { .. } | StreamMsg::OpenRecv { .. }) => {}
            },
            written = pipe.write(pending.as_deref().unwrap_or_default()), if pending.is_some() => {
                match written {
                    Ok(n) => {
                        if let Some(seq) = queue.wrote(n) {
                            out.frames(vec![out.signal(SignalOp::Accepted, seq, 1)]);
                        }
                    }
                    // SIGPIPE is ignored in the daemon (Rust's runtime does so before `main`),
                    // so a reader that is gone is this error, not the daemon's death.
                    // A reader that is gone: the worker closed its stdin, unless its process
                    // is being stopped or has ended (a stop or restart, seen here first).
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                        let info = info.borrow();
                        let running = info.pid == Some(pid) && info.state == WorkerState::Running;
                        return if running { End::Closed } else { End::RunOver };
                    }
                    Err(e) => return End::Failed(e),
                }
            }
            changed = info.changed() => match changed {
                Err(_) => return End::Removed,
                Ok(()) => {
                    if !same_run(&info.borrow_and_update(), pid) {
                        return End::RunOver;
                    }
                }
            },
            () = shutdown.cancelled() => return End::Shutdown,
        }
    }
}

/// Whether `info` still describes run `pid`, its process alive (a stopping one still reads).
fn same_run(info: &WorkerInfo, pid: u32) -> bool {
    info.pid == Some(pid) && matches!(info.state, WorkerState::Running | WorkerState::Stopping)
}

/// Why an attached stream ended with its run.
fn run_over(name: &str, info: &WorkerInfo) -> String {
    let exit = info
        .last_exit
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    match info.state {
        WorkerState::Backoff => {
            format!("worker \"{name}\" exited{exit} and restarts with a new stdin: attach again")
        }
        WorkerState::Stopping => {
            format!("worker \"{name}\" was stopped while its stdin was attached")
        }
        WorkerState::Starting | WorkerState::Running => {
            format!("worker \"{name}\" restarted, with a new stdin: attach again")
        }
        state => format!("worker \"{name}\" {state}{exit} while its stdin was attached"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::{ExitStatus, SpawnSpec};

    fn info(state: WorkerState, pid: Option<u32>) -> WorkerInfo {
        WorkerInfo {
            name: "w".into(),
            node: "n".into(),
            state,
            pid,
            restarts: 0,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: Some(ExitStatus::Code { code: 0 }),
            reason: None,
            next_start_at_ms: None,
            spec: SpawnSpec::default(),
            usage: None,
            escaped: Vec::new(),
        }
    }

    #[test]
    fn a_run_is_over_when_its_process_is_not_the_workers_live_one() {
        assert!(same_run(&info(WorkerState::Running, Some(7)), 7));
        assert!(same_run(&info(WorkerState::Stopping, Some(7)), 7));
        assert!(
            !same_run(&info(WorkerState::Running, Some(8)), 7),
            "restarted"
        );
        // A restart keeps the old pid until the new process runs.
        assert!(!same_run(&info(WorkerState::Starting, Some(7)), 7));
        assert!(!same_run(&info(WorkerState::Exited, None), 7));
    }

    #[test]
    fn the_end_of_a_run_says_what_became_of_the_worker() {
        assert_eq!(
            run_over("w", &info(WorkerState::Exited, None)),
            "worker \"w\" exited (code 0) while its stdin was attached"
        );
        assert_eq!(
            run_over("w", &info(WorkerState::Backoff, None)),
            "worker \"w\" exited (code 0) and restarts with a new stdin: attach again"
        );
        assert!(run_over("w", &info(WorkerState::Running, Some(9))).contains("restarted"));
    }
}
