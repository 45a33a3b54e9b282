//! Request and response messages: one struct per variant, append-only enums.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Everything a client may send. Variant order is the wire encoding: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens the session; must be the first message.
    Hello(Hello),
    /// Starts an upload; chunks follow.
    BeginFile(BeginFile),
    /// A piece of the open upload's content.
    Chunk(Chunk),
    /// Finishes the open upload with the sender's hash of the whole content.
    EndFile(EndFile),
    /// Abandons the open upload (for instance, the local file changed while being read).
    CancelFile(CancelFile),
    /// Asks for the catalog.
    List(List),
    /// Announces upcoming uploads; answered by [`Response::Prepared`]. Protocol 2.
    Prepare(Prepare),
    /// Asks for a stored file's content. Protocol 3.
    Get(Get),
    /// Deletes a stored file. Protocol 3.
    Delete(Delete),
    /// Asks for the server's version, limits and usage. Protocol 3.
    Info(InfoRequest),
    /// Creates a folder (so empty folders can be sent). Protocol 3.
    MakeDir(MakeDir),
    /// A piece of the open upload's content, zstd-compressed; only once both sides announced
    /// [`crate::CAPABILITY_ZSTD`]. Protocol 4.
    CompressedChunk(CompressedChunk),
    /// Says who the client is; must follow `Welcome`. Protocol 7.
    Authenticate(Authenticate),
    /// Asks who is online. Protocol 10.
    Users(crate::relay::UsersRequest),
    /// Makes the connection a listening one (offers and presence pushed). Protocol 10.
    Listen(crate::relay::Listen),
    /// Offers files to online users. Protocol 10.
    Offer(crate::relay::Offer),
    /// A listener's answer to an offer. Protocol 10.
    Answer(crate::relay::Answer),
    /// The sender starts a file of its offer. Protocol 10.
    RelayBegin(crate::relay::RelayBegin),
    /// Bytes of the file begun. Protocol 10.
    RelayData(crate::relay::RelayData),
    /// The file begun is complete, with its hash. Protocol 10.
    RelayEnd(crate::relay::RelayFileEnd),
    /// A listener's verdict on a relayed file. Protocol 10.
    Received(crate::relay::Received),
    /// Stops an offer, from either side. Protocol 10.
    CancelOffer(crate::relay::CancelOffer),
    /// The sender is done with its offer. Protocol 10.
    OfferEnd(crate::relay::OfferEnd),
    /// Leaves files in the server-side inboxes of users, for their next `Listen`; answered
    /// and streamed like an [`Request::Offer`]. Protocol 11.
    Leave(crate::relay::Offer),
    /// Asks what waits in the asker's inbox. Protocol 11.
    Inbox(crate::relay::InboxRequest),
}

/// Everything a server may send. Variant order is the wire encoding: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Accepts the session.
    Welcome(Welcome),
    /// A file was stored and verified.
    Ack(Ack),
    /// A file or the whole connection failed. Frozen: index 2 forever.
    Error(ErrorResponse),
    /// One page of the catalog.
    Listing(Listing),
    /// The plan for each file of a [`Request::Prepare`]. Protocol 2.
    Prepared(Prepared),
    /// A download begins; `size - offset` bytes follow as [`Response::Data`]. Protocol 3.
    Sending(Sending),
    /// A piece of a download. Protocol 3.
    Data(Chunk),
    /// A file was deleted. Protocol 3.
    Deleted(Deleted),
    /// The answer to [`Request::Info`]. Protocol 3.
    ServerInfo(ServerInfo),
    /// A folder exists now. Protocol 3.
    DirMade(DirMade),
    /// A `Get`, `Delete` or `MakeDir` failed; the session goes on. Protocol 3.
    Failed(Failed),
    /// The client is who it said; requests may follow. Protocol 7.
    Authenticated(Authenticated),
    /// The users online. Protocol 10.
    Users(crate::relay::UserList),
    /// The connection listens now. Protocol 10.
    Listening(crate::relay::Listening),
    /// Someone came or went (to listeners). Protocol 10.
    Presence(crate::relay::Presence),
    /// An offer for this listener. Protocol 10.
    Offered(crate::relay::Offered),
    /// The recipients' answers, to the sender. Protocol 10.
    OfferAnswers(crate::relay::OfferAnswers),
    /// A relayed file starts (to a recipient). Protocol 10.
    RelayFileStart(crate::relay::RelayFileStart),
    /// Bytes of a relayed file (to a recipient). Protocol 10.
    RelayData(crate::relay::RelayData),
    /// A relayed file is complete (to a recipient). Protocol 10.
    RelayFileEnd(crate::relay::RelayFileEnd),
    /// A recipient's verdict on a file (to the sender). Protocol 10.
    Delivered(crate::relay::Delivered),
    /// An offer stopped for someone. Protocol 10.
    OfferCancelled(crate::relay::OfferCancelled),
    /// The offer is over (to the sender). Protocol 10.
    OfferClosed(crate::relay::OfferClosed),
    /// What waits in the asker's inbox. Protocol 11.
    Inbox(crate::relay::InboxList),
}

/// The client's credentials, or none for anonymous access (refused unless the server
/// allows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticate {
    /// A user name and its token; `None` asks for anonymous access.
    pub credentials: Option<Credentials>,
}

/// A user name and the secret token the server issued for it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user's name.
    pub user: String,
    /// The user's token (never logged; only its hash is stored on the server).
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("token", &"<hidden>")
            .finish()
    }
}

/// What a user may do. Frozen order (it is the wire encoding): append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything, in every namespace.
    Admin,
    /// Upload, overwrite, list, get and delete in its own namespace.
    Write,
    /// Only send new files into its own namespace (a drop box).
    Upload,
    /// Only list and get in its own namespace.
    Read,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Write, Role::Upload, Role::Read];

    /// The role's name, as typed on command lines and shown in lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Write => "write",
            Role::Upload => "upload",
            Role::Read => "read",
        }
    }

    /// The role named `text`, if any.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's answer to valid credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticated {
    /// The user the session acts as (`anonymous` for anonymous access).
    pub user: String,
    /// What the user may do.
    pub role: Role,
}

/// First client message: who is speaking and which protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal the server's [`crate::PROTOCOL_VERSION`]. Frozen: first field forever.
    pub protocol_version: u32,
    /// Free-form client name and version, for the server's logs.
    pub software: String,
    /// Optional features the client supports (none are defined in version 1).
    pub capabilities: Vec<String>,
}

/// The server's answer to a compatible [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version (equal to the client's).
    pub protocol_version: u32,
    /// Free-form server name and version.
    pub software: String,
    /// Optional features the server supports and will use with this client.
    pub capabilities: Vec<String>,
    /// Largest file, in bytes, the server accepts.
    pub max_file_size: u64,
}

/// What to do when a file of the same name is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictPolicy {
    /// Store under a free variant of the name: `name (1).ext`, `name (2).ext`, ...
    KeepBoth,
    /// Atomically replace the stored file.
    Overwrite,
    /// Leave the stored file alone and store nothing: the file is answered
    /// [`crate::ErrorCode::NameTaken`]. Protocol 9.
    Skip,
}

/// Starts an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginFile {
    /// Chosen by the client, echoed in the answer; unique within the session.
    pub id: u32,
    /// Relative name, `/`-separated. The server validates it (see the README's name rules).
    pub name: String,
    /// Exact number of content bytes of the whole file.
    pub size: u64,
    /// Behaviour when `name` is taken.
    pub conflict: ConflictPolicy,
    /// Identifies this version of this local file across connections; the server keeps
    /// interrupted uploads under it. See [`FileIntent::key`].
    pub key: Hash,
    /// Where the chunks start. Non-zero only to take up a [`FilePlan::Resume`] offered in this
    /// session for the same key and offset; the chunks then carry `size - offset` bytes.
    pub offset: u64,
    /// With a non-zero `offset`: BLAKE3 of the client's own first `offset` bytes. The server
    /// resumes only if it matches the bytes it holds; otherwise it answers `hash-mismatch`,
    /// discards what it held, and a retry starts from zero.
    pub prefix_hash: Option<Hash>,
    /// The sender's modification time of the file, in nanoseconds since the Unix epoch: the
    /// stored file gets it, and the catalog records it for later quick checks. Protocol 9.
    pub modified_ns: Option<i64>,
}

/// Announces uploads before any data is sent, so the server can refuse files up front
/// (bad name, too large, no space) and offer to resume interrupted ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The files, in the order the plans will come back.
    pub files: Vec<FileIntent>,
    /// False: these files start a new round, and announcements of earlier `Prepare`s are
    /// forgotten. True: they add to the current round, so a client can announce up to
    /// [`crate::MAX_ANNOUNCED_FILES`] files before sending them in one stream.
    pub append: bool,
}

/// One announced upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIntent {
    /// Name the file will be sent under.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// A digest the client derives from the file's identity and version (name, device,
    /// inode, size, modification time). A changed file gets a new key, so its interrupted
    /// upload is never continued with different content.
    pub key: Hash,
    /// What the upload will do if the name is taken (the `BeginFile` must say the same).
    /// Protocol 9.
    pub conflict: ConflictPolicy,
    /// The sender's modification time, nanoseconds since the Unix epoch. Protocol 9.
    pub modified_ns: Option<i64>,
    /// Ignored by the server, which answers every equal size with [`FilePlan::Compare`]
    /// (only the hash decides); `ftc send --checksum` sets it false. Protocol 9.
    pub quick_check: bool,
    /// The BLAKE3 of the whole local file, sent only after a [`FilePlan::Compare`]: the
    /// server answers `Unchanged` if a stored version has this hash. Protocol 9.
    pub content_hash: Option<Hash>,
}

impl FileIntent {
    /// A plain announcement: keep both on a conflict, no modification time (so no quick
    /// check), no content hash.
    pub fn new(name: impl Into<String>, size: u64, key: Hash) -> Self {
        Self {
            name: name.into(),
            size,
            key,
            conflict: ConflictPolicy::KeepBoth,
            modified_ns: None,
            quick_check: true,
            content_hash: None,
        }
    }
}

/// The server's plan for each announced file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// One plan per [`FileIntent`].
    pub plans: Vec<FilePlan>,
}

/// What the server proposes for one announced file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilePlan {
    /// Send the whole file.
    Fresh,
    /// The server holds the first `offset` bytes of an interrupted upload with this key.
    /// The client resumes by proving it holds the same bytes: its `BeginFile` carries the
    /// BLAKE3 of its own first `offset` bytes, which the server compares with what it holds.
    /// The server never sends a hash of bytes the asker has not shown it holds.
    Resume {
        /// Bytes the server holds.
        offset: u64,
    },
    /// The file would be refused; don't send it.
    Refused {
        /// Why, machine-readable.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// A stored version already holds this content: don't send it. Protocol 9.
    Unchanged {
        /// The stored name holding it (the announced name, or a keep-both variant of it).
        stored_name: String,
    },
    /// A stored version has the same size, but its sameness is not known from the quick
    /// check: hash the local file and announce it again (`append: true`) with its
    /// `content_hash`. The server never reveals the stored hash itself. Protocol 9.
    Compare,
}

/// A piece of the open upload's content, at most [`crate::CHUNK_SIZE`] bytes by convention
/// and always within [`crate::MAX_FRAME_LEN`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The bytes, in order.
    #[serde(with = "crate::codec::frame_bytes")]
    pub data: Bytes,
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("len", &self.data.len())
            .finish()
    }
}

/// A zstd frame holding `raw_len` bytes of content (at most [`crate::CHUNK_SIZE`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedChunk {
    /// Bytes after decompression; the receiver refuses to produce more.
    pub raw_len: u32,
    /// The zstd frame.
    pub data: Bytes,
}

impl fmt::Debug for CompressedChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressedChunk")
            .field("raw_len", &self.raw_len)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Ends the open upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndFile {
    /// BLAKE3 of the whole content as the client read it.
    pub hash: Hash,
}

/// Abandons the open upload; the server discards it and answers with
/// [`ErrorCode::Cancelled`] (unless it already answered that file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelFile {
    /// Human-readable reason, for the server's log.
    pub reason: String,
}

/// Asks for the catalog, optionally only names matching a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// `*` matches any run of characters (including `/`), `?` one character, `[abc]` a set.
    pub pattern: Option<String>,
}

/// Asks for a stored file, from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get {
    /// The stored name.
    pub name: String,
    /// Bytes the client already holds from an interrupted download.
    pub offset: u64,
    /// BLAKE3 of those bytes. The server resumes only if its file's prefix has the same
    /// hash; otherwise it sends from zero.
    pub prefix_hash: Option<Hash>,
}

/// The header of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    /// The stored name.
    pub name: String,
    /// Size of the whole file, as the catalog records it.
    pub size: u64,
    /// BLAKE3 of the whole file, as the catalog records it; the client verifies against it.
    pub hash: Hash,
    /// Where the data starts (the requested offset, or 0 if the prefix did not match).
    pub offset: u64,
    /// The sender's modification time recorded with the file (nanoseconds since the Unix
    /// epoch), restored on the saved copy. Protocol 9.
    pub modified_ns: Option<i64>,
}

/// Deletes a stored file and its catalog record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    /// The stored name.
    pub name: String,
}

/// Confirms a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The stored name.
    pub name: String,
    /// Size of the deleted file.
    pub size: u64,
}

/// Asks for [`ServerInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoRequest {}

/// The server's identity, limits and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Server software and version.
    pub software: String,
    /// Protocol version.
    pub protocol_version: u32,
    /// Optional features.
    pub capabilities: Vec<String>,
    /// Files in the catalog.
    pub files: u64,
    /// Sum of their sizes.
    pub bytes: u64,
    /// Free bytes in the storage directory.
    pub free_bytes: u64,
    /// Largest file accepted.
    pub max_file_size: u64,
    /// Clients served at once.
    pub max_connections: u32,
    /// Interrupted uploads kept for resume (the user's own; everyone's for an admin).
    pub partial_files: u64,
    /// Bytes they hold on the server's disk.
    pub partial_bytes: u64,
}

/// Creates a folder and any missing parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeDir {
    /// Relative folder name, same rules as file names.
    pub name: String,
}

/// Confirms a folder exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirMade {
    /// The folder name.
    pub name: String,
    /// False if it existed already.
    pub created: bool,
}

/// A request other than an upload failed; the connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Machine-readable cause.
    pub code: ErrorCode,
    /// Explanation.
    pub message: String,
}

/// A file is stored, verified and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The `id` of the `BeginFile` this answers.
    pub id: u32,
    /// The name the file is stored under (differs from the sent name after a conflict).
    pub stored_name: String,
    /// Bytes stored.
    pub size: u64,
    /// BLAKE3 the server computed over the stored bytes.
    pub hash: Hash,
}

/// A failure, of one file (`id` is set) or of the whole connection (`id` is `None`).
/// Frozen layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The `BeginFile` this answers, or `None` for a connection-level error.
    pub id: Option<u32>,
    /// Machine-readable cause.
    pub code: ErrorCode,
    /// Human-readable explanation, at most [`crate::MAX_ERROR_MESSAGE_LEN`] bytes.
    pub message: String,
}

impl ErrorResponse {
    /// Builds an error, truncating the message to the protocol's limit on a char boundary.
    pub fn new(id: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Self {
        let message = truncated(message.into(), crate::MAX_ERROR_MESSAGE_LEN);
        Self { id, code, message }
    }
}

impl FilePlan {
    /// A refusal, its message truncated to [`crate::MAX_PLAN_MESSAGE_LEN`] on a char
    /// boundary.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = truncated(message.into(), crate::MAX_PLAN_MESSAGE_LEN);
        FilePlan::Refused { code, message }
    }
}

/// `text` cut to at most `max` bytes, on a char boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// One page of the catalog, sorted by stored name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Entries of this page.
    pub entries: Vec<CatalogEntry>,
    /// True on the final page.
    pub last: bool,
}

/// One stored file as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The name the file is stored under, relative to the server's directory.
    pub name: String,
    /// The name the client sent (differs from `name` after a conflict).
    pub sent_name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub hash: Hash,
    /// When the file was stored, UTC, RFC 3339.
    pub added_at: String,
    /// The user who stored it. Protocol 7.
    pub owner: String,
    /// The sender's modification time, nanoseconds since the Unix epoch (none for files
    /// stored before protocol 9). Protocol 9.
    pub modified_ns: Option<i64>,
}

/// A BLAKE3 digest. Printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Lowercase hex form, as stored in the catalog and shown to users.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0)
            .to_hex()
            .as_str()
            .to_owned()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Hash(*h.as_bytes()))
    }
}

impl From<blake3::Hash> for Hash {
    fn from(hash: blake3::Hash) -> Self {
        Hash(*hash.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(crate::MAX_ERROR_MESSAGE_LEN);
        let err = ErrorResponse::new(None, ErrorCode::Internal, long);
        assert!(err.message.len() <= crate::MAX_ERROR_MESSAGE_LEN);
        assert!(err.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn hash_hex_round_trips() {
        let hash = Hash::from(blake3::hash(b"ft"));
        assert_eq!(Hash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
