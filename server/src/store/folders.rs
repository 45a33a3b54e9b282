//! Folders beneath the storage directory: opened without following symbolic links or
//! leaving the directory's filesystem (see [`beneath`](super::beneath)), created on demand,
//! and kept open for a batch so that files are created, linked and renamed relative to their
//! folder's descriptor.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{
    beneath::{folder_and_parents, folder_of, open_folder, FolderError},
    Store, StoreError,
};
use crate::names::ValidName;

/// Linux's PATH_MAX: longest path, in bytes, system calls accept.
const MAX_PATH_LEN: usize = 4096;

/// Folders kept open by one `KnownFolders` at most; beyond, the cache starts over.
const MAX_OPEN_FOLDERS: usize = 256;

/// Folders opened during one batch of work, by their names relative to the root (`a`,
/// `a/b`; the root itself is never kept, the store holds it): one batch of 10,000 files in
/// 100 folders opens each folder once. Folders found absent (when checking without
/// creating) are remembered too.
#[derive(Debug, Default)]
pub struct KnownFolders {
    open: std::collections::HashMap<String, OwnedFd>,
    absent: std::collections::HashSet<String>,
}

impl Store {
    /// The folder `folder` (a `/`-separated name, empty for the root), open: created with
    /// its missing parents when `create` is set, `None` when absent otherwise. Blocking.
    pub(super) fn folder<'a>(
        &'a self,
        folder: &str,
        create: bool,
        known: &'a mut KnownFolders,
    ) -> Result<Option<BorrowedFd<'a>>, StoreError> {
        if folder.is_empty() {
            return Ok(Some(self.root_dir.as_fd()));
        }
        if !known.open.contains_key(folder) {
            if !create && known.absent.contains(folder) {
                return Ok(None);
            }
            if known.open.len() >= MAX_OPEN_FOLDERS {
                known.open.clear();
            }
            match open_folder(self.root_dir.as_fd(), self.device, folder, create) {
                Ok(fd) => {
                    known.absent.remove(folder);
                    known.open.insert(folder.to_owned(), fd);
                }
                Err(FolderError::Missing) if !create => {
                    if known.absent.len() >= MAX_OPEN_FOLDERS {
                        known.absent.clear();
                    }
                    known.absent.insert(folder.to_owned());
                    return Ok(None);
                }
                Err(err) => return Err(self.folder_error(folder, err)),
            }
        }
        Ok(known.open.get(folder).map(|fd| fd.as_fd()))
    }

    /// The folder holding `name`, open (see [`Store::folder`]).
    pub(super) fn folder_of<'a>(
        &'a self,
        name: &ValidName,
        create: bool,
        known: &'a mut KnownFolders,
    ) -> Result<Option<BorrowedFd<'a>>, StoreError> {
        self.folder(folder_of(name.as_str()), create, known)
    }

    fn folder_error(&self, folder: &str, err: FolderError) -> StoreError {
        match err {
            FolderError::Symlink(part) => StoreError::SymlinkInPath(part),
            FolderError::NotAFolder(part) => StoreError::ParentNotADirectory(part),
            FolderError::OtherFilesystem(part) => StoreError::OtherFilesystem(part),
            FolderError::Missing => StoreError::Io {
                action: "create folder",
                path: self.root.join(folder),
                cause: std::io::ErrorKind::NotFound.into(),
            },
            FolderError::Io(part, errno) => StoreError::Io {
                action: "open folder",
                path: self.root.join(if part.is_empty() { folder } else { &part }),
                cause: errno.into(),
            },
        }
    }

    /// Creates the folder `name` and its missing parents inside the root, durably. Returns
    /// false if it existed already. Blocking.
    pub fn make_dir(&self, name: &ValidName) -> Result<bool, StoreError> {
        let mut known = KnownFolders::default();
        let created = {
            let Some(parent) = self.folder_of(name, true, &mut known)? else {
                return Err(self.folder_error(name.as_str(), FolderError::Missing));
            };
            match rustix::fs::mkdirat(parent, name.leaf(), rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => false,
                Err(errno) => {
                    return Err(StoreError::Io {
                        action: "create folder",
                        path: name.under(&self.root),
                        cause: errno.into(),
                    })
                }
            }
        };
        // Whatever is there must be a real folder of ours (not a link, not a file).
        self.folder(name.as_str(), false, &mut known)?
            .ok_or_else(|| StoreError::ParentNotADirectory(name.as_str().to_owned()))?;
        if created {
            self.sync_folders(folder_and_parents(folder_of(name.as_str())), &mut known)?;
        }
        Ok(created)
    }

    /// Checks, without creating anything, that the folders of `name` are folders (or absent)
    /// and not symbolic links, and that the full path fits the system limit. Lets a doomed
    /// upload be refused before its bytes are sent. Blocking.
    pub fn check_placeable(&self, name: &ValidName) -> Result<(), StoreError> {
        self.check_placeable_in(name, &mut KnownFolders::default())
    }

    /// [`Store::check_placeable`] for one of many names checked together.
    pub fn check_placeable_in(
        &self,
        name: &ValidName,
        known: &mut KnownFolders,
    ) -> Result<(), StoreError> {
        // The length `name.under(root)` would have, without building it.
        let full_len = self.root.as_os_str().len() + 1 + name.as_str().len();
        if full_len >= MAX_PATH_LEN {
            return Err(StoreError::PathTooLong(name.as_str().to_owned()));
        }
        self.folder_of(name, false, known).map(drop)
    }

    /// Whether `name` (one component at the top of the root) is a real folder. Blocking.
    pub fn is_top_folder(&self, name: &str) -> bool {
        !name.contains('/')
            && rustix::fs::statat(&self.root_dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir())
    }
}
