//! The users table: names, roles and the hashes of their tokens. Its own connection, so the
//! server's authorization checks never wait behind a group commit, and `fts user ...` can
//! change it while a server runs (the server notices through SQLite's `data_version`).

use std::{path::Path, sync::Mutex, time::SystemTime};

use ft_protocol::Role;
use rusqlite::{params, Connection, OptionalExtension};

use super::CatalogError;

/// One user as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user's name, also its namespace's folder.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// BLAKE3 of the user's current token, hex.
    pub token_hash: String,
    /// When the user was added, UTC, RFC 3339.
    pub created_at: String,
}

/// Why a change to the users could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The database failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// `user add` of a name already taken.
    #[error("user '{0}' exists already")]
    Exists(String),
    /// No user has that name.
    #[error("no user named '{0}'")]
    NoSuchUser(String),
}

/// The users table, over its own connection to the catalog database.
#[derive(Debug)]
pub struct Users {
    conn: Mutex<Connection>,
}

impl Users {
    /// Opens the users table of the catalog at `path` (creating the catalog's tables if
    /// needed). Blocking.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        Ok(Self {
            conn: Mutex::new(super::connect(path)?),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CatalogError> {
        self.conn.lock().map_err(|_| CatalogError::Poisoned)
    }

    /// A number that changes whenever another connection (another process, or the server's
    /// own catalog) committed a change to the database. Cheap: no table is read. Blocking.
    pub fn data_version(&self) -> Result<i64, CatalogError> {
        let conn = self.lock()?;
        Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
    }

    /// Every user, by name. Blocking.
    pub fn list(&self) -> Result<Vec<UserRecord>, CatalogError> {
        let conn = self.lock()?;
        let mut statement = conn
            .prepare_cached("SELECT name, role, token_hash, created_at FROM users ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (name, role, token_hash, created_at) = row?;
            let role = Role::parse(&role).ok_or_else(|| CatalogError::Corrupt {
                name: name.clone(),
                what: "unknown role",
            })?;
            Ok(UserRecord {
                name,
                role,
                token_hash,
                created_at,
            })
        })
        .collect()
    }

    /// Adds a user. Blocking.
    pub fn add(&self, name: &str, role: Role, token_hash: &str) -> Result<UserRecord, UserError> {
        let created_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let conn = self.lock()?;
        let inserted = conn
            .execute(
                "INSERT INTO users (name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role.as_str(), token_hash, created_at],
            )
            .map_err(CatalogError::from)?;
        if inserted == 0 {
            return Err(UserError::Exists(name.to_owned()));
        }
        Ok(UserRecord {
            name: name.to_owned(),
            role,
            token_hash: token_hash.to_owned(),
            created_at,
        })
    }

    /// Removes a user (its files stay). Blocking.
    pub fn remove(&self, name: &str) -> Result<(), UserError> {
        let conn = self.lock()?;
        let removed = conn
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(CatalogError::from)?;
        if removed == 0 {
            return Err(UserError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// Replaces a user's token hash (the old token stops working). Blocking.
    pub fn set_token(&self, name: &str, token_hash: &str) -> Result<(), UserError> {
        let conn = self.lock()?;
        let changed = conn
            .execute(
                "UPDATE users SET token_hash = ?2 WHERE name = ?1",
                params![name, token_hash],
            )
            .map_err(CatalogError::from)?;
        if changed == 0 {
            return Err(UserError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// One user, if there is one by that name. Blocking.
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, CatalogError> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT role, token_hash, created_at FROM users WHERE name = ?1",
                [name],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(role, token_hash, created_at)| {
            let role = Role::parse(&role).ok_or_else(|| CatalogError::Corrupt {
                name: name.to_owned(),
                what: "unknown role",
            })?;
            Ok(UserRecord {
                name: name.to_owned(),
                role,
                token_hash,
                created_at,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_added_listed_rotated_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(&dir.path().join("catalog.db")).unwrap();
        let before = users.data_version().unwrap();
        users.add("alice", Role::Write, "h1").unwrap();
        assert!(matches!(
            users.add("alice", Role::Read, "h2"),
            Err(UserError::Exists(_))
        ));
        users.set_token("alice", "h3").unwrap();
        let alice = users.get("alice").unwrap().unwrap();
        assert_eq!((alice.role, alice.token_hash.as_str()), (Role::Write, "h3"));
        // Another connection's change moves the data version; our own do not.
        let other = Users::open(&dir.path().join("catalog.db")).unwrap();
        other.add("bob", Role::Read, "h4").unwrap();
        assert_ne!(users.data_version().unwrap(), before);
        let names: Vec<_> = users.list().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        users.remove("alice").unwrap();
        assert!(matches!(
            users.remove("alice"),
            Err(UserError::NoSuchUser(_))
        ));
        assert!(users.get("alice").unwrap().is_none());
    }
}
