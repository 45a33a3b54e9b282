//! What `ftc` prints: text for people, NDJSON for scripts (`--json`). Results go to stdout,
//! diagnostics and progress bars to stderr. The JSON schema is documented in the README.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ft_client::{
    ClientError, DownloadReport, FailureCode, LocalFileError, SendReport, Skipped, StoreStatus,
    TransferEvent,
};
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

/// How much `ftc` says besides results' summary and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    /// `-q`: errors and the summary only.
    Quiet,
    /// A line per file as it finishes.
    Normal,
    /// `-v`: also sizes in bytes, hashes of unchanged files, and each file's start.
    Verbose,
}

/// Draws transfer events: bars and a line per finished file for people (printed as each
/// file finishes, so an interrupted run or a pipe keeps what happened), throttled NDJSON
/// for scripts.
pub(crate) struct EventOutput {
    json: bool,
    verbosity: Verbosity,
    /// `get` says "saved", `send` says "stored".
    download: bool,
    bars: Progress,
    /// Per file: name, size, and when progress was last printed.
    files: Mutex<HashMap<usize, (String, u64, Instant)>>,
    /// Files started and not yet finished: on Ctrl-C, what the server keeps for resume.
    in_flight: Mutex<std::collections::BTreeMap<usize, String>>,
    /// Files finished so far, by how.
    tally: Mutex<Tally>,
}

/// What an interrupted batch had done.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) stored: usize,
    pub(crate) unchanged: usize,
    pub(crate) failed: usize,
    pub(crate) bytes: u64,
}

impl EventOutput {
    /// NDJSON lines with `json`, otherwise lines as `verbosity` says and bars if `bars`
    /// allows them. `download`: the batch is a `get`.
    pub(crate) fn new(json: bool, bars: bool, verbosity: Verbosity, download: bool) -> Self {
        Self {
            json,
            verbosity,
            download,
            bars: Progress::new(bars && !json && verbosity > Verbosity::Quiet),
            files: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(std::collections::BTreeMap::new()),
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Draws or prints one event.
    pub(crate) fn handle(&self, event: &TransferEvent) {
        self.bars.handle(event);
        self.keep_count(event);
        if self.json {
            if let Some(line) = self.to_json(event) {
                emit(&line);
            }
        } else {
            // A failure is said as it happens, on stderr, even with -q; one the connection
            // decided (the server never confirmed it) is summed up at the end instead.
            if let TransferEvent::FileFailed {
                name,
                code,
                message,
                ..
            } = event
            {
                if *code != FailureCode::ConnectionLost {
                    let what = if self.download {
                        "not saved"
                    } else {
                        "not stored"
                    };
                    self.bars
                        .suspend(|| err!("ftc: {what}: {name}: {message} ({code})"));
                }
            }
            if self.verbosity > Verbosity::Quiet {
                if let Some(line) = self.to_text(event) {
                    self.bars.suspend(|| out!("{line}"));
                }
            }
        }
    }

    /// Counts finished files and remembers unfinished ones.
    fn keep_count(&self, event: &TransferEvent) {
        let (Ok(mut in_flight), Ok(mut tally)) = (self.in_flight.lock(), self.tally.lock()) else {
            return;
        };
        match event {
            TransferEvent::FileStarted { index, name, .. } => {
                in_flight.insert(*index, name.clone());
            }
            TransferEvent::FileStored { index, size, .. } => {
                in_flight.remove(index);
                tally.stored += 1;
                tally.bytes += size;
            }
            TransferEvent::FileSkipped { index, .. } => {
                in_flight.remove(index);
                tally.unchanged += 1;
            }
            TransferEvent::FileFailed { index, .. } => {
                in_flight.remove(index);
                tally.failed += 1;
            }
            _ => {}
        }
    }

    /// What finished so far, and the files begun and not finished (an upload's are kept by
    /// the server for resume, a download's in its `.ftc-part` file).
    pub(crate) fn interrupted(&self) -> (Tally, Vec<String>) {
        let tally = self.tally.lock().map(|t| *t).unwrap_or_default();
        let unfinished = self
            .in_flight
            .lock()
            .map(|files| files.values().cloned().collect())
            .unwrap_or_default();
        (tally, unfinished)
    }

    /// The line printed for a finished file, in text mode.
    fn to_text(&self, event: &TransferEvent) -> Option<String> {
        let verbose = self.verbosity == Verbosity::Verbose;
        Some(match event {
            TransferEvent::FileStarted {
                name, size, offset, ..
            } if verbose => {
                let from = if *offset > 0 {
                    format!(", resuming at {}", BinaryBytes(*offset))
                } else {
                    String::new()
                };
                let verb = if self.download { "getting" } else { "sending" };
                format!("{verb} {name} ({}{from})", BinaryBytes(*size))
            }
            TransferEvent::FileStored {
                name,
                stored_name,
                size,
                hash,
                ..
            } if self.download => {
                format!("saved {name} to {stored_name} ({size} bytes, blake3 {hash})")
            }
            TransferEvent::FileStored {
                name,
                stored_name,
                size,
                hash,
                ..
            } => {
                let renamed = if stored_name != name {
                    format!(" as {stored_name}")
                } else {
                    String::new()
                };
                format!("stored {name}{renamed} ({size} bytes, blake3 {hash})")
            }
            TransferEvent::FileSkipped {
                name,
                stored_name,
                size,
                status,
                ..
            } => {
                let held = if stored_name != name {
                    format!(" (as {stored_name})")
                } else {
                    String::new()
                };
                match status {
                    StoreStatus::NameTaken => {
                        format!("skipped {name}: the server has that name (--skip-existing)")
                    }
                    _ if verbose => format!("unchanged {name}{held} ({size} bytes)"),
                    _ => format!("unchanged {name}{held}"),
                }
            }
            _ => return None,
        })
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
            TransferEvent::Verifying { index, name, bytes } => json!({
                "event": "verifying", "index": index, "name": name, "bytes": bytes,
            }),
            TransferEvent::FileSkipped {
                index,
                name,
                stored_name,
                size,
                status,
            } => json!({
                "event": "file_skipped", "index": index, "name": name, "stored_name": stored_name,
                "size": size, "status": status.as_str(),
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

/// Prints what did not land and one summary line (each file's own line was printed as it
/// finished); returns the exit status. `unreadable`: entries inside folders that could not
/// be read, which make the batch partial (exit 1).
pub(crate) fn send_report(
    report: SendReport,
    skipped: &[Skipped],
    unreadable: &[LocalFileError],
    json: bool,
    verbosity: Verbosity,
) -> Exit {
    let stored_files = report.stored().count();
    let stored_bytes: u64 = report.stored().map(|(_, stored)| stored.size).sum();
    let unchanged = report.with_status(StoreStatus::Unchanged).count();
    let name_taken = report.with_status(StoreStatus::NameTaken).count();
    let renamed = report
        .stored()
        .filter(|(file, stored)| stored.stored_name != file.name)
        .count();
    let failed = report.failed().count() + unreadable.len();
    let total = report.outcomes.len() + unreadable.len();
    if json {
        for skip in skipped {
            emit(
                &json!({"event": "skipped", "path": skip.path.display().to_string(), "reason": skip.reason}),
            );
        }
        for problem in unreadable {
            emit(&json!({
                "event": "file_failed", "path": problem_path(problem), "code": "local",
                "message": format!("{:#}", anyhow::Error::new(clone_problem(problem))),
            }));
        }
        for (folder, failure) in &report.folder_failures {
            emit(
                &json!({"event": "folder_failed", "name": folder, "code": failure.code.as_str(), "message": failure.message}),
            );
        }
        emit(&json!({
            "event": "summary", "files": total, "stored": stored_files,
            "unchanged": unchanged, "renamed": renamed, "name_taken": name_taken,
            "failed": failed, "bytes": stored_bytes, "elapsed_ms": report.elapsed.as_millis() as u64,
            "retries": report.retries, "bytes_resumed": report.bytes_resumed,
            "bytes_sent": report.bytes_sent, "bytes_on_wire": report.bytes_on_wire,
            "folders_made": report.folders_made.len(), "skipped": skipped.len(),
            "ok": report.all_stored() && unreadable.is_empty() && report.connection_error.is_none(),
        }));
    } else {
        if verbosity > Verbosity::Quiet {
            for folder in &report.folders_made {
                out!("made folder {folder}");
            }
        }
        for skip in skipped {
            err!("ftc: skipped {}: {}", skip.path.display(), skip.reason);
        }
        for problem in unreadable {
            err!(
                "ftc: not sent: {:#}",
                anyhow::Error::new(clone_problem(problem))
            );
        }
        // Other failures were printed as they happened.
        let unconfirmed: Vec<&str> = report
            .failed()
            .filter(|(_, failure)| failure.code == FailureCode::ConnectionLost)
            .map(|(file, _)| file.name.as_str())
            .collect();
        for (folder, failure) in &report.folder_failures {
            err!(
                "ftc: folder not made: {folder}: {} ({})",
                failure.message,
                failure.code
            );
        }
        if !unconfirmed.is_empty() {
            /// Names listed before "and N more".
            const NAMED: usize = 10;
            let mut names = unconfirmed[..unconfirmed.len().min(NAMED)].join(", ");
            if unconfirmed.len() > NAMED {
                names.push_str(&format!(" and {} more", unconfirmed.len() - NAMED));
            }
            err!(
                "ftc: {} {} not stored: the server did not confirm them: {names}",
                unconfirmed.len(),
                files_word(unconfirmed.len())
            );
        }
        let verdict = if report.all_stored() && unreadable.is_empty() {
            format!(
                "all {} verified (BLAKE3)",
                stored_files + unchanged + name_taken
            )
        } else {
            format!("{failed} failed")
        };
        let mut counts = String::new();
        for (count, what) in [
            (unchanged, "unchanged"),
            (renamed, "renamed"),
            (name_taken, "skipped (name taken)"),
        ] {
            if count > 0 {
                counts.push_str(&format!(", {count} {what}"));
            }
        }
        let mut extras = retries_and_resumes(report.retries, report.bytes_resumed, "sent");
        if report.bytes_on_wire < report.bytes_sent {
            extras.push_str(&format!(
                "; {} on the wire (zstd, {:.1}x smaller)",
                BinaryBytes(report.bytes_on_wire),
                report.bytes_sent as f64 / report.bytes_on_wire.max(1) as f64
            ));
        }
        out!(
            "{stored_files} of {total} {} stored{counts}, {} in {:.2}s ({}/s); {verdict}{extras}",
            files_word(total),
            BinaryBytes(stored_bytes),
            report.elapsed.as_secs_f64(),
            rate(report.bytes_sent, report.elapsed),
        );
    }
    let all_stored = report.all_stored() && unreadable.is_empty();
    batch_exit(report.connection_error, all_stored)
}

/// The path a local problem is about.
fn problem_path(problem: &LocalFileError) -> String {
    match problem {
        LocalFileError::Unreadable { path, .. }
        | LocalFileError::UnreadableFolder { path, .. }
        | LocalFileError::NotRegular { path }
        | LocalFileError::NonUtf8Name { path } => path.display().to_string(),
    }
}

/// A copy of a local problem, to print it with its cause (the OS error is not `Clone`).
fn clone_problem(problem: &LocalFileError) -> LocalFileError {
    let copy = |source: &std::io::Error| std::io::Error::new(source.kind(), source.to_string());
    match problem {
        LocalFileError::Unreadable { path, source } => LocalFileError::Unreadable {
            path: path.clone(),
            source: copy(source),
        },
        LocalFileError::UnreadableFolder { path, source } => LocalFileError::UnreadableFolder {
            path: path.clone(),
            source: copy(source),
        },
        LocalFileError::NotRegular { path } => LocalFileError::NotRegular { path: path.clone() },
        LocalFileError::NonUtf8Name { path } => LocalFileError::NonUtf8Name { path: path.clone() },
    }
}

/// Prints what an interrupted batch did and how to go on; the exit status is 130.
pub(crate) fn interrupted(events: &EventOutput, json: bool) -> Exit {
    let (tally, unfinished) = events.interrupted();
    let verb = if events.download { "saved" } else { "stored" };
    if json {
        emit(&json!({
            "event": "interrupted", verb: tally.stored, "unchanged": tally.unchanged,
            "failed": tally.failed, "bytes": tally.bytes, "unfinished": unfinished,
        }));
    } else {
        err!(
            "ftc: interrupted: {} {} {verb} ({}){}, {} failed",
            tally.stored,
            files_word(tally.stored),
            BinaryBytes(tally.bytes),
            if tally.unchanged > 0 {
                format!(", {} unchanged", tally.unchanged)
            } else {
                String::new()
            },
            tally.failed
        );
        if !unfinished.is_empty() {
            let kept = if events.download {
                "kept in .ftc-part files"
            } else {
                "kept by the server"
            };
            err!(
                "ftc: {} unfinished, the bytes received {kept} for resume: {}",
                unfinished.len(),
                unfinished.join(", ")
            );
        }
        err!("ftc: to finish, run the same command again: what is already there is not sent again");
    }
    Exit::Interrupted
}

/// Prints what was saved and what was not; returns the exit status.
/// `unchanged`: files an earlier run had saved already, not fetched again.
pub(crate) fn get_report(report: DownloadReport, unchanged: usize, json: bool) -> Exit {
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
            "unchanged": unchanged,
            "failed": failed, "bytes": bytes, "elapsed_ms": report.elapsed.as_millis() as u64,
            "retries": report.retries, "bytes_resumed": report.bytes_resumed,
            "ok": report.all_saved() && report.connection_error.is_none(),
        }));
    } else {
        // Each saved file's line, and each failure but the connection's, was printed as it
        // finished.
        for outcome in &report.outcomes {
            if let Err(failure) = &outcome.result {
                if failure.code != FailureCode::ConnectionLost {
                    continue;
                }
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
        let mut extras = retries_and_resumes(report.retries, report.bytes_resumed, "downloaded");
        if unchanged > 0 {
            extras.push_str(&format!("; {unchanged} unchanged, not fetched again"));
        }
        out!(
            "{} of {} {} saved, {} in {:.2}s ({}/s); {verdict}{extras}",
            saved.len(),
            report.outcomes.len(),
            files_word(report.outcomes.len()),
            BinaryBytes(bytes),
            report.elapsed.as_secs_f64(),
            // Bytes a resume kept from an earlier run did not move in this one.
            rate(bytes.saturating_sub(report.bytes_resumed), report.elapsed),
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
            "; {} resumed, not {moved} again",
            BinaryBytes(bytes_resumed)
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

/// Prints the catalog: aligned columns (see listing.rs), or one JSON object per entry with
/// exact values and a summary.
pub(crate) fn listing(entries: &mut [CatalogEntry], style: crate::listing::ListStyle, json: bool) {
    crate::listing::sort(entries, style.sort);
    let total: u64 = entries.iter().map(|entry| entry.size).sum();
    if json {
        for entry in entries.iter() {
            emit(&json!({
                "event": "entry", "name": entry.name, "sent_name": entry.sent_name,
                "size": entry.size, "blake3": entry.hash.to_hex(), "added_at": entry.added_at,
                "owner": entry.owner, "modified_ns": entry.modified_ns,
            }));
        }
        emit(&json!({"event": "summary", "files": entries.len(), "bytes": total}));
        return;
    }
    {
        use std::io::Write as _;
        let mut listing = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        for line in crate::listing::lines(entries, style) {
            let _ = writeln!(listing, "{}", crate::terminal::safe(&line));
        }
        let _ = listing.flush();
    }
    out!(
        "{} {}, {}",
        entries.len(),
        files_word(entries.len()),
        if style.bytes {
            format!("{total} bytes")
        } else {
            BinaryBytes(total).to_string()
        }
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
