//! Appending an upload to its partial file without going through the page cache.
//!
//! An upload is written once and not read again soon, so caching it buys nothing: buffered
//! writes copy every page into the page cache and write it back later (about 360 MB/s on the
//! reference machine, against about 1.4 GB/s for `O_DIRECT` writes of aligned blocks; see
//! docs/performance.md). `O_DIRECT` needs the memory address, the file offset and the length
//! all aligned to the block size, so bytes are gathered in an aligned buffer and written in
//! whole blocks. Unaligned edges (a resume offset in the middle of a block, the file's tail)
//! are written the ordinary way. Filesystems that refuse `O_DIRECT` (tmpfs) simply get
//! ordinary writes.
//!
//! A full buffer goes to disk on a thread of its own while the next one fills: the thread
//! that feeds the writer (which also hashes what it feeds) never waits for the disk unless
//! the disk is slower than it, and the disk never waits for hashing. With one buffer the two
//! took turns and the disk stood idle a third of the time of a 1 GiB upload.

use std::{
    fs::File,
    io::{self, Seek, SeekFrom},
    os::unix::fs::FileExt,
    sync::{mpsc, Arc},
    thread::JoinHandle,
};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Alignment `O_DIRECT` requires on common Linux filesystems and devices.
const BLOCK: usize = 4096;

/// Bytes gathered before one direct write; a multiple of [`BLOCK`].
pub const BUFFER_BYTES: usize = 512 * 1024;

/// Buffers of one writer: one filling while the other is written.
const BUFFERS: usize = 2;

/// Memory one [`DirectWriter`] holds at most: its buffers (each also allocates one block more,
/// to align its window, which is not counted here).
pub const MEMORY_BYTES: usize = BUFFERS * BUFFER_BYTES;

/// An appender that bypasses the page cache when it can.
#[derive(Debug)]
pub struct DirectWriter {
    /// Shared with the disk thread, which writes at explicit offsets.
    file: Arc<File>,
    /// The buffer being filled.
    filling: Aligned,
    /// Bytes gathered in `filling`.
    filled: usize,
    /// Offset in the file of the first byte of `filling`.
    position: u64,
    /// Whether `O_DIRECT` is on for `file`.
    direct: bool,
    /// False once the filesystem refused `O_DIRECT`.
    direct_possible: bool,
    /// Started when the first buffer is full.
    disk: Option<DiskThread>,
}

/// A buffer whose window of [`BUFFER_BYTES`] starts on a block boundary.
#[derive(Debug)]
struct Aligned {
    /// Over-allocated so that an aligned window of `BUFFER_BYTES` fits inside.
    storage: Vec<u8>,
    /// Start of the aligned window in `storage`.
    window: usize,
}

/// A full buffer on its way to disk.
struct Job {
    buffer: Aligned,
    len: usize,
    offset: u64,
}

/// The thread that writes full buffers, one at a time, and hands each back when written.
#[derive(Debug)]
struct DiskThread {
    jobs: Option<mpsc::SyncSender<Job>>,
    written: mpsc::Receiver<io::Result<Aligned>>,
    /// Buffers handed to the thread and not yet back.
    in_flight: usize,
    /// Buffers made so far (at most [`BUFFERS`]).
    made: usize,
    thread: Option<JoinHandle<()>>,
}

impl Aligned {
    fn new() -> Self {
        // Zeroing half a megabyte is not free; it is done once per buffer, and small uploads
        // never get here (see the callers).
        let storage = vec![0u8; BUFFER_BYTES + BLOCK];
        let window = storage.as_ptr().align_offset(BLOCK).min(BLOCK);
        Self { storage, window }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.storage[self.window..self.window + len]
    }

    fn room(&mut self) -> &mut [u8] {
        &mut self.storage[self.window..self.window + BUFFER_BYTES]
    }
}

impl DirectWriter {
    /// Appends to `file` from `position` (its cursor is left at the end by [`finish`]).
    ///
    /// [`finish`]: DirectWriter::finish
    pub fn new(file: File, position: u64) -> Self {
        let mut writer = Self {
            file: Arc::new(file),
            filling: Aligned::new(),
            filled: 0,
            position,
            direct: false,
            direct_possible: true,
            disk: None,
        };
        writer.try_direct();
        writer
    }

    /// Appends `data`. A failure of an earlier buffer's write is reported here or by
    /// [`finish`](DirectWriter::finish).
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Until the file offset is block-aligned, write the ordinary way.
        while !self.direct && !data.is_empty() {
            let to_boundary = BLOCK - (self.position % BLOCK as u64) as usize;
            let take = if self.direct_possible {
                to_boundary.min(data.len())
            } else {
                data.len()
            };
            self.file.write_all_at(&data[..take], self.position)?;
            self.position += take as u64;
            data = &data[take..];
            self.try_direct();
        }
        while !data.is_empty() {
            let take = (BUFFER_BYTES - self.filled).min(data.len());
            self.filling.room()[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == BUFFER_BYTES {
                self.send_blocks()?;
            }
        }
        Ok(())
    }

    /// Writes everything gathered (the unaligned tail the ordinary way), waits for the disk
    /// thread, and returns the file with its cursor after the last byte.
    pub fn finish(mut self) -> io::Result<File> {
        let tail_start = self.filled - self.filled % BLOCK;
        let tail = self.filling.bytes(self.filled)[tail_start..].to_vec();
        self.filled = tail_start;
        self.send_blocks()?;
        if let Some(disk) = self.disk.as_mut() {
            disk.wait_all()?;
        }
        if self.direct {
            self.set_direct(false)?;
        }
        self.file.write_all_at(&tail, self.position)?;
        self.position += tail.len() as u64;
        // Ends the thread, which lets go of its handle on the file.
        drop(self.disk.take());
        let mut file = Arc::try_unwrap(self.file)
            .map_err(|_| io::Error::other("the disk thread still holds the file"))?;
        file.seek(SeekFrom::Start(self.position))?;
        Ok(file)
    }

    /// Hands the whole blocks of `filling` to the disk thread and takes a buffer to fill
    /// next (waiting for one to come back if both are in use). `filled` must be a multiple
    /// of [`BLOCK`].
    fn send_blocks(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let disk = match self.disk.as_mut() {
            Some(disk) => disk,
            None => self.disk.insert(DiskThread::start(Arc::clone(&self.file))?),
        };
        let next = disk.free_buffer()?;
        let full = std::mem::replace(&mut self.filling, next);
        disk.send(Job {
            buffer: full,
            len: self.filled,
            offset: self.position,
        })?;
        self.position += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Turns `O_DIRECT` on if the offset is aligned and the filesystem allows it.
    fn try_direct(&mut self) {
        if self.direct || !self.direct_possible || self.position % BLOCK as u64 != 0 {
            return;
        }
        if set_direct(&self.file, true).is_err() {
            self.direct_possible = false;
        } else {
            self.direct = true;
        }
    }

    fn set_direct(&mut self, on: bool) -> io::Result<()> {
        set_direct(&self.file, on)?;
        self.direct = on;
        Ok(())
    }
}

impl DiskThread {
    fn start(file: Arc<File>) -> io::Result<Self> {
        // At most one buffer is ever with the thread: the other one is filling.
        let (jobs, queue) = mpsc::sync_channel::<Job>(1);
        let (done, written) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("direct-write".into())
            .spawn(move || {
                for job in queue {
                    let result = write_blocks(&file, &job).map(|()| job.buffer);
                    if done.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            written,
            in_flight: 0,
            made: 1,
            thread: Some(thread),
        })
    }

    /// A buffer to fill: a new one while fewer than [`BUFFERS`] exist, else the next one the
    /// thread hands back (waiting for its write).
    fn free_buffer(&mut self) -> io::Result<Aligned> {
        if self.made < BUFFERS {
            self.made += 1;
            return Ok(Aligned::new());
        }
        self.receive()
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(thread_gone)?;
        jobs.send(job).map_err(|_| thread_gone())?;
        self.in_flight += 1;
        Ok(())
    }

    fn receive(&mut self) -> io::Result<Aligned> {
        if self.in_flight == 0 {
            // Both buffers are gone: one was lost with a failed write, reported before.
            return Err(io::Error::other("an earlier write to this file failed"));
        }
        let buffer = self.written.recv().map_err(|_| thread_gone())?;
        self.in_flight -= 1;
        buffer
    }

    /// Waits until every buffer handed over is written; the first failure is returned.
    fn wait_all(&mut self) -> io::Result<()> {
        let mut first_failure = None;
        while self.in_flight > 0 {
            if let Err(err) = self.receive() {
                first_failure.get_or_insert(err);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

impl Drop for DiskThread {
    /// Ends the thread after the write in progress, if any, and waits for it: once a writer
    /// is gone, nothing may still be writing to its file (the caller may delete it, or start
    /// the upload again in it).
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn thread_gone() -> io::Error {
    io::Error::other("the disk-writing thread ended early")
}

/// Writes a job's blocks at its offset. A device whose blocks are larger than 4 KiB refuses
/// these writes (EINVAL): then `O_DIRECT` goes off for the rest of the file and the blocks
/// are written the ordinary way (a failed write may have written a prefix; writing at the
/// same offset again covers it).
fn write_blocks(file: &File, job: &Job) -> io::Result<()> {
    let bytes = job.buffer.bytes(job.len);
    match file.write_all_at(bytes, job.offset) {
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            set_direct(file, false)?;
            file.write_all_at(bytes, job.offset)
        }
        other => other,
    }
}

fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let mut flags = fcntl_getfl(file)?;
    flags.set(OFlags::DIRECT, on);
    fcntl_setfl(file, flags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Writes `content` after `prefix` through a DirectWriter in `piece`-sized writes.
    fn round_trip(prefix: usize, content: &[u8], piece: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.write_all(&vec![7u8; prefix]).unwrap();
        file.seek(SeekFrom::Start(prefix as u64)).unwrap();
        let mut writer = DirectWriter::new(file, prefix as u64);
        for part in content.chunks(piece.max(1)) {
            writer.write(part).unwrap();
        }
        let mut file = writer.finish().unwrap();
        let end = (prefix + content.len()) as u64;
        assert_eq!(
            file.stream_position().unwrap(),
            end,
            "cursor after the last byte"
        );
        drop(file);
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..prefix], &vec![7u8; prefix][..]);
        written[prefix..].to_vec()
    }

    #[test]
    fn every_alignment_and_piece_size_writes_exactly_the_content() {
        for prefix in [0, 1, 4095, 4096, 5000] {
            for len in [
                0,
                1,
                4095,
                4096,
                4097,
                BUFFER_BYTES - 1,
                BUFFER_BYTES,
                BUFFER_BYTES * 2 + 13,
            ] {
                for piece in [1000, 4096, 262_144] {
                    if len > 100_000 && piece == 1000 {
                        continue; // slow and adds nothing over the larger pieces
                    }
                    let content = pattern(len);
                    assert_eq!(
                        round_trip(prefix, &content, piece),
                        content,
                        "prefix {prefix} len {len} piece {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_failed_disk_write_is_reported_and_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        // Opened for reading only: every write fails, on the disk thread for whole buffers.
        let file = File::open(&path).unwrap();
        let mut writer = DirectWriter::new(file, 0);
        let content = pattern(3 * BUFFER_BYTES + 100);
        let outcome = content
            .chunks(64 * 1024)
            .try_for_each(|piece| writer.write(piece))
            .and_then(|()| writer.finish().map(drop));
        assert!(outcome.is_err(), "a write that failed must fail the upload");
        // A caller that goes on writing after a failure is told again, not blocked.
        let file = File::open(&path).unwrap();
        let mut writer = DirectWriter::new(file, 0);
        let failures = content
            .chunks(BUFFER_BYTES)
            .filter(|piece| writer.write(piece).is_err())
            .count();
        assert!(
            failures >= 2,
            "every write after the first failure fails too"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_dropped_writer_has_finished_writing_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut writer = DirectWriter::new(file, 0);
        // Two full buffers: the second is with the disk thread when `write` returns.
        writer.write(&pattern(2 * BUFFER_BYTES + 10)).unwrap();
        let file = Arc::clone(&writer.file);
        drop(writer);
        // The disk thread has ended (it let go of the file) and its write is complete.
        assert_eq!(
            Arc::strong_count(&file),
            1,
            "the disk thread outlived its writer"
        );
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written, pattern(2 * BUFFER_BYTES));
    }
}
