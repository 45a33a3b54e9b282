//! Durability: the flushes that make an Ack a promise. Data is flushed before any name
//! points at it, and names are flushed before the Ack (the order is commit.rs's; the means
//! are here). Only our own files and folders are flushed, many at once (see [`flush`]).
//!
//! [`flush`]: super::flush

use std::{
    fs::File,
    io,
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use ft_protocol::Hash;
use rustix::fs::{Mode, OFlags};

use super::{
    beneath::{folder_and_parents, folder_of},
    flush::Flush,
    io_error, KnownFolders, Store, StoreError,
};
use crate::names::ValidName;

/// Descriptors held at once by one call's flushes; more files are flushed in turns.
const FLUSH_BATCH: usize = 256;

/// Dirty data of others below which one `syncfs` is the cheaper flush: flushing a few
/// megabytes that are not ours costs less than a flush per file.
const OTHERS_DIRTY_SYNCFS_MAX: u64 = 32 * 1024 * 1024;

/// A descriptor of the storage filesystem opened when a group began: a `syncfs` through it
/// reports every writeback error of the filesystem since then, and only to it (each open
/// descriptor keeps its own place in the filesystem's error sequence), so no other group's
/// flush can take the report of an error in this group's files.
#[derive(Debug)]
pub struct ErrorWatch(OwnedFd);

impl Store {
    /// Starts watching the filesystem for writeback errors, before a group's first file is
    /// written. Blocking.
    pub fn error_watch(&self) -> Result<ErrorWatch, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(&self.root_dir, ".", flags, Mode::empty())
            .map(ErrorWatch)
            .map_err(|errno| io_error("open", &self.root)(errno.into()))
    }

    /// Makes the data of a group's files durable: `written` were written after `watch` was
    /// opened (the small files the group staged), `earlier` before it (large uploads written
    /// while they arrived). `ours` is about how many bytes `written` hold that may not be on
    /// disk yet. Blocking.
    ///
    /// On a quiet disk one `syncfs` is cheapest (one flush for everything, most of it ours),
    /// and `watch` makes its error report complete for `written`; `earlier` files are still
    /// flushed one by one (they are few and large). When the filesystem holds much dirty
    /// data of other programs, or the kernel's `syncfs` reports no errors (before Linux 5.8),
    /// or there is no watch, every file is flushed on its own (all at once), so the group
    /// never waits for others' data. Either way every byte is durable on return.
    pub fn sync_data(
        &self,
        written: impl Iterator<Item = io::Result<File>>,
        earlier: impl Iterator<Item = io::Result<File>>,
        ours: u64,
        watch: Option<&ErrorWatch>,
    ) -> Result<(), StoreError> {
        let others_busy =
            others_dirty_bytes(ours).map_or(true, |others| others > OTHERS_DIRTY_SYNCFS_MAX);
        let watch = watch.filter(|_| self.syncfs_reports_errors);
        self.flush_data(written, earlier, others_busy, watch)
    }

    /// [`Store::sync_data`], told whether other programs' dirty data is in the way.
    fn flush_data(
        &self,
        written: impl Iterator<Item = io::Result<File>>,
        earlier: impl Iterator<Item = io::Result<File>>,
        others_busy: bool,
        watch: Option<&ErrorWatch>,
    ) -> Result<(), StoreError> {
        self.others_busy
            .store(others_busy, std::sync::atomic::Ordering::Relaxed);
        match watch {
            Some(ErrorWatch(fd)) if !others_busy => {
                rustix::fs::syncfs(fd).map_err(|errno| {
                    io_error("sync the filesystem of", &self.root)(errno.into())
                })?;
                self.flush_in_batches(earlier, Flush::Data)
            }
            _ => self.flush_in_batches(written.chain(earlier), Flush::Data),
        }
    }

    /// Whether the last flush found other programs' dirty data in the way (then staged files
    /// start their writeback at once, see [`start_writeback`]).
    pub(super) fn others_busy(&self) -> bool {
        self.others_busy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A second descriptor of an open file, to flush it.
    pub fn for_flush(file: &File) -> io::Result<File> {
        file.try_clone()
    }

    /// The partial upload of `key`, opened again to flush a copy written and closed earlier.
    /// Blocking.
    pub fn partial_for_flush(&self, key: &Hash) -> io::Result<File> {
        self.open_partial_for_flush(key)
    }

    /// Makes the names of `stored` files durable by syncing every folder from each file's
    /// up to the root (each folder once, all at once). Blocking.
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
        // Opened as the batches go, so at most one batch of descriptors is held at once.
        let opened = folders.map(|folder| {
            let path = self.root.join(folder);
            let fd = self
                .folder(folder, false, known)
                .map_err(|err| io::Error::other(err.to_string()))?
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
                })?;
            rustix::io::dup(fd).map(File::from).map_err(io::Error::from)
        });
        self.flush_in_batches(opened, Flush::All)
    }

    fn flush_in_batches(
        &self,
        files: impl Iterator<Item = io::Result<File>>,
        flush: Flush,
    ) -> Result<(), StoreError> {
        let failed = |err: io::Error| io_error("sync", &self.root)(err);
        let mut batch = Vec::with_capacity(FLUSH_BATCH);
        for file in files {
            batch.push(file.map_err(failed)?);
            if batch.len() == FLUSH_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(FLUSH_BATCH));
                self.flusher
                    .flush_all(full, flush)
                    .map_err(|(_, err)| failed(err))?;
            }
        }
        self.flusher
            .flush_all(batch, flush)
            .map_err(|(_, err)| failed(err))
    }

    /// Flushes the root folder itself (after entries at the top changed). Blocking.
    pub fn sync_root(&self) -> Result<(), StoreError> {
        rustix::fs::fsync(self.root_dir.as_fd())
            .map_err(|errno| io_error("sync folder", &self.root)(errno.into()))
    }
}

/// fsync a directory so that entries created or renamed in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync folder", dir))
}

/// Asks the kernel to start writing `file`'s data now, without waiting: a small file staged
/// while its group still fills is then on its way to the disk (or there) when the group's
/// flush of each file comes, which only has to wait for it. (`POSIX_FADV_DONTNEED` starts
/// the writeback of dirty pages; they are dropped from the cache only once clean.) A refusal
/// only loses the head start.
pub(super) fn start_writeback(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// Bytes of dirty or in-flight page cache that are not `ours`, system-wide (`Dirty` and
/// `Writeback` in `/proc/meminfo`); `None` if that cannot be read.
fn others_dirty_bytes(ours: u64) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    };
    let dirty = field("Dirty:")? + field("Writeback:")?;
    Some(dirty.saturating_sub(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_dirty_data_is_read_and_ours_left_out() {
        assert!(others_dirty_bytes(0).is_some(), "/proc/meminfo is readable");
        assert_eq!(others_dirty_bytes(u64::MAX), Some(0));
    }

    #[test]
    fn data_is_flushed_file_by_file_or_with_the_filesystem() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        file.write_all(b"data").unwrap();
        let watch = store.error_watch().unwrap();
        for others_busy in [true, false, true] {
            store
                .flush_data(
                    std::iter::once(Store::for_flush(&file)),
                    std::iter::once(Store::for_flush(&file)),
                    others_busy,
                    Some(&watch),
                )
                .unwrap();
            assert_eq!(store.others_busy(), others_busy);
        }
        // A file that cannot be opened for its flush fails the flush, never skips it: a
        // large one on the quiet path, any on the per-file path.
        let missing = || std::iter::once(Err(io::ErrorKind::NotFound.into()));
        let quiet = store.flush_data(std::iter::empty(), missing(), false, Some(&watch));
        assert!(matches!(quiet, Err(StoreError::Io { .. })));
        let busy = store.flush_data(missing(), std::iter::empty(), true, Some(&watch));
        assert!(matches!(busy, Err(StoreError::Io { .. })));
        let unwatched = store.flush_data(missing(), std::iter::empty(), false, None);
        assert!(matches!(unwatched, Err(StoreError::Io { .. })));
        // Folders up to the root, each flushed; a missing one is an error.
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let name = ValidName::parse("a/b/f").unwrap();
        store.sync_folders_of(std::iter::once(&name)).unwrap();
        let gone = ValidName::parse("nowhere/f").unwrap();
        assert!(store.sync_folders_of(std::iter::once(&gone)).is_err());
    }
}
