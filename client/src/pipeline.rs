//! One attempt at uploading files over one session, pipelined: one task streams every file
//! while another collects the answers.
//!
//! The sender never waits for the server between chunks or between files; TCP flow control
//! is the only brake. The server answers each `BeginFile` exactly once, in order, so the
//! collector pairs answers with the files in the order they were begun. When a file is
//! refused early (a bad name, too large), the collector flags it and the sender cancels the
//! rest of that file instead of streaming it for nothing.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use ft_protocol::{
    BeginFile, CancelFile, EndFile, ErrorCode, ErrorResponse, FilePlan, Hash, Request, Response,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::{
    compress::{Compressor, Piece},
    connection::{interpret, unexpected, Client, SEND_FAILURE_GRACE},
    error::ClientError,
    events::TransferEvent,
    local::LocalFile,
    read::{
        read_content, read_small, verified_prefix, OpenFolder, Streamed, READ_AHEAD_CHUNKS,
        SMALL_FILE_BYTES,
    },
    transfer::{FileFailure, Ledger, SendOptions, StoredFile, LOCAL_FAILURE},
};

/// Longest the server may stay silent after the last byte was sent before the client gives
/// up. Generous, because an answer waits on fsync.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest a single message may take to leave, i.e. the server not reading at all.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A file of this attempt and how the server wants it.
pub(crate) struct Planned<'a> {
    /// Index in the whole batch.
    pub index: usize,
    /// The local file.
    pub file: &'a LocalFile,
    /// `Fresh` or `Resume` (refused files are not planned).
    pub plan: FilePlan,
}

/// Uploads `files` over `client`. Verdicts go to the `ledger` as they arrive; a transient
/// per-file failure leaves the file unsettled for the next attempt. Returns the error that
/// ended the session early, preferring the server's own explanation.
pub(crate) async fn upload(
    client: &mut Client,
    files: &[Planned<'_>],
    options: SendOptions,
    ledger: &Ledger<'_>,
) -> Result<(), ClientError> {
    let flags = Flags {
        refused: files.iter().map(|_| AtomicBool::new(false)).collect(),
        hashes: std::sync::Mutex::new(vec![None; files.len()]),
        cancel_reasons: std::sync::Mutex::new(vec![None; files.len()]),
        last_write: std::sync::Mutex::new(Instant::now()),
        compress: options.compress && client.accepts_zstd(),
    };
    let (begun_tx, begun_rx) = mpsc::unbounded_channel();
    client.writer.set_backpressure_boundary(WRITE_BUFFER_BYTES);
    let outbox = Outbox {
        writer: &mut client.writer,
        ledger,
        flags: &flags,
        begun: begun_tx,
        options,
    };
    let sending = outbox.send_all(files);
    let collecting = collect_answers(&mut client.reader, files, ledger, &flags, begun_rx);
    tokio::pin!(sending, collecting);
    let mut sent = None;
    let collected = loop {
        tokio::select! {
            result = &mut sending, if sent.is_none() => {
                let failed = result.is_err();
                sent = Some(result);
                if failed {
                    // The server may have said why it hung up: give its message a moment.
                    break tokio::time::timeout(SEND_FAILURE_GRACE, &mut collecting)
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

/// What the sender and the collector tell each other, by position in the attempt.
struct Flags {
    /// The server already answered this file (with an error) before it was fully sent.
    refused: Vec<AtomicBool>,
    /// Hash the sender computed, to cross-check the server's Ack.
    hashes: std::sync::Mutex<Vec<Option<Hash>>>,
    /// Why the sender cancelled a file, to show instead of the server's "cancelled".
    cancel_reasons: std::sync::Mutex<Vec<Option<String>>>,
    last_write: std::sync::Mutex<Instant>,
    /// Compress chunks (asked for, and the server agreed).
    compress: bool,
}

impl Flags {
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

type Writer = ft_protocol::codec::MessageWriter<tokio::net::tcp::OwnedWriteHalf, Request>;
type Reader = ft_protocol::codec::MessageReader<tokio::net::tcp::OwnedReadHalf, Response>;

/// The sending half of one attempt: where messages go, and what it tells the caller (the
/// ledger) and the answer collector (the flags, and `begun`: which files await an answer).
struct Outbox<'a, 'l> {
    writer: &'a mut Writer,
    ledger: &'a Ledger<'l>,
    flags: &'a Flags,
    begun: mpsc::UnboundedSender<usize>,
    options: SendOptions,
}

impl Outbox<'_, '_> {
    /// Streams every file, then writes out whatever is still queued.
    async fn send_all(mut self, files: &[Planned<'_>]) -> Result<(), ClientError> {
        let mut folder = OpenFolder::default();
        for (position, planned) in files.iter().enumerate() {
            let (index, file) = (planned.index, planned.file);
            if file.size <= SMALL_FILE_BYTES && planned.plan == FilePlan::Fresh {
                let data = read_small(file, &mut folder);
                self.send_small(position, planned, data).await?;
                continue;
            }
            let mut handle = match tokio::fs::File::open(&file.path).await {
                Ok(handle) => handle,
                Err(err) => {
                    let message = format!("cannot open {}: {err}", file.path.display());
                    self.ledger.fail(index, LOCAL_FAILURE, message);
                    continue;
                }
            };
            let (offset, hasher) = match verified_prefix(&mut handle, &planned.plan).await {
                Ok(resume) => resume,
                Err(err) => {
                    let message = format!("cannot read {}: {err}", file.path.display());
                    self.ledger.fail(index, LOCAL_FAILURE, message);
                    continue;
                }
            };
            self.begin_file(position, planned, offset).await?;
            match self
                .stream_content(position, planned, handle, offset, hasher)
                .await?
            {
                Streamed::Complete(hash) => self.end_file(position, hash).await?,
                Streamed::Cancelled(reason) => {
                    if let Ok(mut reasons) = self.flags.cancel_reasons.lock() {
                        reasons[position] = Some(reason.clone());
                    }
                    self.send(Request::CancelFile(CancelFile { reason }))
                        .await?;
                }
            }
        }
        self.flush().await
    }

    /// Announces the start of a file to the caller and the server, and tells the collector
    /// an answer is due for it from now on.
    async fn begin_file(
        &mut self,
        position: usize,
        planned: &Planned<'_>,
        offset: u64,
    ) -> Result<(), ClientError> {
        let (index, file) = (planned.index, planned.file);
        self.ledger.emit(TransferEvent::FileStarted {
            index,
            name: file.name.clone(),
            size: file.size,
            offset,
        });
        let id =
            u32::try_from(index).map_err(|_| ClientError::Unexpected("batch too large".into()))?;
        let begin = BeginFile {
            id,
            name: file.name.clone(),
            size: file.size,
            conflict: self.options.conflict,
            key: file.key,
            offset,
        };
        self.send(Request::BeginFile(begin)).await?;
        let _ = self.begun.send(position);
        Ok(())
    }

    /// Ends a file whose content was all sent, keeping its hash to check the server's Ack.
    async fn end_file(&mut self, position: usize, hash: Hash) -> Result<(), ClientError> {
        if let Ok(mut hashes) = self.flags.hashes.lock() {
            hashes[position] = Some(hash);
        }
        self.send(Request::EndFile(EndFile { hash })).await
    }

    /// Sends a small file read in one go. A file that could not be read, or that changed
    /// since it was planned, fails locally without anything being sent.
    async fn send_small(
        &mut self,
        position: usize,
        planned: &Planned<'_>,
        data: Result<bytes::Bytes, String>,
    ) -> Result<(), ClientError> {
        let index = planned.index;
        let data = match data {
            Ok(data) => data,
            Err(message) => {
                self.ledger.fail(index, LOCAL_FAILURE, message);
                return Ok(());
            }
        };
        self.begin_file(position, planned, 0).await?;
        let hash = Hash::from(blake3::hash(&data));
        if !data.is_empty() {
            let piece = Compressor::new(self.flags.compress).piece(data);
            self.send(piece.request).await?;
            self.ledger
                .sent(index, piece.raw_len, piece.raw_len, piece.wire_len);
        }
        self.end_file(position, hash).await
    }

    /// Sends the file's bytes from `offset` to its end as chunks, continuing `hasher`.
    ///
    /// Reading and hashing run on a blocking thread (see [`read_content`]) so they overlap
    /// with encoding and writing to the socket; measured, this took the client from one busy
    /// core to two half-busy ones on large files.
    async fn stream_content(
        &mut self,
        position: usize,
        planned: &Planned<'_>,
        handle: tokio::fs::File,
        offset: u64,
        hasher: blake3::Hasher,
    ) -> Result<Streamed, ClientError> {
        let (index, file) = (planned.index, planned.file);
        let handle = handle.into_std().await;
        let (chunks_tx, mut chunks) = mpsc::channel(READ_AHEAD_CHUNKS);
        let reading = {
            let file = file.clone();
            let compress = self.flags.compress;
            tokio::task::spawn_blocking(move || {
                read_content(handle, &file, offset, hasher, compress, &chunks_tx)
            })
        };
        let mut sent = offset;
        while let Some(piece) = chunks.recv().await {
            if self.flags.refused[position].load(Ordering::Acquire) {
                // Dropping the receiver stops the reader at its next chunk.
                return Ok(Streamed::Cancelled("the server refused the file".into()));
            }
            let Piece {
                request,
                raw_len,
                wire_len,
            } = piece;
            self.send(request).await?;
            sent += raw_len;
            self.ledger.sent(index, sent, raw_len, wire_len);
        }
        match reading.await {
            Ok(streamed) => Ok(streamed),
            Err(join) => Ok(Streamed::Cancelled(format!("the reader failed: {join}"))),
        }
    }

    /// Queues a message. The writer goes to the socket when its buffer passes
    /// [`WRITE_BUFFER_BYTES`], and at the end of the batch: one system call carries many
    /// small files instead of one per message.
    async fn send(&mut self, request: Request) -> Result<(), ClientError> {
        match tokio::time::timeout(WRITE_STALL_TIMEOUT, self.writer.feed(request)).await {
            Ok(result) => {
                result?;
                self.flags.touch();
                Ok(())
            }
            Err(_) => Err(ClientError::Timeout(WRITE_STALL_TIMEOUT, "sending")),
        }
    }

    /// Writes out whatever is queued.
    async fn flush(&mut self) -> Result<(), ClientError> {
        match tokio::time::timeout(WRITE_STALL_TIMEOUT, self.writer.flush()).await {
            Ok(result) => {
                result?;
                self.flags.touch();
                Ok(())
            }
            Err(_) => Err(ClientError::Timeout(WRITE_STALL_TIMEOUT, "sending")),
        }
    }
}

/// Bytes queued before the writer goes to the socket.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Pairs each answer with the file begun in the same position.
async fn collect_answers(
    reader: &mut Reader,
    files: &[Planned<'_>],
    ledger: &Ledger<'_>,
    flags: &Flags,
    mut begun: mpsc::UnboundedReceiver<usize>,
) -> Result<(), ClientError> {
    while let Some(position) = begun.recv().await {
        let index = files[position].index;
        let expected_id = index as u32;
        match next_answer(reader, flags).await? {
            Response::Ack(ack) if ack.id == expected_id => {
                let ours = flags.hashes.lock().ok().and_then(|hashes| hashes[position]);
                if ours == Some(ack.hash) {
                    ledger.store(
                        index,
                        StoredFile {
                            stored_name: ack.stored_name,
                            size: ack.size,
                            hash: ack.hash,
                        },
                    );
                } else {
                    let message = format!(
                        "the server acknowledged hash {} which is not the local file's",
                        ack.hash
                    );
                    ledger.fail(index, ErrorCode::HashMismatch.as_str(), message);
                }
            }
            Response::Error(ErrorResponse {
                id: Some(id),
                code,
                message,
            }) if id == expected_id => {
                flags.refused[position].store(true, Ordering::Release);
                let local_reason = flags
                    .cancel_reasons
                    .lock()
                    .ok()
                    .and_then(|reasons| reasons[position].clone());
                match (code, local_reason) {
                    (ErrorCode::Cancelled, Some(reason)) => {
                        ledger.fail(index, LOCAL_FAILURE, reason)
                    }
                    (code, _) if code.is_transient() => ledger.defer(
                        index,
                        FileFailure {
                            code: code.as_str().to_owned(),
                            message,
                        },
                    ),
                    (code, _) => ledger.fail(index, code.as_str(), message),
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}

/// Waits for the next answer. Silence only counts once the sender has stopped writing:
/// while a large file is still streaming, its answer cannot be due yet.
async fn next_answer(reader: &mut Reader, flags: &Flags) -> Result<Response, ClientError> {
    loop {
        match tokio::time::timeout(ANSWER_TIMEOUT, reader.next()).await {
            Ok(item) => return interpret(item),
            Err(_) if flags.since_last_write() < ANSWER_TIMEOUT => continue,
            Err(_) => {
                return Err(ClientError::Timeout(
                    ANSWER_TIMEOUT,
                    "waiting for the server to confirm a file",
                ))
            }
        }
    }
}
