//! The People view against a real `fts`: who is online shows up live, an incoming offer is a
//! dialog whose Accept saves the files verified, files are sent to a ticked user, and files
//! are left for someone offline.

mod common;

/// The tests here set `XDG_CONFIG_HOME` for the window's engine: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

use std::{fs, path::PathBuf, sync::MutexGuard, time::Duration};

use common::{log_in, shows, step_until, type_into, window};
use egui_kittest::{kittest::Queryable, Harness};
use ft_gui::{FtApp, ScriptedPicker};
use integration_tests::{
    eventually,
    relay::{add_user, spawn_listener},
    spawn_ftc_env, Server, Workspace,
};

/// alice, logged in through a window that shows the People view, and one other user.
struct AliceWindow {
    harness: Harness<'static, FtApp>,
    server: Server,
    ws: Workspace,
    /// The other user's token.
    other: String,
    /// Where the window saves what alice receives.
    inbox: PathBuf,
    _config: tempfile::TempDir,
    _alone: MutexGuard<'static, ()>,
}

/// Starts a server with alice and `other`, and a window logged in as alice on People whose
/// file picker answers `picks(workspace)` in turn.
fn alice_on_people(other: &str, picks: impl FnOnce(&Workspace) -> Vec<PathBuf>) -> AliceWindow {
    let alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let other = add_user(&ws, other);
    let config = tempfile::tempdir().expect("a config folder");
    std::env::set_var("XDG_CONFIG_HOME", config.path());
    let mut picker = ScriptedPicker::default();
    picker
        .answers
        .extend(picks(&ws).into_iter().map(|path| vec![path]));
    let inbox = ws.root.path().join("alice-inbox");
    let mut harness = window(config.path(), &inbox, Box::new(picker));
    log_in(&mut harness, &server.address(), "alice", &alice);
    harness.get_by_label("People").click();
    harness.step();
    AliceWindow {
        harness,
        server,
        ws,
        other,
        inbox,
        _config: config,
        _alone: alone,
    }
}

#[test]
fn offers_come_in_as_a_dialog_and_files_go_to_ticked_people() {
    // alice logs in through the window (fingerprint trusted when asked).
    let AliceWindow {
        mut harness,
        server,
        ws,
        other: bob,
        inbox,
        ..
    } = alice_on_people("bob", |ws| {
        vec![PathBuf::from(
            ws.file("gift.txt", b"for alice, from the window"),
        )]
    });

    // bob comes online, listening: the People view shows him without a refresh.
    let bob_in = ws.root.path().join("bob-inbox");
    let listener = spawn_listener(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
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

#[test]
fn files_left_for_someone_offline_wait_in_their_inbox_until_they_listen() {
    let AliceWindow {
        mut harness,
        server,
        ws,
        other: carol,
        ..
    } = alice_on_people("carol", |ws| {
        let letter = PathBuf::from(ws.file("letter.txt", b"for carol, while she was away"));
        vec![letter.clone(), letter]
    });

    // carol is not online: her name is typed, and the file waits in her inbox.
    type_into(&mut harness, "Leave for", "carol");
    harness.get_by_label("Leave files…").click();
    step_until(&mut harness, "the file left", |h| {
        shows(h, "carol: 1 of 1 left in the inbox on the server")
    });
    // A user who does not exist gets nothing, and the window says why (typing on after
    // "carol" makes a name nobody has).
    type_into(&mut harness, "Leave for", "-nobody");
    harness.get_by_label("Leave files…").click();
    step_until(&mut harness, "the refusal", |h| {
        shows(h, "carol-nobody: there is no user named 'carol-nobody'")
    });

    // carol listens later and receives it, verified.
    let carol_in = ws.root.path().join("carol-inbox");
    let listener = spawn_listener(
        &ws,
        &server,
        ("carol", &carol),
        &carol_in,
        &["--yes", "--once"],
    );
    listener.finish().success();
    assert_eq!(
        fs::read(carol_in.join("letter.txt")).unwrap(),
        b"for carol, while she was away"
    );
}
