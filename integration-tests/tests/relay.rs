//! Users sending files to other online users through the server: live, verified, to several
//! at once, declined, timed out, not online, cancelled and resumed, and hostile offers.

use std::{fs, time::Duration};

use ft_protocol::{
    relay::{Answer, Decision, FileAnswer, Listen},
    Credentials, Request, Response,
};
use integration_tests::{
    blake3_hex, eventually, ftc_with, fts_user, ndjson, random_bytes,
    relay::{
        add_user, expect_names_refused, ftc_as, listen, more_bytes_than_offered_end_the_session,
        out_dir, relay_data_ends_the_session, wait_listening,
    },
    spawn_ftc_env, RawClient, Workspace,
};

#[test]
fn alice_sends_a_folder_to_bob_who_saves_it_verified_without_the_server_storing_it() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    fs::create_dir_all(ws.src().join("trip/day1")).unwrap();
    let big = random_bytes(200 << 20, 5);
    fs::write(ws.src().join("trip/day1/video.bin"), &big).unwrap();
    fs::write(ws.src().join("trip/notes.txt"), b"went well").unwrap();
    let inbox = out_dir(&ws, "bob-inbox");
    let rss_before = server.status_field("VmRSS").unwrap_or(0);

    let listener = listen(&ws, &server, ("bob", &bob), &inbox, &["--yes", "--once"]);
    let sent = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), "trip", "--to", "bob"],
    );
    sent.success();
    assert!(
        sent.stdout.contains("bob: 2 of 2 files saved and verified"),
        "{sent}"
    );
    assert!(
        sent.stdout.contains("every recipient verified every file"),
        "{sent}"
    );
    let received = listener.finish();
    received.success();
    assert!(
        received
            .stdout
            .contains("received trip/notes.txt from alice"),
        "{received}"
    );
    assert!(
        received
            .stdout
            .contains(&format!("blake3 {}", blake3_hex(&big))),
        "{received}"
    );
    assert_eq!(
        fs::read(inbox.join("trip/notes.txt")).unwrap(),
        b"went well"
    );
    assert!(fs::read(inbox.join("trip/day1/video.bin")).unwrap() == big);
    assert!(!inbox.join("trip/day1/.video.bin.ftc-part").exists());
    // Streamed through, never stored: nothing in the server's directory, bounded memory.
    assert!(ws.stored_names().is_empty(), "{:?}", ws.stored_names());
    assert_eq!(ws.partial_entries(), 0);
    let peak = server.status_field("VmHWM").unwrap_or(0);
    assert!(
        peak.saturating_sub(rss_before) < 64 * 1024,
        "fts grew by {} KiB relaying 200 MiB",
        peak.saturating_sub(rss_before)
    );
    // Sending a name bob already has keeps both on his side: nothing is replaced.
    fs::write(inbox.join("notes.txt"), b"bob's own notes").unwrap();
    let listener = listen(&ws, &server, ("bob", &bob), &inbox, &["--yes", "--once"]);
    ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), "trip/notes.txt", "--to", "bob"],
    )
    .success();
    listener.finish().success();
    assert_eq!(
        fs::read(inbox.join("notes.txt")).unwrap(),
        b"bob's own notes"
    );
    assert_eq!(fs::read(inbox.join("notes (1).txt")).unwrap(), b"went well");
}

#[test]
fn declined_timed_out_and_not_online_recipients_are_reported_each() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let carol = add_user(&ws, "carol");
    add_user(&ws, "dave");
    let path = ws.file("offer.txt", b"do you want this?");
    // bob: no terminal and no --yes, so he declines.
    let bob_in = out_dir(&ws, "bob");
    let bob_listener = listen(&ws, &server, ("bob", &bob), &bob_in, &["--once"]);
    // carol: listens and never answers.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut silent = runtime.block_on(async {
        let credentials = Credentials {
            user: "carol".into(),
            token: carol.clone(),
        };
        let (mut client, _) = RawClient::handshake_as(server.addr, Some(credentials)).await;
        client
            .send(Request::Listen(Listen { blocked: vec![] }))
            .await;
        assert!(matches!(client.recv().await, Some(Response::Listening(_))));
        client
    });
    wait_listening(&ws, &server, "carol", &carol);
    let sent = ftc_as(
        &ws,
        "alice",
        &alice,
        &[
            "send",
            &server.address(),
            &path,
            "--to",
            "bob,carol,dave",
            "--offer-timeout",
            "2s",
        ],
    );
    sent.expect_code(1);
    assert!(sent.stderr.contains("bob: declined"), "{sent}");
    assert!(sent.stderr.contains("carol: timed-out"), "{sent}");
    assert!(sent.stderr.contains("dave: not-online"), "{sent}");
    bob_listener.finish().success();
    assert!(
        fs::read_dir(&bob_in).unwrap().next().is_none(),
        "bob saved nothing"
    );
    // carol's connection was told the offer is gone.
    runtime.block_on(async {
        let mut told = false;
        // Presence messages come first (each ftc run above was online for a moment).
        for _ in 0..200 {
            match silent.recv().await {
                Some(Response::OfferCancelled(_)) => {
                    told = true;
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert!(told, "the silent recipient was told the offer timed out");
    });
}

#[test]
fn one_stream_feeds_two_recipients_and_one_that_stalls_is_dropped() {
    let ws = Workspace::new();
    let server = ws.server(&["--idle-timeout", "3s"]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let carol = add_user(&ws, "carol");
    let content = random_bytes(48 << 20, 9);
    let path = ws.file("shared.bin", &content);
    let bob_in = out_dir(&ws, "bob");
    let bob_listener = listen(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
    // carol accepts and then stops reading.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stalled = runtime.spawn({
        let addr = server.addr;
        let carol = carol.clone();
        async move {
            let credentials = Credentials {
                user: "carol".into(),
                token: carol,
            };
            let (mut client, _) = RawClient::handshake_as(addr, Some(credentials)).await;
            client
                .send(Request::Listen(Listen { blocked: vec![] }))
                .await;
            loop {
                match client.recv().await {
                    Some(Response::Offered(offered)) => {
                        let answers = vec![
                            FileAnswer::Accept {
                                offset: 0,
                                prefix_hash: None
                            };
                            offered.files.len()
                        ];
                        client
                            .send(Request::Answer(Answer {
                                offer: offered.offer,
                                decision: Decision::Accept(answers),
                            }))
                            .await;
                        // Never reads again, for longer than the idle timeout.
                        tokio::time::sleep(Duration::from_secs(15)).await;
                        return client;
                    }
                    Some(_) => continue,
                    None => panic!("carol's connection closed before the offer"),
                }
            }
        }
    });
    wait_listening(&ws, &server, "carol", &carol);
    let sent = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &path, "--to", "bob,carol"],
    );
    sent.expect_code(1);
    assert!(
        sent.stdout.contains("bob: 1 of 1 files saved and verified"),
        "{sent}"
    );
    assert!(sent.stderr.contains("carol: stopped"), "{sent}");
    bob_listener.finish().success();
    assert!(fs::read(bob_in.join("shared.bin")).unwrap() == content);
    stalled.abort();
}

#[test]
fn a_receiver_killed_mid_file_keeps_its_part_and_the_next_send_resumes() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let size = 60 << 20;
    let content = random_bytes(size, 13);
    let path = ws.file("long.bin", &content);
    let bob_in = out_dir(&ws, "bob");
    let partial = bob_in.join(".long.bin.ftc-part");
    let mut listener = listen(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
    let sender = spawn_ftc_env(
        &ws.src(),
        &[
            "send",
            &server.address(),
            &path,
            "--to",
            "bob",
            "--bwlimit",
            "12M",
            "--json",
        ],
        &[("FTC_USER", "alice"), ("FTC_TOKEN", &alice)],
    );
    let grew = eventually(Duration::from_secs(30), || {
        fs::metadata(&partial)
            .map(|m| m.len() > 15 << 20)
            .unwrap_or(false)
    });
    assert!(grew, "bob's partial file grew");
    listener.child.kill().unwrap();
    let _ = listener.child.wait();
    let cut = sender.finish();
    cut.expect_code(1);
    assert!(
        !bob_in.join("long.bin").exists(),
        "no final file from a cut transfer"
    );
    let kept = fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < size as u64, "kept {kept}");

    let listener = listen(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
    let again = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &path, "--to", "bob", "--json"],
    );
    again.success();
    listener.finish().success();
    assert!(fs::read(bob_in.join("long.bin")).unwrap() == content);
    let summary = ndjson(&again)
        .into_iter()
        .find(|e| e["event"] == "summary")
        .unwrap();
    let sent = summary["bytes_sent"].as_u64().unwrap();
    let missing = size as u64 - kept;
    assert!(
        sent < missing + missing / 10 + (1 << 20),
        "resumed: {sent} bytes sent for {missing} missing"
    );
}

#[test]
fn hostile_offers_and_lies_about_sizes_are_refused() {
    let ws = Workspace::new();
    let server = ws.server(&["--idle-timeout", "5s"]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let bob_in = out_dir(&ws, "bob");
    let listener = listen(&ws, &server, ("bob", &bob), &bob_in, &["--yes"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let credentials = Credentials {
            user: "alice".into(),
            token: alice.clone(),
        };
        let (mut client, _) = RawClient::handshake_as(server.addr, Some(credentials)).await;
        let hostile = ["../escape.txt", "/etc/passwd", "bell\u{7}.txt", "a/../../b"];
        expect_names_refused(&mut client, &hostile, Request::Offer).await;
        // An honest offer, then more bytes than offered: the sender is cut off.
        let violation = more_bytes_than_offered_end_the_session(&mut client, Request::Offer).await;
        assert!(violation, "a size lie ends the sender's session");
        // An empty piece, which would keep an offer open without moving a byte.
        let (mut client, _) = RawClient::handshake_as(
            server.addr,
            Some(Credentials {
                user: "alice".into(),
                token: alice.clone(),
            }),
        )
        .await;
        let violation = relay_data_ends_the_session(&mut client, Request::Offer, b"").await;
        assert!(violation, "an empty RelayData ends the sender's session");
    });
    // bob is told the offer is over and saves nothing; nothing lands outside his folder.
    std::thread::sleep(Duration::from_millis(500));
    let mut running = listener;
    let _ = running.child.kill();
    let output = running.finish();
    assert!(!bob_in.join("liar.txt").exists(), "{output}");
    assert!(!ws.root.path().join("escape.txt").exists());
    let leftovers: Vec<_> = fs::read_dir(&bob_in)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| !name.to_string_lossy().ends_with(".ftc-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A user removed while listening drops out of the list of users at once, cannot be sent
/// to, and its listening connection is let go; anonymous clients may not see who is online.
#[test]
fn a_removed_user_is_not_listed_nor_reachable_and_its_listener_ends() {
    let ws = Workspace::new();
    let server = ws.server(&["--anonymous", "upload"]);
    let alice = add_user(&ws, "alice");
    let carol = add_user(&ws, "carol");
    let path = ws.file("hello.txt", b"hi carol");
    let carol_in = out_dir(&ws, "carol");
    let mut listener = listen(&ws, &server, ("carol", &carol), &carol_in, &["--yes"]);
    let listed = |who: &str| {
        let users = ftc_as(
            &ws,
            "alice",
            &alice,
            &["users", &server.address(), "--json"],
        );
        users.success();
        ndjson(&users)
            .iter()
            .any(|e| e["event"] == "user" && e["name"] == who)
    };
    assert!(listed("carol"));
    let anonymous = ftc_with(
        &ws.src(),
        &["users", &server.address()],
        &[("FTC_USER", ""), ("FTC_TOKEN", "")],
        None,
    );
    assert_ne!(anonymous.code(), Some(0), "{anonymous}");
    assert!(anonymous.stderr.contains("log in"), "{anonymous}");
    assert!(!anonymous.stdout.contains("carol"), "{anonymous}");

    fts_user(&ws.store_dir(), &["remove", "carol"]).success();
    assert!(!listed("carol"), "a removed user is not listed as online");
    let sent = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &path, "--to", "carol"],
    );
    sent.expect_code(1);
    assert!(sent.stderr.contains("carol: not-online"), "{sent}");
    // Its listener is let go within seconds, without waiting for its keepalive (every 20 s).
    let ended = integration_tests::wait_bounded(&mut listener.child, Duration::from_secs(15));
    assert!(ended.is_some_and(|status| !status.success()), "{ended:?}");
    assert!(
        fs::read_dir(&carol_in).unwrap().next().is_none(),
        "carol received nothing"
    );
}

/// Listening connections cannot keep a full server busy: a user holds at most four, and an
/// idle one gives its slot up to a new client when every slot is taken.
#[test]
fn listeners_are_bounded_per_user_and_give_way_on_a_full_server() {
    let ws = Workspace::new();
    let server = ws.server(&["--max-connections", "5"]);
    let alice = add_user(&ws, "alice");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut listeners = runtime.block_on(async {
        let mut listeners = Vec::new();
        for n in 0..5 {
            let credentials = Credentials {
                user: "alice".into(),
                token: alice.clone(),
            };
            let (mut client, _) = RawClient::handshake_as(server.addr, Some(credentials)).await;
            client
                .send(Request::Listen(Listen { blocked: vec![] }))
                .await;
            match client.recv().await {
                Some(Response::Listening(_)) if n < 4 => listeners.push(client),
                Some(Response::Error(error)) if n == 4 => {
                    assert_eq!(error.code, ft_protocol::ErrorCode::Busy, "{error:?}");
                    assert!(error.message.contains("listens on 4"), "{error:?}");
                }
                other => panic!("listener {n}: {other:?}"),
            }
        }
        listeners
    });
    // Four listeners and one more connection fill the server; a new client still gets in,
    // and the oldest idle listener is told why it was closed.
    let _held = runtime.block_on(RawClient::handshake_as(
        server.addr,
        Some(Credentials {
            user: "alice".into(),
            token: alice.clone(),
        }),
    ));
    let info = ftc_as(&ws, "alice", &alice, &["info", &server.address()]);
    info.success();
    let told = runtime.block_on(async {
        for listener in &mut listeners {
            for _ in 0..50 {
                let next = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
                match next.ok().flatten() {
                    Some(Response::Error(error)) => {
                        return error.code == ft_protocol::ErrorCode::Busy
                            && error.message.contains("listening connection was idle");
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        false
    });
    assert!(told, "an idle listener gave way");
}

#[test]
fn anonymous_clients_cannot_relay_and_blocked_senders_are_declined() {
    let ws = Workspace::new();
    let server = ws.server(&["--anonymous", "upload"]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let path = ws.file("hello.txt", b"hi bob");
    let bob_in = out_dir(&ws, "bob");
    let listener = listen(
        &ws,
        &server,
        ("bob", &bob),
        &bob_in,
        &["--yes", "--block", "alice"],
    );
    let blocked = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &path, "--to", "bob"],
    );
    blocked.expect_code(1);
    assert!(blocked.stderr.contains("bob: declined"), "{blocked}");
    let anonymous = ftc_with(
        &ws.src(),
        &["send", &server.address(), &path, "--to", "bob"],
        &[("FTC_USER", ""), ("FTC_TOKEN", "")],
        None,
    );
    anonymous.expect_code(1);
    assert!(anonymous.stderr.contains("forbidden"), "{anonymous}");
    // Listening as bob takes bob's token.
    let impostor = ftc_as(&ws, "bob", &alice, &["listen", &server.address(), "--once"]);
    impostor.expect_code(3);
    let mut running = listener;
    let _ = running.child.kill();
    running.finish();
    assert!(fs::read_dir(&bob_in).unwrap().next().is_none());
}

#[test]
fn bwlimit_holds_a_relayed_send_and_a_leave_down() {
    // As for uploads: the limit must slow each transfer by at least half of what it should
    // (12 MiB at 8 MiB/s: 1.5 s expected, at least 0.75 s asserted).
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let content = random_bytes(12 << 20, 61);
    let path = ws.file("paced.bin", &content);
    let inbox = out_dir(&ws, "bob-paced");
    let at_least = Duration::from_millis(750);

    // alice's paced send to bob, with `extra` arguments; how long it took.
    let paced_send = |extra: &[&str]| {
        let address = server.address();
        let mut args = vec!["send", address.as_str(), path.as_str(), "--to", "bob"];
        args.extend(["--bwlimit", "8M"]);
        args.extend(extra);
        let started = std::time::Instant::now();
        ftc_as(&ws, "alice", &alice, &args).success();
        started.elapsed()
    };

    let listener = listen(&ws, &server, ("bob", &bob), &inbox, &["--yes", "--once"]);
    let relayed_in = paced_send(&[]);
    listener.finish().success();
    assert!(relayed_in >= at_least, "relayed in {relayed_in:?}");
    assert!(fs::read(inbox.join("paced.bin")).unwrap() == content);

    // bob is away now: the same limit holds the copy left in his inbox.
    let left_in = paced_send(&["--leave"]);
    assert!(left_in >= at_least, "left in {left_in:?}");
    let waiting = ftc_as(&ws, "bob", &bob, &["inbox", &server.address(), "--json"]);
    let left: Vec<_> = ndjson(&waiting)
        .into_iter()
        .filter(|e| e["event"] == "inbox_file")
        .map(|e| (e["name"].clone(), e["size"].clone()))
        .collect();
    assert_eq!(left, vec![("paced.bin".into(), (12u64 << 20).into())]);
}
