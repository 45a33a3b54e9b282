//! `fts --dir DIR partials`: the interrupted uploads kept for resume, listed and purged by an
//! administrator, beside a running server or without one (nothing here takes the directory's
//! lock). A purged upload still in progress fails at its end, and its client sends it again.

use std::{
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::{
    io_error,
    partial::{list_area, PartialUpload, PartialUsage},
    StoreError,
};
use crate::names::PRIVATE_DIR;

/// The partial area of a storage directory, opened for its administrator.
#[derive(Debug)]
pub struct PartialArea {
    path: PathBuf,
    area: OwnedFd,
}

impl PartialArea {
    /// Opens `DIR/.fts/partial` (never through a link).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(PRIVATE_DIR).join("partial");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let area = rustix::fs::open(&path, flags, Mode::empty())
            .map_err(|errno| io_error("open", &path)(errno.into()))?;
        Ok(Self { path, area })
    }

    /// Every partial upload, oldest first.
    pub fn list(&self) -> Vec<PartialUpload> {
        let mut all = list_area(self.area.as_fd());
        all.sort_by_key(|partial| partial.modified);
        all
    }

    /// Removes the partial uploads of `owner` (everyone's if `None`) untouched for at least
    /// `older_than`; returns what was removed.
    pub fn purge(&self, owner: Option<&str>, older_than: Duration) -> PartialUsage {
        let now = SystemTime::now();
        let mut removed = PartialUsage::default();
        for partial in self.list() {
            if owner.is_some() && partial.owner.as_deref() != owner {
                continue;
            }
            let age = now.duration_since(partial.modified).unwrap_or_default();
            if age < older_than {
                continue;
            }
            let file = format!("{}.part", partial.key.to_hex());
            let unlinked = match &partial.owner {
                Some(folder) => rustix::fs::openat(
                    &self.area,
                    folder,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .and_then(|folder| rustix::fs::unlinkat(&folder, &file, AtFlags::empty())),
                None => rustix::fs::unlinkat(&self.area, &file, AtFlags::empty()),
            };
            match unlinked {
                Ok(()) => {
                    removed.files += 1;
                    removed.bytes += partial.len;
                }
                Err(errno) => tracing::warn!(
                    path = %self.path.display(), %file, error = %errno,
                    "could not remove a partial upload"
                ),
            }
        }
        removed
    }
}
