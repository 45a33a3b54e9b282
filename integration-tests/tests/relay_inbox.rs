//! Files left for users who are not online (`ftc send --to USER --leave`): kept durably in
//! their inbox on the server, listed by `ftc inbox`, delivered when they listen; declined,
//! blocked, expired and over-quota files.

use std::{fs, path::Path, time::Duration};

use integration_tests::{
    blake3_hex, eventually, ndjson, random_bytes,
    relay::{
        add_user, expect_names_refused, ftc_as, listen, more_bytes_than_offered_end_the_session,
        one_file_for_bob, out_dir, spawn_listener,
    },
    spawn_ftc_env, Output, Server, Workspace,
};

/// The recipient events of an `ftc send --json`.
fn recipients(sent: &Output) -> Vec<serde_json::Value> {
    ndjson(sent)
        .into_iter()
        .filter(|e| e["event"] == "recipient")
        .collect()
}

/// `ftc inbox --json` as `user`: the files waiting, as (from, name, size).
fn inbox(ws: &Workspace, server: &Server, user: &str, token: &str) -> Vec<(String, String, u64)> {
    let listed = ftc_as(ws, user, token, &["inbox", &server.address(), "--json"]);
    listed.success();
    ndjson(&listed)
        .into_iter()
        .filter(|e| e["event"] == "inbox_file")
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Files in the server's inbox area.
fn inbox_area(store: &Path) -> Vec<String> {
    fs::read_dir(store.join(".fts/inbox"))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn files_left_for_an_offline_user_survive_a_crash_and_reach_them_when_they_listen() {
    let ws = Workspace::new();
    let mut server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let carol = add_user(&ws, "carol");
    fs::create_dir_all(ws.src().join("docs/scans")).unwrap();
    let big = random_bytes(3 << 20, 21);
    fs::write(ws.src().join("docs/scans/page.bin"), &big).unwrap();
    fs::write(ws.src().join("docs/letter.txt"), b"dear bob").unwrap();

    // Without --leave an absent recipient is an error, and nothing is kept for him.
    let refused = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), "docs", "--to", "bob"],
    );
    refused.expect_code(1);
    assert!(refused.stderr.contains("bob: not-online"), "{refused}");
    assert!(inbox(&ws, &server, "bob", &bob).is_empty());

    // carol is online and gets it live; bob is not and gets it in his inbox.
    let carol_in = out_dir(&ws, "carol-in");
    let carol_listens = listen(
        &ws,
        &server,
        ("carol", &carol),
        &carol_in,
        &["--yes", "--once"],
    );
    let sent = ftc_as(
        &ws,
        "alice",
        &alice,
        &[
            "send",
            &server.address(),
            "docs",
            "--to",
            "bob,carol",
            "--leave",
            "--json",
        ],
    );
    sent.success();
    let outcomes: Vec<(String, String)> = recipients(&sent)
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("bob".to_owned(), "left-in-inbox".to_owned()),
            ("carol".to_owned(), "accepted".to_owned())
        ]
    );
    carol_listens.finish().success();
    assert!(fs::read(carol_in.join("docs/scans/page.bin")).unwrap() == big);

    let waiting = inbox(&ws, &server, "bob", &bob);
    assert_eq!(
        waiting,
        [
            ("alice".to_owned(), "docs/letter.txt".to_owned(), 8),
            (
                "alice".to_owned(),
                "docs/scans/page.bin".to_owned(),
                3 << 20
            ),
        ]
    );
    // Nobody else sees bob's inbox, and it is not among the stored files.
    assert!(inbox(&ws, &server, "alice", &alice).is_empty());
    assert!(ws.stored_names().is_empty(), "{:?}", ws.stored_names());
    let human = ftc_as(&ws, "bob", &bob, &["inbox", &server.address()]);
    human.success();
    assert!(
        human.stdout.contains("docs/letter.txt  from alice"),
        "{human}"
    );
    assert!(human.stdout.contains("2 files waiting"), "{human}");

    // Acknowledged means durable: a crash of the server loses none of it.
    server.kill();
    let server = ws.server(&[]);
    assert_eq!(inbox(&ws, &server, "bob", &bob), waiting);

    let bob_in = out_dir(&ws, "bob-in");
    let bob_listens = spawn_listener(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
    let received = bob_listens.finish();
    received.success();
    assert!(
        received
            .stdout
            .contains("received docs/letter.txt from alice"),
        "{received}"
    );
    assert!(
        received
            .stdout
            .contains(&format!("blake3 {}", blake3_hex(&big))),
        "{received}"
    );
    assert_eq!(
        fs::read(bob_in.join("docs/letter.txt")).unwrap(),
        b"dear bob"
    );
    assert!(fs::read(bob_in.join("docs/scans/page.bin")).unwrap() == big);
    // Delivered and verified: gone from the inbox, its bytes too.
    let emptied = eventually(Duration::from_secs(10), || {
        inbox(&ws, &server, "bob", &bob).is_empty() && inbox_area(&ws.store_dir()).is_empty()
    });
    assert!(emptied, "{:?}", inbox(&ws, &server, "bob", &bob));
}

#[test]
fn a_full_inbox_refuses_what_does_not_fit_and_left_files_expire() {
    let ws = Workspace::new();
    let server = ws.server(&["--inbox-quota", "100K", "--inbox-ttl", "4s"]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let large = ws.file("large.bin", &random_bytes(150 << 10, 1));
    let small = ws.file("small.bin", &random_bytes(60 << 10, 2));
    let leave = |path: &str, to: &str| {
        ftc_as(
            &ws,
            "alice",
            &alice,
            &["send", &server.address(), path, "--to", to, "--leave"],
        )
    };

    let too_large = leave(&large, "bob");
    too_large.expect_code(1);
    assert!(
        too_large.stderr.contains("bob's inbox is full"),
        "{too_large}"
    );
    let nobody = leave(&small, "nobody");
    nobody.expect_code(1);
    assert!(nobody.stderr.contains("no user named 'nobody'"), "{nobody}");

    leave(&small, "bob").success();
    // 60 KiB wait; another 60 KiB would pass the 100 KiB quota.
    let second = ws.file("second.bin", &random_bytes(60 << 10, 3));
    let over = leave(&second, "bob");
    over.expect_code(1);
    assert!(over.stderr.contains("inbox is full"), "{over}");
    assert_eq!(
        inbox(&ws, &server, "bob", &bob),
        [("alice".to_owned(), "small.bin".to_owned(), 60 << 10)]
    );
    assert_eq!(inbox_area(&ws.store_dir()).len(), 1);

    // Past the time to live the file is removed, record and bytes.
    let expired = eventually(Duration::from_secs(20), || {
        inbox(&ws, &server, "bob", &bob).is_empty() && inbox_area(&ws.store_dir()).is_empty()
    });
    assert!(expired, "the left file outlived --inbox-ttl");
    // With the room back, the second file fits.
    leave(&second, "bob").success();
}

#[test]
fn a_declined_inbox_offer_is_discarded_and_a_blocked_sender_never_reaches_the_listener() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let mallory = add_user(&ws, "mallory");
    let note = ws.file("note.txt", b"from alice");
    let junk = ws.file("junk.txt", b"from mallory");
    for (user, token, path) in [("alice", &alice, &note), ("mallory", &mallory, &junk)] {
        ftc_as(
            &ws,
            user,
            token,
            &["send", &server.address(), path, "--to", "bob", "--leave"],
        )
        .success();
    }
    assert_eq!(inbox(&ws, &server, "bob", &bob).len(), 2);

    // bob blocks mallory and, without a terminal or --yes, declines alice's offer.
    let bob_in = out_dir(&ws, "bob-in");
    let bob_listens = spawn_listener(
        &ws,
        &server,
        ("bob", &bob),
        &bob_in,
        &["--once", "--block", "mallory"],
    );
    let heard = bob_listens.finish();
    heard.success();
    assert!(heard.stderr.contains("alice offers 1 file"), "{heard}");
    assert!(!heard.stderr.contains("mallory"), "{heard}");
    assert!(!bob_in.join("note.txt").exists());
    assert!(!bob_in.join("junk.txt").exists());
    // Both are gone from the inbox: declined, and from a blocked sender.
    let emptied = eventually(Duration::from_secs(10), || {
        inbox(&ws, &server, "bob", &bob).is_empty() && inbox_area(&ws.store_dir()).is_empty()
    });
    assert!(emptied, "{:?}", inbox(&ws, &server, "bob", &bob));
}

#[test]
fn hostile_leaves_are_refused_and_leave_nothing_in_the_inbox() {
    use ft_protocol::{
        relay::{RecipientOutcome, RelayBegin, RelayData, RelayFileEnd},
        Credentials, Hash, Request, Response,
    };
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let credentials = Credentials {
            user: "alice".into(),
            token: alice.clone(),
        };
        let (mut client, _) =
            integration_tests::RawClient::handshake_as(server.addr, Some(credentials)).await;
        let hostile = [
            "../escape.txt",
            "/etc/passwd",
            "bell\u{7}.txt",
            ".fts/catalog.db",
        ];
        expect_names_refused(&mut client, &hostile, Request::Leave).await;
        // Accepted for bob's inbox; then a wrong hash: not kept.
        client
            .send(Request::Leave(one_file_for_bob("wrong.txt", 3)))
            .await;
        let offer = match client.recv().await {
            Some(Response::OfferAnswers(answers)) => {
                assert!(matches!(
                    answers.recipients[0].outcome,
                    RecipientOutcome::Accepted(_)
                ));
                answers.offer
            }
            other => panic!("expected OfferAnswers, got {other:?}"),
        };
        let begin = Request::RelayBegin(RelayBegin {
            file: 0,
            start: 0,
            starts: vec![Some(0)],
        });
        client.send(begin).await;
        let data = |bytes: &'static [u8]| {
            Request::RelayData(RelayData {
                offer,
                data: bytes::Bytes::from_static(bytes),
            })
        };
        client.send(data(b"abc")).await;
        client
            .send(Request::RelayEnd(RelayFileEnd {
                offer,
                file: 0,
                hash: Hash([0; 32]),
            }))
            .await;
        client
            .send(Request::OfferEnd(ft_protocol::relay::OfferEnd { offer }))
            .await;
        let mut refused = false;
        while let Some(response) = client.recv().await {
            match response {
                Response::Delivered(delivered) => {
                    assert!(!delivered.ok, "{delivered:?}");
                    refused = delivered.message.contains("do not match");
                }
                Response::OfferClosed(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(refused, "a wrong hash is refused");
        // More bytes than offered: the sender is cut off.
        let violation = more_bytes_than_offered_end_the_session(&mut client, Request::Leave).await;
        assert!(violation, "a size lie ends the sender's session");
    });
    // Nothing waits for bob, and nothing half-written stays in the inbox area but the copy
    // of the cut leave (kept for a resume), no larger than its file was offered.
    let clean = eventually(Duration::from_secs(10), || {
        inbox(&ws, &server, "bob", &bob).is_empty()
            && inbox_area(&ws.store_dir())
                .iter()
                .all(|name| name.starts_with("part-"))
    });
    assert!(clean, "{:?}", inbox_area(&ws.store_dir()));
    assert!(kept_copy(&ws.store_dir()) <= 3);
    assert!(!ws.root.path().join("escape.txt").exists());
}

#[test]
fn a_cut_delivery_resumes_from_the_listeners_verified_copy_and_a_false_one_starts_over() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let bob_in = out_dir(&ws, "bob");
    let kept = 3 << 20;
    for (name, seed, prefix_is_true) in [("report.bin", 31, true), ("scan.bin", 32, false)] {
        let content = random_bytes(8 << 20, seed);
        let path = ws.file(name, &content);
        let left = ftc_as(
            &ws,
            "alice",
            &alice,
            &["send", &server.address(), &path, "--to", "bob", "--leave"],
        );
        left.success();
        // What an earlier delivery cut after 3 MiB left behind: the true first bytes, or
        // bytes that only claim to be them.
        let mut prefix = content[..kept].to_vec();
        if !prefix_is_true {
            prefix[kept / 2] ^= 0xff;
        }
        fs::write(bob_in.join(format!(".{name}.ftc-part")), &prefix).unwrap();

        let listener = spawn_listener(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
        listener.finish().success();
        assert!(
            fs::read(bob_in.join(name)).unwrap() == content,
            "{name} arrives whole and verified"
        );
        assert!(!bob_in.join(format!(".{name}.ftc-part")).exists());
        let resumed = server.log().lines().any(|line| {
            line.contains("resumes from the listener's verified copy")
                && line.contains(name)
                && line.contains(&format!("offset={kept}"))
        });
        assert_eq!(resumed, prefix_is_true, "{name}: {}", server.log());
    }
    assert!(inbox(&ws, &server, "bob", &bob).is_empty());
}

/// The largest resumable copy (`part-*`) in the server's inbox area, in bytes.
fn kept_copy(store: &Path) -> u64 {
    inbox_area(store)
        .iter()
        .filter(|name| name.starts_with("part-"))
        .filter_map(|name| fs::metadata(store.join(".fts/inbox").join(name)).ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0)
}

/// alice leaves `path` for bob, slowly, and is killed once the server's copy holds more than
/// `at_least` bytes; returns what the copy holds once the server stopped writing it.
fn leave_and_cut(ws: &Workspace, server: &Server, alice: &str, path: &str, at_least: u64) -> u64 {
    let store = ws.store_dir();
    let mut cut = spawn_ftc_env(
        &ws.src(),
        &[
            "send",
            &server.address(),
            path,
            "--to",
            "bob",
            "--leave",
            "--bwlimit",
            "8M",
        ],
        &[("FTC_USER", "alice"), ("FTC_TOKEN", alice)],
    );
    let grew = eventually(Duration::from_secs(30), || kept_copy(&store) > at_least);
    assert!(grew, "the server's copy grew");
    cut.child.kill().unwrap();
    let _ = cut.child.wait();
    // The server notices the cut and stops writing; the copy stays.
    let mut kept = kept_copy(&store);
    let settled = eventually(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = kept_copy(&store);
        let same = now == kept;
        kept = now;
        same
    });
    assert!(settled && kept > at_least, "kept {kept}");
    kept
}

#[test]
fn a_cut_leave_continues_from_the_copy_the_server_kept() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let size = 40 << 20;
    let content = random_bytes(size, 41);
    let path = ws.file("archive.bin", &content);
    let store = ws.store_dir();
    let kept = leave_and_cut(&ws, &server, &alice, &path, 10 << 20);
    assert!(kept < size as u64, "kept {kept}");
    assert!(inbox(&ws, &server, "bob", &bob).is_empty());

    let again = ftc_as(
        &ws,
        "alice",
        &alice,
        &[
            "send",
            &server.address(),
            &path,
            "--to",
            "bob",
            "--leave",
            "--json",
        ],
    );
    again.success();
    let summary = ndjson(&again)
        .into_iter()
        .find(|e| e["event"] == "summary")
        .unwrap();
    let sent = summary["bytes_sent"].as_u64().unwrap();
    let missing = size as u64 - kept;
    assert!(
        sent < missing + missing / 10 + (1 << 20),
        "continued: {sent} bytes sent for {missing} missing"
    );
    assert_eq!(
        inbox(&ws, &server, "bob", &bob),
        [("alice".to_owned(), "archive.bin".to_owned(), size as u64)]
    );
    assert_eq!(kept_copy(&store), 0, "the copy became the inbox file");

    let bob_in = out_dir(&ws, "bob");
    let listener = spawn_listener(&ws, &server, ("bob", &bob), &bob_in, &["--yes", "--once"]);
    listener.finish().success();
    assert!(fs::read(bob_in.join("archive.bin")).unwrap() == content);
}

#[test]
fn kept_copies_of_cut_leaves_count_against_the_inbox_quota() {
    let ws = Workspace::new();
    let server = ws.server(&["--inbox-quota", "20M"]);
    let alice = add_user(&ws, "alice");
    let bob = add_user(&ws, "bob");
    let first = ws.file("first.bin", &random_bytes(20 << 20, 51));
    let second = ws.file("second.bin", &random_bytes(15 << 20, 52));
    leave_and_cut(&ws, &server, &alice, &first, 10 << 20);

    // What the cut copy holds plus a new 15 MB file is more than bob's 20 MB.
    let refused = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &second, "--to", "bob", "--leave"],
    );
    refused.expect_code(1);
    assert!(refused.stderr.contains("bob's inbox is full"), "{refused}");
    // Continuing the cut file counts its copy once.
    let continued = ftc_as(
        &ws,
        "alice",
        &alice,
        &["send", &server.address(), &first, "--to", "bob", "--leave"],
    );
    continued.success();
    assert_eq!(inbox(&ws, &server, "bob", &bob).len(), 1);
}

/// Senders that begin leaving files and then go quiet cannot take every writer the server
/// has: at most 16 inboxes are written at once, the rest are refused as busy, and the
/// server still answers others.
#[test]
fn inbox_writers_are_bounded_server_wide() {
    use ft_protocol::{
        relay::{RecipientOutcome, RelayBegin},
        Credentials, ErrorCode, Request, Response,
    };
    let ws = Workspace::new();
    let server = ws.server(&[]);
    let alice = add_user(&ws, "alice");
    let names: Vec<String> = (0..9).map(|n| format!("r{n}")).collect();
    for name in &names {
        add_user(&ws, name);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut quiet_senders = Vec::new();
    let mut refused = 0;
    for _ in 0..2 {
        let credentials = Credentials {
            user: "alice".into(),
            token: alice.clone(),
        };
        let offer = ft_protocol::relay::Offer {
            to: names.clone(),
            ..one_file_for_bob("held.txt", 3)
        };
        let client = runtime.block_on(async {
            let (mut client, _) =
                integration_tests::RawClient::handshake_as(server.addr, Some(credentials)).await;
            client.send(Request::Leave(offer)).await;
            let answers = match client.recv().await {
                Some(Response::OfferAnswers(answers)) => answers,
                other => panic!("expected OfferAnswers, got {other:?}"),
            };
            for answer in &answers.recipients {
                if let RecipientOutcome::Refused { code, .. } = &answer.outcome {
                    assert_eq!(*code, ErrorCode::Busy, "{answer:?}");
                    refused += 1;
                }
            }
            // Begin the file, then say nothing more.
            client
                .send(Request::RelayBegin(RelayBegin {
                    file: 0,
                    start: 0,
                    starts: answers.recipients.iter().map(|_| Some(0)).collect(),
                }))
                .await;
            client
        });
        quiet_senders.push(client);
    }
    assert_eq!(refused, 2 * names.len() - 16, "16 writers at most");
    let info = ftc_as(&ws, "alice", &alice, &["info", &server.address()]);
    info.success();
    drop(quiet_senders);
}
