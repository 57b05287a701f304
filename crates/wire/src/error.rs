//! Errors raised while reading or decoding protocol messages.

/// What went wrong with bytes a peer sent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("invalid message length {0}")]
    InvalidLength(i64),
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed {message} message: {reason}")]
    Malformed {
        message: &'static str,
        reason: &'static str,
    },
    #[error("unexpected message type '{0}'")]
    UnexpectedTag(char),
}

impl WireError {
    pub(crate) fn malformed(message: &'static str, reason: &'static str) -> Self {
        WireError::Malformed { message, reason }
    }
}
