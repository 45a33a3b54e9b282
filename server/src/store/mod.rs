//! Every filesystem touch of the storage directory, one file per concern: partial uploads
//! ([`partial`]), placing verified files under their names ([`place`]), stored files read and
//! removed ([`stored`]), folders walked and created beneath the directory ([`folders`]), the
//! flushes that make an Ack a promise ([`durability`]), and the lock that keeps a second server
//! off the directory ([`lock`]).
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/                 stored files, under the names clients sent (folders allowed)
//! DIR/.fts/catalog.db  the catalog (see catalog.rs)
//! DIR/.fts/lock        held by the serving process
//! DIR/.fts/partial/    uploads in progress or interrupted, one `<key>.part` per upload key;
//!                      never visible under a final name, kept for resume until the TTL
//! ```
//!
//! An upload is written to its partial file (a small one, to an unnamed file in its folder).
//! Only after its hash matched is it given its name, atomically, and only after its data was
//! flushed; the names are flushed before the Ack (commit.rs orders the steps). The partial
//! area is on the same filesystem as `DIR`, which is what makes the rename atomic.

mod beneath;
mod durability;
mod flush;
mod folders;
mod inbox;
mod lock;
mod namespaces;
mod partial;
mod partial_admin;
mod place;
mod stored;

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

pub use durability::ErrorWatch;
pub use folders::KnownFolders;
pub use inbox::InboxDraft;
pub use partial::{PartialQuota, PartialUpload, PartialUsage};
pub use partial_admin::PartialArea;

use crate::names::{NameError, PRIVATE_DIR};
use lock::DirLock;

/// Permission bits of stored files, before the umask.
const STORED_FILE_MODE: u32 = 0o644;

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused an operation.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error (shown in the message, which is what reaches the client).
        cause: io::Error,
    },
    /// A folder in the name exists as a file.
    #[error("'{0}' exists and is not a folder")]
    ParentNotADirectory(String),
    /// A folder in the name is a symbolic link, which could lead outside the directory.
    #[error("'{0}' is a symbolic link; files are never written through links")]
    SymlinkInPath(String),
    /// Every numbered variant of the name is taken.
    #[error("no free name left for '{0}'")]
    NoFreeName(String),
    /// The name is taken and the upload asked never to rename or replace.
    #[error("'{0}' is already stored; kept as it is (skip existing)")]
    NameTaken(String),
    /// A numbered variant of the name broke a name rule (it became too long).
    #[error("no numbered variant of the name is valid: {0}")]
    Name(NameError),
    /// The storage directory plus the name exceed the system's path length limit.
    #[error("'{0}' is too long a path inside the storage directory")]
    PathTooLong(String),
    /// A folder in the name is another filesystem mounted inside the storage directory.
    #[error("'{0}' is on another filesystem; files are only stored on the directory's own")]
    OtherFilesystem(String),
    /// The name is a folder or something else than a regular file.
    #[error("'{0}' is not a regular file")]
    NotAFile(String),
    /// The user's interrupted uploads fill their quota and none can be removed (all are in
    /// progress).
    #[error(
        "your uploads in progress already fill your quota of {files} interrupted uploads \
             or {bytes} bytes kept for resume; finish or cancel some first"
    )]
    PartialQuota {
        /// Most partial uploads per user.
        files: u64,
        /// Most bytes of partial uploads per user.
        bytes: u64,
    },
    /// Another `fts` serves this directory.
    #[error("{0} is already served by another fts process")]
    Locked(PathBuf),
}

impl StoreError {
    /// Whether the failure is the name's fault (then the client gets `invalid-name`).
    pub fn is_about_the_name(&self) -> bool {
        matches!(
            self,
            StoreError::ParentNotADirectory(_)
                | StoreError::SymlinkInPath(_)
                | StoreError::Name(_)
                | StoreError::PathTooLong(_)
                | StoreError::OtherFilesystem(_)
                | StoreError::NotAFile(_)
        )
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |cause| StoreError::Io {
        action,
        path: path.to_path_buf(),
        cause,
    }
}

/// Reads of a partial file's prefix go through a buffer of this size.
const PREFIX_READ_BUFFER: usize = 1024 * 1024;

/// The storage directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    partials: PathBuf,
    /// Keeps other servers off the directory for as long as the store is open.
    _lock: DirLock,
    /// The root, open: every folder is opened relative to it, never leaving it.
    root_dir: std::os::fd::OwnedFd,
    /// The partial area, open: partial uploads are opened relative to it.
    partials_dir: std::os::fd::OwnedFd,
    /// `DIR/.fts/inbox`, opened once: files left for users who were not online.
    inbox_dir: std::os::fd::OwnedFd,
    /// Which owner folder of the partial area each upload key is in.
    partial_index: partial::PartialIndex,
    /// The root's device: every folder written to must be on it.
    device: u64,
    /// Threads that flush our files, many at once.
    flusher: flush::Flusher,
    /// The kernel's `syncfs` reports writeback errors (Linux 5.8 and later).
    syncfs_reports_errors: bool,
    /// Other programs had much dirty data at the last flush (see durability.rs).
    others_busy: std::sync::atomic::AtomicBool,
    /// Unnamed files can be linked by their descriptor (cleared at the first refusal).
    link_by_fd: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (creating if needed) the storage directory. Interrupted uploads of a previous
    /// run stay in the partial area for resume (see [`Store::sweep_partials`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        let root = dir.canonicalize().map_err(io_error("resolve", dir))?;
        let partials = root.join(PRIVATE_DIR).join("partial");
        fs::create_dir_all(&partials).map_err(io_error("create", &partials))?;
        // Two servers on one directory would sweep and resume each other's uploads.
        let lock = DirLock::acquire(&root)?;
        let device = fs::metadata(&root)
            .map_err(io_error("inspect", &root))?
            .dev();
        let root_dir = rustix::fs::open(
            &root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|errno| io_error("open", &root)(errno.into()))?;
        let partials_dir = beneath::open_folder(
            std::os::fd::AsFd::as_fd(&root_dir),
            device,
            &format!("{PRIVATE_DIR}/partial"),
            false,
        )
        .map_err(|_| {
            io_error("open", &partials)(io::Error::other(
                "the partial area is not a folder of the storage directory's filesystem",
            ))
        })?;
        let inbox_dir = Self::open_inbox_area(&root_dir, device).map_err(|_| {
            io_error("open", &root.join(PRIVATE_DIR).join("inbox"))(io::Error::other(
                "the inbox area is not a folder of the storage directory's filesystem",
            ))
        })?;
        let store = Self {
            root,
            partials,
            _lock: lock,
            root_dir,
            partials_dir,
            inbox_dir,
            partial_index: partial::PartialIndex::default(),
            device,
            flusher: flush::Flusher::start()
                .map_err(io_error("start the flushing threads of", dir))?,
            syncfs_reports_errors: kernel_at_least(5, 8),
            others_busy: std::sync::atomic::AtomicBool::new(false),
            link_by_fd: std::sync::atomic::AtomicBool::new(true),
        };
        store.index_partials();
        Ok(store)
    }

    /// The canonical storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's private directory inside the root.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(PRIVATE_DIR)
    }

    /// Bytes available to the server in the storage directory.
    pub fn available_space(&self) -> Result<u64, StoreError> {
        let stats = rustix::fs::fstatvfs(&self.root_dir)
            .map_err(|errno| io_error("query free space of", &self.root)(errno.into()))?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
}

/// Whether the running kernel is at least `major.minor` (from `uname`'s release).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(have_major), Some(have_minor)) => (have_major, have_minor) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
