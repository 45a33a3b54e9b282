//! Property tests: every message survives encoding, and no input bytes can make the
//! decoders panic or allocate beyond the frame limit.

use bytes::{Bytes, BytesMut};
use ft_protocol::{
    codec::{decode, decode_hello, encode, FrameCodec},
    Ack, BeginFile, CancelFile, CatalogEntry, Chunk, CompressedChunk, ConflictPolicy, Delete,
    Deleted, DirMade, EndFile, ErrorCode, ErrorResponse, Failed, FileIntent, FilePlan, Get, Hash,
    Hello, InfoRequest, List, Listing, MakeDir, Prepare, Prepared, Request, Response, Sending,
    ServerInfo, Welcome, MAX_FRAME_LEN,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::VersionMismatch,
        ErrorCode::ProtocolViolation,
        ErrorCode::InvalidName,
        ErrorCode::HashMismatch,
        ErrorCode::TooLarge,
        ErrorCode::Storage,
        ErrorCode::Cancelled,
        ErrorCode::Busy,
        ErrorCode::Timeout,
        ErrorCode::ShuttingDown,
        ErrorCode::NoSpace,
        ErrorCode::NotFound,
        ErrorCode::NameTaken,
    ])
}

fn name() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u32>(), name(), prop::collection::vec(name(), 0..3)).prop_map(|(v, s, c)| {
            Request::Hello(Hello {
                protocol_version: v,
                software: s,
                capabilities: c,
            })
        }),
        (
            any::<u32>(),
            name(),
            any::<u64>(),
            any::<bool>(),
            hash(),
            any::<u64>(),
            prop::option::of(hash())
        )
            .prop_map(|(id, name, size, overwrite, key, offset, prefix_hash)| {
                Request::BeginFile(BeginFile {
                    id,
                    name,
                    size,
                    conflict: if overwrite {
                        ConflictPolicy::Overwrite
                    } else {
                        ConflictPolicy::KeepBoth
                    },
                    key,
                    offset,
                    prefix_hash,
                    modified_ns: Some(offset as i64),
                })
            }),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(|data| Request::Chunk(Chunk {
            data: Bytes::from(data)
        })),
        hash().prop_map(|hash| Request::EndFile(EndFile { hash })),
        name().prop_map(|reason| Request::CancelFile(CancelFile { reason })),
        prop::option::of(name()).prop_map(|pattern| Request::List(List { pattern })),
        (name(), any::<u64>(), prop::option::of(hash())).prop_map(|(name, offset, prefix_hash)| {
            Request::Get(Get {
                name,
                offset,
                prefix_hash,
            })
        }),
        name().prop_map(|name| Request::Delete(Delete { name })),
        Just(Request::Info(InfoRequest {})),
        name().prop_map(|name| Request::MakeDir(MakeDir { name })),
        prop::option::of((name(), name())).prop_map(|credentials| {
            Request::Authenticate(ft_protocol::Authenticate {
                credentials: credentials
                    .map(|(user, token)| ft_protocol::Credentials { user, token }),
            })
        }),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..512)).prop_map(|(raw_len, data)| {
            Request::CompressedChunk(CompressedChunk {
                raw_len,
                data: Bytes::from(data),
            })
        }),
        (
            prop::collection::vec((name(), any::<u64>(), hash()), 0..8),
            any::<bool>()
        )
            .prop_map(|(files, append)| {
                Request::Prepare(Prepare {
                    files: files
                        .into_iter()
                        .map(|(name, size, key)| FileIntent {
                            name,
                            size,
                            key,
                            conflict: ConflictPolicy::Skip,
                            modified_ns: Some(size as i64),
                            quick_check: append,
                            content_hash: Some(key),
                        })
                        .collect(),
                    append,
                })
            }),
    ]
}

fn plan() -> impl Strategy<Value = FilePlan> {
    prop_oneof![
        Just(FilePlan::Fresh),
        any::<u64>().prop_map(|offset| FilePlan::Resume { offset }),
        (code(), name()).prop_map(|(code, message)| FilePlan::Refused { code, message }),
        name().prop_map(|stored_name| FilePlan::Unchanged { stored_name }),
        Just(FilePlan::Compare),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u32>(), name(), any::<u64>()).prop_map(|(v, s, max)| Response::Welcome(Welcome {
            protocol_version: v,
            software: s,
            capabilities: vec![],
            max_file_size: max,
        })),
        (any::<u32>(), name(), any::<u64>(), hash()).prop_map(|(id, stored_name, size, hash)| {
            Response::Ack(Ack {
                id,
                stored_name,
                size,
                hash,
            })
        }),
        (any::<Option<u32>>(), code(), name())
            .prop_map(|(id, code, message)| Response::Error(ErrorResponse { id, code, message })),
        (
            prop::collection::vec((name(), name(), any::<u64>(), hash(), name()), 0..4),
            any::<bool>()
        )
            .prop_map(|(entries, last)| Response::Listing(Listing {
                entries: entries
                    .into_iter()
                    .map(|(name, sent_name, size, hash, added_at)| CatalogEntry {
                        owner: sent_name.clone(),
                        name,
                        sent_name,
                        size,
                        hash,
                        added_at,
                        modified_ns: None,
                    })
                    .collect(),
                last,
            })),
        prop::collection::vec(plan(), 0..8)
            .prop_map(|plans| Response::Prepared(Prepared { plans })),
        (name(), any::<u64>(), hash(), any::<u64>()).prop_map(|(name, size, hash, offset)| {
            Response::Sending(Sending {
                name,
                size,
                hash,
                offset,
                modified_ns: Some(-1),
            })
        }),
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(|data| Response::Data(Chunk {
            data: Bytes::from(data)
        })),
        (name(), any::<u64>()).prop_map(|(name, size)| Response::Deleted(Deleted { name, size })),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(files, bytes, max)| {
            Response::ServerInfo(ServerInfo {
                software: "fts".into(),
                protocol_version: 3,
                capabilities: vec![],
                files,
                bytes,
                free_bytes: bytes / 2,
                max_file_size: bytes,
                max_connections: max,
                partial_files: files / 3,
                partial_bytes: bytes / 3,
            })
        }),
        (name(), any::<bool>())
            .prop_map(|(name, created)| Response::DirMade(DirMade { name, created })),
        (code(), name()).prop_map(|(code, message)| Response::Failed(Failed { code, message })),
        (
            name(),
            prop::sample::select(ft_protocol::Role::ALL.to_vec())
        )
            .prop_map(|(user, role)| {
                Response::Authenticated(ft_protocol::Authenticated { user, role })
            }),
    ]
}

proptest! {
    #[test]
    fn every_request_round_trips(message in request()) {
        let bytes = encode(&message).unwrap();
        prop_assert_eq!(decode::<Request>(&bytes).unwrap(), message);
    }

    #[test]
    fn every_response_round_trips(message in response()) {
        let bytes = encode(&message).unwrap();
        prop_assert_eq!(decode::<Response>(&bytes).unwrap(), message);
    }

    #[test]
    fn frames_round_trip(payload in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut codec = FrameCodec::new();
        let mut wire = BytesMut::new();
        codec.encode(Bytes::from(payload.clone()), &mut wire).unwrap();
        let frame = codec.decode(&mut wire).unwrap().unwrap();
        prop_assert_eq!(&frame[..], &payload[..]);
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Response>(&bytes);
        let _ = decode_hello(&bytes);
    }

    #[test]
    fn arbitrary_streams_never_make_the_framer_panic_or_overallocate(
        bytes in prop::collection::vec(any::<u8>(), 0..1024)
    ) {
        let mut codec = FrameCodec::new();
        let mut buffer = BytesMut::from(&bytes[..]);
        // Bounded: each round consumes a frame or stops.
        for _ in 0..bytes.len() + 1 {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => { let _ = decode::<Request>(&frame); }
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(buffer.capacity() <= MAX_FRAME_LEN + bytes.len() + 8);
    }
}
