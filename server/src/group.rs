//! The files a session verified since its last commit, staged on disk in batches while the
//! group is still filling.
//!
//! Creating a file is the largest cost of a small upload (inode allocation dominates), and a
//! commit can only begin once every file of its group is on disk. Staging a batch as soon as
//! it is complete overlaps that work with receiving the next files and with the previous
//! group's flush, so a commit is left with the flushes, the renames and the catalog. The
//! commit itself is described in commit.rs.
//!
//! Each session stages its batches in order, one at a time: the oldest group is the one a
//! commit waits for, so it must not compete with younger batches for the disk and the CPU.
//! The staging task runs only while batches are queued, so an idle session holds no thread.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    commit::{self, CommitError, Placed, StageResult, Verified},
    refusal::Refusal,
    store::ErrorWatch,
    upload::Content,
    ServerState,
};

/// Most files in one group.
pub(crate) const GROUP_MAX_FILES: usize = 1024;

/// Most content bytes in one group; beyond this, waiting for more files saves little.
pub(crate) const GROUP_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Most partial files a group holds open (each verified upload over the in-memory size keeps
/// its file open until the commit).
pub(crate) const GROUP_MAX_OPEN_FILES: usize = 128;

/// Most bytes of small uploads a group holds in memory.
pub(crate) const GROUP_MAX_MEMORY: u64 = 8 * 1024 * 1024;

/// A group is committed once its first file has waited this long, even while files keep
/// coming (a slow link trickling large files would otherwise hold Acks back).
pub(crate) const GROUP_MAX_AGE: Duration = Duration::from_millis(500);

/// A group is committed when no request arrives for this long.
pub(crate) const GROUP_WAIT: Duration = Duration::from_millis(2);

/// Files handed to one staging task.
pub(crate) const STAGE_BATCH_FILES: usize = 64;

/// A staged batch: the files come back with how each reached the disk.
type StagedBatch = Vec<(Verified, StageResult)>;

/// A batch for the stager, and where its result goes.
type StageRequest = (Vec<Verified>, oneshot::Sender<StagedBatch>);

/// What a finished commit returns: the group and each file's fate, in order; or why the
/// commit itself failed.
pub(crate) type Committed = Result<(Vec<Verified>, Vec<Placed>), CommitError>;

/// The verified files waiting for their commit.
#[derive(Default)]
pub(crate) struct Group {
    /// Batches waiting for the session's staging task.
    stager: Arc<Mutex<StageQueue>>,
    /// Resolved once the previous group is named (or its commit ended without naming).
    last_named: Option<oneshot::Receiver<()>>,
    /// Batches handed to the stager, in order.
    staging: Vec<oneshot::Receiver<StagedBatch>>,
    /// The newest files, not yet a full batch.
    unstaged: Vec<Verified>,
    files: usize,
    bytes: u64,
    memory: u64,
    open_files: usize,
    first_verified: Option<Instant>,
    /// Opened before the group's first file is staged, for its flush's error report (see
    /// `ErrorWatch`).
    watch: Option<ErrorWatch>,
}

impl Group {
    /// True when no file waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// Files waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.files
    }

    /// Whether the group has reached one of its limits and should be committed now.
    pub(crate) fn is_full(&self) -> bool {
        self.files >= GROUP_MAX_FILES
            || self.bytes >= GROUP_MAX_BYTES
            || self.memory >= GROUP_MAX_MEMORY
            || self.open_files >= GROUP_MAX_OPEN_FILES
            || self.is_overdue()
    }

    /// Whether the oldest waiting file has waited [`GROUP_MAX_AGE`].
    pub(crate) fn is_overdue(&self) -> bool {
        self.first_verified
            .is_some_and(|first| first.elapsed() >= GROUP_MAX_AGE)
    }

    /// When the group must be committed if no request comes first: after a pause of
    /// [`GROUP_WAIT`] from `now`, and at the latest when its oldest file is [`GROUP_MAX_AGE`]
    /// old. `None` while the group is empty.
    pub(crate) fn commit_deadline(&self, now: Instant) -> Option<Instant> {
        let first = self.first_verified?;
        Some((now + GROUP_WAIT).min(first + GROUP_MAX_AGE))
    }

    /// Adds a verified file; a full batch goes to staging at once.
    pub(crate) fn push(&mut self, state: &Arc<ServerState>, verified: Verified) {
        self.files += 1;
        self.bytes += verified.size;
        match verified.content {
            Content::Memory(_) => self.memory += verified.size,
            Content::Partial(_) => self.open_files += 1,
        }
        self.first_verified.get_or_insert(verified.verified_at);
        if self.watch.is_none() {
            // Without one, the group's files are each flushed on their own.
            self.watch = state.store.error_watch().ok();
        }
        self.unstaged.push(verified);
        if self.unstaged.len() >= STAGE_BATCH_FILES {
            self.stage_unstaged(state);
        }
    }

    fn stage_unstaged(&mut self, state: &Arc<ServerState>) {
        if self.unstaged.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.unstaged);
        let (done, result) = oneshot::channel();
        let mut queue = lock(&self.stager);
        queue.batches.push_back((batch, done));
        if !queue.draining {
            queue.draining = true;
            let (queue, state) = (Arc::clone(&self.stager), Arc::clone(state));
            tokio::task::spawn_blocking(move || drain(&queue, &state));
        }
        drop(queue);
        self.staging.push(result);
    }

    /// Takes the whole group and commits it in the background: waits for its staging, then
    /// flushes it, then (once the previous group is named, so groups are named in order)
    /// names and records it, on the blocking pool. Leaves the group empty.
    pub(crate) fn commit(
        &mut self,
        state: &Arc<ServerState>,
        client: std::net::SocketAddr,
        owner: String,
    ) -> JoinHandle<Committed> {
        self.stage_unstaged(state);
        let batches = std::mem::take(&mut self.staging);
        let watch = self.watch.take();
        let previous_named = self.last_named.take();
        let (named, named_rx) = oneshot::channel::<()>();
        *self = Self {
            stager: Arc::clone(&self.stager),
            last_named: Some(named_rx),
            ..Self::default()
        };
        let state = Arc::clone(state);
        tokio::spawn(async move {
            // Dropped on every way out, which lets the next group be named.
            let _named = named;
            let mut group = Vec::new();
            let mut staged = Vec::new();
            for batch in batches {
                let batch = batch.await.map_err(|_| CommitError::Staging)?;
                for (verified, result) in batch {
                    group.push(verified);
                    staged.push(result);
                }
            }
            let flushing = Arc::clone(&state);
            let (group, flushed) = tokio::task::spawn_blocking(move || {
                let flushed = commit::flush_staged(&flushing, &group, staged, watch.as_ref());
                (group, flushed)
            })
            .await
            .map_err(CommitError::Task)?;
            let flushed = match flushed {
                Ok(flushed) => flushed,
                Err(err) => {
                    let refusal = Refusal::storage(err);
                    let failed = group.iter().map(|_| Err(refusal.clone())).collect();
                    return Ok((group, failed));
                }
            };
            if let Some(previous) = previous_named {
                // Err only means the previous commit ended without naming anything.
                let _ = previous.await;
            }
            tokio::task::spawn_blocking(move || {
                let placed = commit::name_flushed(&state, &group, flushed, client, &owner);
                (group, placed)
            })
            .await
            .map_err(CommitError::Task)
        })
    }
}

/// The batches a session has handed over for staging, in order.
#[derive(Default)]
struct StageQueue {
    batches: VecDeque<StageRequest>,
    /// A task is draining the queue.
    draining: bool,
}

fn lock(queue: &Mutex<StageQueue>) -> std::sync::MutexGuard<'_, StageQueue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stages queued batches in order until none is left. Blocking. A batch whose result is no
/// longer awaited (the session ended) is staged all the same and dropped, which closes and
/// thereby discards its unnamed files.
fn drain(queue: &Mutex<StageQueue>, state: &ServerState) {
    /// Should staging panic, the queued batches are dropped with it, so their commits fail
    /// at once instead of waiting for a task that is gone.
    struct OnPanic<'a>(&'a Mutex<StageQueue>);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut queue = lock(self.0);
                queue.batches.clear();
                queue.draining = false;
            }
        }
    }
    let _on_panic = OnPanic(queue);
    loop {
        let (batch, done) = {
            let mut queue = lock(queue);
            match queue.batches.pop_front() {
                Some(next) => next,
                None => {
                    queue.draining = false;
                    return;
                }
            }
        };
        let _ = done.send(commit::stage_batch(state, batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::{Catalog, Within},
        commit::tests::{test_state, verified},
        config::Limits,
        names::ValidName,
        store::Store,
    };
    use ft_protocol::{ConflictPolicy, Hash};

    /// Two commits in flight name their files in the order the groups were begun: with
    /// overwrite, the later file wins even when its group is the smaller, faster one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_are_named_in_order() {
        let (dir, state) = test_state();
        let client = "127.0.0.1:1".parse().unwrap();
        let overwrite = |mut verified: Verified, content: &[u8]| {
            verified.name = ValidName::parse("same.txt").unwrap();
            verified.conflict = ConflictPolicy::Overwrite;
            verified.size = content.len() as u64;
            verified.hash = Hash::from(blake3::hash(content));
            verified.content = Content::Memory(content.to_vec());
            verified
        };
        let mut group = Group::default();
        group.push(&state, overwrite(verified(&state, 100_000).await, b"older"));
        for n in 0..STAGE_BATCH_FILES as u32 * 8 {
            group.push(&state, verified(&state, n).await);
        }
        let big = group.commit(&state, client, "tester".into());
        // A single file: synced on its own, it is ready long before the big group.
        group.push(&state, overwrite(verified(&state, 100_001).await, b"newer"));
        let small = group.commit(&state, client, "tester".into());
        let (_, placed) = small.await.unwrap().unwrap();
        assert!(placed[0].is_ok(), "{placed:?}");
        let (_, placed) = big.await.unwrap().unwrap();
        assert!(placed.iter().all(Result::is_ok));
        let stored = std::fs::read(dir.path().join("same.txt")).unwrap();
        assert_eq!(stored, b"newer", "the later upload is the one kept");
    }

    /// Every file lands whether it was staged ahead (with a permit) or by its commit (none
    /// left), and every permit comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_land_with_or_without_staging_permits() {
        for budget in [0, 3, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let catalog = Catalog::open(&dir.path().join(".fts/catalog.db")).unwrap();
            let security = crate::Security::ephemeral(&dir.path().join(".fts/catalog.db")).unwrap();
            let mut state = ServerState::new(store, catalog, security, Limits::default());
            state.staged_files = Arc::new(tokio::sync::Semaphore::new(budget));
            let state = Arc::new(state);
            let mut group = Group::default();
            let files = STAGE_BATCH_FILES as u32 * 2 + 7;
            for n in 0..files {
                group.push(&state, verified(&state, n).await);
            }
            assert_eq!(group.len(), files as usize);
            let client = "127.0.0.1:1".parse().unwrap();
            let (committed, placed) = group
                .commit(&state, client, "tester".into())
                .await
                .unwrap()
                .unwrap();
            assert!(group.is_empty());
            assert_eq!(committed.len(), files as usize);
            for (verified, placed) in committed.iter().zip(&placed) {
                let stored = placed.as_ref().unwrap();
                assert_eq!(stored.as_str(), verified.name.as_str());
                let on_disk = std::fs::read(stored.under(dir.path())).unwrap();
                assert_eq!(
                    on_disk,
                    format!("content of file {}", verified.id).into_bytes()
                );
            }
            assert_eq!(
                state.catalog.totals(Within::All).unwrap().0,
                u64::from(files)
            );
            assert_eq!(
                state.staged_files.available_permits(),
                budget,
                "budget {budget}"
            );
            // Files staged ahead hand their memory back for the next uploads; a file staged
            // by its commit keeps it until the group is answered.
            let returned: usize = committed
                .iter()
                .take(budget.min(files as usize))
                .map(|verified| verified.size as usize)
                .sum();
            assert!(
                state.small_buffers.idle_bytes() >= returned,
                "budget {budget}: {} bytes back, {returned} expected",
                state.small_buffers.idle_bytes()
            );
            let partials = std::fs::read_dir(dir.path().join(".fts/partial")).unwrap();
            assert_eq!(partials.count(), 0, "nothing left in the partial area");
        }
    }
}
