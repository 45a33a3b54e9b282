//! `ftc listen`: be online for other users, decide on their offers, and save what they send
//! the way downloads are saved: into a hidden `.NAME.ftc-part` beside the destination,
//! hashed while written, named only once the sender's BLAKE3 matches, never replacing a
//! local file unless asked (keep both as `name (1).ext`), never outside the folder.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use ft_protocol::{
    relay::{
        Answer, CancelOffer, Decision, FileAnswer, Listen, Listening, OfferCancelled, Offered,
        OfferedFile, OnlineUser, Presence, Received, RelayData, RelayFileEnd, RelayFileStart,
        UsersRequest,
    },
    Hash, Request, Response,
};
use futures::{SinkExt, StreamExt};

use crate::{
    connection::{interpret, unexpected, Client},
    download::{local_path, partial_path},
    error::ClientError,
    session::Session,
};

/// How often a listening client shows it is alive (the server closes silent connections).
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How a listener saves what it accepts.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Where files go (their folders are kept).
    pub out_dir: PathBuf,
    /// Replace local files of the same name instead of keeping both.
    pub force: bool,
    /// Users whose offers the server declines without asking.
    pub blocked: Vec<String>,
    /// Return after the first offer is over.
    pub once: bool,
}

/// An offer to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Who offers.
    pub from: &'a str,
    /// What (names already checked: unsafe ones are never accepted).
    pub files: &'a [OfferedFile],
}

/// The decision on an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferChoice {
    /// None of it.
    Decline,
    /// These files (one flag per offered file).
    Accept(Vec<bool>),
}

/// What a listener reports as it goes.
#[derive(Debug, Clone)]
pub enum ListenEvent {
    /// Listening; these users are online.
    Listening(Vec<OnlineUser>),
    /// Someone came, went, or started or stopped listening.
    Presence(Presence),
    /// An offer was declined (by the decision, or for unsafe names).
    Declined {
        /// Who offered.
        from: String,
        /// Files it held.
        files: usize,
    },
    /// A file was saved and verified.
    Saved {
        /// Who sent it.
        from: String,
        /// The offered name.
        name: String,
        /// Where it was saved (another name if the offered one was taken).
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Its BLAKE3, the sender's and ours.
        hash: Hash,
    },
    /// A file was not saved.
    Failed {
        /// Who sent it.
        from: String,
        /// The offered name.
        name: String,
        /// Why.
        message: String,
    },
    /// The sender stopped the offer (partial files stay for a resume).
    Cancelled {
        /// Who sent it.
        from: String,
        /// Why.
        message: String,
    },
}

/// One accepted file.
struct Wanted {
    offered: OfferedFile,
    target: PathBuf,
    partial: PathBuf,
    /// The partial file's length and hash state when the offer was answered.
    held: Option<(u64, blake3::Hasher)>,
}

/// The file of an offer being written.
struct Writing {
    file: u32,
    /// The thread hashing and writing its pieces while the connection goes on reading.
    writer: super::file_writer::FileWriter,
    written: u64,
}

/// An accepted offer in progress.
struct Receiving {
    from: String,
    wanted: HashMap<u32, Wanted>,
    writing: Option<Writing>,
}

/// Listens until the connection ends, Ctrl-C (the caller's), or, with `once`, the end of
/// the first offer. `decide` is asked about each offer; `on_event` hears everything else.
pub async fn listen(
    session: &mut Session,
    options: &ListenOptions,
    decide: &mut (dyn FnMut(Incoming<'_>) -> OfferChoice + Send),
    on_event: &(dyn Fn(ListenEvent) + Sync),
) -> Result<(), ClientError> {
    let client = session.client().await?;
    client
        .writer
        .send(Request::Listen(Listen {
            blocked: options.blocked.clone(),
        }))
        .await?;
    match interpret(client.reader.next().await)? {
        Response::Listening(Listening { users }) => on_event(ListenEvent::Listening(users)),
        other => return Err(unexpected(other)),
    }
    let mut offers: HashMap<u64, Receiving> = HashMap::new();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let mut handled_one = false;
    // Files whose bytes all came are verified, flushed and named off this loop, so the next
    // file's bytes keep coming meanwhile.
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
    let mut finishing = 0usize;
    loop {
        if options.once && handled_one && offers.is_empty() && finishing == 0 {
            return Ok(());
        }
        let response = tokio::select! {
            Some(finished) = finished_rx.recv() => {
                finishing -= 1;
                report_finished(client, &mut offers, finished, on_event).await?;
                continue;
            }
            item = client.reader.next(), if finishing < MAX_FINISHING => interpret(item)?,
            _ = keepalive.tick() => {
                client.writer.send(Request::Users(UsersRequest {})).await?;
                continue;
            }
        };
        match response {
            Response::Users(_) => {}
            Response::Presence(presence) => on_event(ListenEvent::Presence(presence)),
            Response::Offered(offered) => {
                handled_one = true;
                let offer = offered.offer;
                let (answer, receiving) = answer_offer(offered, options, decide).await;
                let declined = matches!(answer, Decision::Decline);
                if let Some(receiving) = receiving {
                    if declined {
                        on_event(ListenEvent::Declined {
                            from: receiving.from.clone(),
                            files: receiving.wanted.len(),
                        });
                    } else {
                        offers.insert(offer, receiving);
                    }
                }
                client
                    .writer
                    .send(Request::Answer(Answer {
                        offer,
                        decision: answer,
                    }))
                    .await?;
            }
            Response::RelayFileStart(start) => {
                if let Some(receiving) = offers.get_mut(&start.offer) {
                    if let Err(message) = begin_file(receiving, &start).await {
                        fail_file(
                            client,
                            receiving,
                            start.offer,
                            start.file,
                            message,
                            on_event,
                        )
                        .await?;
                    }
                }
            }
            Response::RelayData(RelayData { offer, data }) => {
                let Some(receiving) = offers.get_mut(&offer) else {
                    continue;
                };
                if let Err((file, message)) = write_data(receiving, data).await {
                    fail_file(client, receiving, offer, file, message, on_event).await?;
                }
            }
            Response::RelayFileEnd(end) => {
                let Some(receiving) = offers.get_mut(&end.offer) else {
                    continue;
                };
                match start_finishing(receiving, &end, options.force) {
                    Ok(finish) => {
                        finishing += 1;
                        let finished = finished_tx.clone();
                        tokio::spawn(async move {
                            let _ = finished.send(finish.await);
                        });
                    }
                    Err(message) => {
                        let finished = Finished {
                            offer: end.offer,
                            file: end.file,
                            from: receiving.from.clone(),
                            name: receiving
                                .wanted
                                .get(&end.file)
                                .map(|wanted| wanted.offered.name.clone())
                                .unwrap_or_default(),
                            hash: end.hash,
                            outcome: Err(message),
                        };
                        report_finished(client, &mut offers, finished, on_event).await?;
                    }
                }
            }
            Response::OfferClosed(closed) => {
                // Files the sender never sent (it could not read them) are simply not saved.
                offers.remove(&closed.offer);
            }
            Response::OfferCancelled(OfferCancelled { offer, message, .. }) => {
                if let Some(receiving) = offers.remove(&offer) {
                    // The partial file stays: sending again resumes from it.
                    on_event(ListenEvent::Cancelled {
                        from: receiving.from,
                        message,
                    });
                }
            }
            other => return Err(unexpected(other)),
        }
    }
}

/// Decides on an offer and prepares its accepted files (their targets, and the prefix each
/// partial file already holds, to resume).
async fn answer_offer(
    offered: Offered,
    options: &ListenOptions,
    decide: &mut (dyn FnMut(Incoming<'_>) -> OfferChoice + Send),
) -> (Decision, Option<Receiving>) {
    let Offered { from, files, .. } = offered;
    let targets: Vec<Option<PathBuf>> = files
        .iter()
        .map(|file| local_path(&options.out_dir, &file.name))
        .collect();
    if targets.iter().any(Option::is_none) {
        // An unsafe name: the whole offer is suspect.
        let receiving = Receiving {
            from,
            wanted: HashMap::new(),
            writing: None,
        };
        return (Decision::Decline, Some(receiving));
    }
    let choice = tokio::task::block_in_place(|| {
        decide(Incoming {
            from: &from,
            files: &files,
        })
    });
    let flags = match choice {
        OfferChoice::Decline => {
            let receiving = Receiving {
                from,
                wanted: HashMap::new(),
                writing: None,
            };
            return (Decision::Decline, Some(receiving));
        }
        OfferChoice::Accept(flags) => flags,
    };
    let mut answers = Vec::with_capacity(files.len());
    let mut wanted = HashMap::new();
    for (index, (file, target)) in files.iter().zip(targets).enumerate() {
        let (Some(target), true) = (target, flags.get(index).copied().unwrap_or(false)) else {
            answers.push(FileAnswer::Skip);
            continue;
        };
        let partial = partial_path(&target);
        let held = hash_partial(&partial, file.size).await;
        answers.push(FileAnswer::Accept {
            offset: held.as_ref().map_or(0, |(len, _)| *len),
            prefix_hash: held
                .as_ref()
                .map(|(_, hasher)| Hash::from(hasher.finalize())),
        });
        wanted.insert(
            index as u32,
            Wanted {
                offered: file.clone(),
                target,
                partial,
                held,
            },
        );
    }
    let receiving = Receiving {
        from,
        wanted,
        writing: None,
    };
    (Decision::Accept(answers), Some(receiving))
}

/// Opens a file's partial file at the offset the sender confirmed.
async fn begin_file(receiving: &mut Receiving, start: &RelayFileStart) -> Result<(), String> {
    let wanted = receiving
        .wanted
        .get_mut(&start.file)
        .ok_or_else(|| "a file that was not accepted".to_owned())?;
    if let Some(parent) = wanted.partial.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|err| format!("{}: {err}", parent.display()))?;
    }
    let (offset, hasher) = match wanted.held.take() {
        Some((len, hasher)) if start.offset == len && len > 0 => (len, hasher),
        _ => (0, blake3::Hasher::new()),
    };
    let partial = wanted.partial.clone();
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        use std::io::Seek as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&partial)?;
        file.set_len(offset)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        Ok(file)
    })
    .await
    .map_err(|join| join.to_string())?
    .map_err(|err| format!("{}: {err}", wanted.partial.display()))?;
    let remaining = wanted.offered.size.saturating_sub(offset);
    let writer = super::file_writer::start(opened, offset, remaining, hasher);
    receiving.writing = Some(Writing {
        file: start.file,
        writer,
        written: offset,
    });
    Ok(())
}

/// Appends relayed bytes to the file being written.
async fn write_data(receiving: &mut Receiving, data: bytes::Bytes) -> Result<(), (u32, String)> {
    let Some(writing) = receiving.writing.as_mut() else {
        return Ok(());
    };
    let size = receiving
        .wanted
        .get(&writing.file)
        .map_or(0, |wanted| wanted.offered.size);
    if writing.written + data.len() as u64 > size {
        let file = writing.file;
        receiving.writing = None;
        return Err((file, "the sender sent more bytes than it offered".into()));
    }
    writing.written += data.len() as u64;
    if writing.writer.pieces.send(data).await.is_err() {
        // The writer thread stopped: its error comes out when the file ends.
        let file = writing.file;
        if let Some(writing) = receiving.writing.take() {
            let super::file_writer::FileWriter { pieces, done } = writing.writer;
            drop(pieces);
            let failure = match done.await {
                Ok(Err(err)) => format!("cannot write: {err}"),
                _ => "cannot write".to_owned(),
            };
            return Err((file, failure));
        }
    }
    Ok(())
}

/// A file whose bytes all came, verified and named (its saved path and size) or not (why).
struct Finished {
    offer: u64,
    file: u32,
    /// Who sent it, and its offered name.
    from: String,
    name: String,
    hash: Hash,
    outcome: Result<(PathBuf, u64), String>,
}

/// Most files being verified and named at once; beyond, the loop waits before reading on.
const MAX_FINISHING: usize = 4;

/// Takes the file `end` closes off its offer's writing state; the returned future waits for
/// its writer, verifies the hash, names the file and flushes its folder.
fn start_finishing(
    receiving: &mut Receiving,
    end: &RelayFileEnd,
    force: bool,
) -> Result<impl std::future::Future<Output = Finished>, String> {
    let writing = match receiving.writing.take() {
        Some(writing) if writing.file == end.file => writing,
        _ => return Err("the file's data never came".into()),
    };
    let wanted = receiving
        .wanted
        .get(&end.file)
        .ok_or_else(|| "a file that was not accepted".to_owned())?;
    let (size, target, partial) = (
        wanted.offered.size,
        wanted.target.clone(),
        wanted.partial.clone(),
    );
    let (from, name) = (receiving.from.clone(), wanted.offered.name.clone());
    let (offer, file, hash) = (end.offer, end.file, end.hash);
    Ok(async move {
        let outcome = finish(writing, size, hash, &partial, &target, force).await;
        Finished {
            offer,
            file,
            from,
            name,
            hash,
            outcome,
        }
    })
}

/// Verifies a complete file and gives it its name, durably: (saved path, size).
async fn finish(
    writing: Writing,
    size: u64,
    hash: Hash,
    partial: &Path,
    target: &Path,
    force: bool,
) -> Result<(PathBuf, u64), String> {
    let Writing {
        writer, written, ..
    } = writing;
    let super::file_writer::FileWriter { pieces, done } = writer;
    drop(pieces);
    let hasher = done
        .await
        .map_err(|join| join.to_string())?
        .map_err(|err| format!("cannot write: {err}"))?;
    if written != size {
        return Err(format!("{written} bytes came, {size} were offered"));
    }
    let ours = Hash::from(hasher.finalize());
    if ours != hash {
        let _ = tokio::fs::remove_file(partial).await;
        return Err(format!(
            "received content hashes to {ours}, the sender's is {hash}; nothing was saved"
        ));
    }
    let path = place_keeping_both(partial, target, force)
        .await
        .map_err(|err| format!("{}: {err}", target.display()))?;
    // The name survives a crash too once the sender hears the file was saved.
    if let Some(folder) = path.parent().map(Path::to_path_buf) {
        tokio::task::spawn_blocking(move || std::fs::File::open(&folder)?.sync_all())
            .await
            .map_err(|join| join.to_string())?
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok((path, size))
}

/// Says how a finished file went, locally and to the sender, and forgets it.
async fn report_finished(
    client: &mut Client,
    offers: &mut HashMap<u64, Receiving>,
    finished: Finished,
    on_event: &(dyn Fn(ListenEvent) + Sync),
) -> Result<(), ClientError> {
    let Finished {
        offer,
        file,
        from,
        name,
        hash,
        outcome,
    } = finished;
    let (ok, message) = match outcome {
        Ok((path, size)) => {
            let shown = path.display().to_string();
            on_event(ListenEvent::Saved {
                from,
                name,
                path,
                size,
                hash,
            });
            (true, shown)
        }
        Err(message) => {
            on_event(ListenEvent::Failed {
                from,
                name,
                message: message.clone(),
            });
            (false, message)
        }
    };
    let Some(receiving) = offers.get_mut(&offer) else {
        // The offer was cancelled meanwhile: the sender no longer waits for verdicts.
        return Ok(());
    };
    receiving.wanted.remove(&file);
    let done = receiving.wanted.is_empty();
    client
        .writer
        .send(Request::Received(Received {
            offer,
            file,
            ok,
            message,
        }))
        .await?;
    if done {
        offers.remove(&offer);
    }
    Ok(())
}

/// Tells the sender a file failed here, and forgets it.
async fn fail_file(
    client: &mut Client,
    receiving: &mut Receiving,
    offer: u64,
    file: u32,
    message: String,
    on_event: &(dyn Fn(ListenEvent) + Sync),
) -> Result<(), ClientError> {
    if let Some(wanted) = receiving.wanted.remove(&file) {
        on_event(ListenEvent::Failed {
            from: receiving.from.clone(),
            name: wanted.offered.name,
            message: message.clone(),
        });
    }
    client
        .writer
        .send(Request::Received(Received {
            offer,
            file,
            ok: false,
            message,
        }))
        .await?;
    if receiving.wanted.is_empty() {
        client
            .writer
            .send(Request::CancelOffer(CancelOffer { offer }))
            .await?;
    }
    Ok(())
}

/// Length and hash state of a partial file from an interrupted transfer, if it is no longer
/// than the file offered.
async fn hash_partial(partial: &Path, size: u64) -> Option<(u64, blake3::Hasher)> {
    let partial = partial.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&partial).ok()?;
        let mut hasher = blake3::Hasher::new();
        let len = std::io::copy(&mut file, &mut hasher).ok()?;
        (len > 0 && len <= size).then_some((len, hasher))
    })
    .await
    .ok()
    .flatten()
}

/// Gives a verified partial file its name: `target`, or with `force` in place of an
/// existing file; otherwise the first free `name (N).ext` (a link fails if the name is
/// taken, so nothing is ever replaced by accident).
async fn place_keeping_both(
    partial: &Path,
    target: &Path,
    force: bool,
) -> std::io::Result<PathBuf> {
    if force {
        tokio::fs::rename(partial, target).await?;
        return Ok(target.to_path_buf());
    }
    for n in 0..1000u32 {
        let candidate = if n == 0 {
            target.to_path_buf()
        } else {
            numbered(target, n)
        };
        match tokio::fs::hard_link(partial, &candidate).await {
            Ok(()) => {
                tokio::fs::remove_file(partial).await?;
                return Ok(candidate);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other("no free name left"))
}

/// `dir/name (n).ext`.
fn numbered(target: &Path, n: u32) -> PathBuf {
    let stem = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match target.extension() {
        Some(ext) => format!("{stem} ({n}).{}", ext.to_string_lossy()),
        None => format!("{stem} ({n})"),
    };
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_numbered_before_the_extension() {
        assert_eq!(
            numbered(Path::new("/o/a/report.pdf"), 2),
            PathBuf::from("/o/a/report (2).pdf")
        );
        assert_eq!(
            numbered(Path::new("/o/README"), 1),
            PathBuf::from("/o/README (1)")
        );
    }
}
