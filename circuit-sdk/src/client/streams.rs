//! The low-level stream API, for relays (a daemon passing a channel stream on to the channel's
//! owner) and for `crate::chan`: open a stream with a [`StreamHandler`] that gets its traffic,
//! write its frames, end it.

use std::sync::Arc;

pub use crate::connection::StreamHandler;

use super::Client;
use crate::connection::{Outgoing, Pull, Route};
use crate::error::Error;
use crate::proto::{Frame, Request};

impl Client {
    /// Opens a stream request: its messages and frames go to `handler` until it ends.
    /// Low-level, for relays; workers use [`crate::chan`].
    pub fn open_stream(
        &self,
        request: Request,
        handler: Arc<dyn StreamHandler>,
    ) -> Result<u64, Error> {
        let id = self.next_id();
        self.inner
            .conn
            .request(id, request, Route::Stream(handler))?;
        Ok(id)
    }

    /// Ends a stream from this side: its route is dropped and the daemon told.
    pub fn close_stream(&self, id: u64) {
        self.inner.conn.forget(id);
        self.inner.conn.cancel(id);
    }

    /// Asks the daemon to end a stream, keeping its route so the terminal reply is seen.
    pub fn cancel_stream(&self, id: u64) {
        self.inner.conn.cancel(id);
    }

    /// Queues a frame; false when the connection is gone.
    pub fn send_frame(&self, frame: Frame) -> bool {
        self.inner.conn.send(Outgoing::Frame(frame))
    }

    /// Asks the writer to call `pull` with `token` when it gets to it; false when the
    /// connection is gone.
    pub(crate) fn schedule(&self, pull: Arc<dyn Pull>, token: u64) -> bool {
        self.inner.conn.send(Outgoing::Pull(pull, token))
    }
}
