//! Progress of a transfer as plain events, for any front end (CLI bars, JSON, a GUI).

use std::time::Duration;

use ft_protocol::Hash;

use crate::report::FailureCode;

/// Something that happened during a batch upload. Files are identified by their index in
/// the batch. A file may start more than once (after a retry); exactly one of `FileStored`,
/// `FileSkipped` or `FileFailed` comes last for each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// The batch begins: how much there is to send.
    BatchStarted {
        /// Number of files.
        files: usize,
        /// Sum of their sizes.
        bytes: u64,
    },
    /// A file's upload (re)starts.
    FileStarted {
        /// Index in the batch.
        index: usize,
        /// Name sent to the server.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Bytes the server already holds and verified, not sent again (0 unless resumed).
        offset: u64,
    },
    /// The bytes the server kept from an interrupted upload are being checked (hashed
    /// here) before the rest is sent.
    Verifying {
        /// Index in the batch.
        index: usize,
        /// Name sent.
        name: String,
        /// Bytes being checked.
        bytes: u64,
    },
    /// More of a file was handed to the network.
    FileProgress {
        /// Index in the batch.
        index: usize,
        /// Bytes of this file now sent or already held by the server.
        position: u64,
    },
    /// The server stored and verified a file.
    FileStored {
        /// Index in the batch.
        index: usize,
        /// Name sent.
        name: String,
        /// Name the server stored it under.
        stored_name: String,
        /// Size in bytes.
        size: u64,
        /// BLAKE3 agreed by both ends.
        hash: Hash,
    },
    /// A file was not sent: the server holds it already (unchanged), or its name is taken
    /// and the batch skips taken names.
    FileSkipped {
        /// Index in the batch.
        index: usize,
        /// Name sent.
        name: String,
        /// The stored file left as it is.
        stored_name: String,
        /// Size in bytes.
        size: u64,
        /// Unchanged, or a taken name.
        status: crate::report::StoreStatus,
    },
    /// A file was not stored, for good.
    FileFailed {
        /// Index in the batch.
        index: usize,
        /// Name sent.
        name: String,
        /// Machine-readable cause.
        code: FailureCode,
        /// Explanation.
        message: String,
    },
    /// The connection failed (or a file hit a transient error); trying again after `delay`.
    Retrying {
        /// Retry number, counting from 1.
        attempt: u32,
        /// The retry budget (`--retries`).
        max: u32,
        /// Pause before reconnecting.
        delay: Duration,
        /// What went wrong.
        reason: String,
    },
}
