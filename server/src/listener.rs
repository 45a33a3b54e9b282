//! The accept loop: connection limit, accept-error backoff, graceful shutdown.
//!
//! Each connection runs as its own tokio task. A connection takes a permit from a semaphore
//! sized `--max-connections`; when none is left the client is told `Busy` at once and closed,
//! so the server never queues unbounded work. On shutdown the loop stops accepting, idle
//! sessions say goodbye, and uploads in flight get `--shutdown-grace` to finish.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ft_protocol::{codec, ErrorCode, ErrorResponse, Response};
use futures::SinkExt;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{session, ServerState};

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
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                let (state, shutdown, cut) = (Arc::clone(&state), shutdown.clone(), cut.clone());
                sessions.spawn(async move {
                    tokio::select! {
                        () = session::serve(stream, peer, state, shutdown) => {}
                        () = cut.cancelled() => {}
                    }
                    drop(permit);
                });
            }
            Err(_) => match Arc::clone(&refusals).try_acquire_owned() {
                Ok(permit) => {
                    sessions.spawn(async move {
                        refuse_busy(stream, peer).await;
                        drop(permit);
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

async fn refuse_busy(stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(%peer, "refused: connection limit reached");
    let mut writer = codec::message_writer::<_, Response>(stream);
    let busy = ErrorResponse::new(
        None,
        ErrorCode::Busy,
        "server is at its connection limit; try again later",
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, writer.send(Response::Error(busy))).await;
}
