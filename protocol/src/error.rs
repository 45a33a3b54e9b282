//! Wire error codes and the error type of the codec.

use std::{fmt, io};

use serde::{Deserialize, Serialize};

/// Machine-readable cause carried by [`crate::ErrorResponse`]. Append only; frozen order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A bug or an unexpected condition on the server.
    Internal,
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// A message that is malformed, too large or out of order. The connection is closed.
    ProtocolViolation,
    /// The file name is refused (see the README's name rules).
    InvalidName,
    /// The content's BLAKE3 differs from the hash in `EndFile`; nothing was stored.
    HashMismatch,
    /// The file is larger than the server accepts.
    TooLarge,
    /// The server could not write the file (disk full, permissions, ...).
    Storage,
    /// The client cancelled the upload.
    Cancelled,
    /// The server is at its connection limit; try again later.
    Busy,
    /// The peer was silent for too long.
    Timeout,
    /// The server is shutting down.
    ShuttingDown,
    /// Not enough free space in the server's directory for the file.
    NoSpace,
    /// No stored file has that name.
    NotFound,
    /// The credentials are wrong or missing, or the user no longer exists. The connection is
    /// closed.
    Unauthorized,
    /// The user's role does not allow this request; the session goes on.
    Forbidden,
    /// The name is taken and the client asked never to replace or rename
    /// ([`crate::ConflictPolicy::Skip`]): nothing was stored. Protocol 9.
    NameTaken,
    /// The recipient's inbox on the server has no room for the files left for it. Protocol 11.
    QuotaExceeded,
}

impl ErrorCode {
    /// Stable kebab-case name, used in logs and in the client's JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::ProtocolViolation => "protocol-violation",
            ErrorCode::InvalidName => "invalid-name",
            ErrorCode::HashMismatch => "hash-mismatch",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Storage => "storage",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::NoSpace => "no-space",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NameTaken => "name-taken",
            ErrorCode::QuotaExceeded => "quota-exceeded",
        }
    }
}

impl ErrorCode {
    /// Whether sending the same file again later may succeed: the failure came from the
    /// moment (load, shutdown, corruption on the way), not from the file itself.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::HashMismatch
                | ErrorCode::Busy
                | ErrorCode::Timeout
                | ErrorCode::ShuttingDown
                | ErrorCode::ProtocolViolation
                | ErrorCode::Internal
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why bytes could not become a message or a message could not become bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(io::Error),
    /// A frame's length prefix exceeds the limit; nothing was allocated for it.
    #[error("frame larger than the maximum of {max} bytes")]
    FrameTooLarge {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A frame's payload is not a valid message.
    #[error("undecodable message: {0}")]
    Decode(postcard::Error),
    /// A message could not be encoded.
    #[error("unencodable message: {0}")]
    Encode(postcard::Error),
    /// The first frame is not an acceptable `Hello`.
    #[error(transparent)]
    Hello(crate::codec::HelloError),
}

/// The codec's `?` on socket reads and writes (the cause is shown in the message, so it is
/// not also exposed as a source).
impl From<io::Error> for ProtocolError {
    fn from(err: io::Error) -> Self {
        ProtocolError::Io(err)
    }
}
