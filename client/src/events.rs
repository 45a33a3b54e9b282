//! Progress of a transfer as plain events, for any front end (CLI bars, JSON, a GUI).

use ft_protocol::Hash;

/// Something that happened during a batch upload. Files are identified by their index in
/// the batch. For each file, `FileStarted` comes first and exactly one of `FileStored` or
/// `FileFailed` comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// The batch begins: how much there is to send.
    BatchStarted {
        /// Number of files.
        files: usize,
        /// Sum of their sizes.
        bytes: u64,
    },
    /// A file's upload begins.
    FileStarted {
        /// Index in the batch.
        index: usize,
        /// Name sent to the server.
        name: String,
        /// Size in bytes.
        size: u64,
    },
    /// More of a file was handed to the network.
    FileProgress {
        /// Index in the batch.
        index: usize,
        /// Bytes of this file sent so far.
        sent: u64,
        /// Bytes just added (the total's increment).
        delta: u64,
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
    /// A file was not stored.
    FileFailed {
        /// Index in the batch.
        index: usize,
        /// Name sent.
        name: String,
        /// Machine-readable cause (a wire error code, or `local` for a local failure).
        code: String,
        /// Explanation.
        message: String,
    },
}
