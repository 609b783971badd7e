//! `ApiError`, the one error type of the api: why a request or a connection was refused or
//! failed. It crosses the wire as its code and its message, one line for a person.

use circuit_sdk::proto::{ErrorCode, ServerMessage};

use crate::broker::BrokerError;
use crate::peer::PeerError;
use crate::supervisor::SupervisorError;

/// Why a request (or a whole connection) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A worker request failed in the supervisor.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// A channel request failed in the broker.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Another node could not be reached, or answered with an error.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// An argument is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request does not fit this daemon's state (no mesh, no key, …).
    #[error("{0}")]
    InvalidState(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A node could not be reached (or joined).
    #[error("{0}")]
    Unreachable(String),
    /// A bug or an I/O failure inside the daemon.
    #[error("{0}")]
    Internal(String),
    /// The client cancelled the request.
    #[error("request cancelled")]
    Cancelled,
    /// The client went away while the request still had items to send.
    #[error("client went away")]
    ClientGone,
    /// The daemon is stopping.
    #[error("circuitd is shutting down")]
    ShuttingDown,
    /// Copies of a placed worker failed to start on some node: the first failure, where, and
    /// what did start.
    #[error("{started}on {node}: {source}{}", and_more(*.more))]
    Placement {
        /// `started K of N (…); ` when some copies started, else empty.
        started: String,
        /// The node of the first failure.
        node: String,
        /// The first failure.
        source: Box<ApiError>,
        /// How many other copies failed.
        more: usize,
    },
    /// A connection's first message was not a valid hello.
    #[error("{0}")]
    HandshakeRequired(String),
    /// The client speaks another protocol version.
    #[error("{0}")]
    VersionMismatch(String),
    /// Bytes that are not frames: the connection closes.
    #[error("{0}")]
    BadFrame(String),
    /// A connection that may not use this daemon.
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit of this daemon (connections, idle time) is reached.
    #[error("{0}")]
    LimitReached(String),
    /// A message the connection could not accept (not JSON of a known shape, an id in use, …).
    #[error("{0}")]
    BadRequest(String),
    /// Too many requests outstanding on one connection.
    #[error("{0}")]
    TooManyRequests(String),
}

fn and_more(more: usize) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more failed)")
    }
}

impl ApiError {
    /// The code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Supervisor(e) => e.code(),
            Self::Broker(e) => e.code(),
            Self::Peer(e) => e.code(),
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::InvalidState(_) => ErrorCode::InvalidState,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Unreachable(_) => ErrorCode::Unreachable,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Cancelled | Self::ClientGone => ErrorCode::Cancelled,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
            Self::Placement { source, .. } => source.code(),
            Self::HandshakeRequired(_) => ErrorCode::HandshakeRequired,
            Self::VersionMismatch(_) => ErrorCode::VersionMismatch,
            Self::BadFrame(_) => ErrorCode::BadFrame,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::TooManyRequests(_) => ErrorCode::TooManyRequests,
        }
    }

    /// The terminal reply of request `id` (`None`: of the connection) failing this way.
    pub fn reply(&self, id: Option<u64>) -> ServerMessage {
        ServerMessage::Error {
            id,
            code: self.code(),
            message: self.to_string(),
        }
    }
}
