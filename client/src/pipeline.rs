//! One attempt at uploading files over one session, pipelined: one task streams every file
//! while another collects the answers.
//!
//! The sender never waits for the server between chunks or between files; TCP flow control
//! is the only brake. The server answers each `BeginFile` exactly once, in order, so the
//! collector pairs answers with the files in the order they were begun. When a file is
//! refused early (a bad name, too large), the collector flags it and the sender cancels the
//! rest of that file instead of streaming it for nothing.
//!
//! The sender tells the collector what it did over a channel, in wire order: which file it
//! began, then the hash it ended that file with or why it cancelled it. Only two things are
//! shared without messages, both atomics the other side reads when it pleases: the refusal
//! flag of each file, and the time of the sender's last write.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
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
        local_prefix, read_content, read_small, OpenFolder, Streamed, READ_AHEAD_CHUNKS,
        SMALL_FILE_BYTES,
    },
    report::{FailureCode, FileFailure},
    transfer::{Ledger, SendOptions},
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
    let shared = Shared {
        refused: files.iter().map(|_| AtomicBool::new(false)).collect(),
        last_write: WriteClock::new(),
    };
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    client.writer.set_backpressure_boundary(WRITE_BUFFER_BYTES);
    let outbox = Outbox {
        compress: options.compress && client.accepts_zstd(),
        writer: &mut client.writer,
        ledger,
        shared: &shared,
        notes: notes_tx,
        options,
        throttle: crate::throttle::Throttle::new(options.bwlimit),
    };
    let sending = outbox.send_all(files);
    let collecting = collect_answers(&mut client.reader, files, ledger, &shared, notes_rx);
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

/// What the sender tells the collector, in the order it happens on the wire: for each file
/// `Begun`, then `Ended` or `Cancelled` (unless the sender failed first), before the next
/// file's `Begun`.
enum Note {
    /// `BeginFile` for the file at this position in the attempt was queued: its answer is
    /// due after those of the files begun before it.
    Begun(usize),
    /// The file's content was all sent and `EndFile` is about to be, with this hash; the
    /// server's Ack must carry the same.
    Ended(Hash),
    /// The sender is cancelling the file for this reason, shown instead of the server's
    /// "cancelled".
    Cancelled(String),
}

/// What the sender and the collector share besides the notes: atomics only, which each side
/// reads when it pleases, so neither ever waits for the other.
struct Shared {
    /// By position in the attempt: the server already answered this file (with an error)
    /// before it was fully sent, so the sender stops streaming it.
    refused: Vec<AtomicBool>,
    /// When the sender last got a message out.
    last_write: WriteClock,
}

/// The time of the sender's last write, readable from the collector without a lock.
struct WriteClock {
    /// What the stored times count from.
    started: Instant,
    /// Milliseconds from `started` to the last write.
    last_ms: AtomicU64,
}

impl WriteClock {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records a write now.
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Time since the last write (or since the clock started, before any).
    fn since_last_write(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

type Writer = crate::connection::Writer;
type Reader = crate::connection::Reader;

/// The sending half of one attempt: where messages go, and what it tells the caller (the
/// ledger) and the answer collector (the notes, and the write clock in `shared`).
struct Outbox<'a, 'l> {
    writer: &'a mut Writer,
    ledger: &'a Ledger<'l>,
    shared: &'a Shared,
    notes: mpsc::UnboundedSender<Note>,
    options: SendOptions,
    /// Compress chunks (asked for, and the server agreed).
    compress: bool,
    /// Holds the sender to `--bwlimit`.
    throttle: crate::throttle::Throttle,
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
                    self.ledger.fail(index, FailureCode::Local, message);
                    continue;
                }
            };
            if let FilePlan::Resume { offset } = planned.plan {
                self.ledger.emit(TransferEvent::Verifying {
                    index,
                    name: file.name.clone(),
                    bytes: offset,
                });
            }
            let (offset, hasher) = match local_prefix(&mut handle, &planned.plan).await {
                Ok(resume) => resume,
                Err(err) => {
                    let message = format!("cannot read {}: {err}", file.path.display());
                    self.ledger.fail(index, FailureCode::Local, message);
                    continue;
                }
            };
            let prefix_hash = (offset > 0).then(|| Hash::from(hasher.finalize()));
            self.begin_file(position, planned, offset, prefix_hash)
                .await?;
            match self
                .stream_content(position, planned, handle, offset, hasher)
                .await?
            {
                Streamed::Complete(hash) => self.end_file(hash).await?,
                Streamed::Cancelled(reason) => {
                    // Noted before the server can see the cancel, so the reason is there
                    // by the time its "cancelled" answer is.
                    let _ = self.notes.send(Note::Cancelled(reason.clone()));
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
        prefix_hash: Option<Hash>,
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
            prefix_hash,
            modified_ns: file.modified_ns,
        };
        self.send(Request::BeginFile(begin)).await?;
        let _ = self.notes.send(Note::Begun(position));
        Ok(())
    }

    /// Ends a file whose content was all sent. Its hash is noted for the collector first, so
    /// it is there by the time the server's Ack is.
    async fn end_file(&mut self, hash: Hash) -> Result<(), ClientError> {
        let _ = self.notes.send(Note::Ended(hash));
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
                self.ledger.fail(index, FailureCode::Local, message);
                return Ok(());
            }
        };
        self.begin_file(position, planned, 0, None).await?;
        let hash = Hash::from(blake3::hash(&data));
        if !data.is_empty() {
            let piece = Compressor::new(self.compress).piece(data);
            self.send(piece.request).await?;
            self.ledger
                .sent(index, piece.raw_len, piece.raw_len, piece.wire_len);
            // Small files count against --bwlimit like the chunks of large ones.
            self.throttle.pace(piece.wire_len).await;
        }
        self.end_file(hash).await
    }

    /// Sends the file's bytes from `offset` to its end as chunks, continuing `hasher`.
    ///
    /// Reading and hashing run on a blocking thread (see [`read_content`]) so they overlap
    /// with encoding and writing to the socket: a large file keeps two cores half busy rather
    /// than one core saturated.
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
            let compress = self.compress;
            tokio::task::spawn_blocking(move || {
                read_content(handle, &file, offset, hasher, compress, &chunks_tx)
            })
        };
        let mut sent = offset;
        while let Some(piece) = chunks.recv().await {
            if self.shared.refused[position].load(Ordering::Acquire) {
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
            self.throttle.pace(wire_len).await;
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
                self.shared.last_write.touch();
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
                self.shared.last_write.touch();
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
    shared: &Shared,
    mut notes: mpsc::UnboundedReceiver<Note>,
) -> Result<(), ClientError> {
    while let Some(note) = notes.recv().await {
        // An end note left over is that of a file the server refused early: no longer needed.
        let Note::Begun(position) = note else {
            continue;
        };
        let index = files[position].index;
        let expected_id = index as u32;
        match next_answer(reader, &shared.last_write).await? {
            Response::Ack(ack) if ack.id == expected_id => {
                // An Ack answers EndFile, whose hash was noted before it left: the note is
                // already waiting.
                let ours = match notes.recv().await {
                    Some(Note::Ended(hash)) => Some(hash),
                    _ => None,
                };
                if ours == Some(ack.hash) {
                    ledger.store(index, ack.stored_name, ack.size, ack.hash);
                } else {
                    let message = format!(
                        "the server acknowledged hash {} which is not the local file's",
                        ack.hash
                    );
                    let code = FailureCode::Server(ErrorCode::HashMismatch);
                    ledger.fail(index, code, message);
                }
            }
            Response::Error(ErrorResponse {
                id: Some(id),
                code,
                message,
            }) if id == expected_id => {
                shared.refused[position].store(true, Ordering::Release);
                match code {
                    // "cancelled" answers CancelFile, whose reason was noted before it left:
                    // the note is already waiting, and says more than the server can.
                    ErrorCode::Cancelled => match notes.recv().await {
                        Some(Note::Cancelled(reason)) => {
                            ledger.fail(index, FailureCode::Local, reason)
                        }
                        _ => ledger.fail(index, FailureCode::Server(code), message),
                    },
                    code if code.is_transient() => ledger.defer(
                        index,
                        FileFailure {
                            code: FailureCode::Server(code),
                            message,
                        },
                    ),
                    code => ledger.fail(index, FailureCode::Server(code), message),
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}

/// Waits for the next answer. Silence only counts once the sender has stopped writing:
/// while a large file is still streaming, its answer cannot be due yet.
async fn next_answer(
    reader: &mut Reader,
    last_write: &WriteClock,
) -> Result<Response, ClientError> {
    loop {
        match tokio::time::timeout(ANSWER_TIMEOUT, reader.next()).await {
            Ok(item) => return interpret(item),
            Err(_) if last_write.since_last_write() < ANSWER_TIMEOUT => continue,
            Err(_) => {
                return Err(ClientError::Timeout(
                    ANSWER_TIMEOUT,
                    "waiting for the server to confirm a file",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Mutex};

    use ft_protocol::{Ack, ConflictPolicy};

    use super::*;

    /// How the stand-in server answers one file, by its id.
    #[derive(Clone, Copy)]
    enum Script {
        /// Ack with the hash of the bytes received.
        Ack,
        /// Ack with a hash that is not the content's.
        AckWrongHash,
        /// Refuse right after `BeginFile`, then stop reading for a moment so the client's
        /// buffers fill and it learns of the refusal mid-file.
        RefuseAtOnce,
    }

    /// What the stand-in server saw of one file.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Seen {
        bytes: u64,
        cancelled: bool,
    }

    /// A server that speaks just enough of the protocol to answer files as `scripts` says
    /// (indexed by id) and to answer `CancelFile` as fts does. Returns what it saw per id.
    async fn stand_in(stand_in: crate::stand_in::StandIn, scripts: Vec<Script>) -> Vec<Seen> {
        let (mut requests, mut responses) = stand_in.accept().await;
        let mut seen: Vec<Seen> = scripts.iter().map(|_| Seen::default()).collect();
        // The file being received: its id, its hasher, and whether it was answered already.
        let mut open: Option<(u32, blake3::Hasher, bool)> = None;
        // A client that drops its connection without TLS's close_notify ends it too.
        while let Some(Ok(request)) = requests.next().await {
            match request {
                Request::BeginFile(begin) => {
                    let answered = matches!(scripts[begin.id as usize], Script::RefuseAtOnce);
                    if answered {
                        let refusal =
                            ErrorResponse::new(Some(begin.id), ErrorCode::TooLarge, "too large");
                        responses.send(Response::Error(refusal)).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    open = Some((begin.id, blake3::Hasher::new(), answered));
                }
                Request::Chunk(chunk) => {
                    let (id, hasher, _) = open.as_mut().unwrap();
                    hasher.update(&chunk.data);
                    seen[*id as usize].bytes += chunk.data.len() as u64;
                }
                Request::EndFile(_) => {
                    let (id, hasher, answered) = open.take().unwrap();
                    let hash = match scripts[id as usize] {
                        _ if answered => continue,
                        Script::AckWrongHash => Hash([7; 32]),
                        _ => Hash::from(hasher.finalize()),
                    };
                    let size = seen[id as usize].bytes;
                    let ack = Ack {
                        id,
                        stored_name: format!("stored-{id}"),
                        size,
                        hash,
                    };
                    responses.send(Response::Ack(ack)).await.unwrap();
                }
                Request::CancelFile(cancel) => {
                    let (id, _, answered) = open.take().unwrap();
                    seen[id as usize].cancelled = true;
                    if !answered {
                        let message = format!("cancelled by the client: {}", cancel.reason);
                        let answer = ErrorResponse::new(Some(id), ErrorCode::Cancelled, message);
                        responses.send(Response::Error(answer)).await.unwrap();
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        seen
    }

    fn local(dir: &Path, name: &str, content: &[u8]) -> LocalFile {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let mut plan = crate::local::plan_uploads(&[path], true).unwrap();
        plan.files.remove(0)
    }

    /// How a file ended, as the caller heard it: the stored name, or the code and message.
    type Verdict = (usize, Result<String, (String, String)>);

    fn verdicts(events: &[TransferEvent]) -> Vec<Verdict> {
        events
            .iter()
            .filter_map(|event| match event {
                TransferEvent::FileStored {
                    index, stored_name, ..
                } => Some((*index, Ok(stored_name.clone()))),
                TransferEvent::FileFailed {
                    index,
                    code,
                    message,
                    ..
                } => Some((*index, Err((code.to_string(), message.clone())))),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_are_checked_against_what_the_sender_did() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![1u8; 32 << 20];
        let mut shrinking = local(dir.path(), "shrinking", &[2u8; 300 * 1024]);
        // Planned larger than it is: the reader finds the end early and cancels.
        shrinking.size = 512 * 1024;
        let files = vec![
            local(dir.path(), "small", b"hello"),
            local(dir.path(), "lied-about", b"world"),
            shrinking,
            local(dir.path(), "refused", &big),
            local(dir.path(), "large", &[3u8; 600 * 1024]),
        ];
        let scripts = vec![
            Script::Ack,
            Script::AckWrongHash,
            Script::Ack,
            Script::RefuseAtOnce,
            Script::Ack,
        ];
        let stand_in_server = crate::stand_in::StandIn::bind().await;
        let (address, access) = (
            stand_in_server.address.clone(),
            stand_in_server.access.clone(),
        );
        let server = tokio::spawn(stand_in(stand_in_server, scripts));

        let events = Mutex::new(Vec::new());
        let on_event = |event| events.lock().unwrap().push(event);
        let ledger = Ledger::new(&files, &on_event);
        let planned: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(index, file)| Planned {
                index,
                file,
                plan: FilePlan::Fresh,
            })
            .collect();
        let mut client = Client::connect(&address, &access).await.unwrap();
        let options = SendOptions::new(ConflictPolicy::KeepBoth);
        let upload = upload(&mut client, &planned, options, &ledger);
        tokio::time::timeout(Duration::from_secs(30), upload)
            .await
            .expect("the upload finished")
            .unwrap();
        drop(client);
        let seen = server.await.unwrap();

        let verdicts = verdicts(&events.into_inner().unwrap());
        assert_eq!(verdicts.len(), 5, "{verdicts:?}");
        assert_eq!(verdicts[0], (0, Ok("stored-0".to_owned())));
        let (index, Err((code, message))) = &verdicts[1] else {
            panic!("{verdicts:?}");
        };
        assert_eq!((*index, code.as_str()), (1, "hash-mismatch"));
        assert!(message.contains("not the local file's"), "{message}");
        // The sender's own reason, not the server's "cancelled".
        let (index, Err((code, message))) = &verdicts[2] else {
            panic!("{verdicts:?}");
        };
        assert_eq!((*index, code.as_str()), (2, "local"));
        assert!(message.contains("shrank while being sent"), "{message}");
        assert_eq!(
            verdicts[3],
            (3, Err(("too-large".to_owned(), "too large".to_owned())))
        );
        assert_eq!(verdicts[4], (4, Ok("stored-4".to_owned())));
        // The refused file stopped streaming once the refusal was heard.
        assert!(seen[2].cancelled && seen[3].cancelled, "{seen:?}");
        assert!(seen[3].bytes < big.len() as u64, "{seen:?}");
        assert_eq!(
            seen[4],
            Seen {
                bytes: 600 * 1024,
                cancelled: false
            }
        );
    }
}
