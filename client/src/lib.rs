//! The ft client as a library: the `ftc` binary and a future GUI draw the same engine.
//!
//! [`send_files`] uploads a batch (connecting, retrying and resuming by itself), reporting
//! progress as [`TransferEvent`]s; [`download_files`] does the same the other way;
//! [`Client::connect`] opens a session for other requests such as [`Client::list`]. Nothing
//! here prints. Every public item is exported here, at the crate root.

mod access;
mod address;
mod chunk_pool;
mod compress;
pub mod config_files;
mod connect_string;
mod connection;
mod download;
mod error;
mod events;
mod known_servers;
mod local;
mod pipeline;
mod read;
pub mod relay;
mod report;
mod session;
#[cfg(test)]
mod stand_in;
mod throttle;
pub mod tls;
mod transfer;

pub use access::{Access, FirstUseNotice, DEFAULT_CONNECT_TIMEOUT};
pub use address::{AddressError, ServerAddress};
pub use connect_string::{ConnectString, ConnectStringError};
pub use connection::{probe_fingerprint, Client};
pub use download::{download_files, local_path, GetOptions};
pub use error::{CertificateChange, ClientError, LocalFileError};
pub use events::TransferEvent;
pub use known_servers::{KnownServers, KnownServersError};
pub use local::{plan_uploads, upload_key, LocalFile, Skipped, UploadPlan};
pub use report::{
    DownloadOutcome, DownloadReport, Downloaded, FailureCode, FileFailure, FileOutcome, SendReport,
    StoreStatus, StoredFile,
};
pub use session::Session;
pub use transfer::{send_files, SendOptions, DEFAULT_RETRIES};
