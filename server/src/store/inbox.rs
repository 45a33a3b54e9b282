//! The inbox area: files users left for others (`ftc send --to USER --leave`), one file
//! per recipient's copy in `DIR/.fts/inbox/`, under names the server chooses. Which user a
//! file waits for, from whom and under what name is the catalog's (`catalog::inbox`); here
//! are only the bytes. A copy is written to a `tmp-*` file, flushed, and renamed to its
//! `blob-*` name with the folder flushed too, before its record is written: a record always
//! names a whole, durable file. What a crash leaves behind (temporaries, blobs without a
//! record) is removed at start-up. A copy whose `Leave` was cut is kept as a `part-*` file
//! named after its sender, recipient, name and size, so that leaving the same file again
//! continues it (its bytes are proven by hash before they count); such copies count against
//! the recipient's quota and are removed once unwritten for the inbox TTL. Every file is
//! opened relative to the area's descriptor, never following a link.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use rustix::{
    fs::{AtFlags, Mode, OFlags},
    io::Errno,
};

use super::{Store, StoreError};

/// Prefix of a copy being written.
const TEMPORARY: &str = "tmp-";
/// Prefix of a complete, durable copy.
const BLOB: &str = "blob-";
/// Prefix of a copy cut short and kept for a resume: `part-<recipient>-<file>`, both parts
/// hexadecimal hashes.
const PARTIAL: &str = "part-";
/// Hex digits naming the recipient in a partial copy's name.
const RECIPIENT_DIGITS: usize = 16;
/// Hex digits naming the file in a partial copy's name.
const FILE_DIGITS: usize = 32;

/// Distinguishes names made in the same nanosecond.
static NAMES_MADE: AtomicU64 = AtomicU64::new(0);

/// A copy being written into the inbox area; removed on drop unless kept, or left in place
/// if it is a resumable copy (a cut `Leave` continues it later).
#[derive(Debug)]
pub struct InboxDraft<'a> {
    store: &'a Store,
    /// The open file.
    pub file: File,
    name: Option<String>,
    resumable: bool,
}

impl InboxDraft<'_> {
    /// Flushes the copy's bytes, gives it its lasting name and flushes the area's folder:
    /// afterwards the copy survives a crash. Returns the name to record.
    pub fn keep(mut self) -> Result<String, StoreError> {
        let temporary = self.name.take().unwrap_or_default();
        let failed = |what: &'static str| {
            let path = self.store.inbox_path(&temporary);
            move |cause: io::Error| StoreError::Io {
                action: what,
                path,
                cause,
            }
        };
        self.file.sync_data().map_err(failed("flush"))?;
        let blob = format!("{BLOB}{}", unique_name());
        let area = self.store.inbox_dir.as_fd();
        rustix::fs::renameat(area, temporary.as_str(), area, blob.as_str())
            .map_err(|errno| failed("name")(errno.into()))?;
        rustix::fs::fsync(area).map_err(|errno| failed("flush the folder of")(errno.into()))?;
        Ok(blob)
    }
}

impl InboxDraft<'_> {
    /// Removes the copy, resumable or not (its bytes proved wrong).
    pub fn discard(mut self) {
        self.resumable = false;
    }
}

impl Drop for InboxDraft<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            if !self.resumable {
                let _ =
                    rustix::fs::unlinkat(&self.store.inbox_dir, name.as_str(), AtFlags::empty());
            }
        }
    }
}

impl Store {
    /// Opens the inbox area beneath the private folder, creating it if needed.
    pub(super) fn open_inbox_area(root: &OwnedFd, device: u64) -> Result<OwnedFd, Errno> {
        super::beneath::open_folder(
            root.as_fd(),
            device,
            &format!("{}/inbox", crate::names::PRIVATE_DIR),
            true,
        )
        .map_err(|_| Errno::NOTDIR)
    }

    /// Starts a new copy in the inbox area. Blocking.
    pub fn inbox_draft(&self) -> Result<InboxDraft<'_>, StoreError> {
        let name = format!("{TEMPORARY}{}", unique_name());
        let file = rustix::fs::openat(
            &self.inbox_dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| StoreError::Io {
            action: "create",
            path: self.inbox_path(&name),
            cause: errno.into(),
        })?;
        Ok(InboxDraft {
            store: self,
            file: File::from(file),
            name: Some(name),
            resumable: false,
        })
    }

    /// The name of the resumable copy of the file `name` of `size` bytes that `sender` leaves
    /// for `recipient`.
    pub fn inbox_partial_name(sender: &str, recipient: &str, name: &str, size: u64) -> String {
        let mut file = blake3::Hasher::new();
        for part in [sender, recipient, name] {
            file.update(&(part.len() as u64).to_le_bytes());
            file.update(part.as_bytes());
        }
        file.update(&size.to_le_bytes());
        format!(
            "{}{}",
            partial_prefix(recipient),
            &file.finalize().to_hex()[..FILE_DIGITS]
        )
    }

    /// The length of the resumable copy `partial` and the hash state of its bytes, if it
    /// exists, holds something and is not longer than `size`. Blocking.
    pub fn inbox_partial_prefix(&self, partial: &str, size: u64) -> Option<(u64, blake3::Hasher)> {
        if !is_partial_name(partial) {
            return None;
        }
        let file = rustix::fs::openat(
            &self.inbox_dir,
            partial,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let file = File::from(file);
        let len = file.metadata().ok()?.len();
        if len == 0 || len > size {
            return None;
        }
        let mut hasher = blake3::Hasher::new();
        let copied = io::copy(&mut io::Read::take(file, len), &mut hasher).ok()?;
        (copied == len).then_some((len, hasher))
    }

    /// Starts the resumable copy `partial`, or continues it at `offset` (what lies beyond is
    /// cut off). The caller holds the lease on it. Blocking.
    pub fn inbox_resumable_draft(
        &self,
        partial: &str,
        offset: u64,
    ) -> Result<InboxDraft<'_>, StoreError> {
        let failed = |cause: io::Error| StoreError::Io {
            action: "open",
            path: self.inbox_path(partial),
            cause,
        };
        if !is_partial_name(partial) {
            return Err(failed(io::Error::other("not a partial copy's name")));
        }
        let file = rustix::fs::openat(
            &self.inbox_dir,
            partial,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| failed(errno.into()))?;
        let mut file = File::from(file);
        file.set_len(offset).map_err(failed)?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).map_err(failed)?;
        Ok(InboxDraft {
            store: self,
            file,
            name: Some(partial.to_owned()),
            resumable: true,
        })
    }

    /// Files and bytes of the resumable copies kept for `recipient`. Blocking.
    pub fn inbox_partials_of(&self, recipient: &str) -> (u64, u64) {
        let prefix = partial_prefix(recipient);
        let (mut files, mut bytes) = (0u64, 0u64);
        self.each_inbox_partial(|name, len, _| {
            if name.starts_with(&prefix) {
                files += 1;
                bytes = bytes.saturating_add(len);
            }
        });
        (files, bytes)
    }

    /// Removes resumable copies not written to for `unwritten_for`, except those `in_use`
    /// says a `Leave` holds. Blocking.
    pub fn sweep_inbox_partials(
        &self,
        unwritten_for: std::time::Duration,
        in_use: impl Fn(&str) -> bool,
    ) -> usize {
        let mut stale = Vec::new();
        let now = SystemTime::now();
        self.each_inbox_partial(|name, _, modified| {
            let idle = now.duration_since(modified).ok();
            if idle.is_some_and(|idle| idle >= unwritten_for) && !in_use(name) {
                stale.push(name.to_owned());
            }
        });
        for name in &stale {
            let _ = rustix::fs::unlinkat(&self.inbox_dir, name.as_str(), AtFlags::empty());
        }
        stale.len()
    }

    /// Calls `found` with the name, length and modification time of each resumable copy.
    fn each_inbox_partial(&self, mut found: impl FnMut(&str, u64, SystemTime)) {
        let Ok(mut entries) = rustix::fs::Dir::read_from(&self.inbox_dir) else {
            return;
        };
        while let Some(Ok(entry)) = entries.next() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if !is_partial_name(name) {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.inbox_dir, name, AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                == rustix::fs::FileType::RegularFile
            {
                let len = u64::try_from(stat.st_size).unwrap_or(0);
                let modified = u64::try_from(stat.st_mtime).unwrap_or(0);
                found(
                    name,
                    len,
                    UNIX_EPOCH + std::time::Duration::from_secs(modified),
                );
            }
        }
    }

    /// Opens a kept copy for reading. Blocking.
    pub fn inbox_open(&self, blob: &str) -> Result<File, StoreError> {
        let path = self.inbox_path(blob);
        if !is_blob_name(blob) {
            return Err(StoreError::Io {
                action: "open",
                path,
                cause: io::Error::other("not an inbox file's name"),
            });
        }
        rustix::fs::openat(
            &self.inbox_dir,
            blob,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|errno| StoreError::Io {
            action: "open",
            path,
            cause: errno.into(),
        })
    }

    /// Removes a kept copy (gone already is fine). Blocking.
    pub fn inbox_remove(&self, blob: &str) {
        if is_blob_name(blob) {
            let _ = rustix::fs::unlinkat(&self.inbox_dir, blob, AtFlags::empty());
        }
    }

    /// Removes what a crash left in the inbox area: temporaries, and kept copies for which
    /// `is_recorded` says no record exists. Run at start-up, before any session. Blocking.
    pub fn sweep_inbox(&self, is_recorded: impl Fn(&str) -> bool) -> usize {
        let Ok(mut entries) = rustix::fs::Dir::read_from(&self.inbox_dir) else {
            return 0;
        };
        let mut stale = Vec::new();
        while let Some(Ok(entry)) = entries.next() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name.starts_with(TEMPORARY) || (is_blob_name(name) && !is_recorded(name)) {
                stale.push(name.to_owned());
            }
        }
        for name in &stale {
            let _ = rustix::fs::unlinkat(&self.inbox_dir, name.as_str(), AtFlags::empty());
        }
        stale.len()
    }

    /// For messages only: the store opens inbox files relative to the area's descriptor.
    fn inbox_path(&self, name: &str) -> std::path::PathBuf {
        self.private_dir().join("inbox").join(name)
    }
}

/// Whether `name` is one the inbox area gives its kept copies (never a path).
fn is_blob_name(name: &str) -> bool {
    name.strip_prefix(BLOB)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The start of the names of `recipient`'s resumable copies.
fn partial_prefix(recipient: &str) -> String {
    let hash = blake3::hash(recipient.as_bytes());
    format!("{PARTIAL}{}-", &hash.to_hex()[..RECIPIENT_DIGITS])
}

/// Whether `name` is one the inbox area gives its resumable copies (never a path).
fn is_partial_name(name: &str) -> bool {
    let Some((recipient, file)) = name
        .strip_prefix(PARTIAL)
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    let hex = |part: &str, digits: usize| {
        part.len() == digits && part.bytes().all(|b| b.is_ascii_hexdigit())
    };
    hex(recipient, RECIPIENT_DIGITS) && hex(file, FILE_DIGITS)
}

/// A name no other copy has: the time, the process and a counter, hashed.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&NAMES_MADE.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.finalize().to_hex()[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_kept_copy_is_readable_and_a_dropped_draft_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut draft = store.inbox_draft().unwrap();
        draft.file.write_all(b"left for bob").unwrap();
        let blob = draft.keep().unwrap();
        let mut text = String::new();
        store
            .inbox_open(&blob)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "left for bob");
        drop(store.inbox_draft().unwrap());
        let area = dir.path().join(".fts/inbox");
        let names: Vec<_> = std::fs::read_dir(&area)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![blob.clone()]);
        assert!(store.inbox_open("../catalog.db").is_err());
        store.inbox_remove(&blob);
        assert!(store.inbox_open(&blob).is_err());
    }

    #[test]
    fn the_start_up_sweep_removes_temporaries_and_unrecorded_copies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.inbox_draft().unwrap().keep().unwrap();
        let orphan = store.inbox_draft().unwrap().keep().unwrap();
        let draft = store.inbox_draft().unwrap();
        std::mem::forget(draft);
        assert_eq!(store.sweep_inbox(|name| name == kept), 2);
        assert!(store.inbox_open(&kept).is_ok());
        assert!(store.inbox_open(&orphan).is_err());
    }

    #[test]
    fn a_resumable_copy_outlives_its_draft_counts_for_its_recipient_and_ages_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let partial = Store::inbox_partial_name("alice", "bob", "a.bin", 10);
        assert_ne!(
            partial,
            Store::inbox_partial_name("alice", "bob", "a.bin", 11)
        );
        assert_ne!(
            partial,
            Store::inbox_partial_name("alice", "carol", "a.bin", 10)
        );
        assert!(store.inbox_partial_prefix(&partial, 10).is_none());

        let mut draft = store.inbox_resumable_draft(&partial, 0).unwrap();
        draft.file.write_all(b"0123").unwrap();
        drop(draft);
        let (len, hasher) = store.inbox_partial_prefix(&partial, 10).unwrap();
        assert_eq!(len, 4);
        assert_eq!(hasher.finalize(), blake3::hash(b"0123"));
        assert!(
            store.inbox_partial_prefix(&partial, 3).is_none(),
            "longer than offered"
        );
        assert_eq!(store.inbox_partials_of("bob"), (1, 4));
        assert_eq!(store.inbox_partials_of("carol"), (0, 0));

        // Continued at 2: what lay beyond is cut off.
        let mut draft = store.inbox_resumable_draft(&partial, 2).unwrap();
        draft.file.write_all(b"xyz").unwrap();
        drop(draft);
        let (_, hasher) = store.inbox_partial_prefix(&partial, 10).unwrap();
        assert_eq!(hasher.finalize(), blake3::hash(b"01xyz"));

        assert_eq!(
            store.inbox_sweep_partials_now(|_| true),
            0,
            "held copies stay"
        );
        assert_eq!(store.inbox_sweep_partials_now(|_| false), 1);
        assert_eq!(store.inbox_partials_of("bob"), (0, 0));

        store.inbox_resumable_draft(&partial, 0).unwrap().discard();
        assert!(store.inbox_partial_prefix(&partial, 10).is_none());
        assert!(store.inbox_resumable_draft("../catalog.db", 0).is_err());
        assert!(store.inbox_resumable_draft("blob-00", 0).is_err());
    }

    impl Store {
        fn inbox_sweep_partials_now(&self, in_use: impl Fn(&str) -> bool) -> usize {
            self.sweep_inbox_partials(std::time::Duration::ZERO, in_use)
        }
    }
}
