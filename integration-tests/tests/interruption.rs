//! A client or server that vanishes mid-file leaves nothing under the file's name; the bytes
//! that arrived are kept for resume, never listed, and swept after the TTL.

use std::{fs, time::Duration};

use bytes::Bytes;
use ft_protocol::{BeginFile, Chunk, ConflictPolicy, Hash, Request};
use integration_tests::{
    blake3_hex, eventually, ftc, listing,
    proxy::{Fault, FaultProxy},
    random_bytes, spawn_ftc, RawClient, Server, Workspace, TEST_USER,
};

/// Slow enough that a test can act mid-file, fast enough to finish in about a second.
const THROTTLE: Fault = Fault::Throttle(24 * 1024 * 1024);

#[test]
fn killing_ftc_mid_file_stores_nothing_and_sending_again_resumes() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(24 << 20, 1);
    let path = ws.file("big.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![THROTTLE]);
    let mut running = spawn_ftc(&ws.src(), &["send", &proxy.address(), &path]);
    assert!(
        eventually(Duration::from_secs(30), || ws.partial_bytes() > 4 << 20),
        "the upload never reached the server"
    );
    running.child.kill().unwrap();
    running.child.wait().unwrap();

    assert!(
        eventually(Duration::from_secs(10), || server.log().contains(&format!(
            "client disconnected during '{TEST_USER}/big.bin'"
        ))),
        "{}",
        server.log()
    );
    assert!(ws.stored_names().is_empty(), "{:?}", ws.stored_names());
    assert!(
        listing(&server, &ws.src()).is_empty(),
        "partial uploads are never listed"
    );
    let kept = ws.partial_bytes();
    assert!(kept > 4 << 20, "the received prefix is kept for resume");

    let output = ftc(&ws.src(), &["send", &server.address(), &path]);
    output.success();
    assert!(
        output.stdout.contains("resumed, not sent again"),
        "{output}"
    );
    assert!(server.log().contains("resuming upload"), "{}", server.log());
    assert_eq!(fs::read(ws.recv().join("big.bin")).unwrap(), content);
    assert_eq!(
        ws.partial_entries(),
        0,
        "a stored file leaves no partial behind"
    );
}

#[test]
fn a_file_changed_since_the_interruption_starts_over() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("doc.bin", &random_bytes(16 << 20, 2));
    let proxy = FaultProxy::start(server.addr, vec![THROTTLE]);
    let mut running = spawn_ftc(&ws.src(), &["send", &proxy.address(), &path]);
    assert!(eventually(Duration::from_secs(30), || ws.partial_bytes() > 2 << 20));
    running.child.kill().unwrap();
    running.child.wait().unwrap();

    let changed = random_bytes(16 << 20, 3);
    fs::write(&path, &changed).unwrap();
    let output = ftc(&ws.src(), &["send", &server.address(), &path]);
    output.success();
    assert!(!output.stdout.contains("resumed"), "{output}");
    assert_eq!(fs::read(ws.recv().join("doc.bin")).unwrap(), changed);
}

#[test]
fn a_tampered_kept_prefix_is_detected_and_the_upload_starts_over() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(16 << 20, 4);
    let path = ws.file("precious.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![THROTTLE]);
    let mut running = spawn_ftc(&ws.src(), &["send", &proxy.address(), &path]);
    assert!(eventually(Duration::from_secs(30), || ws.partial_bytes() > 2 << 20));
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    assert!(eventually(Duration::from_secs(10), || server
        .log()
        .contains("client disconnected")));

    // Rot one byte of what the server kept.
    let partial = ws.partial_files().into_iter().next().unwrap();
    let mut kept = fs::read(&partial).unwrap();
    kept[1000] ^= 0x01;
    fs::write(&partial, &kept).unwrap();

    let output = ftc(&ws.src(), &["send", &server.address(), &path]);
    output.success();
    assert!(
        !output.stdout.contains("resumed"),
        "the rotten prefix must not be used: {output}"
    );
    let stored = fs::read(ws.recv().join("precious.bin")).unwrap();
    assert_eq!(blake3_hex(&stored), blake3_hex(&content));
}

#[test]
fn server_killed_mid_transfer_and_restarted_the_same_ftc_resumes() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let address = server.addr;
    let content = random_bytes(32 << 20, 5);
    let path = ws.file("survivor.bin", &content);
    let proxy = FaultProxy::start(address, vec![THROTTLE]);
    let running = spawn_ftc(
        &ws.src(),
        &["send", &proxy.address(), &path, "--retries", "20"],
    );
    assert!(eventually(Duration::from_secs(30), || ws.partial_bytes() > 4 << 20));
    server.kill();
    let restarted = Server::start_on(&ws.store_dir(), &address.to_string(), &[]);

    let output = running.finish();
    output.success();
    assert!(output.stdout.contains("retries"), "{output}");
    assert!(
        output.stdout.contains("resumed, not sent again"),
        "{output}"
    );
    assert!(
        restarted.log().contains("resuming upload"),
        "{}",
        restarted.log()
    );
    assert_eq!(fs::read(ws.recv().join("survivor.bin")).unwrap(), content);
    assert_eq!(listing(&restarted, &ws.src()).len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_keeps_its_bytes_until_the_partial_ttl() {
    let ws = Workspace::new();
    let server = ws.server(&["--partial-ttl", "2s"]);
    let mut client = RawClient::handshake(server.addr).await;
    client
        .send(Request::BeginFile(BeginFile {
            modified_ns: None,
            id: 0,
            name: "abandoned.bin".into(),
            size: 1 << 20,
            conflict: ConflictPolicy::KeepBoth,
            key: Hash([9; 32]),
            offset: 0,
            prefix_hash: None,
        }))
        .await;
    client
        .send(Request::Chunk(Chunk {
            data: Bytes::from(vec![3u8; 4096]),
        }))
        .await;
    // The server buffers a little before writing; once the client is gone, what arrived is
    // written out and kept.
    drop(client);
    assert!(eventually(Duration::from_secs(10), || ws.partial_bytes() == 4096));
    assert!(listing(&server, &ws.src()).is_empty());
    assert!(
        eventually(Duration::from_secs(20), || ws.partial_entries() == 0),
        "the stale partial upload was not swept"
    );
    assert!(ws.stored_names().is_empty());
}
