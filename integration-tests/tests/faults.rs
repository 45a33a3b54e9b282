//! Faults on the way and hostile peers: cuts, flipped bytes, stalls, timeouts, connection
//! limits, write errors and space checks. Every other client carries on.

use std::{fs, time::Duration};

use ft_protocol::{
    ErrorCode, ErrorResponse, FileIntent, FilePlan, Hash, Prepare, Prepared, Request, Response,
};
use integration_tests::{
    eventually, ftc, listing,
    proxy::{Fault, FaultProxy},
    random_bytes, spawn_ftc, RawClient, Server, Workspace, TEST_USER,
};

const MIB: u64 = 1024 * 1024;

fn connection_error(response: Option<Response>) -> (ErrorCode, String) {
    match response {
        Some(Response::Error(ErrorResponse {
            id: None,
            code,
            message,
        })) => (code, message),
        other => panic!("expected a connection-level error, got {other:?}"),
    }
}

#[test]
fn cuts_at_several_offsets_resume_without_sending_the_prefix_again() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let size = 48 * MIB;
    let content = random_bytes(size as usize, 10);
    let path = ws.file("cut.bin", &content);
    // Each connection dies after this many bytes of its own; the fourth one is clean.
    let cuts = [8 * MIB, 12 * MIB, 16 * MIB];
    let proxy = FaultProxy::start(
        server.addr,
        cuts.iter().map(|&n| Fault::CutAfter(n)).collect(),
    );

    let output = ftc(&ws.src(), &["send", &proxy.address(), &path]);
    output.success();
    assert_eq!(fs::read(ws.recv().join("cut.bin")).unwrap(), content);
    assert_eq!(proxy.connections(), 4, "{output}");
    assert!(output.stdout.contains("3 retries"), "{output}");
    assert!(
        output.stdout.contains("resumed, not sent again"),
        "{output}"
    );

    // Without resume the wire would carry size + 36 MiB. With it, only the frames cut in
    // half (at most one chunk per cut) and protocol overhead travel twice.
    let wire = proxy.upstream_bytes();
    assert!(wire >= size, "{wire}");
    assert!(
        wire < size + 2 * MIB,
        "the prefix was sent again: {wire} bytes for a {size}-byte file"
    );
    assert_eq!(
        server.log().matches("resuming upload").count(),
        3,
        "{}",
        server.log()
    );
}

/// The byte is flipped in a TLS record carrying the file's content. TLS refuses the record
/// (its authentication tag no longer matches) and the server drops the connection mid-file,
/// keeping only what came before; the client resumes from there. (The end-to-end hash
/// catches what TLS cannot see, content that was wrong before it was sent: hostile.rs.)
#[test]
fn a_flipped_byte_is_caught_and_never_stored() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(16 * MIB as usize, 11);
    let path = ws.file("flip.bin", &content);
    // 5 MiB + 1000 lands inside a record of file content, well after the handshakes.
    let proxy = FaultProxy::start(server.addr, vec![Fault::FlipAt(5 * MIB + 1000)]);

    let output = ftc(&ws.src(), &["send", &proxy.address(), &path]);
    output.success();
    let log = server.log();
    assert!(
        log.contains(&format!(
            "client disconnected during '{TEST_USER}/flip.bin'"
        )),
        "the tampered record ends the connection: {log}"
    );
    assert!(log.contains("resuming upload"), "{log}");
    assert!(output.stdout.contains("1 retries"), "{output}");
    assert_eq!(
        ws.stored_names(),
        ["flip.bin"],
        "no corrupt copy under any name"
    );
    assert_eq!(fs::read(ws.recv().join("flip.bin")).unwrap(), content);
    assert_eq!(listing(&server, &ws.src()).len(), 1);
}

#[test]
fn retries_exhausted_fail_with_a_clear_message() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("doomed.bin", &random_bytes(4 * MIB as usize, 12));
    // The first connection makes progress; every later one dies before any file data, so
    // the retries in a row without progress run out.
    let mut faults = vec![Fault::CutAfter(MIB)];
    faults.extend([Fault::CutAfter(40); 10]);
    let proxy = FaultProxy::start(server.addr, faults);
    let output = ftc(
        &ws.src(),
        &["send", &proxy.address(), &path, "--retries", "2"],
    );
    output.expect_code(3);
    assert!(output.stderr.contains("ftc: error:"), "{output}");
    assert!(
        output.stdout.contains("0 of 1 file stored") && output.stdout.contains("2 retries"),
        "{output}"
    );
    assert_eq!(proxy.connections(), 3, "{output}");
    assert!(ws.stored_names().is_empty());
}

#[test]
fn a_stalled_link_hits_the_idle_timeout_and_the_client_resumes() {
    let ws = Workspace::new();
    let server = ws.server(&["--idle-timeout", "1s"]);
    let content = random_bytes(8 * MIB as usize, 13);
    let path = ws.file("stall.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![Fault::StallAfter(3 * MIB)]);
    let output = ftc(&ws.src(), &["send", &proxy.address(), &path]);
    output.success();
    assert!(server.log().contains("timed out"), "{}", server.log());
    assert_eq!(fs::read(ws.recv().join("stall.bin")).unwrap(), content);
}

#[tokio::test]
async fn silent_clients_are_cut_by_the_handshake_and_idle_timeouts() {
    let ws = Workspace::new();
    let server = ws.server(&["--handshake-timeout", "300ms", "--idle-timeout", "500ms"]);

    let mut mute = RawClient::connect(server.addr).await;
    let (code, _) = connection_error(mute.recv().await);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(mute.recv().await.is_none());

    let mut idle = RawClient::handshake(server.addr).await;
    let (code, message) = connection_error(idle.recv().await);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(message.contains("500ms"), "{message}");
    assert!(idle.recv().await.is_none());
}

#[tokio::test]
async fn clients_beyond_max_connections_are_told_busy_and_the_server_stays_up() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-connections", "2"]);
    // Both busy with an upload, so neither is a connection a full server would close for a
    // new one (see budgets.rs).
    let first = ws.upload_in_flight(server.addr, "held1.bin").await;
    let _second = ws.upload_in_flight(server.addr, "held2.bin").await;

    let mut third = RawClient::connect(server.addr).await;
    let (code, message) = connection_error(third.recv().await);
    assert_eq!(code, ErrorCode::Busy);
    assert!(message.contains("connection limit"), "{message}");

    drop(first);
    let admitted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut client = RawClient::connect(server.addr).await;
            client
                .send(Request::Hello(ft_protocol::Hello {
                    protocol_version: ft_protocol::PROTOCOL_VERSION,
                    software: "test".into(),
                    capabilities: vec![],
                }))
                .await;
            if let Some(Response::Welcome(_)) = client.recv().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(admitted.is_ok(), "a freed slot is given to the next client");
}

#[tokio::test]
async fn a_file_larger_than_the_free_space_is_refused_before_any_data() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-file-size", "16000000T"]);
    let mut client = RawClient::handshake(server.addr).await;
    let intents = vec![
        FileIntent::new("enormous.bin", 1 << 62, Hash([1; 32])),
        FileIntent::new("fine.bin", 10, Hash([2; 32])),
    ];
    client
        .send(Request::Prepare(Prepare {
            files: intents,
            append: false,
        }))
        .await;
    let Some(Response::Prepared(Prepared { plans })) = client.recv().await else {
        panic!("expected Prepared");
    };
    assert!(
        matches!(&plans[0], FilePlan::Refused { code: ErrorCode::NoSpace, message } if message.contains("free")),
        "{plans:?}"
    );
    assert_eq!(plans[1], FilePlan::Fresh);
    assert_eq!(
        ws.partial_entries(),
        0,
        "nothing was allocated for the refused file"
    );
}

#[tokio::test]
async fn pages_of_one_round_share_the_free_space() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-file-size", "16000000T"]);
    let mut client = RawClient::handshake(server.addr).await;
    client
        .send(Request::Info(ft_protocol::InfoRequest {}))
        .await;
    let Some(Response::ServerInfo(info)) = client.recv().await else {
        panic!("expected ServerInfo");
    };
    // Each fits alone; two do not.
    let size = info.free_bytes / 10 * 6;
    let intent = |n: u8| FileIntent::new(format!("big{n}.bin"), size, Hash([n; 32]));
    assert_eq!(plan(&mut client, intent(1), false).await, FilePlan::Fresh);
    let second = plan(&mut client, intent(2), true).await;
    assert!(
        matches!(
            &second,
            FilePlan::Refused {
                code: ErrorCode::NoSpace,
                ..
            }
        ),
        "the first page's file was promised that space: {second:?}"
    );
    // A new round starts from the free space again.
    assert_eq!(plan(&mut client, intent(3), false).await, FilePlan::Fresh);
}

/// Announces one file; returns the server's plan for it.
async fn plan(client: &mut RawClient, intent: FileIntent, append: bool) -> FilePlan {
    client
        .send(Request::Prepare(Prepare {
            files: vec![intent],
            append,
        }))
        .await;
    match client.recv().await {
        Some(Response::Prepared(Prepared { mut plans })) => plans.remove(0),
        other => panic!("expected Prepared, got {other:?}"),
    }
}

#[test]
fn a_write_error_fails_that_file_cleanly_and_the_server_serves_on() {
    let ws = Workspace::new();
    // 4096 blocks of 512 bytes: files beyond 2 MiB cannot be written.
    let server = Server::start_with_file_size_limit(&ws.store_dir(), 4096, &[]);
    let big = ws.file("too-big-for-disk.bin", &random_bytes(3 * MIB as usize, 14));
    let small = ws.file("small.txt", b"fits");
    let output = ftc(&ws.src(), &["send", &server.address(), &big, &small]);
    output.expect_code(1);
    assert!(
        output.stderr.contains("too-big-for-disk.bin") && output.stderr.contains("(storage)"),
        "{output}"
    );
    assert_eq!(ws.stored_names(), ["small.txt"]);
    assert!(
        eventually(Duration::from_secs(5), || ws.partial_entries() == 0),
        "the partial data is removed"
    );
    let again = ws.file("after.txt", b"still serving");
    ftc(&ws.src(), &["send", &server.address(), &again]).success();
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_then_exits_zero() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let content = random_bytes(16 * MIB as usize, 15);
    let path = ws.file("in-flight.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![Fault::Throttle(24 * MIB)]);
    let running = spawn_ftc(&ws.src(), &["send", &proxy.address(), &path]);
    assert!(eventually(Duration::from_secs(30), || ws.partial_bytes() > 2 * MIB));
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let output = running.finish();
    output.success();
    assert_eq!(fs::read(ws.recv().join("in-flight.bin")).unwrap(), content);
}

#[test]
fn an_upload_cut_by_the_shutdown_grace_is_kept_and_resumed_after_restart() {
    let ws = Workspace::new();
    let mut server = ws.server(&["--shutdown-grace", "200ms"]);
    let content = random_bytes(24 * MIB as usize, 16);
    let path = ws.file("graceless.bin", &content);
    let proxy = FaultProxy::start(server.addr, vec![Fault::Throttle(16 * MIB)]);
    let running = spawn_ftc(
        &ws.src(),
        &["send", &proxy.address(), &path, "--retries", "0"],
    );
    assert!(eventually(Duration::from_secs(30), || ws.partial_bytes() > 2 * MIB));
    assert!(server.terminate().success());
    let cut = running.finish();
    cut.expect_code(3);
    assert!(cut.stderr.contains("shutting down"), "{cut}");
    assert!(
        ws.partial_bytes() > 2 * MIB,
        "the partial upload is kept for resume"
    );

    let restarted = ws.server(&[]);
    let output = ftc(&ws.src(), &["send", &restarted.address(), &path]);
    output.success();
    assert!(
        output.stdout.contains("resumed, not sent again"),
        "{output}"
    );
    assert_eq!(fs::read(ws.recv().join("graceless.bin")).unwrap(), content);
}
