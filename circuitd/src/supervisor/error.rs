//! Errors of the supervisor, each with the wire code a client sees.

use circuit_sdk::proto::ErrorCode;

/// Why a supervisor request failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No worker by that name.
    #[error("no worker named \"{0}\"")]
    NotFound(String),
    /// The name is taken.
    #[error("a worker named \"{0}\" already exists")]
    AlreadyExists(String),
    /// A spec field or argument is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The process could not be started.
    #[error("{0}")]
    SpawnFailed(String),
    /// The request does not fit the worker's state.
    #[error("{0}")]
    InvalidState(String),
    /// A worker's stdin is closed.
    #[error("{0}")]
    Closed(String),
    /// The daemon is shutting down.
    #[error("circuitd is shutting down")]
    ShuttingDown,
    /// The worker table is full (`max_workers`, the number of entries it holds).
    #[error(
        "this node holds {0} workers, the limit (--max-workers): remove exited ones with `circuit rm`"
    )]
    LimitReached(usize),
    /// The job table or a log could not be written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl SupervisorError {
    /// The code sent to clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::SpawnFailed(_) => ErrorCode::SpawnFailed,
            Self::InvalidState(_) => ErrorCode::InvalidState,
            Self::Closed(_) => ErrorCode::Closed,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::Io(_) => ErrorCode::Internal,
        }
    }

    /// True when the worker does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}
