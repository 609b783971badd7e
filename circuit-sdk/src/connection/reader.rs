//! The reader task: reads frames and routes them, in one path. A control message goes to its
//! request by id; the data and signal frames of one stream already read go to the stream's
//! handler as one batch. When the connection ends, every route is told why.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::FramedRead;

use super::{decode_message, Route, Routes};
use crate::error::Error;
use crate::proto::{next_buffered, Frame, FrameCodec, FrameError, ServerMessage};

/// Most frames of one stream handed to it at once.
const READ_BATCH: usize = 256;

/// Reads until the connection ends, then fails every route with the reason.
pub(super) async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FramedRead<R, FrameCodec>,
    routes: Arc<Mutex<Routes>>,
) {
    let mut router = Router {
        routes: &routes,
        notice: None,
    };
    // A frame read while collecting a batch that does not belong to it: handled next.
    let mut ahead: Option<Option<Result<Frame, FrameError>>> = None;
    let failure = loop {
        let read = match ahead.take() {
            Some(read) => read,
            None => reader.next().await,
        };
        match read {
            None => break router.notice.take().unwrap_or(Error::Disconnected),
            Some(Err(e)) => break Error::Frame(e),
            Some(Ok(Frame::Control(body))) => {
                let ended = match decode_message(&body) {
                    Err(e) => Some(e),
                    Ok(msg) => router.message(msg),
                };
                if let Some(error) = ended {
                    break error;
                }
            }
            Some(Ok(frame)) => {
                // Hand over every frame of this stream already read (buffered), in one batch.
                let id = stream_of(&frame);
                let mut batch = vec![frame];
                while batch.len() < READ_BATCH {
                    match next_buffered(&mut reader) {
                        Some(Ok(next)) if stream_of(&next) == id => batch.push(next),
                        Some(next) => {
                            ahead = Some(Some(next));
                            break;
                        }
                        None => break,
                    }
                }
                if let Some(id) = id {
                    router.frames(id, batch);
                }
            }
        }
    };
    router.fail_all(&failure);
}

/// Delivers what the reader read to the routes.
struct Router<'a> {
    routes: &'a Mutex<Routes>,
    /// A connection-level error (no id): the likely reason, should the connection then close.
    notice: Option<Error>,
}

impl Router<'_> {
    /// Delivers one message to its request. Returns an error that ends the connection, if any.
    /// A message for an id without a route (a request already forgotten, a keepalive ping) is
    /// dropped.
    fn message(&mut self, msg: ServerMessage) -> Option<Error> {
        let (id, terminal) = match &msg {
            ServerMessage::Item { id, .. } => (*id, false),
            ServerMessage::Ok { id, .. } => (*id, true),
            ServerMessage::Error { id: Some(id), .. } => (*id, true),
            ServerMessage::Error {
                id: None,
                code,
                message,
            } => {
                tracing::debug!(%code, %message, "connection-level error from circuitd");
                self.notice = Some(Error::Remote {
                    code: *code,
                    message: message.clone(),
                });
                return None;
            }
            ServerMessage::Hello { .. } => return Some(Error::Protocol("second hello".into())),
        };
        let mut guard = self.routes.lock().expect("routes lock");
        let map = guard.as_mut()?;
        let route = if terminal {
            map.remove(&id)
        } else {
            match map.get(&id) {
                Some(Route::Reply(tx)) => Some(Route::Reply(tx.clone())),
                Some(Route::Stream(h)) => Some(Route::Stream(h.clone())),
                None => None,
            }
        };
        drop(guard);
        match route {
            Some(Route::Reply(tx)) => {
                let _ = tx.send(Ok(msg));
            }
            Some(Route::Stream(handler)) => handler.on_message(msg),
            None => {}
        }
        None
    }

    /// Delivers data and signal frames of stream `id`; frames of streams already ended are
    /// dropped.
    fn frames(&self, id: u64, frames: Vec<Frame>) {
        let handler = match self.routes.lock().expect("routes lock").as_ref() {
            Some(map) => match map.get(&id) {
                Some(Route::Stream(h)) => h.clone(),
                _ => return,
            },
            None => return,
        };
        handler.on_frames(frames);
    }

    /// The connection ended: every route is told `failure`, and no route is taken from now on.
    fn fail_all(&self, failure: &Error) {
        let taken = self.routes.lock().expect("routes lock").take();
        for (_, route) in taken.into_iter().flatten() {
            match route {
                Route::Reply(tx) => {
                    let _ = tx.send(Err(clone_error(failure)));
                }
                Route::Stream(handler) => handler.on_lost(clone_error(failure)),
            }
        }
    }
}

/// The stream a data or signal frame belongs to.
fn stream_of(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::Data { id, .. } | Frame::Signal { id, .. } => Some(*id),
        Frame::Control(_) => None,
    }
}

/// The same failure again, for each route it ends.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Remote { code, message } => Error::Remote {
            code: *code,
            message: message.clone(),
        },
        Error::Disconnected => Error::Disconnected,
        other => Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::proto::Reply;

    #[test]
    fn the_reply_to_a_ping_is_dropped_without_a_route() {
        let routes = Mutex::new(Some(HashMap::new()));
        let mut router = Router {
            routes: &routes,
            notice: None,
        };
        let reply = ServerMessage::Ok {
            id: u64::MAX,
            reply: Reply::Done,
        };
        assert!(router.message(reply).is_none());
        assert!(router.notice.is_none());
        assert!(routes
            .lock()
            .expect("routes")
            .as_ref()
            .is_some_and(HashMap::is_empty));
    }
}
