//! The upload round: what a session knows between a round of `Prepare`s and the Acks of its
//! files. It holds the resumes offered, the files announced and not yet begun, the free space
//! promised, the verified files waiting for their group commit, and the commits in flight;
//! and it says, in one place, when the waiting group must be committed.

use std::{collections::HashMap, collections::VecDeque, net::SocketAddr, sync::Arc};

use ft_protocol::Hash;
use tokio::{task::JoinHandle, time::Instant};

use super::announced::Announced;
use crate::{
    commit::Verified,
    group::{Committed, Group},
    memory::Reserved,
    ServerState,
};

/// Group commits a session may have in flight. Two let one group's data flush overlap the
/// previous group's renames and catalog transaction (which are serialized across sessions).
pub(super) const COMMITS_IN_FLIGHT: usize = 2;

/// A resume offered by a `Prepare`: the offset, the hash state of the bytes before it, and
/// that state's memory, reserved from the server's budget.
pub(super) type Offer = (u64, Box<blake3::Hasher>, Reserved);

/// One session's upload round.
#[derive(Default)]
pub(super) struct UploadRound {
    /// Resumes offered in this round of `Prepare`s, by upload key.
    offers: HashMap<Hash, Offer>,
    /// Keys this round of `Prepare`s accepted and not yet begun: their folders and space need
    /// no second check. At most `MAX_ANNOUNCED_FILES`.
    announced: Announced,
    /// Bytes this round of `Prepare`s has counted against the free space.
    promised: u64,
    /// The file being received is the last one the round announced: once it is verified, its
    /// group is committed at once instead of after a pause.
    ends_round: bool,
    /// Verified uploads waiting for their group commit.
    group: Group,
    /// Groups being committed in the background, oldest first (at most
    /// [`COMMITS_IN_FLIGHT`]).
    committing: VecDeque<JoinHandle<Committed>>,
    /// Ids of files begun and not yet answered: the client pairs answers with files by id,
    /// so an id used twice at once is a protocol violation. Bounded by the files a group and
    /// the commits in flight hold.
    unanswered: std::collections::HashSet<u32>,
}

impl UploadRound {
    /// A `Prepare` that does not append starts a new round: earlier offers, announcements and
    /// promises are forgotten (verified files and commits are not).
    pub(super) fn start_over(&mut self) {
        self.offers.clear();
        self.announced.clear();
        self.promised = 0;
    }

    /// Files announced and not yet begun.
    pub(super) fn announced_len(&self) -> usize {
        self.announced.len()
    }

    /// Bytes of free space promised to the round so far.
    pub(super) fn promised(&self) -> u64 {
        self.promised
    }

    /// Records the round's new total of promised bytes.
    pub(super) fn set_promised(&mut self, promised: u64) {
        self.promised = promised;
    }

    /// Whether `key` already has a resume offered this round.
    pub(super) fn has_offer(&self, key: &Hash) -> bool {
        self.offers.contains_key(key)
    }

    /// Resumes offered this round.
    pub(super) fn offer_count(&self) -> usize {
        self.offers.len()
    }

    /// Remembers a resume offered to the client.
    pub(super) fn offer(&mut self, key: Hash, offer: Offer) {
        self.offers.insert(key, offer);
    }

    /// Takes the resume offered for `key`, if any.
    pub(super) fn take_offer(&mut self, key: &Hash) -> Option<Offer> {
        self.offers.remove(key)
    }

    /// Notes that file `id` began; false if a file with that id awaits its answer already.
    pub(super) fn begin_id(&mut self, id: u32) -> bool {
        self.unanswered.insert(id)
    }

    /// Notes that file `id` was answered.
    pub(super) fn answered(&mut self, id: u32) {
        self.unanswered.remove(&id);
    }

    /// Counts `key` as announced.
    pub(super) fn announce(&mut self, key: Hash) {
        self.announced.push(key);
    }

    /// A file begins: whether it was announced (its checks were done), noting whether it is
    /// the round's last.
    pub(super) fn begin(&mut self, key: &Hash) -> bool {
        let announced = self.announced.take(key);
        self.ends_round = announced && self.announced.is_empty();
        announced
    }

    /// Adds a verified file to the waiting group. True when the group should be committed
    /// now: it is full or old, or the file was the last the round announced.
    pub(super) fn push_verified(&mut self, state: &Arc<ServerState>, verified: Verified) -> bool {
        self.group.push(state, verified);
        std::mem::take(&mut self.ends_round) || self.group.is_full()
    }

    /// Whether verified files wait for a commit.
    pub(super) fn has_waiting_files(&self) -> bool {
        !self.group.is_empty()
    }

    /// Whether the waiting group's oldest file has waited too long (checked between the
    /// chunks of a large upload, which otherwise never pauses).
    pub(super) fn group_overdue(&self) -> bool {
        self.group.is_overdue()
    }

    /// When the waiting group must be committed if no request arrives first.
    pub(super) fn commit_deadline(&self) -> Option<Instant> {
        let now = std::time::Instant::now();
        self.group.commit_deadline(now).map(Instant::from_std)
    }

    /// Whether another commit may start without waiting for the oldest one.
    pub(super) fn may_start_commit(&self) -> bool {
        self.committing.len() < COMMITS_IN_FLIGHT
    }

    /// Starts committing the waiting group in the background (the caller made room, see
    /// [`UploadRound::may_start_commit`]). Nothing happens when no file waits.
    pub(super) fn start_commit(
        &mut self,
        state: &Arc<ServerState>,
        peer: SocketAddr,
        owner: String,
    ) {
        if self.group.is_empty() {
            return;
        }
        let commit = self.group.commit(state, peer, owner);
        self.committing.push_back(commit);
    }

    /// Whether a commit is in flight.
    pub(super) fn is_committing(&self) -> bool {
        !self.committing.is_empty()
    }

    /// Whether the oldest commit in flight has finished (its answers are due).
    pub(super) fn answers_due(&self) -> bool {
        self.committing.front().is_some_and(JoinHandle::is_finished)
    }

    /// The oldest commit in flight, removed once it finishes.
    pub(super) fn oldest_commit(&mut self) -> Option<&mut JoinHandle<Committed>> {
        self.committing.front_mut()
    }

    /// Forgets the oldest commit in flight (it finished and is being answered).
    pub(super) fn pop_oldest_commit(&mut self) -> Option<JoinHandle<Committed>> {
        self.committing.pop_front()
    }
}
