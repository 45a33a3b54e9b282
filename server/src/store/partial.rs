//! Partial uploads: one `<key>.part` file per upload key in `DIR/.fts/partial/<owner>/`,
//! written while an upload is in progress and kept after an interruption so a reconnecting
//! client can resume it. Nothing here ever carries a final name.
//!
//! Each user's partial uploads sit in a folder of their own, so they are counted (`info`),
//! bounded (oldest evicted first, see [`Store::make_room_for_partial`]) and purged per user.
//! A small upload written by its group commit, a moment before it gets its name, has no
//! owner folder: it sits at the top of the area. Every file is opened relative to the area's
//! descriptor, never following a link.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    sync::Mutex,
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
    /// Whose upload it is (`None`: a small file written by a commit, or an older store's).
    pub owner: Option<String>,
    /// Its upload key.
    pub key: Hash,
    /// Bytes held.
    pub len: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// Partial uploads of one owner, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialUsage {
    /// How many.
    pub files: u64,
    /// Bytes they hold.
    pub bytes: u64,
}

/// Bounds on one owner's partial uploads.
#[derive(Debug, Clone, Copy)]
pub struct PartialQuota {
    /// Most partial uploads kept.
    pub files: u64,
    /// Most bytes they may hold.
    pub bytes: u64,
}

/// Where each key's partial upload is: the owner folder it was created in. Rebuilt from the
/// area at start-up; keys missing here sit at the top of the area.
#[derive(Debug, Default)]
pub(super) struct PartialIndex {
    owners: Mutex<HashMap<Hash, String>>,
    /// Held while room is made for a new partial upload and it is created, so that two
    /// sessions of one user cannot both find room for one.
    making_room: Mutex<()>,
    /// The size each upload begun since start-up declared: an upload in progress counts
    /// against its owner's quota at this size, not at the few bytes it holds yet (else
    /// uploads begun at once would each find room, and together exceed it). Entries of
    /// partials no longer present are dropped whenever room is made.
    declared: Mutex<HashMap<Hash, u64>>,
    /// The hash state of each partial's bytes as last read, with the length and change
    /// time it was read at: announcing the same partial again (every `Prepare` round may)
    /// does not read it again unless it changed. At most [`PREFIX_HASHES_KEPT`].
    prefix_hashes: Mutex<HashMap<Hash, PrefixHash>>,
}

/// A partial upload's hash state as last read (see `PartialIndex::prefix_hashes`).
#[derive(Debug, Clone)]
struct PrefixHash {
    len: u64,
    changed: (i64, i64),
    hasher: blake3::Hasher,
}

/// Prefix hash states kept (about 2 KiB each).
const PREFIX_HASHES_KEPT: usize = 256;

impl PartialIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, String>> {
        self.owners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store {
    /// Where the interrupted or in-progress upload with this key lives (for messages: the
    /// store itself opens it relative to the partial area's descriptor).
    pub fn partial_path(&self, key: &Hash) -> PathBuf {
        self.partials.join(self.partial_name(key))
    }

    /// The partial upload's path inside the area: `<owner>/<key>.part` or `<key>.part`.
    pub(super) fn partial_name(&self, key: &Hash) -> String {
        let file = partial_file_name(key);
        match self.partial_index.lock().get(key) {
            Some(owner) => format!("{owner}/{file}"),
            None => file,
        }
    }

    /// The folder holding a partial upload of `owner` (the area itself for none), opened
    /// without following a link, and its file name for `key`.
    fn partial_folder(&self, owner: Option<&str>, key: &Hash) -> Result<(OwnedFd, String), Errno> {
        let folder = match owner {
            Some(owner) => open_owner_folder(self.partials_dir.as_fd(), owner)?,
            None => rustix::io::dup(&self.partials_dir)?,
        };
        Ok((folder, partial_file_name(key)))
    }

    /// Where `key`'s partial upload is now: its owner's folder, or the top of the area.
    fn owner_of(&self, key: &Hash) -> Option<String> {
        self.partial_index.lock().get(key).cloned()
    }

    /// Opens `owner`'s partial upload of `key`, never through a link: the owner's folder and
    /// then the file, each with `O_NOFOLLOW`.
    fn open_in_area(
        &self,
        owner: Option<&str>,
        key: &Hash,
        flags: OFlags,
    ) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from_raw_mode(STORED_FILE_MODE)
        } else {
            Mode::empty()
        };
        let (folder, file) = self.partial_folder(owner, key)?;
        rustix::fs::openat(&folder, file, flags, mode)
    }

    fn open_partial_file(&self, key: &Hash, flags: OFlags) -> Result<File, StoreError> {
        self.open_in_area(self.owner_of(key).as_deref(), key, flags)
            .map(File::from)
            .map_err(|errno| io_error("open", &self.partial_path(key))(errno.into()))
    }

    /// The partial upload of `key`, opened for reading (to flush it). Blocking.
    pub(super) fn open_partial_for_flush(&self, key: &Hash) -> io::Result<File> {
        self.open_in_area(
            self.owner_of(key).as_deref(),
            key,
            OFlags::RDONLY | OFlags::NONBLOCK,
        )
        .map(File::from)
        .map_err(io::Error::from)
    }

    /// Length of the partial upload with this key, if there is one. Blocking.
    pub fn partial_len(&self, key: &Hash) -> Result<Option<u64>, StoreError> {
        let stat = self
            .partial_folder(self.owner_of(key).as_deref(), key)
            .and_then(|(folder, file)| {
                rustix::fs::statat(&folder, file, AtFlags::SYMLINK_NOFOLLOW)
            });
        match stat {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode).is_file() => {
                Ok(Some(stat.st_size as u64))
            }
            Ok(_) | Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(io_error("inspect", &self.partial_path(key))(errno.into())),
        }
    }

    /// BLAKE3 state after reading the first `len` bytes of the partial upload. This re-reads
    /// the bytes from disk, so what is vouched for is what is really stored. Blocking.
    ///
    /// A partial read before at the same length and not changed since (its inode's change
    /// time) is not read again: one small request must not make the server read gigabytes
    /// every time it is repeated.
    pub fn hash_partial_prefix(&self, key: &Hash, len: u64) -> Result<blake3::Hasher, StoreError> {
        let path = self.partial_path(key);
        let file = self.open_partial_file(key, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let changed = rustix::fs::fstat(&file)
            .ok()
            .map(|stat| (stat.st_ctime, stat.st_ctime_nsec as i64));
        let known = |hashes: &HashMap<Hash, PrefixHash>| {
            let kept = hashes.get(key)?;
            (kept.len == len && Some(kept.changed) == changed).then(|| kept.hasher.clone())
        };
        if let Some(hasher) = known(&self.prefix_hashes()) {
            return Ok(hasher);
        }
        let mut hasher = blake3::Hasher::new();
        let mut reader = io::BufReader::with_capacity(PREFIX_READ_BUFFER, file.take(len));
        let copied = io::copy(&mut reader, &mut hasher).map_err(io_error("read", &path))?;
        if copied != len {
            return Err(io_error("read", &path)(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("partial upload holds {copied} bytes, not {len}"),
            )));
        }
        if let Some(changed) = changed {
            let mut hashes = self.prefix_hashes();
            if hashes.len() >= PREFIX_HASHES_KEPT && !hashes.contains_key(key) {
                // Any one goes: a forgotten state only costs one more read.
                if let Some(other) = hashes.keys().next().copied() {
                    hashes.remove(&other);
                }
            }
            let kept = PrefixHash {
                len,
                changed,
                hasher: hasher.clone(),
            };
            hashes.insert(*key, kept);
        }
        Ok(hasher)
    }

    fn prefix_hashes(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, PrefixHash>> {
        self.partial_index
            .prefix_hashes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the partial upload for `key` for writing at `offset`, creating it in `owner`'s
    /// folder if needed and cutting anything beyond `offset` (bytes that were never
    /// verified). Blocking.
    pub fn open_partial(
        &self,
        key: &Hash,
        offset: u64,
        owner: Option<&str>,
    ) -> Result<File, StoreError> {
        // Its bytes are about to change: a kept hash state of them is no longer vouched for
        // (the change time alone may not move within one clock tick).
        self.prefix_hashes().remove(key);
        if offset == 0 {
            // A fresh upload: one system call instead of open, stat, truncate and seek.
            let fresh = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC;
            // One file per key: a key already kept in an owner's folder (a small upload
            // written by its commit after an interrupted large one) stays there.
            let owner = owner.map(str::to_owned).or_else(|| self.owner_of(key));
            let Some(owner) = owner else {
                // Written by a commit and named a moment later: no owner folder.
                return self.open_partial_file(key, fresh);
            };
            self.make_owner_folder(&owner)?;
            let file = self
                .open_in_area(Some(&owner), key, fresh)
                .map(File::from)
                .map_err(|errno| {
                    let path = self.partials.join(&owner).join(partial_file_name(key));
                    io_error("open", &path)(errno.into())
                })?;
            // Another owner's copy cannot exist: keys are mixed with their owner.
            self.partial_index.lock().insert(*key, owner);
            return Ok(file);
        }
        let path = self.partial_path(key);
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

    fn make_owner_folder(&self, owner: &str) -> Result<(), StoreError> {
        match rustix::fs::mkdirat(&self.partials_dir, owner, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(errno) => Err(io_error("create", &self.partials.join(owner))(errno.into())),
        }
    }

    /// The folder holding `key`'s partial upload (opened without following links) and the
    /// file's name in it, to rename the upload to its final name.
    pub(super) fn partial_source(&self, key: &Hash) -> Result<(OwnedFd, String), StoreError> {
        self.partial_folder(self.owner_of(key).as_deref(), key)
            .map_err(|errno| io_error("open", &self.partial_path(key))(errno.into()))
    }

    /// Forgets where `key`'s partial upload was, once it was renamed away or removed.
    pub(super) fn forget_partial(&self, key: &Hash) {
        self.partial_index.lock().remove(key);
    }

    /// Removes the partial upload for `key`, if any. Blocking.
    pub fn discard_partial(&self, key: &Hash) -> Result<(), StoreError> {
        let owner = self.owner_of(key);
        self.remove_partial(owner.as_deref(), key).map(drop)
    }

    /// Removes `owner`'s partial upload of `key` (exactly that file, as listed); true if it
    /// was there. Blocking.
    fn remove_partial(&self, owner: Option<&str>, key: &Hash) -> Result<bool, StoreError> {
        let removed = self
            .partial_folder(owner, key)
            .and_then(|(folder, file)| rustix::fs::unlinkat(&folder, file, AtFlags::empty()));
        let removed = match removed {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(io_error("remove", &self.partial_path(key))(errno.into())),
        };
        let mut index = self.partial_index.lock();
        if index.get(key).map(String::as_str) == owner {
            index.remove(key);
        }
        removed
    }

    /// Every partial upload present. Blocking.
    pub fn partials(&self) -> Vec<PartialUpload> {
        list_area(self.partials_dir.as_fd())
    }

    /// How many partial uploads `owner` has, and their bytes. Blocking.
    pub fn partial_usage(&self, owner: Option<&str>) -> PartialUsage {
        let mut usage = PartialUsage::default();
        for partial in self.partials() {
            if owner.is_none() || partial.owner.as_deref() == owner {
                usage.files += 1;
                usage.bytes += partial.len;
            }
        }
        usage
    }

    /// Makes room among `owner`'s partial uploads for a new one of `size` bytes: removes
    /// their oldest (except those `in_use`) until the others, with the new one, keep within
    /// `quota`; one upload alone is never refused (`--max-file-size` bounds it). Returns how
    /// many were removed. Blocking.
    pub fn make_room_for_partial(
        &self,
        owner: &str,
        size: u64,
        quota: PartialQuota,
        in_use: impl Fn(&Hash) -> bool,
    ) -> Result<usize, StoreError> {
        self.make_room_for(owner, None, size, quota, in_use)
    }

    /// [`Store::make_room_for_partial`] for the upload of `key` (left out of the count when
    /// it exists already: a resume), each other upload counted at its declared size if
    /// larger than what it holds.
    fn make_room_for(
        &self,
        owner: &str,
        key: Option<&Hash>,
        size: u64,
        quota: PartialQuota,
        in_use: impl Fn(&Hash) -> bool,
    ) -> Result<usize, StoreError> {
        let present = self.partials();
        let declared = {
            let mut declared = self
                .partial_index
                .declared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let keys: std::collections::HashSet<&Hash> =
                present.iter().map(|partial| &partial.key).collect();
            declared.retain(|held, _| keys.contains(held));
            declared.clone()
        };
        let counted = |partial: &PartialUpload| {
            let promised = declared.get(&partial.key).copied().unwrap_or(0);
            partial.len.max(promised)
        };
        let mut own: Vec<PartialUpload> = present
            .into_iter()
            .filter(|partial| partial.owner.as_deref() == Some(owner))
            .filter(|partial| Some(&partial.key) != key)
            .collect();
        let fits = |files: u64, bytes: u64| {
            files == 0 || (files < quota.files && bytes.saturating_add(size) <= quota.bytes)
        };
        let (mut files, mut bytes) = (own.len() as u64, own.iter().map(counted).sum::<u64>());
        own.sort_by_key(|partial| partial.modified);
        let mut removed = 0;
        for partial in &own {
            if fits(files, bytes) {
                break;
            }
            if in_use(&partial.key)
                || !matches!(
                    self.remove_partial(partial.owner.as_deref(), &partial.key),
                    Ok(true)
                )
            {
                continue;
            }
            tracing::info!(
                owner, key = %partial.key.to_hex(), bytes = partial.len,
                "removed the oldest interrupted upload to keep within the user's quota"
            );
            files -= 1;
            bytes -= counted(partial);
            removed += 1;
        }
        if fits(files, bytes) {
            Ok(removed)
        } else {
            Err(StoreError::PartialQuota {
                files: quota.files,
                bytes: quota.bytes,
            })
        }
    }

    /// Opens a fresh partial upload of `key` for `owner` ([`Store::open_partial`] at offset
    /// 0), after making room for its `size` bytes within `quota` (see
    /// [`Store::make_room_for_partial`]). Blocking.
    pub fn open_fresh_partial(
        &self,
        key: &Hash,
        owner: &str,
        size: u64,
        quota: PartialQuota,
        in_use: impl Fn(&Hash) -> bool,
    ) -> Result<File, StoreError> {
        self.open_partial_within_quota(key, 0, owner, size, quota, in_use)
    }

    /// Opens `owner`'s partial upload of `key` at `offset` (0: fresh; more: a resume, which
    /// may declare more than it first did) towards `size` bytes, after making room for it
    /// within `quota`. Blocking.
    pub fn open_partial_within_quota(
        &self,
        key: &Hash,
        offset: u64,
        owner: &str,
        size: u64,
        quota: PartialQuota,
        in_use: impl Fn(&Hash) -> bool,
    ) -> Result<File, StoreError> {
        let _one_at_a_time = self
            .partial_index
            .making_room
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.make_room_for(owner, Some(key), size, quota, in_use)?;
        let file = self.open_partial(key, offset, Some(owner))?;
        self.declare(key, size);
        Ok(file)
    }

    /// Records the size the upload of `key` declared.
    fn declare(&self, key: &Hash, size: u64) {
        self.partial_index
            .declared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(*key, size);
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
            if age.is_some_and(|age| age > ttl)
                && matches!(
                    self.remove_partial(partial.owner.as_deref(), &partial.key),
                    Ok(true)
                )
            {
                tracing::info!(key = %partial.key.to_hex(), ?age, "removed stale partial upload");
                removed += 1;
            }
        }
        removed
    }

    /// Keys of the partial uploads present. Blocking.
    pub fn partial_keys(&self) -> std::collections::HashSet<Hash> {
        let mut keys: std::collections::HashSet<Hash> =
            self.partial_index.lock().keys().copied().collect();
        // Those at the top of the area: names only, no `stat` per file.
        for_each_key(self.partials_dir.as_fd(), |key| {
            keys.insert(key);
        });
        keys
    }

    /// Writes a small upload's bytes as its complete partial file, at the top of the area.
    /// Blocking.
    pub fn write_partial(&self, key: &Hash, bytes: &[u8]) -> Result<File, StoreError> {
        let mut file = self.open_partial(key, 0, None)?;
        file.write_all(bytes)
            .map_err(io_error("write", &self.partial_path(key)))?;
        if self.others_busy() {
            super::durability::start_writeback(&file);
        }
        Ok(file)
    }

    /// Rebuilds the index of owner folders from the area (at start-up).
    pub(super) fn index_partials(&self) {
        let mut index = self.partial_index.lock();
        for partial in self.partials() {
            if let Some(owner) = partial.owner {
                index.insert(partial.key, owner);
            }
        }
    }
}

fn partial_file_name(key: &Hash) -> String {
    format!("{}.part", key.to_hex())
}

fn open_owner_folder(area: std::os::fd::BorrowedFd<'_>, owner: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        area,
        owner,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Calls `found` with the key of every `<key>.part` directly in `folder`.
fn for_each_key(folder: std::os::fd::BorrowedFd<'_>, mut found: impl FnMut(Hash)) {
    let Ok(mut entries) = rustix::fs::Dir::read_from(folder) else {
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

/// Every partial upload in the area whose descriptor is `area`: at its top and in its owner
/// folders. Blocking.
pub(super) fn list_area(area: std::os::fd::BorrowedFd<'_>) -> Vec<PartialUpload> {
    let mut found = Vec::new();
    collect_in(area, None, &mut found);
    let Ok(mut entries) = rustix::fs::Dir::read_from(area) else {
        return found;
    };
    while let Some(Ok(entry)) = entries.next() {
        let Ok(owner) = entry.file_name().to_str() else {
            continue;
        };
        if owner.starts_with('.') || owner.ends_with(".part") {
            continue;
        }
        let Ok(folder) = open_owner_folder(area, owner) else {
            continue;
        };
        collect_in(folder.as_fd(), Some(owner), &mut found);
    }
    found
}

fn collect_in(
    folder: std::os::fd::BorrowedFd<'_>,
    owner: Option<&str>,
    found: &mut Vec<PartialUpload>,
) {
    for_each_key(folder, |key| {
        let name = partial_file_name(&key);
        let Ok(stat) = rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW) else {
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
            owner: owner.map(str::to_owned),
            key,
            len: stat.st_size as u64,
            modified,
        });
    });
}
