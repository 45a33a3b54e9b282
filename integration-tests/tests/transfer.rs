//! Content arrives byte for byte: boundary sizes, 100 MiB, many files, many clients.

use std::{fs, thread};

use ft_protocol::CHUNK_SIZE;
use integration_tests::{blake3_hex, ftc, listing, random_bytes, spawn_ftc, Workspace};

/// Sizes around the chunk boundary, where off-by-one errors live.
const BOUNDARY_SIZES: [usize; 7] = [
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE,
    3 * CHUNK_SIZE + 7,
];

#[test]
fn boundary_sizes_arrive_identical_with_matching_hashes() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut args = vec!["send".to_owned(), server.address()];
    let mut expected = Vec::new();
    for (seed, size) in BOUNDARY_SIZES.into_iter().enumerate() {
        let name = format!("size-{size}.bin");
        let content = random_bytes(size, seed as u64);
        args.push(ws.file(&name, &content));
        expected.push((name, content));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ftc(&ws.src(), &args);
    output.success();
    assert!(
        output.stdout.contains("7 of 7 files stored") && output.stdout.contains("all 7 verified"),
        "{output}"
    );

    let listed = listing(&server, &ws.src());
    for (name, content) in &expected {
        let stored = fs::read(ws.recv().join(name)).unwrap();
        assert!(stored == *content, "{name} differs from what was sent");
        let hash = blake3_hex(content);
        assert!(
            output.stdout.contains(&format!(
                "stored {name} ({} bytes, blake3 {hash})",
                content.len()
            )),
            "{output}"
        );
        let entry = listed.iter().find(|e| e["name"] == name.as_str()).unwrap();
        assert_eq!(entry["blake3"], hash.as_str());
        assert_eq!(entry["size"], content.len());
    }
    assert_eq!(ws.partial_entries(), 0);
}

#[test]
fn hundred_mib_of_random_bytes_arrive_identical() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(100 * 1024 * 1024, 42);
    let path = ws.file("random.bin", &content);
    let output = ftc(&ws.src(), &["send", &server.address(), &path]);
    output.success();
    let hash = blake3_hex(&content);
    assert!(output.stdout.contains(&hash), "{output}");
    let stored = fs::read(ws.recv().join("random.bin")).unwrap();
    assert_eq!(stored.len(), content.len());
    assert!(stored == content, "stored bytes differ");
    assert_eq!(blake3_hex(&stored), hash);
}

#[test]
fn many_files_in_one_call_all_land() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let count = 300;
    let mut args = vec![
        "send".to_owned(),
        server.address(),
        "--no-progress".to_owned(),
    ];
    for i in 0..count {
        args.push(ws.file(
            &format!("f{i:03}.txt"),
            format!("file number {i}\n").as_bytes(),
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ftc(&ws.src(), &args);
    output.all_stored(count);
    let names = ws.stored_names();
    assert_eq!(names.len(), count);
    for i in [0, 150, count - 1] {
        let text = fs::read_to_string(ws.recv().join(format!("f{i:03}.txt"))).unwrap();
        assert_eq!(text, format!("file number {i}\n"));
    }
    assert_eq!(listing(&server, &ws.src()).len(), count);
}

/// Long names fill a `Prepare` page (half a frame) long before its file count: 1200 files
/// of about 450 bytes of name each need two pages, sent back to back in one round.
#[test]
fn a_round_of_several_prepare_pages_all_lands() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let folder = format!("d{}", "x".repeat(200));
    let count = 1200;
    fs::create_dir(ws.src().join(&folder)).unwrap();
    let name = |i: usize| format!("{folder}/f{i:04}{}", "y".repeat(200));
    let per_intent: usize = name(0).len() + 48;
    assert!(
        per_intent * count > ft_protocol::MAX_FRAME_LEN / 2,
        "two pages"
    );
    for i in 0..count {
        ws.file(&name(i), format!("file {i}").as_bytes());
    }
    let src = ws.src().join(&folder);
    let output = ftc(
        &ws.src(),
        &[
            "send",
            &server.address(),
            src.to_str().unwrap(),
            "--no-progress",
        ],
    );
    output.all_stored(count);
    assert_eq!(ws.stored_names().len(), count);
    for i in [0, 600, count - 1] {
        let text = fs::read_to_string(ws.recv().join(name(i))).unwrap();
        assert_eq!(text, format!("file {i}"));
    }
}

#[test]
fn twenty_clients_at_once_all_land_intact() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let clients = 20;
    let mut expected = Vec::new();
    let mut running = Vec::new();
    for client in 0..clients {
        let mut paths = Vec::new();
        for part in 0..2 {
            let name = format!("client{client:02}-part{part}.bin");
            let content = random_bytes(
                37_000 * (client + 1) + part * 300_000,
                (client * 2 + part) as u64,
            );
            paths.push(ws.file(&name, &content));
            expected.push((name, content));
        }
        let mut args = vec!["send", "--no-progress"];
        let address = server.address();
        let args_owned: Vec<String> = std::iter::once(address).chain(paths).collect();
        args.extend(args_owned.iter().map(String::as_str));
        running.push(spawn_ftc(&ws.src(), &args));
    }
    let outputs: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = running
            .into_iter()
            .map(|run| scope.spawn(move || run.finish()))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    for output in &outputs {
        output.success();
    }
    assert_eq!(ws.stored_names().len(), clients * 2);
    for (name, content) in &expected {
        let stored = fs::read(ws.recv().join(name)).unwrap();
        assert!(stored == *content, "{name} differs");
    }
    assert_eq!(listing(&server, &ws.src()).len(), clients * 2);
}
