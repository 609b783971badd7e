//! The circuit SDK: the wire protocol every daemon client speaks, and the client library
//! that workers and the `circuit` CLI use to talk to their local `circuitd`.
//!
//! # Layout
//! - [`proto`]: frames, control messages, shared types, error codes (see `docs/PROTOCOL.md`).
//! - [`client`]: the client API: [`Client`] (requests, [`ReplyStream`]), how to reach a daemon
//!   ([`Target`], [`ConnectOptions`]: key, handshake timeout, keepalive), and the low-level
//!   stream API relays use ([`StreamHandler`], `Client::open_stream`, …), and
//!   [`StdinWriter`], a worker's stdin (`Client::worker_stdin`).
//! - `connection` (private): one connection: the hello, the reader that routes what the daemon
//!   sends, the writer, the keepalive; and the contract with the streams it carries.
//! - [`chan`]: named channels: [`chan::Chan`], [`chan::Sender`], [`chan::Receiver`], codecs.
//!   Each half is a sans-IO state machine (`send_state`, `recv_state`, unit-tested per rule
//!   of `docs/CHANNELS.md`) behind a thin async wrapper; one stream shell (`stream`) opens,
//!   reconnects and fails the streams of both.
//! - [`secure`]: cluster keys and key files, and the Noise handshake and encrypted records of
//!   TCP connections.
//! - [`paths`]: default socket path and the `CIRCUIT_*` environment variables.
//! - [`error`]: [`Error`], the SDK's one error type.
//! - [`linger`]: a connection's last write as the runtime goes away (straight to the socket,
//!   waiting for room until a deadline).
//!
//! Dependencies point one way: `chan → client → connection → proto`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), circuit_sdk::Error> {
//! use circuit_sdk::{Client, proto::{Reply, Request}};
//! let client = Client::connect_default().await?;
//! if let Reply::Status(status) = client.call(Request::Status).await? {
//!     println!("{} has run for {} ms", status.name, status.uptime_ms);
//! }
//! # Ok(()) }
//! ```

pub mod chan;
pub mod client;
mod connection;
pub mod error;
pub mod linger;
pub mod paths;
pub mod proto;
pub mod secure;

pub use client::{Client, ConnectOptions, Next, ReplyStream, StdinWriter, StreamHandler, Target};
pub use error::Error;
