//! The accept loop: connection limit, accept-error backoff, the TLS handshake, graceful
//! shutdown.
//!
//! Each connection runs as its own tokio task. A connection takes a permit from a semaphore
//! sized `--max-connections`; when none is left the client is told `Busy` at once and closed,
//! so the server never queues unbounded work. On shutdown the loop stops accepting, idle
//! sessions say goodbye, and uploads in flight get `--shutdown-grace` to finish.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use ft_protocol::{codec, ErrorCode, ErrorResponse, Response, PROTOCOL_VERSION};
use futures::SinkExt;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{idle::Stage, memory::Reserved, session, ServerState};

/// Longest pause after a failed `accept()` (for instance, out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Time allowed to tell a refused client why, before dropping it.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Refusals being written at once; beyond this a flood of clients is dropped without a word,
/// so refusing costs bounded memory too.
const MAX_PENDING_REFUSALS: usize = 64;

/// Accepts clients on `listener` until `shutdown` is cancelled, then waits up to the grace
/// period for sessions to end, and cuts those still open: when this returns, no session of
/// this server runs any more (uploads cut are kept for resume).
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    let admitted_by_memory = state.memory.connections();
    if admitted_by_memory < state.limits.max_connections as u64 {
        tracing::warn!(
            max_memory = state.memory.total(),
            connections = admitted_by_memory,
            "--max-memory admits fewer connections than --max-connections"
        );
    }
    let per_address = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let per_address_limit = state.limits.max_connections_per_address;
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    let sessions = TaskTracker::new();
    // Cancelled when the grace period is over: every session still open is dropped.
    let cut = CancellationToken::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "accept failed; pausing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Some(address_slot) = AddressSlot::take(&per_address, peer.ip(), per_address_limit)
        else {
            if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                let state = Arc::clone(&state);
                sessions.spawn(async move {
                    let message = "too many connections from your address; try again later";
                    refuse_busy(stream, peer, &state, message).await;
                    drop(permit);
                });
            }
            continue;
        };
        let served = Served {
            state: Arc::clone(&state),
            shutdown: shutdown.clone(),
            cut: cut.clone(),
            address_slot,
        };
        match admit(&state, &permits) {
            Ok(admitted) => {
                sessions.spawn(served.serve(stream, peer, admitted));
            }
            Err(message) => match Arc::clone(&refusals).try_acquire_owned() {
                Ok(refusal_permit) => {
                    // A full server makes room by closing the connection idle the longest;
                    // the new client gets the slot once that one is gone.
                    let evicted = state.idle.evict_oldest();
                    let permits = Arc::clone(&permits);
                    sessions.spawn(async move {
                        let admitted = if evicted {
                            admit_within(&served.state, &permits, EVICTION_WAIT).await
                        } else {
                            Err(message)
                        };
                        match admitted {
                            Ok(admitted) => {
                                drop(refusal_permit);
                                served.serve(stream, peer, admitted).await;
                            }
                            Err(message) => {
                                refuse_busy(stream, peer, &served.state, message).await;
                                drop(refusal_permit);
                            }
                        }
                    });
                }
                Err(_) => drop(stream),
            },
        }
    }

    // Stop the kernel from completing handshakes nobody will answer.
    drop(listener);
    sessions.close();
    let grace = state.limits.shutdown_grace;
    tracing::info!(
        open = sessions.len(),
        ?grace,
        "shutting down: no longer accepting"
    );
    if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
        tracing::warn!(
            cut = sessions.len(),
            "grace period over; cutting remaining connections"
        );
        cut.cancel();
        sessions.wait().await;
    }
}

/// Longest a session cut at the end of the shutdown's grace period may take to tell its
/// client.
const CUT_GOODBYE: Duration = Duration::from_secs(1);

/// Longest a new client waits for the slot of the idle connection evicted for it.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// A connection slot and the connection's working set of memory.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    _working_set: Reserved,
}

/// Takes a connection slot and a working set, if both are free.
fn admit(state: &ServerState, permits: &Arc<Semaphore>) -> Result<Admitted, &'static str> {
    let permit = Arc::clone(permits)
        .try_acquire_owned()
        .map_err(|_| "server is at its connection limit; try again later")?;
    let working_set = state.memory.admit().ok_or_else(|| {
        let (in_use, budget) = (state.memory.in_use(), state.memory.total());
        tracing::warn!(in_use, budget, "memory budget spent");
        "server is at its memory limit (--max-memory); try again later"
    })?;
    Ok(Admitted {
        _permit: permit,
        _working_set: working_set,
    })
}

/// [`admit`], retried until `wait` has passed (while an evicted connection lets go).
async fn admit_within(
    state: &ServerState,
    permits: &Arc<Semaphore>,
    wait: Duration,
) -> Result<Admitted, &'static str> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match admit(state, permits) {
            Ok(admitted) => return Ok(admitted),
            Err(message) if tokio::time::Instant::now() >= deadline => return Err(message),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What a connection's task needs besides its stream.
struct Served {
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    cut: CancellationToken,
    address_slot: AddressSlot,
}

impl Served {
    /// Runs the connection: TLS, then the session; until it ends or the grace period is cut.
    /// Until its login is done, the connection may be evicted for a new one (see idle.rs).
    async fn serve(self, stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
        let Served {
            state,
            shutdown,
            cut,
            address_slot,
        } = self;
        // TLS, Hello and the login together get one handshake timeout.
        let login_deadline = tokio::time::Instant::now() + state.limits.handshake_timeout;
        let handshaking = state.idle.mark(Stage::Handshake);
        let evicted = handshaking.evicted();
        let session_cut = cut.clone();
        let serving = async {
            if let Some(stream) = accept_tls(stream, peer, &state, login_deadline).await {
                let state = Arc::clone(&state);
                session::serve(
                    stream,
                    peer,
                    state,
                    shutdown,
                    session_cut,
                    login_deadline,
                    handshaking,
                )
                .await;
            }
        };
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => {}
            // The session is told too: it says why to its client, given a moment for it.
            () = cut.cancelled() => {
                let _ = tokio::time::timeout(CUT_GOODBYE, &mut serving).await;
            }
            () = evicted.cancelled() => {
                tracing::info!(%peer, "evicted during its handshake: the server is full");
            }
        }
        drop(admitted);
        drop(address_slot);
    }
}

/// Tells a client over the connection limit so, inside TLS like every answer, and within
/// [`REFUSAL_TIMEOUT`] all told.
async fn refuse_busy(stream: TcpStream, peer: SocketAddr, state: &ServerState, message: &str) {
    tracing::warn!(%peer, reason = message, "refused: busy");
    let refusing = async {
        let deadline = tokio::time::Instant::now() + REFUSAL_TIMEOUT;
        let stream = accept_tls(stream, peer, state, deadline).await?;
        let mut writer = codec::message_writer::<_, Response>(stream);
        let busy = ErrorResponse::new(None, ErrorCode::Busy, message);
        writer.send(Response::Error(busy)).await.ok()?;
        let mut stream = writer.into_inner();
        tokio::io::AsyncWriteExt::shutdown(&mut stream).await.ok()
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusing).await;
}

/// The socket beneath TLS: reads go through a buffer, so that one system call takes in
/// several TLS records (rustls asks for one record, 16 KiB, at a time: 66,000 reads per
/// relayed GiB); writes pass straight through.
pub(crate) type Wire = tokio::io::BufReader<TcpStream>;

/// Bytes one read of a client's socket may take in (four full TLS records).
const WIRE_READ_BYTES: usize = 64 * 1024;

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS handshake of a new connection, within `timeout`. A client that speaks the
/// protocol without TLS (an older `ftc`) is told in its own terms, a plaintext version
/// mismatch, rather than being sent bytes it cannot read. Failures are logged here.
async fn accept_tls(
    stream: TcpStream,
    peer: SocketAddr,
    state: &ServerState,
    deadline: tokio::time::Instant,
) -> Option<tokio_rustls::server::TlsStream<Wire>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&state.security.tls.config));
    let handshake = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            // A port check (a health check, a scanner): nothing to report above debug.
            Ok(0) | Err(_) => return Err(None),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                let mut writer = codec::message_writer::<_, Response>(stream);
                let message = format!(
                    "this server speaks protocol {PROTOCOL_VERSION} over TLS; \
                     upgrade the client"
                );
                let refusal = ErrorResponse::new(None, ErrorCode::VersionMismatch, message);
                let _ = writer.send(Response::Error(refusal)).await;
                return Err(Some("a client without TLS was told to upgrade".to_owned()));
            }
            Ok(_) => {}
        }
        acceptor
            .accept(tokio::io::BufReader::with_capacity(WIRE_READ_BYTES, stream))
            .await
            .map_err(|err| Some(err.to_string()))
    };
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(Some(reason))) => {
            tracing::warn!(%peer, %reason, "TLS handshake failed");
            None
        }
        Ok(Err(None)) => {
            tracing::debug!(%peer, "closed before the TLS handshake");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Connections open per client address.
type AddressCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One of an address's connection slots, given back when dropped.
struct AddressSlot {
    counts: AddressCounts,
    address: IpAddr,
}

impl AddressSlot {
    /// A slot for `address`, unless it holds `limit` already.
    fn take(counts: &AddressCounts, address: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut map = counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = map.entry(address).or_insert(0);
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(AddressSlot {
            counts: Arc::clone(counts),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        // Counts only: a map left by a panicking thread is still sound.
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = map.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.address);
            }
        }
    }
}
