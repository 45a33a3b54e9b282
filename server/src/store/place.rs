//! Placement: giving a verified file its name, atomically, with the keep-both or overwrite
//! rule. Nothing here flushes; the commit orders placement between the data's flush and the
//! names' flush (see commit.rs).

use std::{
    fs::File,
    io::{self, Write},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::PathBuf,
};

use ft_protocol::{ConflictPolicy, Hash};

use super::{
    durability::start_writeback, folders::KnownFolders, io_error, Store, StoreError,
    STORED_FILE_MODE,
};
use crate::names::ValidName;

/// Numbered variants tried one after the other (`name (1)` .. `name (8)`) before the search
/// starts doubling: the usual few copies get the next number, and a name crowded on purpose
/// (thousands of squatted variants) costs a few dozen attempts, not thousands.
const SEQUENTIAL_SUFFIXES: u32 = 8;

/// The largest number a variant may carry; past it the name is refused as crowded.
const MAX_CONFLICT_SUFFIX: u32 = 1 << 24;

impl Store {
    /// Renames the partial upload `key` to `name` (creating its folders), without syncing:
    /// the caller makes data durable before and names durable after (see commit.rs).
    /// Blocking.
    pub fn place(
        &self,
        key: &Hash,
        name: &ValidName,
        policy: ConflictPolicy,
        known: &mut KnownFolders,
    ) -> Result<ValidName, StoreError> {
        let (area, partial) = self.partial_source(key)?;
        let Some(folder) = self.folder_of(name, true, known)? else {
            return Err(StoreError::ParentNotADirectory(name.as_str().to_owned()));
        };
        let placed = match policy {
            ConflictPolicy::Overwrite => {
                // A link in the way is replaced itself, never followed; a folder refuses.
                rustix::fs::renameat(&area, &partial, folder, name.leaf())
                    .map_err(|errno| io_error("replace", &name.under(&self.root))(errno.into()))
                    .map(|()| name.clone())
            }
            ConflictPolicy::KeepBoth => self.first_free_name(name, |candidate| {
                rename_no_clobber(area.as_fd(), &partial, folder, candidate.leaf())
            }),
            ConflictPolicy::Skip => {
                match rename_no_clobber(area.as_fd(), &partial, folder, name.leaf()) {
                    Ok(()) => Ok(name.clone()),
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        Err(StoreError::NameTaken(name.as_str().to_owned()))
                    }
                    Err(err) => Err(io_error("store", &name.under(&self.root))(err)),
                }
            }
        };
        if placed.is_ok() {
            self.forget_partial(key);
        }
        placed
    }

    /// Writes `bytes` into a new file without a name inside the folder of `name` (creating
    /// the folders), to be given its name by [`Store::link_unnamed`]. Nothing is left behind
    /// if the server dies first. `None` where the filesystem has no unnamed files (then the
    /// caller uses the partial area). Blocking.
    pub fn create_unnamed(
        &self,
        name: &ValidName,
        bytes: &[u8],
        known: &mut KnownFolders,
    ) -> Result<Option<File>, StoreError> {
        use rustix::fs::{Mode, OFlags};
        let Some(folder) = self.folder_of(name, true, known)? else {
            return Ok(None);
        };
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(STORED_FILE_MODE);
        let opened = rustix::fs::openat(folder, ".", flags, mode).map(File::from);
        let mut file = match opened {
            Ok(file) => file,
            // Old kernels and some filesystems (EOPNOTSUPP, EISDIR, EINVAL).
            Err(_) => return Ok(None),
        };
        file.write_all(bytes)
            .map_err(io_error("write", &name.under(&self.root)))?;
        if self.others_busy() {
            start_writeback(&file);
        }
        Ok(Some(file))
    }

    /// Gives an unnamed file its name, keeping both on a conflict: the first free name among
    /// `name`, `name (1)`, ... (a link fails atomically if the name is taken). Blocking.
    pub fn link_unnamed(
        &self,
        file: &File,
        name: &ValidName,
        known: &mut KnownFolders,
    ) -> Result<ValidName, StoreError> {
        use rustix::{fs::AtFlags, io::Errno};
        use std::sync::atomic::Ordering;
        let Some(folder) = self.folder_of(name, true, known)? else {
            return Err(StoreError::ParentNotADirectory(name.as_str().to_owned()));
        };
        if !self.link_by_fd.load(Ordering::Relaxed) {
            return self.link_through_proc(file, name, folder);
        }
        // The file itself as the source: no lookup through /proc, half the cost of the link
        // (measured). Needs Linux 6.10 or CAP_DAC_READ_SEARCH.
        let linked = self.first_free_name(name, |candidate| {
            rustix::fs::linkat(file, "", folder, candidate.leaf(), AtFlags::EMPTY_PATH)
                .map_err(io::Error::from)
        });
        let refused = |err: &io::Error| {
            let errno = err.raw_os_error().map(Errno::from_raw_os_error);
            errno == Some(Errno::NOENT) || errno == Some(Errno::PERM)
        };
        match linked {
            Err(StoreError::Io { ref cause, .. }) if refused(cause) => {
                let through_proc = self.link_through_proc(file, name, folder);
                if through_proc.is_ok() {
                    // Refused for want of the privilege, not for the target: never ask again.
                    self.link_by_fd.store(false, Ordering::Relaxed);
                }
                through_proc
            }
            other => other,
        }
    }

    /// [`Store::link_unnamed`] the portable way, without extra privileges.
    fn link_through_proc(
        &self,
        file: &File,
        name: &ValidName,
        folder: BorrowedFd<'_>,
    ) -> Result<ValidName, StoreError> {
        use rustix::fs::{AtFlags, CWD};
        let source = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        self.first_free_name(name, |candidate| {
            rustix::fs::linkat(
                CWD,
                &source,
                folder,
                candidate.leaf(),
                AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        })
    }

    /// Tries `take` on `name`, `name (1)`, `name (2)`, ... until it does not fail with
    /// `AlreadyExists`; `take` must be atomic and never replace (a no-clobber rename or a
    /// link), which is what makes racing uploads all land.
    fn first_free_name(
        &self,
        name: &ValidName,
        mut take: impl FnMut(&ValidName) -> io::Result<()>,
    ) -> Result<ValidName, StoreError> {
        // 0 (the name itself), 1..=8, then 16, 32, 64, ...: O(log n) attempts however many
        // variants are taken.
        let candidates = (0..=SEQUENTIAL_SUFFIXES).chain(
            std::iter::successors(Some(SEQUENTIAL_SUFFIXES * 2), |n| n.checked_mul(2))
                .take_while(|n| *n <= MAX_CONFLICT_SUFFIX),
        );
        for n in candidates {
            let candidate = if n == 0 {
                name.clone()
            } else {
                name.numbered(n).map_err(StoreError::Name)?
            };
            match take(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io_error("store", &candidate.under(&self.root))(err)),
            }
        }
        Err(StoreError::NoFreeName(name.as_str().to_owned()))
    }
}

/// Renames `from` (in folder `from_dir`) to `to` (in `to_dir`) unless `to` exists (then
/// `AlreadyExists`), atomically: `renameat2(RENAME_NOREPLACE)`, or link + unlink on
/// filesystems without it.
fn rename_no_clobber(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    use rustix::fs::{linkat, renameat_with, unlinkat, AtFlags, RenameFlags};
    match renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(errno) if errno == rustix::io::Errno::INVAL || errno == rustix::io::Errno::NOSYS => {
            linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
            Ok(unlinkat(from_dir, from, AtFlags::empty())?)
        }
        Err(errno) => Err(errno.into()),
    }
}
