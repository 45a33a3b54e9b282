//! Relay messages: users sending files to other online users through the server
//! (protocol 10). The grammar is in the crate docs; the structs are here.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{error::ErrorCode, message::Hash};

/// Asks who is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersRequest {}

/// A user with at least one connection open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    /// The user's name.
    pub name: String,
    /// Since when (UTC, RFC 3339): the oldest of its connections open now.
    pub since: String,
    /// Whether one of them listens for offers (`ftc listen`).
    pub listening: bool,
}

/// The users online now, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Everyone online, the asker included.
    pub users: Vec<OnlineUser>,
}

/// Turns the connection into a listening one: offers and presence are pushed to it, and it
/// answers offers. Nothing else may be asked on it afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    /// Users whose offers are declined by the server without asking (at most
    /// [`crate::MAX_RELAY_RECIPIENTS`] times 4 names).
    pub blocked: Vec<String>,
}

/// The server's answer to [`Listen`]: who is online now. [`Presence`] follows each change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listening {
    /// The users online now.
    pub users: Vec<OnlineUser>,
}

/// A user came online or went offline, or started or stopped listening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The user.
    pub user: OnlineUser,
    /// False: the user's last connection closed.
    pub online: bool,
}

/// One file of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedFile {
    /// Relative name, `/`-separated, checked like an upload's (and again by the receiver).
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
}

/// Offers files to online users. The server answers [`OfferAnswers`] once every recipient
/// answered or the time ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The recipients' user names (at most [`crate::MAX_RELAY_RECIPIENTS`], no repeats).
    pub to: Vec<String>,
    /// The files (at most [`crate::MAX_OFFER_FILES`]).
    pub files: Vec<OfferedFile>,
    /// How long recipients have to answer, in seconds (the server caps it).
    pub timeout_secs: u32,
}

/// An offer pushed to a listening recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    /// The server's number for this offer, used in every later message about it.
    pub offer: u64,
    /// Who offers.
    pub from: String,
    /// What is offered.
    pub files: Vec<OfferedFile>,
}

/// A recipient's answer for one offered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAnswer {
    /// Not wanted.
    Skip,
    /// Wanted. `offset`: bytes the recipient holds from an interrupted transfer of this file,
    /// `prefix_hash` their BLAKE3; the sender checks it against its own prefix and resumes
    /// only if it matches (otherwise it sends from zero).
    Accept {
        /// Bytes held.
        offset: u64,
        /// Their hash, with a non-zero offset.
        prefix_hash: Option<Hash>,
    },
}

/// A recipient's decision on an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Nothing is wanted.
    Decline,
    /// One answer per offered file, in order.
    Accept(Vec<FileAnswer>),
}

/// Answers an [`Offered`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The offer.
    pub offer: u64,
    /// The decision.
    pub decision: Decision,
}

/// What became of an offer for one recipient before any data moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientOutcome {
    /// The recipient wants these files (one answer per offered file).
    Accepted(Vec<FileAnswer>),
    /// The recipient said no (or blocks the sender).
    Declined,
    /// No answer in time.
    TimedOut,
    /// The user has no listening connection.
    NotOnline,
    /// Files cannot be left for this user (no such user, or its inbox is full): `code` and
    /// `message` say why. Only in answer to a `Leave`. Protocol 11.
    Refused {
        /// Machine-readable cause (`not-found`, `quota-exceeded`, ...).
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientAnswer {
    /// The recipient.
    pub user: String,
    /// What it said.
    pub outcome: RecipientOutcome,
}

/// Every recipient's answer to an [`Offer`], in the order of `Offer::to`. Files follow with
/// [`RelayBegin`], unless no one accepted anything (the sender then sends [`OfferEnd`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAnswers {
    /// The server's number for the offer.
    pub offer: u64,
    /// One per recipient.
    pub recipients: Vec<RecipientAnswer>,
}

/// The sender starts one file of its offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayBegin {
    /// The file's position in the offer.
    pub file: u32,
    /// Where the bytes that follow start in the file.
    pub start: u64,
    /// Per recipient (in the order of `Offer::to`), where its copy starts (its verified
    /// prefix, or 0), or `None` when it does not get this file. Never below `start`.
    pub starts: Vec<Option<u64>>,
}

/// Bytes of a relayed file, on their way to one recipient.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayData {
    /// The offer they belong to (a listener may receive several at once).
    pub offer: u64,
    /// The bytes, in order.
    #[serde(with = "crate::codec::frame_bytes")]
    pub data: Bytes,
}

impl std::fmt::Debug for RelayData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayData")
            .field("offer", &self.offer)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A relayed file starts, for its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileStart {
    /// The offer.
    pub offer: u64,
    /// The file's position in the offer.
    pub file: u32,
    /// Where its bytes start: the recipient keeps this many bytes of its partial file (the
    /// prefix the sender verified) and discards the rest.
    pub offset: u64,
}

/// A relayed file is complete: the sender's hash of the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileEnd {
    /// The offer.
    pub offer: u64,
    /// The file's position in the offer.
    pub file: u32,
    /// BLAKE3 of the whole file as the sender read it.
    pub hash: Hash,
}

/// The recipient's verdict on one relayed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The offer.
    pub offer: u64,
    /// The file's position in the offer.
    pub file: u32,
    /// True: saved under its name (or a keep-both variant), its BLAKE3 verified.
    pub ok: bool,
    /// Where it was saved, or why not.
    pub message: String,
}

/// A recipient's verdict, passed on to the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The offer.
    pub offer: u64,
    /// The recipient.
    pub user: String,
    /// The file's position in the offer.
    pub file: u32,
    /// Saved and verified.
    pub ok: bool,
    /// Where it was saved, or why not.
    pub message: String,
}

/// Stops an offer: the sender stops sending it, or a recipient stops receiving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOffer {
    /// The offer.
    pub offer: u64,
}

/// The sender is done with its offer (every file sent, or it gives up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferEnd {
    /// The offer.
    pub offer: u64,
}

/// An offer stopped for one side: told to recipients when the sender cancelled or left, and
/// to the sender when a recipient cancelled, left or stalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferCancelled {
    /// The offer.
    pub offer: u64,
    /// The user who stopped it, or who was dropped.
    pub user: String,
    /// Machine-readable cause (`cancelled`, `timeout`, ...).
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

/// The offer is over for the sender: every recipient gave its verdicts or was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferClosed {
    /// The offer.
    pub offer: u64,
}

/// Asks what waits in the asker's inbox (files other users left with `Leave`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRequest {}

/// One file waiting in an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxFile {
    /// Who left it.
    pub from: String,
    /// Its relative name, as offered.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was left (UTC, RFC 3339).
    pub left_at: String,
    /// When it will be removed unless delivered first (UTC, RFC 3339).
    pub expires_at: String,
}

/// The asker's inbox: what waits for its next `Listen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxList {
    /// The files, oldest first; at most [`crate::MAX_INBOX_LISTED`] of them.
    pub files: Vec<InboxFile>,
    /// How many files wait in all.
    pub total_files: u64,
    /// Bytes they hold.
    pub used: u64,
    /// Bytes the inbox may hold.
    pub quota: u64,
}
