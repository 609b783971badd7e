//! The SDK's one error type.

use crate::proto::{ErrorCode, FrameError};

/// Everything that can go wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No daemon could be reached.
    #[error("cannot connect to circuitd at {target}: {reason}")]
    Connect {
        /// The socket path or address tried.
        target: String,
        /// Why (already part of the message, so not also a `source`).
        reason: std::io::Error,
    },
    /// The TCP handshake failed: no key in common, or the daemon refused the connection.
    #[error("{error} [circuitd at {target}]")]
    Handshake {
        /// The address tried.
        target: String,
        /// Why.
        error: crate::secure::HandshakeError,
    },
    /// The peer took the connection but did not complete circuit's handshake in time, or
    /// answered with another protocol: it is not a circuitd (or not its API port), or it hangs.
    #[error("{target} did not answer the circuit handshake: {reason}")]
    NoHandshake {
        /// The socket path or address tried.
        target: String,
        /// What happened instead (no answer within the timeout, other bytes).
        reason: String,
    },
    /// The cluster key could not be read.
    #[error("{0}")]
    Key(String),
    /// The daemon refused the request.
    #[error("{message}")]
    Remote {
        /// Machine-readable class.
        code: ErrorCode,
        /// The daemon's one-line explanation.
        message: String,
    },
    /// The connection ended before the reply did.
    #[error("connection to circuitd lost")]
    Disconnected,
    /// The daemon sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The daemon's error code, if the daemon refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the named worker or channel does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    /// True when the TCP handshake failed for want of a common cluster key.
    pub fn is_auth(&self) -> bool {
        use crate::secure::HandshakeError as H;
        matches!(
            self,
            Self::Handshake {
                error: H::AuthFailed | H::KeyRequired,
                ..
            }
        )
    }

    /// True when no daemon answered at the address tried.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}
