//! Error codes: how failures cross the wire (a code plus a one-line message, never a Debug dump).

use serde::{Deserialize, Serialize};

/// Machine-readable class of a failed request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// The bytes could not be read as frames; the connection is closed.
    BadFrame,
    /// A control message that is not valid JSON of a known shape.
    BadRequest,
    /// The first message was not a hello.
    HandshakeRequired,
    /// No such worker (or channel).
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// An argument is invalid (bad name, unknown signal, ...).
    InvalidArgument,
    /// The process could not be started (missing binary, bad cwd, ...).
    SpawnFailed,
    /// The request does not fit the worker's state (e.g. `rm` of a running worker).
    InvalidState,
    /// The request was cancelled by the client.
    Cancelled,
    /// The daemon is shutting down.
    ShuttingDown,
    /// Too many outstanding requests on this connection.
    TooManyRequests,
    /// A bug or an I/O failure inside the daemon.
    Internal,
    /// The channel is closed (or a worker's stdin is).
    Closed,
    /// A payload is larger than the channel accepts.
    TooLarge,
    /// The node that owns the channel is gone; what was pending on it failed.
    OwnerLost,
    /// The node a request was for is dead, left, or cannot be reached.
    Unreachable,
    /// A configured limit (connections, channels, workers, ...) is reached.
    LimitReached,
    /// The connection lacks the right to ask (a Unix socket peer of another uid).
    PermissionDenied,
    /// A replicated channel has no leader that can serve now (an election is under way, or no
    /// majority of its replicas is reachable): try again.
    Unavailable,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name (`not_found`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VersionMismatch => "version_mismatch",
            Self::BadFrame => "bad_frame",
            Self::BadRequest => "bad_request",
            Self::HandshakeRequired => "handshake_required",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::InvalidArgument => "invalid_argument",
            Self::SpawnFailed => "spawn_failed",
            Self::InvalidState => "invalid_state",
            Self::Cancelled => "cancelled",
            Self::ShuttingDown => "shutting_down",
            Self::TooManyRequests => "too_many_requests",
            Self::Internal => "internal",
            Self::Closed => "closed",
            Self::TooLarge => "too_large",
            Self::OwnerLost => "owner_lost",
            Self::Unreachable => "unreachable",
            Self::LimitReached => "limit_reached",
            Self::Unavailable => "unavailable",
            Self::PermissionDenied => "permission_denied",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
