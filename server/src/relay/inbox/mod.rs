//! Inboxes: files left for users who were not online (`Leave`), kept durably on the server
//! until their recipient listens again, declines them, or they expire.
//!
//! A `Leave` streams like a live offer; each recipient's copy is taken by a [`writer`] that
//! stands where a listening connection would, so the sender's session fans out and paces
//! the same way. When the recipient next listens, [`delivery`] offers what waits, reading
//! it from the store's inbox area. Bytes live in the store (`store::inbox`), records in the
//! catalog (`catalog::inbox`); this module holds the rules: quota, time to live, and what a
//! verdict does to a waiting file.

pub(crate) mod delivery;
pub(crate) mod writer;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ft_protocol::{relay::InboxFile, ErrorCode, MAX_INBOX_FILES};

use crate::{catalog::inbox::InboxRecord, ServerState};

/// The inboxes' rules and the space promised to `Leave`s still streaming.
#[derive(Debug)]
pub(crate) struct Inboxes {
    /// How long a file waits before it is removed.
    pub(crate) ttl: Duration,
    /// Bytes one user's inbox may hold.
    pub(crate) quota: u64,
    /// Per recipient: bytes of `Leave`s in progress, counted against its quota until their
    /// files are recorded (or abandoned).
    reserved: Mutex<HashMap<String, u64>>,
    /// Rows being offered to a listener now, so that a second listening connection of the
    /// same user does not offer them again meanwhile.
    offering: Mutex<HashSet<i64>>,
    /// One permit per inbox being written: each writer holds a blocking thread while its
    /// sender streams, so there are at most [`INBOX_WRITERS`] server-wide (the blocking
    /// pool must keep threads for logins, flushes and reads).
    writers: Arc<tokio::sync::Semaphore>,
}

/// Inboxes written at once, server-wide.
pub(crate) const INBOX_WRITERS: usize = 16;

/// Bytes promised to one recipient's inbox while a `Leave` streams; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    state: Arc<ServerState>,
    recipient: String,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.state.inboxes.reserved();
        if let Some(held) = reserved.get_mut(&self.recipient) {
            *held = held.saturating_sub(self.bytes);
            if *held == 0 {
                reserved.remove(&self.recipient);
            }
        }
    }
}

/// Why files cannot be left for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Inboxes {
    /// Inboxes keeping files for `ttl`, at most `quota` bytes per user.
    pub(crate) fn new(ttl: Duration, quota: u64) -> Self {
        Self {
            ttl,
            quota,
            reserved: Mutex::default(),
            offering: Mutex::default(),
            writers: Arc::new(tokio::sync::Semaphore::new(INBOX_WRITERS)),
        }
    }

    /// A permit to write one inbox, if fewer than [`INBOX_WRITERS`] are being written.
    pub(crate) fn try_writer(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.writers).try_acquire_owned().ok()
    }

    /// The rows of `records` no delivery is offering, now marked as offered.
    pub(crate) fn claim(&self, records: Vec<InboxRecord>) -> Vec<InboxRecord> {
        let mut offering = self.offering.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .into_iter()
            .filter(|record| offering.insert(record.id))
            .collect()
    }

    /// Rows no longer being offered.
    pub(crate) fn release(&self, ids: &[i64]) {
        let mut offering = self.offering.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            offering.remove(id);
        }
    }

    fn reserved(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // Each change is one map update that leaves the map whole.
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Promises `bytes` of `recipient`'s inbox to a `Leave`, if its quota (what waits, what
    /// other `Leave`s were promised, and the copies cut short that are kept for a resume)
    /// and the disk have room. `resumed`: bytes of those kept copies this `Leave` continues,
    /// counted once, as part of `bytes`. Blocking.
    pub(crate) fn reserve(
        state: &Arc<ServerState>,
        recipient: &str,
        files: u64,
        bytes: u64,
        resumed: u64,
    ) -> Result<Reservation, Refusal> {
        let internal = |err: &dyn std::fmt::Display| Refusal {
            code: ErrorCode::Storage,
            message: format!("the server could not read the inbox: {err}"),
        };
        let (waiting_files, waiting) = state
            .catalog
            .inbox_used(recipient, 0)
            .map_err(|err| internal(&err))?;
        // Kept copies of cut leaves count too, files and bytes.
        let (kept_files, kept) = state.store.inbox_partials_of(recipient);
        let waiting_files = waiting_files.saturating_add(kept_files);
        if waiting_files.saturating_add(files) > MAX_INBOX_FILES {
            return Err(Refusal {
                code: ErrorCode::QuotaExceeded,
                message: format!(
                    "{recipient}'s inbox is full: {waiting_files} files wait \
                     (at most {MAX_INBOX_FILES})"
                ),
            });
        }
        let free = state
            .store
            .available_space()
            .map_err(|err| internal(&err))?;
        let quota = state.inboxes.quota;
        let kept = kept.saturating_sub(resumed);
        let mut reserved = state.inboxes.reserved();
        let promised = reserved.get(recipient).copied().unwrap_or(0);
        let used = waiting.saturating_add(promised).saturating_add(kept);
        if used.saturating_add(bytes) > quota {
            return Err(Refusal {
                code: ErrorCode::QuotaExceeded,
                message: format!(
                    "{recipient}'s inbox is full: {bytes} bytes do not fit \
                     ({used} of {quota} bytes used)"
                ),
            });
        }
        let promised_to_all: u64 = reserved.values().sum();
        if promised_to_all.saturating_add(bytes) > free {
            return Err(Refusal {
                code: ErrorCode::NoSpace,
                message: format!("the server has {free} bytes free, not enough for {bytes}"),
            });
        }
        *reserved.entry(recipient.to_owned()).or_insert(0) += bytes;
        Ok(Reservation {
            state: Arc::clone(state),
            recipient: recipient.to_owned(),
            bytes,
        })
    }

    /// When files left at `left_ns` expire.
    pub(crate) fn expires_ns(&self, left_ns: i64) -> i64 {
        let ttl = i64::try_from(self.ttl.as_nanos()).unwrap_or(i64::MAX);
        left_ns.saturating_add(ttl)
    }

    /// When files left now or later have not expired yet: nanoseconds since the epoch.
    pub(crate) fn unexpired_since(&self) -> i64 {
        let ttl = i64::try_from(self.ttl.as_nanos()).unwrap_or(i64::MAX);
        now_ns().saturating_sub(ttl).saturating_add(1)
    }

    /// Whether a file left at `left_ns` has expired.
    pub(crate) fn expired(&self, left_ns: i64) -> bool {
        self.expires_ns(left_ns) <= now_ns()
    }

    /// A waiting file as its recipient is shown it.
    pub(crate) fn describe(&self, record: &InboxRecord) -> InboxFile {
        InboxFile {
            from: record.sender.clone(),
            name: record.name.clone(),
            size: record.size,
            left_at: rfc3339(record.left_ns),
            expires_at: rfc3339(self.expires_ns(record.left_ns)),
        }
    }
}

/// Removes a waiting file: its record first, then its bytes. Blocking.
pub(crate) fn discard(state: &ServerState, record: &InboxRecord) {
    match state.catalog.inbox_remove(record.id) {
        Ok(_) => state.store.inbox_remove(&record.blob),
        Err(err) => tracing::warn!("could not remove an inbox record: {err}"),
    }
}

/// Removes every file that waited longer than the time to live. Blocking.
pub(crate) fn remove_expired(state: &ServerState) -> usize {
    let held = |partial: &str| state.leases.is_held(&writer::Resumable::lease_key(partial));
    let abandoned = state.store.sweep_inbox_partials(state.inboxes.ttl, held);
    if abandoned > 0 {
        tracing::info!("removed {abandoned} copies of cut leaves not continued in time");
    }
    let ttl = i64::try_from(state.inboxes.ttl.as_nanos()).unwrap_or(i64::MAX);
    let before = now_ns().saturating_sub(ttl);
    match state.catalog.inbox_left_before(before) {
        Ok(records) => {
            for record in &records {
                tracing::info!(
                    to = %record.recipient,
                    from = %record.sender,
                    name = %record.name,
                    "inbox file expired"
                );
                discard(state, record);
            }
            records.len()
        }
        Err(err) => {
            tracing::warn!("could not read the inbox: {err}");
            0
        }
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
        })
}

/// `ns` (since the Unix epoch) as UTC RFC 3339, to the second.
fn rfc3339(ns: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_offered_by_one_delivery_at_a_time() {
        let inboxes = Inboxes::new(Duration::from_secs(60), 100);
        let row = |id| InboxRecord {
            id,
            recipient: "bob".into(),
            sender: "alice".into(),
            name: format!("f{id}"),
            size: 1,
            hash: ft_protocol::Hash([0; 32]),
            blob: String::new(),
            left_ns: 0,
            batch: 1,
        };
        let first = inboxes.claim(vec![row(1), row(2)]);
        assert_eq!(first.len(), 2);
        let second = inboxes.claim(vec![row(2), row(3)]);
        assert_eq!(second.iter().map(|r| r.id).collect::<Vec<_>>(), [3]);
        inboxes.release(&[1, 2]);
        assert_eq!(inboxes.claim(vec![row(2)]).len(), 1);
    }

    #[test]
    fn expiry_follows_the_time_to_live() {
        let inboxes = Inboxes::new(Duration::from_secs(60), 100);
        let now = now_ns();
        assert!(!inboxes.expired(now));
        assert!(inboxes.expired(now - 61_000_000_000));
        assert_eq!(inboxes.expires_ns(0), 60_000_000_000);
        assert_eq!(rfc3339(60_000_000_000), "1970-01-01T00:01:00Z");
    }
}
