//! Partial uploads: one `<key>.part` file per upload key in `DIR/.fts/partial/`, written
//! while an upload is in progress and kept after an interruption so a reconnecting client can
//! resume it. Nothing here ever carries a final name. Every file is opened relative to the
//! partial area's descriptor, never following a link.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use ft_protocol::Hash;
use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags},
    io::Errno,
};

use super::{io_error, Store, StoreError, PREFIX_READ_BUFFER, STORED_FILE_MODE};

/// One partial upload, as found in the partial area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialUpload {
    /// Its upload key.
    pub key: Hash,
    /// Bytes held.
    pub len: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

impl Store {
    /// Where the interrupted or in-progress upload with this key lives (for messages: the
    /// store itself opens it relative to the partial area's descriptor).
    pub fn partial_path(&self, key: &Hash) -> PathBuf {
        self.partials.join(Self::partial_file_name(key))
    }

    /// The partial upload's file name inside the partial area.
    pub(super) fn partial_file_name(key: &Hash) -> String {
        format!("{}.part", key.to_hex())
    }

    fn open_partial_file(&self, key: &Hash, flags: OFlags) -> Result<File, StoreError> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(
            &self.partials_dir,
            Self::partial_file_name(key),
            flags,
            Mode::from_raw_mode(STORED_FILE_MODE),
        )
        .map(File::from)
        .map_err(|errno| io_error("open", &self.partial_path(key))(errno.into()))
    }

    /// Length of the partial upload with this key, if there is one. Blocking.
    pub fn partial_len(&self, key: &Hash) -> Result<Option<u64>, StoreError> {
        let name = Self::partial_file_name(key);
        match rustix::fs::statat(&self.partials_dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode).is_file() => {
                Ok(Some(stat.st_size as u64))
            }
            Ok(_) | Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(io_error("inspect", &self.partial_path(key))(errno.into())),
        }
    }

    /// BLAKE3 state after reading the first `len` bytes of the partial upload. This re-reads
    /// the bytes from disk, so what is vouched for is what is really stored. Blocking.
    pub fn hash_partial_prefix(&self, key: &Hash, len: u64) -> Result<blake3::Hasher, StoreError> {
        let path = self.partial_path(key);
        let file = self.open_partial_file(key, OFlags::RDONLY | OFlags::NONBLOCK)?;
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
            return self.open_partial_file(key, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC);
        }
        // Resuming: the partial must exist (no empty file is created in its place).
        let mut file = self.open_partial_file(key, OFlags::WRONLY | OFlags::NONBLOCK)?;
        let meta = file.metadata().map_err(io_error("inspect", &path))?;
        if !meta.is_file() {
            return Err(io_error("resume", &path)(io::ErrorKind::InvalidData.into()));
        }
        let len = meta.len();
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
        let name = Self::partial_file_name(key);
        match rustix::fs::unlinkat(&self.partials_dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(io_error("remove", &self.partial_path(key))(errno.into())),
        }
    }

    /// Every partial upload present, read in one pass over the partial area. Blocking.
    pub fn partials(&self) -> Vec<PartialUpload> {
        let mut found = Vec::new();
        self.for_each_partial_key(|key| {
            let name = Self::partial_file_name(&key);
            let Ok(stat) = rustix::fs::statat(&self.partials_dir, name, AtFlags::SYMLINK_NOFOLLOW)
            else {
                return;
            };
            if !FileType::from_raw_mode(stat.st_mode).is_file() {
                return;
            }
            let modified = SystemTime::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(stat.st_mtime).unwrap_or(0),
                    u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
                );
            found.push(PartialUpload {
                key,
                len: stat.st_size as u64,
                modified,
            });
        });
        found
    }

    /// Removes partial uploads untouched for longer than `ttl`, except those `in_use`.
    /// Returns how many were removed. Blocking.
    pub fn sweep_partials(&self, ttl: Duration, in_use: impl Fn(&Hash) -> bool) -> usize {
        let now = SystemTime::now();
        let mut removed = 0;
        for partial in self.partials() {
            if in_use(&partial.key) {
                continue;
            }
            let age = now.duration_since(partial.modified).ok();
            if age.is_some_and(|age| age > ttl) && self.discard_partial(&partial.key).is_ok() {
                tracing::info!(key = %partial.key.to_hex(), ?age, "removed stale partial upload");
                removed += 1;
            }
        }
        removed
    }

    /// Keys of the partial uploads present, read in one pass over the partial area (names
    /// only, no `stat` per file). Blocking.
    pub fn partial_keys(&self) -> std::collections::HashSet<Hash> {
        let mut keys = std::collections::HashSet::new();
        self.for_each_partial_key(|key| {
            keys.insert(key);
        });
        keys
    }

    fn for_each_partial_key(&self, mut found: impl FnMut(Hash)) {
        let Ok(mut entries) = rustix::fs::Dir::read_from(&self.partials_dir) else {
            return;
        };
        while let Some(Ok(entry)) = entries.next() {
            let key = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|name| name.strip_suffix(".part"))
                .and_then(Hash::from_hex);
            if let Some(key) = key {
                found(key);
            }
        }
    }

    /// Writes a small upload's bytes as its complete partial file. Blocking.
    pub fn write_partial(&self, key: &Hash, bytes: &[u8]) -> Result<File, StoreError> {
        let mut file = self.open_partial(key, 0)?;
        file.write_all(bytes)
            .map_err(io_error("write", &self.partial_path(key)))?;
        Ok(file)
    }
}
