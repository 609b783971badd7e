//! The client API: [`Client`], one connection to a daemon shared by many concurrent requests
//! and channel streams; a request's replies as a [`ReplyStream`] of [`Next`] parts. How to
//! reach a daemon ([`Target`], [`ConnectOptions`], the `connect*` calls) is in `connect.rs`;
//! the low-level stream API relays use ([`StreamHandler`], `open_stream`, …) in `streams.rs`;
//! writing to a worker's stdin ([`StdinWriter`]) in `stdin.rs`; the connection itself (hello,
//! reader, writer, keepalive) in `crate::connection`.

mod connect;
mod stdin;
mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

pub use connect::{ConnectOptions, Target, HANDSHAKE_TIMEOUT, KEEPALIVE_DEFAULT, KEEPALIVE_ENV};
pub use stdin::StdinWriter;
pub use streams::StreamHandler;

use crate::connection::{Connection, Hello, Route};
use crate::error::Error;
use crate::proto::{Item, Reply, Request, ServerMessage};

/// A connection to a circuitd. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    /// The next request id: ids count up from 1.
    next_id: AtomicU64,
    hello: Hello,
    /// How this client reached its daemon, to reconnect the same way (`None` over a
    /// transport it was given).
    target: Option<Target>,
    /// What it connected with, to reconnect with the same.
    options: ConnectOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.inner.hello.node)
            .finish_non_exhaustive()
    }
}

/// What [`ReplyStream::next`] yields.
#[derive(Debug)]
pub enum Next {
    /// A streamed part; more follow.
    Item(Item),
    /// The terminal result; the stream is over.
    End(Reply),
}

/// The replies to one streaming request. Dropping it before the end cancels the request.
#[derive(Debug)]
pub struct ReplyStream {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<ServerMessage, Error>>,
    client: Client,
    finished: bool,
}

impl Client {
    /// A client over a started connection.
    fn new(
        conn: Connection,
        hello: Hello,
        target: Option<Target>,
        options: ConnectOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                next_id: AtomicU64::new(1),
                hello,
                target,
                options,
            }),
        }
    }

    /// A fresh request id.
    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The daemon's instance: random per daemon start, so a restart can be told apart.
    pub fn instance(&self) -> u64 {
        self.inner.hello.instance
    }

    /// True once the connection is gone: every request on it fails from now on.
    pub fn is_closed(&self) -> bool {
        self.inner.conn.is_closed()
    }

    /// How this client reached its daemon, if it made the connection itself.
    pub fn target(&self) -> Option<&Target> {
        self.inner.target.as_ref()
    }

    /// The name of the node this client is connected to.
    pub fn node(&self) -> &str {
        &self.inner.hello.node
    }

    /// The version of the daemon this client is connected to.
    pub fn daemon_version(&self) -> &str {
        &self.inner.hello.daemon_version
    }

    /// Sends a request and waits for its terminal reply, skipping any streamed items.
    pub async fn call(&self, request: Request) -> Result<Reply, Error> {
        let mut stream = self.stream(request).await?;
        loop {
            if let Next::End(reply) = stream.next().await? {
                return Ok(reply);
            }
        }
    }

    /// Sends a request and returns its stream of replies.
    pub async fn stream(&self, request: Request) -> Result<ReplyStream, Error> {
        let id = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.conn.request(id, request, Route::Reply(tx))?;
        Ok(ReplyStream {
            id,
            rx,
            client: self.clone(),
            finished: false,
        })
    }
}

impl ReplyStream {
    /// The next streamed item, or the terminal reply. After the terminal reply, `Disconnected`.
    pub async fn next(&mut self) -> Result<Next, Error> {
        if self.finished {
            return Err(Error::Disconnected);
        }
        let msg = match self.rx.recv().await {
            Some(msg) => msg,
            None => Err(Error::Disconnected),
        };
        match msg {
            Ok(ServerMessage::Item { item, .. }) => Ok(Next::Item(item)),
            Ok(ServerMessage::Ok { reply, .. }) => {
                self.finished = true;
                Ok(Next::End(reply))
            }
            Ok(ServerMessage::Error { code, message, .. }) => {
                self.finished = true;
                Err(Error::Remote { code, message })
            }
            Ok(other) => {
                self.finished = true;
                Err(Error::Protocol(format!("unexpected message {other:?}")))
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        let conn = &self.client.inner.conn;
        conn.forget(self.id);
        if !self.finished {
            conn.cancel(self.id);
        }
    }
}
