//! One download: the stored file is found and checked against the client's prefix, then it
//! is read one chunk ahead of the network, so disk reads overlap with sending and memory
//! stays bounded whatever the file size.

use std::{fs::File, os::unix::fs::FileExt, sync::Arc};

use bytes::{Bytes, BytesMut};
use ft_protocol::{ErrorCode, Get, Hash, Sending, CHUNK_SIZE};
use tokio::task::JoinHandle;

use crate::{names::ValidName, refusal::Refusal, store::Store, ServerState};

/// Memory a download holds at most: the chunk being sent and the one read ahead of it.
pub(crate) const DOWNLOAD_MEMORY: u64 = 2 * CHUNK_SIZE as u64;

/// Reads exactly `len` bytes of a file from `offset` as chunks of at most [`CHUNK_SIZE`],
/// one read ahead of the network. Each read is a short blocking task: a client that stops
/// reading holds no thread and at most [`DOWNLOAD_MEMORY`].
pub(crate) struct ChunkReader {
    file: Arc<File>,
    /// Where the next read starts.
    next: u64,
    end: u64,
    reading: Option<JoinHandle<std::io::Result<Bytes>>>,
}

impl ChunkReader {
    pub(crate) fn new(file: File, offset: u64, len: u64) -> Self {
        let mut reader = Self {
            file: Arc::new(file),
            next: offset,
            end: offset.saturating_add(len),
            reading: None,
        };
        reader.read_ahead();
        reader
    }

    fn read_ahead(&mut self) {
        if self.next >= self.end {
            return;
        }
        let want =
            usize::try_from(self.end - self.next).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
        let (file, at) = (Arc::clone(&self.file), self.next);
        self.next += want as u64;
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_exactly(&file, at, want)
        }));
    }

    /// The next chunk; a read error, or the file ending early, is the last item.
    pub(crate) async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let reading = self.reading.take()?;
        let chunk = reading
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join)));
        if chunk.is_ok() {
            self.read_ahead();
        }
        Some(chunk)
    }
}

fn read_exactly(file: &File, at: u64, want: usize) -> std::io::Result<Bytes> {
    let mut buffer = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buffer[filled..], at + filled as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stored file is shorter than its catalog record",
                ))
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(buffer.freeze())
}

/// Finds a stored file for `get`, deciding where to start: at the client's offset only if
/// the client's prefix hash matches the stored file's. Blocking.
pub(crate) fn open_for_download(
    state: &ServerState,
    get: &Get,
) -> Result<(std::fs::File, Sending), Refusal> {
    let not_found = || {
        Refusal::new(
            ErrorCode::NotFound,
            format!("no stored file named {:?}", get.name),
        )
    };
    let name = ValidName::parse(&get.name).map_err(|_| not_found())?;
    // The record and the file are read as one step with respect to commits and deletions.
    let serialized = state.serialize_commits();
    let entry = state.catalog.get(name.as_str())?.ok_or_else(not_found)?;
    let file = state.store.open_stored(&name)?.ok_or_else(|| {
        let message = format!("'{}' is in the catalog but missing on disk", entry.name);
        Refusal::new(ErrorCode::Storage, message)
    })?;
    // The open file keeps its content even if it is replaced or deleted from now on.
    drop(serialized);
    let mut offset = 0;
    if let Some(prefix_hash) = get.prefix_hash {
        if get.offset > 0 && get.offset <= entry.size {
            let ours = Store::hash_prefix(&file, get.offset).map_err(Refusal::storage)?;
            if ours.is_some_and(|hasher| Hash::from(hasher.finalize()) == prefix_hash) {
                offset = get.offset;
            }
        }
    }
    let header = Sending {
        name: entry.name,
        size: entry.size,
        hash: entry.hash,
        offset,
        modified_ns: entry.modified_ns,
    };
    Ok((file, header))
}
