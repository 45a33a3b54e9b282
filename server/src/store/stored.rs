//! Files already stored under their names: opened for download, hashed, removed.

use std::{
    fs::{self, File},
    io::{self, Read},
};

use super::{durability::sync_dir, io_error, Store, StoreError, PREFIX_READ_BUFFER};
use crate::names::ValidName;

impl Store {
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
    /// A name whose folders pass through a symbolic link or a file, or that is itself a link
    /// or a folder, is an error: its record must not be dropped while something else stays
    /// in its place.
    pub fn remove_stored(&self, name: &ValidName) -> Result<bool, StoreError> {
        self.walk_parents(name, false)?;
        let path = name.under(&self.root);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                Err(StoreError::SymlinkInPath(name.as_str().to_owned()))
            }
            Ok(_) => Err(StoreError::NotAFile(name.as_str().to_owned())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error("inspect", &path)(err)),
        }
    }
}
