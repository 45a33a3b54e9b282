//! The `fts` server as a library: `main.rs` only parses flags and calls [`run`].
//!
//! Where things are: flags in [`config`], the accept loop in [`listener`], the certificate in
//! [`tls`], users, tokens and roles in [`auth`], one connection's protocol in [`session`], an upload in flight in [`upload`] (small ones' memory in
//! [`buffers`]), a download in [`download`], who writes which partial upload in [`leases`],
//! name rules in [`names`], the answer to a `Prepare` in [`plan`], group commit in [`group`]
//! and [`commit`], every filesystem touch in [`store`], the SQLite catalog in [`catalog`].

pub mod auth;
pub(crate) mod buffers;
pub mod catalog;
pub(crate) mod commit;
pub mod config;
pub(crate) mod download;
pub(crate) mod group;
pub(crate) mod idle;
pub(crate) mod leases;
pub(crate) mod listener;
pub(crate) mod listing;
pub(crate) mod memory;
pub mod names;
pub(crate) mod pattern;
pub(crate) mod plan;
pub(crate) mod refusal;
pub(crate) mod relay;
pub(crate) mod session;
pub mod store;
pub mod tls;
pub(crate) mod upload;
pub mod user_admin;
pub(crate) mod versions;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Auth, catalog::Catalog, config::Limits, leases::Leases, store::Store, tls::TlsIdentity,
};

/// Who the server is (its certificate) and who its clients are (users and roles).
#[derive(Debug)]
pub struct Security {
    /// The certificate every connection is encrypted with.
    pub tls: TlsIdentity,
    /// Users, their tokens and roles, and failed logins' delays.
    pub auth: Auth,
}

/// Why [`Security::ephemeral`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// No certificate could be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The users could not be opened.
    #[error(transparent)]
    Users(#[from] catalog::CatalogError),
}

impl Security {
    /// A throwaway certificate and the users of the catalog at `catalog_path`, with no
    /// anonymous access: for tests and tools.
    pub fn ephemeral(catalog_path: &std::path::Path) -> Result<Self, SecurityError> {
        let tls = TlsIdentity::ephemeral()?;
        let users = catalog::users::Users::open(catalog_path)?;
        Ok(Self {
            tls,
            auth: Auth::new(users, None),
        })
    }
}

/// What every session shares.
#[derive(Debug)]
pub struct ServerState {
    /// The storage directory.
    pub store: Arc<Store>,
    /// The catalog of stored files.
    pub catalog: Catalog,
    /// TLS and authorization.
    pub security: Security,
    /// Which partial uploads are being written.
    pub(crate) leases: Arc<Leases>,
    /// Serializes placing a file and recording it, so disk and catalog agree (see
    /// [`ServerState::serialize_commits`]).
    commit_lock: std::sync::Mutex<()>,
    /// Limits enforced on clients.
    pub limits: Limits,
    /// Small uploads staged ahead of their group commit hold a descriptor each until the
    /// commit; these permits bound them server-wide to half the open-file limit.
    pub(crate) staged_files: Arc<tokio::sync::Semaphore>,
    /// Small uploads' memory, reused once their bytes are on disk.
    pub(crate) small_buffers: buffers::SmallBuffers,
    /// What clients may make the server hold in memory, all together.
    pub(crate) memory: memory::MemoryBudget,
    /// Connections that would give up their slot to a new client on a full server.
    pub(crate) idle: Arc<idle::IdleConnections>,
    /// Who is online, listening connections and offers between users.
    pub(crate) relay: relay::RelayHub,
    /// Files left for users who were not online: quota, time to live, space promised.
    pub(crate) inboxes: relay::inbox::Inboxes,
}

impl ServerState {
    /// State for a server over `store` and `catalog`.
    pub fn new(store: Store, catalog: Catalog, security: Security, limits: Limits) -> Self {
        let memory = memory::MemoryBudget::new(limits.max_memory, limits.max_connections);
        let inboxes = relay::inbox::Inboxes::new(limits.inbox_ttl, limits.inbox_quota);
        Self {
            store: Arc::new(store),
            catalog,
            security,
            leases: Arc::default(),
            commit_lock: std::sync::Mutex::new(()),
            limits,
            staged_files: Arc::new(tokio::sync::Semaphore::new(staged_file_budget())),
            small_buffers: buffers::SmallBuffers::default(),
            memory,
            idle: Arc::default(),
            relay: relay::RelayHub::default(),
            inboxes,
        }
    }
}

impl ServerState {
    /// Holds off other commits, deletions and downloads' record lookups while the guard
    /// lives, so a name on disk and its catalog record change together. The lock guards no
    /// data, so a panic while it was held leaves nothing inconsistent to refuse.
    pub(crate) fn serialize_commits(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Half the process's open-file limit (at least 256): the other half is left for
/// connections, uploads in progress and the catalog.
fn staged_file_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    usize::try_from(current / 2)
        .unwrap_or(usize::MAX)
        .clamp(256, 1 << 20)
}

/// Serves clients on an already-bound listener until `shutdown` is cancelled, sweeping
/// stale partial uploads meanwhile. Taking a bound listener lets tests bind port 0 and
/// learn the port first.
pub async fn run(listener: TcpListener, state: Arc<ServerState>, shutdown: CancellationToken) {
    // Before any session can be writing into the inbox area.
    let sweeping = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || {
        let catalog = &sweeping.catalog;
        let removed = sweeping
            .store
            .sweep_inbox(|blob| catalog.inbox_names(blob).unwrap_or(true));
        if removed > 0 {
            tracing::info!("removed {removed} unfinished files from the inbox area");
        }
    })
    .await;
    let sweeper = tokio::spawn(sweep_partials(Arc::clone(&state), shutdown.clone()));
    let expiry = tokio::spawn(sweep_inboxes(Arc::clone(&state), shutdown.clone()));
    listener::run(listener, state, shutdown).await;
    sweeper.abort();
    expiry.abort();
}

/// Removes inbox files older than `--inbox-ttl`, at start and then periodically.
async fn sweep_inboxes(state: Arc<ServerState>, shutdown: CancellationToken) {
    let period = (state.inboxes.ttl / 4).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(600),
    );
    loop {
        let sweeping = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || relay::inbox::remove_expired(&sweeping)).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// Removes partial uploads older than `--partial-ttl`, at start and then periodically.
async fn sweep_partials(state: Arc<ServerState>, shutdown: CancellationToken) {
    let ttl = state.limits.partial_ttl;
    let period = (ttl / 4).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(600),
    );
    loop {
        let sweeping = Arc::clone(&state);
        let _ = tokio::task::spawn_blocking(move || {
            let leases = &sweeping.leases;
            sweeping
                .store
                .sweep_partials(ttl, |key| leases.is_held(key))
        })
        .await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}
