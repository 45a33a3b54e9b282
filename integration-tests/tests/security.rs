//! Security end to end, with the real binaries on loopback: TLS on the wire, certificate
//! pinning, logins, roles, namespaces, and hostile handshakes. Each test starts its own
//! `fts` and runs `ftc` with explicit credentials and a config folder of its own, so nothing
//! here depends on the harness's default user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use ft_protocol::{
    codec, Authenticate, BeginFile, Chunk, ConflictPolicy, Credentials, ErrorCode, FileIntent,
    FilePlan, Fingerprint, Hash, Hello, List, Prepare, Request, Response, Role, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use integration_tests::{bin, random_bytes, wait_bounded};

/// Longest any command or wait here may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A running `fts` started by this file, killed when dropped.
struct Fts {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    fingerprint: String,
    /// The first admin's token (only on a store's first start).
    admin_token: Option<String>,
    stdout: Vec<String>,
}

impl Fts {
    fn start(dir: &Path, extra: &[&str]) -> Fts {
        let log = dir.with_extension("log");
        let mut child = Command::new(bin("fts"))
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next = || rx.recv_timeout(LIMIT).expect("fts printed its lines");
        let first = next();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {first:?}"))
            .parse()
            .unwrap();
        let second = next();
        let fingerprint = second
            .strip_prefix("fingerprint ")
            .unwrap_or_else(|| panic!("second line {second:?}"))
            .to_owned();
        let mut lines = vec![first, second];
        // A first start adds the admin: three more lines, the token last.
        let mut admin_token = None;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
            lines.push(next());
            let token = next();
            lines.push(token.clone());
            admin_token = Some(token);
        }
        Fts {
            child,
            addr,
            dir: dir.to_path_buf(),
            fingerprint,
            admin_token,
            stdout: lines,
        }
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }

    /// What the server logged so far.
    fn log(&self) -> String {
        fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// `fts --dir DIR user ARGS...`, its exit status and stdout.
    fn user(&self, args: &[&str]) -> (i32, String, String) {
        fts_user(&self.dir, args)
    }

    /// Adds a user; returns its token (the last stdout line).
    fn add_user(&self, name: &str, role: &str) -> String {
        let (code, stdout, stderr) = self.user(&["add", name, "--role", role]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        stdout.lines().last().unwrap().to_owned()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fts {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fts_user(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(bin("fts"))
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:7878"])
        .arg("user")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What one `ftc` run printed.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Who `ftc` runs as: credentials (or none), a pinned fingerprint (or none), and its own
/// config folder (for known_servers).
struct As<'a> {
    user: Option<(&'a str, &'a str)>,
    fingerprint: Option<&'a str>,
    config: &'a Path,
}

fn ftc(cwd: &Path, who: &As<'_>, args: &[&str]) -> Ran {
    let mut command = Command::new(bin("ftc"));
    command
        .current_dir(cwd)
        .args(args)
        .env("XDG_CONFIG_HOME", who.config)
        .env_remove("FTC_SERVER")
        .env_remove("FTC_USER")
        .env_remove("FTC_TOKEN")
        .env_remove("FTC_FINGERPRINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((user, token)) = who.user {
        command.env("FTC_USER", user).env("FTC_TOKEN", token);
    }
    if let Some(fingerprint) = who.fingerprint {
        command.env("FTC_FINGERPRINT", fingerprint);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(&mut child, LIMIT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("ftc {args:?} did not finish in {LIMIT:?}")
    });
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A temporary place: the server's directory, a folder of files to send, and a config folder.
struct Place {
    _root: tempfile::TempDir,
    store: PathBuf,
    src: PathBuf,
    config: PathBuf,
}

impl Place {
    fn new() -> Place {
        let root = tempfile::tempdir().unwrap();
        let (store, src, config) = (
            root.path().join("store"),
            root.path().join("src"),
            root.path().join("config"),
        );
        fs::create_dir_all(&src).unwrap();
        Place {
            _root: root,
            store,
            src,
            config,
        }
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        fs::write(self.src.join(name), content).unwrap();
        name.to_owned()
    }

    fn pinned<'a>(&'a self, server: &'a Fts, user: &'a str, token: &'a str) -> As<'a> {
        As {
            user: Some((user, token)),
            fingerprint: Some(&server.fingerprint),
            config: &self.config,
        }
    }
}

/// A TCP proxy that records every byte it forwards, both ways.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        thread::spawn(move || {
            for client in listener.incoming().take(16) {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(upstream).unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let recorded = Arc::clone(&recorded);
                    thread::spawn(move || {
                        let mut buffer = [0u8; 64 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Recorder { addr, seen }
    }

    fn contains(&self, needle: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|window| window == needle)
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[test]
fn nothing_readable_crosses_the_wire() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let token = server.admin_token.clone().unwrap();
    let recorder = Recorder::start(server.addr);
    let secret = b"TOP-SECRET-CONTENT-0123456789 ".repeat(2000);
    let name = place.file("very-distinctive-name.txt", &secret);
    let who = place.pinned(&server, "admin", &token);
    let through = recorder.addr.to_string();
    let sent = ftc(
        &place.src,
        &who,
        &["send", &through, &name, "--no-progress"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    let listed = ftc(&place.src, &who, &["list", &through]);
    assert!(
        listed.stdout.contains("very-distinctive-name.txt"),
        "{listed:?}"
    );
    assert!(
        recorder.len() > secret.len(),
        "the file went through the recorder"
    );
    assert!(
        !recorder.contains(b"TOP-SECRET-CONTENT"),
        "file content in clear"
    );
    assert!(
        !recorder.contains(b"very-distinctive-name"),
        "file name in clear"
    );
    assert!(!recorder.contains(token.as_bytes()), "token in clear");
    assert!(
        !recorder.contains(&token.as_bytes()[..16]),
        "token prefix in clear"
    );
}

#[test]
fn first_start_prints_the_certificate_and_an_admin_and_keeps_the_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let place = Place::new();
    let mut server = Fts::start(&place.store, &[]);
    assert!(
        server.fingerprint.parse::<Fingerprint>().is_ok(),
        "{server:?}",
        server = server.stdout
    );
    let key = place.store.join(".fts/key.pem");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = server.admin_token.clone().unwrap();
    assert_eq!(token.len(), 64);
    let connect = server
        .stdout
        .iter()
        .find(|line| line.contains("ft://"))
        .unwrap();
    assert!(
        connect.contains(&format!(
            "ft://admin:{token}@127.0.0.1:{}/#{}",
            server.addr.port(),
            server.fingerprint
        )),
        "{connect}"
    );
    // A restart keeps the certificate and prints nothing secret.
    server.stop();
    let again = Fts::start(&place.store, &[]);
    assert_eq!(again.fingerprint, server.fingerprint);
    assert!(again.admin_token.is_none(), "{:?}", again.stdout);
    assert_eq!(again.stdout.len(), 2);
}

#[test]
fn a_changed_certificate_is_refused_and_a_wrong_pin_sends_nothing() {
    let place = Place::new();
    let mut server = Fts::start(&place.store, &[]);
    let token = server.admin_token.clone().unwrap();
    let file = place.file("a.txt", b"hello");
    // Trust on first use: recorded, said once.
    let first_use = As {
        user: Some(("admin", &token)),
        fingerprint: None,
        config: &place.config,
    };
    let sent = ftc(
        &place.src,
        &first_use,
        &["send", &server.address(), &file, "--no-progress"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    assert!(sent.stderr.contains("first connection"), "{sent:?}");
    let known = fs::read_to_string(place.config.join("ftc/known_servers")).unwrap();
    assert!(known.contains(&server.fingerprint), "{known}");
    let again = ftc(&place.src, &first_use, &["list", &server.address()]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        !again.stderr.contains("first connection"),
        "said once: {again:?}"
    );

    // The server comes back on the same port with a new certificate.
    let old = server.fingerprint.clone();
    let port = server.addr.port();
    server.stop();
    fs::remove_file(place.store.join(".fts/cert.pem")).unwrap();
    fs::remove_file(place.store.join(".fts/key.pem")).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin("fts"))
        .arg("--dir")
        .arg(&place.store)
        .args(["--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("listening on"));
    let new = lines.next().unwrap().unwrap().replace("fingerprint ", "");
    assert_ne!(new, old);
    let other = place.file("b.txt", b"must not arrive");
    let refused = ftc(
        &place.src,
        &first_use,
        &["send", &listen, &other, "--no-progress"],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stderr.contains(&old) && refused.stderr.contains(&new),
        "both fingerprints named: {refused:?}"
    );
    assert!(refused.stderr.contains("known_servers"), "{refused:?}");
    assert!(!place.store.join("admin/b.txt").exists());

    // A wrong pin up front: refused before any request.
    let server = Fts::start(&place.store, &[]);
    let wrong = format!("SHA256:{}", "00".repeat(32));
    let pinned_wrong = As {
        user: Some(("admin", &token)),
        fingerprint: Some(&wrong),
        config: &place.config,
    };
    let refused = ftc(
        &place.src,
        &pinned_wrong,
        &["send", &server.address(), &other, "--no-progress"],
    );
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains(&wrong), "{refused:?}");
    assert!(!place.store.join("admin/b.txt").exists());
}

/// What each role may do, request by request, through the CLI.
#[test]
fn every_role_gets_exactly_its_rights() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let address = server.address();
    let mut checked = 0;
    for role in ["write", "upload", "read"] {
        let name = format!("user-{role}");
        let token = server.add_user(&name, role);
        let who = place.pinned(&server, &name, &token);
        // Something to read, put in the user's namespace by the admin.
        let admin = place.pinned(&server, "admin", server.admin_token.as_deref().unwrap());
        let seed = place.file(&format!("seed-{role}.txt"), b"seed");
        let planted = place.src.join(&name);
        fs::create_dir_all(&planted).unwrap();
        fs::copy(place.src.join(&seed), planted.join("seed.txt")).unwrap();
        let put = ftc(
            &place.src,
            &admin,
            &["send", &address, &name, "--no-progress"],
        );
        assert_eq!(put.code, 0, "{put:?}");
        assert!(place.store.join(&name).join("seed.txt").exists(), "{put:?}");

        let new = place.file(&format!("new-{role}.txt"), b"new");
        let send = ftc(&place.src, &who, &["send", &address, &new, "--no-progress"]);
        let overwrite = ftc(
            &place.src,
            &who,
            &["send", &address, &new, "--overwrite", "--no-progress"],
        );
        let list = ftc(&place.src, &who, &["list", &address]);
        let out = place.src.join(format!("out-{role}"));
        let get = ftc(
            &place.src,
            &who,
            &[
                "get",
                &address,
                "seed.txt",
                "-o",
                out.to_str().unwrap(),
                "--no-progress",
            ],
        );
        let info = ftc(&place.src, &who, &["info", &address]);
        let rm = ftc(&place.src, &who, &["rm", &address, "seed.txt"]);
        let allowed = |ran: &Ran| ran.code == 0;
        let forbidden = |ran: &Ran| ran.code == 1 && ran.stderr.contains("forbidden");
        let expect = |what: &str, ran: &Ran, may: bool| {
            let ok = if may { allowed(ran) } else { forbidden(ran) };
            assert!(
                ok,
                "role {role}: {what} should be {}: {ran:?}",
                if may { "allowed" } else { "forbidden" }
            );
        };
        let (w, u, r) = (role == "write", role == "upload", role == "read");
        expect("send", &send, w || u);
        expect("send --overwrite", &overwrite, w);
        expect("list", &list, w || r);
        expect("get", &get, w || r);
        expect("info", &info, true);
        expect("rm", &rm, w);
        if w || r {
            assert_eq!(
                fs::read(out.join("seed.txt")).unwrap(),
                b"seed",
                "role {role}"
            );
            assert!(
                list.stdout.contains("seed.txt") && !list.stdout.contains(&format!("{name}/")),
                "{list:?}"
            );
        }
        assert_eq!(
            place.store.join(&name).join("seed.txt").exists(),
            !w,
            "role {role}: rm"
        );
        assert_eq!(
            place.store.join(&name).join(&new).exists(),
            w || u,
            "role {role}: send"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn users_never_see_or_touch_each_others_files() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let address = server.address();
    let (alice_token, bob_token) = (
        server.add_user("alice", "write"),
        server.add_user("bob", "write"),
    );
    let alice = place.pinned(&server, "alice", &alice_token);
    let bob = place.pinned(&server, "bob", &bob_token);
    let file = place.file("report.txt", b"alice's report");
    assert_eq!(
        ftc(
            &place.src,
            &alice,
            &["send", &address, &file, "--no-progress"]
        )
        .code,
        0
    );
    assert_eq!(
        fs::read(place.store.join("alice/report.txt")).unwrap(),
        b"alice's report"
    );

    let listed = ftc(&place.src, &bob, &["list", &address]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        !listed.stdout.contains("report"),
        "bob sees alice's file: {listed:?}"
    );
    let out = place.src.join("bob-out");
    for name in ["report.txt", "alice/report.txt", "../alice/report.txt"] {
        let get = ftc(
            &place.src,
            &bob,
            &[
                "get",
                &address,
                name,
                "-o",
                out.to_str().unwrap(),
                "--no-progress",
            ],
        );
        assert_ne!(get.code, 0, "bob got {name}: {get:?}");
        let rm = ftc(&place.src, &bob, &["rm", &address, name]);
        assert_ne!(rm.code, 0, "bob removed {name}: {rm:?}");
    }
    assert!(!out.join("report.txt").exists());
    fs::write(place.src.join("report.txt"), b"bob's version").unwrap();
    let over = ftc(
        &place.src,
        &bob,
        &[
            "send",
            &address,
            "report.txt",
            "--overwrite",
            "--no-progress",
        ],
    );
    assert_eq!(over.code, 0, "{over:?}");
    assert_eq!(
        fs::read(place.store.join("alice/report.txt")).unwrap(),
        b"alice's report",
        "alice's file is untouched"
    );
    assert_eq!(
        fs::read(place.store.join("bob/report.txt")).unwrap(),
        b"bob's version"
    );

    // The admin sees both, under full names, with their owners.
    let admin = place.pinned(&server, "admin", server.admin_token.as_deref().unwrap());
    let all = ftc(&place.src, &admin, &["list", &address]);
    assert!(
        all.stdout.contains("alice/report.txt") && all.stdout.contains("bob/report.txt"),
        "{all:?}"
    );
    assert!(all.stdout.contains("OWNER"), "{all:?}");
}

#[test]
fn logins_rotation_removal_and_anonymous_access() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let address = server.address();
    let file = place.file("x.txt", b"x");

    let nobody = As {
        user: None,
        fingerprint: Some(&server.fingerprint),
        config: &place.config,
    };
    let anonymous = ftc(
        &place.src,
        &nobody,
        &["send", &address, &file, "--no-progress"],
    );
    assert_eq!(
        anonymous.code, 3,
        "anonymous is off by default: {anonymous:?}"
    );
    assert!(anonymous.stderr.contains("unauthorized"), "{anonymous:?}");

    let token = server.add_user("carol", "write");
    let wrong = place.pinned(&server, "carol", "0000");
    let refused = ftc(&place.src, &wrong, &["list", &address]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stderr.contains("unknown user or wrong token"),
        "{refused:?}"
    );
    let unknown = place.pinned(&server, "mallory", &token);
    assert_eq!(ftc(&place.src, &unknown, &["list", &address]).code, 3);

    let carol = place.pinned(&server, "carol", &token);
    assert_eq!(ftc(&place.src, &carol, &["list", &address]).code, 0);
    let sent = ftc(
        &place.src,
        &carol,
        &["send", &address, &file, "--no-progress"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    let log = server.log();
    assert!(
        log.contains("login failed") && log.contains("peer=127.0.0.1") && log.contains("mallory"),
        "failed logins are logged with the peer: {log}"
    );
    // A small file's own line is at debug; the connection's summary names the user and
    // counts it.
    assert!(
        log.lines().any(|line| line.contains("connection closed")
            && line.contains("user=")
            && line.contains("carol")
            && line.contains("files=1")),
        "connection lines name the user and count the files: {log}"
    );
    let (code, stdout, _) = server.user(&["token", "carol"]);
    assert_eq!(code, 0);
    let rotated = stdout.lines().last().unwrap().to_owned();
    assert_ne!(rotated, token);
    assert_eq!(
        ftc(&place.src, &carol, &["list", &address]).code,
        3,
        "the old token is dead"
    );
    let carol = place.pinned(&server, "carol", &rotated);
    assert_eq!(ftc(&place.src, &carol, &["list", &address]).code, 0);

    let (code, listed, _) = server.user(&["list"]);
    assert_eq!(code, 0);
    assert!(
        listed.contains("carol") && listed.contains("write") && listed.contains("admin"),
        "{listed}"
    );
    assert_eq!(server.user(&["remove", "carol"]).0, 0);
    assert_eq!(
        ftc(&place.src, &carol, &["list", &address]).code,
        3,
        "removed"
    );
    let (code, _, stderr) = server.user(&["remove", "carol"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = server.user(&["add", "Bad Name"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("user name"), "{stderr}");
    drop(server);

    // Anonymous drop box.
    let place = Place::new();
    let server = Fts::start(&place.store, &["--anonymous", "upload"]);
    let address = server.address();
    let nobody = As {
        user: None,
        fingerprint: Some(&server.fingerprint),
        config: &place.config,
    };
    let file = place.file("dropped.txt", b"dropped");
    let sent = ftc(
        &place.src,
        &nobody,
        &["send", &address, &file, "--no-progress"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    assert_eq!(
        fs::read(place.store.join("anonymous/dropped.txt")).unwrap(),
        b"dropped"
    );
    let listed = ftc(&place.src, &nobody, &["list", &address]);
    assert_eq!(listed.code, 1, "{listed:?}");
    assert!(listed.stderr.contains("forbidden"), "{listed:?}");
    // Sending the same content again does not confirm that it is stored: a drop box's
    // senders share the namespace and may not read it.
    let probe = ftc(
        &place.src,
        &nobody,
        &["send", &address, &file, "--no-progress"],
    );
    assert_eq!(probe.code, 0, "{probe:?}");
    assert!(!probe.stdout.contains("unchanged"), "{probe:?}");
}

#[test]
fn ftc_login_stores_a_connect_string_privately() {
    use std::os::unix::fs::PermissionsExt;
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let token = server.add_user("dave", "write");
    let (_, stdout, _) = (0, server.stdout.join("\n"), ());
    assert!(stdout.contains("ft://admin:"));
    let connect = format!(
        "ft://dave:{token}@{}/#{}",
        server.address(),
        server.fingerprint
    );
    let nobody = As {
        user: None,
        fingerprint: None,
        config: &place.config,
    };
    let login = ftc(&place.src, &nobody, &["login", &connect]);
    assert_eq!(login.code, 0, "{login:?}");
    let config = place.config.join("ftc/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&token) && text.contains(&server.fingerprint),
        "{text}"
    );
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No flags needed afterwards.
    let file = place.file("after-login.txt", b"ok");
    let sent = ftc(&place.src, &nobody, &["send", &file, "--no-progress"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    assert!(place.store.join("dave/after-login.txt").exists());
    let bad = format!(
        "ft://dave:wrong@{}/#{}",
        server.address(),
        server.fingerprint
    );
    let failed = ftc(&place.src, &nobody, &["login", &bad]);
    assert_eq!(failed.code, 3, "{failed:?}");

    // The saved login is for its own server only: another server named on the command line
    // never sees dave's token (the connection is anonymous, and refused as such).
    let other_store = place.src.join("other-store");
    let other = Fts::start(&other_store, &[]);
    let listed = ftc(&place.src, &nobody, &["list", &other.address()]);
    assert_ne!(listed.code, 0, "{listed:?}");
    let other_log = other.log();
    assert!(!other_log.contains("dave"), "{other_log}");
    assert!(!listed.stderr.contains("dave"), "{listed:?}");
}

/// Without HOME or XDG_CONFIG_HOME (cron, a service) there is nowhere to record a server's
/// certificate: ftc refuses to trust one silently and asks for a pin, which then works.
#[test]
fn without_a_config_folder_a_pin_is_required() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let token = server.add_user("frank", "write");
    let address = server.address();
    let run = |extra: &[&str]| {
        let mut args = vec!["info", address.as_str()];
        args.extend_from_slice(extra);
        Command::new(bin("ftc"))
            .current_dir(&place.src)
            .args(&args)
            .env_clear()
            .env("FTC_USER", "frank")
            .env("FTC_TOKEN", &token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let unpinned = run(&[]);
    let stderr = String::from_utf8_lossy(&unpinned.stderr);
    assert_eq!(unpinned.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--fingerprint"), "{stderr}");
    let pinned = run(&["--fingerprint", &server.fingerprint]);
    let stderr = String::from_utf8_lossy(&pinned.stderr);
    assert_eq!(pinned.status.code(), Some(0), "{stderr}");
}

/// A raw TLS client speaking the protocol directly.
struct Raw {
    reader: codec::MessageReader<tokio::io::ReadHalf<ft_client::tls::TlsStream>, Response>,
    writer: codec::MessageWriter<tokio::io::WriteHalf<ft_client::tls::TlsStream>, Request>,
}

impl Raw {
    async fn login(server: &Fts, credentials: Option<Credentials>) -> (Raw, Response) {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let pinned = server.fingerprint.parse().unwrap();
        let (stream, _) = ft_client::tls::connect(tcp, "127.0.0.1", Some(pinned))
            .await
            .unwrap();
        let (read, write) = tokio::io::split(stream);
        let mut raw = Raw {
            reader: codec::message_reader(read),
            writer: codec::message_writer(write),
        };
        raw.send(Request::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            software: "security-test".into(),
            capabilities: vec![],
        }))
        .await;
        assert!(matches!(raw.recv().await, Some(Response::Welcome(_))));
        raw.send(Request::Authenticate(Authenticate { credentials }))
            .await;
        let answer = raw.recv().await.expect("an answer to Authenticate");
        (raw, answer)
    }

    async fn send(&mut self, request: Request) {
        self.writer.send(request).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Response> {
        match tokio::time::timeout(LIMIT, self.reader.next()).await {
            Ok(Some(Ok(response))) => Some(response),
            Ok(_) => None,
            Err(_) => panic!("no answer within {LIMIT:?}"),
        }
    }
}

/// `who` sends the first two of `data`'s chunks as `name` under `key`, then vanishes; returns
/// once the server has kept them for resume.
async fn interrupted_upload(server: &Fts, who: (&str, &str), name: &str, key: Hash, data: &[u8]) {
    let (mut client, answer) = Raw::login(server, credentials(who.0, who.1)).await;
    assert!(matches!(answer, Response::Authenticated(_)), "{answer:?}");
    client
        .send(Request::BeginFile(BeginFile {
            modified_ns: None,
            id: 1,
            name: name.into(),
            size: data.len() as u64,
            conflict: ConflictPolicy::KeepBoth,
            key,
            offset: 0,
            prefix_hash: None,
        }))
        .await;
    for piece in data.chunks(ft_protocol::CHUNK_SIZE).take(2) {
        client
            .send(Request::Chunk(Chunk {
                data: piece.to_vec().into(),
            }))
            .await;
    }
    drop(client);
    wait_for_vanished(server, &format!("{}/{name}", who.0));
}

/// A new session of `who`, and the plan the server gives it for `intent`.
async fn plan_for(server: &Fts, who: (&str, &str), intent: &FileIntent) -> (Raw, FilePlan) {
    let (mut client, _) = Raw::login(server, credentials(who.0, who.1)).await;
    client
        .send(Request::Prepare(Prepare {
            files: vec![intent.clone()],
            append: false,
        }))
        .await;
    match client.recv().await {
        Some(Response::Prepared(mut prepared)) if prepared.plans.len() == 1 => {
            let plan = prepared.plans.remove(0);
            (client, plan)
        }
        other => panic!("expected one plan, got {other:?}"),
    }
}

/// Waits until the server noticed that the client sending `name` vanished mid-file, so the
/// bytes it received are kept (a Prepare racing the vanishing client would take the upload
/// over before any byte was written, and find nothing to resume).
fn wait_for_vanished(server: &Fts, name: &str) {
    let deadline = Instant::now() + LIMIT;
    let needle = format!("client disconnected during '{name}'");
    while !server.log().contains(&needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged: {}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn credentials(user: &str, token: &str) -> Option<Credentials> {
    Some(Credentials {
        user: user.into(),
        token: token.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_can_never_resume_a_partial_upload() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let (alice_token, bob_token) = (
        server.add_user("alice", "write"),
        server.add_user("bob", "write"),
    );
    let key = Hash([42; 32]);
    let data = random_bytes(3 * ft_protocol::CHUNK_SIZE, 7);
    let intent = FileIntent::new("big.bin", data.len() as u64, key);
    interrupted_upload(&server, ("alice", &alice_token), "big.bin", key, &data).await;
    let (_, plan) = plan_for(&server, ("alice", &alice_token), &intent).await;
    assert!(
        matches!(plan, FilePlan::Resume { .. }),
        "alice is offered her resume: {plan:?}"
    );
    // Bob, knowing the key, is offered nothing to resume.
    let (mut bob, plan) = plan_for(&server, ("bob", &bob_token), &intent).await;
    assert_eq!(plan, FilePlan::Fresh);
    // Resuming at alice's offset anyway is a protocol violation, not a takeover.
    bob.send(Request::BeginFile(BeginFile {
        modified_ns: None,
        id: 1,
        name: "big.bin".into(),
        size: data.len() as u64,
        conflict: ConflictPolicy::KeepBoth,
        key,
        offset: 2 * ft_protocol::CHUNK_SIZE as u64,
        prefix_hash: Some(Hash::from(blake3::hash(
            &data[..2 * ft_protocol::CHUNK_SIZE],
        ))),
    }))
    .await;
    match bob.recv().await {
        Some(Response::Error(error)) => assert_eq!(error.code, ErrorCode::ProtocolViolation),
        other => panic!("{other:?}"),
    }
    assert!(!place.store.join("bob/big.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_is_cut_at_the_next_request_and_failures_are_slowed() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let token = server.add_user("erin", "read");
    let (mut erin, answer) = Raw::login(&server, credentials("erin", &token)).await;
    assert!(
        matches!(answer, Response::Authenticated(ref a) if a.user == "erin" && a.role == Role::Read)
    );
    erin.send(Request::List(List { pattern: None })).await;
    assert!(matches!(erin.recv().await, Some(Response::Listing(_))));
    assert_eq!(server.user(&["remove", "erin"]).0, 0);
    erin.send(Request::List(List { pattern: None })).await;
    match erin.recv().await {
        Some(Response::Error(error)) => assert_eq!(error.code, ErrorCode::Unauthorized),
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert!(erin.recv().await.is_none(), "the connection is closed");

    // Failed logins from one address come slower and slower.
    let started = Instant::now();
    for _ in 0..4 {
        let (_, answer) = Raw::login(&server, credentials("erin", "guess")).await;
        match answer {
            Response::Error(error) => assert_eq!(error.code, ErrorCode::Unauthorized),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "four failures in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_plaintext_clients_get_clear_answers_and_the_server_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    // A ClientHello record full of garbage.
    let mut garbage = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x00\x20garbage-garbage-garbage-garbage!")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(LIMIT, garbage.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server closes a garbage handshake");
    // A client of the plaintext protocol is told, in its own terms.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let payload = codec::encode(&Request::Hello(Hello {
        protocol_version: 6,
        software: "old-ftc".into(),
        capabilities: vec![],
    }))
    .unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    plain.write_all(&frame).await.unwrap();
    let mut reader = codec::message_reader::<_, Response>(plain);
    match tokio::time::timeout(LIMIT, reader.next()).await.unwrap() {
        Some(Ok(Response::Error(error))) => {
            assert_eq!(error.code, ErrorCode::VersionMismatch);
            assert!(error.message.contains("TLS"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    // Bad credentials, then a good login: the server still serves.
    let (_, answer) = Raw::login(&server, credentials("admin", "wrong")).await;
    assert!(matches!(answer, Response::Error(ref e) if e.code == ErrorCode::Unauthorized));
    let (mut admin, answer) = Raw::login(
        &server,
        credentials("admin", server.admin_token.as_deref().unwrap()),
    )
    .await;
    assert!(matches!(answer, Response::Authenticated(_)), "{answer:?}");
    admin.send(Request::List(List { pattern: None })).await;
    assert!(matches!(admin.recv().await, Some(Response::Listing(_))));
}

/// Copies a folder tree (a fixture) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A store written by the version before users and namespaces (protocol 6: `fts` and `ftc`
/// of that version sent `notes.txt`, `photos/a.jpg`, and `notes.txt` again, kept as
/// `notes (1).txt`) is upgraded at its first start: every file moves into the admin's
/// namespace with its record, and stays verifiable.
#[test]
fn a_store_made_before_namespaces_is_upgraded_at_its_first_start() {
    let place = Place::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-protocol-6");
    copy_tree(&fixture, &place.store);
    let before: Vec<String> = ["notes.txt", "notes (1).txt", "photos/a.jpg"]
        .iter()
        .map(|name| fs::read_to_string(place.store.join(name)).unwrap())
        .collect();
    let server = Fts::start(&place.store, &[]);
    let token = server
        .admin_token
        .clone()
        .expect("an upgraded store gets its first admin");
    for (name, content) in ["notes.txt", "notes (1).txt", "photos/a.jpg"]
        .iter()
        .zip(&before)
    {
        assert!(!place.store.join(name).exists(), "{name} left at the top");
        assert_eq!(
            &fs::read_to_string(place.store.join("admin").join(name)).unwrap(),
            content
        );
    }
    let admin = place.pinned(&server, "admin", &token);
    let address = server.address();
    let listed = ftc(&place.src, &admin, &["list", &address, "--json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    for name in [
        "admin/notes.txt",
        "admin/notes (1).txt",
        "admin/photos/a.jpg",
    ] {
        assert!(
            listed.stdout.contains(&format!("\"name\":\"{name}\"")),
            "{name}: {listed:?}"
        );
    }
    assert!(listed.stdout.contains("\"owner\":\"admin\""), "{listed:?}");
    let out = place.src.join("restored");
    let got = ftc(
        &place.src,
        &admin,
        &[
            "get",
            &address,
            "admin/photos/a.jpg",
            "-o",
            out.to_str().unwrap(),
            "--no-progress",
        ],
    );
    assert_eq!(got.code, 0, "verified against the upgraded record: {got:?}");
    assert_eq!(
        fs::read_to_string(out.join("admin/photos/a.jpg")).unwrap(),
        before[2]
    );
    // A second start finds nothing left to upgrade.
    drop(server);
    let again = Fts::start(&place.store, &[]);
    assert!(again.admin_token.is_none());
    let top: Vec<_> = fs::read_dir(&place.store)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top.len(), 2, "{top:?}");
}

#[test]
fn an_operators_certificate_is_used_instead_of_a_made_one() {
    let place = Place::new();
    let first = Fts::start(&place.store, &[]);
    let (cert, key) = (
        place.store.join(".fts/cert.pem"),
        place.store.join(".fts/key.pem"),
    );
    let other = place.store.with_file_name("other-store");
    let second = Fts::start(
        &other,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(second.fingerprint, first.fingerprint);
    assert!(
        !other.join(".fts/cert.pem").exists(),
        "no certificate is made"
    );
    let token = second.admin_token.clone().unwrap();
    let who = place.pinned(&second, "admin", &token);
    assert_eq!(ftc(&place.src, &who, &["info", &second.address()]).code, 0);
    // A key that is not PEM: a clear error naming the file, exit 1.
    fs::write(place.src.join("bad.pem"), b"not a key").unwrap();
    let refused = Command::new(bin("fts"))
        .arg("--dir")
        .arg(place.store.with_file_name("third-store"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
        ])
        .arg(place.src.join("bad.pem"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("bad.pem"), "{stderr}");
}

/// Knowing a resume key is not enough, even for the same user: the server offers only the
/// offset, never a hash of what it holds, and continues only for a client that shows the
/// hash of those bytes; a wrong one discards them, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_key_alone_reveals_and_completes_nothing() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let token = server.add_user("frank", "write");
    let key = Hash([77; 32]);
    let data = random_bytes(3 * ft_protocol::CHUNK_SIZE, 11);
    let intent = FileIntent::new("secret.bin", data.len() as u64, key);
    let begin = |offset: u64, prefix_hash: Option<Hash>| {
        Request::BeginFile(BeginFile {
            modified_ns: None,
            id: 1,
            name: "secret.bin".into(),
            size: data.len() as u64,
            conflict: ConflictPolicy::KeepBoth,
            key,
            offset,
            prefix_hash,
        })
    };
    interrupted_upload(&server, ("frank", &token), "secret.bin", key, &data).await;
    // Another client of the same user who knows only the key.
    let (mut guesser, plan) = plan_for(&server, ("frank", &token), &intent).await;
    let FilePlan::Resume { offset } = plan else {
        panic!("no resume offered: {plan:?}");
    };
    assert!(offset > 0);
    guesser.send(begin(offset, Some(Hash([0; 32])))).await;
    match guesser.recv().await {
        Some(Response::Error(error)) => {
            assert_eq!((error.id, error.code), (Some(1), ErrorCode::HashMismatch));
        }
        other => panic!("expected hash-mismatch, got {other:?}"),
    }
    // The refused file is finished as the grammar wants, then: the held bytes are gone, the
    // next offer is a fresh start, and nothing was stored.
    guesser
        .send(Request::CancelFile(ft_protocol::CancelFile {
            reason: "refused".into(),
        }))
        .await;
    guesser
        .send(Request::Prepare(Prepare {
            files: vec![intent.clone()],
            append: false,
        }))
        .await;
    match guesser.recv().await {
        Some(Response::Prepared(prepared)) => assert_eq!(prepared.plans[0], FilePlan::Fresh),
        other => panic!("{other:?}"),
    }
    assert!(!place.store.join("frank/secret.bin").exists());
}

#[test]
fn an_admin_gets_its_own_files_by_their_short_name() {
    let place = Place::new();
    let server = Fts::start(&place.store, &[]);
    let address = server.address();
    let token = server
        .admin_token
        .clone()
        .expect("a first start prints the admin's token");
    let admin = place.pinned(&server, "admin", &token);
    let file = place.file("a.txt", b"the admin's own");
    let sent = ftc(
        &place.src,
        &admin,
        &["send", &address, &file, "--no-progress"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    let out = place.src.join("admin-out");
    for (name, saved) in [("a.txt", "a.txt"), ("admin/a.txt", "admin/a.txt")] {
        let target = out.join(name.replace('/', "-"));
        let got = ftc(
            &place.src,
            &admin,
            &[
                "get",
                &address,
                name,
                "-o",
                target.to_str().unwrap(),
                "--no-progress",
            ],
        );
        assert_eq!(got.code, 0, "get {name}: {got:?}");
        assert_eq!(fs::read(target.join(saved)).unwrap(), b"the admin's own");
    }
}
