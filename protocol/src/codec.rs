//! The only code that turns bytes into messages and back.
//!
//! Two layers: [`FrameCodec`] cuts the byte stream into length-prefixed frames (refusing
//! oversized ones from the prefix alone), and postcard turns one frame into one message
//! ([`encode`], [`decode`]). [`message_reader`] and [`message_writer`] stack them on the two
//! halves of a socket, so the rest of the system sees only
//! `Stream<Item = Result<T, ProtocolError>>` and `Sink<T>`.

use std::io;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::AsyncRead;
use tokio_util::codec::{
    Decoder, Encoder, FramedRead, LengthDelimitedCodec, LengthDelimitedCodecError,
};

use crate::{error::ProtocolError, Hello, MAX_FRAME_LEN};

pub mod frame_bytes;
mod writer;

pub use writer::{message_writer, MessageWriter};

/// Length-delimited frames: a big-endian `u32` length, then that many payload bytes, at most
/// [`MAX_FRAME_LEN`].
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl FrameCodec {
    /// A codec enforcing [`MAX_FRAME_LEN`] in both directions.
    pub fn new() -> Self {
        let inner = LengthDelimitedCodec::builder()
            .length_field_type::<u32>()
            .big_endian()
            .max_frame_length(MAX_FRAME_LEN)
            .new_codec();
        Self { inner }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

/// tokio-util reports an oversized frame as an `io::Error` wrapping its own error type;
/// surface it as the protocol violation it is.
fn classify(err: io::Error) -> ProtocolError {
    let too_large = err
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if too_large {
        ProtocolError::FrameTooLarge { max: MAX_FRAME_LEN }
    } else {
        ProtocolError::Io(err)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        self.inner.decode(src).map_err(classify)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.inner.encode(frame, dst).map_err(classify)
    }
}

/// Encodes one message into a frame payload (without the length prefix).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ProtocolError> {
    postcard::to_allocvec(message).map_err(ProtocolError::Encode)
}

/// Decodes one frame payload that must hold exactly one message.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    match postcard::take_from_bytes(payload) {
        Ok((message, [])) => Ok(message),
        Ok(_) => Err(ProtocolError::Decode(
            postcard::Error::DeserializeBadEncoding,
        )),
        Err(err) => Err(ProtocolError::Decode(err)),
    }
}

/// A stream of decoded messages of type `T` read from `R`.
pub type MessageReader<R, T> = FramedRead<R, MessageDecoder<T>>;

/// Reads messages of type `T` (a [`crate::Request`] on the server, a [`crate::Response`] on the
/// client) from the read half of a connection.
pub fn message_reader<R: AsyncRead, T>(read_half: R) -> MessageReader<R, T> {
    FramedRead::with_capacity(read_half, MessageDecoder::default(), READ_BUFFER_BYTES)
}

/// Cuts frames and decodes each into one message; large content bytes share the frame's
/// buffer instead of being copied (see [`frame_bytes`]).
#[derive(Debug)]
pub struct MessageDecoder<T> {
    frames: FrameCodec,
    /// How the next frame is decoded instead, once (the server's first frame is a `Hello`
    /// read by its frozen prefix).
    next_with: Option<DecodeFrame<T>>,
}

/// Decodes one whole frame into a `T`.
pub type DecodeFrame<T> = fn(&[u8]) -> Result<T, ProtocolError>;

impl<T> Default for MessageDecoder<T> {
    fn default() -> Self {
        Self {
            frames: FrameCodec::new(),
            next_with: None,
        }
    }
}

impl<T> MessageDecoder<T> {
    /// Decodes the next frame with `decode` instead of as a `T` message.
    pub fn decode_next_with(&mut self, decode: DecodeFrame<T>) {
        self.next_with = Some(decode);
    }
}

impl<T: DeserializeOwned> Decoder for MessageDecoder<T> {
    type Item = T;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, ProtocolError> {
        let Some(frame) = self.frames.decode(src)? else {
            return Ok(None);
        };
        if let Some(decode_first) = self.next_with.take() {
            return decode_first(&frame).map(Some);
        }
        let frame = frame.freeze();
        frame_bytes::with_frame(&frame, || decode(&frame)).map(Some)
    }
}

/// The first frame a server reads: a [`Hello`] checked by its frozen prefix
/// ([`decode_hello`]), as a request; for [`MessageDecoder::decode_next_with`].
pub fn hello_request(frame: &[u8]) -> Result<crate::Request, ProtocolError> {
    decode_hello(frame)
        .map(crate::Request::Hello)
        .map_err(ProtocolError::Hello)
}

/// Bytes asked of the socket per read. tokio-util's default (8 KiB) meant one system call
/// per two small files; a pipelined stream of small files fills this at once.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why the first frame of a session is not an acceptable [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The frame is some other message, or not a message at all.
    #[error("the first message must be Hello")]
    NotHello,
    /// A Hello from a peer speaking another protocol version.
    #[error("client speaks protocol version {theirs}, this server speaks {ours}")]
    VersionMismatch {
        /// The peer's version.
        theirs: u32,
        /// Ours, [`crate::PROTOCOL_VERSION`].
        ours: u32,
    },
}

/// Decodes the first frame of a session. Only the frozen prefix (variant 0, then the version)
/// is read before the version is checked, so a peer of any version gets a precise answer even
/// if the rest of its Hello has a layout this build does not know. Fields a newer peer appended
/// to Hello are ignored.
pub fn decode_hello(payload: &[u8]) -> Result<Hello, HelloError> {
    let (variant, version): (u32, u32) = postcard::take_from_bytes(payload)
        .map(|(prefix, _rest)| prefix)
        .map_err(|_| HelloError::NotHello)?;
    if variant != 0 {
        return Err(HelloError::NotHello);
    }
    if version != crate::PROTOCOL_VERSION {
        return Err(HelloError::VersionMismatch {
            theirs: version,
            ours: crate::PROTOCOL_VERSION,
        });
    }
    match postcard::take_from_bytes::<crate::Request>(payload) {
        Ok((crate::Request::Hello(hello), _appended_fields)) => Ok(hello),
        _ => Err(HelloError::NotHello),
    }
}

#[cfg(test)]
mod tests {
    //! Golden tests: the exact bytes of a few messages. A failure here means the wire format
    //! changed; that requires bumping `PROTOCOL_VERSION`, not editing the expected bytes.

    use futures::{SinkExt, StreamExt};

    use super::*;
    use crate::{
        BeginFile, Chunk, ConflictPolicy, ErrorCode, ErrorResponse, Hash, Request, Response,
        PROTOCOL_VERSION,
    };

    fn hello(version: u32) -> Request {
        Request::Hello(Hello {
            protocol_version: version,
            software: "ftc".into(),
            capabilities: vec![],
        })
    }

    #[test]
    fn hello_bytes_are_pinned() {
        let bytes = encode(&hello(PROTOCOL_VERSION)).unwrap();
        assert_eq!(bytes, [0x00, 0x0b, 0x03, b'f', b't', b'c', 0x00]);
    }

    #[test]
    fn begin_file_bytes_are_pinned() {
        let message = Request::BeginFile(BeginFile {
            id: 7,
            name: "a.txt".into(),
            size: 300,
            conflict: ConflictPolicy::Overwrite,
            key: Hash([0x11; 32]),
            offset: 5,
            prefix_hash: Some(Hash([0x22; 32])),
            modified_ns: Some(-2),
        });
        let mut expected = vec![
            0x01, 0x07, 0x05, b'a', b'.', b't', b'x', b't', 0xac, 0x02, 0x01,
        ];
        expected.extend([0x11; 32]);
        expected.extend([0x05, 0x01]);
        expected.extend([0x22; 32]);
        // The modification time: Some, then -2 as a zigzag varint.
        expected.extend([0x01, 0x03]);
        assert_eq!(encode(&message).unwrap(), expected);
    }

    #[test]
    fn chunk_is_a_length_and_raw_bytes() {
        let message = Request::Chunk(Chunk {
            data: Bytes::from_static(&[9, 8, 7]),
        });
        assert_eq!(encode(&message).unwrap(), [0x02, 0x03, 9, 8, 7]);
    }

    #[test]
    fn relay_bytes_are_pinned() {
        use crate::relay::{Offer, OfferedFile, RelayData};
        let offer = Request::Offer(Offer {
            to: vec!["bob".into()],
            files: vec![OfferedFile {
                name: "a".into(),
                size: 300,
            }],
            timeout_secs: 120,
        });
        // Variant 15; one recipient "bob"; one file "a" of 300 bytes; 120 seconds.
        let expected = [
            0x0f, 0x01, 0x03, b'b', b'o', b'b', 0x01, 0x01, b'a', 0xac, 0x02, 0x78,
        ];
        assert_eq!(encode(&offer).unwrap(), expected);
        let data = Response::RelayData(RelayData {
            offer: 7,
            data: Bytes::from_static(&[1, 2]),
        });
        // Response variant 18; offer 7; two bytes.
        assert_eq!(encode(&data).unwrap(), [0x12, 0x07, 0x02, 1, 2]);
    }

    #[test]
    fn inbox_bytes_are_pinned() {
        use crate::relay::{InboxRequest, Offer, OfferedFile, RecipientOutcome};
        let leave = Request::Leave(Offer {
            to: vec!["bob".into()],
            files: vec![OfferedFile {
                name: "a".into(),
                size: 1,
            }],
            timeout_secs: 1,
        });
        // Variant 23, then an `Offer` as in `relay_bytes_are_pinned`.
        let expected = [
            0x17, 0x01, 0x03, b'b', b'o', b'b', 0x01, 0x01, b'a', 0x01, 0x01,
        ];
        assert_eq!(encode(&leave).unwrap(), expected);
        assert_eq!(encode(&Request::Inbox(InboxRequest {})).unwrap(), [0x18]);
        let refused = RecipientOutcome::Refused {
            code: ErrorCode::QuotaExceeded,
            message: "x".into(),
        };
        // Outcome variant 4; error code 16; the message.
        let bytes = postcard::to_allocvec(&refused).unwrap();
        assert_eq!(bytes, [0x04, 0x10, 0x01, b'x']);
    }

    #[test]
    fn error_bytes_are_pinned() {
        let message = Response::Error(ErrorResponse::new(Some(3), ErrorCode::HashMismatch, "bad"));
        let expected = [0x02, 0x01, 0x03, 0x04, 0x03, b'b', b'a', b'd'];
        assert_eq!(encode(&message).unwrap(), expected);
    }

    /// A `Prepared` refusing a full page of files, each with the longest message (as a
    /// message naming a long, escaped name is cut to), still fits one frame.
    #[test]
    fn a_page_of_refusals_fits_a_frame() {
        let message = "\u{200b}".repeat(crate::MAX_NAME_LEN);
        let plans = vec![
            crate::FilePlan::refused(ErrorCode::InvalidName, message);
            crate::MAX_PREPARE_FILES
        ];
        let bytes = encode(&Response::Prepared(crate::Prepared { plans })).unwrap();
        assert!(bytes.len() <= crate::MAX_FRAME_LEN, "{} bytes", bytes.len());
    }

    #[test]
    fn authentication_bytes_are_pinned() {
        let request = Request::Authenticate(crate::Authenticate {
            credentials: Some(crate::Credentials {
                user: "al".into(),
                token: "t".into(),
            }),
        });
        // Variant 12, Some, "al", "t".
        let expected = [0x0c, 0x01, 0x02, b'a', b'l', 0x01, b't'];
        assert_eq!(encode(&request).unwrap(), expected);
        let anonymous = Request::Authenticate(crate::Authenticate { credentials: None });
        assert_eq!(encode(&anonymous).unwrap(), [0x0c, 0x00]);
        let answer = Response::Authenticated(crate::Authenticated {
            user: "al".into(),
            role: crate::Role::Upload,
        });
        // Variant 11, "al", role 2.
        assert_eq!(encode(&answer).unwrap(), [0x0b, 0x02, b'a', b'l', 0x02]);
        let forbidden = Response::Error(ErrorResponse::new(None, ErrorCode::Forbidden, ""));
        assert_eq!(encode(&forbidden).unwrap(), [0x02, 0x00, 0x0e, 0x00]);
    }

    #[test]
    fn prepared_bytes_are_pinned() {
        let message = Response::Prepared(crate::Prepared {
            plans: vec![
                crate::FilePlan::Fresh,
                crate::FilePlan::Resume { offset: 1 },
                crate::FilePlan::Refused {
                    code: ErrorCode::NoSpace,
                    message: "x".into(),
                },
            ],
        });
        let expected = vec![0x04, 0x03, 0x00, 0x01, 0x01, 0x02, 0x0b, 0x01, b'x'];
        assert_eq!(encode(&message).unwrap(), expected);
    }

    #[test]
    fn get_and_sending_bytes_are_pinned() {
        let get = Request::Get(crate::Get {
            name: "a".into(),
            offset: 2,
            prefix_hash: None,
        });
        assert_eq!(encode(&get).unwrap(), [0x07, 0x01, b'a', 0x02, 0x00]);
        let failed = Response::Failed(crate::Failed {
            code: ErrorCode::NotFound,
            message: "x".into(),
        });
        assert_eq!(encode(&failed).unwrap(), [0x0a, 0x0c, 0x01, b'x']);
    }

    #[test]
    fn end_file_carries_the_raw_32_byte_hash() {
        let message = Request::EndFile(crate::EndFile {
            hash: Hash([0xab; 32]),
        });
        let bytes = encode(&message).unwrap();
        assert_eq!(bytes.len(), 1 + 32);
        assert_eq!(bytes[0], 0x03);
        assert!(bytes[1..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&hello(PROTOCOL_VERSION)).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Request>(&bytes),
            Err(ProtocolError::Decode(_))
        ));
    }

    #[test]
    fn hello_with_other_version_is_named_as_such() {
        let bytes = encode(&hello(PROTOCOL_VERSION + 1)).unwrap();
        assert_eq!(
            decode_hello(&bytes),
            Err(HelloError::VersionMismatch {
                theirs: PROTOCOL_VERSION + 1,
                ours: PROTOCOL_VERSION
            })
        );
        // A future Hello whose tail we cannot parse is still recognised by its frozen prefix.
        assert!(matches!(
            decode_hello(&[0x00, 0x0c, 0xff, 0xff]),
            Err(HelloError::VersionMismatch { theirs: 12, .. })
        ));
    }

    #[test]
    fn hello_tolerates_appended_fields_and_refuses_other_messages() {
        let mut bytes = encode(&hello(PROTOCOL_VERSION)).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_hello(&bytes).unwrap().software, "ftc");

        let list = encode(&Request::List(crate::List { pattern: None })).unwrap();
        assert_eq!(decode_hello(&list), Err(HelloError::NotHello));
        assert_eq!(decode_hello(&[]), Err(HelloError::NotHello));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading_the_payload() {
        let mut codec = FrameCodec::new();
        let mut src = BytesMut::new();
        src.extend_from_slice(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        let err = codec.decode(&mut src).unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { max } if max == MAX_FRAME_LEN));
        assert!(
            src.capacity() < MAX_FRAME_LEN,
            "no buffer was reserved for the frame"
        );
    }

    #[test]
    fn frames_carry_a_big_endian_u32_length() {
        let mut codec = FrameCodec::new();
        let mut dst = BytesMut::new();
        codec.encode(Bytes::from_static(b"abc"), &mut dst).unwrap();
        assert_eq!(&dst[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[tokio::test]
    async fn messages_cross_a_socket_pair() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut writer = message_writer::<_, Request>(client);
        let mut reader = message_reader::<_, Request>(server);
        let sent = Request::Chunk(Chunk {
            data: Bytes::from(vec![5u8; crate::CHUNK_SIZE]),
        });
        let send = async {
            writer.send(sent.clone()).await.unwrap();
            drop(writer);
        };
        let (_, received) = tokio::join!(send, reader.next());
        assert_eq!(received.unwrap().unwrap(), sent);
        assert!(reader.next().await.is_none(), "a clean hang-up is None");
    }
}
