//! How a client proves who it is and knows whom it talks to: its credentials, and the
//! fingerprint it expects of the server's certificate (pinned, or learnt on first use and
//! kept in the known servers file).

use std::{fmt, path::Path, sync::Arc};

use ft_protocol::{Credentials, Fingerprint};

use crate::{address::ServerAddress, error::ClientError, known_servers::KnownServers};

/// Called when a server is trusted for the first time: its address, its fingerprint and the
/// file it was recorded in (the CLI says so once on stderr; a GUI would ask first).
pub type FirstUseNotice = Arc<dyn Fn(&ServerAddress, Fingerprint, &Path) + Send + Sync>;

/// Credentials and trust for connecting to one server.
#[derive(Clone, Default)]
pub struct Access {
    /// User and token; `None` asks for anonymous access.
    pub credentials: Option<Credentials>,
    /// A fingerprint given up front (`--fingerprint`, the config, a connect string); it wins
    /// over the known servers file.
    pub pinned: Option<Fingerprint>,
    /// Where fingerprints seen on first use are kept and looked up; `None`: none are (then
    /// an unpinned server is trusted for this connection only).
    pub known_servers: Option<KnownServers>,
    /// Told when a server is trusted for the first time.
    pub on_first_use: Option<FirstUseNotice>,
    /// Longest wait for the TCP connection, and again for the TLS handshake and the
    /// server's `Welcome` (`--connect-timeout`); `None`: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<std::time::Duration>,
}

/// How long connecting may take by default: a server that accepts but never answers fails
/// in seconds, not after the minute a busy server may take to answer later requests.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("credentials", &self.credentials)
            .field("pinned", &self.pinned)
            .field("known_servers", &self.known_servers)
            .finish_non_exhaustive()
    }
}

/// What the client expects of a server's certificate, and why.
#[derive(Debug, Clone)]
pub(crate) struct Expectation {
    /// The fingerprint expected, if any.
    pub(crate) fingerprint: Option<Fingerprint>,
    /// Where it came from, for messages.
    pub(crate) pinned_by: String,
}

impl Access {
    /// The connect timeout in force.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// The key of `address` in the known servers file.
    fn server_key(address: &ServerAddress) -> String {
        address.to_string()
    }

    /// The fingerprint to expect of `address`'s certificate.
    pub(crate) fn expectation(&self, address: &ServerAddress) -> Result<Expectation, ClientError> {
        if let Some(pinned) = self.pinned {
            return Ok(Expectation {
                fingerprint: Some(pinned),
                pinned_by: "given with --fingerprint, a connect string or the config".to_owned(),
            });
        }
        let Some(known) = &self.known_servers else {
            return Ok(Expectation {
                fingerprint: None,
                pinned_by: String::new(),
            });
        };
        let fingerprint = known.lookup(&Self::server_key(address))?;
        Ok(Expectation {
            fingerprint,
            pinned_by: format!("recorded in {}", known.path().display()),
        })
    }

    /// Records a server trusted for the first time, and says so.
    pub(crate) fn trusted_first_time(
        &self,
        address: &ServerAddress,
        fingerprint: Fingerprint,
    ) -> Result<(), ClientError> {
        if let Some(known) = &self.known_servers {
            known.add(&Self::server_key(address), fingerprint)?;
            if let Some(notice) = &self.on_first_use {
                notice(address, fingerprint, known.path());
            }
        }
        Ok(())
    }

    /// The known servers file's path, for messages.
    pub(crate) fn known_servers_shown(&self) -> String {
        self.known_servers.as_ref().map_or_else(
            || "the known servers file".to_owned(),
            |known| known.path().display().to_string(),
        )
    }
}
