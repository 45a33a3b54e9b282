//! A client that vanishes mid-file leaves nothing under the file's name, and the server
//! keeps serving.

use std::{fs::File, time::Duration};

use bytes::Bytes;
use ft_protocol::{BeginFile, Chunk, ConflictPolicy, Request};
use integration_tests::{eventually, ftc, listing, spawn_ftc, RawClient, Workspace};

#[test]
fn killing_ftc_mid_file_leaves_no_file_and_the_server_serves_on() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    // A sparse 8 GiB file: instant to create, long enough to send that the kill lands mid-file.
    let big = ws.src().join("huge.img");
    File::create(&big).unwrap().set_len(8 << 30).unwrap();
    let address = server.address();
    let mut running = spawn_ftc(&ws.src(), &["send", &address, big.to_str().unwrap()]);

    let staging = ws.recv().join(".fts/staging");
    let started = eventually(Duration::from_secs(30), || {
        std::fs::read_dir(&staging)
            .map(|dir| {
                dir.flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
            })
            .unwrap_or(false)
    });
    assert!(started, "the upload never reached the server");
    running.child.kill().unwrap();
    running.child.wait().unwrap();

    assert!(
        eventually(Duration::from_secs(20), || ws.staging_entries() == 0),
        "the partial upload was not removed; log:\n{}",
        server.log()
    );
    assert!(ws.stored_names().is_empty(), "{:?}", ws.stored_names());
    assert!(listing(&server, &ws.src()).is_empty());
    assert!(
        server
            .log()
            .contains("client disconnected during 'huge.img'"),
        "{}",
        server.log()
    );

    let next = ws.file("next.txt", b"served after the kill");
    ftc(&ws.src(), &["send", &server.address(), &next]).success();
    assert_eq!(ws.stored_names(), ["next.txt"]);
}

#[tokio::test]
async fn a_dropped_connection_mid_file_removes_the_partial_data() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::handshake(server.addr).await;
    client
        .send(Request::BeginFile(BeginFile {
            id: 0,
            name: "partial.bin".into(),
            size: 1 << 20,
            conflict: ConflictPolicy::KeepBoth,
        }))
        .await;
    client
        .send(Request::Chunk(Chunk {
            data: Bytes::from(vec![3u8; 4096]),
        }))
        .await;
    assert!(eventually(Duration::from_secs(10), || ws.staging_entries() == 1));
    drop(client);
    assert!(eventually(Duration::from_secs(10), || ws.staging_entries() == 0));
    assert!(ws.stored_names().is_empty());
}

#[test]
fn stale_staging_files_from_a_crash_are_swept_at_startup() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    server.kill();
    let leftover = ws.recv().join(".fts/staging/upload-crashed.part");
    std::fs::write(&leftover, b"half an upload").unwrap();
    let _restarted = ws.server(&[]);
    assert!(!leftover.exists());
    assert!(ws.stored_names().is_empty());
}
