//! Connections that could give up their slot: sessions waiting for their client's next
//! request with nothing in flight, and connections still in their handshake. When every
//! slot is taken, the listener evicts the one idle the longest to admit a new client, so
//! clients that only hold connections open (silent sockets, a ping every few seconds) cannot
//! keep a full server `busy` for everyone.

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
    idle: Mutex<BTreeMap<(Instant, u64), CancellationToken>>,
    next_id: AtomicU64,
}

/// A connection marked idle; unmarked when dropped. Its token is cancelled if the connection
/// is evicted.
#[derive(Debug)]
pub(crate) struct IdleMark {
    connections: Arc<IdleConnections>,
    entry: (Instant, u64),
    evicted: CancellationToken,
}

impl IdleConnections {
    /// Marks a connection idle from now on, until the mark is dropped.
    pub(crate) fn mark(self: &Arc<Self>) -> IdleMark {
        let entry = (Instant::now(), self.next_id.fetch_add(1, Ordering::Relaxed));
        let evicted = CancellationToken::new();
        self.lock().insert(entry, evicted.clone());
        IdleMark {
            connections: Arc::clone(self),
            entry,
            evicted,
        }
    }

    /// Evicts the connection idle the longest; false if none is idle.
    pub(crate) fn evict_oldest(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, evicted)) => {
                evicted.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Instant, u64), CancellationToken>> {
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
    fn the_oldest_idle_connection_is_evicted_and_busy_ones_never() {
        let idle = Arc::new(IdleConnections::default());
        let oldest = idle.mark();
        let newer = idle.mark();
        let busy_again = idle.mark();
        drop(busy_again);
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
