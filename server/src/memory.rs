//! The server-wide memory budget (`--max-memory`): every buffer a client can make the server
//! hold beyond its connection's frame buffers is reserved here first.
//!
//! - Each connection reserves its working set when it is admitted ([`CONNECTION_MEMORY`]:
//!   one upload streamed through the disk, or one download's read-ahead); with the budget
//!   spent, a new connection is answered `busy`. A session never waits for memory, so
//!   clients that hold theirs (a download nobody reads) cannot starve the others.
//! - Anything more is taken only if free, with a fallback that needs nothing more: a small
//!   upload is gathered in memory if its size is free, and streamed through the disk
//!   otherwise; a resume offer's hash state is kept if free, and the file is sent again from
//!   its start otherwise.
//!
//! Memory therefore never grows past the budget, and the budget divided by
//! [`CONNECTION_MEMORY`] is the most connections it admits.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The working set reserved for each connection: the larger of an upload streamed through
/// the disk and a download's read-ahead.
pub(crate) const CONNECTION_MEMORY: u64 = {
    let (upload, download) = (
        crate::upload::STREAMED_UPLOAD_MEMORY,
        crate::download::DOWNLOAD_MEMORY,
    );
    if upload > download {
        upload
    } else {
        download
    }
};

/// Reservations are counted in units of this many bytes (rounded up).
const UNIT: u64 = 1024;

/// The budget shared by every session, in two parts that never take from each other: the
/// working sets of connections, and the memory taken only if free. Otherwise small files
/// gathered by busy sessions, a transient use, would turn new connections away.
#[derive(Debug, Clone)]
pub(crate) struct MemoryBudget {
    working_sets: Pool,
    extra: Pool,
}

/// Bytes reserved from the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

impl MemoryBudget {
    /// A budget of `bytes` for at most `max_connections`: their working sets are set apart
    /// first, leaving at least a quarter of the budget for the rest.
    pub(crate) fn new(bytes: u64, max_connections: usize) -> Self {
        let all_working_sets = CONNECTION_MEMORY.saturating_mul(max_connections as u64);
        let extra = bytes.saturating_sub(all_working_sets).max(bytes / 4);
        Self {
            working_sets: Pool::new(bytes - extra),
            extra: Pool::new(extra),
        }
    }

    /// Reserves a new connection's working set, if one is free.
    pub(crate) fn admit(&self) -> Option<Reserved> {
        self.working_sets.try_reserve(CONNECTION_MEMORY)
    }

    /// The most connections the budget admits at once.
    pub(crate) fn connections(&self) -> u64 {
        self.working_sets.total() / CONNECTION_MEMORY
    }

    /// Reserves `bytes` beyond a working set, if they are free now.
    pub(crate) fn try_reserve(&self, bytes: u64) -> Option<Reserved> {
        self.extra.try_reserve(bytes)
    }

    /// Bytes reserved now.
    pub(crate) fn in_use(&self) -> u64 {
        self.working_sets.in_use() + self.extra.in_use()
    }

    /// The whole budget, in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.working_sets.total() + self.extra.total()
    }
}

/// Bytes counted in units of [`UNIT`].
#[derive(Debug, Clone)]
struct Pool {
    units: Arc<Semaphore>,
    total_units: u64,
}

impl Pool {
    fn new(bytes: u64) -> Self {
        let total_units = (bytes / UNIT).min(Semaphore::MAX_PERMITS as u64 / 2);
        Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// Reserves `bytes` (rounded up to a unit; more than the pool holds takes it all).
    fn try_reserve(&self, bytes: u64) -> Option<Reserved> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.total_units.max(1));
        Arc::clone(&self.units)
            .try_acquire_many_owned(u32::try_from(units).unwrap_or(u32::MAX))
            .ok()
            .map(Reserved)
    }

    fn in_use(&self) -> u64 {
        (self.total_units - self.units.available_permits() as u64) * UNIT
    }

    fn total(&self) -> u64 {
        self.total_units * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_come_back_when_dropped() {
        let pool = Pool::new(64 * 1024);
        let first = pool.try_reserve(40 * 1024).expect("fits");
        assert_eq!(pool.in_use(), 40 * 1024);
        assert!(pool.try_reserve(30 * 1024).is_none(), "over the budget");
        drop(first);
        assert_eq!(pool.in_use(), 0);
        let odd = pool.try_reserve(1).expect("rounded up to one unit");
        assert_eq!(pool.in_use(), UNIT);
        drop(odd);
        // A request larger than the whole pool takes all of it rather than never passing.
        let all = pool
            .try_reserve(10 * 1024 * 1024)
            .expect("capped at the total");
        assert_eq!(pool.in_use(), pool.total());
        drop(all);
    }

    #[test]
    fn working_sets_and_extra_memory_never_take_from_each_other() {
        let budget = MemoryBudget::new(40 << 20, 256);
        // 256 working sets would not fit: a quarter is kept for the rest.
        assert_eq!(budget.total(), 40 << 20);
        assert_eq!(budget.connections(), 20);
        let extra: Vec<_> = std::iter::from_fn(|| budget.try_reserve(64 * 1024)).collect();
        assert_eq!(extra.len(), 160, "10 MiB of extra memory");
        let admitted: Vec<_> = std::iter::from_fn(|| budget.admit()).collect();
        assert_eq!(
            admitted.len(),
            20,
            "extra memory in use turns no connection away"
        );
        assert_eq!(budget.in_use(), budget.total());
        drop(admitted);
        drop(extra);
        assert_eq!(budget.in_use(), 0);
        // A budget large enough for every connection's working set.
        let roomy = MemoryBudget::new(1 << 30, 256);
        assert_eq!(roomy.connections(), 256);
    }
}
