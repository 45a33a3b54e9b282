//! Server-wide budgets: clients that hold the server's memory or threads (gets never read,
//! many connections streaming small files) stay within `--max-memory`, and the server keeps
//! serving everyone else.

use std::{
    fs,
    time::{Duration, Instant},
};

use ft_protocol::{Get, Request};
use integration_tests::{ftc, random_bytes, RawClient, Workspace};

/// Samples the server's resident memory (KiB) every few milliseconds while `work` runs and
/// returns the peak, with `work`'s result.
fn peak_rss_during<T>(server: &integration_tests::Server, work: impl FnOnce() -> T) -> (u64, T) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            let started = Instant::now();
            // Bounded in time whatever `work` does.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                peak = peak.max(server.status_field("VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let result = work();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sampler.join().unwrap(), result)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_that_are_never_read_hold_neither_threads_nor_memory() {
    const CLIENTS: usize = 100;
    let ws = Workspace::new();
    let server = ws.server(&["--max-connections-per-address", "200"]);
    let big = random_bytes(16 << 20, 1);
    let path = ws.file("big.bin", &big);
    ftc(&ws.src(), &["send", &server.address(), &path]).all_stored(1);
    let baseline = server.status_field("VmRSS").unwrap();
    let baseline_threads = server.status_field("Threads").unwrap();

    // Each asks for the 16 MiB file and never reads a byte of the answer.
    let mut silent = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = RawClient::handshake(server.addr).await;
        client
            .send(Request::Get(Get {
                name: "big.bin".into(),
                offset: 0,
                prefix_hash: None,
            }))
            .await;
        silent.push(client);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss = server.status_field("VmRSS").unwrap();
    let threads = server.status_field("Threads").unwrap();
    // Before the budget: a reader thread and 2 MiB of read-ahead per download (about 290 MB
    // and over 100 threads for 100 of them); now at most two chunks each, and no thread.
    assert!(
        rss < baseline + 96 * 1024,
        "{CLIENTS} unread downloads grew the server from {baseline} KiB to {rss} KiB"
    );
    assert!(
        threads < baseline_threads + 20,
        "{threads} threads for {CLIENTS} unread downloads, {baseline_threads} before them"
    );

    // Everyone else is still served, including a download.
    let out = ws.root.path().join("out");
    fs::create_dir(&out).unwrap();
    let small = ws.file("small.txt", b"still served");
    ftc(&ws.src(), &["send", &server.address(), &small]).all_stored(1);
    ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "small.txt",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(fs::read(out.join("small.txt")).unwrap(), b"still served");
    drop(silent);
}

#[test]
fn many_connections_streaming_small_files_stay_within_the_memory_budget() {
    const CLIENTS: usize = 20;
    const FILES: usize = 96;
    let ws = Workspace::new();
    // The working sets of 20 connections (30 MiB) and 10 MiB to gather small files in.
    let server = ws.server(&["--max-memory", "40M"]);
    for client in 0..CLIENTS {
        let folder = ws.src().join(format!("c{client}"));
        fs::create_dir(&folder).unwrap();
        for file in 0..FILES {
            let seed = (client * FILES + file) as u64;
            fs::write(
                folder.join(format!("f{file}.bin")),
                random_bytes(64 * 1024, seed),
            )
            .unwrap();
        }
    }
    let baseline = server.status_field("VmRSS").unwrap();
    let (peak, outputs) = peak_rss_during(&server, || {
        let running: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let folder = ws.src().join(format!("c{client}"));
                integration_tests::spawn_ftc(
                    &ws.src(),
                    &["send", &server.address(), folder.to_str().unwrap()],
                )
            })
            .collect();
        running
            .into_iter()
            .map(|ftc| ftc.finish())
            .collect::<Vec<_>>()
    });
    for output in &outputs {
        output.all_stored(FILES);
    }
    assert_eq!(ws.stored_names().len(), CLIENTS * FILES);
    // Each connection could hold three groups of 8 MiB of small files, 480 MiB for 20 when
    // commits are slow; now small files past the budget stream through the disk instead.
    // (The bound is loose: frame buffers, threads and the allocator's slack come on top;
    // 92-150 MiB were measured.)
    assert!(
        peak < baseline + 256 * 1024,
        "{CLIENTS} clients of 64 KiB files grew the server from {baseline} KiB to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_memory_budget_are_told_busy_and_admitted_once_it_frees() {
    let ws = Workspace::new();
    // Room for the working sets of three connections (1.5 MiB each; a quarter of the budget
    // is kept for small files and resume offers).
    let server = ws.server(&["--max-memory", "6M"]);
    // Each busy with an upload, so none is closed to make room (see below).
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(
            ws.upload_in_flight(server.addr, &format!("held{n}.bin"))
                .await,
        );
    }
    let refused = ftc(&ws.src(), &["info", &server.address()]);
    assert_ne!(refused.code(), Some(0), "{refused}");
    assert!(
        refused.stderr.contains("memory limit"),
        "the refusal names the memory limit: {refused}"
    );
    assert!(server.log().contains("memory budget spent"));
    held.pop();
    let admitted = integration_tests::eventually(Duration::from_secs(10), || {
        ftc(&ws.src(), &["info", &server.address()]).code() == Some(0)
    });
    assert!(admitted, "a freed working set admits the next connection");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_closes_its_longest_idle_connection_for_a_new_client() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-connections", "4"]);
    // Two logged-in sessions that send nothing more, and two sockets that never even start
    // TLS: every slot taken.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(RawClient::handshake(server.addr).await);
    }
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Each new client takes the slot of the connection idle the longest: the four above, in
    // turn, and then the newcomers themselves.
    let mut newcomers = Vec::new();
    for _ in 0..4 {
        newcomers.push(RawClient::handshake(server.addr).await);
    }
    let path = ws.file("late.txt", b"a late file");
    ftc(&ws.src(), &["send", &server.address(), &path]).all_stored(1);
    // The logged-in ones were told why.
    for mut client in idle {
        match client.recv().await {
            Some(ft_protocol::Response::Error(error)) => {
                assert_eq!(error.code, ft_protocol::ErrorCode::Busy);
                assert!(error.message.contains("idle"), "{}", error.message);
            }
            other => panic!("expected a busy error, got {other:?}"),
        }
    }
    assert!(server.log().contains("idle connection closed"));
    assert!(server.log().contains("evicted during its handshake"));
    drop((silent, newcomers));
}
