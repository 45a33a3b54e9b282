//! Group commit: acknowledgements are batched, but a file's Ack is never held back for long by
//! the files that follow it.

use std::time::{Duration, Instant};

use ft_protocol::Response;
use futures::{FutureExt, StreamExt};
use integration_tests::{begin_request, chunk_request, end_request, RawClient, Workspace};

/// A small file is verified, then a large upload streams on without a pause (so the server
/// never sees the client go quiet). The small file's group is committed once it is 500 ms
/// old, and its Ack arrives while the large upload is still open.
#[tokio::test]
async fn a_long_upload_does_not_hold_back_the_ack_of_an_earlier_file() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::handshake(server.addr).await;

    client.send(begin_request(1, "small.txt", 5)).await;
    client.send(chunk_request(b"hello")).await;
    client.send(end_request(b"hello")).await;

    // Tiny chunks back to back: each is a request, and the stream never pauses for the 2 ms
    // that would commit the group on its own. Bounded by a deadline and a byte count.
    const LARGE: u64 = 64 * 1024 * 1024;
    client.send(begin_request(2, "large.bin", LARGE)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0u64;
    let mut answer = None;
    while answer.is_none() && Instant::now() < deadline && sent + 16 <= LARGE {
        client.send(chunk_request(&[7u8; 16])).await;
        sent += 16;
        if let Some(Some(Ok(response))) = client.reader.next().now_or_never() {
            answer = Some(response);
        }
    }
    match answer {
        Some(Response::Ack(ack)) => {
            assert_eq!(ack.id, 1);
            assert_eq!(ack.stored_name, "small.txt");
        }
        other => panic!("expected the small file's Ack while the large one streams, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(ws.recv().join("small.txt")).unwrap(),
        b"hello"
    );

    // The large upload never ended: nothing carries its name.
    assert!(!ws.recv().join("large.bin").exists());
}
