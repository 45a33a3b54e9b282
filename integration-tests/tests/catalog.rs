//! The catalog records every file with its name, size, hash and time added, across restarts.

use std::time::{Duration, SystemTime};

use integration_tests::{blake3_hex, ftc, listing, Server, Workspace};

#[test]
fn list_shows_every_file_with_name_size_hash_and_time_added() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let before = SystemTime::now() - Duration::from_secs(1);
    let a = ws.file("alpha.txt", b"alpha");
    let b = ws.file("beta.bin", &[7u8; 4096]);
    ftc(&ws.src(), &["send", &server.address(), &a, &b]).success();

    let rows = listing(&server, &ws.src());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "alpha.txt");
    assert_eq!(rows[0]["size"], 5);
    assert_eq!(rows[0]["blake3"], blake3_hex(b"alpha").as_str());
    assert_eq!(rows[1]["name"], "beta.bin");
    assert_eq!(rows[1]["blake3"], blake3_hex(&[7u8; 4096]).as_str());
    for row in &rows {
        let added = humantime::parse_rfc3339(row["added_at"].as_str().unwrap()).unwrap();
        assert!(added >= before && added <= SystemTime::now(), "{row}");
        assert!(
            row["added_at"].as_str().unwrap().ends_with('Z'),
            "UTC: {row}"
        );
    }

    let human = ftc(&ws.src(), &["list", &server.address()]);
    human.success();
    let alpha_line = human
        .stdout
        .lines()
        .find(|line| line.ends_with("alpha.txt"))
        .unwrap();
    // For people: a short hash, human sizes, local time to the minute.
    assert!(alpha_line.contains(&blake3_hex(b"alpha")[..12]), "{human}");
    assert!(!alpha_line.contains(&blake3_hex(b"alpha")), "{human}");
    assert!(alpha_line.trim_start().starts_with("5 B"), "{human}");
    assert!(human.stdout.contains("2 files, 4.00 KiB"), "{human}");
    for line in human.stdout.lines() {
        assert!(line.chars().count() <= 80, "fits 80 columns: {line}");
    }
    // Exact values when asked.
    let exact = ftc(
        &ws.src(),
        &["list", &server.address(), "-b", "--long", "--utc"],
    );
    exact.success();
    assert!(exact.stdout.contains(&blake3_hex(b"alpha")), "{exact}");
    assert!(exact.stdout.contains("2 files, 4101 bytes"), "{exact}");
    assert!(exact.stdout.contains("MODIFIED"), "{exact}");
    // Sorted by size, largest last; a folder summary.
    let by_size = ftc(&ws.src(), &["list", &server.address(), "--sort", "size"]);
    let rows: Vec<&str> = by_size.stdout.lines().skip(1).take(2).collect();
    assert!(
        rows[0].ends_with("alpha.txt") && rows[1].ends_with("beta.bin"),
        "{by_size}"
    );
}

#[test]
fn the_catalog_survives_a_server_restart() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let file = ws.file("kept.txt", b"still here after a crash");
    ftc(&ws.src(), &["send", &server.address(), &file]).success();
    let before = listing(&server, &ws.src());
    server.kill();

    let restarted = Server::start(&ws.store_dir(), &[]);
    let after = listing(&restarted, &ws.src());
    assert_eq!(after, before);
    assert_eq!(after[0]["name"], "kept.txt");
    assert_eq!(
        after[0]["blake3"],
        blake3_hex(b"still here after a crash").as_str()
    );
}

#[test]
fn an_empty_catalog_lists_nothing() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    assert!(listing(&server, &ws.src()).is_empty());
    let human = ftc(&ws.src(), &["list", &server.address()]);
    human.success();
    assert!(human.stdout.contains("0 files, 0 B"), "{human}");
}
