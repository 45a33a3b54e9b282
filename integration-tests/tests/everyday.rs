//! The everyday CLI: re-runs that skip what is there, modification times kept, `--into`,
//! folder and pattern get and rm, per-file lines as files finish, quiet and verbose,
//! `--connect-timeout`, `--bwlimit`, partial folder sends and Ctrl-C.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use integration_tests::{blake3_hex, ftc, ndjson, random_bytes, spawn_ftc, Workspace};

/// A fixed, odd modification time (2001-02-03 04:05:06.789) that no file gets by itself.
fn old_time() -> SystemTime {
    UNIX_EPOCH + Duration::new(981_173_106, 789_000_000)
}

fn set_mtime(path: &Path, time: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// A folder `tree` in the workspace's src: three small files and one of 300 KiB.
fn make_tree(ws: &Workspace) -> Vec<(String, Vec<u8>)> {
    let root = ws.src().join("tree");
    fs::create_dir_all(root.join("sub")).unwrap();
    let files = vec![
        ("tree/a.txt".to_owned(), b"alpha".to_vec()),
        ("tree/b.txt".to_owned(), b"bravo".to_vec()),
        ("tree/sub/c.jpg".to_owned(), b"charlie".to_vec()),
        ("tree/sub/big.bin".to_owned(), random_bytes(300_000, 7)),
    ];
    for (name, content) in &files {
        fs::write(ws.src().join(name), content).unwrap();
    }
    files
}

#[test]
fn a_rerun_stores_nothing_again_and_says_unchanged() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let files = make_tree(&ws);
    ftc(&ws.src(), &["send", &server.address(), "tree"]).all_stored(4);
    let before = ws.stored_names();

    let again = ftc(&ws.src(), &["send", &server.address(), "tree"]);
    again.success();
    assert!(
        again.stdout.contains("0 of 4 files stored, 4 unchanged"),
        "{again}"
    );
    for (name, _) in &files {
        assert!(
            again.stdout.contains(&format!("unchanged {name}\n")),
            "{name}: {again}"
        );
    }
    assert_eq!(ws.stored_names(), before, "no copies were stored");

    // The JSON summary counts them, and each file says so as it is settled.
    let json = ftc(&ws.src(), &["send", &server.address(), "tree", "--json"]);
    json.success();
    let events = ndjson(&json);
    let skipped = events
        .iter()
        .filter(|e| e["event"] == "file_skipped" && e["status"] == "unchanged")
        .count();
    assert_eq!(skipped, 4, "{json}");
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["stored"], 0);
    assert_eq!(summary["unchanged"], 4);
    assert_eq!(summary["ok"], true);
}

#[test]
fn touched_files_are_compared_by_hash_and_changed_ones_kept_both() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let touched = ws.file("touched.txt", b"same bytes");
    let changed = ws.file("changed.txt", b"version one");
    ftc(&ws.src(), &["send", &server.address(), &touched, &changed]).all_stored(2);

    // A new time with the same bytes (a copy, a touch): hashed, found equal, not sent.
    set_mtime(Path::new(&touched), old_time());
    // New bytes of the same size: stored beside the old version.
    fs::write(&changed, b"version two").unwrap();
    let rerun = ftc(&ws.src(), &["send", &server.address(), &touched, &changed]);
    rerun.success();
    assert!(rerun.stdout.contains("unchanged touched.txt"), "{rerun}");
    assert!(
        rerun
            .stdout
            .contains("stored changed.txt as changed (1).txt"),
        "{rerun}"
    );
    assert!(
        rerun
            .stdout
            .contains("1 of 2 files stored, 1 unchanged, 1 renamed"),
        "{rerun}"
    );
    assert_eq!(
        fs::read(ws.recv().join("changed (1).txt")).unwrap(),
        b"version two"
    );
    assert!(!ws.recv().join("touched (1).txt").exists());

    // Running it again: both versions are known now, nothing is stored.
    let third = ftc(&ws.src(), &["send", &server.address(), &touched, &changed]);
    assert!(
        third.stdout.contains("0 of 2 files stored, 2 unchanged"),
        "{third}"
    );
    assert!(third
        .stdout
        .contains("unchanged changed.txt (as changed (1).txt)"));
}

#[test]
fn checksum_catches_what_size_and_time_cannot() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("sly.bin", b"AAAA");
    set_mtime(Path::new(&path), old_time());
    ftc(&ws.src(), &["send", &server.address(), &path]).all_stored(1);
    // Same size, same time, other bytes: the quick check cannot see it...
    fs::write(&path, b"BBBB").unwrap();
    set_mtime(Path::new(&path), old_time());
    // (as on another machine that has a file of that name, size and time): the content
    // decides, with or without --checksum.
    let thorough = ftc(&ws.src(), &["send", &server.address(), &path, "--checksum"]);
    thorough.success();
    assert!(
        thorough.stdout.contains("stored sly.bin as sly (1).bin"),
        "{thorough}"
    );
    let again = ftc(&ws.src(), &["send", &server.address(), &path]);
    assert!(
        again.stdout.contains("unchanged sly.bin (as sly (1).bin)"),
        "{again}"
    );
    assert_eq!(fs::read(ws.recv().join("sly (1).bin")).unwrap(), b"BBBB");
}

#[test]
fn modification_times_are_kept_listed_and_restored() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let small = ws.file("small.txt", b"tiny");
    let large = ws.file("large.bin", &random_bytes(200_000, 3));
    for path in [&small, &large] {
        set_mtime(Path::new(path), old_time());
    }
    ftc(&ws.src(), &["send", &server.address(), &small, &large]).all_stored(2);
    for name in ["small.txt", "large.bin"] {
        assert_eq!(
            mtime(&ws.recv().join(name)),
            old_time(),
            "{name} on the server"
        );
    }
    let listed = ftc(&ws.src(), &["list", &server.address(), "--json"]);
    let expected_ns = 981_173_106_789_000_000_i64;
    for entry in ndjson(&listed).iter().filter(|e| e["event"] == "entry") {
        assert_eq!(entry["modified_ns"], expected_ns, "{listed}");
    }
    let out = ws.root.path().join("out");
    let got = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "small.txt",
            "large.bin",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    got.success();
    for name in ["small.txt", "large.bin"] {
        assert_eq!(mtime(&out.join(name)), old_time(), "{name} saved: {got}");
    }
}

#[test]
fn skip_existing_never_touches_a_taken_name() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("conf.ini", b"original");
    ftc(&ws.src(), &["send", &server.address(), &path]).all_stored(1);
    fs::write(&path, b"edited locally").unwrap();
    let output = ftc(
        &ws.src(),
        &["send", &server.address(), &path, "--skip-existing"],
    );
    output.success();
    assert!(output.stdout.contains("skipped conf.ini"), "{output}");
    assert!(output.stdout.contains("1 skipped (name taken)"), "{output}");
    assert_eq!(fs::read(ws.recv().join("conf.ini")).unwrap(), b"original");
    assert_eq!(ws.stored_names(), ["conf.ini"]);
    let both = ftc(
        &ws.src(),
        &[
            "send",
            &server.address(),
            &path,
            "--skip-existing",
            "--overwrite",
        ],
    );
    both.expect_code(2);
}

#[test]
fn into_puts_files_under_a_remote_folder_and_clashing_names_are_refused() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    make_tree(&ws);
    let into = ftc(
        &ws.src(),
        &["send", &server.address(), "tree", "--into", "hosts/web1"],
    );
    into.all_stored(4);
    assert_eq!(
        fs::read(ws.recv().join("hosts/web1/tree/a.txt")).unwrap(),
        b"alpha"
    );
    let bad = ftc(
        &ws.src(),
        &["send", &server.address(), "tree", "--into", "../up"],
    );
    bad.expect_code(2);
    assert!(bad.stderr.contains("--into"), "{bad}");

    // Two local files that would land under one name: refused before anything is sent.
    fs::create_dir_all(ws.src().join("x")).unwrap();
    fs::create_dir_all(ws.src().join("y")).unwrap();
    fs::write(ws.src().join("x/same.txt"), b"from x").unwrap();
    fs::write(ws.src().join("y/same.txt"), b"from y").unwrap();
    let names_before = ws.stored_names();
    let clash = ftc(
        &ws.src(),
        &["send", &server.address(), "x/same.txt", "y/same.txt"],
    );
    clash.expect_code(2);
    assert!(
        clash.stderr.contains("would both be stored as same.txt"),
        "{clash}"
    );
    assert_eq!(ws.stored_names(), names_before);

    // One file named twice, in two spellings, is sent once.
    let absolute = ws.src().join("x/same.txt");
    let once = ftc(
        &ws.src(),
        &[
            "send",
            &server.address(),
            "x/same.txt",
            "./x/same.txt",
            absolute.to_str().unwrap(),
        ],
    );
    once.all_stored(1);
    assert_eq!(ws.stored_names().len(), names_before.len() + 1);
}

#[test]
fn get_takes_folders_and_patterns_and_recreates_the_tree() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let files = make_tree(&ws);
    ftc(&ws.src(), &["send", &server.address(), "tree"]).all_stored(4);

    let whole = ws.root.path().join("whole");
    let output = ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "tree/",
            "-o",
            whole.to_str().unwrap(),
        ],
    );
    output.success();
    assert!(output.stdout.contains("4 of 4 files saved"), "{output}");
    for (name, content) in &files {
        assert_eq!(&fs::read(whole.join(name)).unwrap(), content, "{name}");
    }
    // A folder named without its slash works too.
    let plain = ws.root.path().join("plain");
    ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "tree/sub",
            "-o",
            plain.to_str().unwrap(),
        ],
    )
    .success();
    assert!(plain.join("tree/sub/big.bin").exists());
    assert!(!plain.join("tree/a.txt").exists());

    let some = ws.root.path().join("some");
    let get_txt = || {
        ftc(
            &ws.src(),
            &[
                "get",
                &server.address(),
                "tree/*.txt",
                "-o",
                some.to_str().unwrap(),
            ],
        )
    };
    get_txt().success();
    assert_eq!(fs::read(some.join("tree/a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(some.join("tree/b.txt")).unwrap(), b"bravo");
    assert!(!some.join("tree/sub/c.jpg").exists());

    // Run again, what was saved already is left alone and counts as done (an interrupted
    // get is finished this way); a local file that differs is never overwritten without
    // --force; a pattern that matches nothing is a failure.
    let again = get_txt();
    again.success();
    assert!(again.stdout.contains("unchanged tree/a.txt"), "{again}");
    fs::write(some.join("tree/b.txt"), b"edited").unwrap();
    fs::remove_file(some.join("tree/a.txt")).unwrap();
    let edited = get_txt();
    edited.expect_code(1);
    assert!(edited.stderr.contains("exists"), "{edited}");
    assert_eq!(fs::read(some.join("tree/b.txt")).unwrap(), b"edited");
    assert_eq!(fs::read(some.join("tree/a.txt")).unwrap(), b"alpha");
    let none = ftc(&ws.src(), &["get", &server.address(), "nothing/*.zip"]);
    none.expect_code(1);
    assert!(none.stderr.contains("nothing stored matches"), "{none}");

    // A stored file named like another's temporary download file is never destroyed by
    // that download: the other one is refused.
    let hidden = ws.root.path().join("h");
    fs::create_dir_all(&hidden).unwrap();
    fs::write(hidden.join(".n.txt.ftc-part"), b"precious content").unwrap();
    fs::write(hidden.join("n.txt"), b"n").unwrap();
    ftc(
        &ws.src(),
        &["send", &server.address(), hidden.to_str().unwrap()],
    )
    .all_stored(2);
    let both = ws.root.path().join("both");
    let clashing = ftc(
        &ws.src(),
        &["get", &server.address(), "h/", "-o", both.to_str().unwrap()],
    );
    clashing.expect_code(1);
    assert!(
        clashing.stderr.contains("get them separately"),
        "{clashing}"
    );
    assert_eq!(
        fs::read(both.join("h/.n.txt.ftc-part")).unwrap(),
        b"precious content"
    );

    // A stored name holding pattern characters is taken as it is.
    let odd = ws.root.path().join("odd");
    fs::create_dir_all(&odd).unwrap();
    for (name, content) in [
        ("photo [1].jpg", &b"one"[..]),
        ("photo 1.jpg", b"not this"),
        ("what?.txt", b"question"),
        ("whatX.txt", b"keep me"),
    ] {
        fs::write(odd.join(name), content).unwrap();
    }
    ftc(
        &ws.src(),
        &["send", &server.address(), odd.to_str().unwrap()],
    )
    .all_stored(4);
    let exact = ws.root.path().join("exact");
    ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "odd/photo [1].jpg",
            "-o",
            exact.to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(fs::read(exact.join("odd/photo [1].jpg")).unwrap(), b"one");
    assert!(!exact.join("odd/photo 1.jpg").exists());
    // No terminal and no --yes: an exact name is no mass delete, and only it goes.
    ftc(&ws.src(), &["rm", &server.address(), "odd/what?.txt"]).success();
    let stored = ws.stored_names();
    assert!(!stored.contains(&"odd/what?.txt".to_owned()), "{stored:?}");
    assert!(stored.contains(&"odd/whatX.txt".to_owned()), "{stored:?}");
}

#[test]
fn rm_with_a_pattern_asks_for_yes_and_deletes_what_matched() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    make_tree(&ws);
    ftc(&ws.src(), &["send", &server.address(), "tree"]).all_stored(4);
    // No terminal and no --yes: nothing is deleted.
    let refused = ftc(&ws.src(), &["rm", &server.address(), "tree/*.txt"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("2 stored files"), "{refused}");
    assert!(refused.stderr.contains("--yes"), "{refused}");
    assert_eq!(ws.stored_names().len(), 4);

    let done = ftc(&ws.src(), &["rm", &server.address(), "tree/*.txt", "--yes"]);
    done.success();
    assert!(done.stdout.contains("2 deleted, 0 failed"), "{done}");
    assert_eq!(ws.stored_names(), ["tree/sub/big.bin", "tree/sub/c.jpg"]);

    // A pattern that matches nothing is a failure, as for `get`, in text and in JSON.
    let none = ftc(&ws.src(), &["rm", &server.address(), "tree/*.zip", "--yes"]);
    none.expect_code(1);
    assert!(none.stderr.contains("nothing stored matches"), "{none}");
    let address = server.address();
    let rm = ["rm", &address, "tree/*.zip", "--yes", "--json"];
    let get = ["get", &address, "tree/*.zip", "--json"];
    for args in [&rm[..], &get[..]] {
        let json = ftc(&ws.src(), args);
        json.expect_code(1);
        let events = integration_tests::ndjson(&json);
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "file_failed" && e["name"] == "tree/*.zip"),
            "{json}"
        );
        let summary = events.last().unwrap();
        assert_eq!(summary["event"], "summary", "{json}");
        assert_eq!(summary["failed"], 1, "{json}");
        assert_eq!(summary["ok"], false, "{json}");
    }
    assert_eq!(ws.stored_names().len(), 2);
}

#[test]
fn quiet_prints_only_the_summary_and_verbose_more() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("q.txt", b"quiet please");
    let quiet = ftc(&ws.src(), &["send", &server.address(), &path, "-q"]);
    quiet.success();
    assert!(!quiet.stdout.contains("stored q.txt"), "{quiet}");
    assert!(quiet.stdout.contains("1 of 1 file stored"), "{quiet}");

    let other = ws.file("v.txt", b"tell me more");
    let verbose = ftc(&ws.src(), &["send", &server.address(), &other, "-v"]);
    verbose.success();
    assert!(verbose.stdout.contains("sending v.txt (12 B)"), "{verbose}");
    assert!(
        verbose.stdout.contains("stored v.txt (12 bytes, blake3"),
        "{verbose}"
    );
}

#[test]
fn connect_timeout_bounds_a_silent_server() {
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let accepted = listener.accept();
        std::thread::sleep(Duration::from_secs(8));
        drop(accepted);
    });
    let started = Instant::now();
    let output = ftc(
        &ws.src(),
        &[
            "info",
            &address,
            "--connect-timeout",
            "1s",
            "--fingerprint",
            &format!("SHA256:{}", "cd".repeat(32)),
        ],
    );
    output.expect_code(3);
    assert!(output.stderr.contains("TLS handshake"), "{output}");
    assert!(output.stderr.contains("1s"), "{output}");
    // Bounded, not timed: it gave up long before the listener let go.
    assert!(started.elapsed() < Duration::from_secs(8), "{output}");
    let bad = ftc(&ws.src(), &["info", &address, "--connect-timeout", "soon"]);
    bad.expect_code(2);
    drop(holder);
}

#[test]
fn bwlimit_holds_a_transfer_down_in_both_directions() {
    // A benchmark-style check: the limit must slow the transfer by at least half of what it
    // should (20 MiB at 8 MiB/s: 2.5 s expected, at least 1.25 s asserted).
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let content = random_bytes(20 << 20, 11);
    let path = ws.file("paced.bin", &content);
    let started = Instant::now();
    ftc(
        &ws.src(),
        &["send", &server.address(), &path, "--bwlimit", "8M"],
    )
    .all_stored(1);
    let sent_in = started.elapsed();
    assert!(
        sent_in >= Duration::from_millis(1250),
        "sent in {sent_in:?}"
    );
    let out = ws.root.path().join("paced");
    let started = Instant::now();
    ftc(
        &ws.src(),
        &[
            "get",
            &server.address(),
            "paced.bin",
            "--bwlimit",
            "8M",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .success();
    let got_in = started.elapsed();
    assert!(got_in >= Duration::from_millis(1250), "got in {got_in:?}");
    assert_eq!(
        blake3_hex(&fs::read(out.join("paced.bin")).unwrap()),
        blake3_hex(&content)
    );
    let bad = ftc(
        &ws.src(),
        &["send", &server.address(), &path, "--bwlimit", "fast"],
    );
    bad.expect_code(2);

    // Small files (each sent in one piece) are held down too: 4 MiB in 128 files at 2 MiB/s.
    let small = ws.root.path().join("small");
    fs::create_dir_all(&small).unwrap();
    for n in 0..128u64 {
        fs::write(
            small.join(format!("s{n:03}.bin")),
            random_bytes(32 << 10, n),
        )
        .unwrap();
    }
    let started = Instant::now();
    ftc(
        &ws.src(),
        &[
            "send",
            &server.address(),
            small.to_str().unwrap(),
            "--bwlimit",
            "2M",
        ],
    )
    .all_stored(128);
    let small_in = started.elapsed();
    assert!(
        small_in >= Duration::from_millis(1000),
        "small files sent in {small_in:?}"
    );
}

#[test]
fn lines_are_printed_as_files_finish_and_ctrl_c_says_how_to_go_on() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let mut args = vec!["send".to_owned(), server.address()];
    for n in 0..12 {
        args.push(ws.file(&format!("part{n:02}.bin"), &random_bytes(1 << 20, n)));
    }
    // 12 MiB at 2 MiB/s: about six seconds, long enough to interrupt in the middle.
    args.extend(["--bwlimit".to_owned(), "2M".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = spawn_ftc(&ws.src(), &args);
    let printed = integration_tests::eventually(Duration::from_secs(20), || {
        // The first stored file's line is out before the batch ends.
        ws.stored_names().len() >= 2
    });
    assert!(printed, "files were stored while the batch ran");
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&running.child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let output = running.finish();
    output.expect_code(130);
    assert!(output.stdout.contains("stored part00.bin"), "{output}");
    assert!(output.stderr.contains("interrupted"), "{output}");
    assert!(
        output.stderr.contains("run the same command again"),
        "{output}"
    );
    // Going on: what was stored is not sent again; the rest is.
    let rerun = ftc(&ws.src(), &args[..args.len() - 2]);
    rerun.success();
    assert!(rerun.stdout.contains("unchanged part00.bin"), "{rerun}");
    assert!(rerun.stdout.contains("of 12 files stored"), "{rerun}");
    assert_eq!(ws.stored_names().len(), 12);
}

#[test]
fn a_folder_with_an_unreadable_file_sends_the_rest_and_exits_1() {
    if rustix::process::geteuid().is_root() {
        eprintln!("skipped: root reads every file, so no file can be made unreadable");
        return;
    }
    let ws = Workspace::new();
    let server = ws.server(&[]);
    make_tree(&ws);
    let secret = ws.src().join("tree/secret.key");
    fs::write(&secret, b"no peeking").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();

    let partial = ftc(&ws.src(), &["send", &server.address(), "tree"]);
    partial.expect_code(1);
    assert!(partial.stderr.contains("secret.key"), "{partial}");
    assert!(partial.stdout.contains("4 of 5 files stored"), "{partial}");
    assert_eq!(ws.stored_names().len(), 4);

    let strict = ftc(&ws.src(), &["send", &server.address(), "tree", "--strict"]);
    strict.expect_code(2);
    assert!(strict.stderr.contains("secret.key"), "{strict}");
}
