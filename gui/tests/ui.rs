//! The window, driven headless through its accessibility tree (egui_kittest), against a real
//! `fts` on loopback: connect (trusting the fingerprint shown), send a file and see its row
//! say verified, browse the catalog, download, and find it all in the history.

mod common;

use std::{fs, path::PathBuf};

use common::{shows, step_until, type_into, window};
use egui_kittest::kittest::Queryable;
use ft_gui::{ScriptedPicker, View};
use integration_tests::Workspace;

#[test]
fn connect_send_browse_download_and_remember() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let config = tempfile::tempdir().unwrap();
    // Only this test in this binary touches the environment.
    std::env::set_var("XDG_CONFIG_HOME", config.path());
    let content = b"hello from the window".to_vec();
    let path = PathBuf::from(ws.file("hello.txt", &content));
    let downloads = ws.root.path().join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let mut picker = ScriptedPicker::default();
    picker.answers.push_back(vec![path.clone()]);
    picker.answers.push_back(vec![downloads.clone()]);
    let history = config.path().join("history.jsonl");
    let mut harness = window(
        config.path(),
        &ws.root.path().join("inbox"),
        Box::new(picker),
    );

    let credentials = server.credentials();
    type_into(&mut harness, "Server", &server.address());
    type_into(&mut harness, "User", &credentials.user);
    type_into(&mut harness, "Token", &credentials.token);
    harness.get_by_label("Log in").click();
    // A first contact: the fingerprint is shown, and nothing is trusted until asked.
    step_until(&mut harness, "the trust question", |h| {
        shows(h, "Trust this server?")
    });
    let fingerprint = server.login().fingerprint.to_string();
    assert!(shows(&harness, &fingerprint), "the fingerprint is shown");
    harness.get_by_label("Trust and connect").click();
    step_until(&mut harness, "the connection", |h| {
        shows(h, "Status: connected to")
    });
    let known = fs::read_to_string(config.path().join("ftc/known_servers")).unwrap();
    assert!(known.contains(&fingerprint), "{known}");

    // Send: add the file through the (injected) dialog, send, see it verified.
    harness.get_by_label("Send").click();
    harness.step();
    harness.get_by_label("Add files…").click();
    harness.step();
    harness.step();
    assert!(shows(&harness, "waiting:"), "the file is queued");
    harness.get_by_label("Send queued files").click();
    step_until(&mut harness, "the row to say verified", |h| {
        shows(h, "hello.txt: verified")
    });
    assert_eq!(fs::read(ws.recv().join("hello.txt")).unwrap(), content);

    // Server files: refresh, tick the file, download it into the chosen folder.
    harness.get_by_label("Server files").click();
    harness.step();
    harness.get_by_label("Refresh").click();
    step_until(&mut harness, "the listing", |h| {
        shows(h, "select hello.txt")
    });
    harness.get_by_label("select hello.txt").click();
    harness.step();
    harness.get_by_label("Download selected…").click();
    step_until(&mut harness, "the download", |_| {
        downloads.join("hello.txt").exists()
    });
    assert_eq!(fs::read(downloads.join("hello.txt")).unwrap(), content);

    // Filter, then delete the ticked file after the confirmation.
    type_into(&mut harness, "Filter", "hello*");
    harness.get_by_label("Refresh").click();
    step_until(&mut harness, "the filtered listing", |h| {
        shows(h, "select hello.txt")
    });
    harness.get_by_label("Delete selected").click();
    step_until(&mut harness, "the confirmation", |h| {
        shows(h, "Delete 1 files from the server?")
    });
    harness.get_by_label("Delete").click();
    step_until(&mut harness, "the deletion", |h| {
        !shows(h, "select hello.txt")
    });
    assert!(
        !ws.recv().join("hello.txt").exists(),
        "deleted on the server"
    );

    // History: both, in the window and in the file.
    harness.get_by_label("History").click();
    step_until(&mut harness, "the history", |h| shows(h, "downloaded"));
    assert!(shows(&harness, "sent"));
    let kept = fs::read_to_string(&history).unwrap();
    assert!(
        kept.contains("\"kind\":\"sent\"") && kept.contains("\"kind\":\"downloaded\""),
        "{kept}"
    );
    assert_eq!(harness.state().view(), View::History);
}
