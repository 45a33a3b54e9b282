//! Who is writing which partial upload: at most one connection per upload key.
//!
//! A client that lost its connection usually reconnects before the server has noticed the
//! old connection is dead (a cut cable shows no FIN). So the newest claim wins: claiming a
//! key held by another session cancels that session's upload, waits for its writer to let
//! go, and takes over. The partial file itself is never written by two sessions at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ft_protocol::Hash;
use tokio_util::sync::CancellationToken;

/// How long a takeover waits for the previous holder to release the key.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Poll interval while waiting for a release; releases are quick (a writer draining at most
/// a few queued chunks), so polling keeps this simple.
const TAKEOVER_POLL: Duration = Duration::from_millis(10);

/// The set of keys being written.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<Hash, (u64, CancellationToken)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// The right to write one partial upload; released when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    key: Hash,
    id: u64,
    token: CancellationToken,
    leases: Arc<Leases>,
}

/// The previous holder did not let go in time.
#[derive(Debug, thiserror::Error)]
#[error("this file is being uploaded by another connection that does not let go")]
pub(crate) struct StillHeld;

impl Leases {
    /// Claims `key`, cancelling and waiting out any current holder.
    pub(crate) async fn claim(self: &Arc<Self>, key: Hash) -> Result<Lease, StillHeld> {
        if let Some(lease) = self.try_claim(key) {
            return Ok(lease);
        }
        let deadline = tokio::time::Instant::now() + TAKEOVER_TIMEOUT;
        loop {
            tokio::time::sleep(TAKEOVER_POLL).await;
            if let Some(lease) = self.try_claim(key) {
                return Ok(lease);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StillHeld);
            }
        }
    }

    /// Claims `key` if free; otherwise asks the holder to stop and returns `None`.
    fn try_claim(self: &Arc<Self>, key: Hash) -> Option<Lease> {
        self.claim_or(key, CancellationToken::cancel)
    }

    /// Claims `key` if nobody holds it, leaving any holder alone: one look at the table for
    /// the usual case of a file nobody else is sending.
    pub(crate) fn claim_if_free(self: &Arc<Self>, key: Hash) -> Option<Lease> {
        self.claim_or(key, |_| ())
    }

    /// Claims `key` if free; otherwise does `if_held` to the holder's token.
    fn claim_or(
        self: &Arc<Self>,
        key: Hash,
        if_held: impl FnOnce(&CancellationToken),
    ) -> Option<Lease> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, holder)) = held.get(&key) {
            if_held(holder);
            return None;
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        held.insert(key, (id, token.clone()));
        Some(Lease {
            key,
            id,
            token,
            leases: Arc::clone(self),
        })
    }

    /// Those of `keys` someone writes right now, each once: one look at the table for a whole
    /// `Prepare` page instead of a lock per file.
    pub(crate) fn held_among<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a Hash>,
    ) -> std::collections::HashSet<Hash> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.is_empty() {
            return std::collections::HashSet::new();
        }
        keys.into_iter()
            .filter(|key| held.contains_key(key))
            .copied()
            .collect()
    }

    /// Whether someone writes `key` right now.
    pub(crate) fn is_held(&self, key: &Hash) -> bool {
        self.held
            .lock()
            .map(|held| held.contains_key(key))
            .unwrap_or(true)
    }
}

impl Lease {
    /// Cancelled when a newer connection claims the same key.
    pub(crate) fn superseded(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self
            .leases
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_claim_supersedes_the_holder_once_it_lets_go() {
        let leases = Arc::new(Leases::default());
        let key = Hash([1; 32]);
        let first = leases.claim(key).await.unwrap();
        assert!(leases.is_held(&key));
        let superseded = first.superseded();
        let release = tokio::spawn(async move {
            superseded.cancelled().await;
            drop(first);
        });
        let second = leases.claim(key).await.unwrap();
        release.await.unwrap();
        assert!(leases.is_held(&key));
        assert!(leases.claim_if_free(key).is_none(), "held");
        assert!(
            !holder_asked_to_stop(&leases, key),
            "and its holder left alone"
        );
        let free = Hash([9; 32]);
        let among = leases.held_among([&free, &key, &key]);
        assert_eq!(among.into_iter().collect::<Vec<_>>(), [key]);
        drop(second);
        assert!(!leases.is_held(&key));
    }

    /// Whether the current holder of `key` was asked to stop.
    fn holder_asked_to_stop(leases: &Leases, key: Hash) -> bool {
        let held = leases.held.lock().unwrap();
        held.get(&key)
            .is_some_and(|(_, token)| token.is_cancelled())
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_never_lets_go_makes_the_claim_fail() {
        let leases = Arc::new(Leases::default());
        let key = Hash([2; 32]);
        let _stubborn = leases.claim(key).await.unwrap();
        assert!(leases.claim(key).await.is_err());
    }
}
