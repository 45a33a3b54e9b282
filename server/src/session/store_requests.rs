//! The requests that read or change what is stored, outside an upload: `Get`, `Delete`,
//! `Info`, `MakeDir` and `List`. Each first commits the group being collected, so it sees every
//! file acknowledged before it (see `Session::handle`).

use std::sync::Arc;

use ft_protocol::{
    Chunk, Delete, Deleted, DirMade, ErrorCode, ErrorResponse, Failed, Get, Listing, MakeDir,
    Response, ServerInfo, CAPABILITY_ZSTD, PROTOCOL_VERSION,
};

use super::{Session, SessionError, Transfer, LISTING_PAGE_ENTRIES};
use crate::{
    auth::roles::Action,
    catalog::Within,
    download::{self, ChunkReader},
    listing,
    names::ValidName,
    pattern::Pattern,
    refusal::Refusal,
    ServerState,
};

impl Session {
    pub(super) async fn on_get(&mut self, get: Get) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("Get while an upload is open").await);
        }
        if let Err(refusal) = self.authorize(Action::Get, false).await? {
            return self.fail(refusal).await;
        }
        let started = std::time::Instant::now();
        let state = Arc::clone(&self.state);
        let asked = get.name.clone();
        let get = Get {
            name: self.stored_name(&get.name),
            ..get
        };
        let found =
            tokio::task::spawn_blocking(move || download::open_for_download(&state, &get)).await;
        let (file, header) = match found {
            Ok(Ok((file, mut header))) => {
                // The name as the client asked for it: an admin may name its own files
                // without its namespace, and is answered in the same terms.
                header.name = asked;
                (file, header)
            }
            Ok(Err(refusal)) => return self.fail(self.in_client_terms(refusal)).await,
            Err(join) => return self.fail(Refusal::internal(join)).await,
        };
        let (name, size, offset) = (header.name.clone(), header.size, header.offset);
        // Its read-ahead is within the connection's working set (see memory.rs).
        self.send(Response::Sending(header)).await?;
        let mut chunks = ChunkReader::new(file, offset, size - offset);
        while let Some(chunk) = chunks.next_chunk().await {
            match chunk {
                Ok(data) => self.send(Response::Data(Chunk { data })).await?,
                Err(err) => {
                    let message = format!("cannot read '{name}': {err}");
                    return self.fail(Refusal::new(ErrorCode::Storage, message)).await;
                }
            }
        }
        tracing::info!(
            name, bytes = size - offset, offset, elapsed = ?started.elapsed(),
            result = "sent", "file downloaded"
        );
        Ok(())
    }

    pub(super) async fn on_delete(&mut self, delete: Delete) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("Delete while an upload is open").await);
        }
        if let Err(refusal) = self.authorize(Action::Delete, false).await? {
            return self.fail(refusal).await;
        }
        let state = Arc::clone(&self.state);
        let name = self.stored_name(&delete.name);
        let deleted = tokio::task::spawn_blocking(move || delete_stored(&state, &name)).await;
        match deleted {
            Ok(Ok(mut deleted)) => {
                deleted.name = self.client_name(&deleted.name);
                tracing::info!(
                    name = deleted.name,
                    bytes = deleted.size,
                    result = "deleted",
                    "file deleted"
                );
                self.send(Response::Deleted(deleted)).await
            }
            Ok(Err(refusal)) => self.fail(self.in_client_terms(refusal)).await,
            Err(join) => self.fail(Refusal::internal(join)).await,
        }
    }

    pub(super) async fn on_info(&mut self) -> Result<(), SessionError> {
        if let Err(refusal) = self.authorize(Action::Info, false).await? {
            return self.fail(refusal).await;
        }
        let state = Arc::clone(&self.state);
        let namespace = self.namespace();
        let info = tokio::task::spawn_blocking(move || {
            let within = namespace.as_deref().map_or(Within::All, Within::Namespace);
            let (files, bytes) = state.catalog.totals(within)?;
            let free_bytes = state.store.available_space()?;
            let partials = state.store.partial_usage(namespace.as_deref());
            Ok::<_, Refusal>(ServerInfo {
                software: format!("fts {}", env!("CARGO_PKG_VERSION")),
                protocol_version: PROTOCOL_VERSION,
                capabilities: vec![CAPABILITY_ZSTD.to_owned()],
                files,
                bytes,
                free_bytes,
                max_file_size: state.limits.max_file_size,
                max_connections: u32::try_from(state.limits.max_connections).unwrap_or(u32::MAX),
                partial_files: partials.files,
                partial_bytes: partials.bytes,
            })
        })
        .await;
        match info {
            Ok(Ok(info)) => self.send(Response::ServerInfo(info)).await,
            Ok(Err(refusal)) => self.fail(refusal).await,
            Err(join) => self.fail(Refusal::internal(join)).await,
        }
    }

    pub(super) async fn on_make_dir(&mut self, make_dir: MakeDir) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("MakeDir while an upload is open").await);
        }
        if let Err(refusal) = self.authorize(Action::MakeDir, false).await? {
            return self.fail(refusal).await;
        }
        let parsed = ValidName::parse(&make_dir.name)
            .and_then(|_| ValidName::parse(&self.stored_name(&make_dir.name)));
        let name = match parsed {
            Ok(name) => name,
            Err(err) => {
                let message = format!("folder name {:?} refused: {err}", make_dir.name);
                return self
                    .fail(Refusal::new(ErrorCode::InvalidName, message))
                    .await;
            }
        };
        let store = Arc::clone(&self.state.store);
        let folder = name.clone();
        match tokio::task::spawn_blocking(move || store.make_dir(&folder)).await {
            Ok(Ok(created)) => {
                let name = self.client_name(name.as_str());
                self.send(Response::DirMade(DirMade { name, created }))
                    .await
            }
            Ok(Err(err)) => self.fail(self.in_client_terms(Refusal::from(err))).await,
            Err(join) => self.fail(Refusal::internal(join)).await,
        }
    }

    /// The namespace the client's requests are confined to; `None` for an admin.
    fn namespace(&self) -> Option<String> {
        self.identity
            .as_ref()
            .filter(|identity| !identity.is_admin())
            .map(|identity| identity.user.clone())
    }

    /// Answers a non-upload request with a failure; the session goes on.
    pub(super) async fn fail(&mut self, refusal: Refusal) -> Result<(), SessionError> {
        let Refusal { code, message } = refusal;
        // A name that is not there is the client's everyday business, not the operator's.
        if code == ErrorCode::NotFound {
            tracing::info!(result = %code, %message, "request failed");
        } else {
            tracing::warn!(result = %code, %message, "request failed");
        }
        let mut failed = ErrorResponse::new(None, code, message);
        self.send(Response::Failed(Failed {
            code,
            message: std::mem::take(&mut failed.message),
        }))
        .await
    }

    pub(super) async fn on_list(&mut self, pattern: Option<String>) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("List while a file is open").await);
        }
        if let Err(refusal) = self.authorize(Action::List, false).await? {
            return self.fail(refusal).await;
        }
        let namespace = self.namespace();
        // A user's pattern matches names within its namespace (user names hold no glob
        // characters, so the prefix matches itself).
        let scope = namespace
            .as_ref()
            .map_or(String::new(), |namespace| format!("{namespace}/"));
        let pattern = match pattern.map(|pattern| Pattern::scoped(&scope, &pattern)) {
            None => None,
            Some(Ok(pattern)) => Some(pattern),
            Some(Err(err)) => {
                let message = format!("pattern refused: {err}");
                return self
                    .fail(Refusal::new(ErrorCode::InvalidName, message))
                    .await;
            }
        };
        let prefix = pattern.as_ref().map_or(scope, Pattern::literal_prefix);
        let query = Arc::new(listing::Query {
            namespace,
            pattern,
            prefix,
        });
        let mut cursor: Option<String> = None;
        loop {
            let (catalog, asked) = (self.state.catalog.clone(), Arc::clone(&query));
            let fetched = tokio::task::spawn_blocking(move || {
                listing::next_page(&catalog, &asked, cursor, LISTING_PAGE_ENTRIES)
            })
            .await;
            let page = match fetched {
                Ok(Ok(page)) => page,
                Ok(Err(err)) => {
                    let err = SessionError::Catalog(err);
                    return Err(self.refuse(ErrorCode::Internal, err).await);
                }
                Err(join) => {
                    let err = SessionError::Task(join);
                    return Err(self.refuse(ErrorCode::Internal, err).await);
                }
            };
            let listing::Page {
                mut entries,
                cursor: next,
                last,
            } = page;
            cursor = next;
            for entry in &mut entries {
                entry.name = self.client_name(&entry.name);
                entry.sent_name = self.client_name(&entry.sent_name);
            }
            self.send(Response::Listing(Listing { entries, last }))
                .await?;
            if last {
                return Ok(());
            }
        }
    }
}

/// Deletes a stored file and its record, as one step with respect to commits. Blocking.
fn delete_stored(state: &ServerState, name: &str) -> Result<Deleted, Refusal> {
    let not_found = || {
        Refusal::new(
            ErrorCode::NotFound,
            format!("no stored file named {name:?}"),
        )
    };
    let valid = ValidName::parse(name).map_err(|_| not_found())?;
    let _serialized = state.serialize_commits();
    let entry = state.catalog.get(valid.as_str())?.ok_or_else(not_found)?;
    state.store.remove_stored(&valid).map_err(Refusal::from)?;
    state.catalog.remove(valid.as_str())?;
    Ok(Deleted {
        name: entry.name,
        size: entry.size,
    })
}
