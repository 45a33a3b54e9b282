//! `fts user ...`: adding, listing, removing users and replacing their tokens, straight in
//! the catalog database, so it works whether or not a server runs. Also the admin made on a
//! store's first start, and the connect strings printed for new users.

use std::{fmt::Write as _, net::SocketAddr};

use ft_protocol::{Fingerprint, Role};

use crate::{
    auth::{check_user_name, token, UserNameError},
    catalog::users::{UserError, UserRecord, Users},
};

/// The user made on a store's first start.
pub const FIRST_ADMIN: &str = "admin";

/// Why a user command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserCommandError {
    /// The name breaks the rules.
    #[error("user name {name:?} refused: {reason}")]
    Name {
        /// The name given.
        name: String,
        /// The rule broken.
        reason: UserNameError,
    },
    /// The users table refused the change.
    #[error(transparent)]
    Users(#[from] UserError),
    /// No token could be made.
    #[error(transparent)]
    Random(#[from] token::RandomError),
}

/// Where clients reach the server, for connect strings.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    /// Host name or address clients use.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The certificate's fingerprint, pinned by the connect string.
    pub fingerprint: Fingerprint,
}

impl ServerAddress {
    /// The address clients use for a server listening on `listen`: `public_host` if given,
    /// else the listening address, or this machine's name when that is a wildcard.
    pub fn new(listen: SocketAddr, public_host: Option<&str>, fingerprint: Fingerprint) -> Self {
        let host = match public_host {
            Some(host) => host.to_owned(),
            None if listen.ip().is_unspecified() => {
                let uname = rustix::system::uname();
                uname.nodename().to_string_lossy().into_owned()
            }
            None if listen.is_ipv6() => format!("[{}]", listen.ip()),
            None => listen.ip().to_string(),
        };
        Self {
            host,
            port: listen.port(),
            fingerprint,
        }
    }

    /// `ft://USER:TOKEN@HOST:PORT/#SHA256:...`: everything `ftc login` needs in one paste.
    pub fn connect_string(&self, user: &str, token: &str) -> String {
        format!(
            "ft://{user}:{token}@{}:{}/#{}",
            self.host, self.port, self.fingerprint
        )
    }
}

/// Adds `name` with `role` and a new token; returns the token.
pub fn add(users: &Users, name: &str, role: Role) -> Result<String, UserCommandError> {
    check_user_name(name).map_err(|reason| UserCommandError::Name {
        name: name.to_owned(),
        reason,
    })?;
    let token = token::new_token()?;
    users.add(name, role, &token::hash_token(&token))?;
    Ok(token)
}

/// Replaces `name`'s token; returns the new one.
pub fn rotate(users: &Users, name: &str) -> Result<String, UserCommandError> {
    let token = token::new_token()?;
    users.set_token(name, &token::hash_token(&token))?;
    Ok(token)
}

/// The lines `user add` and a first start print for a new user: who, the connect string,
/// and the token alone on the last line (scripts take it from there).
pub fn announce_new_user(name: &str, role: Role, token: &str, address: &ServerAddress) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "user {name} added with role {role}");
    let _ = writeln!(
        text,
        "connect string (for `ftc login`): {}",
        address.connect_string(name, token)
    );
    let _ = writeln!(text, "{token}");
    text
}

/// `user list`'s table.
pub fn table(users: &[UserRecord]) -> String {
    let mut text = String::new();
    let width = users
        .iter()
        .map(|user| user.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(text, "{:<width$}  {:<6}  ADDED", "USER", "ROLE");
    for user in users {
        let _ = writeln!(
            text,
            "{:<width$}  {:<6}  {}",
            user.name, user.role, user.created_at
        );
    }
    let _ = write!(text, "{} users", users.len());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_strings_carry_everything_and_wildcards_name_the_machine() {
        let fingerprint = Fingerprint([0xab; 32]);
        let local = ServerAddress::new("127.0.0.1:7878".parse().unwrap(), None, fingerprint);
        let text = local.connect_string("alice", "t0k");
        assert_eq!(
            text,
            format!("ft://alice:t0k@127.0.0.1:7878/#SHA256:{}", "ab".repeat(32))
        );
        let v6 = ServerAddress::new("[::1]:9".parse().unwrap(), None, fingerprint);
        assert_eq!(v6.host, "[::1]");
        let public = ServerAddress::new(
            "0.0.0.0:1".parse().unwrap(),
            Some("ft.example"),
            fingerprint,
        );
        assert_eq!(public.host, "ft.example");
        let any = ServerAddress::new("0.0.0.0:1".parse().unwrap(), None, fingerprint);
        assert!(!any.host.is_empty() && any.host != "0.0.0.0");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(&dir.path().join("catalog.db")).unwrap();
        assert!(matches!(
            add(&users, "Bad Name", Role::Read),
            Err(UserCommandError::Name { .. })
        ));
        let token = add(&users, "carol", Role::Read).unwrap();
        assert_eq!(token.len(), 64);
        assert!(users
            .list()
            .unwrap()
            .iter()
            .any(|user| user.name == "carol"));
    }
}
