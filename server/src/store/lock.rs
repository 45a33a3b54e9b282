//! The directory lock: one `fts` serves a directory at a time.

use std::{
    fs::{File, OpenOptions},
    path::Path,
};

use super::{io_error, StoreError};
use crate::names::PRIVATE_DIR;

/// An exclusive `flock` on `DIR/.fts/lock`, released when dropped (or when the process dies,
/// so a crash never leaves a stale lock behind).
#[derive(Debug)]
pub(super) struct DirLock {
    /// Held for its lock, released on drop.
    _file: File,
}

impl DirLock {
    /// Takes the lock of the storage directory `root`, or fails with
    /// [`StoreError::Locked`] if another process holds it.
    pub(super) fn acquire(root: &Path) -> Result<Self, StoreError> {
        let path = root.join(PRIVATE_DIR).join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StoreError::Locked(root.to_path_buf()))?;
        Ok(Self { _file: file })
    }
}
