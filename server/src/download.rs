//! One download: a blocking thread reads the stored file into a bounded queue of chunks,
//! so disk reads overlap with sending and memory stays bounded whatever the file size.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
};

use bytes::{Bytes, BytesMut};
use ft_protocol::CHUNK_SIZE;
use tokio::sync::mpsc;

/// Chunks read ahead of the network, per download.
const READ_AHEAD_CHUNKS: usize = 8;

/// Streams exactly `len` bytes of `file` from `offset` as chunks of at most [`CHUNK_SIZE`].
/// A read error, or the file ending early, arrives as the last item.
pub fn read_chunks(
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
