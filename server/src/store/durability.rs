//! Durability: the flushes that make an Ack a promise. Data is flushed before any name
//! points at it, and names are flushed before the Ack (the order is commit.rs's; the means
//! are here).

use std::{
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt,
    path::Path,
};

use super::{
    beneath::{folder_and_parents, folder_of},
    io_error, KnownFolders, Store, StoreError,
};
use crate::names::ValidName;

impl Store {
    /// Whether the `syncfs` that makes uploads durable also flushes the file at `path` (it
    /// is on the same filesystem); false when that cannot be told.
    pub fn syncfs_covers(&self, path: &Path) -> bool {
        match (self.lock.metadata(), fs::metadata(path)) {
            (Ok(synced), Ok(other)) => synced.dev() == other.dev(),
            _ => false,
        }
    }

    /// Makes the data of `files` durable: one `syncfs` of the storage filesystem, or an
    /// fsync per file where `syncfs` is unavailable. Blocking.
    ///
    /// `files_cover_all` says whether `files` are all the data to sync; when some were
    /// already closed, a failed `syncfs` fails the whole call, because a descriptor opened
    /// after a writeback error would not report it.
    pub fn sync_all_data<'a>(
        &self,
        files: impl Iterator<Item = &'a File>,
        files_cover_all: bool,
    ) -> Result<(), StoreError> {
        let synced = self.sync_filesystem();
        if synced.is_ok() || !files_cover_all {
            return synced;
        }
        for file in files {
            file.sync_all().map_err(io_error("sync", &self.partials))?;
        }
        Ok(())
    }

    /// Makes the names of `stored` files durable by syncing every folder from each file's
    /// up to the root (each folder once). Blocking.
    pub fn sync_folders_of<'a>(
        &self,
        stored: impl Iterator<Item = &'a ValidName>,
    ) -> Result<(), StoreError> {
        let mut folders = std::collections::BTreeSet::new();
        for name in stored {
            for folder in folder_and_parents(folder_of(name.as_str())) {
                if !folders.insert(folder) {
                    break;
                }
            }
        }
        self.sync_folders(folders.into_iter(), &mut KnownFolders::default())
    }

    /// fsyncs each of `folders` (names relative to the root), opened beneath the root, so
    /// that entries created or renamed in them survive a crash. Blocking.
    pub(super) fn sync_folders<'a>(
        &self,
        folders: impl Iterator<Item = &'a str>,
        known: &mut KnownFolders,
    ) -> Result<(), StoreError> {
        for folder in folders {
            let path = || self.root.join(folder);
            let Some(fd) = self.folder(folder, false, known)? else {
                return Err(io_error("sync folder", &path())(
                    io::ErrorKind::NotFound.into(),
                ));
            };
            rustix::fs::fsync(fd)
                .map_err(|errno| io_error("sync folder", &path())(errno.into()))?;
        }
        Ok(())
    }

    /// Makes every rename and new folder durable: one `syncfs`. Blocking.
    pub fn sync_names(&self) -> Result<(), StoreError> {
        self.sync_filesystem()
    }

    fn sync_filesystem(&self) -> Result<(), StoreError> {
        rustix::fs::syncfs(&self.lock)
            .map_err(|errno| io_error("sync the filesystem of", &self.root)(errno.into()))
    }
}

/// fsync a directory so that entries created or renamed in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync folder", dir))
}
