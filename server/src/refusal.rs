//! A file or request the server turns down: the wire's error code and the words for the
//! client. Every layer below the session reports refusals in this one type, and the mapping
//! from a store or catalog failure to a code is written once, here.

use std::fmt;

use ft_protocol::ErrorCode;

use crate::{catalog::CatalogError, store::StoreError};

/// Why a file or request was turned down, as the client will be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub(crate) struct Refusal {
    /// Machine-readable cause, sent on the wire.
    pub(crate) code: ErrorCode,
    /// The explanation for the client.
    pub(crate) message: String,
}

impl Refusal {
    /// A refusal with this code and message.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A failure of the server's own storage or of a task doing its work.
    pub(crate) fn storage(err: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Storage, err.to_string())
    }

    /// A failure of the server itself, not of the request (a task that panicked).
    pub(crate) fn internal(err: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, err.to_string())
    }
}

impl From<&StoreError> for Refusal {
    fn from(err: &StoreError) -> Self {
        let code = if err.is_about_the_name() {
            ErrorCode::InvalidName
        } else if matches!(err, StoreError::PartialQuota { .. }) {
            ErrorCode::NoSpace
        } else if matches!(err, StoreError::NameTaken(_)) {
            ErrorCode::NameTaken
        } else {
            ErrorCode::Storage
        };
        Self::new(code, err.to_string())
    }
}

impl From<StoreError> for Refusal {
    fn from(err: StoreError) -> Self {
        Self::from(&err)
    }
}

impl From<CatalogError> for Refusal {
    fn from(err: CatalogError) -> Self {
        Self::storage(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_map_to_the_name_or_the_storage() {
        let name = Refusal::from(StoreError::SymlinkInPath("a".into()));
        assert_eq!(name.code, ErrorCode::InvalidName);
        assert!(name.message.contains("symbolic link"), "{}", name.message);
        let storage = Refusal::from(StoreError::NoFreeName("a".into()));
        assert_eq!(storage.code, ErrorCode::Storage);
    }
}
