//! The files a session verified since its last commit, staged on disk in batches while the
//! group is still filling.
//!
//! Creating a file is the largest cost of a small upload (inode allocation dominates), and a
//! commit can only begin once every file of its group is on disk. Staging a batch as soon as
//! it is complete, on the blocking pool, overlaps that work with receiving the next files and
//! with the previous group's flush, so a commit is left with the flushes, the renames and
//! the catalog. The commit itself is described in commit.rs.

use std::{sync::Arc, time::Instant};

use tokio::task::{JoinError, JoinHandle};

use crate::{
    commit::{self, Placed, StageResult, Verified},
    upload::Content,
    ServerState,
};

/// Files handed to one staging task.
pub const STAGE_BATCH_FILES: usize = 64;

/// A batch being staged: the files come back with how each reached the disk.
type Staging = JoinHandle<Vec<(Verified, StageResult)>>;

/// What a finished commit returns: the group and each file's fate, in order.
pub type Committed = Result<(Vec<Verified>, Vec<Placed>), JoinError>;

/// The verified files waiting for their commit.
#[derive(Default)]
pub struct Group {
    /// Batches handed to staging tasks, in order.
    staging: Vec<Staging>,
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
        let state = Arc::clone(state);
        self.staging.push(tokio::task::spawn_blocking(move || {
            commit::stage_batch(&state, batch)
        }));
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
        *self = Self::default();
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let mut group = Vec::new();
            let mut staged = Vec::new();
            for batch in batches {
                for (verified, result) in batch.await? {
                    group.push(verified);
                    staged.push(result);
                }
            }
            tokio::task::spawn_blocking(move || {
                let placed = commit::commit_staged(&state, &group, staged, client);
                (group, placed)
            })
            .await
        })
    }
}
