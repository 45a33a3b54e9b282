//! Folders beneath the storage directory: walked without following symbolic links or
//! leaving the directory's filesystem, created on demand, and kept open for a batch so that
//! files are created and linked relative to their folder.

use std::{fs, io, os::unix::fs::MetadataExt};

use super::{io_error, Store, StoreError};
use crate::names::ValidName;

/// Linux's PATH_MAX: longest path, in bytes, system calls accept.
const MAX_PATH_LEN: usize = 4096;

/// Folders inside the root already found to be real folders during one batch of work, as
/// names relative to the root (`a`, `a/b`): hashing a string is cheap, hashing a path parses
/// it into components.
/// Folders found absent (when checking without creating) are remembered too, so a new tree
/// of 10,000 files costs one `lstat` per folder rather than one per file.
///
/// It also keeps the folders it was asked for open, so files are created and linked relative
/// to their folder instead of walking the whole path each time.
#[derive(Debug, Default)]
pub struct KnownFolders {
    present: std::collections::HashSet<String>,
    absent: std::collections::HashSet<String>,
    open: std::collections::HashMap<String, Option<std::os::fd::OwnedFd>>,
}

impl Store {
    /// Creates the folder `name` and its missing parents inside the root. Returns false if it
    /// existed already. Blocking.
    pub fn make_dir(&self, name: &ValidName) -> Result<bool, StoreError> {
        self.walk_parents(name, true)?;
        let path = name.under(&self.root);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => Ok(false),
                    _ => Err(StoreError::ParentNotADirectory(name.as_str().to_owned())),
                };
            }
            Err(err) => return Err(io_error("create folder", &path)(err)),
        }
        self.sync_folders_of(std::iter::once(name))?;
        Ok(true)
    }

    /// Checks, without creating anything, that the folders of `name` are folders (or absent)
    /// and not symbolic links, and that the full path fits the system limit. Lets a doomed
    /// upload be refused before its bytes are sent. Blocking (a few `lstat`s).
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
        self.walk_parents_in(name, false, known)
    }

    /// The folder of `name`, opened (once per `known`) without following any symbolic link,
    /// without leaving the root and without crossing into another filesystem; `None` where
    /// the kernel cannot do that (before Linux 5.6), and the caller then uses full paths.
    pub(super) fn folder_fd<'k>(
        &self,
        name: &ValidName,
        known: &'k mut KnownFolders,
    ) -> Result<Option<std::os::fd::BorrowedFd<'k>>, StoreError> {
        use rustix::{
            fs::{Mode, OFlags, ResolveFlags},
            io::Errno,
        };
        use std::os::fd::AsFd;
        /// Folders kept open by one `KnownFolders` at most; beyond, the cache starts over.
        const MAX_OPEN_FOLDERS: usize = 256;
        let folder = name
            .as_str()
            .rsplit_once('/')
            .map_or("", |(folder, _)| folder);
        if !known.open.contains_key(folder) {
            if known.open.len() >= MAX_OPEN_FOLDERS {
                known.open.clear();
            }
            let path = if folder.is_empty() { "." } else { folder };
            let opened = rustix::fs::openat2(
                &self.root_dir,
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
            );
            let opened = match opened {
                Ok(fd) => Some(fd),
                Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) => None,
                Err(Errno::LOOP) => return Err(StoreError::SymlinkInPath(folder.to_owned())),
                Err(Errno::XDEV) => return Err(StoreError::OtherFilesystem(folder.to_owned())),
                Err(errno) => {
                    return Err(io_error("open folder", &self.root.join(folder))(
                        errno.into(),
                    ))
                }
            };
            known.open.insert(folder.to_owned(), opened);
        }
        Ok(known
            .open
            .get(folder)
            .and_then(|opened| opened.as_ref().map(|fd| fd.as_fd())))
    }

    /// Walks the folders of `name` below the root, refusing to pass through symbolic links
    /// or files; with `create`, makes the missing ones.
    pub(super) fn walk_parents(&self, name: &ValidName, create: bool) -> Result<(), StoreError> {
        self.walk_parents_in(name, create, &mut KnownFolders::default())
    }

    /// [`Store::walk_parents`], skipping folders already seen in `known` (one batch sees the
    /// same few folders thousands of times).
    pub(super) fn walk_parents_in(
        &self,
        name: &ValidName,
        create: bool,
        known: &mut KnownFolders,
    ) -> Result<(), StoreError> {
        let Some((folder, _)) = name.as_str().rsplit_once('/') else {
            return Ok(());
        };
        if known.present.contains(folder) || (!create && known.absent.contains(folder)) {
            return Ok(());
        }
        let mut path = self.root.clone();
        let mut shown_len = 0;
        for part in folder.split('/') {
            path.push(part);
            shown_len += part.len() + usize::from(shown_len > 0);
            let prefix = &folder[..shown_len];
            if known.present.contains(prefix) {
                continue;
            }
            if !create && known.absent.contains(prefix) {
                break;
            }
            let shown = || prefix.to_owned();
            match fs::symlink_metadata(&path) {
                // Another filesystem mounted inside the root would escape `syncfs` of the
                // root's filesystem, so a durable Ack could not be promised there.
                Ok(meta) if meta.is_dir() && meta.dev() != self.device => {
                    return Err(StoreError::OtherFilesystem(shown()))
                }
                Ok(meta) if meta.is_dir() => {
                    known.present.insert(prefix.to_owned());
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(StoreError::SymlinkInPath(shown()))
                }
                Ok(_) => return Err(StoreError::ParentNotADirectory(shown())),
                Err(err) if err.kind() == io::ErrorKind::NotFound && !create => {
                    known.absent.insert(prefix.to_owned());
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::create_dir(&path) {
                    Ok(()) => {
                        known.present.insert(prefix.to_owned());
                    }
                    // Another upload created it a moment ago: fine if it is a folder.
                    Err(err)
                        if err.kind() == io::ErrorKind::AlreadyExists
                            && fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) => {}
                    Err(err) => return Err(io_error("create folder", &path)(err)),
                },
                Err(err) => return Err(io_error("inspect", &path)(err)),
            }
        }
        Ok(())
    }
}
