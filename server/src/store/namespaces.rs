//! The upgrade of a directory made before namespaces: every stored file moves into one
//! namespace's folder. Renames on one filesystem, made durable step by step, and safe to
//! interrupt and run again.

use std::{fs, io};

use super::{durability::sync_dir, io_error, Store, StoreError};
use crate::names::PRIVATE_DIR;

/// Marks, inside the private directory, that every old entry was gathered in the staging
/// folder: from then on only the staging folder's final rename remains.
const GATHERED_MARKER: &str = "upgrade-gathered";

/// Marks that the files were moved: kept, so a later run (the catalog's own step may have
/// failed or been cut short) never gathers the namespace's folder into itself.
const MOVED_MARKER: &str = "upgrade-moved";

impl Store {
    /// Moves every entry at the top of the directory (but the private one) into the folder
    /// of `namespace`, in three durable steps: gather them in a staging folder inside the
    /// private directory (so a stored folder that happens to carry the namespace's name is
    /// moved like any other), mark the gathering done, rename the staging folder into place.
    /// A rerun after a crash goes on from the step it reached. Blocking.
    pub fn move_into_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        let private = self.root.join(PRIVATE_DIR);
        let staging = private.join(format!("upgrade-{namespace}"));
        let marker = private.join(GATHERED_MARKER);
        let target = self.root.join(namespace);
        let moved = private.join(MOVED_MARKER);
        if moved.exists() {
            return Ok(());
        }
        if !marker.exists() {
            match fs::create_dir(&staging) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io_error("create", &staging)(err)),
            }
            let entries = fs::read_dir(&self.root).map_err(io_error("read", &self.root))?;
            for entry in entries {
                let entry = entry.map_err(io_error("read", &self.root))?;
                let name = entry.file_name();
                if name == PRIVATE_DIR {
                    continue;
                }
                let to = staging.join(&name);
                fs::rename(entry.path(), &to).map_err(io_error("move", &entry.path()))?;
            }
            sync_dir(&staging)?;
            sync_dir(&self.root)?;
            fs::File::create(&marker)
                .and_then(|file| file.sync_all())
                .map_err(io_error("create", &marker))?;
            sync_dir(&private)?;
        }
        if staging.exists() {
            fs::rename(&staging, &target).map_err(io_error("move", &staging))?;
            sync_dir(&self.root)?;
            sync_dir(&private)?;
        }
        fs::File::create(&moved)
            .and_then(|file| file.sync_all())
            .map_err(io_error("create", &moved))?;
        fs::remove_file(&marker).map_err(io_error("remove", &marker))?;
        sync_dir(&private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_entries_move_into_the_namespace_even_one_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("a.txt"), b"a").unwrap();
        fs::create_dir_all(dir.path().join("admin/inner")).unwrap();
        fs::write(dir.path().join("admin/inner/b.txt"), b"b").unwrap();
        store.move_into_namespace("admin").unwrap();
        assert_eq!(fs::read(dir.path().join("admin/a.txt")).unwrap(), b"a");
        assert_eq!(
            fs::read(dir.path().join("admin/admin/inner/b.txt")).unwrap(),
            b"b"
        );
        let top: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "{top:?}"); // .fts and admin
    }

    #[test]
    fn an_interrupted_upgrade_finishes_on_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("left.txt"), b"l").unwrap();
        // Interrupted after gathering one entry and marking the gathering done.
        let staging = dir.path().join(".fts/upgrade-admin");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("moved.txt"), b"m").unwrap();
        store.move_into_namespace("admin").unwrap();
        assert_eq!(fs::read(dir.path().join("admin/moved.txt")).unwrap(), b"m");
        assert_eq!(fs::read(dir.path().join("admin/left.txt")).unwrap(), b"l");
        // Interrupted just before the final rename: the marker is there.
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("late.txt"), b"z").unwrap();
        fs::write(dir.path().join(".fts").join(GATHERED_MARKER), b"").unwrap();
        fs::remove_file(dir.path().join(".fts").join(MOVED_MARKER)).unwrap();
        fs::remove_dir_all(dir.path().join("admin")).unwrap();
        store.move_into_namespace("admin").unwrap();
        assert_eq!(fs::read(dir.path().join("admin/late.txt")).unwrap(), b"z");
        // Once moved, a rerun (the catalog's step failed, say) leaves everything in place.
        store.move_into_namespace("admin").unwrap();
        assert_eq!(fs::read(dir.path().join("admin/late.txt")).unwrap(), b"z");
        assert!(!dir.path().join("admin/admin").exists());
    }
}
