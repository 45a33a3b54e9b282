//! Pipelined batch upload: one task streams every file while another collects the answers.
//!
//! The sender never waits for the server between chunks or between files; TCP flow control
//! is the only brake. The server answers each `BeginFile` exactly once, in order, so the
//! collector simply pairs answers with the files in the order they were begun. When a file is
//! refused early (a bad name, too large), the collector flags it and the sender cancels the
//! rest of that file instead of streaming it for nothing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use bytes::BytesMut;
use ft_protocol::{
    BeginFile, CancelFile, Chunk, ConflictPolicy, EndFile, ErrorCode, ErrorResponse, Hash, Request,
    Response, CHUNK_SIZE,
};
use futures::{SinkExt, StreamExt};
use tokio::{io::AsyncReadExt, sync::mpsc};

use crate::{
    connection::{interpret, unexpected, Client},
    error::ClientError,
    events::TransferEvent,
    local::LocalFile,
};

/// Longest the server may stay silent after the last byte was sent before the client gives up.
/// Generous, because an answer waits on fsync.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest a single chunk may take to leave, i.e. the server not reading at all.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// After a failed write, how long to keep reading for the server's explanation.
const DRAIN_AFTER_SEND_FAILURE: Duration = Duration::from_secs(5);

/// Error code reported for files that failed on this side.
pub const LOCAL_FAILURE: &str = "local";

/// Error code reported for files left unanswered when the connection failed.
pub const CONNECTION_LOST: &str = "connection-lost";

/// How a batch is uploaded.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// What the server does when a name is taken.
    pub conflict: ConflictPolicy,
}

/// A file the server stored and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Name the server stored it under.
    pub stored_name: String,
    /// Bytes stored.
    pub size: u64,
    /// BLAKE3, computed by this client and confirmed by the server.
    pub hash: Hash,
}

/// Why one file was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    /// A wire error code ([`ErrorCode::as_str`]), [`LOCAL_FAILURE`] or [`CONNECTION_LOST`].
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// The fate of one file of the batch.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// The local file.
    pub file: LocalFile,
    /// Stored, or why not.
    pub result: Result<StoredFile, FileFailure>,
}

/// What happened to a batch.
#[derive(Debug)]
pub struct SendReport {
    /// One outcome per file, in batch order.
    pub outcomes: Vec<FileOutcome>,
    /// Wall time from the first byte to the last answer.
    pub elapsed: Duration,
    /// Set when the connection failed before every file was answered.
    pub connection_error: Option<ClientError>,
}

impl SendReport {
    /// Files stored and verified.
    pub fn stored(&self) -> impl Iterator<Item = (&LocalFile, &StoredFile)> {
        self.outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().ok().map(|s| (&outcome.file, s)))
    }

    /// Files not stored.
    pub fn failed(&self) -> impl Iterator<Item = (&LocalFile, &FileFailure)> {
        self.outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().err().map(|f| (&outcome.file, f)))
    }

    /// True when every file was stored and verified.
    pub fn all_stored(&self) -> bool {
        self.failed().next().is_none()
    }
}

/// State shared by the sender and the answer collector (both run in one task).
struct Batch<'a> {
    files: &'a [LocalFile],
    results: Mutex<Vec<Option<Result<StoredFile, FileFailure>>>>,
    /// The server already answered this file (with an error) before we finished sending it.
    answered: Vec<AtomicBool>,
    /// Hash the sender computed, to cross-check the server's Ack.
    hashes: Mutex<Vec<Option<Hash>>>,
    /// Why the sender cancelled a file, to show instead of the server's "cancelled".
    cancel_reasons: Mutex<Vec<Option<String>>>,
    last_write: Mutex<Instant>,
    on_event: &'a (dyn Fn(TransferEvent) + Sync),
}

impl Batch<'_> {
    fn settle(&self, index: usize, result: Result<StoredFile, FileFailure>) {
        let file = &self.files[index];
        (self.on_event)(match &result {
            Ok(stored) => TransferEvent::FileStored {
                index,
                name: file.name.clone(),
                stored_name: stored.stored_name.clone(),
                size: stored.size,
                hash: stored.hash,
            },
            Err(failure) => TransferEvent::FileFailed {
                index,
                name: file.name.clone(),
                code: failure.code.clone(),
                message: failure.message.clone(),
            },
        });
        if let Ok(mut results) = self.results.lock() {
            results[index] = Some(result);
        }
    }

    fn fail_locally(&self, index: usize, message: String) {
        self.settle(
            index,
            Err(FileFailure {
                code: LOCAL_FAILURE.to_owned(),
                message,
            }),
        );
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last_write.lock() {
            *last = Instant::now();
        }
    }

    fn since_last_write(&self) -> Duration {
        self.last_write
            .lock()
            .map(|last| last.elapsed())
            .unwrap_or_default()
    }
}

/// Uploads `files` over `client`'s session, pipelined, reporting progress through `on_event`.
///
/// Returns a report even when the connection fails midway, so the caller can tell the user
/// exactly which files landed.
pub async fn send_files(
    client: &mut Client,
    files: &[LocalFile],
    options: SendOptions,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> SendReport {
    let started = Instant::now();
    on_event(TransferEvent::BatchStarted {
        files: files.len(),
        bytes: files.iter().map(|file| file.size).sum(),
    });
    let batch = Batch {
        files,
        results: Mutex::new(vec![None; files.len()]),
        answered: files.iter().map(|_| AtomicBool::new(false)).collect(),
        hashes: Mutex::new(vec![None; files.len()]),
        cancel_reasons: Mutex::new(vec![None; files.len()]),
        last_write: Mutex::new(Instant::now()),
        on_event,
    };
    let connection_error = run_batch(client, &batch, options).await.err();

    let results = batch
        .results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcomes = files
        .iter()
        .zip(results)
        .map(|(file, result)| FileOutcome {
            file: file.clone(),
            result: result.unwrap_or_else(|| {
                Err(FileFailure {
                    code: CONNECTION_LOST.to_owned(),
                    message: "the connection failed before the server confirmed this file"
                        .to_owned(),
                })
            }),
        })
        .collect();
    SendReport {
        outcomes,
        elapsed: started.elapsed(),
        connection_error,
    }
}

/// Runs the sender and the answer collector side by side. Returns the error that ended the
/// session early, preferring the server's own explanation.
async fn run_batch(
    client: &mut Client,
    batch: &Batch<'_>,
    options: SendOptions,
) -> Result<(), ClientError> {
    let (begun_tx, begun_rx) = mpsc::unbounded_channel();
    let sending = send_all(&mut client.writer, batch, options, begun_tx);
    let collecting = collect_answers(&mut client.reader, batch, begun_rx);
    tokio::pin!(sending, collecting);
    let mut sent = None;
    let collected = loop {
        tokio::select! {
            result = &mut sending, if sent.is_none() => {
                let failed = result.is_err();
                sent = Some(result);
                if failed {
                    // The server may have said why it hung up: give its message a moment.
                    break tokio::time::timeout(DRAIN_AFTER_SEND_FAILURE, &mut collecting)
                        .await
                        .unwrap_or(Ok(()));
                }
            }
            // An error here (the server ended the session) also abandons the sender.
            result = &mut collecting => break result,
        }
    };
    collected?;
    match sent {
        Some(result) => result,
        // The collector can only finish cleanly once the sender is done; take its result.
        None => sending.await,
    }
}

type Writer = ft_protocol::codec::MessageWriter<tokio::net::tcp::OwnedWriteHalf, Request>;

/// Streams every file; tells the collector (through `begun`) which files await an answer.
async fn send_all(
    writer: &mut Writer,
    batch: &Batch<'_>,
    options: SendOptions,
    begun: mpsc::UnboundedSender<usize>,
) -> Result<(), ClientError> {
    for (index, file) in batch.files.iter().enumerate() {
        (batch.on_event)(TransferEvent::FileStarted {
            index,
            name: file.name.clone(),
            size: file.size,
        });
        let mut handle = match tokio::fs::File::open(&file.path).await {
            Ok(handle) => handle,
            Err(err) => {
                batch.fail_locally(index, format!("cannot open {}: {err}", file.path.display()));
                continue;
            }
        };
        let id =
            u32::try_from(index).map_err(|_| ClientError::Unexpected("batch too large".into()))?;
        send(
            writer,
            batch,
            Request::BeginFile(BeginFile {
                id,
                name: file.name.clone(),
                size: file.size,
                conflict: options.conflict,
            }),
        )
        .await?;
        // The collector expects an answer for this file from now on.
        let _ = begun.send(index);

        match stream_content(writer, batch, index, file, &mut handle).await? {
            Streamed::Complete(hash) => {
                if let Ok(mut hashes) = batch.hashes.lock() {
                    hashes[index] = Some(hash);
                }
                send(writer, batch, Request::EndFile(EndFile { hash })).await?;
            }
            Streamed::Cancelled(reason) => {
                if let Ok(mut reasons) = batch.cancel_reasons.lock() {
                    reasons[index] = Some(reason.clone());
                }
                send(writer, batch, Request::CancelFile(CancelFile { reason })).await?;
            }
        }
    }
    Ok(())
}

enum Streamed {
    Complete(Hash),
    Cancelled(String),
}

/// Sends exactly `file.size` bytes as chunks, hashing as it goes.
async fn stream_content(
    writer: &mut Writer,
    batch: &Batch<'_>,
    index: usize,
    file: &LocalFile,
    handle: &mut tokio::fs::File,
) -> Result<Streamed, ClientError> {
    let mut hasher = blake3::Hasher::new();
    let mut sent = 0u64;
    while sent < file.size {
        if batch.answered[index].load(Ordering::Acquire) {
            return Ok(Streamed::Cancelled("the server refused the file".into()));
        }
        let want =
            usize::try_from(file.size - sent).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
        let mut buffer = BytesMut::with_capacity(want);
        while buffer.len() < want {
            let read = handle.read_buf(&mut buffer).await;
            match read {
                Ok(0) => {
                    let reason = format!("{} shrank while being sent", file.path.display());
                    return Ok(Streamed::Cancelled(reason));
                }
                Ok(_) => {}
                Err(err) => {
                    let reason = format!("cannot read {}: {err}", file.path.display());
                    return Ok(Streamed::Cancelled(reason));
                }
            }
        }
        hasher.update(&buffer);
        let delta = buffer.len() as u64;
        send(
            writer,
            batch,
            Request::Chunk(Chunk {
                data: buffer.freeze(),
            }),
        )
        .await?;
        sent += delta;
        (batch.on_event)(TransferEvent::FileProgress { index, sent, delta });
    }
    let mut probe = [0u8; 1];
    if !matches!(handle.read(&mut probe).await, Ok(0)) {
        let reason = format!("{} changed while being sent", file.path.display());
        return Ok(Streamed::Cancelled(reason));
    }
    Ok(Streamed::Complete(hasher.finalize().into()))
}

async fn send(writer: &mut Writer, batch: &Batch<'_>, request: Request) -> Result<(), ClientError> {
    match tokio::time::timeout(WRITE_STALL_TIMEOUT, writer.send(request)).await {
        Ok(result) => {
            result?;
            batch.touch();
            Ok(())
        }
        Err(_) => Err(ClientError::Timeout(WRITE_STALL_TIMEOUT, "sending")),
    }
}

type Reader = ft_protocol::codec::MessageReader<tokio::net::tcp::OwnedReadHalf, Response>;

/// Pairs each answer with the file begun in the same position.
async fn collect_answers(
    reader: &mut Reader,
    batch: &Batch<'_>,
    mut begun: mpsc::UnboundedReceiver<usize>,
) -> Result<(), ClientError> {
    while let Some(index) = begun.recv().await {
        let response = next_answer(reader, batch).await?;
        let expected_id = index as u32;
        match response {
            Response::Ack(ack) if ack.id == expected_id => {
                let ours = batch.hashes.lock().ok().and_then(|hashes| hashes[index]);
                if ours == Some(ack.hash) {
                    batch.settle(
                        index,
                        Ok(StoredFile {
                            stored_name: ack.stored_name,
                            size: ack.size,
                            hash: ack.hash,
                        }),
                    );
                } else {
                    batch.settle(
                        index,
                        Err(FileFailure {
                            code: ErrorCode::HashMismatch.as_str().to_owned(),
                            message: format!(
                                "the server acknowledged hash {} which is not the local file's",
                                ack.hash
                            ),
                        }),
                    );
                }
            }
            Response::Error(ErrorResponse {
                id: Some(id),
                code,
                message,
            }) if id == expected_id => {
                batch.answered[index].store(true, Ordering::Release);
                let local_reason = batch
                    .cancel_reasons
                    .lock()
                    .ok()
                    .and_then(|reasons| reasons[index].clone());
                let failure = match (code, local_reason) {
                    (ErrorCode::Cancelled, Some(reason)) => FileFailure {
                        code: LOCAL_FAILURE.to_owned(),
                        message: reason,
                    },
                    _ => FileFailure {
                        code: code.as_str().to_owned(),
                        message,
                    },
                };
                batch.settle(index, Err(failure));
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}

/// Waits for the next answer. Silence only counts once the sender has stopped writing:
/// while a large file is still streaming, its answer cannot be due yet.
async fn next_answer(reader: &mut Reader, batch: &Batch<'_>) -> Result<Response, ClientError> {
    loop {
        match tokio::time::timeout(ANSWER_TIMEOUT, reader.next()).await {
            Ok(item) => return interpret(item),
            Err(_) if batch.since_last_write() < ANSWER_TIMEOUT => continue,
            Err(_) => {
                return Err(ClientError::Timeout(
                    ANSWER_TIMEOUT,
                    "waiting for the server to confirm a file",
                ))
            }
        }
    }
}
