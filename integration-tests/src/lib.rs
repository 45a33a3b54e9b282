//! Test harness: builds and finds the real `fts` and `ftc` binaries, starts servers on
//! ephemeral loopback ports in temporary directories, runs clients with bounded waits, and
//! speaks the raw protocol (over TLS) for tests that need a misbehaving client.
//!
//! Every server gets a user [`TEST_USER`] (role `write`), and every client the harness runs
//! logs in as it and pins the server's certificate, so tests see names as a user sees them
//! (without the namespace). Each server's address is registered with its [`Login`]; see
//! [`ftc_with`] for how a client's server is found and what a test may override.
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
mod raw;
mod registry;
pub mod relay;
mod scripted;

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
    BeginFile, Chunk, ConflictPolicy, Credentials, EndFile, Fingerprint, Hash, Request,
};

pub use raw::{RawClient, RAW_READ_TIMEOUT};
pub use registry::{register, registered, Login};
pub use scripted::scripted_server;

/// The user every server gets and every client logs in as: role `write`, so the names it
/// sends and sees carry no namespace.
pub const TEST_USER: &str = "tester";

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
        // What cargo sets for this test process only. Build scripts that watch these (ring's
        // watches CARGO_MANIFEST_DIR) would otherwise see them change between this build and
        // the next `cargo test`, and both would rebuild them and everything above them.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let per_package = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix));
            let per_target = [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref());
            if per_package || per_target {
                build.env_remove(key.as_ref());
            }
        }
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
    /// The storage directory (`--dir`).
    pub dir: PathBuf,
    /// The certificate's fingerprint, from the server's second line of output.
    pub fingerprint: Fingerprint,
    /// The user clients log in as ([`TEST_USER`]).
    pub user: String,
    /// Its token.
    pub token: String,
    /// The first admin's token, printed when this storage directory was first served (if
    /// this test process saw that start).
    pub admin_token: Option<String>,
    stderr_path: PathBuf,
}

/// How long to wait for an admin's lines from a store that existed before (they come only
/// if it had no users; when they come, they come with the address).
const ANNOUNCEMENT_TIMEOUT: Duration = Duration::from_millis(500);

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

    /// Starts the server, reads what it prints (address, fingerprint and, on a store's first
    /// start, the admin's token), makes sure the test user exists and registers the address.
    fn spawn(mut command: Command, dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let log_dir = dir.parent().unwrap_or(dir);
        let stderr_path = log_dir.join(format!("fts-{:x}.log", rand_u64()));
        // A store with no catalog yet is new: it prints the admin it makes. An existing one
        // prints that only if it had no users (an older store); wait briefly for it then.
        let new_store = !dir.join(".fts").join("catalog.db").exists();
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
        let announced = match Announcement::read(&rx, new_store) {
            Ok(announced) => announced,
            Err(problem) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{problem}; stderr:\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        // From here on, a failing step kills the server as the Server is dropped.
        let mut server = Server {
            child,
            addr: announced.addr,
            dir: dir.to_path_buf(),
            fingerprint: announced.fingerprint,
            user: TEST_USER.to_owned(),
            token: String::new(),
            admin_token: announced
                .admin_token
                .clone()
                .or_else(|| registry::admin_token_of_dir(dir)),
            stderr_path,
        };
        server.token = registry::token_of_dir(dir).unwrap_or_else(|| add_test_user(dir));
        registry::record_dir(dir, &server.token, announced.admin_token.as_deref());
        register(&server.address(), server.login());
        registry::started(&server.address());
        server
    }

    /// How the test user logs in here.
    pub fn login(&self) -> Login {
        Login {
            fingerprint: self.fingerprint,
            user: self.user.clone(),
            token: self.token.clone(),
        }
    }

    /// The test user's credentials.
    pub fn credentials(&self) -> Credentials {
        self.login().credentials()
    }

    /// The first admin's credentials; panics if this process did not see the store's first
    /// start.
    pub fn admin_credentials(&self) -> Credentials {
        Credentials {
            user: "admin".to_owned(),
            token: self
                .admin_token
                .clone()
                .expect("the admin token of this store is unknown"),
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of the server's `/proc/PID/status` in its own unit (`VmRSS` in KiB,
    /// `Threads`), or `None` once the process is gone.
    pub fn status_field(&self, field: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value.split_whitespace().next()?.parse().ok()
        })
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

/// Runs `fts --dir dir user args...` (user administration, beside a running server or
/// without one) to completion.
pub fn fts_user(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(bin("fts"));
    command.arg("--dir").arg(dir).arg("user").args(args);
    run_bounded(
        command,
        format!("fts --dir {} user {}", dir.display(), args.join(" ")),
    )
}

/// Runs `fts args...` in `cwd` to completion: for commands that exit by themselves
/// (`--print-config`, `--man`, a refused configuration).
pub fn fts(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(bin("fts"));
    command.current_dir(cwd).args(args);
    run_bounded(command, format!("fts {}", args.join(" ")))
}

/// Adds [`TEST_USER`] with role `write` to the store `dir` (or, if it exists already, gives
/// it a new token); returns the token, the last line `fts` prints.
fn add_test_user(dir: &Path) -> String {
    let mut output = fts_user(dir, &["add", TEST_USER, "--role", "write"]);
    if output.code() != Some(0) && output.stderr.contains("exists") {
        output = fts_user(dir, &["token", TEST_USER]);
    }
    output.success();
    output
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no token printed\n{output}"))
        .trim()
        .to_owned()
}

/// Runs `command` to completion (bounded by [`COMMAND_TIMEOUT`]), output captured.
fn run_bounded(mut command: Command, shown: String) -> Output {
    let stdout = tempfile::tempfile().unwrap();
    let stderr = tempfile::tempfile().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {shown}: {err}"));
    let Some(status) = wait_bounded(&mut child, COMMAND_TIMEOUT) else {
        let _ = child.kill();
        panic!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
    };
    let read = |mut file: File| {
        use std::io::{Read, Seek};
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        text
    };
    Output {
        command: shown,
        status,
        stdout: read(stdout),
        stderr: read(stderr),
    }
}

/// What `fts` prints when it starts.
struct Announcement {
    /// `listening on IP:PORT`.
    addr: SocketAddr,
    /// `fingerprint SHA256:...`.
    fingerprint: Fingerprint,
    /// On a store's first start: `user admin added ...`, its connect string, then the token
    /// alone on a line.
    admin_token: Option<String>,
}

impl Announcement {
    /// Reads the announcement from the server's stdout lines. `new_store`: the admin's lines
    /// are sure to come; otherwise they are waited for only briefly (all lines are written
    /// at once).
    fn read(lines: &mpsc::Receiver<String>, new_store: bool) -> Result<Self, String> {
        let next = |what: &str| {
            lines
                .recv_timeout(STARTUP_TIMEOUT)
                .map_err(|_| format!("fts did not print {what}"))
        };
        let line = next("its address")?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("unexpected first line from fts: {line:?}"))?;
        let line = next("its fingerprint")?;
        let fingerprint = line
            .strip_prefix("fingerprint ")
            .and_then(|fingerprint| fingerprint.parse().ok())
            .ok_or_else(|| format!("unexpected second line from fts: {line:?}"))?;
        let admin_line = if new_store {
            Some(next("its first admin")?)
        } else {
            lines.recv_timeout(ANNOUNCEMENT_TIMEOUT).ok()
        };
        let admin_token = match admin_line {
            None => None,
            Some(line) if line.starts_with("user admin added") => {
                let connect = next("the admin's connect string")?;
                if !connect.starts_with("connect string") {
                    return Err(format!("unexpected fourth line from fts: {connect:?}"));
                }
                Some(next("the admin's token")?.trim().to_owned())
            }
            Some(line) => return Err(format!("unexpected third line from fts: {line:?}")),
        };
        Ok(Self {
            addr,
            fingerprint,
            admin_token,
        })
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
        let files = if count == 1 { "file" } else { "files" };
        assert!(
            self.stdout
                .contains(&format!("{count} of {count} {files} stored")),
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
///
/// Like every `ftc` the harness runs, it gets a fresh config folder (`XDG_CONFIG_HOME`) and
/// logs in as the test user of the server it talks to, with that server's certificate
/// pinned (`FTC_USER`, `FTC_TOKEN`, `FTC_FINGERPRINT`). That server is the first registered
/// address among the arguments, `FTC_SERVER` in `env`, and the `server` of the config file
/// when `env` sets `XDG_CONFIG_HOME` (an address on a registered port counts, for names
/// like `localhost`); else the server this test started last. The caller decides instead:
/// - on credentials (user and token together) when `env` sets either variable, the
///   arguments carry `--user` or `--token`, or its config file has `user` or `token`;
/// - on the fingerprint when `env` sets `FTC_FINGERPRINT`, the arguments carry
///   `--fingerprint`, or its config folder pins or knows servers already (`fingerprint` in
///   the config, entries in `known_servers`).
///
/// One of these three variables set to an empty value in `env` is removed instead.
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
    /// Its private configuration folder, unless the caller gave one.
    _config_home: Option<tempfile::TempDir>,
}

/// Starts `ftc args...` in the background.
pub fn spawn_ftc(cwd: &Path, args: &[&str]) -> RunningFtc {
    spawn_ftc_with(cwd, args, &[], None)
}

/// Starts `ftc args...` in the background with extra environment variables (see
/// [`ftc_with`] for how they decide who it logs in as).
pub fn spawn_ftc_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> RunningFtc {
    spawn_ftc_with(cwd, args, env, None)
}

/// The variables that make `ftc` log in to, and pin, a server.
const LOGIN_VARIABLES: [&str; 3] = ["FTC_USER", "FTC_TOKEN", "FTC_FINGERPRINT"];

/// Starts `ftc` isolated from the developer's own configuration (see [`ftc_with`]).
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
    let given = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let caller_config_home = given("XDG_CONFIG_HOME").map(PathBuf::from);
    let config_home = match &caller_config_home {
        Some(_) => None,
        None => Some(tempfile::tempdir().unwrap()),
    };
    let config: Option<toml::Table> = caller_config_home
        .as_ref()
        .and_then(|home| fs::read_to_string(home.join("ftc/config.toml")).ok())
        .and_then(|text| text.parse().ok());
    let mut command = Command::new(bin("ftc"));
    command.args(args).current_dir(cwd).env_remove("FTC_SERVER");
    for variable in LOGIN_VARIABLES {
        command.env_remove(variable);
    }
    if let Some(home) = &config_home {
        command.env("XDG_CONFIG_HOME", home.path());
    }
    if let Some(login) = registry::login_for_ftc(args, env, config.as_ref()) {
        let has_arg = |flag: &str| {
            args.iter()
                .any(|arg| *arg == flag || arg.starts_with(&format!("{flag}=")))
        };
        let in_config = |key: &str| config.as_ref().is_some_and(|table| table.contains_key(key));
        let caller_logs_in = given("FTC_USER").is_some()
            || given("FTC_TOKEN").is_some()
            || has_arg("--user")
            || has_arg("--token")
            || in_config("user")
            || in_config("token");
        if !caller_logs_in {
            command.env("FTC_USER", &login.user);
            command.env("FTC_TOKEN", &login.token);
        }
        let known = caller_config_home
            .as_ref()
            .and_then(|home| fs::read_to_string(home.join("ftc/known_servers")).ok())
            .is_some_and(|text| !text.trim().is_empty());
        let caller_pins = given("FTC_FINGERPRINT").is_some()
            || has_arg("--fingerprint")
            || in_config("fingerprint")
            || known;
        if !caller_pins {
            command.env("FTC_FINGERPRINT", login.fingerprint.to_string());
        }
    }
    for (key, value) in env {
        if value.is_empty() && LOGIN_VARIABLES.contains(key) {
            command.env_remove(key);
        } else {
            command.env(key, value);
        }
    }
    let child = command
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
        _config_home: config_home,
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

    /// The server's storage directory (`--dir`).
    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("recv")
    }

    /// Where the server stores the test user's files: its namespace in [`Self::store_dir`].
    pub fn recv(&self) -> PathBuf {
        self.store_dir().join(TEST_USER)
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

    /// Starts a server storing into [`Self::store_dir`].
    pub fn server(&self, extra: &[&str]) -> Server {
        Server::start(&self.store_dir(), extra)
    }

    /// Names of regular files stored (relative, `/`-separated) as the test user names them.
    /// A file anywhere else in the storage directory (outside its private area) is listed
    /// too, by its path from the storage directory with a leading `/`, so that it fails
    /// any comparison with the user's names.
    pub fn stored_names(&self) -> Vec<String> {
        let mut found = Vec::new();
        let store = self.store_dir();
        if store.exists() {
            collect_files(&store, &store, &mut found);
        }
        let prefix = format!("{TEST_USER}/");
        let mut names: Vec<String> = found
            .into_iter()
            .map(|name| match name.strip_prefix(&prefix) {
                Some(own) => own.to_owned(),
                None => format!("/{name}"),
            })
            .collect();
        names.sort();
        names
    }

    /// The server's area for uploads in progress or interrupted.
    pub fn partial_dir(&self) -> PathBuf {
        self.store_dir().join(".fts/partial")
    }

    /// Uploads in progress or kept for resume.
    pub fn partial_entries(&self) -> usize {
        self.partial_files().len()
    }

    /// Total bytes held in the partial area.
    pub fn partial_bytes(&self) -> u64 {
        self.partial_files()
            .iter()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Opens a logged-in connection and begins a 1 MiB upload of `name` on it, returning once
    /// the server has started that upload (its partial file exists). Until then the session
    /// may still count as idle, which a full server closes to admit another client; after,
    /// it holds an upload in flight, which it never closes.
    pub async fn upload_in_flight(&self, addr: SocketAddr, name: &str) -> RawClient {
        let before = self.partial_entries();
        let mut client = RawClient::handshake(addr).await;
        client.send(begin_request(1, name, 1 << 20)).await;
        let started = eventually(Duration::from_secs(10), || self.partial_entries() > before);
        assert!(started, "the server starts the upload of {name}");
        client
    }

    /// The files of the partial area: at its top and in its owner folders.
    pub fn partial_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(top) = fs::read_dir(self.partial_dir()) else {
            return files;
        };
        for entry in top.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                if let Ok(inner) = fs::read_dir(entry.path()) {
                    files.extend(inner.flatten().map(|inner| inner.path()));
                }
            } else {
                files.push(entry.path());
            }
        }
        files
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

/// The catalog as `ftc list --json` reports it to the test user: the `entry` objects (name,
/// sent_name, size, blake3, added_at), checked against the closing summary.
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
        prefix_hash: None,
        modified_ns: None,
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
