//! The People view against a real `fts`: who is online shows up live, an incoming offer is a
//! dialog whose Accept saves the files verified, and files are sent to a ticked user.

mod common;

use std::{fs, path::PathBuf, time::Duration};

use common::{shows, step_until, type_into, window};
use egui_kittest::kittest::Queryable;
use ft_gui::ScriptedPicker;
use integration_tests::{eventually, fts_user, spawn_ftc_env, Workspace};

#[test]
fn offers_come_in_as_a_dialog_and_files_go_to_ticked_people() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let add = |name: &str| {
        let added = fts_user(&ws.store_dir(), &["add", name, "--role", "write"]);
        added.success();
        added.stdout.lines().last().unwrap().to_owned()
    };
    let alice = add("alice");
    let bob = add("bob");
    let config = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_CONFIG_HOME", config.path());
    let gift = PathBuf::from(ws.file("gift.txt", b"for alice, from the window"));
    let mut picker = ScriptedPicker::default();
    picker.answers.push_back(vec![gift.clone()]);
    let inbox = ws.root.path().join("alice-inbox");
    let mut harness = window(config.path(), &inbox, Box::new(picker));
    // alice logs in through the window (fingerprint trusted when asked).
    type_into(&mut harness, "Server", &server.address());
    type_into(&mut harness, "User", "alice");
    type_into(&mut harness, "Token", &alice);
    harness.get_by_label("Log in").click();
    step_until(&mut harness, "the trust question", |h| {
        shows(h, "Trust this server?")
    });
    harness.get_by_label("Trust and connect").click();
    step_until(&mut harness, "the connection", |h| {
        shows(h, "Status: connected to")
    });
    harness.get_by_label("People").click();

    // bob comes online, listening: the People view shows him without a refresh.
    let bob_in = ws.root.path().join("bob-inbox");
    let listener = spawn_ftc_env(
        &ws.src(),
        &[
            "listen",
            &server.address(),
            "-o",
            bob_in.to_str().unwrap(),
            "--yes",
            "--once",
        ],
        &[("FTC_USER", "bob"), ("FTC_TOKEN", &bob)],
    );
    step_until(&mut harness, "bob online", |h| shows(h, "bob (listening)"));

    // alice (the window) sends to the ticked bob.
    harness.get_by_label("bob (listening)").click();
    harness.step();
    harness.get_by_label("Send files…").click();
    let received = eventually(Duration::from_secs(20), || {
        harness.step();
        bob_in.join("gift.txt").exists()
    });
    assert!(received, "bob received the file");
    assert_eq!(
        fs::read(bob_in.join("gift.txt")).unwrap(),
        b"for alice, from the window"
    );
    listener.finish().success();

    // bob sends to alice: the window asks, Accept saves it verified in the inbox.
    let note = ws.file("note.txt", b"thanks!");
    let sender = spawn_ftc_env(
        &ws.src(),
        &["send", &server.address(), &note, "--to", "alice"],
        &[("FTC_USER", "bob"), ("FTC_TOKEN", &bob)],
    );
    step_until(&mut harness, "the offer dialog", |h| {
        shows(h, "bob offers 1 files")
    });
    harness.get_by_label("Accept").click();
    step_until(&mut harness, "the saved file", |_| {
        inbox.join("note.txt").exists()
    });
    assert_eq!(fs::read(inbox.join("note.txt")).unwrap(), b"thanks!");
    let sent = sender.finish();
    sent.success();
    assert!(
        sent.stdout
            .contains("alice: 1 of 1 files saved and verified"),
        "{sent}"
    );
    step_until(&mut harness, "the received line", |h| {
        shows(h, "note.txt from bob")
    });
}
