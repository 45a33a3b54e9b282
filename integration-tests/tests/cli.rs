//! What users see: exit codes, error messages, summaries, and clean shutdown.

use std::time::Duration;

use integration_tests::{eventually, ftc, listing, Server, Workspace};

#[test]
fn missing_local_files_are_reported_before_anything_is_sent() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let good = ws.file("good.txt", b"good");
    let output = ftc(
        &ws.src(),
        &[
            "send",
            &server.address(),
            &good,
            "does-not-exist.txt",
            "also-missing/",
        ],
    );
    output.expect_code(2);
    assert!(output.stderr.contains("does-not-exist.txt"), "{output}");
    assert!(output.stderr.contains("also-missing"), "{output}");
    assert!(
        !server.log().contains("client connected"),
        "ftc must not even connect"
    );
    assert!(
        listing(&server, &ws.src()).is_empty(),
        "nothing may be sent"
    );
}

#[test]
fn an_unreachable_server_gets_a_clear_message_and_exit_code_3() {
    let ws = Workspace::new();
    let file = ws.file("a.txt", b"a");
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = ftc(&ws.src(), &["send", &format!("127.0.0.1:{port}"), &file]);
    output.expect_code(3);
    assert!(
        output
            .stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{output}"
    );
}

#[test]
fn malformed_addresses_are_usage_errors() {
    let ws = Workspace::new();
    let file = ws.file("a.txt", b"a");
    for bad in ["host:99999", "[::1", ":7878"] {
        let output = ftc(&ws.src(), &["send", bad, &file]);
        output.expect_code(2);
        assert!(output.stderr.contains("invalid server address"), "{output}");
    }
}

#[test]
fn ipv6_loopback_in_brackets_works_when_available() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("IPv6 loopback unavailable on this machine; nothing to check");
        return;
    };
    drop(probe);
    let ws = Workspace::new();
    let server = Server::start_on(&ws.store_dir(), "[::1]:0", &[]);
    let address = server.address();
    assert!(address.starts_with("[::1]:"), "{address}");
    let file = ws.file("v6.txt", b"over ipv6");
    let output = ftc(&ws.src(), &["send", &address, &file]);
    output.success();
    assert_eq!(ws.stored_names(), ["v6.txt"]);
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let ws = Workspace::new();
    let help = ftc(&ws.src(), &["--help"]);
    help.success();
    assert!(help.stdout.contains("Exit codes"), "{help}");
    for command in [
        "send",
        "get",
        "list",
        "rm",
        "info",
        "shell",
        "completions",
        "man",
    ] {
        let help = ftc(&ws.src(), &[command, "--help"]);
        help.success();
        assert!(help.stdout.contains("Examples:"), "{help}");
        if command != "completions" && command != "man" {
            assert!(help.stdout.contains("Exit codes"), "{help}");
        }
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let file = ws.file("before.txt", b"x");
    ftc(&ws.src(), &["send", &server.address(), &file]).success();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    assert!(eventually(Duration::from_secs(1), || !server.is_running()));
    assert!(
        server.log().contains("SIGTERM received"),
        "{}",
        server.log()
    );
}

/// A stand-in server that answers the first frame (the Hello) with `reply` and closes.
fn fake_server(reply: ft_protocol::Response) -> std::net::SocketAddr {
    integration_tests::scripted_server(vec![reply])
}

#[test]
fn ftc_names_a_version_mismatch_whichever_side_notices() {
    let ws = Workspace::new();
    let file = ws.file("a.txt", b"a");

    // A newer server that notices first answers with the frozen Error message.
    let refusing = fake_server(ft_protocol::Response::Error(
        ft_protocol::ErrorResponse::new(
            None,
            ft_protocol::ErrorCode::VersionMismatch,
            "client speaks protocol version 2, this server speaks 99",
        ),
    ));
    let output = ftc(&ws.src(), &["send", &refusing.to_string(), &file]);
    output.expect_code(3);
    assert!(
        output.stderr.contains("this server speaks 99")
            && output.stderr.contains("version-mismatch"),
        "{output}"
    );

    // A server that welcomes with another version is caught by the client.
    let welcoming = fake_server(ft_protocol::Response::Welcome(ft_protocol::Welcome {
        protocol_version: 99,
        software: "fts 99".into(),
        capabilities: vec![],
        max_file_size: 1,
    }));
    let output = ftc(&ws.src(), &["list", &welcoming.to_string()]);
    output.expect_code(3);
    let expected = format!(
        "server speaks protocol version 99, this client speaks {}",
        ft_protocol::PROTOCOL_VERSION
    );
    assert!(output.stderr.contains(&expected), "{output}");
}

#[test]
fn a_host_name_resolves() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let file = ws.file("by-name.txt", b"resolved");
    let address = format!("localhost:{}", server.addr.port());
    ftc(&ws.src(), &["send", &address, &file]).success();
    assert_eq!(ws.stored_names(), ["by-name.txt"]);
}

#[test]
fn an_unreadable_local_file_is_refused_before_connecting() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    // A FIFO is neither a regular file nor a folder.
    let fifo = ws.src().join("pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        panic!("mkfifo is needed for this test");
    }
    let output = ftc(
        &ws.src(),
        &["send", &server.address(), fifo.to_str().unwrap()],
    );
    output.expect_code(2);
    assert!(output.stderr.contains("not a regular file"), "{output}");
}

#[test]
fn a_local_file_first_without_a_server_is_not_taken_for_a_host() {
    let ws = Workspace::new();
    ws.file("note.txt", b"n");
    ws.file("part1.bin", b"p");
    let output = ftc(&ws.src(), &["send", "note.txt", "part1.bin"]);
    assert_ne!(output.code(), Some(0), "{output}");
    assert!(output.stderr.contains("no server given"), "{output}");
    assert!(!output.stderr.contains("note.txt:7878"), "{output}");
}

#[test]
fn completions_into_a_pipe_closed_early_end_quietly() {
    let ws = Workspace::new();
    let ftc_path = integration_tests::bin("ftc");
    let script = format!(
        "\"{}\" completions bash | head -c 1 > /dev/null; echo \"${{PIPESTATUS[0]}}\"",
        ftc_path.display()
    );
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(ws.src())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "0",
        "{stderr}"
    );
}

#[test]
fn a_server_that_accepts_and_never_answers_is_given_up_on_in_the_handshake() {
    let ws = Workspace::new();
    // Accepts connections and never says a word (bounded: the test ends the thread's use).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(20));
        drop(socket);
    });
    let output = ftc(
        &ws.src(),
        &[
            "info",
            &address,
            "--fingerprint",
            &format!("SHA256:{}", "ab".repeat(32)),
        ],
    );
    output.expect_code(3);
    assert!(output.stderr.contains("TLS handshake"), "{output}");
    assert!(
        output.stderr.contains("10s"),
        "the handshake's own bound: {output}"
    );
    drop(holder);
}
