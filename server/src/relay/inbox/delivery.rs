//! Offers what waits in a user's inbox to its listening connection, one offer per sender's
//! `Leave`, as that sender would: `Offered`, then each accepted file from the prefix the
//! listener proves it holds, then `OfferClosed`. A file the listener saved and verified, or
//! declined, leaves the inbox; one that failed on its side stays for the next time.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use ft_protocol::{
    relay::{
        Decision, FileAnswer, OfferCancelled, OfferClosed, Offered, OfferedFile, RelayData,
        RelayFileEnd, RelayFileStart,
    },
    ErrorCode, Hash, Response, CHUNK_SIZE, MAX_OFFER_TIMEOUT_SECS,
};
use tokio::sync::mpsc;

use super::discard;
use crate::{
    catalog::inbox::InboxRecord,
    relay::{Control, Push},
    ServerState,
};

/// Longest a listener may take to answer an offer from its inbox (a person may decide).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(MAX_OFFER_TIMEOUT_SECS as u64);

/// Offers `user`'s waiting files through `queue` (its listening connection) until they are
/// all offered or the connection goes. Files from `blocked` users and expired ones are
/// removed unseen.
pub(crate) async fn deliver_waiting(
    state: Arc<ServerState>,
    user: String,
    blocked: Vec<String>,
    queue: mpsc::Sender<Push>,
) {
    let mut after = 0;
    loop {
        let reading = Arc::clone(&state);
        let who = user.clone();
        let page = tokio::task::spawn_blocking(move || {
            reading.catalog.inbox_page(&who, after, INBOX_PAGE)
        })
        .await;
        let Ok(Ok(records)) = page else {
            tracing::warn!("could not read {user}'s inbox");
            return;
        };
        let Some(last) = records.last() else {
            return;
        };
        after = last.id;
        let (batches, unwanted) = into_batches(records, &blocked, &state);
        discard_all(&state, unwanted).await;
        for batch in batches {
            // Another listening connection of the user (the window and `ftc listen` at once)
            // may be offering some of these already; each file is offered by one at a time.
            let Some((batch, _claim)) = Claim::take(&state, batch) else {
                continue;
            };
            if !offer_batch(&state, &queue, batch).await {
                return;
            }
        }
    }
}

/// Inbox rows one delivery is offering; released on drop.
struct Claim {
    state: Arc<ServerState>,
    ids: Vec<i64>,
}

impl Claim {
    /// Claims the rows of `batch` no other delivery is offering; `None` if none is left.
    fn take(
        state: &Arc<ServerState>,
        batch: Vec<InboxRecord>,
    ) -> Option<(Vec<InboxRecord>, Claim)> {
        let batch = state.inboxes.claim(batch);
        if batch.is_empty() {
            return None;
        }
        let ids = batch.iter().map(|record| record.id).collect();
        let claim = Claim {
            state: Arc::clone(state),
            ids,
        };
        Some((batch, claim))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.state.inboxes.release(&self.ids);
    }
}

/// Rows read from an inbox at a time (a batch that spans two pages is offered in two).
const INBOX_PAGE: usize = 512;

/// Groups a page's rows into offers (one per sender's `Leave`, in order), and sets aside
/// those to remove unseen: expired, or from a blocked sender.
fn into_batches(
    records: Vec<InboxRecord>,
    blocked: &[String],
    state: &ServerState,
) -> (Vec<Vec<InboxRecord>>, Vec<InboxRecord>) {
    let mut batches: Vec<Vec<InboxRecord>> = Vec::new();
    let mut unwanted = Vec::new();
    let mut batch_of: HashMap<(String, i64), usize> = HashMap::new();
    for record in records {
        if blocked.contains(&record.sender) || state.inboxes.expired(record.left_ns) {
            unwanted.push(record);
            continue;
        }
        let key = (record.sender.clone(), record.batch);
        let at = *batch_of.entry(key).or_insert_with(|| {
            batches.push(Vec::new());
            batches.len() - 1
        });
        batches[at].push(record);
    }
    (batches, unwanted)
}

/// Offers one batch and streams what is accepted. False: the listener is gone (or did not
/// answer in time), so nothing more is offered now.
async fn offer_batch(
    state: &Arc<ServerState>,
    queue: &mpsc::Sender<Push>,
    batch: Vec<InboxRecord>,
) -> bool {
    let Some(first) = batch.first() else {
        return true;
    };
    let id = state.relay.next_id();
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let offered = Offered {
        offer: id,
        from: first.sender.clone(),
        files: batch
            .iter()
            .map(|record| OfferedFile {
                name: record.name.clone(),
                size: record.size,
            })
            .collect(),
    };
    if queue
        .send(Push::Offer {
            offered,
            control: control_tx,
        })
        .await
        .is_err()
    {
        return false;
    }
    let answers = match tokio::time::timeout(ANSWER_TIMEOUT, control.recv()).await {
        Ok(Some(Control::Answer {
            decision: Decision::Accept(answers),
            ..
        })) => answers,
        Ok(Some(Control::Answer { .. })) => {
            discard_all(state, batch).await;
            return true;
        }
        Ok(_) => return false,
        Err(_) => {
            let _ = queue.try_send(Push::Send(Response::OfferCancelled(OfferCancelled {
                offer: id,
                user: String::new(),
                code: ErrorCode::Timeout,
                message: "no answer in time; the files wait in the inbox".into(),
            })));
            return false;
        }
    };
    let mut awaiting: HashMap<u32, InboxRecord> = HashMap::new();
    let mut skipped = Vec::new();
    for (index, (record, answer)) in batch.into_iter().zip(answers).enumerate() {
        let FileAnswer::Accept {
            offset,
            prefix_hash,
        } = answer
        else {
            skipped.push(record);
            continue;
        };
        let Ok(file) = u32::try_from(index) else {
            break;
        };
        let start = verified_start(state, &record, offset, prefix_hash).await;
        if start > 0 {
            tracing::info!(
                name = record.name.as_str(),
                offset = start,
                "inbox delivery resumes from the listener's verified copy"
            );
        }
        let sending = Sending {
            queue,
            offer: id,
            file,
        };
        if !stream_file(state, &sending, &record, start, &mut control, &mut awaiting).await {
            return false;
        }
        awaiting.insert(file, record);
    }
    discard_all(state, skipped).await;
    let patience = state.limits.idle_timeout;
    if !take_verdicts(state, &mut control, &mut awaiting, patience).await {
        return false;
    }
    let closed = Response::OfferClosed(OfferClosed { offer: id });
    queue.send(Push::Send(closed)).await.is_ok()
}

/// Takes in the listener's verdicts, for at most `patience` once none is pending (or
/// until all came): a verified file leaves the inbox. False: the listener went away.
async fn take_verdicts(
    state: &Arc<ServerState>,
    control: &mut mpsc::UnboundedReceiver<Control>,
    awaiting: &mut HashMap<u32, InboxRecord>,
    patience: Duration,
) -> bool {
    loop {
        let message = if patience.is_zero() {
            match control.try_recv() {
                Ok(message) => message,
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        } else {
            if awaiting.is_empty() {
                return true;
            }
            match tokio::time::timeout(patience, control.recv()).await {
                Ok(Some(message)) => message,
                Ok(None) | Err(_) => return false,
            }
        };
        match message {
            Control::Received { file, ok, .. } => {
                if let Some(record) = awaiting.remove(&file) {
                    if ok {
                        tracing::info!(
                            to = %record.recipient,
                            name = %record.name,
                            "inbox file delivered"
                        );
                        discard_all(state, vec![record]).await;
                    }
                }
            }
            Control::Gone { .. } => return false,
            Control::Answer { .. } => {}
        }
    }
}

/// Where the listener's copy starts: its offset if its prefix hash matches ours, else 0.
async fn verified_start(
    state: &Arc<ServerState>,
    record: &InboxRecord,
    offset: u64,
    prefix_hash: Option<Hash>,
) -> u64 {
    let Some(theirs) = prefix_hash else {
        return 0;
    };
    if offset == 0 || offset > record.size {
        return 0;
    }
    let state = Arc::clone(state);
    let blob = record.blob.clone();
    let ours = tokio::task::spawn_blocking(move || -> std::io::Result<Hash> {
        let file = state
            .store
            .inbox_open(&blob)
            .map_err(std::io::Error::other)?;
        let mut hasher = blake3::Hasher::new();
        let copied = std::io::copy(&mut file.take(offset), &mut hasher)?;
        if copied != offset {
            return Err(std::io::Error::other("shorter than the prefix"));
        }
        Ok(hasher.finalize().into())
    })
    .await;
    match ours {
        Ok(Ok(ours)) if ours == theirs => offset,
        _ => 0,
    }
}

/// Where one file of an offer goes.
struct Sending<'a> {
    queue: &'a mpsc::Sender<Push>,
    offer: u64,
    file: u32,
}

/// Sends one file from `start`: `RelayFileStart`, its bytes, `RelayFileEnd` with the hash
/// checked when it was left, taking in the listener's verdicts on earlier files meanwhile.
/// False: the listener cancelled or is gone.
async fn stream_file(
    state: &Arc<ServerState>,
    sending: &Sending<'_>,
    record: &InboxRecord,
    start: u64,
    control: &mut mpsc::UnboundedReceiver<Control>,
    awaiting: &mut HashMap<u32, InboxRecord>,
) -> bool {
    let Sending {
        queue,
        offer: id,
        file,
    } = *sending;
    let begin = Response::RelayFileStart(RelayFileStart {
        offer: id,
        file,
        offset: start,
    });
    if queue.send(Push::Send(begin)).await.is_err() {
        return false;
    }
    let (pieces_tx, mut pieces) = mpsc::channel::<std::io::Result<Bytes>>(2);
    let reading = Arc::clone(state);
    let blob = record.blob.clone();
    let size = record.size;
    let reader = tokio::task::spawn_blocking(move || {
        let read = || -> std::io::Result<()> {
            let mut handle = reading
                .store
                .inbox_open(&blob)
                .map_err(std::io::Error::other)?;
            handle.seek(SeekFrom::Start(start))?;
            let mut left = size - start;
            while left > 0 {
                let len = usize::try_from(left.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE);
                let mut buffer = vec![0; len];
                handle.read_exact(&mut buffer)?;
                left -= len as u64;
                if pieces_tx.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(err) = read() {
            let _ = pieces_tx.blocking_send(Err(err));
        }
    });
    let mut whole = true;
    while let Some(piece) = pieces.recv().await {
        match piece {
            Ok(data) => {
                let data = Response::RelayData(RelayData { offer: id, data });
                let listening = queue.send(Push::Send(data)).await.is_ok()
                    && take_verdicts(state, control, awaiting, Duration::ZERO).await;
                if !listening {
                    reader.abort();
                    return false;
                }
            }
            Err(err) => {
                // The listener sees a short file, says so, and the file stays for later.
                tracing::warn!(name = %record.name, "could not read an inbox file: {err}");
                whole = false;
                break;
            }
        }
    }
    let _ = reader.await;
    let hash = if whole { record.hash } else { Hash([0; 32]) };
    let end = Response::RelayFileEnd(RelayFileEnd {
        offer: id,
        file,
        hash,
    });
    queue.send(Push::Send(end)).await.is_ok()
}

/// Removes waiting files (delivered, declined, expired or from a blocked sender).
async fn discard_all(state: &Arc<ServerState>, records: Vec<InboxRecord>) {
    if records.is_empty() {
        return;
    }
    let state = Arc::clone(state);
    let _ = tokio::task::spawn_blocking(move || {
        for record in &records {
            discard(&state, record);
        }
    })
    .await;
}
