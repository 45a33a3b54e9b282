//! zstd compression: negotiated, smaller on the wire for compressible data, skipped for
//! incompressible data, and bounded against decompression bombs.

use std::fs;

use bytes::Bytes;
use ft_protocol::{
    BeginFile, CompressedChunk, ConflictPolicy, ErrorCode, ErrorResponse, Hash, Request, Response,
    CAPABILITY_ZSTD, CHUNK_SIZE,
};
use integration_tests::{
    ftc,
    proxy::{Fault, FaultProxy},
    random_bytes, RawClient, Workspace,
};

/// Text-like data: words from a small vocabulary, deterministic.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "transfer ",
        "verified ",
        "catalog ",
        "server ",
        "client ",
        "hash ",
        "file ",
    ];
    let noise = random_bytes(len, 77);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(words[noise[i] as usize % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn compressible_data_travels_smaller_and_arrives_identical() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = text(6 << 20);
    let path = ws.file("corpus.txt", &content);
    let proxy = FaultProxy::start(server.addr, vec![Fault::Clean]);
    let output = ftc(&ws.src(), &["send", &proxy.address(), &path, "--compress"]);
    output.success();
    assert!(output.stdout.contains("on the wire (zstd"), "{output}");
    assert_eq!(fs::read(ws.recv().join("corpus.txt")).unwrap(), content);
    let wire = proxy.upstream_bytes();
    assert!(
        wire < content.len() as u64 / 3,
        "{wire} bytes on the wire for {}",
        content.len()
    );
}

#[test]
fn incompressible_data_is_sent_as_is() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(3 << 20, 78);
    let path = ws.file("noise.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![Fault::Clean]);
    let output = ftc(&ws.src(), &["send", &proxy.address(), &path, "--compress"]);
    output.success();
    assert!(!output.stdout.contains("zstd"), "{output}");
    assert_eq!(fs::read(ws.recv().join("noise.bin")).unwrap(), content);
    assert!(proxy.upstream_bytes() >= content.len() as u64);
}

fn begin(size: u64) -> Request {
    Request::BeginFile(BeginFile {
        id: 1,
        name: "z.bin".into(),
        size,
        conflict: ConflictPolicy::KeepBoth,
        key: Hash([5; 32]),
        offset: 0,
        prefix_hash: None,
        modified_ns: None,
    })
}

fn violation(response: Option<Response>) -> String {
    match response {
        Some(Response::Error(ErrorResponse {
            id: None,
            code: ErrorCode::ProtocolViolation,
            message,
        })) => message,
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

#[tokio::test]
async fn compressed_chunks_need_the_capability_and_cannot_expand_beyond_a_chunk() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let packed = Bytes::from(zeros_frame(1000));

    // Not negotiated.
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin(1000)).await;
    client
        .send(Request::CompressedChunk(CompressedChunk {
            raw_len: 1000,
            data: packed.clone(),
        }))
        .await;
    assert!(violation(client.recv().await).contains("capability"));

    // A bomb: claims more than a chunk.
    let mut client = RawClient::handshake_with(server.addr, &[CAPABILITY_ZSTD]).await;
    client.send(begin(1 << 30)).await;
    let bomb = Bytes::from(zeros_frame(4 * CHUNK_SIZE));
    client
        .send(Request::CompressedChunk(CompressedChunk {
            raw_len: 4 * CHUNK_SIZE as u32,
            data: bomb,
        }))
        .await;
    assert!(violation(client.recv().await).contains("larger than"));

    // A frame that expands to more than it declares.
    let mut client = RawClient::handshake_with(server.addr, &[CAPABILITY_ZSTD]).await;
    client.send(begin(1000)).await;
    client
        .send(Request::CompressedChunk(CompressedChunk {
            raw_len: 10,
            data: packed,
        }))
        .await;
    assert!(violation(client.recv().await).contains("raw_len"));
    assert!(ws.stored_names().is_empty());
}

/// A valid zstd frame of `len` zero bytes, written by hand (the frame format is fixed):
/// magic, a header with the content size, then "RLE" blocks of at most 128 KiB, each a single
/// repeated byte. Tiny on the wire, large once expanded: the shape of a decompression bomb.
fn zeros_frame(len: usize) -> Vec<u8> {
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: single segment, 8-byte content size.
    out.push(0b1110_0000);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let mut left = len;
    while left > 0 {
        let size = left.min(128 * 1024);
        left -= size;
        let last = u32::from(left == 0);
        let header = last | (1 << 1) | ((size as u32) << 3); // block type 1 = RLE
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}
