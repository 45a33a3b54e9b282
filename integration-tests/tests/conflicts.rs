//! A taken name is never silently overwritten: keep both by default, replace on request.

use std::{collections::BTreeSet, fs, thread};

use integration_tests::{blake3_hex, ftc, listing, spawn_ftc, Workspace};

#[test]
fn a_second_file_of_the_same_name_is_kept_as_numbered_copy() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let first = ws.file("report.pdf", b"first version");
    ftc(&ws.src(), &["send", &server.address(), &first]).success();
    let second = ws.file("report.pdf", b"second version");
    let output = ftc(&ws.src(), &["send", &server.address(), &second]);
    output.success();
    assert!(
        output
            .stdout
            .contains("stored report.pdf as report (1).pdf"),
        "{output}"
    );

    assert_eq!(
        fs::read(ws.recv().join("report.pdf")).unwrap(),
        b"first version"
    );
    assert_eq!(
        fs::read(ws.recv().join("report (1).pdf")).unwrap(),
        b"second version"
    );
    let rows = listing(&server, &ws.src());
    let names: Vec<_> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    // Natural order: the original before its copies.
    assert_eq!(names, ["report.pdf", "report (1).pdf"]);
    assert!(rows.iter().all(|r| r["sent_name"] == "report.pdf"));
}

#[test]
fn overwrite_replaces_the_file_and_its_record() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("config.yml", b"old: 1");
    ftc(&ws.src(), &["send", &server.address(), &path]).success();
    fs::write(&path, b"new: 2").unwrap();
    ftc(
        &ws.src(),
        &["send", &server.address(), &path, "--overwrite"],
    )
    .success();

    assert_eq!(ws.stored_names(), ["config.yml"]);
    assert_eq!(fs::read(ws.recv().join("config.yml")).unwrap(), b"new: 2");
    let rows = listing(&server, &ws.src());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["blake3"], blake3_hex(b"new: 2").as_str());
}

#[test]
fn clients_racing_for_one_name_all_land() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let racers = 8;
    let mut sent = BTreeSet::new();
    let mut running = Vec::new();
    for i in 0..racers {
        let dir = ws.src().join(format!("racer{i}"));
        fs::create_dir(&dir).unwrap();
        let content = format!("content from racer {i}").into_bytes();
        let path = dir.join("same.txt");
        fs::write(&path, &content).unwrap();
        sent.insert(content);
        let address = server.address();
        running.push(spawn_ftc(
            &ws.src(),
            &["send", &address, path.to_str().unwrap()],
        ));
    }
    thread::scope(|scope| {
        let handles: Vec<_> = running
            .into_iter()
            .map(|run| scope.spawn(move || run.finish()))
            .collect();
        for handle in handles {
            handle.join().unwrap().success();
        }
    });
    let names = ws.stored_names();
    assert_eq!(names.len(), racers, "{names:?}");
    let stored: BTreeSet<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(ws.recv().join(n)).unwrap())
        .collect();
    assert_eq!(stored, sent, "every racer's content is stored exactly once");
    assert_eq!(listing(&server, &ws.src()).len(), racers);
}

#[test]
fn the_same_file_twice_in_one_batch_is_stored_once() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let path = ws.file("twice.txt", b"same bytes");
    let output = ftc(&ws.src(), &["send", &server.address(), &path, &path]);
    output.all_stored(1);
    assert_eq!(ws.stored_names(), ["twice.txt"]);
    assert_eq!(
        fs::read(ws.recv().join("twice.txt")).unwrap(),
        b"same bytes"
    );
}
