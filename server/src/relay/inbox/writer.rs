//! One recipient's side of a `Leave`: takes the relayed messages a listening connection
//! would, and writes each file into the inbox area instead, hashing it. A file is recorded
//! only when its bytes match the sender's hash and are durable; then the sender hears
//! `Delivered { ok: true }` as from a recipient who saved it.

use std::{io::Write, sync::Arc};

use ft_protocol::{
    relay::{OfferedFile, RelayData, RelayFileEnd, RelayFileStart},
    Hash, Response,
};
use tokio::sync::mpsc;

use super::{now_ns, Reservation};
use crate::{
    catalog::inbox::InboxRecord,
    relay::{Control, Push, LISTENER_QUEUE_MESSAGES},
    store::InboxDraft,
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
}

/// Starts a writer for `leaving`; the returned queue takes what the sender's session would
/// push to a listening connection, and verdicts go to `control`.
pub(crate) fn start(
    state: Arc<ServerState>,
    leaving: Leaving,
    reservation: Reservation,
    control: mpsc::UnboundedSender<Control>,
) -> mpsc::Sender<Push> {
    let (queue, pushed) = mpsc::channel(LISTENER_QUEUE_MESSAGES);
    tokio::task::spawn_blocking(move || {
        write_files(&state, &leaving, pushed, &control);
        drop(reservation);
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
}

fn write_files(
    state: &ServerState,
    leaving: &Leaving,
    mut pushed: mpsc::Receiver<Push>,
    control: &mpsc::UnboundedSender<Control>,
) {
    let mut current: Option<Current<'_>> = None;
    while let Some(push) = pushed.blocking_recv() {
        let Push::Send(message) = push else {
            continue;
        };
        match message {
            Response::RelayFileStart(RelayFileStart { file, .. }) => {
                current = match state.store.inbox_draft() {
                    Ok(draft) => Some(Current {
                        index: file,
                        draft,
                        hasher: blake3::Hasher::new(),
                        written: 0,
                        failed: None,
                    }),
                    Err(err) => {
                        verdict(control, leaving, file, false, format!("{err}"));
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
        return Err(format!(
            "{} bytes arrived where {} were offered",
            written.written, offered.size
        ));
    }
    if Hash::from(written.hasher.finalize()) != hash {
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
