//! Why a channel operation failed, and its wire code.

use circuit_sdk::proto::ErrorCode;

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error("{0}")]
    InvalidName(String),
    #[error("no channel named \"{0}\" — see `circuit chan ls`")]
    NotFound(String),
    #[error("channel \"{name}\" already exists (capacity {capacity})")]
    AlreadyExists { name: String, capacity: u64 },
    #[error("channel \"{0}\" is already closed")]
    AlreadyClosed(String),
    #[error(
        "this node holds {0} channels, the limit (--max-channels): remove unused ones with `circuit chan rm`"
    )]
    LimitReached(usize),
    #[error("{0}")]
    Store(String),
    #[error("circuitd is shutting down")]
    ShuttingDown,
    /// A replicated channel has no leader that can serve now.
    #[error("{0}")]
    Unavailable(String),
}

impl BrokerError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::AlreadyClosed(_) => ErrorCode::InvalidState,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::Store(_) => ErrorCode::Internal,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}
