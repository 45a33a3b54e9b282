//! Who may talk to which server: a process-global record of every server the harness started
//! (and every proxy in front of one), so that each client it runs logs in and pins the right
//! certificate without the test spelling it out.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, OnceLock},
};

use ft_protocol::{Credentials, Fingerprint};

/// How a client logs in to one server and recognises it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The server certificate's fingerprint, which clients pin.
    pub fingerprint: Fingerprint,
    /// The user to log in as.
    pub user: String,
    /// Its token.
    pub token: String,
}

impl Login {
    /// The credentials of an `Authenticate`.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            user: self.user.clone(),
            token: self.token.clone(),
        }
    }
}

/// Tokens per storage directory and logins per address, for the whole test process.
#[derive(Default)]
struct Registry {
    /// The test user's token of each storage directory (a restarted server keeps its users).
    tokens: HashMap<PathBuf, String>,
    /// The admin token each storage directory printed on its first start.
    admin_tokens: HashMap<PathBuf, String>,
    /// `HOST:PORT` as clients write it -> how to log in there.
    servers: HashMap<String, Login>,
}

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

thread_local! {
    /// The address of the server this thread (one test) started last.
    static LAST_STARTED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The registry, even if a test panicked while holding it (it holds plain maps).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The test user's token recorded for the storage directory `dir`, if any.
pub(crate) fn token_of_dir(dir: &Path) -> Option<String> {
    registry().tokens.get(dir).cloned()
}

/// Records the test user's token (and the admin's, when known) of the storage directory `dir`.
pub(crate) fn record_dir(dir: &Path, token: &str, admin_token: Option<&str>) {
    let mut registry = registry();
    registry.tokens.insert(dir.to_path_buf(), token.to_owned());
    if let Some(admin) = admin_token {
        registry
            .admin_tokens
            .insert(dir.to_path_buf(), admin.to_owned());
    }
}

/// The admin token the storage directory `dir` printed on its first start, if this process saw it.
pub(crate) fn admin_token_of_dir(dir: &Path) -> Option<String> {
    registry().admin_tokens.get(dir).cloned()
}

/// Records how to log in at `address` (`HOST:PORT`, as clients are given it). A later
/// record for the same address replaces the earlier one.
pub fn register(address: &str, login: Login) {
    registry().servers.insert(address.to_owned(), login);
}

/// Records `address` as the server this test started last: the one its clients talk to when
/// nothing else names one.
pub(crate) fn started(address: &str) {
    LAST_STARTED.with(|last| *last.borrow_mut() = Some(address.to_owned()));
}

/// How to log in at `address`, if a server (or a proxy in front of one) was registered there.
pub fn registered(address: &str) -> Option<Login> {
    registry().servers.get(address).cloned()
}

/// The login of the server that `ftc` with `args` and the caller's `env` will talk to: a
/// registered address among the arguments, else in `FTC_SERVER`, else the config file's
/// `server` (when the caller set `XDG_CONFIG_HOME`), else the server this thread started
/// last. A `HOST:PORT` naming a registered server's port by another host name (`localhost`)
/// counts too.
pub(crate) fn login_for_ftc(
    args: &[&str],
    env: &[(&str, &str)],
    config: Option<&toml::Table>,
) -> Option<Login> {
    let from_env = env
        .iter()
        .filter(|(key, _)| *key == "FTC_SERVER")
        .map(|(_, value)| *value);
    let from_config = config
        .and_then(|table| table.get("server"))
        .and_then(toml::Value::as_str);
    let candidates: Vec<&str> = args
        .iter()
        .copied()
        .chain(from_env)
        .chain(from_config)
        .collect();
    let registry = registry();
    let exact = candidates
        .iter()
        .find_map(|candidate| registry.servers.get(*candidate));
    let by_port = || {
        candidates.iter().find_map(|candidate| {
            let port = port_of(candidate)?;
            registry
                .servers
                .iter()
                .find(|(address, _)| port_of(address) == Some(port))
                .map(|(_, login)| login)
        })
    };
    let last_address = LAST_STARTED.with(|last| last.borrow().clone());
    let last = last_address
        .as_deref()
        .and_then(|address| registry.servers.get(address));
    // Among servers on the port asked for, this test's own comes first.
    let last_by_port = || {
        let port = port_of(last_address.as_deref()?)?;
        candidates
            .iter()
            .any(|candidate| port_of(candidate) == Some(port))
            .then_some(last?)
    };
    exact
        .or_else(last_by_port)
        .or_else(by_port)
        .or(last)
        .cloned()
}

/// The port of `HOST:PORT`.
fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}
