//! One function per command, shared by the command line and the interactive shell. Each
//! runs against a [`Session`] and returns the exit status it earned.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use ft_client::{
    download_files, plan_uploads, send_files, ClientError, GetOptions, SendOptions, Session,
    UploadPlan,
};
use ft_protocol::ConflictPolicy;
use serde_json::json;

use crate::{
    exit::Exit,
    listing::ListStyle,
    output::{self, emit, out, report_error, EventOutput, Verbosity},
    select::{is_pattern, select, Selected},
};

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// NDJSON instead of text.
    pub(crate) json: bool,
    /// Progress bars allowed (they still need a terminal on stderr).
    pub(crate) bars: bool,
    /// Per-file lines or not, and how detailed.
    pub(crate) verbosity: Verbosity,
}

/// What `send` was asked to do besides the paths.
#[derive(Debug, Clone, Default)]
pub(crate) struct SendChoices {
    /// Upload options: conflict policy, retries, compression, checksum, bandwidth.
    pub(crate) options: Option<SendOptions>,
    /// The remote folder to store under (`--into`).
    pub(crate) into: Option<String>,
    /// Refuse everything when a folder entry cannot be read (`--strict`).
    pub(crate) strict: bool,
}

/// `send`: plans (checking every local path before connecting), then uploads. Ctrl-C stops
/// at once, says what was done and exits 130.
pub(crate) async fn send(
    session: &mut Session,
    paths: &[PathBuf],
    choices: SendChoices,
    style: Style,
) -> Exit {
    if paths.is_empty() {
        return report_error(anyhow!("no files or folders given"), style.json);
    }
    let mut plan = match plan_uploads(paths, choices.strict) {
        Ok(plan) => plan,
        Err(err) => return report_error(err, style.json),
    };
    if let Some(folder) = &choices.into {
        if let Err(err) = put_into(&mut plan, folder) {
            return report_error(err, style.json);
        }
    }
    // The same file given twice (`x.txt ./x.txt`, a relative and an absolute path, a hard
    // link) under the same name is one file, sent once: its key covers the name and the
    // file's device, inode, size and time.
    let mut keys = std::collections::HashSet::new();
    plan.files.retain(|file| keys.insert(file.key));
    if let Err(err) = refuse_collisions(&plan) {
        return report_error(err, style.json);
    }
    let options = choices
        .options
        .unwrap_or_else(|| SendOptions::new(ConflictPolicy::KeepBoth));
    let events = EventOutput::new(style.json, style.bars, style.verbosity, false);
    let skipped = std::mem::take(&mut plan.skipped);
    let unreadable = std::mem::take(&mut plan.unreadable);
    let on_event = |event| events.handle(&event);
    let sending = send_files(session, plan, options, &on_event);
    let report = tokio::select! {
        report = sending => report,
        _ = tokio::signal::ctrl_c() => {
            events.finish();
            return output::interrupted(&events, style.json);
        }
    };
    events.finish();
    output::send_report(report, &skipped, &unreadable, style.json, style.verbosity)
}

/// Puts every planned name under the remote folder `folder` (`--into`).
fn put_into(plan: &mut UploadPlan, folder: &str) -> anyhow::Result<()> {
    let folder = folder.trim_matches('/');
    let bad = folder.is_empty()
        || folder
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        anyhow::bail!(
            "--into {folder:?}: give a relative folder such as backups/web1 (no '.', '..' \
             or empty parts)"
        );
    }
    for file in &mut plan.files {
        file.name = format!("{folder}/{}", file.name);
        // The resume key covers the name sent under; a file that cannot be looked at again
        // now keeps its old key and is reported as changed when it is read.
        if let Ok(meta) = std::fs::metadata(&file.path) {
            file.key = ft_client::upload_key(&file.name, &meta);
        }
    }
    for made in &mut plan.folders {
        *made = format!("{folder}/{made}");
    }
    Ok(())
}

/// Refuses a plan in which two local files would be sent under one name (`a/x.txt` and
/// `b/x.txt` both become `x.txt`): one would silently become `x (1).txt`, and every re-run
/// would store them again. Sending their folders keeps them apart.
fn refuse_collisions(plan: &UploadPlan) -> anyhow::Result<()> {
    let mut seen: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
    let mut clashes = Vec::new();
    for file in &plan.files {
        if let Some(first) = seen.insert(&file.name, &file.path) {
            if clashes.len() < 5 {
                clashes.push(format!(
                    "{} and {} would both be stored as {}",
                    first.display(),
                    file.path.display(),
                    file.name
                ));
            }
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{}; send their folders instead (names keep their folders), or send them separately \
         with --into",
        clashes.join("; ")
    )
}

/// `get`: downloads names, folders and patterns into `out_dir`, keeping their folders.
pub(crate) async fn get(
    session: &mut Session,
    args: &[String],
    out_dir: &Path,
    options: GetOptions,
    style: Style,
) -> Exit {
    if args.is_empty() {
        return report_error(anyhow!("no names given"), style.json);
    }
    let selection = match select(session, args).await {
        Ok(selection) => selection,
        Err(err) => {
            session.reset();
            return report_error(err, style.json);
        }
    };
    report_unmatched(&selection.unmatched, style.json);
    // A file an earlier run saved already (same size and BLAKE3 as stored) is not fetched
    // again, so running an interrupted `get` again finishes it.
    let (unchanged, wanted) = if options.force {
        (Vec::new(), selection.files.clone())
    } else {
        already_saved(out_dir, selection.files.clone()).await
    };
    for file in &unchanged {
        if style.json {
            emit(&json!({
                "event": "file_skipped", "name": file.name, "stored_name": file.name,
                "size": file.size, "status": "unchanged"
            }));
        } else if style.verbosity != Verbosity::Quiet {
            out!("unchanged {}", file.name);
        }
    }
    let names: Vec<String> = wanted.iter().map(|f| f.name.clone()).collect();
    if names.is_empty() && !unchanged.is_empty() && selection.unmatched.is_empty() {
        if style.json {
            emit(&json!({
                "event": "summary", "files": 0, "saved": 0, "unchanged": unchanged.len(),
                "failed": 0, "bytes": 0, "elapsed_ms": 0, "retries": 0, "bytes_resumed": 0,
                "ok": true
            }));
        } else {
            out!("{} unchanged: nothing to fetch", unchanged.len());
        }
        return Exit::Success;
    }
    if names.is_empty() {
        if style.json {
            let failed = selection.unmatched.len();
            emit(&json!({
                "event": "summary", "files": 0, "saved": 0, "failed": failed, "bytes": 0,
                "elapsed_ms": 0, "retries": 0, "bytes_resumed": 0, "ok": false
            }));
        }
        return Exit::SomeFilesFailed;
    }
    let options = GetOptions {
        expected_bytes: wanted.iter().filter_map(|f| f.size).sum(),
        ..options
    };
    let events = EventOutput::new(style.json, style.bars, style.verbosity, true);
    let on_event = |event| events.handle(&event);
    let downloading = download_files(session, &names, out_dir, options, &on_event);
    let report = tokio::select! {
        report = downloading => report,
        _ = tokio::signal::ctrl_c() => {
            events.finish();
            return output::interrupted(&events, style.json);
        }
    };
    events.finish();
    let exit = output::get_report(report, unchanged.len(), style.json);
    if selection.unmatched.is_empty() {
        exit
    } else {
        exit.max(Exit::SomeFilesFailed)
    }
}

/// Splits `files` into those whose local copy under `out_dir` already has the stored size
/// and BLAKE3, and the rest. Reading the local copies runs off the async threads.
async fn already_saved(out_dir: &Path, files: Vec<Selected>) -> (Vec<Selected>, Vec<Selected>) {
    let out_dir = out_dir.to_path_buf();
    let split = tokio::task::spawn_blocking(move || {
        files.into_iter().partition(|file| {
            let (Some(size), Some(hash)) = (file.size, file.hash) else {
                return false;
            };
            let Some(target) = ft_client::local_path(&out_dir, &file.name) else {
                return false;
            };
            same_content(&target, size, hash)
        })
    });
    split.await.unwrap_or_default()
}

/// Whether the regular file at `path` holds `size` bytes hashing to `hash`.
fn same_content(path: &Path, size: u64, hash: ft_protocol::Hash) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != size {
        return false;
    }
    let mut hasher = blake3::Hasher::new();
    let read = std::fs::File::open(path).and_then(|file| hasher.update_reader(file).map(drop));
    read.is_ok() && ft_protocol::Hash::from(hasher.finalize()) == hash
}

/// `list`: the catalog, optionally filtered by a glob pattern.
pub(crate) async fn list(
    session: &mut Session,
    pattern: Option<String>,
    style: Option<ListStyle>,
    json: bool,
) -> Exit {
    let listed = match session.client().await {
        Ok(client) => {
            let admin = client.authenticated().role == ft_protocol::Role::Admin;
            client.list(pattern).await.map(|entries| (entries, admin))
        }
        Err(err) => Err(err),
    };
    match listed {
        Ok((mut entries, admin)) => {
            let style = style.unwrap_or(ListStyle {
                bytes: false,
                utc: false,
                long: false,
                sort: crate::cli::SortKey::Name,
                folders: false,
                owners: false,
            });
            let style = ListStyle {
                owners: admin,
                ..style
            };
            output::listing(&mut entries, style, json);
            Exit::Success
        }
        Err(err) => {
            session.reset();
            report_error(err, json)
        }
    }
}

/// `rm`: deletes names, folders' files and patterns' matches; unknown names are reported
/// and make the exit status 1. A pattern or folder is a mass delete: it is confirmed on a
/// terminal (`yes` skips the question) and refused elsewhere without `yes`.
pub(crate) async fn rm(session: &mut Session, args: &[String], yes: bool, json: bool) -> Exit {
    if args.is_empty() {
        return report_error(anyhow!("no names given"), json);
    }
    let mut unmatched = 0;
    let names: Vec<String> = if args.iter().any(|arg| is_pattern(arg) || arg.ends_with('/')) {
        let selection = match select(session, args).await {
            Ok(selection) => selection,
            Err(err) => {
                session.reset();
                return report_error(err, json);
            }
        };
        report_unmatched(&selection.unmatched, json);
        unmatched = selection.unmatched.len();
        let bytes: u64 = selection.files.iter().filter_map(|f| f.size).sum();
        let count = selection.files.len();
        if count > 0 && selection.expanded && !yes && !confirm_delete(count, bytes, json) {
            return Exit::BadInput;
        }
        selection.files.into_iter().map(|f| f.name).collect()
    } else {
        args.to_vec()
    };
    // A pattern or folder that matched nothing is a failure, as for `get`.
    let (mut deleted, mut failed) = (0usize, unmatched);
    for name in &names {
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
    } else if names.len() > 1 {
        out!("{deleted} deleted, {failed} failed");
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::SomeFilesFailed
    }
}

/// Says which patterns or folders matched nothing stored (on stderr, and as `file_failed`
/// events with --json).
fn report_unmatched(unmatched: &[String], json: bool) {
    for pattern in unmatched {
        if json {
            let code = ft_protocol::ErrorCode::NotFound.as_str();
            let message = "nothing stored matches";
            emit(
                &json!({"event": "file_failed", "name": pattern, "code": code, "message": message}),
            );
        }
        crate::terminal::err!("ftc: nothing stored matches {pattern}");
    }
}

/// Asks on the terminal before deleting `count` files; without a terminal (or in JSON mode)
/// the answer is no, with a message saying to pass --yes.
fn confirm_delete(count: usize, bytes: u64, json: bool) -> bool {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let what = format!(
        "{count} stored {} ({})",
        if count == 1 { "file" } else { "files" },
        indicatif::BinaryBytes(bytes)
    );
    if json || !std::io::stdin().is_terminal() {
        let err = anyhow!("this would delete {what}; pass --yes to confirm");
        report_error(err, json);
        return false;
    }
    eprint!("ftc: delete {what}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
    if !yes {
        crate::terminal::err!("ftc: nothing deleted");
    }
    yes
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
