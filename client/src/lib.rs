//! The ft client as a library: the `ftc` binary and a future GUI draw the same engine.
//!
//! [`send_files`] uploads a batch (connecting, retrying and resuming by itself), reporting
//! progress as [`TransferEvent`]s; [`Client::connect`] opens a session for other requests
//! such as [`Client::list`]. Nothing here prints.

pub mod address;
mod compress;
pub mod connection;
pub mod download;
pub mod error;
pub mod events;
pub mod local;
mod pipeline;
mod read;
mod report;
pub mod session;
pub mod transfer;

pub use address::ServerAddress;
pub use connection::Client;
pub use error::{ClientError, LocalFileError};
pub use events::TransferEvent;
pub use local::{plan_uploads, LocalFile, Skipped, UploadPlan};
pub use report::{
    DownloadOutcome, DownloadReport, Downloaded, FailureCode, FileFailure, FileOutcome, SendReport,
    StoredFile,
};
pub use session::Session;
pub use transfer::{send_files, SendOptions, DEFAULT_RETRIES};
