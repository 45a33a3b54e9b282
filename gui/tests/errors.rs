//! What goes wrong is said in plain words in the status area: a wrong token, a server that
//! is not there, a pasted connect string that logs in without asking.

use std::time::Duration;

use egui_kittest::{kittest::Queryable, Harness};
use ft_gui::{FtApp, History, ScriptedPicker};
use integration_tests::Workspace;

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

fn type_into(harness: &mut Harness<'_, FtApp>, field: &str, text: &str) {
    harness.get_by_label(field).click();
    harness.step();
    harness.get_by_label(field).type_text(text);
    harness.step();
}

#[test]
fn wrong_tokens_and_absent_servers_are_said_plainly_and_connect_strings_just_work() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let config = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_CONFIG_HOME", config.path());
    let app = FtApp::new(
        || {},
        History::at(config.path().join("history.jsonl")),
        ws.root.path().join("inbox"),
        Box::new(ScriptedPicker::default()),
    )
    .unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_state(|ctx, app: &mut FtApp| app.ui(ctx), app);
    let login = server.login();
    // A connect string pins the certificate: no question, straight in.
    let connect_string = format!(
        "ft://{}:{}@{}/#{}",
        login.user,
        login.token,
        server.address(),
        login.fingerprint
    );
    type_into(&mut harness, "Server", &connect_string);
    harness.get_by_label("Log in").click();
    step_until(&mut harness, "the connection", |h| {
        shows(h, "Status: connected to")
    });
    assert!(!shows(&harness, "Trust this server?"));

    // A new window, the same server, a wrong token: the status says why.
    let fresh = FtApp::new(
        || {},
        History::at(config.path().join("history2.jsonl")),
        ws.root.path().join("inbox2"),
        Box::new(ScriptedPicker::default()),
    )
    .unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_state(|ctx, app: &mut FtApp| app.ui(ctx), fresh);
    // The config file now holds the login; replace its token with a wrong one.
    harness.get_by_label("Token").click();
    harness.step();
    harness.state_mut().set_token("not-the-token");
    harness.get_by_label("Log in").click();
    step_until(&mut harness, "the refusal", |h| {
        shows(h, "Status: cannot connect")
    });
    assert!(
        shows(&harness, "token")
            || shows(&harness, "unauthorized")
            || shows(&harness, "credential"),
        "the reason is given"
    );

    // Nobody listening there: said too.
    let absent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = absent.local_addr().unwrap().to_string();
    drop(absent);
    harness.state_mut().set_server(&address);
    harness.get_by_label("Log in").click();
    step_until(&mut harness, "the failure", |h| {
        shows(h, "Status: cannot connect")
    });
}
