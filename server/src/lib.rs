//! The `fts` server as a library: `main.rs` only parses flags and calls [`run`].
//!
//! Where things are: flags in [`config`], the accept loop in [`listener`], one connection's
//! protocol in [`session`], an upload in flight in [`upload`], name rules in [`names`],
//! every filesystem touch in [`store`], the SQLite catalog in [`catalog`].

pub mod catalog;
pub mod config;
pub mod listener;
pub mod names;
pub mod session;
pub mod store;
pub mod upload;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{catalog::Catalog, config::Limits, store::Store};

/// What every session shares.
#[derive(Debug)]
pub struct ServerState {
    /// The storage directory.
    pub store: Store,
    /// The catalog of stored files.
    pub catalog: Catalog,
    /// Limits enforced on clients.
    pub limits: Limits,
}

/// Serves clients on an already-bound listener until `shutdown` is cancelled.
/// Taking a bound listener lets tests bind port 0 and learn the port first.
pub async fn run(listener: TcpListener, state: Arc<ServerState>, shutdown: CancellationToken) {
    listener::run(listener, state, shutdown).await;
}
