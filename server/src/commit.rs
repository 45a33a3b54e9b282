//! Group commit: verified uploads become durable and named in batches.
//!
//! Making one file durable costs several flushes (its data, its folder, the catalog). For
//! many small files that dominates everything else, so a session collects the files it has
//! verified and commits them together, in this order:
//!
//! 0. Staging, in batches while the group is still filling (see group.rs): each small
//!    upload is written from memory into an unnamed file in its folder.
//! 1. Every file's data is flushed (`fdatasync`), all of the group's files at once.
//! 2. Each file is given its name (renamed from its partial file, or its unnamed file
//!    linked; keep-both or overwrite).
//! 3. One catalog transaction records the whole group; SQLite flushes its log before it
//!    returns. Meanwhile, every folder from each new name up to the storage directory is
//!    flushed (`fsync`), all at once.
//! 4. Only then is each file acknowledged.
//!
//! Only our own files and folders are flushed, never the whole filesystem (`syncfs` waited
//! for every other program's dirty data, 30 times slower on a busy disk); flushed together,
//! they cost about one `syncfs` on a quiet disk (see store/flush.rs).
//!
//! So an Ack still means exactly what it meant with one file at a time: the content, its
//! name and its record survive a crash. And a name never points at data that is not yet
//! durable, because names are given only after the first flush. Should the names' flush or
//! the catalog fail, the group's keep-both names and their records are taken back. When a
//! group closes is group.rs's to say (its limits are there). If the connection drops
//! before the commit, the verified files stay in the partial area and a retry resumes them
//! at their full length, so nothing is stored twice.

use std::{fs::File, net::SocketAddr, sync::Arc};

use tokio::sync::OwnedSemaphorePermit;

use crate::upload::Content;

use ft_protocol::{ConflictPolicy, Hash};

use crate::{
    catalog::NewRecord,
    names::ValidName,
    refusal::Refusal,
    store::{ErrorWatch, KnownFolders, Store, StoreError},
    ServerState,
};

/// A verified upload waiting for its group's commit.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The client's id for the file.
    pub(crate) id: u32,
    /// The name it was sent under.
    pub(crate) name: ValidName,
    /// Its partial file's key.
    pub(crate) key: Hash,
    /// Keep both, overwrite or skip.
    pub(crate) conflict: ConflictPolicy,
    /// The sender's modification time (nanoseconds since the Unix epoch), given to the
    /// stored file and recorded.
    pub(crate) modified_ns: Option<i64>,
    /// Its size.
    pub(crate) size: u64,
    /// Its verified BLAKE3.
    pub(crate) hash: Hash,
    /// Its bytes: a partial file (kept open until the commit) or, for a small file, memory.
    pub(crate) content: Content,
    /// When its upload began, for the log.
    pub(crate) started: std::time::Instant,
    /// When it was verified: a group is not kept open for long (see [`GROUP_MAX_AGE`]).
    pub(crate) verified_at: std::time::Instant,
    /// Keeps other connections off the partial file until it is renamed away.
    pub(crate) _lease: crate::leases::Lease,
    /// The memory of content held in memory, reserved from the server's budget.
    pub(crate) _memory: Option<crate::memory::Reserved>,
}

/// The result for one file of a group: the name it is stored under, or why it is not.
pub(crate) type Placed = Result<ValidName, Refusal>;

/// How a group member's bytes reached the disk, ready to be given a name; or why not.
pub(crate) type StageResult = Result<Staged, Refusal>;

/// Why a whole group could not be committed (each file's own failures are [`Placed`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// The group's data could not be flushed.
    #[error("cannot make the upload durable: {0}")]
    DataFlush(StoreError),
    /// The session's staging thread ended without staging the group.
    #[error("the staging thread failed")]
    Staging,
    /// A task of the commit panicked or was cancelled.
    #[error("commit task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Stages every file of `batch` (step 0). Small uploads' buffers go back to
/// [`ServerState::small_buffers`] once written.
///
/// A staged file holds a descriptor until its commit, so each takes one of the server-wide
/// [`ServerState::staged_files`] permits; when none is left, the file stays in memory and its
/// commit stages it (as it would a file that arrived just before the commit). Blocking.
pub(crate) fn stage_batch(
    state: &ServerState,
    batch: Vec<Verified>,
) -> Vec<(Verified, StageResult)> {
    let mut known = KnownFolders::default();
    batch
        .into_iter()
        .map(|mut verified| {
            if let Content::Partial(file) = &verified.content {
                set_modified(file, verified.modified_ns);
                return (verified, Ok(Staged::Partial));
            }
            let Ok(permit) = Arc::clone(&state.staged_files).try_acquire_owned() else {
                return (verified, Ok(Staged::Deferred));
            };
            let staged = stage(state, &verified, &mut known, Some(permit));
            let written = std::mem::replace(&mut verified.content, Content::Memory(Vec::new()));
            if let Content::Memory(buffer) = written {
                state.small_buffers.give_back(buffer);
            }
            (verified, staged)
        })
        .collect()
}

/// Gives a stored file the sender's modification time, before its data is flushed. The
/// catalog's record is what re-runs and downloads go by, so a failure here only loses the
/// file's own time on the server's disk: it is logged, never fatal.
fn set_modified(file: &std::fs::File, modified_ns: Option<i64>) {
    let Some(ns) = modified_ns else { return };
    let time = rustix::fs::Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    if let Err(err) = rustix::fs::futimens(file, &times) {
        tracing::debug!(error = %err, "cannot set the modification time");
    }
}

/// A group whose data is durable (step 1), waiting to be named and recorded.
pub(crate) struct Flushed {
    files: Vec<StageResult>,
    started: std::time::Instant,
    data_synced: std::time::Instant,
}

/// Step 1 of the module docs for a staged group: the files left in memory are written, and
/// every file's data is made durable. On failure, the message every file fails with.
/// Blocking.
pub(crate) fn flush_staged(
    state: &ServerState,
    group: &[Verified],
    files: Vec<StageResult>,
    watch: Option<&ErrorWatch>,
) -> Result<Flushed, CommitError> {
    let started = std::time::Instant::now();
    let files: Vec<StageResult> = files
        .into_iter()
        .zip(group)
        .map(|(staged, verified)| match staged {
            // Without a permit, no descriptor is held: written to the partial area, closed,
            // opened again for its flush and renamed into place.
            Ok(Staged::Deferred) => write_closed_partial(state, verified),
            other => other,
        })
        .collect();
    let on_disk = |large: bool| {
        group
            .iter()
            .zip(&files)
            .filter(move |(verified, _)| matches!(verified.content, Content::Partial(_)) == large)
            .filter_map(|(verified, staged)| match staged.as_ref().ok()? {
                Staged::WrittenPartial(None, _) => {
                    Some(state.store.partial_for_flush(&verified.key))
                }
                staged => staged.file(verified).map(Store::for_flush),
            })
    };
    // Small files are what may still be in the cache (large ones were written direct).
    let unflushed: u64 = group
        .iter()
        .filter(|verified| !matches!(verified.content, Content::Partial(_)))
        .map(|verified| verified.size)
        .sum();
    state
        .store
        .sync_data(on_disk(false), on_disk(true), unflushed, watch)
        .map_err(CommitError::DataFlush)?;
    Ok(Flushed {
        files,
        started,
        data_synced: std::time::Instant::now(),
    })
}

/// Steps 2 to 4 of the module docs for a flushed group: names, their flush, the catalog.
/// Returns one result per file, in order. Groups must be named in the order they were
/// begun (see group.rs), or a later `--overwrite` could be overwritten by an earlier one.
/// Blocking.
pub(crate) fn name_flushed(
    state: &ServerState,
    group: &[Verified],
    flushed: Flushed,
    client: SocketAddr,
    owner: &str,
) -> Vec<Placed> {
    let Flushed {
        files,
        started,
        data_synced,
    } = flushed;
    let _serialized = state.serialize_commits();
    // Folders are checked again when placing: the checks above happened before the flush.
    let mut known = KnownFolders::default();
    let mut placed: Vec<Placed> = group
        .iter()
        .zip(&files)
        .map(|(verified, staged)| {
            let staged = staged.as_ref().map_err(Clone::clone)?;
            let placed = match staged {
                Staged::Partial | Staged::WrittenPartial(..) => {
                    state
                        .store
                        .place(&verified.key, &verified.name, verified.conflict, &mut known)
                }
                Staged::Unnamed(file, _) => {
                    state.store.link_unnamed(file, &verified.name, &mut known)
                }
                // Staged at the start of the commit; never left deferred.
                Staged::Deferred => return Err(Refusal::internal("the file was never written")),
            };
            placed.map_err(Refusal::from)
        })
        .collect();
    let named = std::time::Instant::now();
    let records: Vec<NewRecord> = group
        .iter()
        .zip(&placed)
        .filter_map(|(verified, placed)| {
            let stored = placed.as_ref().ok()?;
            Some(NewRecord {
                stored_name: stored.as_str().to_owned(),
                sent_name: verified.name.as_str().to_owned(),
                size: verified.size,
                hash: verified.hash,
                client,
                owner: owner.to_owned(),
                modified_ns: verified.modified_ns,
            })
        })
        .collect();
    // The names' folders are flushed on another thread while the catalog records the group
    // and flushes its own log: the two flushes overlap.
    let (names_synced, recorded) = std::thread::scope(|scope| {
        let names = scope.spawn(|| {
            let synced = state
                .store
                .sync_folders_of(placed.iter().filter_map(|p| p.as_ref().ok()));
            (synced, std::time::Instant::now())
        });
        let recorded = state.catalog.record_all(&records);
        let recorded_at = std::time::Instant::now();
        let names = names.join().unwrap_or_else(|_| {
            let panicked = StoreError::Io {
                action: "sync the folders of",
                path: state.store.root().to_path_buf(),
                cause: std::io::Error::other("the flushing thread panicked"),
            };
            (Err(panicked), std::time::Instant::now())
        });
        (names, (recorded, recorded_at))
    });
    let ((names_synced, names_durable), (recorded, recorded_at)) = (names_synced, recorded);
    match (names_synced, recorded) {
        (Ok(()), Ok(_)) => {}
        (Err(err), recorded) => {
            let message = format!("cannot make the names durable: {err}");
            let recorded = if recorded.is_ok() {
                Recorded::Yes
            } else {
                Recorded::No
            };
            undo_placements(state, group, &mut placed, &message, recorded);
            return placed;
        }
        (Ok(()), Err(err)) => {
            let message = format!("not stored: the catalog could not record it: {err}");
            undo_placements(state, group, &mut placed, &message, Recorded::No);
            return placed;
        }
    }
    tracing::debug!(
        files = group.len(),
        data = ?data_synced - started,
        names = ?named - data_synced,
        names_sync = ?names_durable - named,
        catalog = ?recorded_at - named,
        "group committed"
    );
    placed
}

/// A file of the group on disk, ready to be given its name (or not yet on disk).
#[derive(Debug)]
pub(crate) enum Staged {
    /// Its partial file (the upload's own content), renamed into place.
    Partial,
    /// A small upload written to its partial file, renamed into place; the file is kept open
    /// (with a permit, or in a tiny group) or already closed (`None`).
    // The permit is held for its `Drop`, which gives the descriptor back to the budget.
    #[allow(dead_code)]
    WrittenPartial(Option<File>, Option<OwnedSemaphorePermit>),
    /// A small upload in an unnamed file in its destination folder, linked into place.
    // The permit is held for its `Drop`, which gives the descriptor back to the budget.
    #[allow(dead_code)]
    Unnamed(File, Option<OwnedSemaphorePermit>),
    /// A small upload still in memory, to be staged by its commit.
    Deferred,
}

impl Staged {
    /// The open file holding `verified`'s bytes.
    fn file<'a>(&'a self, verified: &'a Verified) -> Option<&'a File> {
        match (self, &verified.content) {
            (Staged::Partial, Content::Partial(file)) => Some(file),
            (Staged::Partial, Content::Memory(_)) | (Staged::Deferred, _) => None,
            (Staged::WrittenPartial(file, _), _) => file.as_ref(),
            (Staged::Unnamed(file, _), _) => Some(file),
        }
    }
}

/// Puts a group member's bytes on disk without a name. A small keep-both upload goes into an
/// unnamed file in its destination folder; otherwise (an overwrite, or a filesystem without
/// unnamed files) into its partial file. `permit` accounts for the descriptor held until the
/// commit (see [`stage_batch`]).
fn stage(
    state: &ServerState,
    verified: &Verified,
    known: &mut KnownFolders,
    permit: Option<OwnedSemaphorePermit>,
) -> StageResult {
    let bytes = match &verified.content {
        Content::Partial(file) => {
            set_modified(file, verified.modified_ns);
            return Ok(Staged::Partial);
        }
        Content::Memory(bytes) => bytes,
    };
    if verified.conflict == ConflictPolicy::KeepBoth {
        if let Some(file) = state.store.create_unnamed(&verified.name, bytes, known)? {
            set_modified(&file, verified.modified_ns);
            return Ok(Staged::Unnamed(file, permit));
        }
    }
    let file = state.store.write_partial(&verified.key, bytes)?;
    set_modified(&file, verified.modified_ns);
    Ok(Staged::WrittenPartial(Some(file), permit))
}

/// Writes a small upload into its partial file and closes it (see [`flush_staged`]).
fn write_closed_partial(state: &ServerState, verified: &Verified) -> StageResult {
    let Content::Memory(bytes) = &verified.content else {
        return Ok(Staged::Partial);
    };
    match state.store.write_partial(&verified.key, bytes) {
        Ok(closed) => {
            set_modified(&closed, verified.modified_ns);
            Ok(Staged::WrittenPartial(None, None))
        }
        Err(err) => Err(Refusal::storage(err)),
    }
}

/// Whether a failed commit had already written its catalog records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Yes,
    No,
}

/// Takes back the keep-both placements of a group whose commit failed (and their records, if
/// written), so nothing carries a name or a record that did not become durable; an overwrite
/// cannot be taken back and says so.
fn undo_placements(
    state: &ServerState,
    group: &[Verified],
    placed: &mut [Placed],
    message: &str,
    recorded: Recorded,
) {
    let mut removed = Vec::new();
    for (verified, result) in group.iter().zip(placed.iter_mut()) {
        if let Ok(stored) = result {
            let message = match (verified.conflict, recorded) {
                (ConflictPolicy::KeepBoth | ConflictPolicy::Skip, _) => {
                    if let Err(err) = state.store.unplace(stored) {
                        tracing::warn!(error = %err, "could not take back a placement");
                    }
                    removed.push(stored.clone());
                    message.to_owned()
                }
                (ConflictPolicy::Overwrite, Recorded::No) => format!(
                    "stored as '{}' (replacing the old file) but not recorded: {message}",
                    stored.as_str()
                ),
                (ConflictPolicy::Overwrite, Recorded::Yes) => format!(
                    "stored and recorded as '{}' (replacing the old file), but not durable: \
                     {message}",
                    stored.as_str()
                ),
            };
            *result = Err(Refusal::storage(message));
        }
    }
    if recorded == Recorded::Yes {
        if let Err(err) = state
            .catalog
            .remove_all(removed.iter().map(ValidName::as_str))
        {
            tracing::error!(%err, "records of files taken back could not be removed");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{catalog::Catalog, config::Limits, store::Store};
    use ft_protocol::ErrorCode;
    use std::time::Instant;

    /// A server over a fresh temporary directory.
    pub(crate) fn test_state() -> (tempfile::TempDir, Arc<ServerState>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalog = Catalog::open(&dir.path().join(".fts/catalog.db")).unwrap();
        let security = crate::Security::ephemeral(&dir.path().join(".fts/catalog.db")).unwrap();
        let state = Arc::new(ServerState::new(
            store,
            catalog,
            security,
            Limits::default(),
        ));
        (dir, state)
    }

    /// Small file `n`, verified and waiting for its commit.
    pub(crate) async fn verified(state: &Arc<ServerState>, n: u32) -> Verified {
        let content = format!("content of file {n}").into_bytes();
        let key = Hash::from(blake3::hash(&n.to_le_bytes()));
        Verified {
            modified_ns: None,
            id: n,
            name: ValidName::parse(&format!("folder{}/file{n}.txt", n % 3)).unwrap(),
            key,
            conflict: ConflictPolicy::KeepBoth,
            size: content.len() as u64,
            hash: Hash::from(blake3::hash(&content)),
            content: Content::Memory(content),
            started: Instant::now(),
            verified_at: Instant::now(),
            _lease: state.leases.claim(key).await.unwrap(),
            _memory: None,
        }
    }

    /// If the names' flush fails after the records were written, keep-both files and their
    /// records are taken back; an overwritten file stays recorded, and its answer says it
    /// may not be durable.
    #[tokio::test]
    async fn a_failed_flush_takes_back_names_and_their_records() {
        let (dir, state) = test_state();
        let mut group = Vec::new();
        for n in 0..3 {
            group.push(verified(&state, n).await);
        }
        group[2].conflict = ConflictPolicy::Overwrite;
        let mut placed: Vec<Placed> = Vec::new();
        let mut records = Vec::new();
        for verified in &group {
            let path = verified.name.under(dir.path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"placed").unwrap();
            placed.push(Ok(verified.name.clone()));
            records.push(NewRecord {
                stored_name: verified.name.as_str().to_owned(),
                sent_name: verified.name.as_str().to_owned(),
                size: 6,
                hash: verified.hash,
                client: "127.0.0.1:1".parse().unwrap(),
                owner: "tester".into(),
                modified_ns: None,
            });
        }
        state.catalog.record_all(&records).unwrap();
        undo_placements(&state, &group, &mut placed, "disk on fire", Recorded::Yes);
        for verified in &group[..2] {
            assert!(!verified.name.under(dir.path()).exists());
            assert!(state.catalog.get(verified.name.as_str()).unwrap().is_none());
        }
        let overwritten = &group[2].name;
        assert!(overwritten.under(dir.path()).exists());
        assert!(state.catalog.get(overwritten.as_str()).unwrap().is_some());
        for result in &placed {
            let Refusal { code, message } = result.as_ref().unwrap_err();
            assert_eq!(*code, ErrorCode::Storage);
            assert!(message.contains("disk on fire"), "{message}");
        }
        let message = &placed[2].as_ref().unwrap_err().message;
        assert!(message.contains("not durable"), "{message}");
    }
}
