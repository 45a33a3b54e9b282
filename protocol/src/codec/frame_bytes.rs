//! Content bytes (`Chunk::data`, `RelayData::data`) decoded without a copy: a large field
//! becomes a slice of the frame it arrived in, sharing its buffer, instead of a fresh
//! allocation filled from it.
//!
//! Every relayed byte is decoded twice (by the server, then by the recipient) and every
//! uploaded byte once; the copy was a fifth of the relay's CPU time on the server (`perf`:
//! `memmove` took 43% of fts's samples). Only fields of at least [`SHARE_AT_LEAST`] bytes
//! share: a small file's bytes, which the server may hold in memory until its group commits,
//! must not pin a read buffer many times their size. The encoding on the wire is that of
//! `Bytes` (a length, then the bytes), so nothing changes for a peer.

use std::cell::RefCell;

use bytes::Bytes;
use serde::{de, Deserializer, Serializer};

/// Fields at least this large share the frame's buffer; smaller ones are copied.
pub const SHARE_AT_LEAST: usize = 64 * 1024;

thread_local! {
    /// The frame being decoded on this thread, while [`with_frame`] runs.
    static FRAME: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` with `frame` as the frame large fields may share.
pub(crate) fn with_frame<T>(frame: &Bytes, decode: impl FnOnce() -> T) -> T {
    FRAME.with(|current| *current.borrow_mut() = Some(frame.clone()));
    let decoded = decode();
    FRAME.with(|current| *current.borrow_mut() = None);
    decoded
}

/// `bytes` as a `Bytes`: a slice of the current frame when it lies inside it and is large,
/// otherwise a copy.
fn share_or_copy(bytes: &[u8]) -> Bytes {
    if bytes.len() >= SHARE_AT_LEAST {
        let shared = FRAME.with(|current| {
            let current = current.borrow();
            let frame = current.as_ref()?;
            let start = frame.as_ptr() as usize;
            let at = bytes.as_ptr() as usize;
            let inside = at >= start && at + bytes.len() <= start + frame.len();
            // `slice_ref` panics on a slice outside the frame; it was just checked.
            inside.then(|| frame.slice_ref(bytes))
        });
        if let Some(shared) = shared {
            return shared;
        }
    }
    Bytes::copy_from_slice(bytes)
}

/// Serializes as `Bytes` does; a message writer sends a large field from its own buffer
/// instead of copying it (see [`super::writer`]).
pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    super::writer::offer_out_of_line(bytes, || serializer.serialize_bytes(bytes))
}

/// Deserializes what `Bytes` serialized, sharing the frame where it can.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor)
}

struct BytesVisitor;

impl<'de> de::Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("bytes")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Bytes, E> {
        Ok(share_or_copy(bytes))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Bytes::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec, Chunk, Request};

    fn decode_in_frame(frame: &Bytes) -> Chunk {
        match with_frame(frame, || codec::decode::<Request>(frame)).unwrap() {
            Request::Chunk(chunk) => chunk,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn large_content_shares_the_frame_and_small_content_is_copied() {
        for (len, shares) in [(SHARE_AT_LEAST, true), (SHARE_AT_LEAST - 1, false)] {
            let data = Bytes::from(vec![7u8; len]);
            let frame =
                Bytes::from(codec::encode(&Request::Chunk(Chunk { data: data.clone() })).unwrap());
            let chunk = decode_in_frame(&frame);
            assert_eq!(chunk.data, data);
            let start = frame.as_ptr() as usize;
            let at = chunk.data.as_ptr() as usize;
            assert_eq!(at >= start && at < start + frame.len(), shares, "{len}");
        }
    }

    #[test]
    fn outside_a_frame_content_is_copied() {
        let data = Bytes::from(vec![1u8; SHARE_AT_LEAST * 2]);
        let payload = codec::encode(&Request::Chunk(Chunk { data: data.clone() })).unwrap();
        match codec::decode::<Request>(&payload).unwrap() {
            Request::Chunk(chunk) => assert_eq!(chunk.data, data),
            other => panic!("{other:?}"),
        }
    }
}
