//! Helpers for the relay's tests: users, `ftc` as a user, a background listener.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    eventually, ftc_with, fts_user, ndjson, spawn_ftc_env, Output, RunningFtc, Server, Workspace,
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
