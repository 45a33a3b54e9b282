//! Downloads: each file is written to a hidden partial file next to its destination, hashed
//! as it arrives, and renamed to its final name only if it matches the BLAKE3 the catalog
//! recorded. An interrupted download resumes from the partial file, whose prefix the server
//! verifies first; a corrupt stored file is detected and never saved under its name.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ft_protocol::{ErrorCode, Failed, Get, Hash, Request, Response, Sending};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::{
    connection::{interpret, unexpected},
    error::{with_causes, ClientError},
    events::TransferEvent,
    report::{DownloadOutcome, DownloadReport, Downloaded, FailureCode, FileFailure},
    session::Session,
    transfer::SendOptions,
};

/// Longest silence from the server in the middle of a download.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// How a batch is downloaded.
#[derive(Debug, Clone, Copy)]
pub struct GetOptions {
    /// Replace existing local files.
    pub force: bool,
    /// Retry policy, as for uploads ([`SendOptions`]'s `retries` and backoff), and its
    /// `bwlimit`.
    pub retry: SendOptions,
    /// Sum of the files' sizes when known up front (from a listing), so the total progress
    /// is right from the start; 0 when unknown.
    pub expected_bytes: u64,
}

/// Downloads `names` into `out_dir` (keeping their folders), retrying and resuming after
/// connection failures, reporting progress through `on_event`.
pub async fn download_files(
    session: &mut Session,
    names: &[String],
    out_dir: &Path,
    options: GetOptions,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> DownloadReport {
    let started = Instant::now();
    on_event(TransferEvent::BatchStarted {
        files: names.len(),
        bytes: options.expected_bytes,
    });
    let mut throttle = crate::throttle::Throttle::new(options.retry.bwlimit);
    let mut outcomes = Vec::with_capacity(names.len());
    let (mut retries, mut bytes_resumed, mut connection_error) = (0, 0, None);
    // A stored `.x.ftc-part` beside `x` would be taken for x's partial download and
    // destroyed by it: x is then refused instead.
    let targets: std::collections::HashSet<PathBuf> = names
        .iter()
        .filter_map(|name| local_path(out_dir, name))
        .collect();
    for (index, name) in names.iter().enumerate() {
        let mut in_a_row = 0;
        let clash = local_path(out_dir, name)
            .map(|target| partial_path(&target))
            .filter(|partial| targets.contains(partial));
        let result = if let Some(partial) = clash {
            Err(FileFailure {
                code: FailureCode::Local,
                message: format!(
                    "its temporary file {} is another file of this get: get them separately",
                    partial.display()
                ),
            })
        } else {
            loop {
                let mut resumed = 0;
                let attempt = download_one(
                    session,
                    index,
                    name,
                    out_dir,
                    options.force,
                    on_event,
                    &mut resumed,
                    &mut throttle,
                )
                .await;
                bytes_resumed += resumed;
                match attempt {
                    Ok(done) => break Ok(done),
                    Err(Outcome::Failed(failure)) => break Err(failure),
                    Err(Outcome::Connection(err, progressed)) => {
                        session.reset();
                        if progressed {
                            in_a_row = 0;
                        }
                        if !(err.is_transient() && session.connected_once())
                            || in_a_row >= options.retry.retries
                        {
                            connection_error = Some(err);
                            break Err(FileFailure {
                                code: FailureCode::ConnectionLost,
                                message: "the connection failed before the file was complete"
                                    .into(),
                            });
                        }
                        in_a_row += 1;
                        retries += 1;
                        let delay = options.retry.backoff(in_a_row);
                        on_event(TransferEvent::Retrying {
                            attempt: in_a_row,
                            max: options.retry.retries,
                            delay,
                            reason: with_causes(&err),
                        });
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
        };
        match &result {
            Ok(done) => on_event(TransferEvent::FileStored {
                index,
                name: name.clone(),
                stored_name: done.path.display().to_string(),
                size: done.size,
                hash: done.hash,
            }),
            Err(failure) => on_event(TransferEvent::FileFailed {
                index,
                name: name.clone(),
                code: failure.code,
                message: failure.message.clone(),
            }),
        }
        outcomes.push(DownloadOutcome {
            name: name.clone(),
            result,
        });
        if connection_error.is_some() {
            // The server is gone for good: the rest cannot succeed either.
            for (skipped, name) in names.iter().enumerate().skip(index + 1) {
                let failure = FileFailure {
                    code: FailureCode::ConnectionLost,
                    message: "not attempted: the connection failed".into(),
                };
                on_event(TransferEvent::FileFailed {
                    index: skipped,
                    name: name.clone(),
                    code: failure.code,
                    message: failure.message.clone(),
                });
                outcomes.push(DownloadOutcome {
                    name: name.clone(),
                    result: Err(failure),
                });
            }
            break;
        }
    }
    DownloadReport {
        outcomes,
        elapsed: started.elapsed(),
        connection_error,
        retries,
        bytes_resumed,
    }
}

/// Why one attempt at one file stopped.
enum Outcome {
    /// For good.
    Failed(FileFailure),
    /// The connection failed; `true` if bytes arrived first (progress).
    Connection(ClientError, bool),
}

fn failed(code: FailureCode, message: String) -> Outcome {
    Outcome::Failed(FileFailure { code, message })
}

/// Where `name` is saved under `out_dir`. Names come from the server, so they are checked
/// like the server checks uploads: relative, no `.`/`..`, no empty parts, no control
/// characters or backslashes.
pub fn local_path(out_dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('/') || name.contains('\\') {
        return None;
    }
    if name.chars().any(char::is_control) {
        return None;
    }
    let mut path = out_dir.to_path_buf();
    for part in name.split('/') {
        if matches!(part, "" | "." | "..") {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// The hidden file a download (or a relayed file) is written to before it is verified.
pub(crate) fn partial_path(target: &Path) -> PathBuf {
    let file = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{file}.ftc-part"))
}

#[allow(clippy::too_many_arguments)] // one call site; all are facts of this one attempt
async fn download_one(
    session: &mut Session,
    index: usize,
    name: &str,
    out_dir: &Path,
    force: bool,
    on_event: &(dyn Fn(TransferEvent) + Sync),
    resumed: &mut u64,
    throttle: &mut crate::throttle::Throttle,
) -> Result<Downloaded, Outcome> {
    let target = local_path(out_dir, name).ok_or_else(|| {
        failed(
            FailureCode::Local,
            format!("the server's name {name:?} is not a safe local path"),
        )
    })?;
    if !force && target.exists() {
        let message = format!("{} exists; use --force to replace it", target.display());
        return Err(failed(FailureCode::Local, message));
    }
    let local_error = |err: std::io::Error, path: &Path| {
        failed(FailureCode::Local, format!("{}: {err}", path.display()))
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|err| local_error(err, parent))?;
    }
    let partial = partial_path(&target);
    let held = hash_partial(&partial)
        .await
        .map_err(|err| local_error(err, &partial))?;

    let client = session
        .client()
        .await
        .map_err(|err| Outcome::Connection(err, false))?;
    let get = Get {
        name: name.to_owned(),
        offset: held.as_ref().map_or(0, |(len, _)| *len),
        prefix_hash: held
            .as_ref()
            .map(|(_, hasher)| Hash::from(hasher.finalize())),
    };
    client
        .writer
        .send(Request::Get(get))
        .await
        .map_err(|err| Outcome::Connection(err.into(), false))?;
    let header = match next(&mut client.reader)
        .await
        .map_err(|err| Outcome::Connection(err, false))?
    {
        Response::Sending(header) if header.name == name => header,
        Response::Failed(Failed { code, message }) => {
            return Err(failed(FailureCode::Server(code), message))
        }
        other => return Err(Outcome::Connection(unexpected(other), false)),
    };
    let Sending {
        size,
        hash,
        offset,
        modified_ns,
        ..
    } = header;
    let mut hasher = match held {
        Some((_, hasher)) if offset > 0 => hasher,
        _ => blake3::Hasher::new(),
    };
    let mut file = open_partial(&partial, offset)
        .await
        .map_err(|err| local_error(err, &partial))?;
    *resumed = offset;
    on_event(TransferEvent::FileStarted {
        index,
        name: name.to_owned(),
        size,
        offset,
    });

    let mut position = offset;
    while position < size {
        match next(&mut client.reader).await {
            Ok(Response::Data(chunk)) => {
                let len = chunk.data.len() as u64;
                if position + len > size {
                    let err = ClientError::Unexpected("more data than announced".into());
                    return Err(Outcome::Connection(err, true));
                }
                file.write_all(&chunk.data)
                    .await
                    .map_err(|err| local_error(err, &partial))?;
                hasher.update(&chunk.data);
                position += len;
                on_event(TransferEvent::FileProgress { index, position });
                throttle.pace(len).await;
            }
            Ok(Response::Failed(Failed { code, message })) => {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(failed(FailureCode::Server(code), message));
            }
            Ok(other) => return Err(Outcome::Connection(unexpected(other), position > offset)),
            Err(err) => {
                let _ = file.flush().await;
                return Err(Outcome::Connection(err, position > offset));
            }
        }
    }
    file.flush()
        .await
        .map_err(|err| local_error(err, &partial))?;
    let ours = Hash::from(hasher.finalize());
    if ours != hash {
        drop(file);
        let _ = tokio::fs::remove_file(&partial).await;
        let message = format!(
            "received content hashes to {ours}, but the catalog records {hash}: the stored file \
             is damaged; nothing was saved"
        );
        return Err(failed(
            FailureCode::Server(ErrorCode::HashMismatch),
            message,
        ));
    }
    // The sender's modification time comes back with the file (a re-send of it is then
    // recognised as unchanged by size and time).
    let file = file.into_std().await;
    let synced = tokio::task::spawn_blocking(move || {
        if let Some(time) = modified_ns.and_then(system_time) {
            file.set_modified(time)?;
        }
        file.sync_all()
    })
    .await
    .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    synced.map_err(|err| local_error(err, &partial))?;
    place(&partial, &target, force)
        .await
        .map_err(|err| local_error(err, &target))?;
    Ok(Downloaded {
        path: target,
        size,
        hash,
    })
}

/// Nanoseconds since the Unix epoch as a time, if representable.
fn system_time(ns: i64) -> Option<std::time::SystemTime> {
    let since = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(since)
    } else {
        std::time::UNIX_EPOCH.checked_sub(since)
    }
}

/// Length and hash state of an existing partial download, if any.
async fn hash_partial(partial: &Path) -> std::io::Result<Option<(u64, blake3::Hasher)>> {
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = match std::fs::File::open(&partial) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut hasher = blake3::Hasher::new();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut len = 0u64;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            len += read as u64;
        }
        Ok((len > 0).then_some((len, hasher)))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Opens the partial file for writing at `offset`, cutting anything after it.
async fn open_partial(partial: &Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(partial)
        .await?;
    file.set_len(offset).await?;
    let mut file = file;
    tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset)).await?;
    Ok(file)
}

/// Gives the verified file its name: replacing with `force`, otherwise never over an
/// existing file (a hard link fails atomically if the name is taken).
async fn place(partial: &Path, target: &Path, force: bool) -> std::io::Result<()> {
    if force {
        tokio::fs::rename(partial, target).await
    } else {
        tokio::fs::hard_link(partial, target).await?;
        tokio::fs::remove_file(partial).await
    }
}

type Reader = crate::connection::Reader;

async fn next(reader: &mut Reader) -> Result<Response, ClientError> {
    match tokio::time::timeout(DATA_TIMEOUT, reader.next()).await {
        Ok(item) => interpret(item),
        Err(_) => Err(ClientError::Timeout(DATA_TIMEOUT, "downloading")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server_stay_inside_the_output_folder() {
        let out = Path::new("/out");
        assert_eq!(
            local_path(out, "a/b.txt"),
            Some(PathBuf::from("/out/a/b.txt"))
        );
        for hostile in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "",
            "a//b",
            "c:\\x",
            "a\nb",
        ] {
            assert_eq!(local_path(out, hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn partial_files_are_hidden_siblings() {
        assert_eq!(
            partial_path(Path::new("/o/a/b.txt")),
            PathBuf::from("/o/a/.b.txt.ftc-part")
        );
    }
}
