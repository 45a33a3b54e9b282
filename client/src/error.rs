//! Errors of the client library, one variant per stage that can fail.
//!
//! A variant either shows its cause in its message or exposes it as its `source`, never
//! both: printed with its causes (anyhow's `{:#}`, or [`with_causes`] inside the library),
//! each cause then appears once.

use std::{error::Error, io, path::PathBuf, time::Duration};

use ft_protocol::{ErrorCode, ProtocolError};

use crate::{address::ServerAddress, known_servers::KnownServersError};
use ft_protocol::Fingerprint;

/// Why a client operation failed as a whole (as opposed to one file of a batch).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Local paths that cannot be sent; nothing was sent. One line per path, each with its
    /// cause: a list has no single source.
    #[error("{}", .0.iter().map(|problem| with_causes(problem)).collect::<Vec<_>>().join("\n"))]
    LocalFiles(Vec<LocalFileError>),
    /// The host name did not resolve.
    #[error("cannot resolve {address}")]
    Resolve {
        /// The address given.
        address: ServerAddress,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the server accepted a connection.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address given.
        address: ServerAddress,
        /// The last connection error.
        source: io::Error,
    },
    /// The server refused the session or ended it with an error.
    #[error("server refused: {message} ({code})")]
    Refused {
        /// Machine-readable cause.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection failed or carried bytes that are not valid messages. Shown in the
    /// message rather than as the source: a [`ProtocolError`] already shows its own cause.
    #[error("connection failed: {0}")]
    Protocol(ProtocolError),
    /// The server closed the connection while answers were still due.
    #[error("the server closed the connection unexpectedly")]
    ConnectionClosed,
    /// The server sent a message the protocol does not allow at this point.
    #[error("unexpected message from the server: {0}")]
    Unexpected(String),
    /// The server could not do what was asked (unknown name, refused folder, ...); the
    /// session goes on.
    #[error("{message} ({code})")]
    Failed {
        /// Machine-readable cause.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A local file could not be written (downloads).
    #[error("{}", path.display())]
    LocalWrite {
        /// The local path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("no answer from the server within {0:?} while {1}")]
    Timeout(Duration, &'static str),
    /// The server's certificate is not the one pinned for it. Nothing was sent.
    #[error("{0}")]
    CertificateChanged(Box<CertificateChange>),
    /// The TLS handshake failed (not an ft server, or the connection dropped).
    #[error("cannot talk TLS with {address}")]
    Tls {
        /// The server.
        address: ServerAddress,
        /// What failed.
        source: io::Error,
    },
    /// The known servers file could not be read or written.
    #[error(transparent)]
    KnownServers(#[from] KnownServersError),
}

/// A server that presented another certificate than the one pinned for it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server at {address} presented certificate {presented}, but {expected} is pinned for \
     it ({pinned_by}). If its certificate was replaced on purpose, remove the server's line \
     from {known_servers} (or pin the new one with --fingerprint)"
)]
pub struct CertificateChange {
    /// The server.
    pub address: ServerAddress,
    /// The fingerprint expected.
    pub expected: Fingerprint,
    /// The fingerprint presented.
    pub presented: Fingerprint,
    /// Where the pin came from: `--fingerprint`, the config or the known servers file.
    pub pinned_by: String,
    /// The known servers file, to edit.
    pub known_servers: String,
}

impl ClientError {
    /// Whether trying again (reconnecting) may help: the connection or the server's state
    /// failed, not the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::LocalFiles(_)
            | ClientError::Unexpected(_)
            | ClientError::LocalWrite { .. }
            | ClientError::CertificateChanged(_)
            | ClientError::KnownServers(_) => false,
            ClientError::Failed { code, .. } => code.is_transient(),
            ClientError::Refused { code, .. } => code.is_transient(),
            ClientError::Resolve { .. }
            | ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Protocol(_)
            | ClientError::ConnectionClosed
            | ClientError::Timeout(..) => true,
        }
    }
}

impl From<ProtocolError> for ClientError {
    fn from(err: ProtocolError) -> Self {
        ClientError::Protocol(err)
    }
}

/// `err` followed by each of its causes, `: `-separated, as anyhow's `{:#}` prints it: for the
/// texts the library itself builds from errors (retry reasons, failure messages).
pub(crate) fn with_causes(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Why one local path cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    /// The path could not be inspected or opened.
    #[error("{}", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Walking a folder failed.
    #[error("{}: cannot read the folder", path.display())]
    UnreadableFolder {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The path is a device, socket or pipe.
    #[error("{}: not a regular file", path.display())]
    NotRegular {
        /// The path given.
        path: PathBuf,
    },
    /// The file name cannot be represented as UTF-8 on the wire.
    #[error("{}: the file name is not valid UTF-8", path.display())]
    NonUtf8Name {
        /// The path given.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once() {
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let connect = ClientError::Connect {
            address: "host:1".parse().unwrap(),
            source: refused(),
        };
        assert_eq!(with_causes(&connect), "cannot connect to host:1: refused");
        let protocol = ClientError::from(ProtocolError::Io(refused()));
        assert_eq!(
            with_causes(&protocol),
            "connection failed: connection error: refused"
        );
        let problems = ClientError::LocalFiles(vec![
            LocalFileError::Unreadable {
                path: "a".into(),
                source: refused(),
            },
            LocalFileError::NotRegular { path: "b".into() },
        ]);
        assert_eq!(with_causes(&problems), "a: refused\nb: not a regular file");
    }
}
