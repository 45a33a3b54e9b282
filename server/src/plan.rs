//! What the server answers to a `Prepare` page: for each announced file, whether it needs
//! to be sent at all (see versions.rs), whether it may be, and from which offset (a verified
//! prefix of an earlier attempt is offered for resume). The same checks guard a `BeginFile`
//! that was not announced.

use std::collections::HashSet;

use ft_protocol::{ErrorCode, FileIntent, FilePlan, Hash};

use crate::{
    names::ValidName,
    refusal::Refusal,
    store::KnownFolders,
    versions::{self, Sameness},
    ServerState,
};

/// A resume offered to the client: the upload's key, the offset, and the hash state of the
/// bytes before it (to go on hashing from there).
pub(crate) type ResumeOffer = (Hash, u64, Box<blake3::Hasher>);

/// Plans a page of announced files, in order. `promised`: bytes of free space already
/// promised to earlier pages of the round; returns the plans and the new total. Without
/// `compare_stored` no file is compared with what is stored (every one is new, for a client
/// that may not learn what is there). Blocking.
pub(crate) fn plan_page(
    state: &ServerState,
    files: &[FileIntent],
    promised: u64,
    compare_stored: bool,
) -> (Vec<(FilePlan, Option<ResumeOffer>)>, u64) {
    let free = state.store.available_space().ok();
    let mut context = PlanContext {
        free_bytes: free.map(|free| free.saturating_sub(promised)),
        partials: state.store.partial_keys(),
        folders: KnownFolders::default(),
        retimes: Vec::new(),
    };
    let names: Vec<(&str, bool)> = files
        .iter()
        .map(|intent| (intent.name.as_str(), versions::with_variants(intent)))
        .collect();
    let stored = if compare_stored {
        state.catalog.versions_of_many(&names)
    } else {
        Ok(Default::default())
    };
    let plans = files
        .iter()
        .map(|intent| {
            let versions = match &stored {
                Ok(found) => Ok(found.get(&intent.name).map_or(&[][..], Vec::as_slice)),
                Err(err) => Err(Refusal::storage(err)),
            };
            plan_upload(state, intent, versions, &mut context)
        })
        .collect();
    if let Err(err) = state.catalog.set_modified(&context.retimes) {
        tracing::warn!(error = %err, "cannot record new modification times");
    }
    let now_promised = match (free, context.free_bytes) {
        (Some(free), Some(left)) => free.saturating_sub(left),
        _ => promised,
    };
    (plans, now_promised)
}

/// The checks every announced or begun file passes: a valid name and an acceptable size.
pub(crate) fn check_intent(
    state: &ServerState,
    name: &str,
    size: u64,
    folders: Option<&mut KnownFolders>,
) -> Result<ValidName, Refusal> {
    let max = state.limits.max_file_size;
    if size > max {
        let message = format!("{size} bytes exceeds the server's limit of {max} bytes");
        return Err(Refusal::new(ErrorCode::TooLarge, message));
    }
    let refused = |err: &dyn std::fmt::Display| {
        Refusal::new(
            ErrorCode::InvalidName,
            format!("name {name:?} refused: {err}"),
        )
    };
    let valid = ValidName::parse(name).map_err(|err| refused(&err))?;
    if let Some(known) = folders {
        state
            .store
            .check_placeable_in(&valid, known)
            .map_err(|err| refused(&err))?;
    }
    Ok(valid)
}

/// Refuses an upload of `needed` more bytes when the storage directory lacks the room.
pub(crate) fn check_space(state: &ServerState, needed: u64) -> Result<(), Refusal> {
    match state.store.available_space() {
        Ok(available) if available < needed => Err(Refusal::new(
            ErrorCode::NoSpace,
            format!("{needed} bytes needed but only {available} bytes free on the server"),
        )),
        Ok(_) => Ok(()),
        Err(err) => Err(Refusal::storage(err)),
    }
}

/// What one `Prepare` page learns once and reuses for all its files.
struct PlanContext {
    /// Free space not yet promised to earlier files of the batch (None if unknown).
    free_bytes: Option<u64>,
    /// Keys with a partial upload.
    partials: HashSet<Hash>,
    /// Folders already checked.
    folders: KnownFolders,
    /// Stored files found equal by hash to a file with another modification time: the
    /// times to record, by stored name.
    retimes: Vec<(String, i64)>,
}

/// Decides how one announced file should be sent, offering to resume a verified prefix.
/// Blocking.
fn plan_upload(
    state: &ServerState,
    intent: &FileIntent,
    stored: Result<&[crate::catalog::StoredVersion], Refusal>,
    context: &mut PlanContext,
) -> (FilePlan, Option<ResumeOffer>) {
    let refused = |Refusal { code, message }: Refusal| (FilePlan::refused(code, message), None);
    if let Err(refusal) = check_intent(state, &intent.name, intent.size, Some(&mut context.folders))
    {
        return refused(refusal);
    }
    let sameness = stored.map(|stored| versions::judge(intent, stored));
    match sameness {
        Ok(Sameness::Unchanged {
            stored_name,
            retime,
        }) => {
            if let Some(modified_ns) = retime {
                context.retimes.push((stored_name.clone(), modified_ns));
            }
            return (FilePlan::Unchanged { stored_name }, None);
        }
        Ok(Sameness::Compare) => return (FilePlan::Compare, None),
        Ok(Sameness::Taken) => {
            let message = format!("'{}' is already stored (skip existing)", intent.name);
            return refused(Refusal::new(ErrorCode::NameTaken, message));
        }
        Ok(Sameness::New) => {}
        Err(refusal) => return refused(refusal),
    }
    let store = &state.store;
    // Taken out once looked at: a key listed again in the page is not read and hashed
    // again (only its first copy could resume anyway).
    let held = if context.partials.remove(&intent.key) {
        store.partial_len(&intent.key)
    } else {
        Ok(None)
    };
    let resume = match held {
        Ok(Some(held)) if held > 0 && held <= intent.size => {
            match store.hash_partial_prefix(&intent.key, held) {
                Ok(hasher) => Some((held, hasher)),
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable partial upload; starting over");
                    None
                }
            }
        }
        Ok(_) => None,
        Err(err) => return refused(Refusal::storage(err)),
    };
    let offset = resume.as_ref().map_or(0, |(held, _)| *held);
    // The batch's files are counted against the free space together.
    let needed = intent.size - offset;
    match &mut context.free_bytes {
        Some(free) if *free < needed => {
            let message = format!("{needed} bytes needed but only {free} bytes free on the server");
            return refused(Refusal::new(ErrorCode::NoSpace, message));
        }
        Some(free) => *free -= needed,
        None => {
            if let Err(refusal) = check_space(state, needed) {
                return refused(refusal);
            }
        }
    }
    match resume {
        Some((offset, hasher)) => (
            // The hash of the held bytes stays here: the client must show it holds them.
            FilePlan::Resume { offset },
            // Boxed: a hash state is about 2 KiB, and a plan is kept per announced file; inline,
            // every plan would pay for a resume that few of them carry.
            Some((intent.key, offset, Box::new(hasher))),
        ),
        None => (FilePlan::Fresh, None),
    }
}
