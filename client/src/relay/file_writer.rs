//! The thread that writes one relayed file: it hashes and appends each piece while the
//! connection goes on reading, then makes the file durable and hands back the hash.
//!
//! Large files bypass the page cache the way the server writes uploads (`ft_disk`): copying
//! every received byte into freshly allocated page-cache pages cost more CPU than the rest
//! of receiving together, and a relayed file is written once and read back only to verify.

use std::{fs::File, io::Write as _};

use bytes::Bytes;
use tokio::{sync::mpsc, task::JoinHandle};

/// Pieces queued for the writer thread.
const QUEUE_PIECES: usize = 8;

/// Files with at least this many bytes still to come are written around the page cache;
/// smaller ones are not worth the aligned buffers ([`ft_disk::MEMORY_BYTES`]).
const DIRECT_AT_LEAST: u64 = 4 * 1024 * 1024;

/// A running writer: send it the file's pieces in order, then drop the sender and await the
/// handle for the hash of the whole file (its first `offset` bytes included).
pub(super) struct FileWriter {
    pub(super) pieces: mpsc::Sender<Bytes>,
    pub(super) done: JoinHandle<std::io::Result<blake3::Hasher>>,
}

/// Starts writing `file`, whose cursor is at `offset` with `hasher` holding the hash of the
/// bytes before it; `remaining` bytes are expected.
pub(super) fn start(file: File, offset: u64, remaining: u64, hasher: blake3::Hasher) -> FileWriter {
    let (pieces, mut queue) = mpsc::channel::<Bytes>(QUEUE_PIECES);
    let done = tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        let mut output = if remaining >= DIRECT_AT_LEAST {
            Output::Direct(ft_disk::DirectWriter::new(file, offset))
        } else {
            Output::Buffered(file)
        };
        while let Some(piece) = queue.blocking_recv() {
            hasher.update(&piece);
            output.write(&piece)?;
        }
        let file = output.finish()?;
        file.sync_all()?;
        Ok(hasher)
    });
    FileWriter { pieces, done }
}

/// Where the pieces go.
enum Output {
    Direct(ft_disk::DirectWriter),
    Buffered(File),
}

impl Output {
    fn write(&mut self, piece: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Direct(writer) => writer.write(piece),
            Output::Buffered(file) => file.write_all(piece),
        }
    }

    fn finish(self) -> std::io::Result<File> {
        match self {
            Output::Direct(writer) => writer.finish(),
            Output::Buffered(file) => Ok(file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    async fn write_through(prefix: &[u8], pieces: &[Vec<u8>]) -> (Vec<u8>, blake3::Hash) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(prefix).unwrap();
        file.seek(SeekFrom::Start(prefix.len() as u64)).unwrap();
        let mut hasher = blake3::Hasher::new();
        hasher.update(prefix);
        let remaining = pieces.iter().map(|piece| piece.len() as u64).sum();
        let writer = start(file, prefix.len() as u64, remaining, hasher);
        for piece in pieces {
            writer
                .pieces
                .send(Bytes::from(piece.clone()))
                .await
                .unwrap();
        }
        drop(writer.pieces);
        let hash = writer.done.await.unwrap().unwrap().finalize();
        (std::fs::read(&path).unwrap(), hash)
    }

    #[tokio::test]
    async fn small_and_large_files_after_any_prefix_are_written_and_hashed_whole() {
        for (prefix_len, total) in [
            (0, 1000),
            (0, DIRECT_AT_LEAST as usize + 5),
            (4097, 9_000_001),
        ] {
            let content: Vec<u8> = (0..prefix_len + total).map(|i| (i % 253) as u8).collect();
            let pieces: Vec<Vec<u8>> = content[prefix_len..]
                .chunks(256 * 1024 + 3)
                .map(<[u8]>::to_vec)
                .collect();
            let (written, hash) = write_through(&content[..prefix_len], &pieces).await;
            assert!(written == content, "{prefix_len} + {total}");
            assert_eq!(hash, blake3::hash(&content), "{prefix_len} + {total}");
        }
    }
}
