//! What a batch reports, upload or download: the fate of each file and why a file failed.

use std::{fmt, path::PathBuf, time::Duration};

use ft_protocol::{ErrorCode, Hash};

use crate::{error::ClientError, local::LocalFile};

/// Machine-readable cause of a file's failure. Its text ([`FailureCode::as_str`]) is what
/// `ftc` prints and puts in the `code` field of its JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The server refused or failed the file, with this wire code (`too-large`, ...).
    Server(ErrorCode),
    /// The file failed on this machine (unreadable, changed while sent, unsafe name, ...):
    /// `local`.
    Local,
    /// The connection failed for good before the server confirmed the file:
    /// `connection-lost`.
    ConnectionLost,
}

impl FailureCode {
    /// Stable kebab-case text: the wire code's own ([`ErrorCode::as_str`]), `local` or
    /// `connection-lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::Server(code) => code.as_str(),
            FailureCode::Local => "local",
            FailureCode::ConnectionLost => "connection-lost",
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one file was not stored (upload) or saved (download).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    /// Machine-readable cause.
    pub code: FailureCode,
    /// Explanation.
    pub message: String,
}

/// A file the server holds now: sent and stored, or found already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Name the server holds it under.
    pub stored_name: String,
    /// Bytes stored.
    pub size: u64,
    /// BLAKE3, computed by this client and confirmed by the server (none for a file left
    /// alone without hashing: unchanged by size and time, or a taken name kept).
    pub hash: Option<Hash>,
    /// Sent now, or why not.
    pub status: StoreStatus,
}

/// Why a file the server holds is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// Sent in this batch, stored and verified.
    Sent,
    /// Not sent: a stored version already has this content (`stored_name` says which).
    Unchanged,
    /// Not sent: the name is taken by other content and the batch skips taken names
    /// (`--skip-existing`); the stored file was left alone.
    NameTaken,
}

impl StoreStatus {
    /// Stable text for output: `stored`, `unchanged`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreStatus::Sent => "stored",
            StoreStatus::Unchanged => "unchanged",
            StoreStatus::NameTaken => "skipped",
        }
    }
}

/// The fate of one file of an upload.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// The local file.
    pub file: LocalFile,
    /// Stored, or why not.
    pub result: Result<StoredFile, FileFailure>,
}

/// What happened to an upload.
#[derive(Debug)]
pub struct SendReport {
    /// One outcome per file, in batch order.
    pub outcomes: Vec<FileOutcome>,
    /// Wall time from the start to the last answer.
    pub elapsed: Duration,
    /// Set when the session failed for good before every file was answered.
    pub connection_error: Option<ClientError>,
    /// Reconnects made.
    pub retries: u32,
    /// Content bytes put on the wire (including bytes of attempts that failed).
    pub bytes_sent: u64,
    /// Content bytes not sent because the server already held them (resume).
    pub bytes_resumed: u64,
    /// Content bytes as they went on the wire (smaller than `bytes_sent` when compressed).
    pub bytes_on_wire: u64,
    /// Empty folders created on the server.
    pub folders_made: Vec<String>,
    /// Empty folders the server refused, with why.
    pub folder_failures: Vec<(String, FileFailure)>,
}

impl SendReport {
    /// Files sent in this batch, stored and verified.
    pub fn stored(&self) -> impl Iterator<Item = (&LocalFile, &StoredFile)> {
        self.with_status(StoreStatus::Sent)
    }

    /// Files the server holds with this status.
    pub fn with_status(
        &self,
        status: StoreStatus,
    ) -> impl Iterator<Item = (&LocalFile, &StoredFile)> {
        self.outcomes.iter().filter_map(move |outcome| {
            outcome
                .result
                .as_ref()
                .ok()
                .filter(|stored| stored.status == status)
                .map(|stored| (&outcome.file, stored))
        })
    }

    /// Files not stored.
    pub fn failed(&self) -> impl Iterator<Item = (&LocalFile, &FileFailure)> {
        self.outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().err().map(|f| (&outcome.file, f)))
    }

    /// True when every file was stored and verified and every folder made.
    pub fn all_stored(&self) -> bool {
        self.failed().next().is_none() && self.folder_failures.is_empty()
    }
}

/// A file saved and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Where it was saved.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its BLAKE3, equal to the catalog's.
    pub hash: Hash,
}

/// The fate of one requested name.
#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    /// The stored name asked for.
    pub name: String,
    /// Saved, or why not.
    pub result: Result<Downloaded, FileFailure>,
}

/// What happened to a batch of downloads.
#[derive(Debug)]
pub struct DownloadReport {
    /// One outcome per name, in order.
    pub outcomes: Vec<DownloadOutcome>,
    /// Wall time.
    pub elapsed: Duration,
    /// Set when the session failed for good.
    pub connection_error: Option<ClientError>,
    /// Reconnects made.
    pub retries: u32,
    /// Bytes not downloaded again thanks to resume.
    pub bytes_resumed: u64,
}

impl DownloadReport {
    /// True when every file was saved and verified.
    pub fn all_saved(&self) -> bool {
        self.outcomes.iter().all(|outcome| outcome.result.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_print_as_before() {
        assert_eq!(FailureCode::Local.to_string(), "local");
        assert_eq!(FailureCode::ConnectionLost.to_string(), "connection-lost");
        assert_eq!(
            FailureCode::Server(ErrorCode::TooLarge).to_string(),
            "too-large"
        );
        assert_eq!(
            FailureCode::Server(ErrorCode::HashMismatch).as_str(),
            "hash-mismatch"
        );
    }
}
