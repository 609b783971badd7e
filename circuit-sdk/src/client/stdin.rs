//! Writing to a worker's stdin (`worker_stdin`): [`Client::worker_stdin`] attaches and
//! returns a [`StdinWriter`], which sends the input in chunks, never more than the daemon's
//! window ahead of what is written to the worker's pipe, and ends it with
//! [`StdinWriter::finish`]. Dropping the writer before then detaches without closing the
//! worker's stdin.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::{Client, StreamHandler};
use crate::error::Error;
use crate::proto::{Frame, Item, Request, ServerMessage, SignalOp, StdinOpened};

/// An attached worker's stdin. One at a time per worker, whoever the writer is.
#[derive(Debug)]
pub struct StdinWriter {
    client: Client,
    /// The stream's request id.
    id: u64,
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
    opened: StdinOpened,
    /// Chunks sent so far (the seq of the last one).
    sent: u64,
    /// The stream has ended (its end was seen or taken): nothing to close on drop.
    over: bool,
}

/// What the stream's handler shares with the writer.
#[derive(Debug)]
struct Shared {
    progress: watch::Sender<Progress>,
    /// How the stream ended, once it has: `Ok` for `done`; taken by the writer.
    end: Mutex<Option<Result<(), Error>>>,
}

/// Where the stream stands, as the daemon said.
#[derive(Debug, Default)]
struct Progress {
    opened: Option<StdinOpened>,
    /// The chunks written to the pipe: seqs 1 to this.
    written: u64,
    /// The stream has ended (see `Shared::end`).
    ended: bool,
}

impl Shared {
    fn ended(&self, how: Result<(), Error>) {
        self.end.lock().expect("end lock").get_or_insert(how);
        self.progress.send_modify(|p| p.ended = true);
    }
}

impl StreamHandler for Shared {
    fn on_message(&self, msg: ServerMessage) {
        match msg {
            ServerMessage::Item {
                item: Item::StdinOpened(opened),
                ..
            } => self.progress.send_modify(|p| p.opened = Some(opened)),
            ServerMessage::Item { .. } => {}
            ServerMessage::Ok { .. } => self.ended(Ok(())),
            ServerMessage::Error { code, message, .. } => {
                self.ended(Err(Error::Remote { code, message }));
            }
            ServerMessage::Hello { .. } => {}
        }
    }

    fn on_frames(&self, frames: Vec<Frame>) {
        let written = frames
            .iter()
            .filter_map(|frame| match frame {
                Frame::Signal {
                    op: SignalOp::Accepted,
                    a,
                    b,
                    ..
                } => Some((a + b).saturating_sub(1)),
                _ => None,
            })
            .max();
        if let Some(written) = written {
            self.progress
                .send_modify(|p| p.written = p.written.max(written));
        }
    }

    fn on_lost(&self, error: Error) {
        self.ended(Err(error));
    }
}

impl Client {
    /// Attaches to the stdin of worker `name` (spawned with `stdin`), on `node` or wherever it
    /// runs; `keep_open` leaves the worker's stdin open when the input ends. Fails as the
    /// daemon refuses: no such worker, not spawned with `stdin`, not running, attached
    /// elsewhere, closed.
    pub async fn worker_stdin(
        &self,
        name: &str,
        node: Option<&str>,
        keep_open: bool,
    ) -> Result<StdinWriter, Error> {
        let (progress, mut rx) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            progress,
            end: Mutex::new(None),
        });
        let request = Request::WorkerStdin {
            name: name.to_string(),
            node: node.map(str::to_string),
            keep_open,
        };
        let id = self.open_stream(request, shared.clone())?;
        let mut writer = StdinWriter {
            client: self.clone(),
            id,
            shared,
            progress: rx.clone(),
            opened: StdinOpened {
                worker: name.to_string(),
                node: String::new(),
                pid: 0,
                window: 0,
                max_chunk: 0,
            },
            sent: 0,
            over: false,
        };
        let opened = rx
            .wait_for(|p| p.opened.is_some() || p.ended)
            .await
            .map_err(|_| Error::Disconnected)?
            .opened
            .clone();
        match opened {
            Some(opened) if opened.window > 0 && opened.max_chunk > 0 => {
                writer.opened = opened;
                Ok(writer)
            }
            Some(_) => Err(Error::Protocol(
                "the daemon opened a stdin stream with no room".into(),
            )),
            None => Err(writer.ended_early()),
        }
    }
}

impl StdinWriter {
    /// What the daemon said when it attached: the worker's node and pid, the window.
    pub fn opened(&self) -> &StdinOpened {
        &self.opened
    }

    /// Sends `bytes` to the worker's stdin, in chunks of at most `max_chunk`; waits while the
    /// window is full (the worker does not read). Fails once the stream has ended: the worker
    /// exited or closed its stdin, the connection broke.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let max = usize::try_from(self.opened.max_chunk).unwrap_or(usize::MAX);
        for chunk in bytes.chunks(max) {
            let window = u64::from(self.opened.window);
            let sent = self.sent;
            let ended = self
                .progress
                .wait_for(|p| p.ended || sent.saturating_sub(p.written) < window)
                .await
                .map_err(|_| Error::Disconnected)?
                .ended;
            if ended {
                return Err(self.ended_early());
            }
            self.sent += 1;
            let frame = Frame::Data {
                id: self.id,
                seq: self.sent,
                payload: Bytes::copy_from_slice(chunk),
            };
            if !self.client.send_frame(frame) {
                return Err(Error::Disconnected);
            }
        }
        Ok(())
    }

    /// Ends the input: waits until all of it is written to the worker's stdin and, unless
    /// attached with `keep_open`, the worker's stdin is closed.
    pub async fn finish(mut self) -> Result<(), Error> {
        let eof = Frame::Signal {
            id: self.id,
            op: SignalOp::Eof,
            a: self.sent,
            b: 0,
        };
        if !self.client.send_frame(eof) {
            return Err(Error::Disconnected);
        }
        self.progress
            .wait_for(|p| p.ended)
            .await
            .map_err(|_| Error::Disconnected)?;
        self.take_end()
    }

    /// Resolves once the stream has ended on the daemon's side, with the error that ended it:
    /// a worker that exits or closes its stdin ends it while the writer waits for input. The
    /// writer is of no more use then.
    pub async fn ended(&mut self) -> Error {
        if self.progress.wait_for(|p| p.ended).await.is_err() {
            return Error::Disconnected;
        }
        self.ended_early()
    }

    /// How the stream ended; `Ok` for `done`.
    fn take_end(&mut self) -> Result<(), Error> {
        self.over = true;
        let end = self.shared.end.lock().expect("end lock").take();
        end.unwrap_or(Err(Error::Disconnected))
    }

    /// How a stream that ended before its input did ended, as an error.
    fn ended_early(&mut self) -> Error {
        match self.take_end() {
            Ok(()) => Error::Protocol("the stdin stream ended before its input did".into()),
            Err(e) => e,
        }
    }
}

impl Drop for StdinWriter {
    fn drop(&mut self) {
        if !self.over {
            self.client.close_stream(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    fn shared() -> (Arc<Shared>, watch::Receiver<Progress>) {
        let (progress, rx) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            progress,
            end: Mutex::new(None),
        });
        (shared, rx)
    }

    fn accepted(a: u64, b: u64) -> Frame {
        Frame::Signal {
            id: 1,
            op: SignalOp::Accepted,
            a,
            b,
        }
    }

    #[test]
    fn accepted_chunks_advance_what_is_written_and_never_go_back() {
        let (shared, rx) = shared();
        shared.on_frames(vec![accepted(1, 1), accepted(2, 3)]);
        assert_eq!(rx.borrow().written, 4);
        // A late, older answer changes nothing.
        shared.on_frames(vec![accepted(1, 1)]);
        assert_eq!(rx.borrow().written, 4);
    }

    #[test]
    fn the_first_end_is_the_one_kept() {
        let (shared, rx) = shared();
        shared.on_message(ServerMessage::Error {
            id: Some(1),
            code: ErrorCode::Closed,
            message: "worker \"w\" closed its stdin".into(),
        });
        shared.on_lost(Error::Disconnected);
        assert!(rx.borrow().ended);
        let end = shared.end.lock().expect("end lock").take();
        assert!(
            matches!(
                end,
                Some(Err(Error::Remote {
                    code: ErrorCode::Closed,
                    ..
                }))
            ),
            "{end:?}"
        );
    }
}
