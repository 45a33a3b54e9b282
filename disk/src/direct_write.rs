//! Appending an upload to its partial file without going through the page cache.
//!
//! Measured on the reference machine (README, "Speed"): buffered writes reach about
//! 360 MB/s because every page is copied into the page cache and later written back, while
//! `O_DIRECT` writes of aligned blocks reach about 1.4 GB/s. An upload is written once and
//! not read again soon, so caching it buys nothing. `O_DIRECT` needs the memory address, the
//! file offset and the length all aligned to the block size, so bytes are gathered in an
//! aligned buffer and written in whole blocks. Unaligned edges (a resume offset in the middle
//! of a block, the file's tail) are written the ordinary way. Filesystems that refuse
//! `O_DIRECT` (tmpfs) simply get ordinary writes.

use std::{
    fs::File,
    io::{self, Seek, SeekFrom, Write},
};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Alignment `O_DIRECT` requires on common Linux filesystems and devices.
const BLOCK: usize = 4096;

/// Bytes gathered before one direct write; a multiple of [`BLOCK`].
pub const BUFFER_BYTES: usize = 512 * 1024;

/// An appender that bypasses the page cache when it can.
#[derive(Debug)]
pub struct DirectWriter {
    file: File,
    /// Over-allocated so that an aligned window of `BUFFER_BYTES` fits inside.
    storage: Vec<u8>,
    /// Start of the aligned window in `storage`.
    window: usize,
    /// Bytes gathered in the window.
    filled: usize,
    /// Offset in the file of the next byte written.
    position: u64,
    /// Whether `O_DIRECT` is on for `file`.
    direct: bool,
    /// False once the filesystem refused `O_DIRECT`.
    direct_possible: bool,
}

impl DirectWriter {
    /// Appends to `file`, whose cursor is at `position`.
    pub fn new(file: File, position: u64) -> Self {
        // Zeroing half a megabyte is not free; it is done once per upload, and small uploads
        // never get here (see upload.rs).
        let storage = vec![0u8; BUFFER_BYTES + BLOCK];
        let window = storage.as_ptr().align_offset(BLOCK).min(BLOCK);
        let mut writer = Self {
            file,
            storage,
            window,
            filled: 0,
            position,
            direct: false,
            direct_possible: true,
        };
        writer.try_direct();
        writer
    }

    /// Appends `data`.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Until the file offset is block-aligned, write the ordinary way.
        while !self.direct && !data.is_empty() {
            let to_boundary = BLOCK - (self.position % BLOCK as u64) as usize;
            let take = if self.direct_possible {
                to_boundary.min(data.len())
            } else {
                data.len()
            };
            self.file.write_all(&data[..take])?;
            self.position += take as u64;
            data = &data[take..];
            self.try_direct();
        }
        while !data.is_empty() {
            let room = BUFFER_BYTES - self.filled;
            let take = room.min(data.len());
            let start = self.window + self.filled;
            self.storage[start..start + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == BUFFER_BYTES {
                self.flush_blocks()?;
            }
        }
        Ok(())
    }

    /// Writes everything gathered (the unaligned tail the ordinary way) and returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.flush_blocks()?;
        if self.filled > 0 {
            self.set_direct(false)?;
            let start = self.window;
            self.file
                .write_all(&self.storage[start..start + self.filled])?;
            self.position += self.filled as u64;
            self.filled = 0;
        }
        if self.direct {
            self.set_direct(false)?;
        }
        Ok(self.file)
    }

    /// Writes the whole blocks gathered so far with one direct write; keeps the remainder.
    fn flush_blocks(&mut self) -> io::Result<()> {
        let whole = self.filled - self.filled % BLOCK;
        if whole == 0 {
            return Ok(());
        }
        let start = self.window;
        if let Err(err) = self.file.write_all(&self.storage[start..start + whole]) {
            // A device whose blocks are larger than 4 KiB refuses these writes (EINVAL):
            // fall back to ordinary writes for the rest of this upload. The failed write
            // may have written a prefix, so continue from the file's real offset.
            if err.raw_os_error() != Some(rustix::io::Errno::INVAL.raw_os_error()) {
                return Err(err);
            }
            self.set_direct(false)?;
            self.direct_possible = false;
            self.file.seek(SeekFrom::Start(self.position))?;
            self.file.write_all(&self.storage[start..start + whole])?;
        }
        self.position += whole as u64;
        self.storage
            .copy_within(start + whole..start + self.filled, start);
        self.filled -= whole;
        Ok(())
    }

    /// Turns `O_DIRECT` on if the offset is aligned and the filesystem allows it.
    fn try_direct(&mut self) {
        if self.direct || !self.direct_possible || self.position % BLOCK as u64 != 0 {
            return;
        }
        if self.set_direct(true).is_err() {
            self.direct_possible = false;
        }
    }

    fn set_direct(&mut self, on: bool) -> io::Result<()> {
        let mut flags = fcntl_getfl(&self.file)?;
        flags.set(OFlags::DIRECT, on);
        fcntl_setfl(&self.file, flags)?;
        self.direct = on;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        drop(writer.finish().unwrap());
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
}
