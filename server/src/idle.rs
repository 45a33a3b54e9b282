//! Connections that could give up their slot: connections still in their handshake, and
//! sessions waiting for their client's next request with nothing in flight. When every slot
//! is taken, the listener evicts one to admit a new client, so clients that only hold
//! connections open (silent sockets, a ping every few seconds) cannot keep a full server
//! `busy` for everyone. Connections still in their handshake go first (the oldest first):
//! a stream of anonymous connections must not be able to push logged-in users out while
//! sockets that never logged in hold slots.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use tokio_util::sync::CancellationToken;

/// The idle connections, oldest first.
#[derive(Debug, Default)]
pub(crate) struct IdleConnections {
    idle: Mutex<BTreeMap<(Stage, Instant, u64), CancellationToken>>,
    next_id: AtomicU64,
}

/// Where an idle connection is; the first kind is evicted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// TLS, Hello or the login not done yet.
    Handshake,
    /// A logged-in session waiting for a request.
    Session,
}

/// A connection marked idle; unmarked when dropped. Its token is cancelled if the connection
/// is evicted.
#[derive(Debug)]
pub(crate) struct IdleMark {
    connections: Arc<IdleConnections>,
    entry: (Stage, Instant, u64),
    evicted: CancellationToken,
}

impl IdleConnections {
    /// Marks a connection idle from now on, at `stage`, until the mark is dropped.
    pub(crate) fn mark(self: &Arc<Self>, stage: Stage) -> IdleMark {
        let entry = (
            stage,
            Instant::now(),
            self.next_id.fetch_add(1, Ordering::Relaxed),
        );
        let evicted = CancellationToken::new();
        self.lock().insert(entry, evicted.clone());
        IdleMark {
            connections: Arc::clone(self),
            entry,
            evicted,
        }
    }

    /// Evicts a connection still in its handshake, the oldest, or else the session idle the
    /// longest; false if none is idle.
    pub(crate) fn evict_oldest(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, evicted)) => {
                evicted.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(Stage, Instant, u64), CancellationToken>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IdleMark {
    /// Cancelled once the connection is evicted.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for IdleMark {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_go_first_then_the_oldest_idle_session_and_busy_ones_never() {
        let idle = Arc::new(IdleConnections::default());
        let oldest = idle.mark(Stage::Session);
        let newer = idle.mark(Stage::Session);
        let busy_again = idle.mark(Stage::Session);
        let handshaking = idle.mark(Stage::Handshake);
        drop(busy_again);
        assert!(idle.evict_oldest());
        assert!(
            handshaking.evicted().is_cancelled(),
            "a handshake goes first"
        );
        assert!(!oldest.evicted().is_cancelled());
        assert!(idle.evict_oldest());
        assert!(oldest.evicted().is_cancelled());
        assert!(!newer.evicted().is_cancelled());
        assert!(idle.evict_oldest());
        assert!(newer.evicted().is_cancelled());
        assert!(
            !idle.evict_oldest(),
            "the connection no longer idle is never evicted"
        );
    }
}
