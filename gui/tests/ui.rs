//! The window, driven headless through its accessibility tree (egui_kittest), against a real
//! `fts` on loopback: connect (trusting the fingerprint shown), send a file and see its row
//! say verified, browse the catalog, download, and find it all in the history.

use std::{fs, path::PathBuf, time::Duration};

use egui_kittest::{kittest::Queryable, Harness};
use ft_gui::{FtApp, History, ScriptedPicker, View};
use integration_tests::Workspace;

/// Steps the UI (and lets the engine work) until `done` holds; bounded.
fn step_until(
    harness: &mut Harness<'_, FtApp>,
    what: &str,
    mut done: impl FnMut(&Harness<'_, FtApp>) -> bool,
) {
    for _ in 0..400 {
        harness.step();
        if done(harness) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

fn shows(harness: &Harness<'_, FtApp>, text: &str) -> bool {
    harness.query_all_by_label_contains(text).next().is_some()
}

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
    let app = FtApp::new(
        || {},
        History::at(history.clone()),
        ws.root.path().join("inbox"),
        Box::new(picker),
    )
    .unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_state(|ctx, app: &mut FtApp| app.ui(ctx), app);

    let credentials = server.credentials();
    harness.get_by_label("Server").click();
    harness.step();
    harness.get_by_label("Server").type_text(&server.address());
    harness.get_by_label("User").click();
    harness.step();
    harness.get_by_label("User").type_text(&credentials.user);
    harness.get_by_label("Token").click();
    harness.step();
    harness.get_by_label("Token").type_text(&credentials.token);
    harness.step();
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
    harness.get_by_label("Filter").click();
    harness.step();
    harness.get_by_label("Filter").type_text("hello*");
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
