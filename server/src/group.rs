//! The files a session verified since its last commit, staged on disk in batches while the
//! group is still filling.
//!
//! Creating a file is the largest cost of a small upload (inode allocation dominates), and a
//! commit can only begin once every file of its group is on disk. Staging a batch as soon as
//! it is complete overlaps that work with receiving the next files and with the previous
//! group's flush, so a commit is left with the flushes, the renames and the catalog. The
//! commit itself is described in commit.rs.
//!
//! Each session stages on one thread of its own, in order: with a task per batch, batches of
//! three groups ran at once and the oldest group, the one a commit waits for, finished last
//! (measured: the first commit started 70 ms late while the client stalled).

use std::{sync::Arc, time::Instant};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    commit::{self, Placed, StageResult, Verified},
    upload::Content,
    ServerState,
};

/// Files handed to one staging task.
pub const STAGE_BATCH_FILES: usize = 64;

/// A staged batch: the files come back with how each reached the disk.
type StagedBatch = Vec<(Verified, StageResult)>;

/// A batch for the stager, and where its result goes.
type StageRequest = (Vec<Verified>, oneshot::Sender<StagedBatch>);

/// What a finished commit returns: the group and each file's fate, in order; or why the
/// commit itself failed.
pub type Committed = Result<(Vec<Verified>, Vec<Placed>), String>;

/// The verified files waiting for their commit.
#[derive(Default)]
pub struct Group {
    /// The session's staging thread, started with the first batch.
    stager: Option<mpsc::UnboundedSender<StageRequest>>,
    /// Batches handed to the stager, in order.
    staging: Vec<oneshot::Receiver<StagedBatch>>,
    /// The newest files, not yet a full batch.
    unstaged: Vec<Verified>,
    files: usize,
    bytes: u64,
    memory: u64,
    open_files: usize,
    first_verified: Option<Instant>,
}

impl Group {
    /// True when no file waits.
    pub fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// Files waiting.
    pub fn len(&self) -> usize {
        self.files
    }

    /// Content bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of small uploads held in memory (staged or not: staged ones drop theirs, but
    /// the bound is about the whole group).
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// Partial files held open.
    pub fn open_files(&self) -> usize {
        self.open_files
    }

    /// When the oldest waiting file was verified.
    pub fn first_verified(&self) -> Option<Instant> {
        self.first_verified
    }

    /// Adds a verified file; a full batch goes to staging at once.
    pub fn push(&mut self, state: &Arc<ServerState>, verified: Verified) {
        self.files += 1;
        self.bytes += verified.size;
        match verified.content {
            Content::Memory(_) => self.memory += verified.size,
            Content::Partial(_) => self.open_files += 1,
        }
        self.first_verified.get_or_insert(verified.verified_at);
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
        let stager = self
            .stager
            .get_or_insert_with(|| start_stager(Arc::clone(state)));
        let (done, result) = oneshot::channel();
        // A stager that died drops `done`; the commit then reports it.
        let _ = stager.send((batch, done));
        self.staging.push(result);
    }

    /// Takes the whole group and commits it in the background: waits for its staging, then
    /// flushes, names and records it on the blocking pool. Leaves the group empty.
    pub fn commit(
        &mut self,
        state: &Arc<ServerState>,
        client: std::net::SocketAddr,
    ) -> JoinHandle<Committed> {
        self.stage_unstaged(state);
        let batches = std::mem::take(&mut self.staging);
        *self = Self {
            stager: self.stager.take(),
            ..Self::default()
        };
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let mut group = Vec::new();
            let mut staged = Vec::new();
            for batch in batches {
                let batch = batch
                    .await
                    .map_err(|_| "the staging thread failed".to_owned())?;
                for (verified, result) in batch {
                    group.push(verified);
                    staged.push(result);
                }
            }
            tokio::task::spawn_blocking(move || {
                let placed = commit::commit_staged(&state, &group, staged, client);
                (group, placed)
            })
            .await
            .map_err(|join| join.to_string())
        })
    }
}

/// Starts a session's staging thread; it ends when the session drops its sender.
fn start_stager(state: Arc<ServerState>) -> mpsc::UnboundedSender<StageRequest> {
    let (sender, mut requests) = mpsc::unbounded_channel::<StageRequest>();
    tokio::task::spawn_blocking(move || {
        while let Some((batch, done)) = requests.blocking_recv() {
            let _ = done.send(commit::stage_batch(&state, batch));
        }
    });
    sender
}
