//! A hostile server: `ftc` never lets a server's text steer the terminal. Names and messages
//! with escape sequences or bidirectional overrides are printed with those characters made
//! visible; `--json` keeps the exact text.

use integration_tests::{ftc, scripted_server, Workspace};

/// A name meant to retitle the terminal, then to pass `.exe` off as `.pdf`.
const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2Jinvoice\u{202e}fdp.exe";

fn handshake() -> Vec<ft_protocol::Response> {
    vec![
        ft_protocol::Response::Welcome(ft_protocol::Welcome {
            protocol_version: ft_protocol::PROTOCOL_VERSION,
            software: "fts \u{1b}[31mred".into(),
            capabilities: vec![],
            max_file_size: 1 << 30,
        }),
        ft_protocol::Response::Authenticated(ft_protocol::Authenticated {
            user: "nobody".into(),
            role: ft_protocol::Role::Write,
        }),
    ]
}

fn listing() -> ft_protocol::Response {
    ft_protocol::Response::Listing(ft_protocol::Listing {
        entries: vec![ft_protocol::CatalogEntry {
            name: HOSTILE.into(),
            sent_name: HOSTILE.into(),
            size: 3,
            hash: ft_protocol::Hash([1; 32]),
            added_at: "2026-12-04T00:00:00Z\u{1b}[1A".into(),
            owner: "nobody".into(),
            modified_ns: None,
        }],
        last: true,
    })
}

#[test]
fn a_servers_names_and_messages_cannot_steer_the_terminal() {
    let ws = Workspace::new();
    let mut replies = handshake();
    replies.push(listing());
    let addr = scripted_server(replies).to_string();
    let listed = ftc(&ws.src(), &["list", &addr]);
    assert_eq!(listed.code(), Some(0), "{listed}");
    assert!(!listed.stdout.contains('\u{1b}'), "raw escape: {listed}");
    assert!(
        !listed.stdout.contains('\u{202e}'),
        "raw override: {listed}"
    );
    assert!(
        listed.stdout.contains("\\u{001b}]0;owned\\u{0007}")
            && listed.stdout.contains("invoice\\u{202e}fdp.exe"),
        "{listed}"
    );

    // A refusal's message is shown safely too.
    let mut replies = handshake();
    replies.push(ft_protocol::Response::Failed(ft_protocol::Failed {
        code: ft_protocol::ErrorCode::NotFound,
        message: format!("no file {HOSTILE}"),
    }));
    let addr = scripted_server(replies).to_string();
    let removed = ftc(&ws.src(), &["rm", &addr, "x"]);
    assert_eq!(removed.code(), Some(1), "{removed}");
    assert!(
        !removed.stderr.contains('\u{1b}') && !removed.stderr.contains('\u{202e}'),
        "{removed}"
    );
    assert!(
        removed.stderr.contains("invoice\\u{202e}fdp.exe"),
        "{removed}"
    );

    // JSON keeps the server's exact text.
    let mut replies = handshake();
    replies.push(listing());
    let addr = scripted_server(replies).to_string();
    let json = ftc(&ws.src(), &["list", &addr, "--json"]);
    let entry: serde_json::Value = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|value| value["event"] == "entry")
        .unwrap();
    assert_eq!(entry["name"], HOSTILE);
}
