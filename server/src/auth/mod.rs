//! Users, tokens and roles: who a client is ([`Auth::authenticate`]), whether it still is
//! ([`Auth::recheck`]), and what it may do ([`roles::allows`]).
//!
//! Users live in the catalog database, so `fts user ...` works whether or not a server runs,
//! and a running server sees a change at its next check: each check asks SQLite whether
//! another connection wrote to the database since the last one (cheap: no table is read)
//! and only then reads the users again.

mod identity;
pub mod roles;
mod throttle;
pub mod token;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ft_protocol::{Credentials, Role};

pub use identity::{check_user_name, Identity, UserNameError, ANONYMOUS};
pub use throttle::{LoginThrottle, Turn};

use crate::catalog::{
    users::{UserRecord, Users},
    CatalogError,
};

/// Longest a cheap check ([`Auth::recheck_if_due`], once per uploaded file) relies on what
/// the last full check saw.
const RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a client is not let in, or no longer.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// No credentials, and anonymous access is off.
    #[error("this server needs a user name and token (anonymous access is off)")]
    AnonymousOff,
    /// No such user, or the wrong token: the client is not told which.
    #[error("unknown user or wrong token")]
    BadCredentials,
    /// The user was removed or its token replaced since the session began.
    #[error("the user was removed or its token replaced")]
    Revoked,
    /// The users could not be read.
    #[error("cannot read the users: {0}")]
    Catalog(CatalogError),
}

/// The users as last read, and when.
#[derive(Debug)]
struct Cache {
    data_version: Option<i64>,
    users: HashMap<String, UserRecord>,
    checked_at: Instant,
}

/// Authentication and authorization for the whole server.
#[derive(Debug)]
pub struct Auth {
    users: Users,
    cache: Mutex<Cache>,
    /// Failed logins' delays, per address.
    pub throttle: LoginThrottle,
    /// The role anonymous clients get; `None`: they are refused.
    anonymous: Option<Role>,
}

impl Auth {
    /// Authorization over `users`; `anonymous` is the role of clients without credentials.
    pub fn new(users: Users, anonymous: Option<Role>) -> Self {
        Self {
            users,
            cache: Mutex::new(Cache {
                data_version: None,
                users: HashMap::new(),
                checked_at: Instant::now(),
            }),
            throttle: LoginThrottle::default(),
            anonymous,
        }
    }

    /// The identity `credentials` prove, or why not. Blocking (it may read the users).
    pub fn authenticate(&self, credentials: Option<&Credentials>) -> Result<Identity, AuthFailure> {
        let Some(credentials) = credentials else {
            return self
                .anonymous
                .map(Identity::anonymous)
                .ok_or(AuthFailure::AnonymousOff);
        };
        let cache = self.fresh_cache()?;
        let record = cache.users.get(&credentials.user);
        // The token is hashed and compared even for an unknown user, so the answer takes as
        // long either way.
        let stored = record.map_or("", |record| record.token_hash.as_str());
        let matches = token::token_matches(&credentials.token, stored);
        match record {
            Some(record) if matches => Ok(Identity {
                user: record.name.clone(),
                role: record.role,
                token_hash: Some(record.token_hash.clone()),
            }),
            _ => Err(AuthFailure::BadCredentials),
        }
    }

    /// The identity's role now: the user may have been removed or its token replaced since
    /// it logged in. Blocking.
    pub fn recheck(&self, identity: &Identity) -> Result<Role, AuthFailure> {
        let cache = self.fresh_cache()?;
        still_valid(&cache, identity)
    }

    /// [`Auth::recheck`], trusting the last full check for [`RECHECK_INTERVAL`]: for checks
    /// on every uploaded file, where a full one would cost as much as the file.
    pub fn recheck_if_due(&self, identity: &Identity) -> Result<Role, AuthFailure> {
        let cache = self.lock();
        if cache.data_version.is_some() && cache.checked_at.elapsed() < RECHECK_INTERVAL {
            return still_valid(&cache, identity);
        }
        drop(cache);
        self.recheck(identity)
    }

    /// Whether `name` is a user's namespace (for an admin's names). Uses the users as last
    /// read.
    pub fn is_user(&self, name: &str) -> bool {
        self.lock().users.contains_key(name)
    }

    /// Leaves out of `items` those whose user (`name_of`) no longer exists, the users read
    /// again if they changed (a removed user's connections stay open until their next
    /// request).
    pub fn keep_current<T>(
        &self,
        items: &mut Vec<T>,
        name_of: impl Fn(&T) -> &str,
    ) -> Result<(), AuthFailure> {
        let cache = self.fresh_cache()?;
        items.retain(|item| cache.users.contains_key(name_of(item)));
        Ok(())
    }

    /// The cache, read again if another connection changed the database since.
    fn fresh_cache(&self) -> Result<std::sync::MutexGuard<'_, Cache>, AuthFailure> {
        let mut cache = self.lock();
        let version = self.users.data_version().map_err(AuthFailure::Catalog)?;
        if cache.data_version != Some(version) {
            let users = self.users.list().map_err(AuthFailure::Catalog)?;
            cache.users = users
                .into_iter()
                .map(|user| (user.name.clone(), user))
                .collect();
            cache.data_version = Some(version);
        }
        cache.checked_at = Instant::now();
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A copy of the table: one left by a panicking thread is reloaded at the next check.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn still_valid(cache: &Cache, identity: &Identity) -> Result<Role, AuthFailure> {
    let Some(token_hash) = &identity.token_hash else {
        return Ok(identity.role); // anonymous
    };
    match cache.users.get(&identity.user) {
        Some(record) if record.token_hash == *token_hash => Ok(record.role),
        _ => Err(AuthFailure::Revoked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(user: &str, token: &str) -> Credentials {
        Credentials {
            user: user.into(),
            token: token.into(),
        }
    }

    #[test]
    fn logins_rotation_and_removal_take_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let auth = Auth::new(Users::open(&path).unwrap(), None);
        let admin = Users::open(&path).unwrap(); // as `fts user ...` beside the server
        let token = token::new_token().unwrap();
        admin
            .add("alice", Role::Write, &token::hash_token(&token))
            .unwrap();
        let alice = auth
            .authenticate(Some(&credentials("alice", &token)))
            .unwrap();
        assert_eq!(alice.role, Role::Write);
        assert!(matches!(
            auth.authenticate(Some(&credentials("alice", "wrong"))),
            Err(AuthFailure::BadCredentials)
        ));
        assert!(matches!(
            auth.authenticate(Some(&credentials("nobody", &token))),
            Err(AuthFailure::BadCredentials)
        ));
        assert!(matches!(
            auth.authenticate(None),
            Err(AuthFailure::AnonymousOff)
        ));
        let rotated = token::new_token().unwrap();
        admin
            .set_token("alice", &token::hash_token(&rotated))
            .unwrap();
        assert!(matches!(auth.recheck(&alice), Err(AuthFailure::Revoked)));
        assert!(auth
            .authenticate(Some(&credentials("alice", &token)))
            .is_err());
        let again = auth
            .authenticate(Some(&credentials("alice", &rotated)))
            .unwrap();
        admin.remove("alice").unwrap();
        assert!(matches!(auth.recheck(&again), Err(AuthFailure::Revoked)));
    }

    #[test]
    fn anonymous_clients_get_the_configured_role() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(&dir.path().join("catalog.db")).unwrap();
        let auth = Auth::new(users, Some(Role::Upload));
        let anonymous = auth.authenticate(None).unwrap();
        assert_eq!(
            (anonymous.user.as_str(), anonymous.role),
            (ANONYMOUS, Role::Upload)
        );
        assert_eq!(auth.recheck(&anonymous).unwrap(), Role::Upload);
    }
}
