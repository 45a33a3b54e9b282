//! One recipient's side of a `Leave`: takes the relayed messages a listening connection
//! would, and writes each file into the inbox area instead, hashing it. A file is recorded
//! only when its bytes match the sender's hash and are durable; then the sender hears
//! `Delivered { ok: true }` as from a recipient who saved it.

use std::{io::Write, sync::Arc};

use ft_protocol::{
    relay::{FileAnswer, OfferedFile, RelayData, RelayFileEnd, RelayFileStart},
    Hash, Response,
};
use tokio::sync::mpsc;

use super::{now_ns, Reservation};
use crate::{
    catalog::inbox::InboxRecord,
    leases::Lease,
    relay::{Control, Push, LISTENER_QUEUE_MESSAGES},
    store::{InboxDraft, Store},
    ServerState,
};

/// Who leaves what for whom.
#[derive(Debug)]
pub(crate) struct Leaving {
    pub(crate) sender: String,
    pub(crate) recipient: String,
    pub(crate) files: Vec<OfferedFile>,
    /// Shared by the files of this `Leave` for this recipient.
    pub(crate) batch: i64,
    /// Per file, its resumable copy, when this `Leave` holds it (empty: none does).
    pub(crate) resumable: Vec<Option<Resumable>>,
}

/// A file's resumable copy in the inbox area (`part-*`), held under a lease so that no
/// other `Leave` of the same file writes it meanwhile.
#[derive(Debug)]
pub(crate) struct Resumable {
    pub(crate) partial: String,
    pub(crate) lease: Lease,
    /// What it already holds: its length and the hash of those bytes (offered to the sender
    /// to prove against its own file).
    pub(crate) held: Option<(u64, blake3::Hasher)>,
}

impl Resumable {
    /// Per offered file, its resumable copy in the inbox area if no other `Leave` holds it
    /// now (claimed for this one), with what it already holds. Blocking: the held bytes are
    /// hashed.
    pub(crate) fn claim_all(
        state: &ServerState,
        sender: &str,
        recipient: &str,
        offered: &[OfferedFile],
    ) -> Vec<Option<Resumable>> {
        offered
            .iter()
            .map(|file| {
                let partial = Store::inbox_partial_name(sender, recipient, &file.name, file.size);
                let lease = state.leases.claim_if_free(Self::lease_key(&partial))?;
                let held = state.store.inbox_partial_prefix(&partial, file.size);
                Some(Resumable {
                    partial,
                    lease,
                    held,
                })
            })
            .collect()
    }

    /// The answer for a file with `copy`: continue from what it holds (the sender proves
    /// those bytes against its own before any count), or start at 0.
    pub(crate) fn answer(copy: Option<&Resumable>) -> FileAnswer {
        match copy.and_then(|copy| copy.held.as_ref()) {
            Some((len, hasher)) => FileAnswer::Accept {
                offset: *len,
                prefix_hash: Some(Hash::from(hasher.finalize())),
            },
            None => FileAnswer::Accept {
                offset: 0,
                prefix_hash: None,
            },
        }
    }

    /// The lease key of the resumable copy named `partial`.
    pub(crate) fn lease_key(partial: &str) -> Hash {
        let mut key = blake3::Hasher::new();
        key.update(b"inbox copy ");
        key.update(partial.as_bytes());
        Hash::from(key.finalize())
    }
}

/// Starts a writer for `leaving`; the returned queue takes what the sender's session would
/// push to a listening connection, and verdicts go to `control`. The space reserved and the
/// writer's permit (see `Inboxes::try_writer`) are held until the writer ends.
pub(crate) fn start(
    state: Arc<ServerState>,
    leaving: Leaving,
    held: (Reservation, tokio::sync::OwnedSemaphorePermit),
    control: mpsc::UnboundedSender<Control>,
) -> mpsc::Sender<Push> {
    let (queue, pushed) = mpsc::channel(LISTENER_QUEUE_MESSAGES);
    tokio::task::spawn_blocking(move || {
        let mut leaving = leaving;
        write_files(&state, &mut leaving, pushed, &control);
        drop(held);
    });
    queue
}

/// The file being written.
struct Current<'a> {
    index: u32,
    draft: InboxDraft<'a>,
    hasher: blake3::Hasher,
    written: u64,
    /// The first write error; the rest of the file is then only drained.
    failed: Option<String>,
    /// Held while a resumable copy is written.
    _lease: Option<Lease>,
}

fn write_files(
    state: &ServerState,
    leaving: &mut Leaving,
    mut pushed: mpsc::Receiver<Push>,
    control: &mpsc::UnboundedSender<Control>,
) {
    let mut current: Option<Current<'_>> = None;
    while let Some(push) = pushed.blocking_recv() {
        let Push::Send(message) = push else {
            continue;
        };
        match message {
            Response::RelayFileStart(RelayFileStart { file, offset, .. }) => {
                let resumable = leaving
                    .resumable
                    .get_mut(file as usize)
                    .and_then(Option::take);
                current = match open_copy(state, resumable, offset) {
                    Ok((draft, hasher, lease)) => Some(Current {
                        index: file,
                        draft,
                        hasher,
                        written: offset,
                        failed: None,
                        _lease: lease,
                    }),
                    Err(message) => {
                        verdict(control, leaving, file, false, message);
                        None
                    }
                };
            }
            Response::RelayData(RelayData { data, .. }) => {
                if let Some(file) = current.as_mut() {
                    if file.failed.is_none() {
                        match file.draft.file.write_all(&data) {
                            Ok(()) => {
                                file.hasher.update(&data);
                                file.written += data.len() as u64;
                            }
                            Err(err) => file.failed = Some(format!("the server's disk: {err}")),
                        }
                    }
                }
            }
            Response::RelayFileEnd(RelayFileEnd { file, hash, .. }) => {
                let Some(written) = current.take().filter(|c| c.index == file) else {
                    continue;
                };
                let (ok, message) = match keep(state, leaving, written, hash) {
                    Ok(message) => (true, message),
                    Err(message) => (false, message),
                };
                verdict(control, leaving, file, ok, message);
            }
            // Cancelled, dropped or closed: what is half-written goes with the draft.
            Response::OfferCancelled(_) | Response::OfferClosed(_) => return,
            _ => {}
        }
    }
}

/// Opens where a file's bytes go from `offset`: its resumable copy if this `Leave` holds it
/// (continued if `offset` is what it holds, else started over), a temporary otherwise.
fn open_copy<'a>(
    state: &'a ServerState,
    resumable: Option<Resumable>,
    offset: u64,
) -> Result<(InboxDraft<'a>, blake3::Hasher, Option<Lease>), String> {
    let not_offered = || format!("the sender resumed at byte {offset}, which was not offered");
    let Some(Resumable {
        partial,
        lease,
        held,
    }) = resumable
    else {
        if offset != 0 {
            return Err(not_offered());
        }
        let draft = state.store.inbox_draft().map_err(|err| err.to_string())?;
        return Ok((draft, blake3::Hasher::new(), None));
    };
    let hasher = match held {
        Some((len, hasher)) if len == offset => hasher,
        _ if offset == 0 => blake3::Hasher::new(),
        _ => return Err(not_offered()),
    };
    let draft = state
        .store
        .inbox_resumable_draft(&partial, offset)
        .map_err(|err| err.to_string())?;
    Ok((draft, hasher, Some(lease)))
}

/// Checks a written file against the sender's hash, makes it durable and records it.
/// Returns what the sender is told.
fn keep(
    state: &ServerState,
    leaving: &Leaving,
    written: Current<'_>,
    hash: Hash,
) -> Result<String, String> {
    if let Some(failed) = written.failed {
        return Err(failed);
    }
    let offered = leaving
        .files
        .get(written.index as usize)
        .ok_or_else(|| "a file that was not offered".to_owned())?;
    if written.written != offered.size {
        written.draft.discard();
        return Err(format!(
            "{} bytes arrived where {} were offered",
            written.written, offered.size
        ));
    }
    if Hash::from(written.hasher.finalize()) != hash {
        written.draft.discard();
        return Err("the bytes that arrived do not match the sender's hash".into());
    }
    let blob = written.draft.keep().map_err(|err| err.to_string())?;
    let left_ns = now_ns();
    let record = InboxRecord {
        id: 0,
        recipient: leaving.recipient.clone(),
        sender: leaving.sender.clone(),
        name: offered.name.clone(),
        size: offered.size,
        hash,
        blob: blob.clone(),
        left_ns,
        batch: leaving.batch,
    };
    if let Err(err) = state.catalog.inbox_add(&record) {
        state.store.inbox_remove(&blob);
        return Err(format!("the server could not record it: {err}"));
    }
    tracing::info!(
        to = %leaving.recipient,
        name = %offered.name,
        size = offered.size,
        "file left in an inbox"
    );
    let expires = state.inboxes.describe(&record).expires_at;
    Ok(format!(
        "left in {}'s inbox on the server until {expires}",
        leaving.recipient
    ))
}

fn verdict(
    control: &mpsc::UnboundedSender<Control>,
    leaving: &Leaving,
    file: u32,
    ok: bool,
    message: String,
) {
    let _ = control.send(Control::Received {
        user: leaving.recipient.clone(),
        file,
        ok,
        message,
    });
}
