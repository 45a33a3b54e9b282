//! One download: the stored file is found and checked against the client's prefix, then a
//! blocking thread reads it into a bounded queue of chunks, so disk reads overlap with
//! sending and memory stays bounded whatever the file size.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
};

use bytes::{Bytes, BytesMut};
use ft_protocol::{ErrorCode, Get, Hash, Sending, CHUNK_SIZE};
use tokio::sync::mpsc;

use crate::{names::ValidName, refusal::Refusal, store::Store, ServerState};

/// Chunks read ahead of the network, per download.
const READ_AHEAD_CHUNKS: usize = 8;

/// Streams exactly `len` bytes of `file` from `offset` as chunks of at most [`CHUNK_SIZE`].
/// A read error, or the file ending early, arrives as the last item.
pub(crate) fn read_chunks(
    mut file: File,
    offset: u64,
    len: u64,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (chunks, queue) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::task::spawn_blocking(move || {
        if let Err(err) = file.seek(SeekFrom::Start(offset)) {
            let _ = chunks.blocking_send(Err(err));
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
            let mut buffer = BytesMut::zeroed(want);
            let mut filled = 0;
            while filled < want {
                match file.read(&mut buffer[filled..]) {
                    Ok(0) => {
                        let short = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the stored file is shorter than its catalog record",
                        );
                        let _ = chunks.blocking_send(Err(short));
                        return;
                    }
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        let _ = chunks.blocking_send(Err(err));
                        return;
                    }
                }
            }
            remaining -= want as u64;
            if chunks.blocking_send(Ok(buffer.freeze())).is_err() {
                return; // the session is gone
            }
        }
    });
    queue
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
    };
    Ok((file, header))
}
