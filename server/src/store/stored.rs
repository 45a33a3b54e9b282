//! Files already stored under their names: opened for download, hashed, removed; always
//! relative to their folder's descriptor (see [`beneath`](super::beneath)).

use std::{
    fs::File,
    io::{self, Read},
};

use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags},
    io::Errno,
};

use super::{io_error, KnownFolders, Store, StoreError, PREFIX_READ_BUFFER};
use crate::names::ValidName;

impl Store {
    /// Opens a stored file for reading, refusing symbolic links anywhere in its name.
    /// Returns `None` if no regular file has that name. Blocking.
    pub fn open_stored(&self, name: &ValidName) -> Result<Option<File>, StoreError> {
        let mut known = KnownFolders::default();
        let Ok(Some(folder)) = self.folder_of(name, false, &mut known) else {
            return Ok(None);
        };
        // Non-blocking, so that a FIFO put in the file's place cannot hold the thread.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(folder, name.leaf(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(None),
            Err(errno) => return Err(io_error("open", &name.under(&self.root))(errno.into())),
        };
        let meta = file
            .metadata()
            .map_err(io_error("inspect", &name.under(&self.root)))?;
        Ok(meta.is_file().then_some(file))
    }

    /// BLAKE3 state after reading the first `len` bytes of `file`, if it has that many.
    /// Blocking.
    pub fn hash_prefix(file: &File, len: u64) -> io::Result<Option<blake3::Hasher>> {
        let mut hasher = blake3::Hasher::new();
        let mut reader = io::BufReader::with_capacity(PREFIX_READ_BUFFER, file.take(len));
        let copied = io::copy(&mut reader, &mut hasher)?;
        Ok((copied == len).then_some(hasher))
    }

    /// Deletes a stored file (never through a link) and syncs its folder. Returns false if no
    /// regular file had that name. Blocking.
    /// A name whose folders pass through a symbolic link or a file, or that is itself a link
    /// or a folder, is an error: its record must not be dropped while something else stays
    /// in its place.
    pub fn remove_stored(&self, name: &ValidName) -> Result<bool, StoreError> {
        let mut known = KnownFolders::default();
        let Some(folder) = self.folder_of(name, false, &mut known)? else {
            return Ok(false);
        };
        let path = || name.under(&self.root);
        let kind = match rustix::fs::statat(folder, name.leaf(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(Errno::NOENT) => return Ok(false),
            Err(errno) => return Err(io_error("inspect", &path())(errno.into())),
        };
        match kind {
            // Unlinking acts on the entry in this folder only: were it swapped for a link a
            // moment ago, the link itself would go, never what it points to.
            FileType::RegularFile => {
                rustix::fs::unlinkat(folder, name.leaf(), AtFlags::empty())
                    .map_err(|errno| io_error("remove", &path())(errno.into()))?;
                rustix::fs::fsync(folder)
                    .map_err(|errno| io_error("sync folder", &path())(errno.into()))?;
                Ok(true)
            }
            FileType::Symlink => Err(StoreError::SymlinkInPath(name.as_str().to_owned())),
            _ => Err(StoreError::NotAFile(name.as_str().to_owned())),
        }
    }

    /// Takes back a placement whose commit failed: removes the file under `name` (never
    /// through a link). Blocking.
    pub fn unplace(&self, name: &ValidName) -> Result<(), StoreError> {
        let mut known = KnownFolders::default();
        if let Some(folder) = self.folder_of(name, false, &mut known)? {
            rustix::fs::unlinkat(folder, name.leaf(), AtFlags::empty())
                .map_err(|errno| io_error("remove", &name.under(&self.root))(errno.into()))?;
        }
        Ok(())
    }
}
