//! Test harness: builds and finds the real `fts` and `ftc` binaries, starts servers on
//! ephemeral loopback ports in temporary directories, runs clients with bounded waits, and
//! speaks the raw protocol for tests that need a misbehaving client.
//!
//! On failure, helpers print the command, its exit status, stdout and stderr.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]
// A harness panics to fail the test that called it; that is its error handling.

pub mod proxy;

use std::{
    fs::{self, File},
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, OnceLock},
    thread,
    time::{Duration, Instant},
};

use ft_protocol::{
    codec::{self, MessageReader, MessageWriter},
    BeginFile, Chunk, ConflictPolicy, EndFile, Hash, Hello, Request, Response, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::net::{
    tcp::{OwnedReadHalf, OwnedWriteHalf},
    TcpStream,
};

/// Longest any single client command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Longest the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Directory holding `fts` and `ftc`, freshly built for this test profile.
///
/// Cargo does not build other packages' binaries for a test, so the harness builds them
/// once per test process (a no-op when they are up to date). `FT_BIN_DIR` skips the build.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("FT_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // .../target/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "ft-server",
                "-p",
                "ft-client",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile != "debug" {
            build.args([
                "--profile",
                if profile == "release" {
                    "release"
                } else {
                    profile
                },
            ]);
        }
        let status = build.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building fts and ftc failed: {status}");
        profile_dir
    })
}

/// Path of one of the binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A running `fts`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts `fts --dir dir --listen 127.0.0.1:0 extra...` and waits for its address.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// Starts `fts --dir dir --listen listen extra...` and waits for its address.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Server {
        Self::spawn(Command::new(bin("fts")), dir, listen, extra)
    }

    /// Starts `fts` under a file-size limit of `blocks` 512-byte blocks (`ulimit -f`), to
    /// make writes fail the way a full disk makes them fail.
    pub fn start_with_file_size_limit(dir: &Path, blocks: u64, extra: &[&str]) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
            .arg(bin("fts"));
        Self::spawn(command, dir, "127.0.0.1:0", extra)
    }

    fn spawn(mut command: Command, dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let log_dir = dir.parent().unwrap_or(dir);
        let stderr_path = log_dir.join(format!("fts-{:x}.log", rand_u64()));
        let mut child = command
            .arg("--dir")
            .arg(dir)
            .args(["--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn fts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "fts did not print its address; stderr:\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from fts: {line:?}"))
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            dir: dir.to_path_buf(),
            stderr_path,
        }
    }

    /// `HOST:PORT` for ftc.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the server abruptly (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        // The shell's builtin `kill`: no procps needed on the CI machine.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        wait_bounded(&mut self.child, COMMAND_TIMEOUT).expect("fts did not exit after SIGTERM")
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the full context unless the exit code is `expected`.
    pub fn expect_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(expected),
            "unexpected exit status\n{self}"
        );
        self
    }

    /// Panics unless the command succeeded.
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// Panics unless `ftc send` exited 0 and reported all `count` files stored.
    pub fn all_stored(&self, count: usize) -> &Self {
        self.success();
        assert!(
            self.stdout
                .contains(&format!("{count} of {count} files stored")),
            "not all {count} files reported stored\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `ftc args...` in `cwd` to completion (bounded by [`COMMAND_TIMEOUT`]).
pub fn ftc(cwd: &Path, args: &[&str]) -> Output {
    spawn_ftc(cwd, args).finish()
}

/// Runs `ftc args...` with extra environment variables and, optionally, bytes on stdin.
pub fn ftc_with(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let input = stdin.map(|bytes| {
        let path = cwd.join(format!(".ftc-{}.in", rand_u64()));
        fs::write(&path, bytes).unwrap();
        path
    });
    let run = spawn_ftc_with(cwd, args, env, input.as_deref());
    let output = run.finish();
    if let Some(path) = input {
        let _ = fs::remove_file(path);
    }
    output
}

/// An `ftc` running in the background, its stdout and stderr captured to files.
pub struct RunningFtc {
    pub child: Child,
    command: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// Starts `ftc args...` in the background.
pub fn spawn_ftc(cwd: &Path, args: &[&str]) -> RunningFtc {
    spawn_ftc_with(cwd, args, &[], None)
}

/// Starts `ftc` isolated from the developer's own configuration: no `FTC_SERVER`, and a
/// config folder that does not exist, unless `env` sets them.
fn spawn_ftc_with(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&Path>,
) -> RunningFtc {
    let tag = rand_u64();
    let stdout_path = cwd.join(format!(".ftc-{tag}.out"));
    let stderr_path = cwd.join(format!(".ftc-{tag}.err"));
    let stdin = match stdin {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    };
    let child = Command::new(bin("ftc"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FTC_SERVER")
        .env("XDG_CONFIG_HOME", cwd.join(".no-ftc-config"))
        .envs(env.iter().copied())
        .stdin(stdin)
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn ftc");
    RunningFtc {
        child,
        command: format!("ftc {}", args.join(" ")),
        stdout_path,
        stderr_path,
    }
}

impl RunningFtc {
    /// Waits (bounded) for the process and collects its output.
    pub fn finish(mut self) -> Output {
        let Some(status) = wait_bounded(&mut self.child, COMMAND_TIMEOUT) else {
            let _ = self.child.kill();
            panic!("{} did not finish within {COMMAND_TIMEOUT:?}", self.command);
        };
        let take = |path: &Path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            let _ = fs::remove_file(path);
            text
        };
        Output {
            command: self.command,
            status,
            stdout: take(&self.stdout_path),
            stderr: take(&self.stderr_path),
        }
    }
}

/// Waits for `child` at most `limit`; `None` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MiB.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// BLAKE3 of `bytes` as hex.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A fresh temporary workspace: `root/recv` for the server, `root/src` for client files.
pub struct Workspace {
    pub root: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("src")).unwrap();
        Workspace { root }
    }

    /// Where the server stores files.
    pub fn recv(&self) -> PathBuf {
        self.root.path().join("recv")
    }

    /// Where client files are created.
    pub fn src(&self) -> PathBuf {
        self.root.path().join("src")
    }

    /// Writes a client file and returns its path as a string argument.
    pub fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.src().join(name);
        fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Starts a server storing into [`Self::recv`].
    pub fn server(&self, extra: &[&str]) -> Server {
        Server::start(&self.recv(), extra)
    }

    /// Names of regular files stored (relative, `/`-separated), excluding the private dir.
    pub fn stored_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        collect_files(&self.recv(), &self.recv(), &mut names);
        names.sort();
        names
    }

    /// The server's area for uploads in progress or interrupted.
    pub fn partial_dir(&self) -> PathBuf {
        self.recv().join(".fts/partial")
    }

    /// Uploads in progress or kept for resume.
    pub fn partial_entries(&self) -> usize {
        fs::read_dir(self.partial_dir())
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// Total bytes held in the partial area.
    pub fn partial_bytes(&self) -> u64 {
        fs::read_dir(self.partial_dir())
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if relative == ".fts" {
            continue;
        }
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(relative);
        }
    }
}

/// Parses NDJSON output into objects, failing the test on any line that is not JSON.
pub fn ndjson(output: &Output) -> Vec<serde_json::Value> {
    output
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}\n{output}"))
        })
        .collect()
}

/// The catalog as `ftc list --json` reports it: the `entry` objects (name, sent_name, size,
/// blake3, added_at), checked against the closing summary.
pub fn listing(server: &Server, cwd: &Path) -> Vec<serde_json::Value> {
    let output = ftc(cwd, &["list", &server.address(), "--json"]);
    output.success();
    let mut lines = ndjson(&output);
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["event"], "summary", "{output}");
    assert!(
        lines.iter().all(|line| line["event"] == "entry"),
        "{output}"
    );
    assert_eq!(summary["files"], lines.len(), "{output}");
    lines
}

/// `BeginFile` of a fresh keep-both upload, with a key distinct per call (as distinct local
/// files would have).
pub fn begin_request(id: u32, name: &str, size: u64) -> Request {
    Request::BeginFile(BeginFile {
        id,
        name: name.to_owned(),
        size,
        conflict: ConflictPolicy::KeepBoth,
        key: Hash::from(blake3::hash(format!("{id}/{name}/{size}").as_bytes())),
        offset: 0,
    })
}

/// A `Chunk` carrying `data`.
pub fn chunk_request(data: &'static [u8]) -> Request {
    Request::Chunk(Chunk {
        data: bytes::Bytes::from_static(data),
    })
}

/// The `EndFile` of an upload whose whole content is `content`.
pub fn end_request(content: &[u8]) -> Request {
    Request::EndFile(EndFile {
        hash: blake3::hash(content).into(),
    })
}

/// A hand-driven protocol client for tests of hostile or broken behaviour.
pub struct RawClient {
    pub reader: MessageReader<OwnedReadHalf, Response>,
    pub writer: MessageWriter<OwnedWriteHalf, Request>,
}

/// Bound on every raw read, so a test never hangs on a silent server.
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(20);

impl RawClient {
    /// Connects without a handshake.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read_half, write_half) = stream.into_split();
        RawClient {
            reader: codec::message_reader(read_half),
            writer: codec::message_writer(write_half),
        }
    }

    /// Connects and completes the handshake.
    pub async fn handshake(addr: SocketAddr) -> RawClient {
        Self::handshake_with(addr, &[]).await
    }

    /// Connects and completes the handshake asking for `capabilities`.
    pub async fn handshake_with(addr: SocketAddr, capabilities: &[&str]) -> RawClient {
        let mut client = Self::connect(addr).await;
        client
            .send(Request::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                software: "raw-test-client".into(),
                capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            }))
            .await;
        match client.recv().await {
            Some(Response::Welcome(_)) => client,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, request: Request) {
        self.writer.send(request).await.unwrap();
    }

    /// The next response, or `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Option<Response> {
        match tokio::time::timeout(RAW_READ_TIMEOUT, self.reader.next()).await {
            Ok(Some(Ok(response))) => Some(response),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("no response within {RAW_READ_TIMEOUT:?}"),
        }
    }
}
