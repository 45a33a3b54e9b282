//! Folders resolved beneath the storage directory's descriptor, never through a path that
//! was checked earlier: someone who can write inside `DIR` may swap a folder for a symbolic
//! link at any moment, and a check followed by a use of the full path would then act outside
//! `DIR`. Every folder is opened relative to the root's descriptor, refusing symbolic links
//! and other filesystems at every component, and the store then acts on that descriptor
//! (`openat`, `renameat2`, `linkat`, `unlinkat`, `mkdirat`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags},
    io::Errno,
};

/// Mode of folders the server creates, before the umask.
const FOLDER_MODE: u32 = 0o755;

/// Why a folder could not be opened; names the part of the folder at fault.
#[derive(Debug)]
pub(super) enum FolderError {
    /// `part` (the folder's path up to and including the failing component) is missing.
    Missing,
    /// `part` is a symbolic link.
    Symlink(String),
    /// `part` is a file or something else than a folder.
    NotAFolder(String),
    /// `part` is on another filesystem.
    OtherFilesystem(String),
    /// The system refused.
    Io(String, Errno),
}

/// Opens `folder` (`a/b`, or empty for the root itself) beneath `root`, creating the missing
/// parts when `create` is set. Components are valid names (no `.`, `..` or empty parts),
/// so every step stays beneath `root` by construction; links are refused at every step.
pub(super) fn open_folder(
    root: BorrowedFd<'_>,
    device: u64,
    folder: &str,
    create: bool,
) -> Result<OwnedFd, FolderError> {
    let path = if folder.is_empty() { "." } else { folder };
    // One system call for the whole path where the kernel can (Linux 5.6 and later).
    match rustix::fs::openat2(
        root,
        path,
        folder_flags(),
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if !create => return Err(FolderError::Missing),
        // Creating, or naming the part at fault: one component at a time.
        Err(_) => {}
    }
    walk(root, device, folder, create)
}

/// [`open_folder`] one component at a time, each opened relative to the one before with
/// `O_NOFOLLOW`, made when missing (with `create`).
fn walk(
    root: BorrowedFd<'_>,
    device: u64,
    folder: &str,
    create: bool,
) -> Result<OwnedFd, FolderError> {
    let mut current =
        rustix::io::dup(root).map_err(|errno| FolderError::Io(String::new(), errno))?;
    if folder.is_empty() {
        return Ok(current);
    }
    let mut shown_len = 0;
    for part in folder.split('/') {
        shown_len += part.len() + usize::from(shown_len > 0);
        let shown = || folder[..shown_len].to_owned();
        let opened = match open_component(current.as_fd(), part) {
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(current.as_fd(), part, Mode::from_raw_mode(FOLDER_MODE)) {
                    // Another upload made it a moment ago: opened below like any folder.
                    Ok(()) | Err(Errno::EXIST) => open_component(current.as_fd(), part),
                    Err(errno) => return Err(FolderError::Io(shown(), errno)),
                }
            }
            other => other,
        };
        let opened = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(FolderError::Missing),
            // `O_NOFOLLOW` with `O_DIRECTORY` answers ELOOP or ENOTDIR for a link,
            // depending on the kernel: what is there says which.
            Err(errno @ (Errno::LOOP | Errno::NOTDIR)) => {
                return Err(
                    match rustix::fs::statat(current.as_fd(), part, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat) if FileType::from_raw_mode(stat.st_mode).is_symlink() => {
                            FolderError::Symlink(shown())
                        }
                        Ok(_) => FolderError::NotAFolder(shown()),
                        Err(_) => FolderError::Io(shown(), errno),
                    },
                )
            }
            Err(errno) => return Err(FolderError::Io(shown(), errno)),
        };
        let stat = rustix::fs::fstat(&opened).map_err(|errno| FolderError::Io(shown(), errno))?;
        if stat.st_dev != device {
            return Err(FolderError::OtherFilesystem(shown()));
        }
        current = opened;
    }
    Ok(current)
}

fn open_component(folder: BorrowedFd<'_>, part: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        folder,
        part,
        folder_flags() | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

/// Folders are opened for reading (not `O_PATH`) so the same descriptor can be flushed.
fn folder_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// The folder part of a `/`-separated name (empty at the top).
pub(super) fn folder_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// Every folder from `folder` up to the root (`a/b`, `a`, ``), deepest first.
pub(super) fn folder_and_parents(folder: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(folder), |current| {
        (!current.is_empty()).then(|| folder_of(current))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_run_up_to_the_root() {
        let all: Vec<_> = folder_and_parents("a/b/c").collect();
        assert_eq!(all, ["a/b/c", "a/b", "a", ""]);
        assert_eq!(folder_and_parents("").collect::<Vec<_>>(), [""]);
    }
}
