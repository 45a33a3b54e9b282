//! Partial uploads: one `<key>.part` file per upload key in `DIR/.fts/partial/`, written
//! while an upload is in progress and kept after an interruption so a reconnecting client can
//! resume it. Nothing here ever carries a final name.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use ft_protocol::Hash;

use super::{io_error, Store, StoreError, PREFIX_READ_BUFFER, STORED_FILE_MODE};

impl Store {
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

    /// Writes a small upload's bytes as its complete partial file. Blocking.
    pub fn write_partial(&self, key: &Hash, bytes: &[u8]) -> Result<File, StoreError> {
        let mut file = self.open_partial(key, 0)?;
        file.write_all(bytes)
            .map_err(io_error("write", &self.partial_path(key)))?;
        Ok(file)
    }
}
