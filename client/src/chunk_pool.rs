//! Buffers for the chunks of a large file, used again and again. A fresh buffer has to be
//! zeroed before a file can be read into it (safe Rust reads only into initialised memory):
//! zeroing every chunk anew cost 9 % of the sender's CPU time per GiB (`perf`, see
//! docs/performance.md). A pooled buffer is zeroed once, when it is made; a chunk handed to
//! the sending task holds its buffer, and the buffer comes back to the pool when the last
//! handle to the chunk is dropped (the chunk was written to the socket).
//!
//! Each buffer's window starts on a page boundary: the kernel copies a file's cached pages
//! into it a quarter faster than into a buffer a few bytes off (7.9 against 5.9 GB/s for a
//! cached file read 256 KiB at a time on the reference machine).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Alignment of a buffer's window: a page.
const PAGE: usize = 4096;

/// Buffers kept for reuse; one file in flight needs its read-ahead and a few more.
#[derive(Debug, Clone)]
pub(crate) struct ChunkPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Buffers kept at most; more are dropped when they come back.
    keep: usize,
}

/// A buffer of the pool while a chunk is read into it.
#[derive(Debug)]
pub(crate) struct ChunkBuffer {
    buffer: Vec<u8>,
    pool: ChunkPool,
}

/// A filled buffer that goes back to its pool when dropped.
struct Returning {
    buffer: Vec<u8>,
    len: usize,
    pool: ChunkPool,
}

impl ChunkPool {
    /// A pool that keeps up to `keep` buffers.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            free: Arc::new(Mutex::new(Vec::with_capacity(keep))),
            keep,
        }
    }

    /// A buffer of at least `len` bytes: one that came back, or a new zeroed one.
    pub(crate) fn take(&self, len: usize) -> ChunkBuffer {
        let reused = self.lock().pop().filter(|buffer| room(buffer) >= len);
        ChunkBuffer {
            buffer: reused.unwrap_or_else(|| vec![0; len + PAGE]),
            pool: self.clone(),
        }
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(buffer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while pushing or popping leaves a valid list.
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChunkBuffer {
    /// The first `len` bytes of the window, to read into.
    pub(crate) fn window(&mut self, len: usize) -> &mut [u8] {
        let start = window_start(&self.buffer);
        &mut self.buffer[start..start + len]
    }

    /// The chunk of the first `len` bytes; its buffer returns to the pool once every handle
    /// to it is dropped.
    pub(crate) fn freeze(self, len: usize) -> Bytes {
        Bytes::from_owner(Returning {
            len: len.min(room(&self.buffer)),
            buffer: self.buffer,
            pool: self.pool,
        })
    }
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        let start = window_start(&self.buffer);
        &self.buffer[start..start + self.len]
    }
}

/// Where the page-aligned window of `buffer` starts.
fn window_start(buffer: &[u8]) -> usize {
    buffer
        .as_ptr()
        .align_offset(PAGE)
        .min(PAGE)
        .min(buffer.len())
}

/// Bytes the window of `buffer` can hold.
fn room(buffer: &[u8]) -> usize {
    buffer.len() - window_start(buffer)
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_chunk_returns_its_buffer_with_other_content_untouched() {
        let pool = ChunkPool::new(2);
        let mut first = pool.take(8);
        first.window(8).copy_from_slice(b"abcdefgh");
        let chunk = first.freeze(5);
        assert_eq!(&chunk[..], b"abcde");
        let clone = chunk.slice(1..3);
        drop(chunk);
        // Still held by the slice: a new buffer is made.
        let mut second = pool.take(8);
        assert_eq!(second.window(8), &[0u8; 8]);
        assert_eq!(&clone[..], b"bc");
        drop(clone);
        // Now the first buffer is back and is reused as it is (not zeroed again).
        let mut third = pool.take(8);
        assert_eq!(third.window(8), b"abcdefgh");
        drop(second.freeze(8));
        drop(third.freeze(8));
        drop(pool.take(1).freeze(1));
        assert!(pool.lock().len() <= 2, "keeps at most what it was told");
    }

    #[test]
    fn a_buffer_too_small_for_the_request_is_not_reused() {
        let pool = ChunkPool::new(2);
        drop(pool.take(4).freeze(4));
        let mut bigger = pool.take(PAGE + 16);
        let window = bigger.window(PAGE + 16);
        assert_eq!(window.len(), PAGE + 16);
        assert_eq!(
            window.as_ptr() as usize % PAGE,
            0,
            "the window starts on a page"
        );
    }
}
