//! `ftc send --to USER`: offer files to online users, stream each file once (the server
//! fans it out), and learn from each recipient what it saved and verified.
//!
//! Writing and reading run side by side on the one connection: the sender streams while a
//! collector takes in verdicts and departures. When every recipient is gone the sender
//! stops early instead of streaming for nobody.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ft_protocol::{
    relay::{
        CancelOffer, Delivered, FileAnswer, Offer, OfferAnswers, OfferCancelled, OfferEnd,
        OfferedFile, RecipientOutcome, RelayBegin, RelayData, RelayFileEnd,
    },
    Failed, Hash, Request, Response, CHUNK_SIZE,
};
use futures::{SinkExt, StreamExt};

use crate::{
    chunk_pool::ChunkPool,
    connection::{interpret, unexpected},
    error::ClientError,
    events::TransferEvent,
    local::{LocalFile, UploadPlan},
    read::READ_AHEAD_CHUNKS,
    session::Session,
    throttle::Throttle,
};

/// What became of an offer for one recipient.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The recipient.
    pub user: String,
    /// Its answer: accepted, declined, timed out, not online.
    pub outcome: RecipientOutcome,
    /// Files it saved and verified: (name, where it saved it).
    pub saved: Vec<(String, String)>,
    /// Files it did not save: (name, why).
    pub failed: Vec<(String, String)>,
    /// Why it stopped early (it cancelled, left or stalled), if it did.
    pub stopped: Option<String>,
}

/// What happened to an offer.
#[derive(Debug)]
pub struct OfferReport {
    /// The files offered.
    pub files: Vec<LocalFile>,
    /// One per recipient, in the order given.
    pub recipients: Vec<RecipientReport>,
    /// Content bytes sent (once, however many recipients).
    pub bytes_sent: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl OfferReport {
    /// True when every recipient accepted every file and saved and verified it.
    pub fn all_delivered(&self) -> bool {
        self.recipients.iter().all(|recipient| {
            matches!(recipient.outcome, RecipientOutcome::Accepted(_))
                && recipient.stopped.is_none()
                && recipient.failed.is_empty()
                && recipient.saved.len() == self.files.len()
        })
    }
}

/// Offers `plan`'s files to `to`, waits up to `timeout` for their answers, and sends each
/// file to those who accepted it (from the prefix a recipient already holds and proves), at
/// most `bwlimit` bytes a second if given. Progress (bytes sent) goes to `on_event`;
/// `FileStored` comes once every recipient of a file verified it.
pub async fn send_to_users(
    session: &mut Session,
    plan: UploadPlan,
    to: Vec<String>,
    timeout: Duration,
    bwlimit: Option<u64>,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<OfferReport, ClientError> {
    let offer = |offer| Request::Offer(offer);
    let asking = Asking {
        request: &offer,
        timeout_secs: u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1),
        // The answers may take the whole offer timeout (people decide), plus a margin.
        wait: timeout + Duration::from_secs(30),
    };
    run_offer(session, plan.files, to, asking, bwlimit, on_event).await
}

/// Leaves `files` in the inboxes of `to` on the server, for their next `ftc listen`. Each
/// recipient is `Accepted` (its copy is verified and durable on the server once the report
/// lists it as saved) or `Refused` (no such user, inbox full). At most `bwlimit` bytes a
/// second if given.
pub async fn leave_for_users(
    session: &mut Session,
    files: Vec<LocalFile>,
    to: Vec<String>,
    bwlimit: Option<u64>,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<OfferReport, ClientError> {
    let leave = |offer| Request::Leave(offer);
    let asking = Asking {
        request: &leave,
        timeout_secs: 1,
        wait: crate::connection::REPLY_TIMEOUT,
    };
    run_offer(session, files, to, asking, bwlimit, on_event).await
}

/// How an offer is made: its request, and how long its answers may take.
struct Asking<'a> {
    request: &'a (dyn Fn(Offer) -> Request + Sync),
    /// Told to the recipients.
    timeout_secs: u32,
    /// How long the sender waits for the answers.
    wait: Duration,
}

async fn run_offer(
    session: &mut Session,
    files: Vec<LocalFile>,
    to: Vec<String>,
    asking: Asking<'_>,
    bwlimit: Option<u64>,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<OfferReport, ClientError> {
    let Asking {
        request,
        timeout_secs,
        wait,
    } = asking;
    let started = Instant::now();
    on_event(TransferEvent::BatchStarted {
        files: files.len(),
        bytes: files.iter().map(|file| file.size).sum(),
    });
    let client = session.client().await?;
    let offer = Offer {
        to: to.clone(),
        files: files
            .iter()
            .map(|file| OfferedFile {
                name: file.name.clone(),
                size: file.size,
            })
            .collect(),
        timeout_secs,
    };
    client.writer.send(request(offer)).await?;
    let answers = match tokio::time::timeout(wait, client.reader.next()).await {
        Err(_) => {
            return Err(ClientError::Timeout(
                wait,
                "waiting for the recipients' answers",
            ))
        }
        Ok(item) => match interpret(item)? {
            Response::OfferAnswers(answers) => answers,
            Response::Failed(Failed { code, message }) => {
                return Err(ClientError::Failed { code, message })
            }
            other => return Err(unexpected(other)),
        },
    };
    let OfferAnswers {
        offer: id,
        recipients: answered,
    } = answers;
    let reports: Vec<RecipientReport> = answered
        .into_iter()
        .map(|answer| RecipientReport {
            user: answer.user,
            outcome: answer.outcome,
            saved: Vec::new(),
            failed: Vec::new(),
            stopped: None,
        })
        .collect();
    let taking_part = reports
        .iter()
        .filter(|r| matches!(r.outcome, RecipientOutcome::Accepted(_)))
        .count();
    let shared = Shared {
        reports: Mutex::new(reports),
        remaining: AtomicUsize::new(taking_part),
        all_gone: AtomicBool::new(taking_part == 0),
        delivered: Mutex::new(vec![0; files.len()]),
        hashes: Mutex::new(vec![None; files.len()]),
    };
    let mut outgoing = Outgoing {
        writer: &mut client.writer,
        throttle: Throttle::new(bwlimit),
    };
    let sending = stream_files(&mut outgoing, id, &files, &shared, on_event);
    let collecting = collect(&mut client.reader, id, &files, &shared, on_event);
    let (sent, collected) = tokio::join!(sending, collecting);
    let bytes_sent = sent?;
    collected?;
    Ok(OfferReport {
        files,
        recipients: shared
            .reports
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        bytes_sent,
        elapsed: started.elapsed(),
    })
}

/// What the streaming and the collecting halves share.
struct Shared {
    reports: Mutex<Vec<RecipientReport>>,
    /// Recipients still taking part.
    remaining: AtomicUsize,
    /// Set once no recipient is left: the sender stops.
    all_gone: AtomicBool,
    /// Per file: recipients that verified it.
    delivered: Mutex<Vec<usize>>,
    /// Per file: its hash, once sent.
    hashes: Mutex<Vec<Option<Hash>>>,
}

type Writer = crate::connection::Writer;
type Reader = crate::connection::Reader;

/// Where the content goes, at the pace `--bwlimit` sets.
struct Outgoing<'a> {
    writer: &'a mut Writer,
    throttle: Throttle,
}

/// Sends every file someone accepted, then `OfferEnd`. Returns the content bytes sent.
async fn stream_files(
    outgoing: &mut Outgoing<'_>,
    id: u64,
    files: &[LocalFile],
    shared: &Shared,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<u64, ClientError> {
    let mut bytes_sent = 0;
    for (index, file) in files.iter().enumerate() {
        if shared.all_gone.load(Ordering::Acquire) {
            break;
        }
        let answers: Vec<Option<FileAnswer>> = {
            let reports = shared
                .reports
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            reports
                .iter()
                .map(|report| match (&report.outcome, &report.stopped) {
                    (RecipientOutcome::Accepted(files), None) => files.get(index).copied(),
                    _ => None,
                })
                .collect()
        };
        let path = file.path.clone();
        let size = file.size;
        let proofs = answers.clone();
        // Each recipient's prefix is checked against ours; a wrong one starts from zero.
        let starts = tokio::task::spawn_blocking(move || verified_starts(&path, size, &proofs))
            .await
            .map_err(|join| ClientError::Unexpected(join.to_string()))?;
        let Some(start) = starts.iter().flatten().min().copied() else {
            continue;
        };
        let file_index =
            u32::try_from(index).map_err(|_| ClientError::Unexpected("too many files".into()))?;
        outgoing
            .writer
            .send(Request::RelayBegin(RelayBegin {
                file: file_index,
                start,
                starts,
            }))
            .await?;
        on_event(TransferEvent::FileStarted {
            index,
            name: file.name.clone(),
            size,
            offset: start,
        });
        let (hash, sent) = send_content(outgoing, id, index, file, start, shared, on_event).await?;
        bytes_sent += sent;
        let Some(hash) = hash else {
            // Every recipient left mid-file: stop here.
            break;
        };
        shared.hashes.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(hash);
        outgoing
            .writer
            .send(Request::RelayEnd(RelayFileEnd {
                offer: id,
                file: file_index,
                hash,
            }))
            .await?;
    }
    // Either ends the offer; the server answers `OfferClosed` to the one that comes first,
    // and the connection goes on to the next request.
    let end = if shared.all_gone.load(Ordering::Acquire) {
        Request::CancelOffer(CancelOffer { offer: id })
    } else {
        Request::OfferEnd(OfferEnd { offer: id })
    };
    outgoing.writer.send(end).await?;
    Ok(bytes_sent)
}

/// Streams `file` from `start`, hashing all of it. `None` as the hash when every recipient
/// left meanwhile (or the file changed size).
async fn send_content(
    outgoing: &mut Outgoing<'_>,
    id: u64,
    index: usize,
    file: &LocalFile,
    start: u64,
    shared: &Shared,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<(Option<Hash>, u64), ClientError> {
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Bytes>(READ_AHEAD_CHUNKS);
    let path = file.path.clone();
    let size = file.size;
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Hash>> {
        let mut handle = std::fs::File::open(&path)?;
        let mut hasher = blake3::Hasher::new();
        let mut position = 0u64;
        // Chunks are read straight into pooled buffers and sent as they are (no copy); a
        // buffer comes back once its chunk is sent.
        let pool = ChunkPool::new(READ_AHEAD_CHUNKS + 2);
        loop {
            let mut buffer = pool.take(CHUNK_SIZE);
            let read = loop {
                match handle.read(buffer.window(CHUNK_SIZE)) {
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if read == 0 {
                break;
            }
            let chunk = buffer.freeze(read);
            hasher.update(&chunk);
            let end = position + read as u64;
            if end > start {
                let skip = usize::try_from(start.saturating_sub(position)).unwrap_or(read);
                if chunks_tx.blocking_send(chunk.slice(skip..)).is_err() {
                    return Ok(None);
                }
            }
            position = end;
            if position > size {
                return Ok(None);
            }
        }
        Ok((position == size).then(|| hasher.finalize().into()))
    });
    let mut position = start;
    let mut sent = 0;
    while let Some(piece) = chunks.recv().await {
        if shared.all_gone.load(Ordering::Acquire) {
            drop(chunks);
            let _ = reader.await;
            return Ok((None, sent));
        }
        let len = piece.len() as u64;
        if position + len > size {
            break;
        }
        // Written out when the reader has nothing more ready: one flush per run of chunks
        // keeps TLS records full and system calls few.
        outgoing
            .writer
            .feed(Request::RelayData(RelayData {
                offer: id,
                data: piece,
            }))
            .await?;
        if chunks.is_empty() {
            outgoing.writer.flush().await?;
        }
        outgoing.throttle.pace(len).await;
        position += len;
        sent += len;
        on_event(TransferEvent::FileProgress { index, position });
    }
    outgoing.writer.flush().await?;
    let hash = reader
        .await
        .map_err(|join| ClientError::Unexpected(join.to_string()))?
        .map_err(|source| ClientError::LocalWrite {
            path: file.path.clone(),
            source,
        })?;
    match hash {
        Some(hash) if position == size => Ok((Some(hash), sent)),
        _ => Err(ClientError::Unexpected(format!(
            "{} changed while it was sent",
            file.path.display()
        ))),
    }
}

/// For each recipient's answer to one file: where its copy starts (its offset if its
/// prefix hash is ours, else 0), or `None` if it does not want the file. Blocking.
fn verified_starts(
    path: &std::path::Path,
    size: u64,
    answers: &[Option<FileAnswer>],
) -> Vec<Option<u64>> {
    answers
        .iter()
        .map(|answer| match answer {
            Some(FileAnswer::Accept {
                offset,
                prefix_hash: Some(theirs),
            }) if *offset > 0 && *offset <= size => {
                let ours = prefix_hash(path, *offset).ok();
                Some(if ours == Some(*theirs) { *offset } else { 0 })
            }
            Some(FileAnswer::Accept { .. }) => Some(0),
            Some(FileAnswer::Skip) | None => None,
        })
        .collect()
}

/// BLAKE3 of the first `len` bytes of `path`.
fn prefix_hash(path: &std::path::Path, len: u64) -> std::io::Result<Hash> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = blake3::Hasher::new();
    let copied = std::io::copy(&mut file.take(len), &mut hasher)?;
    if copied != len {
        return Err(std::io::Error::other("the file is shorter than the prefix"));
    }
    Ok(hasher.finalize().into())
}

/// Takes in verdicts and departures until `OfferClosed`.
async fn collect(
    reader: &mut Reader,
    id: u64,
    files: &[LocalFile],
    shared: &Shared,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> Result<(), ClientError> {
    /// Longest silence while recipients save a file (they hash and flush it).
    const SILENCE: Duration = Duration::from_secs(300);
    loop {
        let item = tokio::time::timeout(SILENCE, reader.next())
            .await
            .map_err(|_| ClientError::Timeout(SILENCE, "waiting for the recipients"))?;
        match interpret(item)? {
            Response::Delivered(Delivered {
                offer,
                user,
                file,
                ok,
                message,
            }) if offer == id => {
                let index = file as usize;
                let Some(local) = files.get(index) else {
                    continue;
                };
                let everyone = {
                    let mut reports = shared
                        .reports
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Some(report) = reports.iter_mut().find(|r| r.user == user) {
                        if ok {
                            report.saved.push((local.name.clone(), message.clone()));
                        } else {
                            report.failed.push((local.name.clone(), message.clone()));
                        }
                    }
                    let wanted = reports
                        .iter()
                        .filter(|r| match &r.outcome {
                            RecipientOutcome::Accepted(files) => {
                                r.stopped.is_none()
                                    && matches!(files.get(index), Some(FileAnswer::Accept { .. }))
                            }
                            _ => false,
                        })
                        .count();
                    let mut delivered = shared
                        .delivered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    delivered[index] += 1;
                    delivered[index] >= wanted
                };
                if !ok {
                    on_event(TransferEvent::FileFailed {
                        index,
                        name: local.name.clone(),
                        code: crate::report::FailureCode::Local,
                        message: format!("{user}: {message}"),
                    });
                } else if everyone {
                    let hash = shared.hashes.lock().unwrap_or_else(PoisonError::into_inner)[index];
                    if let Some(hash) = hash {
                        on_event(TransferEvent::FileStored {
                            index,
                            name: local.name.clone(),
                            stored_name: local.name.clone(),
                            size: local.size,
                            hash,
                        });
                    }
                }
            }
            Response::OfferCancelled(OfferCancelled {
                offer,
                user,
                message,
                ..
            }) if offer == id => {
                let mut reports = shared
                    .reports
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(report) = reports.iter_mut().find(|r| r.user == user) {
                    if report.stopped.is_none() {
                        report.stopped = Some(message);
                        if shared.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                            shared.all_gone.store(true, Ordering::Release);
                        }
                    }
                }
            }
            Response::OfferClosed(closed) if closed.offer == id => return Ok(()),
            other => return Err(unexpected(other)),
        }
    }
}
