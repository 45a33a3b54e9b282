//! One function per command, shared by the command line and the interactive shell. Each
//! runs against a [`Session`] and returns the exit status it earned.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use ft_client::{
    download_files, plan_uploads, send_files, ClientError, GetOptions, SendOptions, Session,
};
use ft_protocol::ConflictPolicy;
use serde_json::json;

use crate::{
    exit::Exit,
    output::{self, emit, out, report_error, EventOutput},
};

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// NDJSON instead of text.
    pub(crate) json: bool,
    /// Progress bars allowed (they still need a terminal on stderr).
    pub(crate) bars: bool,
}

/// `send`: plans (checking every local path before connecting), then uploads.
pub(crate) async fn send(
    session: &mut Session,
    paths: &[PathBuf],
    conflict: ConflictPolicy,
    retries: u32,
    compress: bool,
    style: Style,
) -> Exit {
    if paths.is_empty() {
        return report_error(anyhow!("no files or folders given"), style.json);
    }
    let mut plan = match plan_uploads(paths) {
        Ok(plan) => plan,
        Err(err) => return report_error(err, style.json),
    };
    let options = SendOptions {
        retries,
        compress,
        ..SendOptions::new(conflict)
    };
    let events = EventOutput::new(style.json, style.bars);
    let skipped = std::mem::take(&mut plan.skipped);
    let report = send_files(session, plan, options, &|event| events.handle(&event)).await;
    events.finish();
    output::send_report(report, &skipped, style.json)
}

/// `get`: downloads names into `out_dir`.
pub(crate) async fn get(
    session: &mut Session,
    names: &[String],
    out_dir: &Path,
    force: bool,
    retries: u32,
    style: Style,
) -> Exit {
    if names.is_empty() {
        return report_error(anyhow!("no names given"), style.json);
    }
    let options = GetOptions {
        force,
        retry: SendOptions {
            retries,
            ..SendOptions::new(ConflictPolicy::KeepBoth)
        },
    };
    let events = EventOutput::new(style.json, style.bars);
    let report = download_files(session, names, out_dir, options, &|event| {
        events.handle(&event)
    })
    .await;
    events.finish();
    output::get_report(report, style.json)
}

/// `list`: the catalog, optionally filtered by a glob pattern.
pub(crate) async fn list(session: &mut Session, pattern: Option<String>, json: bool) -> Exit {
    let listed = match session.client().await {
        Ok(client) => {
            let admin = client.authenticated().role == ft_protocol::Role::Admin;
            client.list(pattern).await.map(|entries| (entries, admin))
        }
        Err(err) => Err(err),
    };
    match listed {
        Ok((entries, admin)) => {
            output::listing(&entries, admin, json);
            Exit::Success
        }
        Err(err) => {
            session.reset();
            report_error(err, json)
        }
    }
}

/// `rm`: deletes each name; unknown names are reported and make the exit status 1.
pub(crate) async fn rm(session: &mut Session, names: &[String], json: bool) -> Exit {
    if names.is_empty() {
        return report_error(anyhow!("no names given"), json);
    }
    let (mut deleted, mut failed) = (0usize, 0usize);
    for name in names {
        let result = match session.client().await {
            Ok(client) => client.delete(name).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(gone) => {
                deleted += 1;
                if json {
                    emit(&json!({"event": "deleted", "name": gone.name, "size": gone.size}));
                } else {
                    out!("deleted {} ({} bytes)", gone.name, gone.size);
                }
            }
            Err(ClientError::Failed { code, message }) => {
                failed += 1;
                if json {
                    emit(
                        &json!({"event": "file_failed", "name": name, "code": code.as_str(), "message": message}),
                    );
                }
                crate::terminal::err!("ftc: not deleted: {name}: {message} ({code})");
            }
            Err(err) => {
                session.reset();
                return report_error(err, json);
            }
        }
    }
    if json {
        emit(&json!({"event": "summary", "deleted": deleted, "failed": failed, "ok": failed == 0}));
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::SomeFilesFailed
    }
}

/// `info`: the server's identity, usage and limits.
pub(crate) async fn info(session: &mut Session, json: bool) -> Exit {
    let server = session.address().to_string();
    let result = match session.client().await {
        Ok(client) => {
            let who = client.authenticated().clone();
            client.info().await.map(|info| (info, who))
        }
        Err(err) => Err(err),
    };
    match result {
        Ok((info, who)) => {
            output::info(&server, &who, &info, json);
            Exit::Success
        }
        Err(err) => {
            session.reset();
            report_error(err, json)
        }
    }
}
