//! Every filesystem touch of the storage directory: partial uploads, placing verified files
//! under their names, and the durability (fsync) that makes an Ack a promise.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/                 stored files, under the names clients sent (folders allowed)
//! DIR/.fts/catalog.db  the catalog (see catalog.rs)
//! DIR/.fts/partial/    uploads in progress or interrupted, one `<key>.part` per upload key;
//!                      never visible under a final name, kept for resume until the TTL
//! ```
//!
//! An upload is written to its partial file. Only after its hash matched is it fsynced and
//! moved into place with a single atomic rename, then its directory is fsynced. The partial
//! area is on the same filesystem as `DIR`, which is what makes the rename atomic.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use ft_protocol::{ConflictPolicy, Hash};

use crate::names::{NameError, ValidName, PRIVATE_DIR};

/// How many `name (n).ext` variants are tried before giving up on a crowded name.
const MAX_CONFLICT_SUFFIX: u32 = 10_000;

/// Linux's PATH_MAX: longest path, in bytes, system calls accept.
const MAX_PATH_LEN: usize = 4096;

/// Permission bits of stored files, before the umask.
const STORED_FILE_MODE: u32 = 0o644;

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused an operation.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
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
    /// A numbered variant of the name broke a name rule (it became too long).
    #[error("no numbered variant of the name is valid: {0}")]
    Name(#[from] NameError),
    /// The storage directory plus the name exceed the system's path length limit.
    #[error("'{0}' is too long a path inside the storage directory")]
    PathTooLong(String),
    /// A folder in the name is another filesystem mounted inside the storage directory.
    #[error("'{0}' is on another filesystem; files are only stored on the directory's own")]
    OtherFilesystem(String),
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
        )
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads of a partial file's prefix go through a buffer of this size.
const PREFIX_READ_BUFFER: usize = 1024 * 1024;

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

/// The storage directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    partials: PathBuf,
    /// Holds an exclusive lock on `.fts/lock` for as long as the store is open.
    _lock: File,
    /// The root, open: folders are opened relative to it, never leaving it.
    root_dir: std::os::fd::OwnedFd,
    /// The root's device: every folder written to must be on it.
    device: u64,
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
        let lock_path = root.join(PRIVATE_DIR).join("lock");
        let root_dir = rustix::fs::open(
            &root,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|errno| io_error("open", &root)(errno.into()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        // Two servers on one directory would sweep and resume each other's uploads.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StoreError::Locked(root.clone()))?;
        let device = fs::metadata(&root)
            .map_err(io_error("inspect", &root))?
            .dev();
        Ok(Self {
            root,
            partials,
            _lock: lock,
            root_dir,
            device,
            link_by_fd: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Whether the `syncfs` that makes uploads durable also flushes the file at `path` (it
    /// is on the same filesystem); false when that cannot be told.
    pub fn syncfs_covers(&self, path: &Path) -> bool {
        match (self._lock.metadata(), fs::metadata(path)) {
            (Ok(synced), Ok(other)) => synced.dev() == other.dev(),
            _ => false,
        }
    }

    /// The canonical storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's private directory inside the root.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(PRIVATE_DIR)
    }

    /// Where the interrupted or in-progress upload with this key lives.
    pub fn partial_path(&self, key: &Hash) -> PathBuf {
        self.partials.join(format!("{}.part", key.to_hex()))
    }

    /// Length of the partial upload with this key, if there is one. Blocking.
    pub fn partial_len(&self, key: &Hash) -> Result<Option<u64>, StoreError> {
        let path = self.partial_path(key);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error("inspect", &path)(err)),
        }
    }

    /// BLAKE3 state after reading the first `len` bytes of the partial upload. This re-reads
    /// the bytes from disk, so what is vouched for is what is really stored. Blocking.
    pub fn hash_partial_prefix(&self, key: &Hash, len: u64) -> Result<blake3::Hasher, StoreError> {
        let path = self.partial_path(key);
        let file = File::open(&path).map_err(io_error("open", &path))?;
        let mut hasher = blake3::Hasher::new();
        let mut reader = io::BufReader::with_capacity(PREFIX_READ_BUFFER, file.take(len));
        let copied = io::copy(&mut reader, &mut hasher).map_err(io_error("read", &path))?;
        if copied != len {
            return Err(io_error("read", &path)(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("partial upload holds {copied} bytes, not {len}"),
            )));
        }
        Ok(hasher)
    }

    /// Opens the partial upload for `key` for writing at `offset`, creating it if needed and
    /// cutting anything beyond `offset` (bytes that were never verified). Blocking.
    pub fn open_partial(&self, key: &Hash, offset: u64) -> Result<File, StoreError> {
        let path = self.partial_path(key);
        if offset == 0 {
            // A fresh upload: one system call instead of open, stat, truncate and seek.
            return OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(STORED_FILE_MODE)
                .open(&path)
                .map_err(io_error("open", &path));
        }
        // Resuming: the partial must exist (no empty file is created in its place).
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let len = file.metadata().map_err(io_error("inspect", &path))?.len();
        if len < offset {
            return Err(io_error("resume", &path)(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("partial upload shrank to {len} bytes, below offset {offset}"),
            )));
        }
        file.set_len(offset).map_err(io_error("truncate", &path))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error("seek", &path))?;
        Ok(file)
    }

    /// Removes the partial upload for `key`, if any. Blocking.
    pub fn discard_partial(&self, key: &Hash) -> Result<(), StoreError> {
        let path = self.partial_path(key);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(io_error("remove", &path)(err))
            }
            _ => Ok(()),
        }
    }

    /// Removes partial uploads untouched for longer than `ttl`, except those `in_use`.
    /// Returns how many were removed. Blocking.
    pub fn sweep_partials(&self, ttl: Duration, in_use: impl Fn(&Hash) -> bool) -> usize {
        let Ok(entries) = fs::read_dir(&self.partials) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let key = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(Hash::from_hex);
            if key.as_ref().is_some_and(&in_use) {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok());
            if age.is_some_and(|age| age > ttl) && fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), ?age, "removed stale partial upload");
                removed += 1;
            }
        }
        removed
    }

    /// Bytes available to the server in the storage directory.
    pub fn available_space(&self) -> Result<u64, StoreError> {
        let stats = rustix::fs::statvfs(&self.root)
            .map_err(|errno| io_error("query free space of", &self.root)(errno.into()))?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Makes the verified partial upload `key` durable and gives it its name. Blocking.
    ///
    /// With [`ConflictPolicy::KeepBoth`] the first free name among `name`, `name (1)`, ... is
    /// taken atomically (no-clobber rename), so two uploads racing for one name both land.
    /// With [`ConflictPolicy::Overwrite`] the rename replaces any file of that name atomically.
    /// Returns the name the file is stored under.
    pub fn commit(
        &self,
        file: &File,
        key: &Hash,
        name: &ValidName,
        policy: ConflictPolicy,
    ) -> Result<ValidName, StoreError> {
        let partial = self.partial_path(key);
        file.sync_all().map_err(io_error("sync", &partial))?;
        let stored = self.place(key, name, policy, &mut KnownFolders::default())?;

        // Every folder from the file's up to the root: one of them may have been created a
        // moment ago by another upload that has not synced it yet.
        self.sync_folders_of(std::iter::once(&stored))?;
        Ok(stored)
    }

    /// Opens a stored file for reading, refusing symbolic links anywhere in its path.
    /// Returns `None` if no regular file has that name. Blocking.
    pub fn open_stored(&self, name: &ValidName) -> Result<Option<File>, StoreError> {
        if self.walk_parents(name, false).is_err() {
            return Ok(None);
        }
        let path = name.under(&self.root);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                File::open(&path).map(Some).map_err(io_error("open", &path))
            }
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error("inspect", &path)(err)),
        }
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
    pub fn remove_stored(&self, name: &ValidName) -> Result<bool, StoreError> {
        if self.walk_parents(name, false).is_err() {
            return Ok(false);
        }
        let path = name.under(&self.root);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error("inspect", &path)(err)),
        }
    }

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
        self.walk_parents_in(name, false, known).map(drop)
    }

    /// Keys of the partial uploads present, read in one pass over the partial area.
    /// Blocking.
    pub fn partial_keys(&self) -> std::collections::HashSet<Hash> {
        fs::read_dir(&self.partials)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| {
                        let name = entry.file_name();
                        let stem = name.to_str()?.strip_suffix(".part")?.to_owned();
                        Hash::from_hex(&stem)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

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
        let partial = self.partial_path(key);
        self.walk_parents_in(name, true, known)?;
        match policy {
            ConflictPolicy::Overwrite => {
                let target = name.under(&self.root);
                fs::rename(&partial, &target).map_err(io_error("replace", &target))?;
                Ok(name.clone())
            }
            ConflictPolicy::KeepBoth => self.place_under_free_name(&partial, name),
        }
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
        self.walk_parents_in(name, true, known)?;
        let target = name.under(&self.root);
        let folder = target.parent().unwrap_or(&self.root);
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(STORED_FILE_MODE);
        let opened = match self.folder_fd(name, known)? {
            Some(fd) => rustix::fs::openat(fd, ".", flags, mode)
                .map(File::from)
                .map_err(io::Error::from),
            None => OpenOptions::new()
                .write(true)
                .custom_flags(OFlags::TMPFILE.bits() as i32)
                .mode(STORED_FILE_MODE)
                .open(folder),
        };
        let mut file = match opened {
            Ok(file) => file,
            // Old kernels and some filesystems (EOPNOTSUPP, EISDIR, EINVAL).
            Err(_) => return Ok(None),
        };
        file.write_all(bytes).map_err(io_error("write", folder))?;
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
        // The target is named relative to its open folder when there is one.
        let folder = self.folder_fd(name, known)?;
        if !self.link_by_fd.load(Ordering::Relaxed) {
            return self.link_through_proc(file, name, folder);
        }
        // The file itself as the source: no lookup through /proc, half the cost of the link
        // (measured). Needs Linux 6.10 or CAP_DAC_READ_SEARCH.
        let linked = self.first_free_name(name, |candidate, target| {
            match folder {
                Some(folder) => {
                    rustix::fs::linkat(file, "", folder, candidate.leaf(), AtFlags::EMPTY_PATH)
                }
                None => rustix::fs::linkat(file, "", rustix::fs::CWD, target, AtFlags::EMPTY_PATH),
            }
            .map_err(io::Error::from)
        });
        let refused = |err: &io::Error| {
            let errno = err.raw_os_error().map(Errno::from_raw_os_error);
            errno == Some(Errno::NOENT) || errno == Some(Errno::PERM)
        };
        match linked {
            Err(StoreError::Io { ref source, .. }) if refused(source) => {
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
        folder: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<ValidName, StoreError> {
        use rustix::fs::{AtFlags, CWD};
        use std::os::fd::AsRawFd;
        let source = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        self.first_free_name(name, |candidate, target| {
            match folder {
                Some(folder) => rustix::fs::linkat(
                    CWD,
                    &source,
                    folder,
                    candidate.leaf(),
                    AtFlags::SYMLINK_FOLLOW,
                ),
                None => rustix::fs::linkat(CWD, &source, CWD, target, AtFlags::SYMLINK_FOLLOW),
            }
            .map_err(io::Error::from)
        })
    }

    /// Writes a small upload's bytes as its complete partial file. Blocking.
    pub fn write_partial(&self, key: &Hash, bytes: &[u8]) -> Result<File, StoreError> {
        let mut file = self.open_partial(key, 0)?;
        file.write_all(bytes)
            .map_err(io_error("write", &self.partial_path(key)))?;
        Ok(file)
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
            let target = name.under(&self.root);
            let mut folder = target.parent();
            while let Some(dir) = folder.filter(|dir| dir.starts_with(&self.root)) {
                if !folders.insert(dir.to_path_buf()) {
                    break;
                }
                folder = dir.parent();
            }
        }
        folders.iter().try_for_each(|dir| sync_dir(dir))
    }

    /// Makes every rename and new folder durable: one `syncfs`. Blocking.
    pub fn sync_names(&self) -> Result<(), StoreError> {
        self.sync_filesystem()
    }

    fn sync_filesystem(&self) -> Result<(), StoreError> {
        rustix::fs::syncfs(&self._lock)
            .map_err(|errno| io_error("sync the filesystem of", &self.root)(errno.into()))
    }

    /// The folder of `name`, opened (once per `known`) without following any symbolic link,
    /// without leaving the root and without crossing into another filesystem; `None` where
    /// the kernel cannot do that (before Linux 5.6), and the caller then uses full paths.
    fn folder_fd<'k>(
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

    fn place_under_free_name(
        &self,
        partial: &Path,
        name: &ValidName,
    ) -> Result<ValidName, StoreError> {
        self.first_free_name(name, |_, target| rename_no_clobber(partial, target))
    }

    /// Tries `take` on `name`, `name (1)`, `name (2)`, ... until it does not fail with
    /// `AlreadyExists`; `take` must be atomic and never replace (a no-clobber rename or a
    /// link), which is what makes racing uploads all land.
    fn first_free_name(
        &self,
        name: &ValidName,
        mut take: impl FnMut(&ValidName, &Path) -> io::Result<()>,
    ) -> Result<ValidName, StoreError> {
        for n in 0..=MAX_CONFLICT_SUFFIX {
            let candidate = if n == 0 {
                name.clone()
            } else {
                name.numbered(n)?
            };
            let target = candidate.under(&self.root);
            match take(&candidate, &target) {
                Ok(()) => return Ok(candidate),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io_error("store", &target)(err)),
            }
        }
        Err(StoreError::NoFreeName(name.as_str().to_owned()))
    }

    /// Walks the folders of `name` below the root, refusing to pass through symbolic links
    /// or files; with `create`, makes the missing ones. Returns the folders it created.
    fn walk_parents(&self, name: &ValidName, create: bool) -> Result<Vec<PathBuf>, StoreError> {
        self.walk_parents_in(name, create, &mut KnownFolders::default())
    }

    /// [`Store::walk_parents`], skipping folders already seen in `known` (one batch sees the
    /// same few folders thousands of times).
    fn walk_parents_in(
        &self,
        name: &ValidName,
        create: bool,
        known: &mut KnownFolders,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let mut created = Vec::new();
        let Some((folder, _)) = name.as_str().rsplit_once('/') else {
            return Ok(created);
        };
        if known.present.contains(folder) || (!create && known.absent.contains(folder)) {
            return Ok(created);
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
                        created.push(path.clone());
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
        Ok(created)
    }
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), atomically:
/// `renameat2(RENAME_NOREPLACE)`, or link + unlink on filesystems without it.
fn rename_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(errno) if errno == rustix::io::Errno::INVAL || errno == rustix::io::Errno::NOSYS => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// fsync a directory so that entries created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync folder", dir))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn key(n: u8) -> Hash {
        Hash([n; 32])
    }

    /// Writes `content` as the complete partial upload for `key` and returns its handle.
    fn partial_with(store: &Store, key: &Hash, content: &[u8]) -> File {
        let mut file = store.open_partial(key, 0).unwrap();
        file.write_all(content).unwrap();
        file
    }

    fn name(text: &str) -> ValidName {
        ValidName::parse(text).unwrap()
    }

    fn commit(
        store: &Store,
        n: u8,
        content: &[u8],
        to: &str,
        policy: ConflictPolicy,
    ) -> Result<ValidName, StoreError> {
        let file = partial_with(store, &key(n), content);
        store.commit(&file, &key(n), &name(to), policy)
    }

    #[test]
    fn keep_both_numbers_the_second_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = commit(&store, 1, b"one", "a.txt", ConflictPolicy::KeepBoth).unwrap();
        let second = commit(&store, 2, b"two", "a.txt", ConflictPolicy::KeepBoth).unwrap();
        assert_eq!(first.as_str(), "a.txt");
        assert_eq!(second.as_str(), "a (1).txt");
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("a (1).txt")).unwrap(), b"two");
        assert_eq!(
            store.partial_len(&key(2)).unwrap(),
            None,
            "committed uploads leave the partial area"
        );
    }

    #[test]
    fn uploads_racing_for_one_name_all_get_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let racers = 16u8;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(racers as usize));
        let handles: Vec<_> = (0..racers)
            .map(|n| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let file = partial_with(&store, &key(n), &[n]);
                    file.sync_all().unwrap();
                    barrier.wait(); // all place at the same moment
                    store
                        .place(
                            &key(n),
                            &name("race/same.bin"),
                            ConflictPolicy::KeepBoth,
                            &mut KnownFolders::default(),
                        )
                        .unwrap()
                })
            })
            .collect();
        let mut names: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().unwrap().as_str().to_owned())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), racers as usize, "every racer got its own name");
        let mut contents: Vec<u8> = names
            .iter()
            .map(|n| fs::read(dir.path().join(n)).unwrap()[0])
            .collect();
        contents.sort();
        assert_eq!(
            contents,
            (0..racers).collect::<Vec<_>>(),
            "and kept its own bytes"
        );
    }

    #[test]
    fn overwrite_replaces_and_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        commit(&store, 1, b"old", "x/y/z", ConflictPolicy::Overwrite).unwrap();
        commit(&store, 2, b"new", "x/y/z", ConflictPolicy::Overwrite).unwrap();
        assert_eq!(fs::read(dir.path().join("x/y/z")).unwrap(), b"new");
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("plain"), b"").unwrap();
        let err = commit(&store, 1, b"x", "plain/inner", ConflictPolicy::KeepBoth).unwrap_err();
        assert!(matches!(err, StoreError::ParentNotADirectory(p) if p == "plain"));
    }

    #[test]
    fn symlinked_folders_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let err = commit(&store, 1, b"x", "link/f", ConflictPolicy::KeepBoth).unwrap_err();
        assert!(matches!(err, StoreError::SymlinkInPath(_)));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn partials_resume_at_a_verified_offset_and_cut_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        drop(partial_with(&store, &key(7), b"hello world"));
        assert_eq!(store.partial_len(&key(7)).unwrap(), Some(11));
        let prefix = store.hash_partial_prefix(&key(7), 5).unwrap();
        assert_eq!(prefix.finalize(), blake3::hash(b"hello"));
        let mut file = store.open_partial(&key(7), 5).unwrap();
        file.write_all(b", ft").unwrap();
        assert_eq!(fs::read(store.partial_path(&key(7))).unwrap(), b"hello, ft");
        assert!(
            store.open_partial(&key(7), 100).is_err(),
            "cannot resume beyond what is held"
        );
        assert!(store.hash_partial_prefix(&key(7), 100).is_err());
    }

    #[test]
    fn sweeping_removes_only_old_unused_partials() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 1..=3 {
            drop(partial_with(&store, &key(n), b"data"));
        }
        assert_eq!(
            store.sweep_partials(Duration::from_secs(3600), |_| false),
            0
        );
        std::thread::sleep(Duration::from_millis(20));
        let removed = store.sweep_partials(Duration::from_millis(1), |k| *k == key(2));
        assert_eq!(removed, 2);
        assert_eq!(store.partial_len(&key(2)).unwrap(), Some(4));
        assert_eq!(store.partial_len(&key(1)).unwrap(), None);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop(first);
        assert!(Store::open(dir.path()).is_ok());
    }

    #[test]
    fn doomed_names_are_caught_before_any_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("file"), b"").unwrap();
        assert!(store.check_placeable(&name("new/folder/f")).is_ok());
        assert!(!dir.path().join("new").exists(), "checking creates nothing");
        let err = store.check_placeable(&name("file/inner")).unwrap_err();
        assert!(err.is_about_the_name());
        let deep = vec!["d".repeat(255); 16].join("/"); // 4095 bytes: a valid name, too long a path
        assert!(matches!(
            store.check_placeable(&name(&deep)),
            Err(StoreError::PathTooLong(_))
        ));
    }

    #[test]
    fn stored_files_open_delete_and_folders_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        commit(&store, 1, b"content", "a/b.txt", ConflictPolicy::KeepBoth).unwrap();
        let file = store.open_stored(&name("a/b.txt")).unwrap().unwrap();
        let prefix = Store::hash_prefix(&file, 3).unwrap().unwrap();
        assert_eq!(prefix.finalize(), blake3::hash(b"con"));
        assert!(store.open_stored(&name("a/missing")).unwrap().is_none());
        assert!(
            store.open_stored(&name("a")).unwrap().is_none(),
            "folders are not files"
        );
        assert!(store.remove_stored(&name("a/b.txt")).unwrap());
        assert!(!store.remove_stored(&name("a/b.txt")).unwrap());
        assert!(store.make_dir(&name("x/y/z")).unwrap());
        assert!(!store.make_dir(&name("x/y/z")).unwrap());
        assert!(dir.path().join("x/y/z").is_dir());
    }

    #[test]
    fn unnamed_files_get_free_names_and_leave_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut known = KnownFolders::default();
        let Some(first) = store
            .create_unnamed(&name("a/b.txt"), b"one", &mut known)
            .unwrap()
        else {
            return; // no O_TMPFILE here: the partial area is used instead
        };
        let second = store
            .create_unnamed(&name("a/b.txt"), b"two", &mut known)
            .unwrap()
            .unwrap();
        let dropped = store
            .create_unnamed(&name("a/c.txt"), b"gone", &mut known)
            .unwrap()
            .unwrap();
        drop(dropped);
        assert_eq!(
            store
                .link_unnamed(&first, &name("a/b.txt"), &mut known)
                .unwrap()
                .as_str(),
            "a/b.txt"
        );
        assert_eq!(
            store
                .link_unnamed(&second, &name("a/b.txt"), &mut known)
                .unwrap()
                .as_str(),
            "a/b (1).txt"
        );
        assert_eq!(fs::read(dir.path().join("a/b.txt")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("a/b (1).txt")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("a"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.available_space().unwrap() > 0);
    }
}
