//! What goes wrong is said in plain words in the status area: a wrong token, a server that
//! is not there, a pasted connect string that logs in without asking.

mod common;

use common::{shows, step_until, type_into, window};
use egui_kittest::kittest::Queryable;
use ft_gui::ScriptedPicker;
use integration_tests::Workspace;

#[test]
fn wrong_tokens_and_absent_servers_are_said_plainly_and_connect_strings_just_work() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let config = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_CONFIG_HOME", config.path());
    let mut harness = window(
        config.path(),
        &ws.root.path().join("inbox"),
        Box::new(ScriptedPicker::default()),
    );
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
    let second = tempfile::tempdir().unwrap();
    let mut harness = window(
        second.path(),
        &ws.root.path().join("inbox2"),
        Box::new(ScriptedPicker::default()),
    );
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
