//! Helpers for the relay's tests: users, `ftc` as a user, a background listener.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use ft_protocol::{
    relay::{Offer, OfferedFile, RelayBegin, RelayData},
    Request, Response,
};

use crate::{
    eventually, ftc_with, fts_user, ndjson, spawn_ftc_env, Output, RawClient, RunningFtc, Server,
    Workspace,
};

/// Adds a user with role `write` to the running server's store; its token.
pub fn add_user(ws: &Workspace, name: &str) -> String {
    let added = fts_user(&ws.store_dir(), &["add", name, "--role", "write"]);
    added.success();
    added.stdout.lines().last().unwrap().to_owned()
}

/// `ftc ARGS` as `user`.
pub fn ftc_as(ws: &Workspace, user: &str, token: &str, args: &[&str]) -> Output {
    ftc_with(
        &ws.src(),
        args,
        &[("FTC_USER", user), ("FTC_TOKEN", token)],
        None,
    )
}

/// `ftc listen` as `user` into `out`, in the background, once it shows up as listening.
pub fn listen(
    ws: &Workspace,
    server: &Server,
    (user, token): (&str, &str),
    out: &Path,
    extra: &[&str],
) -> RunningFtc {
    let running = spawn_listener(ws, server, (user, token), out, extra);
    wait_listening(ws, server, user, token);
    running
}

/// `ftc listen` as `user` into `out`, in the background, at once (what waits in its inbox
/// may be received before anyone could see it listening).
pub fn spawn_listener(
    ws: &Workspace,
    server: &Server,
    (user, token): (&str, &str),
    out: &Path,
    extra: &[&str],
) -> RunningFtc {
    let address = server.address();
    let out = out.to_str().unwrap();
    let mut args = vec!["listen", address.as_str(), "-o", out];
    args.extend(extra);
    spawn_ftc_env(
        &ws.src(),
        &args,
        &[("FTC_USER", user), ("FTC_TOKEN", token)],
    )
}

/// Waits (bounded) until `user` is listening.
pub fn wait_listening(ws: &Workspace, server: &Server, user: &str, token: &str) {
    let listening = eventually(Duration::from_secs(15), || {
        let users = ftc_as(ws, user, token, &["users", &server.address(), "--json"]);
        ndjson(&users)
            .iter()
            .any(|e| e["event"] == "user" && e["name"] == user && e["listening"] == true)
    });
    assert!(listening, "{user} never showed up as listening");
}

/// A folder of the workspace, created.
pub fn out_dir(ws: &Workspace, name: &str) -> PathBuf {
    let dir = ws.root.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// An offer (or `Leave`) of one file of `size` bytes named `name` to bob.
pub fn one_file_for_bob(name: &str, size: u64) -> Offer {
    Offer {
        to: vec!["bob".into()],
        files: vec![OfferedFile {
            name: name.into(),
            size,
        }],
        timeout_secs: 5,
    }
}

/// Sends `request(name)` for each hostile name and expects each refused as `invalid-name`,
/// the session going on.
pub async fn expect_names_refused(
    client: &mut RawClient,
    names: &[&str],
    request: impl Fn(Offer) -> Request,
) {
    for name in names {
        client.send(request(one_file_for_bob(name, 3))).await;
        match client.recv().await {
            Some(Response::Failed(failed)) => {
                assert_eq!(failed.code.as_str(), "invalid-name", "{name}")
            }
            other => panic!("{name}: expected Failed, got {other:?}"),
        }
    }
}

/// Reads until the server ends the session; whether it said `protocol-violation`.
pub async fn ends_in_violation(client: &mut RawClient) -> bool {
    while let Some(response) = client.recv().await {
        if let Response::Error(err) = response {
            return err.code.as_str() == "protocol-violation";
        }
    }
    false
}

/// Offers one 3-byte file with `request`, then sends more bytes than that; whether the
/// server ended the session as a protocol violation.
pub async fn more_bytes_than_offered_end_the_session(
    client: &mut RawClient,
    request: impl Fn(Offer) -> Request,
) -> bool {
    relay_data_ends_the_session(client, request, b"more than three").await
}

/// Offers bob a 3-byte file, begins it and sends `data` as its first piece: true when the
/// session ends in a protocol violation.
pub async fn relay_data_ends_the_session(
    client: &mut RawClient,
    request: impl Fn(Offer) -> Request,
    data: &'static [u8],
) -> bool {
    client.send(request(one_file_for_bob("liar.txt", 3))).await;
    let offer = match client.recv().await {
        Some(Response::OfferAnswers(answers)) => answers.offer,
        other => panic!("expected OfferAnswers, got {other:?}"),
    };
    client
        .send(Request::RelayBegin(RelayBegin {
            file: 0,
            start: 0,
            starts: vec![Some(0)],
        }))
        .await;
    client
        .send(Request::RelayData(RelayData {
            offer,
            data: bytes::Bytes::from_static(data),
        }))
        .await;
    ends_in_violation(client).await
}
