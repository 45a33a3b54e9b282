//! Who a session acts as, and the namespace that follows from it: how the names a client
//! sends map to names beneath the storage directory, and back.
//!
//! Every user's files live in `DIR/<user>/` (anonymous clients' in `DIR/anonymous/`). A
//! client names files relative to its namespace and never sees the prefix. An admin names
//! files from the top: `alice/report.pdf` is in alice's namespace; a name whose first folder
//! is no namespace is in the admin's own.

use ft_protocol::{Hash, Role};

use crate::catalog::Within;

/// The user name (and namespace) of anonymous clients.
pub const ANONYMOUS: &str = "anonymous";

/// Longest user name, in bytes.
pub(crate) const MAX_USER_NAME_LEN: usize = 32;

/// The user a session authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name, which is also its namespace's folder.
    pub user: String,
    /// What the user may do.
    pub role: Role,
    /// The hash of the token it logged in with (`None`: anonymous), so a rotated token or a
    /// removed user ends the session at its next request.
    pub(super) token_hash: Option<String>,
}

impl Identity {
    /// An anonymous client given `role`.
    pub fn anonymous(role: Role) -> Self {
        Self {
            user: ANONYMOUS.to_owned(),
            role,
            token_hash: None,
        }
    }

    /// Whether the identity reaches every namespace.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The stored files this identity sees.
    pub fn within(&self) -> Within<'_> {
        if self.is_admin() {
            Within::All
        } else {
            Within::Namespace(&self.user)
        }
    }

    /// The name beneath the storage directory for a name the client sent (already checked
    /// by the name rules). `is_namespace` tells, for an admin, whether a first folder names
    /// a namespace.
    pub fn to_stored(&self, name: &str, is_namespace: impl Fn(&str) -> bool) -> String {
        if self.is_admin() {
            if let Some((first, _)) = name.split_once('/') {
                if is_namespace(first) {
                    return name.to_owned();
                }
            }
        }
        format!("{}/{name}", self.user)
    }

    /// The name a client sees for a stored name: without the namespace's folder, except for
    /// an admin, who sees every name whole.
    pub fn to_client<'a>(&self, stored: &'a str) -> &'a str {
        if self.is_admin() {
            return stored;
        }
        stored
            .strip_prefix(self.user.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(stored)
    }

    /// The key under which the server keeps a partial upload for the client's `key`: keys
    /// are the client's choice, so another user's client could name the same one; mixed with
    /// the namespace, it can never reach another user's partial upload.
    pub fn upload_key(&self, key: &Hash) -> Hash {
        let mut hasher = blake3::Hasher::new_derive_key("ft 2026 partial upload key");
        hasher.update(self.user.as_bytes());
        hasher.update(&[0]);
        hasher.update(&key.0);
        Hash::from(hasher.finalize())
    }
}

/// Why a user name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    /// Empty or longer than [`MAX_USER_NAME_LEN`].
    #[error("a user name has 1 to {MAX_USER_NAME_LEN} characters")]
    Length,
    /// Outside the allowed characters.
    #[error("a user name uses a-z, 0-9, '_' and '-' and starts with a letter or digit")]
    Characters,
    /// The name anonymous clients use.
    #[error("'{ANONYMOUS}' is reserved for anonymous clients")]
    Reserved,
}

/// Checks a new user's name: it becomes a folder name and part of connect strings, so it is
/// kept to lowercase letters, digits, `_` and `-`.
pub fn check_user_name(name: &str) -> Result<(), UserNameError> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(UserNameError::Length);
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok || !name.chars().all(allowed) {
        return Err(UserNameError::Characters);
    }
    if name == ANONYMOUS {
        return Err(UserNameError::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> Identity {
        Identity {
            user: name.into(),
            role,
            token_hash: Some(String::new()),
        }
    }

    #[test]
    fn names_map_into_the_namespace_and_back() {
        let alice = user("alice", Role::Write);
        assert_eq!(alice.to_stored("a/b.txt", |_| true), "alice/a/b.txt");
        assert_eq!(alice.to_client("alice/a/b.txt"), "a/b.txt");
        let admin = user("root", Role::Admin);
        assert_eq!(admin.to_stored("alice/x", |ns| ns == "alice"), "alice/x");
        assert_eq!(
            admin.to_stored("photos/x", |ns| ns == "alice"),
            "root/photos/x"
        );
        assert_eq!(admin.to_stored("x", |_| true), "root/x");
        assert_eq!(admin.to_client("alice/x"), "alice/x");
    }

    #[test]
    fn upload_keys_differ_between_namespaces() {
        let key = Hash([7; 32]);
        let (alice, bob) = (user("alice", Role::Write), user("bob", Role::Write));
        assert_ne!(alice.upload_key(&key), bob.upload_key(&key));
        assert_eq!(alice.upload_key(&key), alice.upload_key(&key));
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice-2").is_ok());
        for bad in [
            "",
            "Alice",
            "-x",
            "a/b",
            "a b",
            ".fts",
            "anonymous",
            &"a".repeat(33),
        ] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
