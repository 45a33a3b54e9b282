//! Unit tests of the store, against a real temporary directory.

use std::{
    fs::{self, File},
    io::Write,
    time::Duration,
};

use ft_protocol::{ConflictPolicy, Hash};

use super::*;
use crate::names::ValidName;

fn key(n: u8) -> Hash {
    Hash([n; 32])
}

/// Writes `content` as the complete partial upload for `key` and returns its handle.
fn partial_with(store: &Store, key: &Hash, content: &[u8]) -> File {
    let mut file = store.open_partial(key, 0, Some("tester")).unwrap();
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
    partial_with(store, &key(n), content);
    store.place(&key(n), &name(to), policy, &mut KnownFolders::default())
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
    let mut file = store.open_partial(&key(7), 5, None).unwrap();
    file.write_all(b", ft").unwrap();
    assert_eq!(fs::read(store.partial_path(&key(7))).unwrap(), b"hello, ft");
    assert!(
        store.open_partial(&key(7), 100, None).is_err(),
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

#[test]
fn a_crowded_name_costs_a_few_attempts_not_thousands() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fs::write(dir.path().join("x.txt"), b"").unwrap();
    for n in 1..=100 {
        fs::write(dir.path().join(format!("x ({n}).txt")), b"").unwrap();
    }
    // 0 and 1..=8 are taken, then 16, 32 and 64: 128 is the first tried that is free.
    let stored = commit(&store, 1, b"new", "x.txt", ConflictPolicy::KeepBoth).unwrap();
    assert_eq!(stored.as_str(), "x (128).txt");
    assert_eq!(fs::read(dir.path().join("x (128).txt")).unwrap(), b"new");
    // The usual case still numbers one by one.
    let stored = commit(&store, 2, b"y", "y.txt", ConflictPolicy::KeepBoth).unwrap();
    assert_eq!(stored.as_str(), "y.txt");
    let stored = commit(&store, 3, b"y2", "y.txt", ConflictPolicy::KeepBoth).unwrap();
    assert_eq!(stored.as_str(), "y (1).txt");
}

#[test]
fn removing_through_a_link_or_a_folder_fails_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fs::write(outside.path().join("victim.txt"), b"keep me").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let err = store.remove_stored(&name("link/victim.txt")).unwrap_err();
    assert!(err.is_about_the_name(), "{err}");
    assert_eq!(
        fs::read(outside.path().join("victim.txt")).unwrap(),
        b"keep me"
    );
    std::os::unix::fs::symlink(outside.path().join("victim.txt"), dir.path().join("leaf")).unwrap();
    assert!(store.remove_stored(&name("leaf")).is_err());
    assert!(outside.path().join("victim.txt").exists());
    fs::create_dir(dir.path().join("folder")).unwrap();
    assert!(store.remove_stored(&name("folder")).is_err());
    assert!(
        !store.remove_stored(&name("missing.txt")).unwrap(),
        "gone already: fine"
    );
}

#[test]
fn each_users_partials_are_counted_bounded_oldest_first_and_found_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 1..=3u8 {
        let mut file = store.open_partial(&key(n), 0, Some("alice")).unwrap();
        file.write_all(&vec![n; 1000]).unwrap();
        // Distinct ages: the first is the oldest.
        let age = std::time::SystemTime::now() - Duration::from_secs(100 - u64::from(n));
        file.set_modified(age).unwrap();
    }
    drop(partial_with(&store, &key(9), b"bob's"));
    assert_eq!(
        store.partial_usage(Some("alice")),
        PartialUsage {
            files: 3,
            bytes: 3000
        }
    );
    assert_eq!(
        store.partial_usage(None).files,
        4,
        "bob's counts for everyone"
    );

    // Room for one more of 1000 bytes within 3 files: the oldest goes.
    let quota = PartialQuota {
        files: 3,
        bytes: 1_000_000,
    };
    assert_eq!(
        store
            .make_room_for_partial("alice", 1000, quota, |_| false)
            .unwrap(),
        1
    );
    assert_eq!(store.partial_len(&key(1)).unwrap(), None);
    assert_eq!(store.partial_len(&key(2)).unwrap(), Some(1000));
    // By bytes: 2000 held, 2500 allowed, a new one of 1000 needs one more removed.
    let by_bytes = PartialQuota {
        files: 100,
        bytes: 2500,
    };
    assert_eq!(
        store
            .make_room_for_partial("alice", 1000, by_bytes, |_| false)
            .unwrap(),
        1
    );
    assert_eq!(store.partial_len(&key(2)).unwrap(), None);
    // Uploads in progress are never removed: then the new one is refused.
    let tight = PartialQuota { files: 1, bytes: 1 };
    let refused = store.make_room_for_partial("alice", 1000, tight, |k| *k == key(3));
    assert!(matches!(refused, Err(StoreError::PartialQuota { .. })));
    // One upload alone is never refused, however large.
    assert!(store
        .make_room_for_partial("carol", u64::MAX, tight, |_| false)
        .is_ok());

    // Found in its owner's folder after a restart, and resumed there.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.partial_len(&key(3)).unwrap(), Some(1000));
    assert!(store.partial_keys().contains(&key(3)));
    assert!(store.partial_keys().contains(&key(9)));
    drop(store.open_partial(&key(3), 500, Some("alice")).unwrap());
    assert_eq!(
        fs::metadata(
            dir.path()
                .join(".fts/partial/alice")
                .join(format!("{}.part", key(3).to_hex()))
        )
        .unwrap()
        .len(),
        500
    );
    // And placed from there.
    let placed = store
        .place(
            &key(3),
            &name("done.bin"),
            ConflictPolicy::KeepBoth,
            &mut KnownFolders::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read(dir.path().join(placed.as_str())).unwrap(),
        vec![3u8; 500]
    );
    assert_eq!(store.partial_usage(Some("alice")).files, 0);
}

#[test]
fn one_file_per_key_whoever_writes_it_and_sweeping_removes_exactly_what_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // An interrupted large upload kept in alice's folder...
    let mut file = store.open_partial(&key(5), 0, Some("alice")).unwrap();
    file.write_all(&[1; 100]).unwrap();
    drop(file);
    // ...then the same key sent again as a small file, written by its commit: same file.
    drop(store.write_partial(&key(5), b"small").unwrap());
    assert_eq!(store.partials().len(), 1, "{:?}", store.partials());
    assert_eq!(store.partial_usage(Some("alice")).bytes, 5);
    let placed = store
        .place(
            &key(5),
            &name("s.txt"),
            ConflictPolicy::KeepBoth,
            &mut KnownFolders::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read(dir.path().join(placed.as_str())).unwrap(),
        b"small"
    );
    assert!(store.partials().is_empty(), "nothing orphaned");

    // A stale copy at the top of the area and a fresh one in an owner's folder: sweeping the
    // stale one leaves the fresh one.
    drop(partial_with(&store, &key(6), b"fresh"));
    let stale = dir
        .path()
        .join(".fts/partial")
        .join(format!("{}.part", key(6).to_hex()));
    fs::write(&stale, b"stale").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(store.sweep_partials(Duration::from_secs(60), |_| false), 1);
    assert!(!stale.exists());
    assert_eq!(
        store.partial_len(&key(6)).unwrap(),
        Some(5),
        "the fresh copy stays"
    );
}

#[test]
fn an_owner_folder_swapped_for_a_link_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    drop(partial_with(&store, &key(7), b"mine"));
    let folder = dir.path().join(".fts/partial/tester");
    fs::remove_file(folder.join(format!("{}.part", key(7).to_hex()))).unwrap();
    fs::remove_dir(&folder).unwrap();
    std::os::unix::fs::symlink(outside.path(), &folder).unwrap();
    assert!(store.open_partial(&key(7), 0, Some("tester")).is_err());
    assert!(store.hash_partial_prefix(&key(7), 1).is_err());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// Uploads begun at once count at the size they declared, not at the bytes they hold yet:
/// together they cannot exceed their owner's quota, and a resume is counted the same way.
#[test]
fn uploads_in_progress_count_at_their_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let quota = PartialQuota {
        files: 100,
        bytes: 1_000_000,
    };
    let held = |k: &Hash| *k == key(1) || *k == key(2);
    let first = store.open_fresh_partial(&key(1), "dave", 900_000, quota, held);
    assert!(first.is_ok());
    // Nothing written yet, but 900,000 bytes are promised: a second one does not fit, and
    // the first, in progress, is not removed to make room.
    let second = store.open_fresh_partial(&key(2), "dave", 900_000, quota, held);
    assert!(
        matches!(second, Err(StoreError::PartialQuota { .. })),
        "{second:?}"
    );
    assert_eq!(store.partial_len(&key(1)).unwrap(), Some(0));
    // Another user is not affected.
    assert!(store
        .open_fresh_partial(&key(3), "erin", 900_000, quota, held)
        .is_ok());
    // A resume that declares more than fits beside the others is refused as well.
    let mut third = store
        .open_fresh_partial(&key(4), "erin", 50_000, quota, |k| *k == key(3))
        .unwrap();
    third.write_all(&[7; 100]).unwrap();
    drop(third);
    let resumed =
        store.open_partial_within_quota(&key(4), 100, "erin", 200_000, quota, |k| *k == key(3));
    assert!(
        matches!(resumed, Err(StoreError::PartialQuota { .. })),
        "{resumed:?}"
    );
    assert!(store
        .open_partial_within_quota(&key(4), 100, "erin", 90_000, quota, |k| *k == key(3))
        .is_ok());
}

/// A partial's prefix hash is kept between announcements, and read again once the partial
/// changed, even at the same length.
#[test]
fn a_prefix_hash_is_read_again_only_when_the_partial_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let hash_of = |bytes: &[u8]| Hash::from(blake3::hash(bytes));
    drop(partial_with(&store, &key(1), b"first bytes"));
    let first = store.hash_partial_prefix(&key(1), 5).unwrap();
    assert_eq!(Hash::from(first.finalize()), hash_of(b"first"));
    let again = store.hash_partial_prefix(&key(1), 5).unwrap();
    assert_eq!(Hash::from(again.finalize()), hash_of(b"first"));
    // The same length, other bytes: the change time moved, so the new bytes are read.
    std::thread::sleep(Duration::from_millis(20));
    let mut file = store.open_partial(&key(1), 0, Some("tester")).unwrap();
    file.write_all(b"other bytes").unwrap();
    drop(file);
    let changed = store.hash_partial_prefix(&key(1), 5).unwrap();
    assert_eq!(Hash::from(changed.finalize()), hash_of(b"other"));
    let longer = store.hash_partial_prefix(&key(1), 11).unwrap();
    assert_eq!(Hash::from(longer.finalize()), hash_of(b"other bytes"));
}
