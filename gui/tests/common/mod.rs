//! What the window tests share: a window over an injected picker, stepping it until
//! something shows (bounded), and typing into a labelled field.

// Each test file uses what it needs of these.
#![allow(dead_code)]

use std::{path::Path, time::Duration};

use egui_kittest::{kittest::Queryable, Harness};
use ft_gui::{FtApp, History, Picker};

/// A window with its history in `config`, received files in `inbox`, paths from `picker`.
pub(crate) fn window(
    config: &Path,
    inbox: &Path,
    picker: Box<dyn Picker>,
) -> Harness<'static, FtApp> {
    let app = FtApp::new(
        || {},
        History::at(config.join("history.jsonl")),
        inbox.to_path_buf(),
        picker,
    )
    .unwrap_or_else(|err| panic!("cannot start the window's engine: {err}"));
    Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_state(|ctx, app: &mut FtApp| app.ui(ctx), app)
}

/// Steps the UI (the engine works meanwhile) until `done` holds; panics after about 15 s.
pub(crate) fn step_until(
    harness: &mut Harness<'_, FtApp>,
    what: &str,
    mut done: impl FnMut(&Harness<'_, FtApp>) -> bool,
) {
    for _ in 0..600 {
        harness.step();
        if done(harness) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// Whether some label shows `text`.
pub(crate) fn shows(harness: &Harness<'_, FtApp>, text: &str) -> bool {
    harness.query_all_by_label_contains(text).next().is_some()
}

/// Clicks the field labelled `field` and types `text` into it.
pub(crate) fn type_into(harness: &mut Harness<'_, FtApp>, field: &str, text: &str) {
    harness.get_by_label(field).click();
    harness.step();
    harness.get_by_label(field).type_text(text);
    harness.step();
}

/// Logs in through the connect form as `user`, trusting the server's fingerprint when asked
/// (a first contact), and waits for the connection.
pub(crate) fn log_in(harness: &mut Harness<'_, FtApp>, address: &str, user: &str, token: &str) {
    type_into(harness, "Server", address);
    type_into(harness, "User", user);
    type_into(harness, "Token", token);
    harness.get_by_label("Log in").click();
    step_until(harness, "the trust question", |h| {
        shows(h, "Trust this server?")
    });
    harness.get_by_label("Trust and connect").click();
    step_until(harness, "the connection", |h| {
        shows(h, "Status: connected to")
    });
}
