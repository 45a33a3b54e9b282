//! The requests of an upload: a round of `Prepare`s, then each file's `BeginFile`, chunks and
//! `EndFile` (or `CancelFile`), and the group commits whose answers acknowledge the files.

use std::sync::Arc;

use ft_protocol::{
    Ack, BeginFile, Chunk, CompressedChunk, ConflictPolicy, EndFile, ErrorCode, FilePlan, Prepare,
    Prepared, Response, CHUNK_SIZE, MAX_ANNOUNCED_FILES, MAX_PREPARE_FILES,
};

use super::{file_error, Session, SessionError, Transfer};
use crate::{
    auth::roles::Action,
    commit::{CommitError, Verified},
    group::Committed,
    plan,
    refusal::Refusal,
    store::KnownFolders,
    upload::{Holding, PartialOwner, Upload, UploadError, SMALL_UPLOAD_BYTES},
};

/// Files at least this large get an info line each when stored; smaller ones a debug line.
const LOGGED_FILE_BYTES: u64 = 1024 * 1024;

/// Memory a resume offer holds: its hash state (about 2 KiB) and its place in the map.
const OFFER_MEMORY: u64 = std::mem::size_of::<blake3::Hasher>() as u64 + 64;

impl Session {
    pub(super) async fn on_prepare(&mut self, prepare: Prepare) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("Prepare while a file is open").await);
        }
        if prepare.files.len() > MAX_PREPARE_FILES {
            let what = format!("Prepare announces more than {MAX_PREPARE_FILES} files");
            return Err(self.violation(&what).await);
        }
        if !prepare.append {
            self.round.start_over();
        }
        if self.round.announced_len() + prepare.files.len() > MAX_ANNOUNCED_FILES {
            let what = format!("more than {MAX_ANNOUNCED_FILES} files announced and not sent");
            return Err(self.violation(&what).await);
        }
        if let Err(Refusal { code, message }) = self.authorize(Action::Upload, false).await? {
            let plans = prepare
                .files
                .iter()
                .map(|_| FilePlan::refused(code, message.clone()))
                .collect();
            return self.send(Response::Prepared(Prepared { plans })).await;
        }
        // A role that may not overwrite learns so up front, not from an `Unchanged` that
        // would answer for a file it could never have replaced.
        let overwrite_refused = if prepare
            .files
            .iter()
            .any(|intent| intent.conflict == ConflictPolicy::Overwrite)
        {
            self.authorize(Action::Overwrite, true).await?.err()
        } else {
            None
        };
        // Names and keys as the server keeps them: beneath the client's namespace.
        let mut prepare = prepare;
        for intent in &mut prepare.files {
            intent.name = self.stored_name(&intent.name);
            intent.key = self.upload_key(&intent.key);
        }
        // A key still held by a connection that died unnoticed is taken over first, so the
        // partial length read below is final.
        let mut still_held = std::collections::HashSet::new();
        let held = self
            .state
            .leases
            .held_among(prepare.files.iter().map(|intent| &intent.key));
        for key in held {
            if self.state.leases.claim(key).await.is_err() {
                still_held.insert(key);
            }
        }
        // Anonymous clients share one namespace: one that may not list it must not learn
        // from `Unchanged` or `Compare` what another stored there (a named user's
        // namespace holds only what it and the admins put in).
        let compare_stored = self.user() != crate::auth::ANONYMOUS
            || self.authorize(Action::List, true).await?.is_ok();
        let state = Arc::clone(&self.state);
        let files = prepare.files;
        // Space promised to earlier pages of the round is not free for this one.
        let promised = self.round.promised();
        let planned = tokio::task::spawn_blocking(move || {
            let planned = plan::plan_page(&state, &files, promised, compare_stored);
            (files, planned)
        })
        .await;
        let planned = match planned {
            Ok(planned) => planned,
            Err(join) => {
                let err = SessionError::Task(join);
                return Err(self.refuse(ErrorCode::Internal, err).await);
            }
        };
        let (files, (planned, promised)) = planned;
        self.round.set_promised(promised);
        let mut plans = Vec::with_capacity(planned.len());
        let mut seen = std::collections::HashSet::new();
        for (intent, (mut plan, mut resume)) in files.iter().zip(planned) {
            if let (Some(refusal), ConflictPolicy::Overwrite) =
                (&overwrite_refused, intent.conflict)
            {
                let (code, message) = (refusal.code, refusal.message.clone());
                (plan, resume) = (FilePlan::refused(code, message), None);
            } else if still_held.contains(&intent.key) {
                let message = "this file is being uploaded by another connection".to_owned();
                (plan, resume) = (FilePlan::refused(ErrorCode::Busy, message), None);
            } else if matches!(plan, FilePlan::Resume { .. })
                && (!seen.insert(intent.key)
                    || self.round.has_offer(&intent.key)
                    || self.round.offer_count() >= MAX_PREPARE_FILES)
            {
                // The same file twice in one round: only its first copy can resume. And the
                // offers of a round are bounded (each holds a hash state of about 2 KiB).
                (plan, resume) = (FilePlan::Fresh, None);
            }
            if let Some((key, offset, hasher)) = resume {
                // With the memory budget spent, the file is sent again from its start rather
                // than the server holding one more hash state.
                match self.state.memory.try_reserve(OFFER_MEMORY) {
                    Some(reserved) => self.round.offer(key, (offset, hasher, reserved)),
                    None => plan = FilePlan::Fresh,
                }
            }
            match &mut plan {
                FilePlan::Fresh | FilePlan::Resume { .. } => self.round.announce(intent.key),
                FilePlan::Unchanged { stored_name } => *stored_name = self.client_name(stored_name),
                FilePlan::Refused { .. } | FilePlan::Compare => {}
            }
            plans.push(plan);
        }
        self.send(Response::Prepared(Prepared { plans })).await
    }

    pub(super) async fn on_begin_file(&mut self, begin: BeginFile) -> Result<(), SessionError> {
        if !matches!(self.transfer, Transfer::Idle) {
            return Err(self.violation("BeginFile while another file is open").await);
        }
        if begin.offset > begin.size {
            return Err(self.violation("BeginFile offset beyond its size").await);
        }
        let id = begin.id;
        if !self.round.begin_id(id) {
            let what = format!("BeginFile with id {id}, which an unanswered file already has");
            return Err(self.violation(&what).await);
        }
        let action = match begin.conflict {
            ConflictPolicy::KeepBoth | ConflictPolicy::Skip => Action::Upload,
            ConflictPolicy::Overwrite => Action::Overwrite,
        };
        if let Err(refusal) = self.authorize(action, true).await? {
            return self.refuse_file(id, &begin.name, refusal).await;
        }
        let shown_name = begin.name.clone();
        let begin = BeginFile {
            name: self.stored_name(&begin.name),
            key: self.upload_key(&begin.key),
            ..begin
        };
        // Folders and free space were just checked if this file was announced with Prepare.
        let announced = self.round.begin(&begin.key);
        let mut folders = KnownFolders::default();
        let check_folders = (!announced).then_some(&mut folders);
        let name = match plan::check_intent(&self.state, &begin.name, begin.size, check_folders) {
            Ok(name) => name,
            Err(refusal) => {
                let refusal = self.in_client_terms(refusal);
                return self.refuse_file(id, &shown_name, refusal).await;
            }
        };
        // A hash state is about 2 KiB: a fresh upload, most of them, carries none.
        let prefix = if begin.offset == 0 {
            None
        } else {
            match self.round.take_offer(&begin.key) {
                Some((offset, hasher, _reserved)) if offset == begin.offset => Some(hasher),
                _ => {
                    return Err(self
                        .violation("BeginFile resumes at an offset not offered")
                        .await)
                }
            }
        };
        if !announced {
            if let Err(refusal) = plan::check_space(&self.state, begin.size - begin.offset) {
                return self.refuse_file(id, &shown_name, refusal).await;
            }
        }
        let lease = match self.state.leases.claim_if_free(begin.key) {
            Some(lease) => lease,
            None => {
                // Perhaps the same local file again, its first copy still in this session's
                // group (or its commit): that copy must be committed and let go first.
                self.commit_group().await?;
                match self.state.leases.claim(begin.key).await {
                    Ok(lease) => lease,
                    Err(err) => {
                        return self
                            .refuse_file(
                                id,
                                &shown_name,
                                Refusal::new(ErrorCode::Busy, err.to_string()),
                            )
                            .await
                    }
                }
            }
        };
        if let Some(hasher) = &prefix {
            let held = ft_protocol::Hash::from(hasher.finalize());
            if begin.prefix_hash != Some(held) {
                // The client has not shown it holds the bytes kept for this key: they are
                // neither continued nor kept (the lease keeps others off meanwhile).
                self.discard_partial(begin.key).await;
                drop(lease);
                let message = format!(
                    "the first {} bytes are not those of the interrupted upload; \
                     it will start over",
                    begin.offset
                );
                let refusal = Refusal::new(ErrorCode::HashMismatch, message);
                return self.refuse_file(id, &shown_name, refusal).await;
            }
        }
        let holding = self.upload_holding(&begin);
        let store = Arc::clone(&self.state.store);
        match Upload::start(
            store,
            &begin,
            name,
            lease,
            prefix,
            holding,
            PartialOwner {
                name: self.user().to_owned(),
                quota: self.state.limits.partial_quota,
                leases: Arc::clone(&self.state.leases),
            },
        )
        .await
        {
            Ok(upload) => {
                if upload.offset > 0 {
                    tracing::info!(
                        name = upload.name.as_str(),
                        offset = upload.offset,
                        size = upload.size,
                        "resuming upload"
                    );
                }
                self.transfer = Transfer::Receiving(upload);
                Ok(())
            }
            Err(err) => {
                self.refuse_file(id, &shown_name, Refusal::storage(err))
                    .await
            }
        }
    }

    pub(super) async fn on_chunk(&mut self, chunk: Chunk) -> Result<(), SessionError> {
        // Larger chunks would fit a frame but break the per-upload memory bound.
        if chunk.data.len() > CHUNK_SIZE {
            let what = format!("Chunk larger than {CHUNK_SIZE} bytes");
            return Err(self.violation(&what).await);
        }
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
                let (id, name, key) = (upload.id, upload.name.as_str().to_owned(), upload.key);
                if let Transfer::Receiving(upload) =
                    std::mem::replace(&mut self.transfer, Transfer::Skipping)
                {
                    upload.stop().await;
                }
                self.discard_partial(key).await;
                self.refuse_file(id, &name, Refusal::storage(err)).await
            }
        }
    }

    /// Decompresses into at most `raw_len` (itself at most one chunk) bytes, so a small frame
    /// cannot expand into a large allocation, then handles the result as a [`Chunk`].
    pub(super) async fn on_compressed_chunk(
        &mut self,
        chunk: CompressedChunk,
    ) -> Result<(), SessionError> {
        if !self.zstd {
            return Err(self
                .violation("CompressedChunk without the zstd capability")
                .await);
        }
        let raw_len = chunk.raw_len as usize;
        if raw_len > CHUNK_SIZE {
            let what = format!("CompressedChunk larger than {CHUNK_SIZE} bytes");
            return Err(self.violation(&what).await);
        }
        let data = match zstd::bulk::decompress(&chunk.data, raw_len) {
            Ok(data) if data.len() == raw_len => data,
            Ok(_) | Err(_) => {
                return Err(self
                    .violation("CompressedChunk does not decompress to raw_len bytes")
                    .await)
            }
        };
        self.on_chunk(Chunk {
            data: bytes::Bytes::from(data),
        })
        .await
    }

    pub(super) async fn on_end_file(&mut self, end: EndFile) -> Result<(), SessionError> {
        if let Transfer::Receiving(upload) = &self.transfer {
            if upload.held() != upload.size {
                let what = format!(
                    "EndFile after {} of the {} bytes declared in BeginFile",
                    upload.held(),
                    upload.size
                );
                return Err(self.violation(&what).await);
            }
        }
        let upload = match std::mem::replace(&mut self.transfer, Transfer::Idle) {
            Transfer::Idle => return Err(self.violation("EndFile without BeginFile").await),
            Transfer::Skipping => return Ok(()),
            Transfer::Receiving(upload) => upload,
        };
        let (id, name, size, started) =
            (upload.id, upload.name.clone(), upload.size, upload.started);
        let (conflict, key, modified_ns) = (upload.conflict, upload.key, upload.modified_ns);
        let written = match upload.finish().await {
            Ok(written) => written,
            Err(err @ UploadError::MissingBytes { .. }) => {
                return Err(self.violation(&err.to_string()).await)
            }
            Err(err) => {
                self.discard_partial(key).await;
                return self
                    .answer_file_error(id, name.as_str(), Refusal::storage(err))
                    .await;
            }
        };
        if written.hash != end.hash {
            // The bytes held are not the client's file: start over next time. The lease is
            // held until the partial is gone, so no reconnecting upload can pick it up.
            let ours = written.hash;
            let lease = written.lease;
            drop(written.content);
            self.discard_partial(key).await;
            drop(lease);
            let message = format!(
                "content hash {ours} differs from the sender's {}; nothing was stored",
                end.hash
            );
            return self
                .answer_file_error(
                    id,
                    name.as_str(),
                    Refusal::new(ErrorCode::HashMismatch, message),
                )
                .await;
        }

        let commit_now = self.round.push_verified(
            &self.state,
            Verified {
                id,
                name,
                key,
                conflict,
                modified_ns,
                size,
                hash: written.hash,
                content: written.content,
                started,
                verified_at: std::time::Instant::now(),
                _lease: written.lease,
                _memory: written.memory,
            },
        );
        // Full, old, or the round's last file (nothing more to wait for).
        if commit_now {
            self.start_commit().await?;
        }
        Ok(())
    }

    /// How an upload's bytes will be held: a small fresh file is gathered in memory if the
    /// server's budget has room for it, and streamed through the disk otherwise, within the
    /// connection's working set (see memory.rs).
    fn upload_holding(&self, begin: &BeginFile) -> Holding {
        let gathered = (begin.offset == 0 && begin.size <= SMALL_UPLOAD_BYTES)
            .then(|| self.state.memory.try_reserve(begin.size))
            .flatten();
        match gathered {
            Some(memory) => Holding::Gathered {
                memory,
                buffer: self.state.small_buffers.take(begin.size as usize),
            },
            None => Holding::Streamed,
        }
    }

    /// Commits the verified files collected so far (see commit.rs) and answers each, waiting
    /// until it is done. Used before anything that reads the store.
    pub(super) async fn commit_group(&mut self) -> Result<(), SessionError> {
        self.start_commit().await?;
        self.finish_commit().await
    }

    /// Starts committing the collected group in the background and returns, so the next
    /// files are received while this group is flushed. Answers leave in the order the files
    /// were begun: commits are answered oldest first.
    pub(super) async fn start_commit(&mut self) -> Result<(), SessionError> {
        if !self.round.has_waiting_files() {
            return Ok(());
        }
        while !self.round.may_start_commit() {
            self.finish_oldest_commit().await?;
        }
        let owner = self.user().to_owned();
        self.round.start_commit(&self.state, self.peer, owner);
        Ok(())
    }

    /// Waits for every commit in flight and sends their answers.
    pub(super) async fn finish_commit(&mut self) -> Result<(), SessionError> {
        while self.round.is_committing() {
            self.finish_oldest_commit().await?;
        }
        Ok(())
    }

    /// Waits for the oldest commit in flight, if any, and sends its answers.
    pub(super) async fn finish_oldest_commit(&mut self) -> Result<(), SessionError> {
        let Some(committing) = self.round.pop_oldest_commit() else {
            return Ok(());
        };
        let committed = committing
            .await
            .unwrap_or_else(|join| Err(CommitError::Task(join)));
        self.answer_commit(committed).await
    }

    /// Sends the answers of a finished commit.
    pub(super) async fn answer_commit(&mut self, committed: Committed) -> Result<(), SessionError> {
        let (group, placed) = match committed {
            Ok(done) => done,
            Err(err) => {
                let err = SessionError::Commit(err);
                return Err(self.refuse(ErrorCode::Internal, err).await);
            }
        };
        for (verified, placed) in group.into_iter().zip(placed) {
            let Verified {
                id,
                name,
                size,
                hash,
                started,
                ..
            } = verified;
            self.round.answered(id);
            match placed {
                Ok(stored) => {
                    let ms = started.elapsed().as_millis() as u64;
                    // A batch of small files would flood the log at info: their lines are
                    // at debug (RUST_LOG=debug), the connection's summary counts them.
                    if size >= LOGGED_FILE_BYTES {
                        tracing::info!(
                            name = name.as_str(),
                            stored = stored.as_str(),
                            bytes = size,
                            ms,
                            "file received"
                        );
                    } else {
                        tracing::debug!(
                            name = name.as_str(),
                            stored = stored.as_str(),
                            bytes = size,
                            ms,
                            "file received"
                        );
                    }
                    self.files_stored += 1;
                    self.bytes_stored += size;
                    self.queue(Response::Ack(Ack {
                        id,
                        stored_name: self.client_name(stored.as_str()),
                        size,
                        hash,
                    }))
                    .await?;
                }
                Err(refusal) => {
                    self.queue(file_error(id, name.as_str(), refusal)).await?;
                }
            }
        }
        // All the group's answers leave in as few writes as possible.
        self.send_queued().await
    }

    pub(super) async fn on_cancel_file(&mut self, reason: &str) -> Result<(), SessionError> {
        match std::mem::replace(&mut self.transfer, Transfer::Idle) {
            Transfer::Idle => Err(self.violation("CancelFile without BeginFile").await),
            Transfer::Skipping => Ok(()),
            Transfer::Receiving(upload) => {
                let (id, name, key) = (upload.id, upload.name.clone(), upload.key);
                upload.stop().await;
                self.discard_partial(key).await;
                let message = format!("cancelled by the client: {reason}");
                self.answer_file_error(
                    id,
                    name.as_str(),
                    Refusal::new(ErrorCode::Cancelled, message),
                )
                .await
            }
        }
    }
}
