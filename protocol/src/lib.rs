//! The ft wire protocol: the contract between `ftc` (client) and `fts` (server).
//!
//! This crate is the specification. It defines every message, how messages become bytes,
//! the limits both sides enforce and the error codes. It performs no I/O policy of its own:
//! the server decides what to do with a request, the client decides what to send.
//!
//! # Transport and framing
//!
//! One TCP connection carries one session. Each direction is a sequence of frames:
//!
//! ```text
//! +----------------------------+-------------------------------+
//! | length: u32, big-endian    | payload: `length` bytes       |
//! +----------------------------+-------------------------------+
//! ```
//!
//! A frame whose declared length exceeds [`MAX_FRAME_LEN`] is a protocol violation; it is
//! refused from the length prefix alone, before any buffer for it is allocated.
//! Each payload is exactly one [`Request`] (client to server) or one [`Response`]
//! (server to client), encoded with [postcard](https://docs.rs/postcard): enum variants are
//! varint indices, integers are varints, strings and byte buffers are a varint length
//! followed by the bytes. See [`codec`] for the only code that touches bytes.
//!
//! # Message grammar
//!
//! ```text
//! client:  Hello Authenticate ( Prepare | Upload | List | Get | Delete | Info | MakeDir )*
//! Upload:  BeginFile ( Chunk | CompressedChunk )* ( EndFile | CancelFile )
//!
//! server:  ( Welcome | Error ) ( Authenticated | Error )
//!          ( Prepared | Ack | Error | Listing+ | Sending Data* | Deleted | ServerInfo
//!          | DirMade | Failed )*
//! ```
//!
//! - The connection is TLS 1.3 from its first byte; the frames below travel inside it. The
//!   client checks the server's certificate against the fingerprint it has pinned.
//! - The client speaks first with [`Hello`]. The server answers [`Welcome`], or an
//!   [`ErrorResponse`] with [`ErrorCode::VersionMismatch`] and closes.
//! - The client then sends [`Authenticate`] with a user name and token (or none, for
//!   anonymous access). The server answers [`Authenticated`] with the user's [`Role`], or an
//!   `ErrorResponse` with [`ErrorCode::Unauthorized`] and closes (after a delay that grows
//!   with the failures from that address). Any other request first is a protocol violation.
//! - Every request is authorized by the role: one the role does not allow is answered with
//!   [`ErrorCode::Forbidden`] (as a file's `Error`, or as `Failed`) and the session goes on.
//!   Names are relative to the user's namespace; an admin's names start with the namespace.
//! - Uploads are **pipelined**: the client does not wait for anything between `BeginFile`,
//!   its chunks, `EndFile` and the next `BeginFile`. Only one file is open at a time, so a
//!   `Chunk` always belongs to the most recent `BeginFile`.
//! - A `BeginFile`'s `id` must differ from those of the files still awaiting their answer
//!   (answers carry it); reusing one is a protocol violation. Ids may be reused once answered.
//! - Every `BeginFile` is answered **exactly once**, in the order the files were begun: an
//!   [`Ack`] when the file is stored and verified, or an [`ErrorResponse`] carrying the file's
//!   `id`. The answer may arrive early (a refused name is answered right after `BeginFile`);
//!   the client then still finishes that upload with `EndFile` or `CancelFile`, and the server
//!   discards its chunks without answering again.
//! - An `Ack` is sent only after the file's bytes and the directory entry are on stable
//!   storage and the catalog records the file. Nothing unverified ever carries its final name.
//! - `List` is answered by one or more [`Listing`] pages; the last has `last: true`. The
//!   server bounds the work behind each page, so a page may hold fewer entries than others,
//!   even none, before more follow. A pattern longer than [`MAX_PATTERN_LEN`] or with a set
//!   of more than [`MAX_PATTERN_SET_LEN`] characters is answered with [`Failed`].
//! - `Prepare` is answered by one [`Prepared`] carrying a [`FilePlan`] per announced file:
//!   send it whole, resume it from an offset, or don't send it (refused up front: bad name,
//!   too large, not enough space). It is optional, but it is the only way to resume, and
//!   the client uses it so a refused file costs no data transfer. At most
//!   [`MAX_PREPARE_FILES`] files per `Prepare`. Announcements stay valid until their
//!   `BeginFile`: a `Prepare` with `append: true` adds to those of the current round, up to
//!   [`MAX_ANNOUNCED_FILES`] in all (more is a protocol violation), so that one uninterrupted
//!   stream carries them all; `append: false` starts a new round. The server may answer
//!   `Fresh` where it could resume (it keeps at most [`MAX_PREPARE_FILES`] resume offers per
//!   round).
//! - **Unchanged files are not sent again.** Each intent carries the sender's modification
//!   time and conflict policy. When a stored version of the announced name (the name itself,
//!   or, with keep-both, a `name (N)` variant stored from that name) has the same size, the
//!   plan is [`FilePlan::Compare`] (equal size and time are no proof: clones and automation
//!   share both): the client hashes its file and announces it again with `content_hash`
//!   (`append: true`); the answer is [`FilePlan::Unchanged`] if a stored version has that
//!   hash (its recorded time is updated to the sender's), and a normal plan otherwise.
//!   `quick_check` is ignored. Neither
//!   plan counts as an announcement. The server never sends a stored file's hash in a plan;
//!   the client learns only whether its own hash matches.
//!
//! # Relay (protocol 10)
//!
//! ```text
//! listener:  Listen -> Listening ( Presence | Offered | RelayFileStart | RelayData
//!                                  | RelayFileEnd | OfferCancelled )*
//!            client, any time:  Answer | Received | CancelOffer
//! sender:    Offer -> ( OfferAnswers ( RelayBegin RelayData* RelayEnd )* OfferEnd
//!                       ( Delivered | OfferCancelled )* OfferClosed | Failed )
//!            client, any time during the offer: CancelOffer
//! users:     Users -> Users
//! ```
//!
//! - A listening connection does nothing else; one connection may carry several offers,
//!   one after the other. Only users (not anonymous clients) relay or see who is online; a
//!   role that may upload may offer, every role may listen. `Listen`, `Offer` and `Leave`
//!   while an upload is open, and an empty `RelayData`, are protocol violations.
//! - A user holds at most four listening connections (a fifth gets `busy`). A listener with
//!   no offer shown may be closed with `busy` when the server is full, and is closed with
//!   `unauthorized` once its user is removed or its token replaced (checked every 2 s).
//! - The server pushes each `Offer` to every listening connection of each recipient as
//!   `Offered` with a number of its own; the first `Answer` counts. After `OfferAnswers`
//!   the sender streams each file once; the server fans it out, each recipient from its own
//!   start (its verified prefix: the sender compared the recipient's `prefix_hash` with its
//!   own). Nothing touches the server's disk. A recipient whose queue stays full past the
//!   idle timeout is dropped (`OfferCancelled` to the sender) and the others go on.
//! - The recipient checks the sender's hash in `RelayFileEnd` before the file gets its name,
//!   then says `Received`; the sender learns it as `Delivered`, and `OfferClosed` once every
//!   recipient gave its verdicts or left.
//!
//! # Inboxes (protocol 11)
//!
//! ```text
//! sender:    Leave -> ( OfferAnswers ( RelayBegin RelayData* RelayEnd )* OfferEnd
//!                       Delivered* OfferClosed | Failed )
//! recipient: Inbox -> Inbox
//! ```
//!
//! - `Leave` carries an [`relay::Offer`] (its `timeout_secs` is not used) for users who need
//!   not be online. Each recipient's outcome is `Accepted` (every file) or `Refused` (no
//!   such user, not enough room left in its inbox, `quota-exceeded`, or `busy`: the server
//!   writes at most 16 inboxes at once). A file is accepted
//!   from offset 0, or from the length of the copy the server kept when an earlier `Leave` of
//!   the same file (same sender, recipient, name and size) was cut, with that copy's
//!   `prefix_hash`: the sender starts there only if the hash matches its own first bytes, as
//!   with a listener. The files then stream exactly as in an offer; the server writes each
//!   recipient's copy into its inbox, checks the hash in `RelayEnd`, makes file and record
//!   durable, and only then answers `Delivered { ok: true }`.
//! - When a recipient next sends `Listen`, the server offers what waits for it, one offer per
//!   sender's `Leave`, as `Offered` from that sender; the listener answers and receives it like
//!   any offer (resume included). A file delivered and verified, or declined, leaves the
//!   inbox; an unanswered offer stays. Files from a user the listener blocks are discarded.
//!   Whatever is still waiting after the server's inbox time to live is removed.
//!
//! - `Get` is answered by `Sending { size, hash, offset }` followed by exactly
//!   `size - offset` bytes in [`Response::Data`] messages — or by [`Failed`] (unknown name),
//!   or by `Failed` in place of the remaining data if the stored file cannot be read. The
//!   client verifies the whole file against `hash`, the catalog's record, so a file that
//!   rotted on the server's disk is detected. `Delete`, `MakeDir` and `Info` get one answer
//!   each (`Deleted`/`Failed`, `DirMade`/`Failed`, `ServerInfo`).
//!
//! # Resume
//!
//! Each upload carries a `key` the client derives from the local file's identity and
//! version. When a connection ends mid-file (or the server is killed), the server keeps the
//! bytes it received under that key in a private area. A later `Prepare` for the same key
//! is answered `Resume { offset }`: the client hashes its own first `offset` bytes and sends
//! `BeginFile { offset, prefix_hash }` and the rest. The server resumes only if `prefix_hash`
//! matches the bytes it holds (otherwise it answers `hash-mismatch` and discards them, and
//! the client's retry starts from zero). So the kept prefix is verified against the client's
//! file, never trusted blindly, and the server never reveals a hash of bytes to a client
//! that has not shown it holds them: a key is an identifier, not a password. The hash in
//! `EndFile` still covers the whole file and is checked against everything the server has on
//! disk. A changed local file has a different key and starts from zero. Keys are kept per
//! user: another user's client naming the same key reaches nothing.
//! - An [`ErrorResponse`] without an `id` concerns the whole connection (protocol violation,
//!   version mismatch, server shutting down); the server closes the connection after it.
//!   A client may see the connection close without any answer (the server was killed);
//!   files not yet acknowledged are then not stored under their names.
//!
//! # Versioning
//!
//! [`PROTOCOL_VERSION`] changes whenever any message's encoding changes. Two parts of the
//! encoding are frozen forever so that peers of different versions can always tell each
//! other so: the start of [`Request::Hello`] (variant index 0 followed by the version varint)
//! and [`Response::Error`] with its [`ErrorCode`]. New messages and new error codes are
//! appended at the end of their enums; a retired variant keeps its slot.
//!
//! # Goals and non-goals
//!
//! Goals: integrity end to end (the BLAKE3 hash of the whole file travels in `EndFile` and
//! is checked before the file gets its name), throughput (no round trip per chunk or per
//! file), bounded memory on both sides, no re-sending of what already arrived, optional
//! per-chunk zstd compression (negotiated; incompressible chunks travel raw), confidentiality
//! and server identity (TLS 1.3 with a pinned certificate fingerprint), and per-user
//! authorization (tokens, roles, namespaces). Non-goals: hiding from the server's own
//! administrator what is stored on it.

pub mod codec;
mod error;
mod fingerprint;
mod message;
pub mod relay;

pub use error::{ErrorCode, ProtocolError};
pub use fingerprint::{Fingerprint, FingerprintError};
pub use message::{
    Ack, Authenticate, Authenticated, BeginFile, CancelFile, CatalogEntry, Chunk, CompressedChunk,
    ConflictPolicy, Credentials, Delete, Deleted, DirMade, EndFile, ErrorResponse, Failed,
    FileIntent, FilePlan, Get, Hash, Hello, InfoRequest, List, Listing, MakeDir, Prepare, Prepared,
    Request, Response, Role, Sending, ServerInfo, Welcome,
};

/// The protocol version this crate speaks; both peers must speak the same one.
/// Version 2 added `Prepare`/`Prepared`, resume (`key`, `offset` in `BeginFile`) and `NoSpace`.
/// Version 3 added `Get`, `Delete`, `Info`, `MakeDir`, list patterns and `NotFound`.
/// Version 4 added `CompressedChunk` and the `zstd` capability.
/// Version 5 raised [`MAX_PREPARE_FILES`] from 1024 to 8192.
/// Version 6 added `append` to `Prepare`: announcements of one round add up.
/// Version 7 added `Authenticate`/`Authenticated`, `Unauthorized`, `Forbidden`, and the owner
/// of each catalog entry; the connection is TLS.
/// Version 8 added the interrupted uploads kept for resume to `ServerInfo`.
/// Version 9 added re-runs that skip unchanged files (`FilePlan::Unchanged`/`Compare`, the
/// intent's conflict policy, modification time and content hash), `ConflictPolicy::Skip`
/// with `NameTaken`, and the modification time in `BeginFile`, `Sending` and catalog entries.
/// Version 10 added the relay: `Users`, `Listen`, offers to online users and their streams.
/// Version 11 added inboxes: `Leave`, `Inbox`, `RecipientOutcome::Refused` and
/// `QuotaExceeded`.
pub const PROTOCOL_VERSION: u32 = 11;

/// Most recipients of one offer.
pub const MAX_RELAY_RECIPIENTS: usize = 16;

/// Most files in one offer (an offer travels in one frame, so its names must fit too).
pub const MAX_OFFER_FILES: usize = 4096;

/// Longest a sender may ask recipients to take to answer, in seconds.
pub const MAX_OFFER_TIMEOUT_SECS: u32 = 600;

/// Most files one user's inbox holds; a `Leave` past it is refused for that recipient.
pub const MAX_INBOX_FILES: u64 = 10_000;

/// Most files one [`relay::InboxList`] names (the oldest; `total_files` counts them all), so
/// that the answer fits a frame whatever the names' lengths.
pub const MAX_INBOX_LISTED: usize = 200;

/// Capability: the peer accepts [`Request::CompressedChunk`] (zstd). A client lists it in
/// `Hello`; the server echoes it in `Welcome` if it agrees.
pub const CAPABILITY_ZSTD: &str = "zstd";

/// Most files one [`Prepare`] may announce; the client splits larger batches (and keeps each
/// `Prepare` within [`MAX_FRAME_LEN`]).
pub const MAX_PREPARE_FILES: usize = 8192;

/// Most announced files a round of `Prepare`s may hold unused (see `Prepare::append`). The
/// client streams a round without pausing; between rounds it waits for every answer, so
/// rounds are large, while the server's memory per session stays bounded (a few MiB).
pub const MAX_ANNOUNCED_FILES: usize = 65536;

/// Largest frame payload, in bytes, either side accepts. Checked from the length prefix.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Payload bytes the client puts in one [`Chunk`]. Large enough that per-frame overhead is
/// negligible, small enough that a handful in flight keep memory low.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Longest file name, in bytes of UTF-8, including every `/`-separated component.
pub const MAX_NAME_LEN: usize = 4096;

/// Most folders a stored name may have above its file, counting a user's namespace: every
/// folder costs the server a lookup and a flush, so depth is bounded like length.
pub const MAX_NAME_DEPTH: usize = 64;

/// Longest single path component, in bytes: what common Linux filesystems allow.
pub const MAX_NAME_COMPONENT_LEN: usize = 255;

/// Longest error message, in bytes, a peer sends; longer ones are truncated by the sender.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// Longest message of a refused file in a [`Prepared`] answer, in bytes: short enough that
/// [`MAX_PREPARE_FILES`] refusals fit in one frame (a page of refusals, each naming its file,
/// would otherwise outgrow [`MAX_FRAME_LEN`] and could not be sent at all).
pub const MAX_PLAN_MESSAGE_LEN: usize = 96;

/// Longest `List` pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 256;

/// Most characters in one `[...]` set of a `List` pattern.
pub const MAX_PATTERN_SET_LEN: usize = 64;

/// The default TCP port of `fts`.
pub const DEFAULT_PORT: u16 = 7878;
