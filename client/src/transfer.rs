//! Batch upload with automatic retries and resume.
//!
//! [`send_files`] connects, announces the files (`Prepare`), and uploads them pipelined
//! (see `pipeline.rs`). When the connection fails, it reconnects with exponential backoff and
//! announces the files not yet stored again; the server offers to resume those it holds
//! partially, so only the missing bytes travel again. Every outcome is recorded in a
//! [`Ledger`], which also turns them into [`TransferEvent`]s for the caller.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use ft_protocol::{
    ConflictPolicy, ErrorCode, FileIntent, FilePlan, Hash, MAX_ANNOUNCED_FILES, MAX_PREPARE_FILES,
};

use crate::{
    error::{with_causes, ClientError},
    events::TransferEvent,
    local::{LocalFile, UploadPlan},
    pipeline::{self, Planned},
    read::hash_whole,
    report::{FailureCode, FileFailure, FileOutcome, SendReport, StoreStatus, StoredFile},
    session::Session,
};

/// Default for [`SendOptions::retries`].
pub const DEFAULT_RETRIES: u32 = 5;

/// How a batch is uploaded.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// What the server does when a name is taken.
    pub conflict: ConflictPolicy,
    /// Reconnects allowed in a row without progress (a stored file or new bytes sent resets
    /// the count). The first connection is never retried: an unreachable server is reported
    /// at once.
    pub retries: u32,
    /// Pause before the first retry; doubles with each retry in a row.
    pub first_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// Compress chunks with zstd when the server agrees; chunks that do not shrink are sent
    /// as they are, and a file whose first chunks do not shrink is not tried further.
    pub compress: bool,
    /// `--checksum`: asks the server not to trust equal size and time. The server never
    /// does (a file is unchanged only when its BLAKE3 matches), so it changes nothing.
    pub checksum: bool,
    /// Most content bytes per second to move (`--bwlimit`), averaged over each connection's
    /// transfer; `None`: as fast as the link goes.
    pub bwlimit: Option<u64>,
}

impl SendOptions {
    /// Defaults: keep both on conflict, [`DEFAULT_RETRIES`], backoff from 0.5 s up to 30 s.
    pub fn new(conflict: ConflictPolicy) -> Self {
        Self {
            conflict,
            retries: DEFAULT_RETRIES,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            compress: false,
            checksum: false,
            bwlimit: None,
        }
    }

    /// Pause before the `retry_in_a_row`-th retry in a row.
    pub fn backoff(&self, retry_in_a_row: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry_in_a_row.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The verdict on every file of the batch, and the event stream to the caller.
pub(crate) struct Ledger<'a> {
    files: &'a [LocalFile],
    verdicts: Mutex<Vec<Option<Result<StoredFile, FileFailure>>>>,
    /// The last transient failure of each unsettled file, shown if retries run out.
    deferred: Mutex<Vec<Option<FileFailure>>>,
    stored: AtomicUsize,
    bytes_sent: AtomicU64,
    bytes_on_wire: AtomicU64,
    bytes_resumed: AtomicU64,
    /// Per file, the offset its latest attempt resumed from: counted as resumed only once
    /// the file is stored (the server may refuse a resume, and the retry starts over).
    resumed_from: Vec<AtomicU64>,
    on_event: &'a (dyn Fn(TransferEvent) + Sync),
}

impl<'a> Ledger<'a> {
    /// A ledger with every file of `files` unsettled, passing events to `on_event`.
    pub(crate) fn new(
        files: &'a [LocalFile],
        on_event: &'a (dyn Fn(TransferEvent) + Sync),
    ) -> Self {
        Self {
            files,
            verdicts: Mutex::new(vec![None; files.len()]),
            deferred: Mutex::new(vec![None; files.len()]),
            stored: AtomicUsize::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_on_wire: AtomicU64::new(0),
            bytes_resumed: AtomicU64::new(0),
            resumed_from: files.iter().map(|_| AtomicU64::new(0)).collect(),
            on_event,
        }
    }

    /// Passes an event on, noting where a file's attempt resumed from.
    pub(crate) fn emit(&self, event: TransferEvent) {
        if let TransferEvent::FileStarted { index, offset, .. } = &event {
            if let Some(resumed) = self.resumed_from.get(*index) {
                resumed.store(*offset, Ordering::Relaxed);
            }
        }
        (self.on_event)(event);
    }

    /// `len` more bytes of file `index` went out, as `wire` bytes; it is now at `position`.
    pub(crate) fn sent(&self, index: usize, position: u64, len: u64, wire: u64) {
        self.bytes_sent.fetch_add(len, Ordering::Relaxed);
        self.bytes_on_wire.fetch_add(wire, Ordering::Relaxed);
        (self.on_event)(TransferEvent::FileProgress { index, position });
    }

    /// File `index` is stored and verified under `stored_name`, with `hash`.
    pub(crate) fn store(&self, index: usize, stored_name: String, size: u64, hash: Hash) {
        let stored = StoredFile {
            stored_name,
            size,
            hash: Some(hash),
            status: StoreStatus::Sent,
        };
        self.stored.fetch_add(1, Ordering::Relaxed);
        if let Some(resumed) = self.resumed_from.get(index) {
            self.bytes_resumed
                .fetch_add(resumed.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        (self.on_event)(TransferEvent::FileStored {
            index,
            name: self.files[index].name.clone(),
            stored_name: stored.stored_name.clone(),
            size: stored.size,
            hash,
        });
        self.settle(index, Ok(stored));
    }

    /// File `index` was not sent: the server holds `stored_name` already (unchanged, with
    /// the local hash when one was computed) or its name is taken (`NameTaken`).
    pub(crate) fn skip(
        &self,
        index: usize,
        stored_name: String,
        hash: Option<Hash>,
        status: StoreStatus,
    ) {
        let size = self.files[index].size;
        (self.on_event)(TransferEvent::FileSkipped {
            index,
            name: self.files[index].name.clone(),
            stored_name: stored_name.clone(),
            size,
            status,
        });
        let stored = StoredFile {
            stored_name,
            size,
            hash,
            status,
        };
        self.settle(index, Ok(stored));
    }

    /// File `index` failed for good.
    pub(crate) fn fail(&self, index: usize, code: FailureCode, message: String) {
        (self.on_event)(TransferEvent::FileFailed {
            index,
            name: self.files[index].name.clone(),
            code,
            message: message.clone(),
        });
        self.settle(index, Err(FileFailure { code, message }));
    }

    /// File `index` failed in a way worth retrying; it stays unsettled.
    pub(crate) fn defer(&self, index: usize, failure: FileFailure) {
        lock(&self.deferred)[index] = Some(failure);
    }

    fn settle(&self, index: usize, verdict: Result<StoredFile, FileFailure>) {
        lock(&self.verdicts)[index] = Some(verdict);
    }

    fn unsettled(&self) -> Vec<usize> {
        let verdicts = lock(&self.verdicts);
        (0..verdicts.len())
            .filter(|&index| verdicts[index].is_none())
            .collect()
    }

    /// Changes whenever the batch moves forward.
    fn progress_mark(&self) -> (usize, u64) {
        (
            self.stored.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed),
        )
    }

    /// Why the first of `pending` that failed transiently did so.
    fn deferred_reason(&self, pending: &[usize]) -> Option<String> {
        let deferred = lock(&self.deferred);
        pending.iter().find_map(|&index| {
            deferred[index].as_ref().map(|failure| {
                format!(
                    "{}: {} ({})",
                    self.files[index].name, failure.message, failure.code
                )
            })
        })
    }

    /// Fails every file still unsettled, with its last transient failure if it had one.
    fn give_up(&self, connection_error: Option<&ClientError>) {
        for index in self.unsettled() {
            let deferred = lock(&self.deferred)[index].clone();
            let failure = deferred.unwrap_or_else(|| FileFailure {
                code: FailureCode::ConnectionLost,
                message: match connection_error {
                    Some(err) => format!("not confirmed by the server: {}", with_causes(err)),
                    None => "not confirmed by the server".to_owned(),
                },
            });
            self.fail(index, failure.code, failure.message);
        }
    }

    /// The verdicts and byte counts, letting go of the batch's files.
    fn into_tally(self) -> Tally {
        Tally {
            verdicts: self
                .verdicts
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            bytes_sent: self.bytes_sent.into_inner(),
            bytes_resumed: self.bytes_resumed.into_inner(),
            bytes_on_wire: self.bytes_on_wire.into_inner(),
        }
    }
}

/// Locks one of the ledger's tables even if a panic elsewhere poisoned it: each update is a
/// single assignment, so the table is whole either way, and a verdict must never be dropped.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a finished [`Ledger`] counted.
struct Tally {
    verdicts: Vec<Option<Result<StoredFile, FileFailure>>>,
    bytes_sent: u64,
    bytes_resumed: u64,
    bytes_on_wire: u64,
}

impl Tally {
    /// The report, each file moved next to its verdict (not copied: a batch can hold
    /// millions).
    fn into_report(
        self,
        files: Vec<LocalFile>,
        started: Instant,
        connection_error: Option<ClientError>,
        retries: u32,
        folders: Folders,
    ) -> SendReport {
        let outcomes = files
            .into_iter()
            .zip(self.verdicts)
            .map(|(file, verdict)| FileOutcome {
                file,
                result: verdict.unwrap_or_else(|| {
                    Err(FileFailure {
                        code: FailureCode::ConnectionLost,
                        message: "not confirmed by the server".to_owned(),
                    })
                }),
            })
            .collect();
        SendReport {
            outcomes,
            elapsed: started.elapsed(),
            connection_error,
            retries,
            bytes_sent: self.bytes_sent,
            bytes_resumed: self.bytes_resumed,
            bytes_on_wire: self.bytes_on_wire,
            folders_made: folders.made,
            folder_failures: folders.failed,
        }
    }
}

/// Progress on the empty folders of a plan.
#[derive(Default)]
struct Folders {
    made: Vec<String>,
    failed: Vec<(String, FileFailure)>,
}

impl Folders {
    fn pending<'a>(&self, plan: &'a UploadPlan) -> Vec<&'a String> {
        plan.folders
            .iter()
            .filter(|folder| {
                !self.made.contains(folder) && !self.failed.iter().any(|(f, _)| f == *folder)
            })
            .collect()
    }
}

/// Uploads a plan (files and empty folders) over `session`, retrying and resuming after
/// connection failures, reporting progress through `on_event`.
///
/// Returns a report in every case, so the caller can tell the user exactly which files
/// landed; `connection_error` says why the batch stopped early, if it did. The plan's files
/// move into the report's outcomes.
pub async fn send_files(
    session: &mut Session,
    plan: UploadPlan,
    options: SendOptions,
    on_event: &(dyn Fn(TransferEvent) + Sync),
) -> SendReport {
    let started = Instant::now();
    let files = &plan.files;
    on_event(TransferEvent::BatchStarted {
        files: files.len(),
        bytes: files.iter().map(|file| file.size).sum(),
    });
    let ledger = Ledger::new(files, on_event);
    let mut folders = Folders::default();
    let mut retries = 0;
    let mut in_a_row = 0;
    let mut connection_error = None;
    // The server saying it shuts down explains the failed reconnects after it better than
    // their own errors ("connection refused").
    let mut shut_down = None;
    loop {
        let pending = ledger.unsettled();
        if pending.is_empty() && folders.pending(&plan).is_empty() {
            connection_error = None;
            break;
        }
        let mark = ledger.progress_mark();
        let reason = match attempt(session, &plan, &pending, options, &ledger, &mut folders).await {
            Ok(()) => ledger
                .deferred_reason(&pending)
                .unwrap_or_else(|| "some files were not confirmed".to_owned()),
            Err(err) => {
                session.reset();
                let retryable = err.is_transient() && session.connected_once();
                let reason = with_causes(&err);
                let shutting_down = matches!(
                    &err,
                    ClientError::Failed { code, .. } | ClientError::Refused { code, .. }
                        if *code == ft_protocol::ErrorCode::ShuttingDown
                );
                if shutting_down {
                    shut_down = Some(err);
                } else {
                    connection_error = Some(err);
                }
                if !retryable {
                    break;
                }
                reason
            }
        };
        if ledger.unsettled().is_empty() && folders.pending(&plan).is_empty() {
            connection_error = None;
            break;
        }
        if ledger.progress_mark() != mark {
            in_a_row = 0;
        }
        if in_a_row >= options.retries {
            break;
        }
        in_a_row += 1;
        retries += 1;
        let delay = options.backoff(in_a_row);
        on_event(TransferEvent::Retrying {
            attempt: in_a_row,
            max: options.retries,
            delay,
            reason,
        });
        tokio::time::sleep(delay).await;
    }
    if let Some(shut_down) = shut_down {
        let settled = ledger.unsettled().is_empty() && folders.pending(&plan).is_empty();
        if !settled {
            connection_error = Some(shut_down);
        }
    }
    ledger.give_up(connection_error.as_ref());
    let tally = ledger.into_tally();
    tally.into_report(plan.files, started, connection_error, retries, folders)
}

/// Files per `Prepare` page, below the protocol's [`MAX_PREPARE_FILES`]: pages go out back
/// to back, so the server plans one while the next is encoded, and the round's last answer
/// comes back sooner than with a few large pages.
const PAGE_FILES: usize = 1024;
const _: () = assert!(PAGE_FILES <= MAX_PREPARE_FILES);

/// Splits the pending files into `Prepare` pages: at most [`PAGE_FILES`] files, and an
/// encoded size safely inside one frame (names can be long).
fn prepare_pages<'a>(files: &[LocalFile], pending: &'a [usize]) -> Vec<&'a [usize]> {
    /// Bytes a page may take: half a frame leaves room for postcard's own overhead.
    const PAGE_BYTES: usize = ft_protocol::MAX_FRAME_LEN / 2;
    /// Per intent besides its name: a 32-byte key and a few varints.
    const INTENT_OVERHEAD: usize = 48;
    let mut pages = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (position, &index) in pending.iter().enumerate() {
        let size = files[index].name.len() + INTENT_OVERHEAD;
        if position > start && (position - start == PAGE_FILES || bytes + size > PAGE_BYTES) {
            pages.push(&pending[start..position]);
            (start, bytes) = (position, 0);
        }
        bytes += size;
    }
    if start < pending.len() {
        pages.push(&pending[start..]);
    }
    pages
}

/// Groups pages into rounds of at most [`MAX_ANNOUNCED_FILES`] files: a round is announced
/// page by page, then streamed without a pause.
fn prepare_rounds(pages: Vec<&[usize]>) -> Vec<Vec<&[usize]>> {
    let mut rounds: Vec<Vec<&[usize]>> = Vec::new();
    let mut in_round = 0;
    for page in pages {
        match rounds.last_mut() {
            Some(round) if in_round + page.len() <= MAX_ANNOUNCED_FILES => {
                round.push(page);
                in_round += page.len();
            }
            _ => {
                rounds.push(vec![page]);
                in_round = page.len();
            }
        }
    }
    rounds
}

/// One session: make the empty folders, then announce and upload the pending files round by
/// round.
async fn attempt(
    session: &mut Session,
    plan: &UploadPlan,
    pending: &[usize],
    options: SendOptions,
    ledger: &Ledger<'_>,
    folders: &mut Folders,
) -> Result<(), ClientError> {
    let client = session.client().await?;
    for folder in folders.pending(plan) {
        match client.make_dir(folder).await {
            Ok(_) => folders.made.push(folder.clone()),
            Err(ClientError::Failed { code, message }) if !code.is_transient() => {
                let code = FailureCode::Server(code);
                folders
                    .failed
                    .push((folder.clone(), FileFailure { code, message }));
            }
            Err(err) => return Err(err),
        }
    }
    let files = &plan.files;
    let intent = |index: usize, content_hash: Option<Hash>| FileIntent {
        name: files[index].name.clone(),
        size: files[index].size,
        key: files[index].key,
        conflict: options.conflict,
        modified_ns: files[index].modified_ns,
        quick_check: !options.checksum,
        content_hash,
    };
    for round in prepare_rounds(prepare_pages(files, pending)) {
        let mut planned = Vec::with_capacity(round.iter().map(|page| page.len()).sum());
        let intents = round
            .iter()
            .map(|page| page.iter().map(|&index| intent(index, None)).collect())
            .collect();
        let plans = client.prepare_round(intents, false).await?;
        let mut to_compare = Vec::new();
        for (page, plans) in round.iter().zip(plans) {
            for (&index, plan) in page.iter().zip(plans) {
                if plan == FilePlan::Compare {
                    to_compare.push(index);
                } else {
                    settle_plan(ledger, files, index, plan, None, &mut planned);
                }
            }
        }
        // Same size as a stored version: hash locally, and let the server compare.
        let mut hashes = std::collections::HashMap::new();
        for (index, hash) in hash_files(files, &to_compare).await {
            match hash {
                Some(hash) => {
                    hashes.insert(index, hash);
                }
                // Unreadable now, or changed: sending it settles the matter.
                None => settle_plan(ledger, files, index, FilePlan::Fresh, None, &mut planned),
            }
        }
        let hashed: Vec<usize> = to_compare
            .into_iter()
            .filter(|index| hashes.contains_key(index))
            .collect();
        if !hashed.is_empty() {
            let pages = prepare_pages(files, &hashed);
            let intents = pages
                .iter()
                .map(|page| {
                    let with_hash = |&index: &usize| intent(index, hashes.get(&index).copied());
                    page.iter().map(with_hash).collect()
                })
                .collect();
            let plans = client.prepare_round(intents, true).await?;
            for (page, plans) in pages.iter().zip(plans) {
                for (&index, plan) in page.iter().zip(plans) {
                    let hash = hashes.get(&index).copied();
                    settle_plan(ledger, files, index, plan, hash, &mut planned);
                }
            }
        }
        pipeline::upload(client, &planned, options, ledger).await?;
    }
    Ok(())
}

/// Acts on the server's plan for one file: not sent (unchanged, a taken name kept, refused)
/// or queued in `planned` to be sent. `hash`: the local file's, when it was computed.
fn settle_plan<'a>(
    ledger: &Ledger<'_>,
    files: &'a [LocalFile],
    index: usize,
    plan: FilePlan,
    hash: Option<Hash>,
    planned: &mut Vec<Planned<'a>>,
) {
    match plan {
        FilePlan::Unchanged { stored_name } => {
            ledger.skip(index, stored_name, hash, StoreStatus::Unchanged)
        }
        FilePlan::Refused {
            code: ErrorCode::NameTaken,
            ..
        } => {
            let name = files[index].name.clone();
            ledger.skip(index, name, None, StoreStatus::NameTaken)
        }
        FilePlan::Refused { code, message } if code.is_transient() => {
            let code = FailureCode::Server(code);
            ledger.defer(index, FileFailure { code, message });
        }
        FilePlan::Refused { code, message } => {
            ledger.fail(index, FailureCode::Server(code), message)
        }
        // Asked to compare a second time: the server has no answer from the hash; send it.
        FilePlan::Compare => planned.push(Planned {
            index,
            file: &files[index],
            plan: FilePlan::Fresh,
        }),
        plan => planned.push(Planned {
            index,
            file: &files[index],
            plan,
        }),
    }
}

/// Hashes the files at `indexes` on blocking threads (two at a time: reading is the cost),
/// for the server to compare with its stored versions. `None` for a file that cannot be
/// read or changed size: it will simply be sent (and fail there if unreadable).
async fn hash_files(files: &[LocalFile], indexes: &[usize]) -> Vec<(usize, Option<Hash>)> {
    use futures::StreamExt as _;
    futures::stream::iter(indexes.iter().copied())
        .map(|index| {
            let file = files[index].clone();
            async move {
                let hashed = tokio::task::spawn_blocking(move || hash_whole(&file)).await;
                (index, hashed.ok().and_then(Result::ok).flatten())
            }
        })
        .buffered(2)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use ft_protocol::Hash;

    use super::*;

    #[test]
    fn pages_respect_the_file_count_and_the_frame_size() {
        let file = |name: String| LocalFile {
            path: name.clone().into(),
            name,
            size: 1,
            key: Hash([0; 32]),
            modified_ns: None,
        };
        let short: Vec<_> = (0..PAGE_FILES + 5).map(|i| file(format!("f{i}"))).collect();
        let pending: Vec<usize> = (0..short.len()).collect();
        let sizes: Vec<usize> = prepare_pages(&short, &pending)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(sizes, [PAGE_FILES, 5]);

        let long: Vec<_> = (0..400)
            .map(|i| file(format!("{i}{}", "x".repeat(4000))))
            .collect();
        let pending: Vec<usize> = (0..long.len()).collect();
        let pages = prepare_pages(&long, &pending);
        assert!(pages.len() > 1);
        assert_eq!(pages.iter().map(|p| p.len()).sum::<usize>(), 400);
        for page in pages {
            let encoded: usize = page.iter().map(|&i| long[i].name.len() + 48).sum();
            assert!(encoded <= ft_protocol::MAX_FRAME_LEN / 2);
        }
    }

    #[test]
    fn rounds_hold_whole_pages_up_to_the_announcement_bound() {
        let pending: Vec<usize> = (0..MAX_ANNOUNCED_FILES * 2 + 10).collect();
        let pages: Vec<&[usize]> = pending.chunks(MAX_PREPARE_FILES).collect();
        let rounds = prepare_rounds(pages);
        let sizes: Vec<usize> = rounds
            .iter()
            .map(|round| round.iter().map(|page| page.len()).sum())
            .collect();
        assert_eq!(sizes, [MAX_ANNOUNCED_FILES, MAX_ANNOUNCED_FILES, 10]);
        assert!(prepare_rounds(Vec::new()).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = SendOptions::new(ConflictPolicy::KeepBoth);
        let delays: Vec<_> = (1..=8).map(|n| options.backoff(n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
