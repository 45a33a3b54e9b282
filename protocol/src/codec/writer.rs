//! The sink of messages on a connection's write half. Each message is encoded straight into
//! one outgoing buffer (the length prefix, then postcard), except large content fields
//! (`Chunk::data`, `RelayData::data`, at least [`SHARE_AT_LEAST`] bytes): those stay in
//! their own buffers and go out beside the encoded bytes in one vectored write.
//!
//! Copying each content byte into the outgoing buffer was one of the four copies a relayed
//! byte took on the server (and one of two on the sender); TLS copies the plaintext into
//! its records anyway, so the content can be handed to it where it already lies. The bytes
//! on the wire are identical to [`FrameCodec`](super::FrameCodec) + [`encode`](super::encode).

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::{self, IoSlice},
    marker::PhantomData,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::Sink;
use serde::Serialize;
use tokio::io::AsyncWrite;

use super::frame_bytes::SHARE_AT_LEAST;
use crate::{error::ProtocolError, MAX_FRAME_LEN};

/// Encoded bytes beyond which `poll_ready` writes out before taking another message, unless
/// set otherwise: small messages gather into large writes, and a run of chunks never piles
/// up unwritten.
const WRITE_OUT_AT: usize = 64 * 1024;

/// Most buffers handed to one vectored write.
const MAX_SLICES: usize = 64;

thread_local! {
    /// The content field being serialized on this thread, offered to the encoder to send out
    /// of line (see [`offer_out_of_line`]).
    static OFFERED: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Serializes `bytes` with `serialize`, letting a [`MessageWriter`] that is encoding on this
/// thread take a large field by reference instead of copying it. Any other serializer
/// copies it as usual.
pub(crate) fn offer_out_of_line<R>(bytes: &Bytes, serialize: impl FnOnce() -> R) -> R {
    if bytes.len() < SHARE_AT_LEAST {
        return serialize();
    }
    OFFERED.with(|offered| *offered.borrow_mut() = Some(bytes.clone()));
    let serialized = serialize();
    OFFERED.with(|offered| *offered.borrow_mut() = None);
    serialized
}

/// The offered field, if `data` is exactly its bytes.
fn take_offered(data: &[u8]) -> Option<Bytes> {
    OFFERED.with(|offered| {
        let mut offered = offered.borrow_mut();
        let same = offered
            .as_ref()
            .is_some_and(|bytes| bytes.as_ptr() == data.as_ptr() && bytes.len() == data.len());
        if same {
            offered.take()
        } else {
            None
        }
    })
}

/// Writes messages of type `T` to `W`; a `Sink` like tokio-util's `FramedWrite`.
#[derive(Debug)]
pub struct MessageWriter<W, T> {
    io: W,
    /// Bytes to write before [`Self::encoded`], in order: runs of encoded messages and the
    /// content fields between them.
    queued: VecDeque<Bytes>,
    /// Bytes in `queued`.
    queued_len: usize,
    /// Messages encoded since the last content field sent out of line.
    encoded: BytesMut,
    /// Unwritten bytes beyond which a new message waits for a write.
    write_out_at: usize,
    _type: PhantomData<fn(T)>,
}

/// Writes messages of type `T` (a [`crate::Response`] on the server, a [`crate::Request`] on
/// the client) to the write half of a connection.
pub fn message_writer<W: AsyncWrite, T>(write_half: W) -> MessageWriter<W, T> {
    MessageWriter {
        io: write_half,
        queued: VecDeque::new(),
        queued_len: 0,
        encoded: BytesMut::with_capacity(8 * 1024),
        write_out_at: WRITE_OUT_AT,
        _type: PhantomData,
    }
}

impl<W, T> MessageWriter<W, T> {
    /// The write half.
    pub fn get_ref(&self) -> &W {
        &self.io
    }

    /// The write half, mutably (writing to it directly would interleave with queued bytes).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }

    /// The write half; bytes not yet written are dropped.
    pub fn into_inner(self) -> W {
        self.io
    }

    /// Lets up to `bytes` gather unwritten before a new message waits for a write.
    pub fn set_backpressure_boundary(&mut self, bytes: usize) {
        self.write_out_at = bytes;
    }

    /// Bytes accepted and not yet written.
    fn unwritten(&self) -> usize {
        self.queued_len + self.encoded.len()
    }
}

impl<W, T: Serialize> MessageWriter<W, T> {
    /// Encodes `message` behind what is queued: the length prefix, then postcard, large
    /// content fields out of line. Nothing is queued if it fails.
    fn encode(&mut self, message: &T) -> Result<(), ProtocolError> {
        let start = self.encoded.len();
        self.encoded.put_u32(0);
        let mut out_of_line = Vec::new();
        let flavor = Appender {
            encoded: &mut self.encoded,
            out_of_line: &mut out_of_line,
        };
        let written = postcard::serialize_with_flavor(message, flavor);
        let beside: usize = out_of_line.iter().map(|(_, bytes)| bytes.len()).sum();
        let len = self.encoded.len() - start - 4 + beside;
        let failed = match written {
            Err(err) => Some(ProtocolError::Encode(err)),
            Ok(()) if len > MAX_FRAME_LEN => {
                Some(ProtocolError::FrameTooLarge { max: MAX_FRAME_LEN })
            }
            Ok(()) => None,
        };
        if let Some(err) = failed {
            self.encoded.truncate(start);
            return Err(err);
        }
        self.encoded[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        let mut taken = 0;
        for (at, bytes) in out_of_line {
            let before = self.encoded.split_to(at - taken).freeze();
            self.queue(before);
            taken = at;
            self.queue(bytes);
        }
        Ok(())
    }

    fn queue(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued_len += bytes.len();
            self.queued.push_back(bytes);
        }
    }
}

impl<W: AsyncWrite + Unpin, T> MessageWriter<W, T> {
    /// Writes everything accepted so far to `io` (not flushing `io` itself).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        while self.unwritten() > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut used = 0;
            for bytes in self.queued.iter().take(MAX_SLICES - 1) {
                slices[used] = IoSlice::new(bytes);
                used += 1;
            }
            if used < MAX_SLICES - 1 || self.queued.len() == used {
                slices[used] = IoSlice::new(&self.encoded);
                used += 1;
            }
            let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..used]))?;
            if written == 0 {
                let closed = io::Error::new(io::ErrorKind::WriteZero, "the connection is closed");
                return Poll::Ready(Err(closed.into()));
            }
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Drops `written` bytes from the front.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.encoded.advance(written);
                return;
            };
            let step = written.min(front.len());
            front.advance(step);
            self.queued_len -= step;
            written -= step;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
    }
}

impl<W: AsyncWrite + Unpin, T: Serialize> Sink<T> for MessageWriter<W, T> {
    type Error = ProtocolError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.unwritten() >= self.write_out_at {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: T) -> Result<(), Self::Error> {
        self.encode(&message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(Into::into))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(ready!(Pin::new(&mut self.io).poll_shutdown(cx)).map_err(Into::into))
    }
}

/// A postcard output appending to the outgoing buffer, taking offered content fields out of
/// line. postcard writes a hash (a `[u8; 32]`) byte by byte; through `std::io::Write` each
/// byte was a `write_all` call (measured: most of the client's encoding time on small
/// files), here it is a plain push.
struct Appender<'a> {
    encoded: &'a mut BytesMut,
    /// Content fields left out of `encoded`, each with the offset in it where it belongs.
    out_of_line: &'a mut Vec<(usize, Bytes)>,
}

impl postcard::ser_flavors::Flavor for Appender<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match (data.len() >= SHARE_AT_LEAST)
            .then(|| take_offered(data))
            .flatten()
        {
            Some(bytes) => self.out_of_line.push((self.encoded.len(), bytes)),
            None => self.encoded.extend_from_slice(data),
        }
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.encoded.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec, relay::RelayData, Chunk, EndFile, Hash, Request};
    use futures::SinkExt;

    /// A connection that takes at most `step` bytes per write, vectored or not, and keeps
    /// them; each write is recorded with the addresses of the buffers it was given.
    #[derive(Default)]
    struct Trickle {
        step: usize,
        written: Vec<u8>,
        /// The start address of every buffer handed to a write.
        seen: Vec<usize>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut room = self.step;
            for buf in bufs {
                self.seen.push(buf.as_ptr() as usize);
                let take = room.min(buf.len());
                self.written.extend_from_slice(&buf[..take]);
                room -= take;
            }
            Poll::Ready(Ok(self.step - room))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn framed(message: &Request) -> Vec<u8> {
        let payload = codec::encode(message).unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    fn messages() -> Vec<Request> {
        let large = Bytes::from((0..SHARE_AT_LEAST * 2).map(|i| i as u8).collect::<Vec<_>>());
        vec![
            Request::Chunk(Chunk {
                data: Bytes::from_static(b"small"),
            }),
            Request::Chunk(Chunk {
                data: large.clone(),
            }),
            Request::RelayData(RelayData {
                offer: 7,
                data: large.slice(1..SHARE_AT_LEAST + 1),
            }),
            Request::EndFile(EndFile {
                hash: Hash([9; 32]),
            }),
            Request::Chunk(Chunk { data: large }),
        ]
    }

    #[tokio::test]
    async fn the_bytes_written_are_those_of_the_frame_codec_whatever_each_write_takes() {
        let expected: Vec<u8> = messages().iter().flat_map(framed).collect();
        for step in [1, 7, 4096, SHARE_AT_LEAST + 3, usize::MAX / 2] {
            let mut writer = message_writer::<_, Request>(Trickle {
                step,
                ..Trickle::default()
            });
            for message in messages() {
                writer.feed(message).await.unwrap();
            }
            writer.flush().await.unwrap();
            assert!(writer.get_ref().written == expected, "step {step}");
        }
    }

    #[tokio::test]
    async fn large_content_is_written_from_its_own_buffer() {
        let data = Bytes::from(vec![5u8; SHARE_AT_LEAST]);
        let small = Bytes::from(vec![6u8; SHARE_AT_LEAST - 1]);
        let mut writer = message_writer::<_, Request>(Trickle {
            step: usize::MAX / 2,
            ..Trickle::default()
        });
        writer
            .feed(Request::Chunk(Chunk { data: data.clone() }))
            .await
            .unwrap();
        writer
            .feed(Request::Chunk(Chunk {
                data: small.clone(),
            }))
            .await
            .unwrap();
        writer.flush().await.unwrap();
        let seen = &writer.get_ref().seen;
        assert!(
            seen.contains(&(data.as_ptr() as usize)),
            "large: not copied"
        );
        assert!(!seen.contains(&(small.as_ptr() as usize)), "small: copied");
    }

    #[test]
    fn an_oversized_message_is_refused_and_leaves_nothing_queued() {
        let mut writer = message_writer::<_, Request>(Trickle::default());
        let huge = Bytes::from(vec![0u8; MAX_FRAME_LEN + 1]);
        let refused = writer.encode(&Request::Chunk(Chunk { data: huge }));
        assert!(matches!(refused, Err(ProtocolError::FrameTooLarge { .. })));
        assert_eq!(writer.unwritten(), 0);
        writer
            .encode(&Request::Chunk(Chunk {
                data: Bytes::from_static(b"next"),
            }))
            .unwrap();
        assert_eq!(
            writer.unwritten(),
            framed(&Request::Chunk(Chunk {
                data: Bytes::from_static(b"next")
            }))
            .len()
        );
    }
}
