//! The session state machine in process: a server from `ft_server::run` on a loopback port 0,
//! driven by a raw client that speaks typed messages over TLS (pinned to the server's
//! throwaway certificate) as the user [`TEST_USER`], checked on the answers it gets back and
//! on the bytes that land in that user's namespace of the storage directory. Every wait is
//! bounded by [`WAIT`].

// A failed unwrap is a failed test, reported with its line.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use ft_client::tls::TlsStream;
use ft_protocol::{
    codec::{self, MessageReader, MessageWriter},
    Ack, Authenticate, BeginFile, CancelFile, CatalogEntry, Chunk, CompressedChunk, ConflictPolicy,
    Credentials, Delete, Deleted, DirMade, EndFile, ErrorCode, ErrorResponse, Failed, FileIntent,
    FilePlan, Fingerprint, Get, Hash, Hello, InfoRequest, List, Listing, MakeDir, Prepare,
    Prepared, Request, Response, Role, Sending, ServerInfo, Welcome, CAPABILITY_ZSTD, CHUNK_SIZE,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use ft_server::{
    auth::Auth,
    catalog::{users::Users, Catalog},
    config::Limits,
    store::Store,
    tls::TlsIdentity,
    Security, ServerState,
};
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncWriteExt, ReadHalf, WriteHalf},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Bound on every wait for the server: generous, since a loaded machine may be slow, and
/// only ever reached by a failing test.
const WAIT: Duration = Duration::from_secs(10);

/// File sizes around the edges that matter: empty, one byte, one chunk and its neighbours,
/// the largest upload gathered in memory (64 KiB) and the next, and several chunks plus a
/// ragged tail.
const BOUNDARY_SIZES: [usize; 8] = [
    0,
    1,
    64 * 1024,
    64 * 1024 + 1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE + 7,
];

/// The user the tests' clients log in as (role `write`): its names carry no namespace.
const TEST_USER: &str = "tester";

/// An in-process server over a fresh temporary directory, with one user, [`TEST_USER`].
struct Server {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// The certificate clients pin.
    fingerprint: Fingerprint,
    /// [`TEST_USER`]'s token.
    token: String,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Waits (at most 10 s) until the partial area holds `count` files: uploads started.
    async fn wait_for_partial_files(&self, count: usize) {
        let area = self.dir.path().join(".fts/partial");
        for _ in 0..1000 {
            let files = std::fs::read_dir(&area)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| match std::fs::read_dir(entry.path()) {
                    Ok(inner) => inner.count(),
                    Err(_) => 1,
                })
                .sum::<usize>();
            if files >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {count} uploads started in {}", area.display());
    }

    async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    async fn start_with(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalog_path = dir.path().join(".fts").join("catalog.db");
        let catalog = Catalog::open(&catalog_path).unwrap();
        let security = Security {
            tls: TlsIdentity::ephemeral().unwrap(),
            auth: Auth::new(Users::open(&catalog_path).unwrap(), None),
        };
        let token = ft_server::user_admin::add(
            &Users::open(&catalog_path).unwrap(),
            TEST_USER,
            Role::Write,
        )
        .unwrap();
        let fingerprint = security.tls.fingerprint;
        let state = Arc::new(ServerState::new(store, catalog, security, limits));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ft_server::run(listener, state, shutdown.clone()));
        Self {
            dir,
            addr,
            fingerprint,
            token,
            shutdown,
            task,
        }
    }

    /// The storage directory.
    fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`TEST_USER`]'s files are stored: its namespace.
    fn root(&self) -> PathBuf {
        self.store_dir().join(TEST_USER)
    }

    fn credentials(&self) -> Credentials {
        Credentials {
            user: TEST_USER.to_owned(),
            token: self.token.clone(),
        }
    }

    /// Every stored file and folder outside the private area, as [`TEST_USER`] names it;
    /// anything outside its namespace by its path in the storage directory with a leading
    /// `/` (so that it fails every comparison with the user's names).
    fn tree(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let store = self.store_dir();
        let mut stack = vec![store.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(store).unwrap();
                if relative == Path::new(".fts") {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path.clone());
                }
                if relative == Path::new(TEST_USER) {
                    continue;
                }
                let name = match relative.strip_prefix(TEST_USER) {
                    Ok(own) => own.display().to_string(),
                    Err(_) => format!("/{}", relative.display()),
                };
                out.insert(name);
            }
        }
        out
    }

    /// The stored bytes of `name`.
    fn stored(&self, name: &str) -> Vec<u8> {
        let path: PathBuf = self.root().join(name);
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// The size of the largest file in the server's private area (where uploads in progress
    /// are kept, whatever their layout there).
    fn largest_private_file(&self) -> u64 {
        let mut largest = 0;
        let mut stack = vec![self.store_dir().join(".fts")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    largest = largest.max(meta.len());
                }
            }
        }
        largest
    }

    /// A client past the handshake, logged in as [`TEST_USER`].
    async fn hello(&self) -> Client {
        let mut client = self.connect().await;
        client.send(hello(PROTOCOL_VERSION, &[])).await;
        match client.recv().await {
            Some(Response::Welcome(_)) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
        client
            .send(Request::Authenticate(Authenticate {
                credentials: Some(self.credentials()),
            }))
            .await;
        match client.recv().await {
            Some(Response::Authenticated(authenticated)) => {
                assert_eq!(authenticated.user, TEST_USER);
                client
            }
            other => panic!("expected Authenticated, got {other:?}"),
        }
    }

    /// A TLS connection with nothing sent inside it yet.
    async fn connect(&self) -> Client {
        Client::connect(self.addr, self.fingerprint)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Waits for `run` to return.
    async fn stopped(&mut self) {
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("run did not return")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A hand-driven client: sends whatever it is told, in whatever order.
struct Client {
    reader: MessageReader<ReadHalf<TlsStream>, Response>,
    writer: MessageWriter<WriteHalf<TlsStream>, Request>,
}

impl Client {
    /// Connects and completes TLS with the certificate `pinned`; an error if either fails.
    async fn connect(addr: SocketAddr, pinned: Fingerprint) -> Result<Self, String> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|err| format!("connect: {err}"))?;
        let tls = ft_client::tls::connect(stream, "127.0.0.1", Some(pinned));
        let (stream, _) = tokio::time::timeout(WAIT, tls)
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())?
            .map_err(|err| err.to_string())?;
        let (read_half, write_half) = tokio::io::split(stream);
        Ok(Self {
            reader: codec::message_reader(read_half),
            writer: codec::message_writer(write_half),
        })
    }

    async fn send(&mut self, request: Request) {
        self.send_all(vec![request]).await;
    }

    /// Sends every request back to back, without waiting for any answer.
    async fn send_all(&mut self, requests: Vec<Request>) {
        let writer = &mut self.writer;
        let sent = async move {
            for request in requests {
                writer.feed(request).await?;
            }
            writer.flush().await
        };
        tokio::time::timeout(WAIT, sent)
            .await
            .expect("sending timed out")
            .unwrap();
    }

    /// Writes raw bytes inside TLS, bypassing the codec.
    async fn send_raw(&mut self, bytes: &[u8]) {
        let writer = self.writer.get_mut();
        let sent = async {
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        tokio::time::timeout(WAIT, sent)
            .await
            .expect("sending timed out")
            .unwrap();
    }

    /// The next answer, `None` once the server closed the connection.
    async fn recv(&mut self) -> Option<Response> {
        match tokio::time::timeout(WAIT, self.reader.next()).await {
            Ok(Some(Ok(response))) => Some(response),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("no answer within {WAIT:?}"),
        }
    }

    async fn expect_closed(&mut self) {
        if let Some(response) = self.recv().await {
            panic!("expected the connection to close, got {response:?}");
        }
    }

    async fn expect_ack(&mut self) -> Ack {
        match self.recv().await {
            Some(Response::Ack(ack)) => ack,
            other => panic!("expected Ack, got {other:?}"),
        }
    }

    /// Expects a file-level error for `id` with `code`; returns its message.
    async fn expect_file_error(&mut self, id: u32, code: ErrorCode) -> String {
        match self.recv().await {
            Some(Response::Error(ErrorResponse {
                id: Some(got),
                code: got_code,
                message,
            })) if got == id && got_code == code => message,
            other => panic!("expected {code} for file {id}, got {other:?}"),
        }
    }

    /// Expects a connection-level error with `code`, then the end of the connection;
    /// returns the error's message.
    async fn expect_connection_error(&mut self, code: ErrorCode) -> String {
        let message = match self.recv().await {
            Some(Response::Error(ErrorResponse {
                id: None,
                code: got,
                message,
            })) if got == code => message,
            other => panic!("expected connection error {code}, got {other:?}"),
        };
        self.expect_closed().await;
        message
    }

    async fn expect_failed(&mut self, code: ErrorCode) -> String {
        match self.recv().await {
            Some(Response::Failed(Failed { code: got, message })) if got == code => message,
            other => panic!("expected Failed({code}), got {other:?}"),
        }
    }

    async fn list(&mut self, pattern: Option<&str>) -> Vec<Listing> {
        self.send(Request::List(List {
            pattern: pattern.map(str::to_owned),
        }))
        .await;
        let mut pages = Vec::new();
        // Bounded: a few pages at most in these tests.
        for _ in 0..16 {
            match self.recv().await {
                Some(Response::Listing(page)) => {
                    let last = page.last;
                    pages.push(page);
                    if last {
                        return pages;
                    }
                }
                other => panic!("expected Listing, got {other:?}"),
            }
        }
        panic!("no last Listing page among {} pages", pages.len());
    }

    /// Downloads `name` from `offset`; returns the header and the bytes.
    async fn get(&mut self, name: &str, offset: u64, prefix: Option<Hash>) -> (Sending, Vec<u8>) {
        self.send(Request::Get(Get {
            name: name.to_owned(),
            offset,
            prefix_hash: prefix,
        }))
        .await;
        let header = match self.recv().await {
            Some(Response::Sending(header)) => header,
            other => panic!("expected Sending, got {other:?}"),
        };
        let expected = header.size - header.offset;
        let mut data = Vec::new();
        while (data.len() as u64) < expected {
            match self.recv().await {
                Some(Response::Data(chunk)) => {
                    assert!(!chunk.data.is_empty(), "an empty Data message");
                    assert!(chunk.data.len() <= CHUNK_SIZE, "{}", chunk.data.len());
                    data.extend_from_slice(&chunk.data);
                }
                other => panic!("expected Data, got {other:?} after {} bytes", data.len()),
            }
        }
        assert_eq!(data.len() as u64, expected, "more Data than announced");
        (header, data)
    }

    /// The server's plan for one announced file.
    async fn plan(&mut self, name: &str, size: usize, key: Hash) -> FilePlan {
        self.send(Request::Prepare(Prepare {
            files: vec![FileIntent::new(name.to_owned(), size as u64, key)],
            append: false,
        }))
        .await;
        match self.recv().await {
            Some(Response::Prepared(Prepared { mut plans })) if plans.len() == 1 => plans.remove(0),
            other => panic!("expected Prepared with one plan, got {other:?}"),
        }
    }

    /// Asserts that nothing of the upload `key` of `name` was kept for resume.
    async fn assert_nothing_kept(&mut self, name: &str, size: usize, key: Hash) {
        // Fresh, or Compare where a stored file of that name and size exists: no resume.
        let plan = self.plan(name, size, key).await;
        assert!(
            matches!(plan, FilePlan::Fresh | FilePlan::Compare),
            "{name}: {plan:?}"
        );
    }

    async fn info(&mut self) -> ServerInfo {
        self.send(Request::Info(InfoRequest {})).await;
        match self.recv().await {
            Some(Response::ServerInfo(info)) => info,
            other => panic!("expected ServerInfo, got {other:?}"),
        }
    }
}

fn hello(protocol_version: u32, capabilities: &[&str]) -> Request {
    Request::Hello(Hello {
        protocol_version,
        software: "sessions-test".to_owned(),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
    })
}

/// `len` bytes that differ for each `seed`.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn hash(data: &[u8]) -> Hash {
    blake3::hash(data).into()
}

/// A distinct upload key per id and name, as distinct local files would have.
fn key(id: u32, name: &str) -> Hash {
    hash(format!("key/{id}/{name}").as_bytes())
}

fn begin(id: u32, name: &str, size: usize, conflict: ConflictPolicy) -> Request {
    Request::BeginFile(BeginFile {
        modified_ns: None,
        id,
        name: name.to_owned(),
        size: size as u64,
        conflict,
        key: key(id, name),
        offset: 0,
        prefix_hash: None,
    })
}

fn chunk(data: &[u8]) -> Request {
    Request::Chunk(Chunk {
        data: Bytes::copy_from_slice(data),
    })
}

/// `data` as chunks of at most [`CHUNK_SIZE`].
fn chunks(data: &[u8]) -> impl Iterator<Item = Request> + '_ {
    data.chunks(CHUNK_SIZE).map(chunk)
}

fn end(hash: Hash) -> Request {
    Request::EndFile(EndFile { hash })
}

/// A whole keep-both upload of `data` under `name`: BeginFile, its chunks, EndFile.
fn upload(id: u32, name: &str, data: &[u8]) -> Vec<Request> {
    upload_ending(id, name, data, hash(data))
}

/// Like [`upload`], but the EndFile carries `claimed` as the hash.
fn upload_ending(id: u32, name: &str, data: &[u8], claimed: Hash) -> Vec<Request> {
    let mut requests = vec![begin(id, name, data.len(), ConflictPolicy::KeepBoth)];
    requests.extend(chunks(data));
    requests.push(end(claimed));
    requests
}

/// One length-prefixed frame holding `payload`, as the codec would frame it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn assert_ack(ack: &Ack, id: u32, stored_name: &str, data: &[u8]) {
    assert_eq!(
        ack,
        &Ack {
            id,
            stored_name: stored_name.to_owned(),
            size: data.len() as u64,
            hash: hash(data),
        }
    );
}

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_names_the_version_the_limit_and_only_agreed_capabilities() {
    let server = Server::start_with(Limits {
        max_file_size: 12_345,
        ..Limits::default()
    })
    .await;

    for (asked, agreed) in [
        (vec![CAPABILITY_ZSTD, "teleport"], vec![CAPABILITY_ZSTD]),
        (vec!["teleport"], vec![]),
        (vec![], vec![]),
    ] {
        let mut client = server.connect().await;
        client.send(hello(PROTOCOL_VERSION, &asked)).await;
        match client.recv().await {
            Some(Response::Welcome(Welcome {
                protocol_version,
                software,
                capabilities,
                max_file_size,
            })) => {
                assert_eq!(protocol_version, PROTOCOL_VERSION);
                assert!(software.starts_with("fts "), "{software}");
                assert_eq!(capabilities, agreed, "asked for {asked:?}");
                assert_eq!(max_file_size, 12_345);
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_of_another_version_is_refused_with_both_versions_named() {
    let server = Server::start().await;
    let mut client = server.connect().await;
    client.send(hello(PROTOCOL_VERSION + 1, &[])).await;
    let message = client
        .expect_connection_error(ErrorCode::VersionMismatch)
        .await;
    assert!(
        message.contains(&(PROTOCOL_VERSION + 1).to_string()),
        "{message}"
    );
    assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");

    // A future Hello whose fields after the frozen prefix (variant 0, then the version) this
    // build cannot decode still gets the precise answer.
    let mut client = server.connect().await;
    client
        .send_raw(&frame(&[0, 99, 0xff, 0xff, 0xff, 0xff, 0xff]))
        .await;
    let message = client
        .expect_connection_error(ErrorCode::VersionMismatch)
        .await;
    assert!(message.contains("99"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_other_than_hello_is_a_protocol_violation() {
    let server = Server::start().await;

    let mut client = server.connect().await;
    client.send(Request::List(List { pattern: None })).await;
    client
        .expect_connection_error(ErrorCode::ProtocolViolation)
        .await;

    let mut client = server.connect().await;
    client.send_raw(&frame(&[0xff, 0xff, 0xff])).await;
    client
        .expect_connection_error(ErrorCode::ProtocolViolation)
        .await;

    // An oversized length prefix is refused before any payload arrives.
    let mut client = server.connect().await;
    let too_long = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
    client.send_raw(&too_long.to_be_bytes()).await;
    client
        .expect_connection_error(ErrorCode::ProtocolViolation)
        .await;

    // The server goes on serving others.
    server.hello().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_after_connecting_times_out() {
    let handshake_timeout = Duration::from_millis(200);
    let server = Server::start_with(Limits {
        handshake_timeout,
        ..Limits::default()
    })
    .await;
    let started = Instant::now();
    let mut client = server.connect().await;
    client.expect_connection_error(ErrorCode::Timeout).await;
    assert!(
        started.elapsed() >= handshake_timeout,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_after_the_handshake_times_out() {
    let idle_timeout = Duration::from_millis(300);
    let server = Server::start_with(Limits {
        idle_timeout,
        ..Limits::default()
    })
    .await;
    // Measured from before the handshake: the server's clock starts before the Welcome reaches
    // the client.
    let started = Instant::now();
    let mut client = server.hello().await;
    client.expect_connection_error(ErrorCode::Timeout).await;
    assert!(started.elapsed() >= idle_timeout, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_connection_limit_are_told_busy() {
    let server = Server::start_with(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    // Busy with an upload, so not a connection a full server would close for a new one.
    let mut first = server.hello().await;
    first
        .send(begin(1, "held.bin", 1 << 20, ConflictPolicy::KeepBoth))
        .await;
    // Until the server has read that BeginFile the session still counts as idle.
    server.wait_for_partial_files(1).await;
    let mut second = server.connect().await;
    second.expect_connection_error(ErrorCode::Busy).await;
    drop(first);
    // The permit comes back once the first session has ended; bounded retries. A refused
    // client that already sent its Hello may see the refusal cut short by a reset (`None`).
    for attempt in 0.. {
        let mut client = server.connect().await;
        client.send(hello(PROTOCOL_VERSION, &[])).await;
        match client.recv().await {
            Some(Response::Welcome(_)) => break,
            Some(Response::Error(ErrorResponse {
                code: ErrorCode::Busy,
                ..
            }))
            | None
                if attempt < 50 =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected Welcome once the first client left, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Grammar
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grammar_violations_are_answered_and_end_the_connection() {
    let server = Server::start().await;
    let small = content(10, 1);
    let large = content(CHUNK_SIZE + 10, 2);
    let open = |size: usize| begin(1, "open.bin", size, ConflictPolicy::KeepBoth);
    let cases: Vec<(&str, Vec<Request>, &str)> = vec![
        (
            "Chunk without BeginFile",
            vec![chunk(&small)],
            "without BeginFile",
        ),
        (
            "EndFile without BeginFile",
            vec![end(hash(&small))],
            "without BeginFile",
        ),
        (
            "CancelFile without BeginFile",
            vec![Request::CancelFile(CancelFile {
                reason: "test".to_owned(),
            })],
            "without BeginFile",
        ),
        ("Hello twice", vec![hello(PROTOCOL_VERSION, &[])], "Hello"),
        (
            "BeginFile while a file is open",
            vec![
                open(small.len()),
                begin(2, "other.bin", 1, ConflictPolicy::KeepBoth),
            ],
            "BeginFile",
        ),
        (
            "Prepare while a file is open",
            vec![
                open(large.len()),
                chunk(&large[..100]),
                Request::Prepare(Prepare {
                    files: vec![],
                    append: false,
                }),
            ],
            "Prepare",
        ),
        (
            "EndFile with too few bytes (in memory)",
            vec![open(small.len()), chunk(&small[..5]), end(hash(&small))],
            "EndFile",
        ),
        (
            "EndFile with too few bytes (on disk)",
            vec![
                open(large.len()),
                chunk(&large[..CHUNK_SIZE]),
                end(hash(&large)),
            ],
            "EndFile",
        ),
        (
            "more bytes than declared",
            vec![open(5), chunk(&small)],
            "declared",
        ),
        (
            "a chunk larger than CHUNK_SIZE",
            vec![
                open(large.len()),
                Request::Chunk(Chunk {
                    data: Bytes::from(vec![7; CHUNK_SIZE + 1]),
                }),
            ],
            "Chunk",
        ),
        (
            "a resume offset nobody offered",
            vec![Request::BeginFile(BeginFile {
                modified_ns: None,
                id: 1,
                name: "resumed.bin".to_owned(),
                size: 100,
                conflict: ConflictPolicy::KeepBoth,
                key: key(1, "resumed.bin"),
                offset: 50,
                prefix_hash: Some(Hash([0; 32])),
            })],
            "offset",
        ),
        (
            "CompressedChunk without the zstd capability",
            vec![
                open(small.len()),
                Request::CompressedChunk(CompressedChunk {
                    raw_len: 10,
                    data: Bytes::from_static(b"not zstd"),
                }),
            ],
            "zstd",
        ),
    ];
    for (case, requests, fragment) in cases {
        let mut client = server.hello().await;
        client.send_all(requests).await;
        let message = client
            .expect_connection_error(ErrorCode::ProtocolViolation)
            .await;
        assert!(
            message.contains(fragment),
            "{case}: {message:?} does not mention {fragment:?}"
        );
    }

    // Nothing of the violating uploads was stored or kept for resume.
    assert_eq!(server.tree(), BTreeSet::new());
    server
        .hello()
        .await
        .assert_nothing_kept("open.bin", large.len(), key(1, "open.bin"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_verified_before_a_violation_are_still_stored_and_acked() {
    let server = Server::start().await;
    let data = content(1000, 3);
    let mut client = server.hello().await;
    let mut requests = upload(1, "kept.txt", &data);
    requests.push(chunk(b"stray"));
    client.send_all(requests).await;
    assert_ack(&client.expect_ack().await, 1, "kept.txt", &data);
    client
        .expect_connection_error(ErrorCode::ProtocolViolation)
        .await;
    assert_eq!(server.stored("kept.txt"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_file_is_answered_once_and_its_chunks_skipped() {
    let server = Server::start_with(Limits {
        max_file_size: 1000,
        ..Limits::default()
    })
    .await;
    let fits = content(1000, 4);
    let too_large = content(1001, 5);
    let mut client = server.hello().await;
    let mut requests = upload(1, "../escape.txt", &fits);
    requests.extend(upload(2, "large.bin", &too_large));
    requests.extend(upload(3, "fits.bin", &fits));
    // A refused file may also be abandoned with CancelFile.
    requests.push(begin(4, "/absolute", 1, ConflictPolicy::KeepBoth));
    requests.push(Request::CancelFile(CancelFile {
        reason: "changed my mind".to_owned(),
    }));
    requests.extend(upload(5, "last.bin", &fits[..10]));
    client.send_all(requests).await;

    client.expect_file_error(1, ErrorCode::InvalidName).await;
    client.expect_file_error(2, ErrorCode::TooLarge).await;
    assert_ack(&client.expect_ack().await, 3, "fits.bin", &fits);
    client.expect_file_error(4, ErrorCode::InvalidName).await;
    assert_ack(&client.expect_ack().await, 5, "last.bin", &fits[..10]);
    // Nothing more: the connection is still idle and usable.
    assert_eq!(client.info().await.files, 2);
    assert_eq!(
        server.tree(),
        BTreeSet::from(["fits.bin".to_owned(), "last.bin".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_answered_and_not_kept() {
    let server = Server::start().await;
    let data = content(2 * CHUNK_SIZE, 6);
    let mut client = server.hello().await;
    let mut requests = vec![begin(
        1,
        "cancelled.bin",
        data.len(),
        ConflictPolicy::KeepBoth,
    )];
    requests.push(chunk(&data[..CHUNK_SIZE]));
    requests.push(Request::CancelFile(CancelFile {
        reason: "file changed".to_owned(),
    }));
    requests.extend(upload(2, "after.bin", &data[..100]));
    client.send_all(requests).await;
    let message = client.expect_file_error(1, ErrorCode::Cancelled).await;
    assert!(message.contains("file changed"), "{message}");
    assert_ack(&client.expect_ack().await, 2, "after.bin", &data[..100]);
    client
        .assert_nothing_kept("cancelled.bin", data.len(), key(1, "cancelled.bin"))
        .await;
    assert_eq!(server.tree(), BTreeSet::from(["after.bin".to_owned()]));
}

// ---------------------------------------------------------------------------------------
// Pipelined uploads and the order of answers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_files_are_acked_in_the_order_begun() {
    let server = Server::start().await;
    let files: Vec<(String, Vec<u8>)> = BOUNDARY_SIZES
        .iter()
        .enumerate()
        .map(|(n, &size)| {
            // Some in folders that do not exist yet.
            let name = if n % 3 == 2 {
                format!("nested/{n}/file-{size}.bin")
            } else {
                format!("file-{size}.bin")
            };
            (name, content(size, n as u64))
        })
        .collect();
    let mut client = server.hello().await;
    let requests = files
        .iter()
        .enumerate()
        .flat_map(|(id, (name, data))| upload(id as u32, name, data))
        .collect();
    client.send_all(requests).await;

    for (id, (name, data)) in files.iter().enumerate() {
        assert_ack(&client.expect_ack().await, id as u32, name, data);
    }
    for (name, data) in &files {
        assert!(server.stored(name) == *data, "{name}: stored bytes differ");
    }
    let listed: Vec<(String, u64, Hash)> = client.list(None).await[0]
        .entries
        .iter()
        .map(|entry| (entry.name.clone(), entry.size, entry.hash))
        .collect();
    let mut expected: Vec<(String, u64, Hash)> = files
        .iter()
        .map(|(name, data)| (name.clone(), data.len() as u64, hash(data)))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_mismatch_fails_only_its_file_and_keeps_the_order() {
    let server = Server::start().await;
    let files: Vec<Vec<u8>> = [100, CHUNK_SIZE + 3, 200, 2 * CHUNK_SIZE, 300]
        .iter()
        .enumerate()
        .map(|(n, &size)| content(size, 10 + n as u64))
        .collect();
    // A small file (in memory) and a large one (on disk) arrive corrupted.
    let corrupted = [1_usize, 2];
    let mut client = server.hello().await;
    let mut requests = Vec::new();
    for (id, data) in files.iter().enumerate() {
        let name = format!("{id}.bin");
        let claimed = if corrupted.contains(&id) {
            hash(b"something else")
        } else {
            hash(data)
        };
        requests.extend(upload_ending(id as u32, &name, data, claimed));
    }
    client.send_all(requests).await;

    for (id, data) in files.iter().enumerate() {
        let name = format!("{id}.bin");
        if corrupted.contains(&id) {
            let message = client
                .expect_file_error(id as u32, ErrorCode::HashMismatch)
                .await;
            assert!(message.contains(&hash(data).to_hex()), "{message}");
        } else {
            assert_ack(&client.expect_ack().await, id as u32, &name, data);
        }
    }
    for id in corrupted {
        let name = format!("{id}.bin");
        client
            .assert_nothing_kept(&name, files[id].len(), key(id as u32, &name))
            .await;
    }
    let stored: BTreeSet<String> = ["0.bin", "3.bin", "4.bin"].map(str::to_owned).into();
    assert_eq!(server.tree(), stored);
    assert_eq!(client.info().await.files, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_both_numbers_names_and_overwrite_replaces() {
    let server = Server::start().await;
    let versions: Vec<Vec<u8>> = (0..3).map(|n| content(50 + n, 20 + n as u64)).collect();
    let mut client = server.hello().await;
    // All three in one pipelined stream, so the names are settled within one group too.
    let requests = versions
        .iter()
        .enumerate()
        .flat_map(|(id, data)| upload(id as u32, "a.txt", data))
        .collect();
    client.send_all(requests).await;
    for (id, stored) in ["a.txt", "a (1).txt", "a (2).txt"].iter().enumerate() {
        assert_ack(&client.expect_ack().await, id as u32, stored, &versions[id]);
        assert_eq!(server.stored(stored), versions[id], "{stored}");
    }

    // Overwrite keeps the name and the newest content.
    let mut requests = Vec::new();
    for (id, data) in versions.iter().enumerate().take(2) {
        let id = 10 + id as u32;
        requests.push(begin(id, "b.txt", data.len(), ConflictPolicy::Overwrite));
        requests.extend(chunks(data));
        requests.push(end(hash(data)));
    }
    client.send_all(requests).await;
    assert_ack(&client.expect_ack().await, 10, "b.txt", &versions[0]);
    assert_ack(&client.expect_ack().await, 11, "b.txt", &versions[1]);
    assert_eq!(server.stored("b.txt"), versions[1]);

    let entries: Vec<CatalogEntry> = client.list(None).await.remove(0).entries;
    let names: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| (entry.name.as_str(), entry.sent_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("a (1).txt", "a.txt"),
            ("a (2).txt", "a.txt"),
            ("a.txt", "a.txt"),
            ("b.txt", "b.txt"),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Takeover of an interrupted upload
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_takes_over_an_upload_and_resumes_it() {
    let server = Server::start().await;
    let data = content(8 * CHUNK_SIZE + 123, 30);
    let name = "big.bin";
    let upload_key = key(1, name);
    let sent = 3 * CHUNK_SIZE;

    let mut first = server.hello().await;
    let mut requests = vec![begin(1, name, data.len(), ConflictPolicy::KeepBoth)];
    requests.extend(chunks(&data[..sent]));
    first.send_all(requests).await;
    // Wait until some of it is on disk (the writer may hold up to 512 KiB back).
    let deadline = Instant::now() + WAIT;
    while server.largest_private_file() < 2 * CHUNK_SIZE as u64 {
        assert!(
            Instant::now() < deadline,
            "the first connection's bytes never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The client reconnects while the first connection still looks alive.
    let mut second = server.hello().await;
    second
        .send(Request::Prepare(Prepare {
            files: vec![FileIntent::new(
                name.to_owned(),
                data.len() as u64,
                upload_key,
            )],
            append: false,
        }))
        .await;
    let offset = match second.recv().await {
        Some(Response::Prepared(Prepared { plans })) => match plans.as_slice() {
            [FilePlan::Resume { offset }] => {
                let offset = *offset;
                assert!(
                    (2 * CHUNK_SIZE as u64..=sent as u64).contains(&offset),
                    "offered {offset} of the {sent} bytes sent"
                );
                offset
            }
            other => panic!("expected one Resume plan, got {other:?}"),
        },
        other => panic!("expected Prepared, got {other:?}"),
    };

    // The first connection is ended, and never acknowledges the file.
    first.expect_closed().await;
    drop(first);

    let mut requests = vec![Request::BeginFile(BeginFile {
        modified_ns: None,
        id: 2,
        name: name.to_owned(),
        size: data.len() as u64,
        conflict: ConflictPolicy::KeepBoth,
        key: upload_key,
        offset,
        prefix_hash: Some(hash(&data[..offset as usize])),
    })];
    requests.extend(chunks(&data[offset as usize..]));
    requests.push(end(hash(&data)));
    second.send_all(requests).await;
    assert_ack(&second.expect_ack().await, 2, name, &data);
    assert!(server.stored(name) == data, "stored bytes differ");
    second
        .assert_nothing_kept(name, data.len(), upload_key)
        .await;
    assert_eq!(server.tree(), BTreeSet::from([name.to_owned()]));
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_goodbye_to_idle_clients_and_run_returns() {
    let server = Server::start().await;
    let mut clients = vec![server.hello().await, server.hello().await];
    server.shutdown.cancel();
    for client in &mut clients {
        let message = client
            .expect_connection_error(ErrorCode::ShuttingDown)
            .await;
        assert!(!message.is_empty());
    }
    drop(clients);
    let addr = server.addr;
    let mut server = server;
    server.stopped().await;
    // No longer accepting.
    match TcpStream::connect(addr).await {
        Err(_) => {}
        Ok(stream) => {
            let (read_half, _write_half) = stream.into_split();
            let mut reader = codec::message_reader::<_, Response>(read_half);
            let next = tokio::time::timeout(WAIT, reader.next()).await.unwrap();
            assert!(matches!(next, None | Some(Err(_))), "{next:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_at_shutdown_finishes_and_is_acked() {
    let server = Server::start().await;
    let data = content(4 * CHUNK_SIZE + 1, 40);
    let small = content(100, 41);
    let mut client = server.hello().await;
    // A verified small file still waiting for its group, then a large file half sent.
    let mut requests = upload(1, "small.bin", &small);
    requests.push(begin(2, "big.bin", data.len(), ConflictPolicy::KeepBoth));
    requests.extend(chunks(&data[..2 * CHUNK_SIZE]));
    client.send_all(requests).await;
    assert_ack(&client.expect_ack().await, 1, "small.bin", &small);

    let mut idle = server.hello().await;
    server.shutdown.cancel();
    idle.expect_connection_error(ErrorCode::ShuttingDown).await;
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.task.is_finished(),
        "run returned with an upload in flight"
    );

    let mut requests: Vec<Request> = chunks(&data[2 * CHUNK_SIZE..]).collect();
    requests.push(end(hash(&data)));
    client.send_all(requests).await;
    assert_ack(&client.expect_ack().await, 2, "big.bin", &data);
    client
        .expect_connection_error(ErrorCode::ShuttingDown)
        .await;
    drop(client);
    assert!(server.stored("big.bin") == data, "stored bytes differ");
    let mut server = server;
    server.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_after_the_grace_period_when_an_upload_stalls() {
    let shutdown_grace = Duration::from_millis(300);
    let server = Server::start_with(Limits {
        shutdown_grace,
        ..Limits::default()
    })
    .await;
    let data = content(2 * CHUNK_SIZE, 50);
    let mut client = server.hello().await;
    let requests = vec![
        begin(1, "stalled.bin", data.len(), ConflictPolicy::KeepBoth),
        chunk(&data[..CHUNK_SIZE]),
    ];
    client.send_all(requests).await;
    let started = Instant::now();
    let mut server = server;
    server.shutdown.cancel();
    server.stopped().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= shutdown_grace, "run returned after {elapsed:?}");
    assert!(
        elapsed < shutdown_grace + Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The session was cut with the grace period, not left running beside a stopped server:
    // its connection is closed, and the rest of the file is never taken. (Had the server not
    // read the file's start before the shutdown began, it said goodbye first.)
    match client.recv().await {
        None => {}
        Some(Response::Error(error)) if error.code == ErrorCode::ShuttingDown => {
            client.expect_closed().await;
        }
        Some(other) => panic!("expected the connection to close, got {other:?}"),
    }
    let stored = server.root().join("stalled.bin");
    assert!(!stored.exists(), "a cut upload never carries its name");
}

// ---------------------------------------------------------------------------------------
// Requests on what is stored
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_get_delete_info_and_make_dir_round_trip() {
    let server = Server::start_with(Limits {
        max_file_size: 1 << 30,
        max_connections: 7,
        ..Limits::default()
    })
    .await;
    let text = content(1234, 60);
    let big = content(2 * CHUNK_SIZE + 5, 61);
    let mut client = server.hello().await;

    let empty = client.info().await;
    assert_eq!((empty.files, empty.bytes), (0, 0));
    assert_eq!(empty.protocol_version, PROTOCOL_VERSION);
    assert_eq!(empty.max_file_size, 1 << 30);
    assert_eq!(empty.max_connections, 7);
    assert!(empty.free_bytes > 0);
    assert_eq!(
        client.list(None).await,
        [Listing {
            entries: vec![],
            last: true
        }]
    );

    let mut requests = upload(1, "notes.txt", &text);
    requests.extend(upload(2, "data/big.bin", &big));
    client.send_all(requests).await;
    client.expect_ack().await;
    client.expect_ack().await;

    // Info, List and Get come right after the uploads, without waiting for anything: each
    // sees every file acknowledged before it.
    let info = client.info().await;
    assert_eq!(info.files, 2);
    assert_eq!(info.bytes, (text.len() + big.len()) as u64);

    let pages = client.list(None).await;
    assert_eq!(pages.len(), 1);
    let summary: Vec<(&str, &str, u64, Hash)> = pages[0]
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.sent_name.as_str(), e.size, e.hash))
        .collect();
    assert_eq!(
        summary,
        [
            ("data/big.bin", "data/big.bin", big.len() as u64, hash(&big)),
            ("notes.txt", "notes.txt", text.len() as u64, hash(&text)),
        ]
    );
    let only_text = client.list(Some("*.txt")).await;
    let names: Vec<&str> = only_text[0]
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["notes.txt"]);

    let (header, got) = client.get("data/big.bin", 0, None).await;
    assert_eq!(
        header,
        Sending {
            modified_ns: None,
            name: "data/big.bin".to_owned(),
            size: big.len() as u64,
            hash: hash(&big),
            offset: 0,
        }
    );
    assert!(got == big, "downloaded bytes differ");

    // Resuming a download: from the offset if the prefix matches, else from zero.
    let offset = CHUNK_SIZE + 1;
    let (header, got) = client
        .get("data/big.bin", offset as u64, Some(hash(&big[..offset])))
        .await;
    assert_eq!(header.offset, offset as u64);
    assert!(got == big[offset..], "resumed download differs");
    let (header, got) = client
        .get("data/big.bin", offset as u64, Some(hash(b"not the prefix")))
        .await;
    assert_eq!(header.offset, 0);
    assert!(got == big, "restarted download differs");

    client
        .send(Request::Get(Get {
            name: "missing.txt".to_owned(),
            offset: 0,
            prefix_hash: None,
        }))
        .await;
    client.expect_failed(ErrorCode::NotFound).await;

    client
        .send(Request::Delete(Delete {
            name: "notes.txt".to_owned(),
        }))
        .await;
    match client.recv().await {
        Some(Response::Deleted(deleted)) => assert_eq!(
            deleted,
            Deleted {
                name: "notes.txt".to_owned(),
                size: text.len() as u64,
            }
        ),
        other => panic!("expected Deleted, got {other:?}"),
    }
    client
        .send(Request::Delete(Delete {
            name: "notes.txt".to_owned(),
        }))
        .await;
    client.expect_failed(ErrorCode::NotFound).await;
    assert!(!server.root().join("notes.txt").exists());
    let after = client.info().await;
    assert_eq!((after.files, after.bytes), (1, big.len() as u64));

    for (name, created) in [
        ("empty/folder", true),
        ("empty/folder", false),
        ("data", false),
    ] {
        client
            .send(Request::MakeDir(MakeDir {
                name: name.to_owned(),
            }))
            .await;
        match client.recv().await {
            Some(Response::DirMade(made)) => assert_eq!(
                made,
                DirMade {
                    name: name.to_owned(),
                    created
                }
            ),
            other => panic!("expected DirMade for {name}, got {other:?}"),
        }
    }
    assert!(server.root().join("empty/folder").is_dir());
    client
        .send(Request::MakeDir(MakeDir {
            name: "../outside".to_owned(),
        }))
        .await;
    client.expect_failed(ErrorCode::InvalidName).await;
    // A file where a folder is asked for.
    client
        .send(Request::MakeDir(MakeDir {
            name: "data/big.bin".to_owned(),
        }))
        .await;
    let failed = client.recv().await;
    assert!(
        matches!(failed, Some(Response::Failed(_))),
        "expected Failed, got {failed:?}"
    );

    // Failures leave the connection usable.
    assert_eq!(client.info().await.files, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_listing_comes_in_pages_in_name_order() {
    let server = Server::start().await;
    let count = 150;
    let mut client = server.hello().await;
    let requests = (0..count)
        .flat_map(|id| upload(id, &format!("f{id:03}.txt"), format!("{id}").as_bytes()))
        .collect();
    client.send_all(requests).await;
    for id in 0..count {
        assert_eq!(client.expect_ack().await.id, id);
    }
    let pages = client.list(None).await;
    assert!(pages.len() > 1, "{} pages", pages.len());
    assert!(pages[..pages.len() - 1].iter().all(|page| !page.last));
    assert!(pages.iter().all(|page| !page.entries.is_empty()));
    let names: Vec<String> = pages
        .into_iter()
        .flat_map(|page| page.entries)
        .map(|entry| entry.name)
        .collect();
    let expected: Vec<String> = (0..count).map(|id| format!("f{id:03}.txt")).collect();
    assert_eq!(names, expected);
}

/// A page of refused files, each named with thousands of characters that print escaped,
/// is still answered in one frame (each refusal's message is cut short), not with a hang-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_refused_long_names_is_answered_in_one_frame() {
    let server = Server::start().await;
    let mut client = server.hello().await;
    let files: Vec<FileIntent> = (0..300u32)
        .map(|n| {
            FileIntent::new(
                format!("{n}{}/../x", "\u{200b}".repeat(900)),
                1,
                Hash([(n % 256) as u8; 32]),
            )
        })
        .collect();
    client
        .send_all(vec![Request::Prepare(Prepare {
            files,
            append: false,
        })])
        .await;
    match client.recv().await {
        Some(Response::Prepared(Prepared { plans })) => {
            assert_eq!(plans.len(), 300);
            for plan in plans {
                let FilePlan::Refused { code, message } = plan else {
                    panic!("{plan:?}");
                };
                assert_eq!(code, ErrorCode::InvalidName);
                assert!(
                    message.len() <= ft_protocol::MAX_PLAN_MESSAGE_LEN,
                    "{message}"
                );
            }
        }
        other => panic!("expected Prepared, got {other:?}"),
    }
}

/// Answers are paired with files by id: a second file with the id of one still awaiting its
/// answer is a protocol violation, after the first is answered; an id reused once its file
/// was answered is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_reused_while_its_file_awaits_an_answer_is_a_violation() {
    let server = Server::start().await;
    let mut client = server.hello().await;
    client.send_all(upload(1, "first.txt", b"one")).await;
    assert_eq!(client.expect_ack().await.id, 1);
    // Answered: the id may serve again.
    let mut requests = upload(1, "second.txt", b"two");
    requests.extend(upload(1, "third.txt", b"three"));
    client.send_all(requests).await;
    let ack = client.expect_ack().await;
    assert_eq!((ack.id, ack.stored_name.as_str()), (1, "second.txt"));
    match client.recv().await {
        Some(Response::Error(error)) => {
            assert_eq!((error.id, error.code), (None, ErrorCode::ProtocolViolation));
            assert!(error.message.contains("id 1"), "{}", error.message);
        }
        other => panic!("expected a violation, got {other:?}"),
    }
    client.expect_closed().await;
    assert!(!server.dir.path().join("tester/third.txt").exists());
}

/// A pattern too costly to match is refused at once; the costliest allowed one, run again
/// and again over many long names, holds up no other client: their uploads, gets and lists
/// keep finishing promptly (the bound is generous: it is about never waiting behind the
/// listing, not about speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_list_patterns_are_refused_or_hold_up_no_one() {
    let server = Server::start().await;
    let mut lister = server.hello().await;
    let long = "a".repeat(200);
    let mut requests = Vec::new();
    for n in 0..1500u32 {
        requests.extend(upload(n, &format!("{long}/{long}{n}"), b"x"));
    }
    lister.send_all(requests).await;
    for _ in 0..1500 {
        lister.expect_ack().await;
    }

    let huge = format!("*[{}]", "b-b".repeat(16_000));
    lister
        .send(Request::List(List {
            pattern: Some(huge),
        }))
        .await;
    match lister.recv().await {
        Some(Response::Failed(failed)) => {
            assert_eq!(failed.code, ErrorCode::InvalidName);
            assert!(failed.message.contains("pattern"), "{}", failed.message);
        }
        other => panic!("expected the pattern refused, got {other:?}"),
    }

    // The costliest shape allowed: stars the matcher backtracks over, never matching.
    let costly = format!("{}b", "*a".repeat(ft_protocol::MAX_PATTERN_LEN / 2 - 1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listing = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut lists = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && lists < 1000 {
                let pages = lister.list(Some(&costly)).await;
                assert!(pages.iter().all(|page| page.entries.is_empty()));
                lists += 1;
            }
            lists
        })
    };
    let mut other = server.hello().await;
    for round in 0..5u32 {
        let started = Instant::now();
        other
            .send_all(upload(
                100_000 + round,
                &format!("other{round}.txt"),
                b"other",
            ))
            .await;
        other.expect_ack().await;
        let listed = other.list(Some("other*")).await;
        assert_eq!(
            listed.iter().map(|page| page.entries.len()).sum::<usize>(),
            round as usize + 1
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "round {round} took {elapsed:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lists = tokio::time::timeout(Duration::from_secs(60), listing)
        .await
        .expect("the lister stops")
        .unwrap();
    assert!(lists >= 1);
}

/// One address cannot take every slot: past its own limit it is told busy, while the
/// server has room for others; a slot freed is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let server = Server::start_with(Limits {
        max_connections: 16,
        max_connections_per_address: 3,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.hello().await);
    }
    let mut refused = server.connect().await;
    match refused.recv().await {
        Some(Response::Error(error)) => {
            assert_eq!(error.code, ErrorCode::Busy);
            assert!(error.message.contains("your address"), "{}", error.message);
        }
        other => panic!("expected busy, got {other:?}"),
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = server.connect().await;
        again.send(hello(PROTOCOL_VERSION, &[])).await;
        match again.recv().await {
            Some(Response::Welcome(_)) => break,
            Some(Response::Error(error))
                if error.code == ErrorCode::Busy && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected a welcome once a slot is free, got {other:?}"),
        }
    }
}
