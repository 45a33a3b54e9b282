//! Memory for small uploads, handed back once their bytes are on disk.
//!
//! A small upload's bytes are gathered on the session's thread and written, then freed, on
//! the staging thread. Freed on another thread, the allocator gave that memory back to the
//! session's thread late, so nearly every new upload landed in untouched memory: a page
//! fault per small file, on the thread a client waits on. Buffers returned here are reused
//! instead, up to a bound, so memory stays flat however many files pass.

use std::sync::Mutex;

use crate::{group::GROUP_MAX_MEMORY, upload::SMALL_UPLOAD_BYTES};

/// Most bytes of idle buffers kept for reuse: a group's worth of small files in memory, which
/// is about how many are between the network and the disk at once.
pub(crate) const MAX_POOLED_BYTES: usize = GROUP_MAX_MEMORY as usize;

/// Buffers of at most [`SMALL_UPLOAD_BYTES`], kept for the next small upload.
#[derive(Debug, Default)]
pub(crate) struct SmallBuffers {
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    /// Sum of the buffers' capacities.
    bytes: usize,
}

impl SmallBuffers {
    /// An empty buffer that holds at least `size` bytes without growing.
    pub(crate) fn take(&self, size: usize) -> Vec<u8> {
        let reused = {
            let mut idle = self.lock();
            let buffer = idle.buffers.pop();
            if let Some(buffer) = &buffer {
                idle.bytes -= buffer.capacity();
            }
            buffer
        };
        let mut buffer = reused.unwrap_or_default();
        buffer.clear();
        buffer.reserve_exact(size);
        buffer
    }

    /// Keeps `buffer` for a later [`SmallBuffers::take`], unless it is larger than a small
    /// upload or the pool is full (then it is freed).
    pub(crate) fn give_back(&self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 || capacity as u64 > SMALL_UPLOAD_BYTES {
            return;
        }
        let mut idle = self.lock();
        if idle.bytes + capacity <= MAX_POOLED_BYTES {
            idle.bytes += capacity;
            idle.buffers.push(buffer);
        }
    }

    /// Bytes held by idle buffers.
    #[cfg(test)]
    pub(crate) fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The pool holds no data, so one left by a panicking thread is still sound.
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_empty_and_large_enough() {
        let pool = SmallBuffers::default();
        let mut first = pool.take(4096);
        assert!(first.capacity() >= 4096);
        first.extend_from_slice(&[7; 4096]);
        let address = first.as_ptr();
        pool.give_back(first);
        assert_eq!(pool.idle_bytes(), 4096);

        let again = pool.take(100);
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert_eq!(
            again.as_ptr(),
            address,
            "the same memory, not a new allocation"
        );
        assert_eq!(pool.idle_bytes(), 0);

        // A larger upload than the buffer held grows it before use.
        pool.give_back(again);
        assert!(pool.take(60_000).capacity() >= 60_000);
    }

    #[test]
    fn the_pool_is_bounded_and_keeps_only_small_buffers() {
        let pool = SmallBuffers::default();
        pool.give_back(Vec::with_capacity(SMALL_UPLOAD_BYTES as usize + 1));
        pool.give_back(Vec::new());
        assert_eq!(pool.idle_bytes(), 0, "too large or empty: not kept");

        let size = SMALL_UPLOAD_BYTES as usize;
        let fits = MAX_POOLED_BYTES / size;
        for _ in 0..fits + 10 {
            pool.give_back(Vec::with_capacity(size));
        }
        assert!(pool.idle_bytes() <= MAX_POOLED_BYTES);
        assert!(pool.idle_bytes() >= MAX_POOLED_BYTES - size);
    }
}
