//! [`ChanError`]: everything a channel operation can fail with.

use crate::proto::ErrorCode;

/// Why a channel operation failed. Cloneable, because one failure (a lost owner, a closed
/// channel) is reported to every operation it ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChanError {
    /// The channel is closed: a send failed, or a receive found it closed and drained.
    #[error("channel is closed")]
    Closed,
    /// No channel of that name (or it was removed while in use).
    #[error("{0}")]
    NotFound(String),
    /// The channel's owner went away (the daemon restarted, or it could not be reached again
    /// in time); what was pending on the channel failed.
    #[error("lost the channel's owner: {0}")]
    OwnerLost(String),
    /// A replicated channel had no leader able to serve within `reconnect_for` (no majority
    /// of its replicas reachable): nothing was lost, and it serves again once a majority is
    /// back — open it again, or retry.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// A `*_timeout` operation ran out of time; nothing changed.
    #[error("timed out")]
    Timeout,
    /// The value is larger than the channel accepts.
    #[error("value of {size} bytes exceeds the channel's limit of {max} bytes")]
    TooLarge {
        /// The encoded value's size.
        size: u64,
        /// The channel's limit.
        max: u64,
    },
    /// `try_send` found no room (or, at capacity 0, no waiting receiver).
    #[error("channel is full")]
    Full,
    /// `try_recv` found no value ready.
    #[error("channel is empty")]
    Empty,
    /// The channel name is not valid.
    #[error("{0}")]
    InvalidName(String),
    /// A channel of that name exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// A received value could not be decoded (it has been taken off the channel).
    #[error("cannot decode value: {0}")]
    Decode(String),
    /// No daemon could be reached.
    #[error("{0}")]
    Connect(String),
    /// The daemon refused the request for another reason.
    #[error("{message}")]
    Daemon {
        /// The daemon's error code.
        code: ErrorCode,
        /// Its one-line explanation.
        message: String,
    },
    /// Something on the wire did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ChanError {
    /// True for [`ChanError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// True for [`ChanError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// True for [`ChanError::OwnerLost`].
    pub fn is_owner_lost(&self) -> bool {
        matches!(self, Self::OwnerLost(_))
    }

    /// True for [`ChanError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// True for [`ChanError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// True for [`ChanError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }

    /// True for [`ChanError::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// The error for a daemon's refusal.
    pub(crate) fn from_remote(code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::NotFound => Self::NotFound(message),
            ErrorCode::AlreadyExists => Self::AlreadyExists(message),
            ErrorCode::Closed => Self::Closed,
            ErrorCode::OwnerLost => Self::OwnerLost(message),
            ErrorCode::Unavailable => Self::Unavailable(message),
            ErrorCode::InvalidArgument if message.starts_with("channel name") => {
                Self::InvalidName(message)
            }
            code => Self::Daemon { code, message },
        }
    }
}

impl From<crate::Error> for ChanError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Remote { code, message } => Self::from_remote(code, message),
            crate::Error::Connect { .. } => Self::Connect(e.to_string()),
            crate::Error::Disconnected => Self::OwnerLost("connection to circuitd lost".into()),
            other => Self::Protocol(other.to_string()),
        }
    }
}
