//! One connection's state machine over typed messages.
//!
//! A session is: handshake, then a loop reading one [`Request`] at a time, each applied by a
//! small `on_*` function (those of an upload in `uploads.rs`, the others in
//! `store_requests.rs`). The upload state is one of three: no file open, a file being
//! received, or a refused file whose remaining chunks are skipped (the client pipelines, so
//! it keeps sending until it learns of the refusal). Anything outside the grammar in
//! `ft_protocol`'s docs is answered with a `ProtocolViolation` error and ends the session.
//! Every read and write is bounded by a timeout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ft_protocol::{
    codec::{self, HelloError, MessageReader, MessageWriter},
    Authenticated, ErrorCode, ErrorResponse, Hash, ProtocolError, Request, Response, Role, Welcome,
    CAPABILITY_ZSTD, PROTOCOL_VERSION,
};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    auth::{
        roles::{self, Action},
        AuthFailure, Identity, Turn, ANONYMOUS,
    },
    catalog::CatalogError,
    commit::CommitError,
    group::Committed,
    idle::{IdleMark, Stage},
    refusal::Refusal,
    upload::Upload,
    ServerState,
};

mod announced;
mod relay_leave;
mod relay_listen;
mod relay_offer;
mod round;
mod store_requests;
mod uploads;

use round::UploadRound;

/// Catalog entries per `Listing` page. An entry is at most about 8.3 KiB (two names of
/// `MAX_NAME_LEN`), so a page always fits in `MAX_FRAME_LEN`.
const LISTING_PAGE_ENTRIES: usize = 64;

/// First folders an admin session remembers as namespaces or not, at most.
const MAX_NAMESPACES_SEEN: usize = 1024;

/// A client's connection once TLS is up.
type Connection = tokio_rustls::server::TlsStream<crate::listener::Wire>;

/// Requests in.
type Reader = MessageReader<ReadHalf<Connection>, Request>;

/// Responses out.
type Writer = MessageWriter<WriteHalf<Connection>, Response>;

/// Why a session ended abnormally. Logged once, at the task boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
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
    /// The catalog failed while answering a request.
    #[error("catalog: {0}")]
    Catalog(CatalogError),
    /// A blocking task doing the session's work panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(tokio::task::JoinError),
    /// A group commit failed as a whole.
    #[error("{0}")]
    Commit(CommitError),
    /// The client could not log in, or its user was removed or its token replaced.
    #[error("not authorized: {0}")]
    Unauthorized(AuthFailure),
    /// A newer connection took over the upload in flight (the client reconnected).
    #[error("upload of '{0}' taken over by a newer connection")]
    Superseded(String),
    /// A listening connection ended normally (not an error: it closes the session).
    #[error("listening connection closed")]
    Listened,
}

/// The upload side of the session.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per session; boxing would add an allocation per file
enum Transfer {
    /// No file open: the next upload message must be BeginFile.
    Idle,
    /// Receiving this file's chunks.
    Receiving(Upload),
    /// This file was already answered with an error; its remaining messages are dropped.
    Skipping,
}

/// Serves one client until it leaves, breaks the protocol, or the server shuts down.
pub(crate) async fn serve(
    stream: Connection,
    peer: SocketAddr,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    cut: CancellationToken,
    login_deadline: tokio::time::Instant,
    handshaking: IdleMark,
) {
    // Acks are small and latency-bound; don't let Nagle hold them back.
    let _ = stream.get_ref().0.get_ref().set_nodelay(true);
    let (read_half, write_half) = tokio::io::split(stream);
    let mut session = Session {
        reader: codec::message_reader(read_half),
        writer: codec::message_writer(write_half),
        peer,
        state,
        transfer: Transfer::Idle,
        zstd: false,
        round: UploadRound::default(),
        identity: None,
        login_deadline,
        handshaking: Some(handshaking),
        namespaces_seen: std::sync::Mutex::default(),
        files_stored: 0,
        bytes_stored: 0,
        shutdown: shutdown.clone(),
        cut,
        _online: None,
    };
    // Every line logged for this connection carries its peer.
    let span = tracing::info_span!("connection", %peer, user = tracing::field::Empty);
    let started = std::time::Instant::now();
    let result = session.run(&shutdown).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let _entered = span.enter();
    match result {
        Ok(()) | Err(SessionError::Listened) => tracing::info!(
            files = session.files_stored,
            bytes = session.bytes_stored,
            rate = %rate(session.bytes_stored, elapsed),
            ms = elapsed.as_millis() as u64,
            "connection closed"
        ),
        Err(err) => tracing::warn!(
            files = session.files_stored,
            bytes = session.bytes_stored,
            ms = elapsed.as_millis() as u64,
            error = %err,
            "connection ended"
        ),
    }
    close_without_reset(session.reader, session.writer).await;
}

/// Bytes per second over `elapsed`, for people: `12.3 MiB/s`.
fn rate(bytes: u64, elapsed: Duration) -> String {
    let per_second = bytes as f64 / elapsed.as_secs_f64().max(0.001);
    format!("{:.1} MiB/s", per_second / (1024.0 * 1024.0))
}

/// Longest a closing connection's input is drained (see [`close_without_reset`]).
const CLOSE_DRAIN_TIME: Duration = Duration::from_secs(1);

/// Most bytes drained from a closing connection.
const CLOSE_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Closes a connection so that the client still reads the last answers. A socket closed with
/// unread input makes the kernel send a reset, which can destroy answers still in flight: an
/// `Error` sent while the client streams files or `Prepare` pages back to back. So our side
/// is shut down first, then the client's input is read and dropped until it closes too, for
/// at most [`CLOSE_DRAIN_TIME`] and [`CLOSE_DRAIN_BYTES`].
async fn close_without_reset(reader: Reader, writer: Writer) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if writer.into_inner().shutdown().await.is_err() {
        return;
    }
    let mut input = reader.into_inner();
    let mut scratch = vec![0; 64 * 1024];
    let deadline = tokio::time::Instant::now() + CLOSE_DRAIN_TIME;
    let mut drained = 0;
    while drained < CLOSE_DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, input.read(&mut scratch)).await {
            Ok(Ok(read)) if read > 0 => drained += read,
            _ => return,
        }
    }
}

/// What waiting for a request came to.
enum Waited {
    /// A request, or the end of the connection (`None`).
    Request(Option<Request>),
    /// Something else was done (answers sent, a group committed): wait again.
    Handled,
    /// The session is over.
    Ended,
}

struct Session {
    reader: Reader,
    writer: Writer,
    peer: SocketAddr,
    state: Arc<ServerState>,
    transfer: Transfer,
    /// The client may send zstd-compressed chunks.
    zstd: bool,
    /// Offers, announcements, the group waiting for its commit and the commits in flight.
    round: UploadRound,
    /// Who the client is, once it authenticated (before, no request is let through).
    identity: Option<Identity>,
    /// When the TLS handshake, Hello and the login must be done by, all told.
    login_deadline: tokio::time::Instant,
    /// Until the login is done, a full server may evict this connection (see idle.rs).
    handshaking: Option<IdleMark>,
    /// For an admin: whether first folders of its names are namespaces, as looked up.
    namespaces_seen: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    /// Files acknowledged on this connection, for the log.
    files_stored: u64,
    /// Their bytes, for the log.
    bytes_stored: u64,
    /// Cancelled when the server shuts down (a listening connection watches it).
    shutdown: CancellationToken,
    /// Cancelled when the shutdown's grace period is over: the upload in flight is cut (its
    /// partial file kept) and the client told why.
    cut: CancellationToken,
    /// Counts the user online while the connection is open (see relay/presence.rs).
    _online: Option<crate::relay::OnlineGuard>,
}

impl Session {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        if !self.handshake().await? {
            return Ok(());
        }
        self.handshaking = None;
        loop {
            // While requests are buffered and no commit waits to be answered, take the next
            // one straight away: the select below builds two timers, a timeout and a token
            // handle each time, which for a stream of small files cost more than the request.
            // What it would watch is checked after every request instead.
            let buffered = if self.round.answers_due() {
                None
            } else {
                self.reader.next().now_or_never()
            };
            let next = match buffered {
                Some(next) => self.received(next).await?,
                None => match self.wait_for_request(shutdown).await? {
                    Waited::Request(next) => next,
                    Waited::Handled => continue,
                    Waited::Ended => return Ok(()),
                },
            };
            let Some(request) = next else {
                // The commit in flight completes (and its answers may still reach a client that
                // half-closed). The group not yet committed is not: a client that vanished
                // will resume those files at their full length instead of storing them twice.
                let _ = self.finish_commit().await;
                return match std::mem::replace(&mut self.transfer, Transfer::Idle) {
                    // Dropping the upload closes its writer; the partial file stays for resume.
                    Transfer::Receiving(upload) => Err(SessionError::VanishedMidFile {
                        name: upload.name.as_str().to_owned(),
                        received: upload.held(),
                        size: upload.size,
                    }),
                    _ => Ok(()),
                };
            };
            let mid_file = matches!(&request, Request::Chunk(_) | Request::CompressedChunk(_));
            self.handle(request).await?;
            // The select below looks at neither the shutdown, nor a takeover, nor the group's
            // age while requests keep coming (a client streams a whole round without a pause):
            // check them here too.
            if self.cut.is_cancelled() {
                return self.cut_off().await;
            }
            match &self.transfer {
                Transfer::Idle if shutdown.is_cancelled() => return self.say_goodbye().await,
                Transfer::Receiving(upload) if upload.superseded.is_cancelled() => {
                    return self.give_up_superseded()
                }
                _ => {}
            }
            // A verified file checks its group's age itself; this catches the chunks of a large
            // upload that take long while a group waits.
            if mid_file && self.round.group_overdue() {
                self.start_commit().await?;
            }
        }
    }

    /// Waits for the next request, answering finished commits and committing a waiting group
    /// when the client pauses, meanwhile. `Ended`: the session is over (a takeover or a
    /// shutdown).
    ///
    /// The select only borrows what each branch watches; what woke it is then handled with
    /// the whole session at hand.
    async fn wait_for_request(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Waited, SessionError> {
        let idle = matches!(self.transfer, Transfer::Idle);
        let superseded = match &self.transfer {
            Transfer::Receiving(upload) => Some(upload.superseded.clone()),
            _ => None,
        };
        let commit_deadline = self.round.commit_deadline();
        let idle_timeout = self.state.limits.idle_timeout;
        // With nothing in flight, a full server may close this connection for a new one.
        let evictable = (idle && !self.round.is_committing() && !self.round.has_waiting_files())
            .then(|| self.state.idle.mark(Stage::Session));
        let evicted = evictable.as_ref().map(IdleMark::evicted);
        let reader = &mut self.reader;
        let round = &mut self.round;
        let committing = round.is_committing();
        // Biased, in this order: when a request arrives, the timers and tokens below are
        // not polled.
        let woke = tokio::select! {
            biased;
            committed = async { round.oldest_commit()?.await.into() }, if committing => {
                Woke::Committed(committed)
            }
            next = tokio::time::timeout(idle_timeout, reader.next()) => Woke::Request(next),
            // Dropping the upload keeps its partial file for the connection taking over.
            () = cancelled(superseded) => Woke::Superseded,
            // Only between files: an upload in flight is allowed to finish.
            () = shutdown.cancelled(), if idle => Woke::ShuttingDown,
            () = self.cut.cancelled() => Woke::Cut,
            () = cancelled(evicted) => Woke::Evicted,
            // The client paused, or the group's first file waited long enough: commit what is
            // verified rather than keep it waiting.
            () = sleep_until(commit_deadline) => Woke::CommitDue,
        };
        drop(evictable);
        match woke {
            Woke::Committed(committed) => {
                self.round.pop_oldest_commit();
                if let Some(committed) = committed {
                    let committed = committed.unwrap_or_else(|join| Err(CommitError::Task(join)));
                    self.answer_commit(committed).await?;
                }
                Ok(Waited::Handled)
            }
            Woke::Request(Err(_)) => Err(self
                .refuse(ErrorCode::Timeout, SessionError::Timeout(idle_timeout))
                .await),
            Woke::Request(Ok(next)) => Ok(Waited::Request(self.received(next).await?)),
            Woke::Superseded => {
                self.give_up_superseded()?;
                Ok(Waited::Ended)
            }
            Woke::ShuttingDown => {
                self.say_goodbye().await?;
                Ok(Waited::Ended)
            }
            Woke::Cut => {
                self.cut_off().await?;
                Ok(Waited::Ended)
            }
            Woke::Evicted => {
                tracing::info!("idle connection closed: the server is full");
                let message = "the server is full and this connection was idle; \
                               connect again when you have a request";
                let busy = ErrorResponse::new(None, ErrorCode::Busy, message);
                self.send(Response::Error(busy)).await?;
                Ok(Waited::Ended)
            }
            Woke::CommitDue => {
                self.start_commit().await?;
                Ok(Waited::Handled)
            }
        }
    }

    /// Handles one request.
    async fn handle(&mut self, request: Request) -> Result<(), SessionError> {
        let reads_the_store = matches!(
            request,
            Request::List(_)
                | Request::Prepare(_)
                | Request::Get(_)
                | Request::Delete(_)
                | Request::Info(_)
                | Request::MakeDir(_)
        );
        if reads_the_store {
            self.commit_group().await?;
        }
        match request {
            Request::Hello(_) => return Err(self.violation("Hello sent twice").await),
            Request::BeginFile(begin) => self.on_begin_file(begin).await?,
            Request::Chunk(chunk) => self.on_chunk(chunk).await?,
            Request::EndFile(end) => self.on_end_file(end).await?,
            Request::CancelFile(cancel) => self.on_cancel_file(&cancel.reason).await?,
            Request::List(list) => self.on_list(list.pattern).await?,
            Request::Prepare(prepare) => self.on_prepare(prepare).await?,
            Request::Get(get) => self.on_get(get).await?,
            Request::Delete(delete) => self.on_delete(delete).await?,
            Request::Info(_) => self.on_info().await?,
            Request::MakeDir(make_dir) => self.on_make_dir(make_dir).await?,
            Request::CompressedChunk(chunk) => self.on_compressed_chunk(chunk).await?,
            Request::Authenticate(_) => {
                return Err(self.violation("Authenticate sent twice").await)
            }
            Request::Users(_) => self.on_users().await?,
            Request::Listen(_) | Request::Offer(_) | Request::Leave(_)
                if !matches!(self.transfer, Transfer::Idle) =>
            {
                // Each holds the session for long; an open upload would stay pinned (its
                // writer, lease and partial file) all that time.
                return Err(self
                    .violation("a relay request while an upload is open")
                    .await);
            }
            Request::Listen(listen) => {
                self.signed_in_role(false).await?;
                self.commit_group().await?;
                self.on_listen(listen).await?;
                // A listening connection does nothing else: its end is the session's.
                return Err(SessionError::Listened);
            }
            Request::Offer(offer) => {
                self.commit_group().await?;
                self.on_offer(offer).await?;
            }
            Request::Leave(offer) => {
                self.commit_group().await?;
                self.on_leave(offer).await?;
            }
            Request::Inbox(_) => {
                self.signed_in_role(false).await?;
                self.on_inbox().await?;
            }
            Request::Answer(_)
            | Request::RelayBegin(_)
            | Request::RelayData(_)
            | Request::RelayEnd(_)
            | Request::Received(_)
            | Request::CancelOffer(_)
            | Request::OfferEnd(_) => {
                return Err(self.violation("a relay message outside an offer").await)
            }
        }
        Ok(())
    }

    /// Between files during a shutdown: commits and answers what is verified, then tells the
    /// client why the connection ends.
    async fn say_goodbye(&mut self) -> Result<(), SessionError> {
        self.commit_group().await?;
        let bye = ErrorResponse::new(None, ErrorCode::ShuttingDown, "server is shutting down");
        let _ = self.send(Response::Error(bye)).await;
        Ok(())
    }

    /// The shutdown's grace period is over: says so to the client, whose upload in flight
    /// (if any) is kept for resume when the upload is dropped with the session.
    async fn cut_off(&mut self) -> Result<(), SessionError> {
        let message = match &self.transfer {
            Transfer::Receiving(upload) => format!(
                "server is shutting down and its grace period is over; {} is kept to be \
                 resumed",
                upload.name.as_str()
            ),
            _ => "server is shutting down and its grace period is over".to_owned(),
        };
        let bye = ErrorResponse::new(None, ErrorCode::ShuttingDown, &message);
        let _ = self.send(Response::Error(bye)).await;
        Ok(())
    }

    /// A newer connection took the upload in flight over. Dropping the upload keeps its
    /// partial file for that connection.
    fn give_up_superseded(&mut self) -> Result<(), SessionError> {
        match std::mem::replace(&mut self.transfer, Transfer::Idle) {
            Transfer::Receiving(upload) => {
                Err(SessionError::Superseded(upload.name.as_str().to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Reads the first frame as a Hello and answers it. Returns false if the client left
    /// before saying anything.
    async fn handshake(&mut self) -> Result<bool, SessionError> {
        let timeout = self.state.limits.handshake_timeout;
        self.reader
            .decoder_mut()
            .decode_next_with(codec::hello_request);
        let first = tokio::time::timeout_at(self.login_deadline, self.reader.next()).await;
        let hello = match first {
            Err(_) => {
                return Err(self
                    .refuse(ErrorCode::Timeout, SessionError::Timeout(timeout))
                    .await)
            }
            Ok(None) => return Ok(false),
            Ok(Some(Ok(Request::Hello(hello)))) => hello,
            Ok(Some(Err(ProtocolError::Hello(err)))) => {
                let code = match err {
                    HelloError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
                    HelloError::NotHello => ErrorCode::ProtocolViolation,
                };
                return Err(self.refuse(code, err.into()).await);
            }
            Ok(Some(Err(err))) => {
                let message = err.to_string();
                return Err(self
                    .refuse(
                        ErrorCode::ProtocolViolation,
                        SessionError::Violation(message),
                    )
                    .await);
            }
            Ok(Some(Ok(_))) => {
                let message = "the first message must be Hello".to_owned();
                return Err(self
                    .refuse(
                        ErrorCode::ProtocolViolation,
                        SessionError::Violation(message),
                    )
                    .await);
            }
        };
        tracing::info!(client = ?hello.software, "client connected");
        self.zstd = hello.capabilities.iter().any(|c| c == CAPABILITY_ZSTD);
        let capabilities = if self.zstd {
            vec![CAPABILITY_ZSTD.to_owned()]
        } else {
            Vec::new()
        };
        self.send(Response::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            software: format!("fts {}", env!("CARGO_PKG_VERSION")),
            capabilities,
            max_file_size: self.state.limits.max_file_size,
        }))
        .await?;
        self.authenticate().await
    }

    /// Reads the client's `Authenticate` and answers it. Failed attempts are slowed down per
    /// address (see `auth::throttle`), logged with the peer, and end the session. Returns
    /// false if the client left first.
    async fn authenticate(&mut self) -> Result<bool, SessionError> {
        let timeout = self.state.limits.handshake_timeout;
        let request = match tokio::time::timeout_at(self.login_deadline, self.reader.next()).await {
            Err(_) => {
                return Err(self
                    .refuse(ErrorCode::Timeout, SessionError::Timeout(timeout))
                    .await)
            }
            Ok(next) => match self.received(next).await? {
                None => return Ok(false),
                Some(request) => request,
            },
        };
        let Request::Authenticate(authenticate) = request else {
            return Err(self
                .violation("the first request after Hello must be Authenticate")
                .await);
        };
        let address = self.peer.ip();
        match self.state.security.auth.throttle.turn(address) {
            Turn::After(wait) if wait.is_zero() => {}
            Turn::After(wait) => tokio::time::sleep(wait).await,
            Turn::Refused(retry) => {
                let message = format!(
                    "too many failed logins from {address}: try again in {} s",
                    retry.as_secs().max(1)
                );
                tracing::warn!(peer = %self.peer, "login refused unchecked: too many failures");
                let response = ErrorResponse::new(None, ErrorCode::Unauthorized, &message);
                let _ = self.send(Response::Error(response)).await;
                return Err(SessionError::Violation(message));
            }
        }
        let claimed = authenticate
            .credentials
            .as_ref()
            .map_or(ANONYMOUS, |credentials| credentials.user.as_str())
            .chars()
            .take(64)
            .collect::<String>();
        let state = Arc::clone(&self.state);
        let checked = tokio::task::spawn_blocking(move || {
            state
                .security
                .auth
                .authenticate(authenticate.credentials.as_ref())
        })
        .await;
        let identity = match checked {
            Ok(Ok(identity)) => identity,
            Ok(Err(failure)) => {
                self.state.security.auth.throttle.failed(address);
                // Debug-quoted: a claimed name is the client's text and must not forge log lines.
                tracing::warn!(peer = %self.peer, user = ?claimed, reason = %failure, "login failed");
                let message = failure.to_string();
                let err = SessionError::Unauthorized(failure);
                let response = ErrorResponse::new(None, ErrorCode::Unauthorized, message);
                let _ = self.send(Response::Error(response)).await;
                return Err(err);
            }
            Err(join) => {
                return Err(self
                    .refuse(ErrorCode::Internal, SessionError::Task(join))
                    .await)
            }
        };
        tracing::Span::current().record("user", identity.user.as_str());
        tracing::info!(role = %identity.role, "client authenticated");
        self.send(Response::Authenticated(Authenticated {
            user: identity.user.clone(),
            role: identity.role,
        }))
        .await?;
        if identity.user != ANONYMOUS {
            self._online = Some(crate::relay::RelayHub::came_online(
                &self.state,
                &identity.user,
            ));
        }
        self.identity = Some(identity);
        Ok(true)
    }

    /// Lets a request through if the client's user still exists with the same token and its
    /// role allows `action`. `Ok(Err(refusal))`: the request is refused with `forbidden` and
    /// the session goes on; `Err`: the session ends (the user is gone).
    ///
    /// `cheap`: trust the last full check for a moment (for a check per uploaded file).
    async fn authorize(
        &mut self,
        action: Action,
        cheap: bool,
    ) -> Result<Result<(), Refusal>, SessionError> {
        let role = self.signed_in_role(cheap).await?;
        if roles::allows(role, action) {
            return Ok(Ok(()));
        }
        let message = format!(
            "user '{}' (role {role}) may not {}",
            self.user(),
            action.describe()
        );
        Ok(Err(Refusal::new(ErrorCode::Forbidden, message)))
    }

    /// The role of the client's user, checked again: the user must still exist with the
    /// same token. Every request goes through this, also those that any signed-in user may
    /// make (the relay's); a removed user or a replaced token ends the session with
    /// `unauthorized`.
    ///
    /// `cheap`: trust the last full check for a moment (for a check per file or piece).
    pub(super) async fn signed_in_role(&mut self, cheap: bool) -> Result<Role, SessionError> {
        let Some(identity) = &self.identity else {
            return Err(self.violation("a request before Authenticate").await);
        };
        let auth = &self.state.security.auth;
        let checked = if cheap {
            auth.recheck_if_due(identity)
        } else {
            auth.recheck(identity)
        };
        match checked {
            Ok(role) => Ok(role),
            Err(failure) => {
                let message = failure.to_string();
                let err = SessionError::Unauthorized(failure);
                let response = ErrorResponse::new(None, ErrorCode::Unauthorized, message);
                let _ = self.send(Response::Error(response)).await;
                Err(err)
            }
        }
    }

    /// The name beneath the storage directory for a name the client sent.
    ///
    /// A name that breaks the name rules as sent (`.fts/x`, `../x`) is returned as sent, so
    /// the checks that follow refuse it in the client's own terms: inside a namespace it
    /// could otherwise become a valid name.
    fn stored_name(&self, name: &str) -> String {
        let Some(identity) = &self.identity else {
            return name.to_owned();
        };
        if crate::names::ValidName::parse(name).is_err() {
            return name.to_owned();
        }
        let auth = &self.state.security.auth;
        identity.to_stored(name, |namespace| {
            if namespace == ANONYMOUS || auth.is_user(namespace) {
                return true;
            }
            // A removed user's folder is still a namespace. An admin sending a tree asks
            // about the same few first folders for thousands of files: each is looked up
            // once per session.
            let mut seen = self
                .namespaces_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(&known) = seen.get(namespace) {
                return known;
            }
            if seen.len() >= MAX_NAMESPACES_SEEN {
                seen.clear();
            }
            let is_folder = self.state.store.is_top_folder(namespace);
            seen.insert(namespace.to_owned(), is_folder);
            is_folder
        })
    }

    /// The name the client sees for a stored name.
    fn client_name(&self, stored: &str) -> String {
        match &self.identity {
            Some(identity) => identity.to_client(stored).to_owned(),
            None => stored.to_owned(),
        }
    }

    /// A refusal whose message names stored files as the client names them.
    fn in_client_terms(&self, mut refusal: Refusal) -> Refusal {
        if let Some(identity) = self
            .identity
            .as_ref()
            .filter(|identity| !identity.is_admin())
        {
            let prefix = format!("{}/", identity.user);
            refusal.message = refusal.message.replace(&prefix, "");
        }
        refusal
    }

    /// The key a partial upload of the client's `key` is kept under (see
    /// `Identity::upload_key`).
    fn upload_key(&self, key: &Hash) -> Hash {
        match &self.identity {
            Some(identity) => identity.upload_key(key),
            None => *key,
        }
    }

    /// The session's user: the owner recorded for the files it stores.
    fn user(&self) -> &str {
        self.identity
            .as_ref()
            .map_or(ANONYMOUS, |identity| identity.user.as_str())
    }

    /// Removes the partial upload for `key` (its content was judged bad or abandoned).
    async fn discard_partial(&self, key: Hash) {
        let store = Arc::clone(&self.state.store);
        let removed = tokio::task::spawn_blocking(move || store.discard_partial(&key)).await;
        if let Ok(Err(err)) = removed {
            tracing::warn!(error = %err, "could not remove a partial upload");
        }
    }

    /// Answers a file with an error and skips whatever the client still sends for it.
    async fn refuse_file(
        &mut self,
        id: u32,
        name: &str,
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        self.answer_file_error(id, name, refusal).await?;
        self.transfer = Transfer::Skipping;
        Ok(())
    }

    /// Sends a file-level error; the upload state is left to the caller. Files verified
    /// before this one are committed and answered first: answers leave in the order the
    /// files were begun, which is how the client pairs them.
    async fn answer_file_error(
        &mut self,
        id: u32,
        name: &str,
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        self.commit_group().await?;
        self.round.answered(id);
        self.send(file_error(id, name, refusal)).await
    }

    /// Tells the client why the connection is being closed and returns the error to log.
    async fn refuse(&mut self, code: ErrorCode, err: SessionError) -> SessionError {
        let response = ErrorResponse::new(None, code, err.to_string());
        // Best effort: the client may already be gone.
        let _ = self.send(Response::Error(response)).await;
        err
    }

    /// Ends the session over a broken rule. An upload in flight is discarded with it: bytes
    /// from a client that breaks the protocol are not worth keeping for resume.
    async fn violation(&mut self, what: &str) -> SessionError {
        // Files verified before the violation are still stored and answered: the client
        // would otherwise send them again and they would be stored twice.
        let _ = self.commit_group().await;
        if let Transfer::Receiving(upload) = std::mem::replace(&mut self.transfer, Transfer::Idle) {
            let key = upload.key;
            upload.stop().await;
            self.discard_partial(key).await;
        }
        self.refuse(
            ErrorCode::ProtocolViolation,
            SessionError::Violation(what.to_owned()),
        )
        .await
    }

    /// What the reader produced: a request, the end of the connection (`None`), or a
    /// violation (answered).
    async fn received(
        &mut self,
        next: Option<Result<Request, ProtocolError>>,
    ) -> Result<Option<Request>, SessionError> {
        match next {
            None => Ok(None),
            Some(Ok(request)) => Ok(Some(request)),
            // A reset or an EOF in the middle of a frame is a hang-up like any other.
            Some(Err(ProtocolError::Io(err))) => {
                tracing::debug!(error = %err, "connection lost");
                Ok(None)
            }
            Some(Err(err)) => {
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

    /// Queues one response without writing it out yet (see [`Session::send_queued`]).
    async fn queue(&mut self, response: Response) -> Result<(), SessionError> {
        let timeout = self.state.limits.idle_timeout;
        match tokio::time::timeout(timeout, self.writer.feed(response)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SessionError::Timeout(timeout)),
        }
    }

    /// Writes out queued responses.
    async fn send_queued(&mut self) -> Result<(), SessionError> {
        let timeout = self.state.limits.idle_timeout;
        match tokio::time::timeout(timeout, self.writer.flush()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SessionError::Timeout(timeout)),
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

/// What ended a wait in [`Session::wait_for_request`].
enum Woke {
    /// The oldest commit in flight finished (`None`: there was none after all).
    Committed(Option<Result<Committed, tokio::task::JoinError>>),
    /// The reader produced something, or the idle timeout passed first.
    Request(Result<Option<Result<Request, ProtocolError>>, tokio::time::error::Elapsed>),
    /// The server is full and this connection, idle the longest, gives up its slot.
    Evicted,
    /// A newer connection took the upload in flight over.
    Superseded,
    /// The server is shutting down and no file is open.
    ShuttingDown,
    /// The shutdown's grace period is over.
    Cut,
    /// The waiting group's commit is due.
    CommitDue,
}

/// Resolves at `deadline`; never, without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Resolves when `token` is cancelled; never, without a token.
async fn cancelled(token: Option<CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// A file-level error answer, logged.
fn file_error(id: u32, name: &str, Refusal { code, message }: Refusal) -> Response {
    tracing::warn!(name, result = %code, %message, "file refused");
    Response::Error(ErrorResponse::new(Some(id), code, message))
}
