//! Chunks made ready for the wire: zstd-compressed when it pays, raw otherwise.

use ft_protocol::{Chunk, CompressedChunk, Request};

/// zstd level for chunks: the fastest levels keep up with a gigabit link on one core.
const ZSTD_LEVEL: i32 = 1;

/// A chunk ready for the wire, raw or compressed.
pub(crate) struct Piece {
    /// The `Chunk` or `CompressedChunk` to send.
    pub(crate) request: Request,
    /// Content bytes it carries.
    pub(crate) raw_len: u64,
    /// Bytes it takes on the wire (smaller than `raw_len` when compressed).
    pub(crate) wire_len: u64,
}

/// Compresses chunks while it pays: a chunk that does not shrink by an eighth travels raw,
/// and after two such chunks the file is not tried further (random or already compressed
/// data would only cost CPU).
pub(crate) struct Compressor {
    enabled: bool,
    misses: u32,
}

impl Compressor {
    /// A compressor for one file; `enabled` false sends every chunk raw.
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, misses: 0 }
    }

    /// Makes the next chunk of the file ready for the wire.
    pub(crate) fn piece(&mut self, data: bytes::Bytes) -> Piece {
        let raw_len = data.len() as u64;
        if self.enabled {
            match zstd::bulk::compress(&data, ZSTD_LEVEL) {
                Ok(packed) if packed.len() < data.len() - data.len() / 8 => {
                    return Piece {
                        wire_len: packed.len() as u64,
                        raw_len,
                        request: Request::CompressedChunk(CompressedChunk {
                            raw_len: raw_len as u32,
                            data: bytes::Bytes::from(packed),
                        }),
                    };
                }
                _ => {
                    self.misses += 1;
                    self.enabled = self.misses < 2;
                }
            }
        }
        Piece {
            request: Request::Chunk(Chunk { data }),
            raw_len,
            wire_len: raw_len,
        }
    }
}
