//! Connect strings: `ft://USER:TOKEN@HOST:PORT/#SHA256:...`, everything a client needs to
//! reach a server and log in, with the server's certificate pinned, in one paste.

use std::{fmt, str::FromStr};

use ft_protocol::{Credentials, Fingerprint};

use crate::address::ServerAddress;

/// A parsed connect string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// The server.
    pub server: ServerAddress,
    /// User and token.
    pub credentials: Credentials,
    /// The server's certificate fingerprint.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for ConnectString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectString")
            .field("server", &self.server)
            .field("credentials", &self.credentials)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Why a text is not a connect string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a connect string ({0}); expected ft://USER:TOKEN@HOST:PORT/#SHA256:<64 hex digits>")]
pub struct ConnectStringError(&'static str);

impl ConnectString {
    /// Whether `text` is meant as a connect string (rather than a server address).
    pub fn looks_like(text: &str) -> bool {
        text.starts_with("ft://")
    }
}

impl FromStr for ConnectString {
    type Err = ConnectStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .trim()
            .strip_prefix("ft://")
            .ok_or(ConnectStringError("it does not start with ft://"))?;
        let (authority, fragment) = rest
            .split_once('#')
            .ok_or(ConnectStringError("the #SHA256:... fingerprint is missing"))?;
        let fingerprint = fragment
            .parse()
            .map_err(|_| ConnectStringError("the fingerprint is malformed"))?;
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (userinfo, host) = authority
            .rsplit_once('@')
            .ok_or(ConnectStringError("USER:TOKEN@ is missing"))?;
        let (user, token) = userinfo
            .split_once(':')
            .ok_or(ConnectStringError("the token is missing"))?;
        if user.is_empty() || token.is_empty() {
            return Err(ConnectStringError("the user or the token is empty"));
        }
        let server = host
            .parse()
            .map_err(|_| ConnectStringError("the server address is malformed"))?;
        Ok(Self {
            server,
            credentials: Credentials {
                user: user.to_owned(),
                token: token.to_owned(),
            },
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_parse_with_names_and_addresses() {
        let hex = "ab".repeat(32);
        let parsed: ConnectString = format!("ft://alice:t0k@backup.example:7000/#SHA256:{hex}")
            .parse()
            .unwrap();
        assert_eq!(parsed.server.to_string(), "backup.example:7000");
        assert_eq!(parsed.credentials.user, "alice");
        assert_eq!(parsed.credentials.token, "t0k");
        assert_eq!(parsed.fingerprint, Fingerprint([0xab; 32]));
        let v6: ConnectString = format!("ft://a:b@[::1]:7878/#SHA256:{hex}")
            .parse()
            .unwrap();
        assert_eq!(v6.server.host, "::1");
        for bad in [
            "http://a:b@h:1/#SHA256:00".to_owned(),
            format!("ft://a@h:1/#SHA256:{hex}"),
            "ft://a:b@h:1/".to_owned(),
            format!("ft://:b@h:1/#SHA256:{hex}"),
        ] {
            assert!(bad.parse::<ConnectString>().is_err(), "{bad}");
        }
    }
}
