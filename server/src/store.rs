//! Every filesystem touch of the storage directory: staging files, placing verified files
//! under their names, and the durability (fsync) that makes an Ack a promise.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/                 stored files, under the names clients sent (folders allowed)
//! DIR/.fts/catalog.db  the catalog (see catalog.rs)
//! DIR/.fts/staging/    uploads in progress; never visible under a final name
//! ```
//!
//! An upload is written to a fresh file in staging. Only after its hash matched is it
//! fsynced and moved into place with a single atomic rename, then its directory is fsynced.
//! Staging is on the same filesystem as `DIR`, which is what makes the rename atomic.

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io,
    path::{Path, PathBuf},
};

use ft_protocol::ConflictPolicy;
use tempfile::NamedTempFile;

use crate::names::{NameError, ValidName, PRIVATE_DIR};

/// How many `name (n).ext` variants are tried before giving up on a crowded name.
const MAX_CONFLICT_SUFFIX: u32 = 10_000;

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
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The storage directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    staging: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the storage directory. Staging files left by a previous
    /// run were never acknowledged, so they are removed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        let root = dir.canonicalize().map_err(io_error("resolve", dir))?;
        let staging = root.join(PRIVATE_DIR).join("staging");
        fs::create_dir_all(&staging).map_err(io_error("create", &staging))?;
        let stale = fs::read_dir(&staging).map_err(io_error("read", &staging))?;
        for entry in stale.flatten() {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing unfinished upload from a previous run");
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
        Ok(Self { root, staging })
    }

    /// The canonical storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's private directory inside the root.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(PRIVATE_DIR)
    }

    /// A new, empty staging file. It is deleted when dropped unless committed.
    pub fn new_staged_file(&self) -> Result<NamedTempFile, StoreError> {
        tempfile::Builder::new()
            // Stored files are ordinary files (the umask still applies), not private temp files.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                STORED_FILE_MODE,
            ))
            .prefix("upload-")
            .suffix(".part")
            .tempfile_in(&self.staging)
            .map_err(io_error("create a staging file in", &self.staging))
    }

    /// Makes a verified staging file durable and gives it its name. Blocking.
    ///
    /// With [`ConflictPolicy::KeepBoth`] the first free name among `name`, `name (1)`, ... is
    /// taken atomically (no-clobber rename), so two uploads racing for one name both land.
    /// With [`ConflictPolicy::Overwrite`] the rename replaces any file of that name atomically.
    /// Returns the name the file is stored under.
    pub fn commit(
        &self,
        staged: NamedTempFile,
        name: &ValidName,
        policy: ConflictPolicy,
    ) -> Result<ValidName, StoreError> {
        staged
            .as_file()
            .sync_all()
            .map_err(io_error("sync", staged.path()))?;
        let created_dirs = self.create_parents(name)?;

        let stored = match policy {
            ConflictPolicy::Overwrite => {
                let target = name.under(&self.root);
                staged
                    .persist(&target)
                    .map_err(|err| io_error("replace", &target)(err.error))?;
                name.clone()
            }
            ConflictPolicy::KeepBoth => self.persist_under_free_name(staged, name)?,
        };

        let target = stored.under(&self.root);
        let mut dirs_to_sync: BTreeSet<PathBuf> = created_dirs
            .iter()
            .filter_map(|dir| dir.parent().map(Path::to_path_buf))
            .collect();
        if let Some(parent) = target.parent() {
            dirs_to_sync.insert(parent.to_path_buf());
        }
        for dir in &dirs_to_sync {
            sync_dir(dir)?;
        }
        Ok(stored)
    }

    fn persist_under_free_name(
        &self,
        mut staged: NamedTempFile,
        name: &ValidName,
    ) -> Result<ValidName, StoreError> {
        for n in 0..=MAX_CONFLICT_SUFFIX {
            let candidate = if n == 0 {
                name.clone()
            } else {
                name.numbered(n)?
            };
            let target = candidate.under(&self.root);
            match staged.persist_noclobber(&target) {
                Ok(_) => return Ok(candidate),
                Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => staged = err.file,
                Err(err) => return Err(io_error("store", &target)(err.error)),
            }
        }
        Err(StoreError::NoFreeName(name.as_str().to_owned()))
    }

    /// Creates the folders of `name` below the root, refusing to pass through symbolic links
    /// or files. Returns the folders it created.
    fn create_parents(&self, name: &ValidName) -> Result<Vec<PathBuf>, StoreError> {
        let mut created = Vec::new();
        let mut path = self.root.clone();
        let parts: Vec<&str> = name.as_str().split('/').collect();
        let folder_parts = &parts[..parts.len().saturating_sub(1)];
        for (depth, part) in folder_parts.iter().enumerate() {
            path.push(part);
            let shown = || folder_parts[..=depth].join("/");
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(StoreError::SymlinkInPath(shown()))
                }
                Ok(_) => return Err(StoreError::ParentNotADirectory(shown())),
                Err(err) if err.kind() == io::ErrorKind::NotFound => match fs::create_dir(&path) {
                    Ok(()) => created.push(path.clone()),
                    // Another upload created it a moment ago: fine if it is a folder.
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                    Err(err) => return Err(io_error("create folder", &path)(err)),
                },
                Err(err) => return Err(io_error("inspect", &path)(err)),
            }
        }
        Ok(created)
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

    fn staged_with(store: &Store, content: &[u8]) -> NamedTempFile {
        let mut file = store.new_staged_file().unwrap();
        file.write_all(content).unwrap();
        file
    }

    fn name(text: &str) -> ValidName {
        ValidName::parse(text).unwrap()
    }

    #[test]
    fn keep_both_numbers_the_second_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store
            .commit(
                staged_with(&store, b"one"),
                &name("a.txt"),
                ConflictPolicy::KeepBoth,
            )
            .unwrap();
        let second = store
            .commit(
                staged_with(&store, b"two"),
                &name("a.txt"),
                ConflictPolicy::KeepBoth,
            )
            .unwrap();
        assert_eq!(first.as_str(), "a.txt");
        assert_eq!(second.as_str(), "a (1).txt");
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("a (1).txt")).unwrap(), b"two");
    }

    #[test]
    fn overwrite_replaces_and_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for content in [&b"old"[..], b"new"] {
            store
                .commit(
                    staged_with(&store, content),
                    &name("x/y/z"),
                    ConflictPolicy::Overwrite,
                )
                .unwrap();
        }
        assert_eq!(fs::read(dir.path().join("x/y/z")).unwrap(), b"new");
        let staging = fs::read_dir(dir.path().join(".fts/staging"))
            .unwrap()
            .count();
        assert_eq!(staging, 0, "committed files leave staging");
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("plain"), b"").unwrap();
        let err = store
            .commit(
                staged_with(&store, b"x"),
                &name("plain/inner"),
                ConflictPolicy::KeepBoth,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::ParentNotADirectory(p) if p == "plain"));
    }

    #[test]
    fn symlinked_folders_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let err = store
            .commit(
                staged_with(&store, b"x"),
                &name("link/f"),
                ConflictPolicy::KeepBoth,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::SymlinkInPath(_)));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_staging_files_vanish_and_stale_ones_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        drop(staged_with(&store, b"abandoned"));
        let kept = staged_with(&store, b"crash leftover")
            .into_temp_path()
            .keep()
            .unwrap();
        assert!(kept.exists());
        Store::open(dir.path()).unwrap();
        assert!(!kept.exists());
    }
}
