//! Untrusted input: hostile names, protocol violations and bad hashes never write outside
//! DIR, never store unverified data, and never stop the server serving others.

use std::{collections::BTreeSet, fs, path::Path};

use bytes::Bytes;
use ft_protocol::{
    Authenticate, BeginFile, Chunk, ConflictPolicy, ErrorCode, ErrorResponse, Hash, Hello, Request,
    Response, PROTOCOL_VERSION,
};
use integration_tests::{
    begin_request, chunk_request, end_request, ftc, listing, RawClient, Workspace,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every path under `root`, relative, for before/after comparisons.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out
}

fn expect_file_error(response: Option<Response>, id: u32, code: ErrorCode) -> String {
    match response {
        Some(Response::Error(ErrorResponse {
            id: Some(got),
            code: got_code,
            message,
        })) if got == id && got_code == code => message,
        other => panic!("expected {code} for file {id}, got {other:?}"),
    }
}

fn expect_connection_error(response: Option<Response>, code: ErrorCode) -> String {
    match response {
        Some(Response::Error(ErrorResponse {
            id: None,
            code: got,
            message,
        })) if got == code => message,
        other => panic!("expected connection error {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_names_are_refused_and_nothing_is_written_outside_dir() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let outside_marker = format!("ft-escape-{}", std::process::id());
    let absolute = format!("/tmp/{outside_marker}-abs");
    let long_component = "x".repeat(300);
    let hostile = [
        format!("../{outside_marker}"),
        format!("../../{outside_marker}"),
        absolute.clone(),
        format!("a/../../{outside_marker}"),
        String::new(),
        "nul\0byte".to_owned(),
        "new\nline".to_owned(),
        ".fts/catalog.db".to_owned(),
        ".fts".to_owned(),
        "..".to_owned(),
        ".".to_owned(),
        "dir/".to_owned(),
        "a//b".to_owned(),
        "..\\..\\windows".to_owned(),
        long_component,
    ];
    let root = ws.root.path().to_path_buf();
    let before = tree(&root);

    let mut client = RawClient::handshake(server.addr).await;
    for (id, name) in hostile.iter().enumerate() {
        let id = id as u32;
        client.send(begin_request(id, name, 5)).await;
        client.send(chunk_request(b"pwned")).await;
        client.send(end_request(b"pwned")).await;
        let message = expect_file_error(client.recv().await, id, ErrorCode::InvalidName);
        assert!(message.contains("refused"), "{message}");
    }
    // The session is still usable after the refusals.
    client.send(begin_request(99, "fine.txt", 2)).await;
    client.send(chunk_request(b"ok")).await;
    client.send(end_request(b"ok")).await;
    assert!(
        matches!(client.recv().await, Some(Response::Ack(ack)) if ack.id == 99 && ack.stored_name == "fine.txt")
    );
    drop(client);

    // The one good file lands in the user's namespace, which it may have created.
    let relative = |path: &Path| path.strip_prefix(&root).unwrap().display().to_string();
    let (namespace, fine) = (relative(&ws.recv()), relative(&ws.recv().join("fine.txt")));
    let mut after = tree(&root);
    after.retain(|path| *path != namespace && *path != fine && !path.ends_with(".log"));
    let mut before = before;
    before.retain(|path| *path != namespace && !path.ends_with(".log"));
    // Only the catalog's own files may change inside .fts.
    after.retain(|path| !path.starts_with("recv/.fts/catalog.db"));
    before.retain(|path| !path.starts_with("recv/.fts/catalog.db"));
    assert_eq!(after, before, "the tree changed beyond the one good file");
    assert!(!Path::new(&absolute).exists());
    assert!(!root.parent().unwrap().join(&outside_marker).exists());
    assert_eq!(ws.stored_names(), ["fine.txt"]);
    assert_eq!(listing(&server, &ws.src()).len(), 1);
}

#[tokio::test]
async fn nested_names_create_folders_inside_dir() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin_request(1, "photos/2024/ça.jpg", 3)).await;
    client.send(chunk_request(b"jpg")).await;
    client.send(end_request(b"jpg")).await;
    assert!(
        matches!(client.recv().await, Some(Response::Ack(ack)) if ack.stored_name == "photos/2024/ça.jpg")
    );
    assert_eq!(
        fs::read(ws.recv().join("photos/2024/ça.jpg")).unwrap(),
        b"jpg"
    );
}

#[tokio::test]
async fn a_wrong_hash_stores_nothing() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin_request(1, "tampered.bin", 5)).await;
    client.send(chunk_request(b"hello")).await;
    client.send(end_request(b"HELLO")).await;
    let message = expect_file_error(client.recv().await, 1, ErrorCode::HashMismatch);
    assert!(message.contains("nothing was stored"), "{message}");
    // The connection stays usable.
    client.send(begin_request(2, "tampered.bin", 5)).await;
    client.send(chunk_request(b"hello")).await;
    client.send(end_request(b"hello")).await;
    assert!(matches!(client.recv().await, Some(Response::Ack(ack)) if ack.id == 2));
    assert_eq!(ws.stored_names(), ["tampered.bin"]);
    assert_eq!(fs::read(ws.recv().join("tampered.bin")).unwrap(), b"hello");
    assert_eq!(ws.partial_entries(), 0);
}

#[tokio::test]
async fn a_version_mismatch_is_named_on_both_sides() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(Request::Hello(Hello {
            protocol_version: 99,
            software: "from the future".into(),
            capabilities: vec![],
        }))
        .await;
    let message = expect_connection_error(client.recv().await, ErrorCode::VersionMismatch);
    let expected =
        format!("client speaks protocol version 99, this server speaks {PROTOCOL_VERSION}");
    assert!(message.contains(&expected), "{message}");
    assert!(
        client.recv().await.is_none(),
        "the server closes after a mismatch"
    );
}

#[tokio::test]
async fn protocol_violations_close_only_the_offending_connection() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let bystander_file = ws.file("bystander.txt", b"unaffected");

    // Chunk without BeginFile.
    let mut client = RawClient::handshake(server.addr).await;
    client.send(chunk_request(b"orphan")).await;
    expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);
    assert!(client.recv().await.is_none());

    // EndFile without BeginFile.
    let mut client = RawClient::handshake(server.addr).await;
    client.send(end_request(b"")).await;
    expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);

    // More bytes than declared.
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin_request(1, "liar.bin", 2)).await;
    client.send(chunk_request(b"three")).await;
    let message = expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);
    assert!(message.contains("more than"), "{message}");

    // Fewer bytes than declared.
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin_request(1, "short.bin", 10)).await;
    client.send(chunk_request(b"abc")).await;
    client.send(end_request(b"abc")).await;
    expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);

    // A relay request while an upload is open: it would pin the upload for as long as it
    // lasts.
    for relay in [
        Request::Listen(ft_protocol::relay::Listen { blocked: vec![] }),
        Request::Offer(integration_tests::relay::one_file_for_bob("x.txt", 3)),
    ] {
        let mut client = RawClient::handshake(server.addr).await;
        client.send(begin_request(1, "open.bin", 10)).await;
        client.send(chunk_request(b"abc")).await;
        client.send(relay).await;
        let message = expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);
        assert!(message.contains("upload is open"), "{message}");
    }

    // A first message that is not Hello.
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(Request::List(ft_protocol::List { pattern: None }))
        .await;
    expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);

    // A huge length prefix followed by garbage: refused from the prefix.
    let mut raw = RawClient::tls(server.addr).await;
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        raw.read_to_end(&mut reply),
    )
    .await;
    assert!(read.is_ok(), "the server must close the connection");
    let payload = reply.get(4..).unwrap_or_default();
    let response: Response = ft_protocol::codec::decode(payload).unwrap();
    assert!(
        matches!(
            response,
            Response::Error(ErrorResponse {
                code: ErrorCode::ProtocolViolation,
                ..
            })
        ),
        "{response:?}"
    );

    // Garbage bytes in a well-sized frame.
    let mut raw = RawClient::tls(server.addr).await;
    raw.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        raw.read_to_end(&mut reply),
    )
    .await;
    assert!(reply.len() > 4, "an error is sent before closing");

    // Everyone else is still served.
    ftc(&ws.src(), &["send", &server.address(), &bystander_file]).success();
    assert_eq!(ws.stored_names(), ["bystander.txt"]);
    assert_eq!(ws.partial_entries(), 0);
}

/// A client that streams on after breaking a rule still reads why the server hung up: the
/// server drains what the client sent rather than close on unread bytes, which makes the
/// kernel reset the connection (the client's read fails, and answers still in flight on a
/// slow link are lost).
#[tokio::test]
async fn the_error_reaches_a_client_that_keeps_sending() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let frame = |request: &Request| {
        let payload = ft_protocol::codec::encode(request).unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend(payload);
        frame
    };
    let hello = Request::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        software: "test".into(),
        capabilities: Vec::new(),
    });
    let login = Request::Authenticate(Authenticate {
        credentials: Some(server.credentials()),
    });
    // Hello, Authenticate, a chunk without BeginFile (a violation), then 8 MiB more: more
    // than the socket buffers hold, so the client is still writing when the server gives up
    // on it.
    let mut bytes = frame(&hello);
    bytes.extend(frame(&login));
    bytes.extend(frame(&chunk_request(b"orphan")));
    let filler = frame(&Request::Chunk(Chunk {
        data: Bytes::from(vec![7; 256 * 1024]),
    }));
    for _ in 0..32 {
        bytes.extend_from_slice(&filler);
    }
    let mut stream = RawClient::tls(server.addr).await;
    let written = stream.write_all(&bytes).await;
    assert!(
        written.is_ok(),
        "the server reset the connection: {written:?}"
    );
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut reply),
    )
    .await
    .expect("the server closes the connection");
    assert!(read.is_ok(), "closed with a reset: {read:?}");
    let mut responses = Vec::new();
    let mut rest = &reply[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        responses.push(ft_protocol::codec::decode::<Response>(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    assert!(
        matches!(responses[0], Response::Welcome(_)),
        "{responses:?}"
    );
    assert!(
        matches!(responses.get(1), Some(Response::Authenticated(_))),
        "{responses:?}"
    );
    assert!(
        matches!(
            responses.get(2),
            Some(Response::Error(ErrorResponse {
                code: ErrorCode::ProtocolViolation,
                ..
            }))
        ),
        "{responses:?}"
    );
}

#[test]
fn files_over_the_size_limit_are_refused_while_others_land() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-file-size", "1K"]);
    let small = ws.file("small.txt", b"fits");
    let big = ws.file("big.bin", &[1u8; 5000]);
    let after = ws.file("after.txt", b"also fits");
    let output = ftc(
        &ws.src(),
        &["send", &server.address(), &small, &big, &after],
    );
    output.expect_code(1);
    assert!(
        output.stderr.contains("big.bin") && output.stderr.contains("too-large"),
        "{output}"
    );
    // Said once, as it happened, even with -q.
    assert_eq!(
        output.stderr.matches("not stored: big.bin").count(),
        1,
        "{output}"
    );
    assert!(output.stdout.contains("2 of 3 files stored"), "{output}");
    let quiet = ftc(&ws.src(), &["send", &server.address(), &big, "-q"]);
    quiet.expect_code(1);
    assert!(quiet.stderr.contains("not stored: big.bin"), "{quiet}");
    assert_eq!(ws.stored_names(), ["after.txt", "small.txt"]);
}

#[tokio::test]
async fn answers_keep_the_order_files_were_begun_even_when_a_later_one_fails() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut client = RawClient::handshake(server.addr).await;
    // Pipelined, as ftc does: the good file is still waiting for its group commit when the
    // bad one is judged.
    client.send(begin_request(1, "good.txt", 4)).await;
    client.send(chunk_request(b"good")).await;
    client.send(end_request(b"good")).await;
    client.send(begin_request(2, "bad.txt", 3)).await;
    client.send(chunk_request(b"bad")).await;
    client.send(end_request(b"BAD")).await;
    assert!(
        matches!(client.recv().await, Some(Response::Ack(ack)) if ack.id == 1),
        "the first file is answered first"
    );
    expect_file_error(client.recv().await, 2, ErrorCode::HashMismatch);
    assert_eq!(ws.stored_names(), ["good.txt"]);
}

fn prepare(names: impl Iterator<Item = String>, append: bool) -> Request {
    Request::Prepare(ft_protocol::Prepare {
        files: names
            .map(|name| {
                let key = Hash::from(blake3::hash(name.as_bytes()));
                ft_protocol::FileIntent::new(name, 1, key)
            })
            .collect(),
        append,
    })
}

fn plans(response: Option<Response>) -> usize {
    match response {
        Some(Response::Prepared(prepared)) => prepared.plans.len(),
        other => panic!("expected Prepared, got {other:?}"),
    }
}

#[tokio::test]
async fn announcements_add_up_within_a_round_and_are_bounded() {
    use ft_protocol::{MAX_ANNOUNCED_FILES, MAX_PREPARE_FILES};
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let page = |start: usize| (start..start + MAX_PREPARE_FILES).map(|n| format!("f{n}"));
    let pages = MAX_ANNOUNCED_FILES / MAX_PREPARE_FILES;

    // A full round is accepted page by page; a new round (append: false) starts afresh.
    let mut client = RawClient::handshake(server.addr).await;
    for number in 0..pages {
        client
            .send(prepare(page(number * MAX_PREPARE_FILES), number > 0))
            .await;
        assert_eq!(plans(client.recv().await), MAX_PREPARE_FILES);
    }
    client.send(prepare(page(0), false)).await;
    assert_eq!(plans(client.recv().await), MAX_PREPARE_FILES);

    // One page too many in a round is a violation: the server's memory stays bounded.
    for number in 1..pages {
        client
            .send(prepare(page(number * MAX_PREPARE_FILES), true))
            .await;
        assert_eq!(plans(client.recv().await), MAX_PREPARE_FILES);
    }
    client
        .send(prepare(page(pages * MAX_PREPARE_FILES), true))
        .await;
    let message = expect_connection_error(client.recv().await, ErrorCode::ProtocolViolation);
    assert!(message.contains("announced"), "{message}");

    // Files announced on the first page of a round are still announced after the second:
    // both upload in one stream.
    let mut client = RawClient::handshake(server.addr).await;
    client
        .send(prepare(["a.txt".to_owned()].into_iter(), false))
        .await;
    assert_eq!(plans(client.recv().await), 1);
    client
        .send(prepare(["b.txt".to_owned()].into_iter(), true))
        .await;
    assert_eq!(plans(client.recv().await), 1);
    for (id, name) in [(1, "a.txt"), (2, "b.txt")] {
        client
            .send(Request::BeginFile(BeginFile {
                modified_ns: None,
                id,
                name: name.to_owned(),
                size: 1,
                conflict: ConflictPolicy::KeepBoth,
                key: Hash::from(blake3::hash(name.as_bytes())),
                offset: 0,
                prefix_hash: None,
            }))
            .await;
        client.send(chunk_request(b"x")).await;
        client.send(end_request(b"x")).await;
    }
    for id in [1, 2] {
        match client.recv().await {
            Some(Response::Ack(ack)) => assert_eq!(ack.id, id),
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
    assert_eq!(ws.stored_names(), ["a.txt", "b.txt"]);
}
