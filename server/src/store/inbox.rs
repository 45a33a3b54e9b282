//! The inbox area: files users left for others (`ftc send --to USER --leave`), one file
//! per recipient's copy in `DIR/.fts/inbox/`, under names the server chooses. Which user a
//! file waits for, from whom and under what name is the catalog's (`catalog::inbox`); here
//! are only the bytes. A copy is written to a `tmp-*` file, flushed, and renamed to its
//! `blob-*` name with the folder flushed too, before its record is written: a record always
//! names a whole, durable file. What a crash leaves behind (temporaries, blobs without a
//! record) is removed at start-up. Every file is opened relative to the area's descriptor,
//! never following a link.

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

/// Distinguishes names made in the same nanosecond.
static NAMES_MADE: AtomicU64 = AtomicU64::new(0);

/// A copy being written into the inbox area; removed on drop unless kept.
#[derive(Debug)]
pub struct InboxDraft<'a> {
    store: &'a Store,
    /// The open file.
    pub file: File,
    name: Option<String>,
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

impl Drop for InboxDraft<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(&self.store.inbox_dir, name.as_str(), AtFlags::empty());
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
        })
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
}
