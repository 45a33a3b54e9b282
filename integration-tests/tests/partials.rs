//! Interrupted uploads kept for resume: counted in `info`, bounded per user (oldest removed
//! first), and listed and purged by the administrator.

use std::time::Duration;

use integration_tests::{
    begin_request, chunk_request, eventually, ftc, fts, ndjson, RawClient, Workspace,
};

static HALF: [u8; 256 * 1024] = [7; 256 * 1024];

/// Begins a 1 MiB upload named `name`, sends a quarter of it and vanishes.
async fn abandon_upload(server: &integration_tests::Server, name: &str) {
    let mut client = RawClient::handshake(server.addr).await;
    client.send(begin_request(1, name, 1 << 20)).await;
    client.send(chunk_request(&HALF)).await;
    drop(client);
}

/// `(partial_files, partial_bytes)` as `ftc info --json` reports them.
fn kept(ws: &Workspace, server: &integration_tests::Server) -> (u64, u64) {
    let info = ftc(&ws.src(), &["info", &server.address(), "--json"]);
    info.success();
    let event = ndjson(&info)
        .into_iter()
        .find(|event| event["event"] == "info")
        .expect("an info event");
    (
        event["partial_files"].as_u64().unwrap(),
        event["partial_bytes"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_are_counted_bounded_per_user_and_purged() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-partials-per-user", "3"]);
    for n in 0..5 {
        abandon_upload(&server, &format!("big{n}.bin")).await;
        // Each is written before the next begins (ages differ; the session ended).
        let written = eventually(Duration::from_secs(10), || {
            let (files, bytes) = kept(&ws, &server);
            files == (n + 1).min(3) && bytes == files * HALF.len() as u64
        });
        assert!(written, "after upload {n}: {:?}", kept(&ws, &server));
    }
    // The two oldest made room for the newest.
    assert_eq!(kept(&ws, &server), (3, 3 * HALF.len() as u64));
    assert!(server
        .log()
        .contains("removed the oldest interrupted upload"));
    let plain = ftc(&ws.src(), &["info", &server.address()]);
    assert!(
        plain
            .stdout
            .contains("kept for resume:  3 interrupted uploads, 786432 bytes"),
        "{plain}"
    );

    // The administrator sees them, with their owner, and purges them.
    let listed = fts(
        &ws.src(),
        &["--dir", ws.store_dir().to_str().unwrap(), "partials"],
    );
    listed.success();
    assert_eq!(
        listed
            .stdout
            .lines()
            .filter(|line| line.starts_with("tester "))
            .count(),
        3,
        "{listed}"
    );
    let dir = ws.store_dir();
    let purge = |filter: &[&str]| {
        let mut args = vec!["--dir", dir.to_str().unwrap(), "partials", "purge"];
        args.extend_from_slice(filter);
        let output = fts(&ws.src(), &args);
        output.success();
        output
    };
    for filter in [&["--older-than", "1h"][..], &["--user", "someone"]] {
        let untouched = purge(filter);
        assert!(
            untouched.stdout.contains("removed 0 interrupted uploads"),
            "{filter:?}: {untouched}"
        );
    }
    let purged = purge(&["--user", "tester"]);
    assert!(
        purged
            .stdout
            .contains("removed 3 interrupted uploads, 786432 bytes"),
        "{purged}"
    );
    assert_eq!(kept(&ws, &server), (0, 0));
    assert_eq!(ws.partial_bytes(), 0);
}
