//! What `ftc` prints: text for people, NDJSON for scripts (`--json`). Results go to stdout,
//! diagnostics and progress bars to stderr. The JSON schema is documented in the README.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ft_client::{ClientError, DownloadReport, FailureCode, SendReport, Skipped, TransferEvent};
use ft_protocol::{Authenticated, CatalogEntry, ServerInfo};
use indicatif::BinaryBytes;
use serde_json::{json, Value};

use crate::{exit::Exit, progress::Progress};

use crate::terminal::err;
/// Like `println!`, but a closed stdout (`ftc list | head`) is not a panic: the reader has
/// what it wanted, so the rest is dropped quietly.
pub(crate) use crate::terminal::out;

/// Progress events are printed at most this often per file in JSON mode (plus the last).
const JSON_PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Prints one JSON object as a line: exactly (JSON escapes control characters itself, and a
/// reader of JSON wants the server's text as it is).
pub(crate) fn emit(value: &Value) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{value}");
}

/// Reports a failure of a whole command, with its causes: text on stderr, and a JSON line
/// in JSON mode.
pub(crate) fn report_error(err: impl Into<anyhow::Error>, json: bool) -> Exit {
    let err = err.into();
    let exit = Exit::for_error(&err);
    let message = format!("{err:#}");
    match err.downcast::<ClientError>() {
        // One line per local path, each with its own prefix.
        Ok(ClientError::LocalFiles(problems)) => {
            for problem in problems {
                err!("ftc: error: {:#}", anyhow::Error::new(problem));
            }
        }
        _ => err!("ftc: error: {message}"),
    }
    if json {
        emit(&json!({"event": "error", "message": message}));
    }
    exit
}

/// Draws transfer events: bars for people, throttled NDJSON for scripts.
pub(crate) struct EventOutput {
    json: bool,
    bars: Progress,
    /// Per file: name, size, and when progress was last printed.
    files: Mutex<HashMap<usize, (String, u64, Instant)>>,
}

impl EventOutput {
    /// NDJSON lines with `json`, otherwise bars if `bars` allows them.
    pub(crate) fn new(json: bool, bars: bool) -> Self {
        Self {
            json,
            bars: Progress::new(bars && !json),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Draws or prints one event.
    pub(crate) fn handle(&self, event: &TransferEvent) {
        self.bars.handle(event);
        if self.json {
            if let Some(line) = self.to_json(event) {
                emit(&line);
            }
        }
    }

    /// Clears the bars before the summary is printed.
    pub(crate) fn finish(&self) {
        self.bars.finish();
    }

    fn to_json(&self, event: &TransferEvent) -> Option<Value> {
        Some(match event {
            TransferEvent::BatchStarted { files, bytes } => {
                json!({"event": "started", "files": files, "bytes": bytes})
            }
            TransferEvent::FileStarted {
                index,
                name,
                size,
                offset,
            } => {
                if let Ok(mut files) = self.files.lock() {
                    files.insert(*index, (name.clone(), *size, Instant::now()));
                }
                json!({"event": "file_started", "index": index, "name": name, "size": size, "offset": offset})
            }
            TransferEvent::FileProgress { index, position } => {
                let mut files = self.files.lock().ok()?;
                let (name, size, last) = files.get_mut(index)?;
                if *position < *size && last.elapsed() < JSON_PROGRESS_INTERVAL {
                    return None;
                }
                *last = Instant::now();
                json!({"event": "progress", "index": index, "name": name, "bytes": position, "size": size})
            }
            TransferEvent::FileStored {
                index,
                name,
                stored_name,
                size,
                hash,
            } => json!({
                "event": "file_done", "index": index, "name": name, "stored_name": stored_name,
                "size": size, "blake3": hash.to_hex(),
            }),
            TransferEvent::FileFailed {
                index,
                name,
                code,
                message,
            } => json!({
                "event": "file_failed", "index": index, "name": name, "code": code.as_str(), "message": message,
            }),
            TransferEvent::Retrying {
                attempt,
                max,
                delay,
                reason,
            } => json!({
                "event": "retry", "attempt": attempt, "max": max,
                "delay_ms": delay.as_millis() as u64, "reason": reason,
            }),
        })
    }
}

fn rate(bytes: u64, elapsed: Duration) -> BinaryBytes {
    BinaryBytes((bytes as f64 / elapsed.as_secs_f64().max(1e-6)) as u64)
}

/// Prints what landed, what did not, and one summary line; returns the exit status.
pub(crate) fn send_report(report: SendReport, skipped: &[Skipped], json: bool) -> Exit {
    let stored_files = report.stored().count();
    let stored_bytes: u64 = report.stored().map(|(_, stored)| stored.size).sum();
    let failed = report.outcomes.len() - stored_files;
    if json {
        for skip in skipped {
            emit(
                &json!({"event": "skipped", "path": skip.path.display().to_string(), "reason": skip.reason}),
            );
        }
        for (folder, failure) in &report.folder_failures {
            emit(
                &json!({"event": "folder_failed", "name": folder, "code": failure.code.as_str(), "message": failure.message}),
            );
        }
        emit(&json!({
            "event": "summary", "files": report.outcomes.len(), "stored": stored_files,
            "failed": failed, "bytes": stored_bytes, "elapsed_ms": report.elapsed.as_millis() as u64,
            "retries": report.retries, "bytes_resumed": report.bytes_resumed,
            "bytes_sent": report.bytes_sent, "bytes_on_wire": report.bytes_on_wire,
            "folders_made": report.folders_made.len(), "skipped": skipped.len(),
            "ok": report.all_stored() && report.connection_error.is_none(),
        }));
    } else {
        {
            // One write per few thousand lines rather than one per line, so that listing
            // many thousands of files costs milliseconds, not a system call each.
            use std::io::Write as _;
            let mut listing =
                std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            for (file, stored) in report.stored() {
                let _ = write!(listing, "stored {}", file.name);
                if stored.stored_name != file.name {
                    let _ = write!(listing, " as {}", stored.stored_name);
                }
                let _ = writeln!(listing, " ({} bytes, blake3 {})", stored.size, stored.hash);
            }
            for folder in &report.folders_made {
                let _ = writeln!(listing, "made folder {folder}");
            }
            let _ = listing.flush();
        }
        for skip in skipped {
            err!("ftc: skipped {}: {}", skip.path.display(), skip.reason);
        }
        let mut unconfirmed = 0;
        for (file, failure) in report.failed() {
            if failure.code == FailureCode::ConnectionLost {
                unconfirmed += 1;
                continue;
            }
            err!(
                "ftc: not stored: {}: {} ({})",
                file.path.display(),
                failure.message,
                failure.code
            );
        }
        for (folder, failure) in &report.folder_failures {
            err!(
                "ftc: folder not made: {folder}: {} ({})",
                failure.message,
                failure.code
            );
        }
        if unconfirmed > 0 {
            err!(
                "ftc: {unconfirmed} {} not stored: the server did not confirm them",
                files_word(unconfirmed)
            );
        }
        let verdict = if report.all_stored() {
            format!("all {stored_files} verified (BLAKE3)")
        } else {
            format!("{failed} failed")
        };
        let mut extras = retries_and_resumes(report.retries, report.bytes_resumed, "sent");
        if report.bytes_on_wire < report.bytes_sent {
            extras.push_str(&format!(
                "; {} bytes on the wire (zstd, {:.1}x smaller)",
                report.bytes_on_wire,
                report.bytes_sent as f64 / report.bytes_on_wire.max(1) as f64
            ));
        }
        out!(
            "{stored_files} of {} {} stored, {stored_bytes} bytes ({}) in {:.2}s ({}/s); {verdict}{extras}",
            report.outcomes.len(),
            files_word(report.outcomes.len()),
            BinaryBytes(stored_bytes),
            report.elapsed.as_secs_f64(),
            rate(stored_bytes, report.elapsed),
        );
    }
    let all_stored = report.all_stored();
    batch_exit(report.connection_error, all_stored)
}

/// Prints what was saved and what was not; returns the exit status.
pub(crate) fn get_report(report: DownloadReport, json: bool) -> Exit {
    let saved: Vec<_> = report
        .outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|d| (&o.name, d)))
        .collect();
    let bytes: u64 = saved.iter().map(|(_, d)| d.size).sum();
    let failed = report.outcomes.len() - saved.len();
    if json {
        emit(&json!({
            "event": "summary", "files": report.outcomes.len(), "saved": saved.len(),
            "failed": failed, "bytes": bytes, "elapsed_ms": report.elapsed.as_millis() as u64,
            "retries": report.retries, "bytes_resumed": report.bytes_resumed,
            "ok": report.all_saved() && report.connection_error.is_none(),
        }));
    } else {
        for (name, done) in &saved {
            out!(
                "saved {name} to {} ({} bytes, blake3 {})",
                done.path.display(),
                done.size,
                done.hash
            );
        }
        for outcome in &report.outcomes {
            if let Err(failure) = &outcome.result {
                err!(
                    "ftc: not saved: {}: {} ({})",
                    outcome.name,
                    failure.message,
                    failure.code
                );
            }
        }
        let verdict = if report.all_saved() {
            format!("all {} verified (BLAKE3)", saved.len())
        } else {
            format!("{failed} failed")
        };
        let extras = retries_and_resumes(report.retries, report.bytes_resumed, "downloaded");
        out!(
            "{} of {} {} saved, {bytes} bytes ({}) in {:.2}s ({}/s); {verdict}{extras}",
            saved.len(),
            report.outcomes.len(),
            files_word(report.outcomes.len()),
            BinaryBytes(bytes),
            report.elapsed.as_secs_f64(),
            rate(bytes, report.elapsed),
        );
    }
    let all_saved = report.all_saved();
    batch_exit(report.connection_error, all_saved)
}

/// The summary's notes on reconnects and on bytes a resume saved (`moved`: sent or
/// downloaded).
fn retries_and_resumes(retries: u32, bytes_resumed: u64, moved: &str) -> String {
    let mut extras = String::new();
    if retries > 0 {
        extras.push_str(&format!("; {retries} retries"));
    }
    if bytes_resumed > 0 {
        extras.push_str(&format!(
            "; {bytes_resumed} bytes resumed, not {moved} again"
        ));
    }
    extras
}

/// "file" or "files".
fn files_word(count: usize) -> &'static str {
    if count == 1 {
        "file"
    } else {
        "files"
    }
}

/// The exit status of a batch: a failed connection outranks failed files.
fn batch_exit(connection_error: Option<ClientError>, all_ok: bool) -> Exit {
    if let Some(err) = connection_error {
        err!("ftc: error: {:#}", anyhow::Error::new(err));
        return Exit::Connection;
    }
    if all_ok {
        Exit::Success
    } else {
        Exit::SomeFilesFailed
    }
}

/// Prints the catalog: aligned columns, or one JSON object per entry and a summary. An
/// admin sees every user's files, so `owners` adds who stored each.
pub(crate) fn listing(entries: &[CatalogEntry], owners: bool, json: bool) {
    let total: u64 = entries.iter().map(|entry| entry.size).sum();
    if json {
        for entry in entries {
            emit(&json!({
                "event": "entry", "name": entry.name, "sent_name": entry.sent_name,
                "size": entry.size, "blake3": entry.hash.to_hex(), "added_at": entry.added_at,
                "owner": entry.owner,
            }));
        }
        emit(&json!({"event": "summary", "files": entries.len(), "bytes": total}));
        return;
    }
    let size_width = entries
        .iter()
        .map(|entry| entry.size.to_string().len())
        .max()
        .unwrap_or(0)
        .max("SIZE".len());
    let time_width = entries
        .iter()
        .map(|entry| entry.added_at.len())
        .max()
        .unwrap_or(0)
        .max("ADDED".len());
    let owner_width = entries
        .iter()
        .map(|entry| entry.owner.len())
        .max()
        .unwrap_or(0)
        .max("OWNER".len());
    let owner = |text: &str| {
        if owners {
            format!("{text:<owner_width$}  ")
        } else {
            String::new()
        }
    };
    out!(
        "{:>size_width$}  {:<time_width$}  {:<64}  {}NAME",
        "SIZE",
        "ADDED",
        "BLAKE3",
        owner("OWNER")
    );
    for entry in entries {
        out!(
            "{:>size_width$}  {:<time_width$}  {}  {}{}",
            entry.size,
            entry.added_at,
            entry.hash,
            owner(&entry.owner),
            entry.name
        );
    }
    out!(
        "{} {}, {total} bytes ({})",
        entries.len(),
        files_word(entries.len()),
        BinaryBytes(total)
    );
}

/// Prints the server's information (its figures are those of the user's namespace, or of
/// everything for an admin) and who the client is logged in as.
pub(crate) fn info(server: &str, who: &Authenticated, info: &ServerInfo, json: bool) {
    if json {
        emit(&json!({
            "event": "info", "server": server, "user": who.user, "role": who.role.as_str(),
            "software": info.software,
            "protocol_version": info.protocol_version, "capabilities": info.capabilities,
            "files": info.files, "bytes": info.bytes, "free_bytes": info.free_bytes,
            "max_file_size": info.max_file_size, "max_connections": info.max_connections,
            "partial_files": info.partial_files, "partial_bytes": info.partial_bytes,
        }));
        return;
    }
    let capabilities = if info.capabilities.is_empty() {
        "none".to_owned()
    } else {
        info.capabilities.join(", ")
    };
    out!("server:           {server}");
    out!("logged in as:     {} (role {})", who.user, who.role);
    out!("software:         {}", info.software);
    out!("protocol:         {}", info.protocol_version);
    out!("capabilities:     {capabilities}");
    out!("files stored:     {}", info.files);
    out!(
        "bytes stored:     {} ({})",
        info.bytes,
        BinaryBytes(info.bytes)
    );
    out!(
        "kept for resume:  {} interrupted uploads, {} bytes ({})",
        info.partial_files,
        info.partial_bytes,
        BinaryBytes(info.partial_bytes)
    );
    out!(
        "free space:       {} ({})",
        info.free_bytes,
        BinaryBytes(info.free_bytes)
    );
    out!(
        "max file size:    {} ({})",
        info.max_file_size,
        BinaryBytes(info.max_file_size)
    );
    out!("max connections:  {}", info.max_connections);
}
