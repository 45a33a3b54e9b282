//! The full file service end to end: get, rm, info, list patterns, folder trees, NDJSON.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use integration_tests::{
    blake3_hex, eventually, ftc, listing, ndjson,
    proxy::{Fault, FaultProxy},
    random_bytes, spawn_ftc, Server, Workspace,
};

/// Every regular file under `root` (relative name -> content) and every folder (name -> empty).
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if name.starts_with(".fts") || name.contains(".ftc-") {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                out.insert(name, None);
                stack.push(path);
            } else if kind.is_file() {
                out.insert(name, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

#[test]
fn get_downloads_verified_files_and_never_overwrites_without_force() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let big = random_bytes(3 << 20, 40);
    let a = ws.file("a.bin", &big);
    let b = ws.file("b.txt", b"bee");
    ftc(&ws.src(), &["send", &server.address(), &a, &b]).success();

    let out = ws.root.path().join("out");
    let output = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "a.bin",
            "b.txt",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    output.success();
    assert!(
        output.stdout.contains("2 of 2 files saved") && output.stdout.contains("all 2 verified"),
        "{output}"
    );
    assert_eq!(fs::read(out.join("a.bin")).unwrap(), big);
    assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"bee");

    fs::write(out.join("b.txt"), b"local edit").unwrap();
    let refused = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "b.txt",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    refused.expect_code(1);
    assert!(refused.stderr.contains("exists; use --force"), "{refused}");
    assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"local edit");

    ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "b.txt",
            "-o",
            out.to_str().unwrap(),
            "--force",
        ],
    )
    .success();
    assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"bee");

    let missing = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "nope.txt",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("no stored file named") && missing.stderr.contains("not-found"),
        "{missing}"
    );
}

#[test]
fn a_corrupted_stored_file_is_detected_on_get_and_not_saved() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("rot.bin", &random_bytes(1 << 20, 41));
    ftc(&ws.src(), &["send", &server.address(), &path]).success();
    let stored = ws.recv().join("rot.bin");
    let mut bytes = fs::read(&stored).unwrap();
    bytes[12345] ^= 0x40;
    fs::write(&stored, &bytes).unwrap();

    let out = ws.root.path().join("out");
    let output = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "rot.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    output.expect_code(1);
    assert!(
        output.stderr.contains("hash-mismatch") && output.stderr.contains("nothing was saved"),
        "{output}"
    );
    assert!(!out.join("rot.bin").exists(), "never under the final name");
    assert!(
        !out.join(".rot.bin.ftc-part").exists(),
        "the bad bytes are not kept"
    );
}

#[test]
fn an_interrupted_download_resumes_from_its_partial_file() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(24 << 20, 42);
    let path = ws.file("large.bin", &content);
    ftc(&ws.src(), &["send", &server.address(), &path]).success();

    let out = ws.root.path().join("out");
    let partial = out.join(".large.bin.ftc-part");
    let proxy = FaultProxy::start(server.addr, vec![Fault::ThrottleDown(24 << 20)]);
    let mut running = spawn_ftc(
        &ws.src(),
        &[
            "get",
            &proxy.address(),
            "large.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let caught = eventually(Duration::from_secs(30), || {
        fs::metadata(&partial)
            .map(|m| m.len() > 4 << 20)
            .unwrap_or(false)
    });
    assert!(caught, "the download never started");
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    assert!(
        !out.join("large.bin").exists(),
        "never under the final name while incomplete"
    );

    let output = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "large.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    output.success();
    assert!(
        output.stdout.contains("resumed, not downloaded again"),
        "{output}"
    );
    assert_eq!(fs::read(out.join("large.bin")).unwrap(), content);
    assert!(!partial.exists());
}

#[test]
fn rm_deletes_files_and_records_and_names_unknown_ones() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let a = ws.file("a.txt", b"a");
    let b = ws.file("b.txt", b"b");
    ftc(&ws.src(), &["send", &server.address(), &a, &b]).success();

    let output = ftc(&ws.src(), &["rm", &server.address(), "a.txt", "ghost.txt"]);
    output.expect_code(1);
    assert!(output.stdout.contains("deleted a.txt"), "{output}");
    assert!(
        output.stderr.contains("ghost.txt") && output.stderr.contains("no stored file named"),
        "{output}"
    );
    assert_eq!(ws.stored_names(), ["b.txt"]);
    let names: Vec<_> = listing(&server, &ws.src())
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["b.txt"]);

    let json = ftc(&ws.src(), &["rm", &server.address(), "b.txt", "--json"]);
    json.success();
    let lines = ndjson(&json);
    assert_eq!(lines[0]["event"], "deleted");
    assert_eq!(lines[0]["name"], "b.txt");
    assert_eq!(lines[1]["event"], "summary");
    assert_eq!(lines[1]["deleted"], 1);
    assert!(ws.stored_names().is_empty());
}

#[test]
fn info_reports_real_numbers() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-file-size", "5G", "--max-connections", "17"]);
    let a = ws.file("a.bin", &random_bytes(1000, 43));
    let b = ws.file("b.bin", &random_bytes(2345, 44));
    ftc(&ws.src(), &["send", &server.address(), &a, &b]).success();

    let output = ftc(&ws.src(), &["info", &server.address(), "--json"]);
    output.success();
    let info = &ndjson(&output)[0];
    assert_eq!(info["files"], 2);
    assert_eq!(info["bytes"], 3345);
    assert_eq!(info["max_file_size"], 5u64 << 30);
    assert_eq!(info["max_connections"], 17);
    assert_eq!(info["protocol_version"], ft_protocol::PROTOCOL_VERSION);
    assert!(info["free_bytes"].as_u64().unwrap() > 0);
    assert!(info["software"].as_str().unwrap().starts_with("fts "));

    let text = ftc(&ws.src(), &["info", &server.address()]);
    text.success();
    assert!(text.stdout.contains("files stored:     2"), "{text}");
    assert!(text.stdout.contains("max connections:  17"), "{text}");
}

#[test]
fn folder_trees_arrive_identical_with_empty_folders_and_unicode_names() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let root = ws.src().join("projet été");
    fs::create_dir_all(root.join("docs/brouillons")).unwrap();
    fs::create_dir_all(root.join("vide/encore plus vide")).unwrap();
    fs::create_dir_all(root.join("データ")).unwrap();
    fs::write(root.join("README.md"), b"# hello").unwrap();
    fs::write(
        root.join("docs/rapport final.pdf"),
        random_bytes(300_000, 45),
    )
    .unwrap();
    fs::write(root.join("docs/brouillons/v1.txt"), b"draft").unwrap();
    fs::write(root.join("データ/表.csv"), b"a,b\n1,2\n").unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    let outside = ws.root.path().join("outside-secret");
    fs::write(&outside, b"must not travel").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link-out")).unwrap();

    let output = ftc(
        &ws.src(),
        &["send", &server.address(), root.to_str().unwrap()],
    );
    output.success();
    assert!(
        output.stderr.contains("skipped") && output.stderr.contains("link-out"),
        "{output}"
    );
    assert!(output.stdout.contains("5 of 5 files stored"), "{output}");

    let mut expected = tree(&ws.src());
    expected.retain(|name, _| name.starts_with("projet été"));
    expected.remove("projet été/link-out");
    let mut stored = tree(&ws.recv());
    stored.retain(|name, _| name.starts_with("projet été"));
    assert_eq!(
        stored, expected,
        "the tree on the server matches the one sent"
    );
    assert!(!ws.recv().join("projet été/link-out").exists());

    // Sending the folder again stores nothing twice: every file is unchanged.
    let again = ftc(
        &ws.src(),
        &["send", &server.address(), root.to_str().unwrap()],
    );
    again.success();
    assert!(
        again
            .stdout
            .contains("unchanged projet été/docs/brouillons/v1.txt"),
        "{again}"
    );
    assert!(!ws
        .recv()
        .join("projet été/docs/brouillons/v1 (1).txt")
        .exists());

    // And the tree comes back intact with get.
    let names: Vec<String> = listing(&server, &ws.src())
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .filter(|name| !name.contains(" (1)"))
        .collect();
    let out = ws.root.path().join("restore");
    let mut args = vec![
        "get".to_owned(),
        server.address(),
        "-o".to_owned(),
        out.to_str().unwrap().to_owned(),
    ];
    args.extend(names);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ftc(&ws.src(), &args).success();
    let mut restored = tree(&out);
    restored.retain(|_, content| content.is_some());
    let files_sent: BTreeMap<_, _> = expected.into_iter().filter(|(_, c)| c.is_some()).collect();
    assert_eq!(restored, files_sent);
}

#[test]
fn list_filters_by_pattern_sorted_in_columns() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let dir = ws.src().join("pics");
    fs::create_dir(&dir).unwrap();
    for name in ["b.jpg", "a.jpg", "c.png"] {
        fs::write(dir.join(name), name.as_bytes()).unwrap();
    }
    ftc(
        &ws.src(),
        &["send", &server.address(), dir.to_str().unwrap()],
    )
    .success();

    let output = ftc(&ws.src(), &["list", &server.address(), "*.jpg"]);
    output.success();
    let lines: Vec<_> = output.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SIZE") || lines[0].trim_start().starts_with("SIZE"),
        "{output}"
    );
    assert!(
        lines[1].ends_with("pics/a.jpg") && lines[2].ends_with("pics/b.jpg"),
        "{output}"
    );
    assert!(lines[1].contains(&blake3_hex(b"a.jpg")[..12]), "{output}");
    assert_eq!(lines[3], "2 files, 10 B", "{output}");
    let everything = ftc(&ws.src(), &["list", &server.address()]);
    assert!(everything.stdout.contains("3 files"), "{everything}");
}

#[test]
fn ndjson_output_parses_and_matches_what_happened() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-file-size", "1M"]);
    let good = random_bytes(600_000, 46);
    let good_path = ws.file("good.bin", &good);
    let big_path = ws.file("big.bin", &random_bytes(2 << 20, 47));
    let output = ftc(
        &ws.src(),
        &["send", &server.address(), &good_path, &big_path, "--json"],
    );
    output.expect_code(1);
    let events = ndjson(&output);
    assert_eq!(events[0]["event"], "started");
    assert_eq!(events[0]["files"], 2);
    let done: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "file_done")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["name"], "good.bin");
    assert_eq!(done[0]["blake3"], blake3_hex(&good).as_str());
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "file_failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "big.bin");
    assert_eq!(failed[0]["code"], "too-large");
    let progress = events.iter().filter(|e| e["event"] == "progress").count();
    assert!(
        (1..=10).contains(&progress),
        "progress is rate-bounded: {progress}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        (summary["stored"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(summary["ok"], false);

    let out = ws.root.path().join("out");
    let got = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "good.bin",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    got.success();
    let events = ndjson(&got);
    let done = events.iter().find(|e| e["event"] == "file_done").unwrap();
    assert_eq!(done["blake3"], blake3_hex(&good).as_str());
    assert_eq!(events.last().unwrap()["saved"], 1);
}

#[test]
fn the_operator_sees_what_is_stored_at_start_and_a_missing_name_is_no_warning() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let path = ws.file("kept.txt", b"twelve bytes");
    ftc(&ws.src(), &["send", &server.address(), &path]).all_stored(1);
    let out = ws.root.path().join("out");
    let missing = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "missing.txt",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_ne!(missing.code(), Some(0), "{missing}");
    let log = server.log();
    let refused = log
        .lines()
        .find(|line| line.contains("request failed") && line.contains("not-found"))
        .unwrap_or_else(|| panic!("no not-found line in the log:\n{log}"));
    assert!(
        refused.contains("INFO") && !refused.contains("WARN"),
        "{refused}"
    );
    server.terminate();

    let again = Server::start(&ws.store_dir(), &[]);
    let log = again.log();
    let serving = log
        .lines()
        .find(|line| line.contains("serving"))
        .unwrap_or_else(|| panic!("no start-up summary in the log:\n{log}"));
    for field in [
        "files=1",
        "bytes=12",
        "partial_uploads=0",
        "anonymous=\"off\"",
    ] {
        assert!(serving.contains(field), "{field} missing from: {serving}");
    }
}
