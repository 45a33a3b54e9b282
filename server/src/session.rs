//! One connection's state machine over typed messages.
//!
//! A session is: handshake, then a loop reading one [`Request`] at a time, each applied by a
//! small `on_*` function. The upload state is one of three: no file open, a file being
//! received, or a refused file whose remaining chunks are skipped (the client pipelines, so
//! it keeps sending until it learns of the refusal). Anything outside the grammar in
//! `ft_protocol`'s docs is answered with a `ProtocolViolation` error and ends the session.
//! Every read and write is bounded by a timeout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ft_protocol::{
    codec::{self, decode_hello, HelloError, MessageReader, MessageWriter},
    Ack, BeginFile, CatalogEntry, Chunk, EndFile, ErrorCode, ErrorResponse, Listing, ProtocolError,
    Request, Response, Welcome, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::net::{
    tcp::{OwnedReadHalf, OwnedWriteHalf},
    TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::NewRecord,
    names::ValidName,
    upload::{Upload, UploadError},
    ServerState,
};

/// Catalog entries per `Listing` page. An entry is at most about 8.3 KiB (two names of
/// `MAX_NAME_LEN`), so a page always fits in `MAX_FRAME_LEN`.
const LISTING_PAGE_ENTRIES: usize = 64;

/// Why a session ended abnormally. Logged once, at the task boundary.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or writing the socket failed, or the client sent undecodable bytes.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The client broke the message grammar; it was told why.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// The client was silent for too long.
    #[error("timed out after {0:?} waiting for the client")]
    Timeout(Duration),
    /// The client speaks another protocol version; it was told.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The client hung up in the middle of an upload.
    #[error("client disconnected during '{name}' after {received} of {size} bytes")]
    VanishedMidFile {
        /// The file's name.
        name: String,
        /// Bytes received before the hang-up.
        received: u64,
        /// Declared size.
        size: u64,
    },
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(String),
}

/// The upload side of the session.
#[derive(Debug)]
enum Transfer {
    /// No file open: the next upload message must be BeginFile.
    Idle,
    /// Receiving this file's chunks.
    Receiving(Upload),
    /// This file was already answered with an error; its remaining messages are dropped.
    Skipping,
}

/// Serves one client until it leaves, breaks the protocol, or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) {
    // Acks are small and latency-bound; don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let mut session = Session {
        reader: codec::message_reader(read_half),
        writer: codec::message_writer(write_half),
        peer,
        state,
        transfer: Transfer::Idle,
        files_stored: 0,
    };
    let started = std::time::Instant::now();
    let result = session.run(&shutdown).await;
    let elapsed = started.elapsed();
    match result {
        Ok(()) => tracing::info!(
            %peer, files = session.files_stored, ?elapsed, "connection closed"
        ),
        Err(err) => tracing::warn!(
            %peer, files = session.files_stored, ?elapsed, error = %err, "connection ended"
        ),
    }
}

struct Session {
    reader: MessageReader<OwnedReadHalf, Request>,
    writer: MessageWriter<OwnedWriteHalf, Response>,
    peer: SocketAddr,
    state: Arc<ServerState>,
    transfer: Transfer,
    files_stored: u64,
}

impl Session {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        if !self.handshake().await? {
            return Ok(());
        }
        loop {
            let idle = matches!(self.transfer, Transfer::Idle);
            let next = tokio::select! {
                next = self.next_request() => next?,
                // Only between files: an upload in flight is allowed to finish.
                () = shutdown.cancelled(), if idle => {
                    let bye = ErrorResponse::new(None, ErrorCode::ShuttingDown, "server is shutting down");
                    let _ = self.send(Response::Error(bye)).await;
                    return Ok(());
                }
            };
            let Some(request) = next else {
                return match std::mem::replace(&mut self.transfer, Transfer::Idle) {
                    // Dropping the upload closes its writer; the staging file is removed.
                    Transfer::Receiving(upload) => Err(SessionError::VanishedMidFile {
                        name: upload.name.as_str().to_owned(),
                        received: upload.received(),
                        size: upload.size,
                    }),
                    _ => Ok(()),
                };
            };
            match request {
                Request::Hello(_) => return Err(self.violation("Hello sent twice").await),
                Request::BeginFile(begin) => self.on_begin_file(begin).await?,
                Request::Chunk(chunk) => self.on_chunk(chunk).await?,
                Request::EndFile(end) => self.on_end_file(end).await?,
                Request::CancelFile(cancel) => self.on_cancel_file(&cancel.reason).await?,
                Request::List(_) => self.on_list().await?,
            }
        }
    }

    /// Reads the first frame as a Hello and answers it. Returns false if the client left
    /// before saying anything.
    async fn handshake(&mut self) -> Result<bool, SessionError> {
        let timeout = self.state.limits.handshake_timeout;
        let frame = match tokio::time::timeout(timeout, self.reader.get_mut().next()).await {
            Err(_) => {
                return Err(self
                    .refuse(ErrorCode::Timeout, SessionError::Timeout(timeout))
                    .await)
            }
            Ok(None) => return Ok(false),
            Ok(Some(Err(err))) => {
                let message = err.to_string();
                return Err(self
                    .refuse(
                        ErrorCode::ProtocolViolation,
                        SessionError::Violation(message),
                    )
                    .await);
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let hello = match decode_hello(&frame) {
            Ok(hello) => hello,
            Err(err) => {
                let code = match err {
                    HelloError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
                    HelloError::NotHello => ErrorCode::ProtocolViolation,
                };
                return Err(self.refuse(code, err.into()).await);
            }
        };
        tracing::info!(peer = %self.peer, client = %hello.software, "client connected");
        self.send(Response::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            software: format!("fts {}", env!("CARGO_PKG_VERSION")),
            capabilities: Vec::new(),
            max_file_size: self.state.limits.max_file_size,
        }))
        .await?;
        Ok(true)
    }

    async fn on_begin_file(&mut self, begin: BeginFile) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("BeginFile while another file is open").await);
        }
        let id = begin.id;
        let max = self.state.limits.max_file_size;
        if begin.size > max {
            let message = format!(
                "{} bytes exceeds the server's limit of {max} bytes",
                begin.size
            );
            return self
                .refuse_file(id, &begin.name, ErrorCode::TooLarge, message)
                .await;
        }
        let name = match ValidName::parse(&begin.name) {
            Ok(name) => name,
            Err(err) => {
                let message = format!("name {:?} refused: {err}", begin.name);
                return self
                    .refuse_file(id, &begin.name, ErrorCode::InvalidName, message)
                    .await;
            }
        };
        match Upload::start(&self.state.store, &begin, name) {
            Ok(upload) => self.transfer = Transfer::Receiving(upload),
            Err(err) => {
                return self
                    .refuse_file(id, &begin.name, ErrorCode::Storage, err.to_string())
                    .await;
            }
        }
        Ok(())
    }

    async fn on_chunk(&mut self, chunk: Chunk) -> Result<(), SessionError> {
        let upload = match &mut self.transfer {
            Transfer::Idle => return Err(self.violation("Chunk without BeginFile").await),
            Transfer::Skipping => return Ok(()),
            Transfer::Receiving(upload) => upload,
        };
        match upload.push(chunk.data).await {
            Ok(()) => Ok(()),
            Err(err @ UploadError::ExcessBytes { .. }) => {
                Err(self.violation(&err.to_string()).await)
            }
            Err(err) => {
                let (id, name) = (upload.id, upload.name.as_str().to_owned());
                self.refuse_file(id, &name, ErrorCode::Storage, err.to_string())
                    .await
            }
        }
    }

    async fn on_end_file(&mut self, end: EndFile) -> Result<(), SessionError> {
        let upload = match std::mem::replace(&mut self.transfer, Transfer::Idle) {
            Transfer::Idle => return Err(self.violation("EndFile without BeginFile").await),
            Transfer::Skipping => return Ok(()),
            Transfer::Receiving(upload) => upload,
        };
        let (id, name, size, started) =
            (upload.id, upload.name.clone(), upload.size, upload.started);
        let conflict = upload.conflict;
        let written = match upload.finish().await {
            Ok(written) => written,
            Err(err @ UploadError::MissingBytes { .. }) => {
                return Err(self.violation(&err.to_string()).await)
            }
            Err(err) => {
                return self
                    .answer_file_error(id, name.as_str(), ErrorCode::Storage, err.to_string())
                    .await
            }
        };
        if written.hash != end.hash {
            let message = format!(
                "content hash {} differs from the sender's {}; nothing was stored",
                written.hash, end.hash
            );
            return self
                .answer_file_error(id, name.as_str(), ErrorCode::HashMismatch, message)
                .await;
        }

        let state = Arc::clone(&self.state);
        let peer = self.peer;
        let hash = written.hash;
        let committed = tokio::task::spawn_blocking(move || {
            let stored = state
                .store
                .commit(written.file, &name, conflict)
                .map_err(|err| err.to_string())?;
            state
                .catalog
                .record(&NewRecord {
                    stored_name: stored.as_str().to_owned(),
                    sent_name: name.as_str().to_owned(),
                    size,
                    hash,
                    client: peer,
                })
                .map_err(|err| {
                    format!("stored as '{}' but not recorded: {err}", stored.as_str())
                })?;
            Ok::<_, String>((name, stored))
        })
        .await;
        let (name, stored) = match committed {
            Ok(Ok(names)) => names,
            Ok(Err(message)) => {
                return self
                    .answer_file_error(id, "", ErrorCode::Storage, message)
                    .await
            }
            Err(join) => {
                return self
                    .answer_file_error(id, "", ErrorCode::Internal, join.to_string())
                    .await
            }
        };
        tracing::info!(
            peer = %self.peer, name = name.as_str(), stored = stored.as_str(), bytes = size,
            elapsed = ?started.elapsed(), result = "stored", "file received"
        );
        self.files_stored += 1;
        self.send(Response::Ack(Ack {
            id,
            stored_name: stored.as_str().to_owned(),
            size,
            hash,
        }))
        .await?;
        Ok(())
    }

    async fn on_cancel_file(&mut self, reason: &str) -> Result<(), SessionError> {
        match std::mem::replace(&mut self.transfer, Transfer::Idle) {
            Transfer::Idle => Err(self.violation("CancelFile without BeginFile").await),
            Transfer::Skipping => Ok(()),
            // Dropping the upload removes its staging file.
            Transfer::Receiving(upload) => {
                let message = format!("cancelled by the client: {reason}");
                self.answer_file_error(
                    upload.id,
                    upload.name.as_str(),
                    ErrorCode::Cancelled,
                    message,
                )
                .await
            }
        }
    }

    async fn on_list(&mut self) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("List while a file is open").await);
        }
        let catalog = self.state.catalog.clone();
        let entries: Vec<CatalogEntry> =
            match tokio::task::spawn_blocking(move || catalog.list()).await {
                Ok(Ok(entries)) => entries,
                Ok(Err(err)) => {
                    let message = err.to_string();
                    return Err(self
                        .refuse(ErrorCode::Internal, SessionError::Catalog(message))
                        .await);
                }
                Err(join) => {
                    let message = join.to_string();
                    return Err(self
                        .refuse(ErrorCode::Internal, SessionError::Catalog(message))
                        .await);
                }
            };
        let mut pages = entries.chunks(LISTING_PAGE_ENTRIES).peekable();
        if pages.peek().is_none() {
            return self
                .send(Response::Listing(Listing {
                    entries: Vec::new(),
                    last: true,
                }))
                .await;
        }
        while let Some(page) = pages.next() {
            let last = pages.peek().is_none();
            self.send(Response::Listing(Listing {
                entries: page.to_vec(),
                last,
            }))
            .await?;
        }
        Ok(())
    }

    /// Answers a file with an error and skips whatever the client still sends for it.
    async fn refuse_file(
        &mut self,
        id: u32,
        name: &str,
        code: ErrorCode,
        message: String,
    ) -> Result<(), SessionError> {
        self.answer_file_error(id, name, code, message).await?;
        self.transfer = Transfer::Skipping;
        Ok(())
    }

    /// Sends a file-level error; the upload state is left to the caller.
    async fn answer_file_error(
        &mut self,
        id: u32,
        name: &str,
        code: ErrorCode,
        message: String,
    ) -> Result<(), SessionError> {
        tracing::warn!(peer = %self.peer, name, result = %code, %message, "file refused");
        self.send(Response::Error(ErrorResponse::new(Some(id), code, message)))
            .await?;
        Ok(())
    }

    /// Tells the client why the connection is being closed and returns the error to log.
    async fn refuse(&mut self, code: ErrorCode, err: SessionError) -> SessionError {
        let response = ErrorResponse::new(None, code, err.to_string());
        // Best effort: the client may already be gone.
        let _ = self.send(Response::Error(response)).await;
        err
    }

    async fn violation(&mut self, what: &str) -> SessionError {
        self.refuse(
            ErrorCode::ProtocolViolation,
            SessionError::Violation(what.to_owned()),
        )
        .await
    }

    /// The next request, `None` on a clean hang-up. Undecodable input is answered and ends
    /// the session; so does silence longer than the idle timeout.
    async fn next_request(&mut self) -> Result<Option<Request>, SessionError> {
        let timeout = self.state.limits.idle_timeout;
        match tokio::time::timeout(timeout, self.reader.next()).await {
            Err(_) => Err(self
                .refuse(ErrorCode::Timeout, SessionError::Timeout(timeout))
                .await),
            Ok(None) => Ok(None),
            Ok(Some(Ok(request))) => Ok(Some(request)),
            Ok(Some(Err(ProtocolError::Io(err)))) => Err(ProtocolError::Io(err).into()),
            Ok(Some(Err(err))) => {
                let message = err.to_string();
                Err(self
                    .refuse(
                        ErrorCode::ProtocolViolation,
                        SessionError::Violation(message),
                    )
                    .await)
            }
        }
    }

    /// Sends one response, bounded by the idle timeout so a client that stops reading
    /// cannot park this task forever.
    async fn send(&mut self, response: Response) -> Result<(), SessionError> {
        let timeout = self.state.limits.idle_timeout;
        match tokio::time::timeout(timeout, self.writer.send(response)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SessionError::Timeout(timeout)),
        }
    }
}
