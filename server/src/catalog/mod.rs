//! The catalog: an SQLite database recording every stored file ([`Catalog`]) and the users
//! ([`users`]); its tables and their upgrades are in [`schema`].
//!
//! One row per stored name. Replacing a file (`--overwrite`) replaces its row. The database
//! runs in WAL mode with `synchronous = FULL`, so a recorded file survives power loss once
//! its Ack was sent: every transaction flushes the log (only the catalog's own file) before
//! it returns. Calls are blocking; the session runs them on tokio's blocking pool.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use ft_protocol::{CatalogEntry, Hash};
use rusqlite::{params, Connection};

pub mod inbox;
mod schema;
pub mod users;

pub use schema::NAMESPACED_SCHEMA;

/// File name of the catalog inside the server's private directory.
pub const CATALOG_FILE: &str = "catalog.db";

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite reported an error.
    #[error("catalog database: {0}")]
    Sqlite(rusqlite::Error),
    /// A row holds a value this version cannot read (for instance, a bad hash).
    #[error("catalog row for '{name}' is corrupt: {what}")]
    Corrupt {
        /// The stored name of the row.
        name: String,
        /// What was wrong.
        what: &'static str,
    },
    /// A previous holder of the lock panicked.
    #[error("catalog lock poisoned")]
    Poisoned,
}

/// Every SQLite call's `?` (the cause is shown in the message, not also as a source).
impl From<rusqlite::Error> for CatalogError {
    fn from(err: rusqlite::Error) -> Self {
        CatalogError::Sqlite(err)
    }
}

/// How long a statement waits for another process's write (`fts user ...` beside a running
/// server) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection to the database at `path` as every part of the server uses it: WAL, flushed
/// commits, a bounded wait for other writers, and the tables created or upgraded.
fn connect(path: &Path) -> Result<Connection, CatalogError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Which stored files a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within<'a> {
    /// Every stored file (an admin).
    All,
    /// Those in one namespace's folder: the name without its trailing `/`.
    Namespace(&'a str),
}

impl Within<'_> {
    /// The range of stored names covered: from (inclusive) and until (exclusive, `None`:
    /// unbounded). `ns/` up to `ns0`, since `0` follows `/`.
    fn range(self) -> (String, Option<String>) {
        match self {
            Within::All => (String::new(), None),
            Within::Namespace(namespace) => {
                (format!("{namespace}/"), Some(format!("{namespace}0")))
            }
        }
    }
}

/// What the server records about a file it has just stored.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The name the file is stored under.
    pub stored_name: String,
    /// The name the client sent.
    pub sent_name: String,
    /// Bytes stored.
    pub size: u64,
    /// BLAKE3 of the content.
    pub hash: Hash,
    /// The uploading client.
    pub client: SocketAddr,
    /// The user who stored it.
    pub owner: String,
    /// The sender's modification time, nanoseconds since the Unix epoch.
    pub modified_ns: Option<i64>,
}

/// A stored file that may hold the same content as an announced one: a version of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The name it is stored under.
    pub stored_name: String,
    /// Its size.
    pub size: u64,
    /// Its BLAKE3.
    pub hash: Hash,
    /// The sender's modification time, if recorded.
    pub modified_ns: Option<i64>,
}

/// Most keep-both copies of one name looked at when deciding whether a file is unchanged:
/// bounds the memory a crowded name costs a `Prepare`.
pub const MAX_VERSIONS_COMPARED: usize = 64;

/// A shared handle to the catalog database.
#[derive(Debug, Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
    /// A second connection for listings: in WAL mode it reads beside the commits' writes, so
    /// a long listing never holds the lock group commits take.
    reader: Arc<Mutex<Connection>>,
    /// The database file.
    path: std::path::PathBuf,
}

impl Catalog {
    /// Opens or creates the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let conn = connect(path)?;
        let reader = connect(path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the catalog was made before namespaces and its rows still await
    /// [`Catalog::finish_namespace_upgrade`]. Blocking.
    pub fn needs_namespace_upgrade(&self) -> Result<bool, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        Ok(schema::version(&conn)? < NAMESPACED_SCHEMA)
    }

    /// Puts every row of a catalog made before namespaces into `namespace` (once its files
    /// were moved there). Blocking.
    pub fn finish_namespace_upgrade(&self, namespace: &str) -> Result<(), CatalogError> {
        let mut conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        schema::finish_namespace_upgrade(&mut conn, namespace)
    }

    /// Records a stored file, replacing any earlier record of the same stored name.
    /// Returns the time recorded (UTC, RFC 3339). Blocking.
    pub fn record(&self, record: &NewRecord) -> Result<String, CatalogError> {
        self.record_all(std::slice::from_ref(record))
    }

    /// Records a group of stored files in one transaction, replacing earlier records of the
    /// same stored names, durably. Returns the time recorded (UTC, RFC 3339). Blocking.
    pub fn record_all(&self, records: &[NewRecord]) -> Result<String, CatalogError> {
        let mut conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        insert_all(&mut conn, records)
    }

    /// Removes the records of stored names; how many there were. Blocking.
    pub fn remove_all<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<usize, CatalogError> {
        let mut conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let transaction = conn.transaction()?;
        let mut removed = 0;
        {
            let mut delete =
                transaction.prepare_cached("DELETE FROM files WHERE stored_name = ?1")?;
            for name in names {
                removed += delete.execute(params![name])?;
            }
        }
        transaction.commit()?;
        Ok(removed)
    }

    /// Up to `limit` recorded files under `within` (a namespace's folder, or everything),
    /// from `start` on (inclusive) and after `after` (exclusive), in name order: one bounded
    /// slice of a listing, read on the listing connection through the name's index. Blocking.
    pub fn scan(
        &self,
        within: Within<'_>,
        start: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CatalogEntry>, CatalogError> {
        let conn = self.reader.lock().map_err(|_| CatalogError::Poisoned)?;
        let mut statement = conn.prepare_cached(
            "SELECT stored_name, sent_name, size, blake3, added_at, owner, modified_ns FROM files
             WHERE (?1 IS NULL OR stored_name > ?1) AND stored_name >= ?2
               AND stored_name >= ?4 AND (?5 IS NULL OR stored_name < ?5)
             ORDER BY stored_name LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (from, until) = within.range();
        let rows = statement.query_map(params![after, start, limit, from, until], read_row)?;
        rows.map(|row| entry_from(row?)).collect()
    }

    /// The record of one stored name. Blocking.
    pub fn get(&self, name: &str) -> Result<Option<CatalogEntry>, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let mut statement = conn.prepare_cached(
            "SELECT stored_name, sent_name, size, blake3, added_at, owner, modified_ns FROM files
             WHERE stored_name = ?1",
        )?;
        let mut rows = statement.query_map(params![name], read_row)?;
        rows.next().map(|row| entry_from(row?)).transpose()
    }

    /// The stored versions of each of `names`: the file stored under the name and, where its
    /// flag is set, the files stored from it under another name (keep-both's `name (1)`,
    /// ...), at most [`MAX_VERSIONS_COMPARED`] of those. One query for a whole page (one
    /// statement per file made planning a first send of many small files a third slower).
    /// Names with no version are absent from the map. Read on the listing connection.
    /// Blocking.
    pub fn versions_of_many(
        &self,
        names: &[(&str, bool)],
    ) -> Result<std::collections::HashMap<String, Vec<StoredVersion>>, CatalogError> {
        use std::collections::HashMap;
        let mut found: HashMap<String, Vec<StoredVersion>> = HashMap::new();
        if names.is_empty() {
            return Ok(found);
        }
        let wanted: HashMap<&str, bool> = names.iter().copied().collect();
        let list = json_array(wanted.keys().copied());
        let conn = self.reader.lock().map_err(|_| CatalogError::Poisoned)?;
        let mut statement = conn.prepare_cached(
            "WITH wanted(name) AS (SELECT value FROM json_each(?1))
             SELECT f.stored_name, f.sent_name, f.size, f.blake3, f.modified_ns
               FROM wanted w JOIN files f ON f.stored_name = w.name
             UNION
             SELECT f.stored_name, f.sent_name, f.size, f.blake3, f.modified_ns
               FROM wanted w JOIN files f ON f.sent_name = w.name
             ORDER BY 1",
        )?;
        let rows = statement.query_map(params![list], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })?;
        for row in rows {
            let (stored_name, sent_name, size, hash, modified_ns) = row?;
            let corrupt = |what| CatalogError::Corrupt {
                name: stored_name.clone(),
                what,
            };
            let size = u64::try_from(size).map_err(|_| corrupt("negative size"))?;
            let hash = Hash::from_hex(&hash).ok_or_else(|| corrupt("malformed hash"))?;
            let version = StoredVersion {
                stored_name: stored_name.clone(),
                size,
                hash,
                modified_ns,
            };
            if wanted.contains_key(stored_name.as_str()) {
                found
                    .entry(stored_name.clone())
                    .or_default()
                    .push(version.clone());
            }
            if sent_name != stored_name && wanted.get(sent_name.as_str()) == Some(&true) {
                let versions = found.entry(sent_name).or_default();
                if versions.len() < MAX_VERSIONS_COMPARED {
                    versions.push(version);
                }
            }
        }
        Ok(found)
    }

    /// Records new modification times of stored files (whose content was found equal to a
    /// sender's file with another time), so the next quick check needs no hashing. One
    /// transaction; a lost update only costs that hashing again. Blocking.
    pub fn set_modified(&self, updates: &[(String, i64)]) -> Result<(), CatalogError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let transaction = conn.transaction()?;
        {
            let mut update = transaction
                .prepare_cached("UPDATE files SET modified_ns = ?2 WHERE stored_name = ?1")?;
            for (name, modified_ns) in updates {
                update.execute(params![name, modified_ns])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Removes the record of one stored name; false if there was none. Blocking.
    pub fn remove(&self, name: &str) -> Result<bool, CatalogError> {
        Ok(self.remove_all([name])? > 0)
    }

    /// Number of recorded files under `within` and the sum of their sizes. Blocking.
    pub fn totals(&self, within: Within<'_>) -> Result<(u64, u64), CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let (from, until) = within.range();
        let (count, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files
             WHERE stored_name >= ?1 AND (?2 IS NULL OR stored_name < ?2)",
            params![from, until],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            u64::try_from(bytes).unwrap_or(0),
        ))
    }
}

/// `names` as a JSON array of strings, for SQLite's `json_each`.
fn json_array<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (n, name) in names.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        for c in name.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

type Row = (String, String, i64, String, String, String, Option<i64>);

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn entry_from(
    (name, sent_name, size, hash, added_at, owner, modified_ns): Row,
) -> Result<CatalogEntry, CatalogError> {
    let corrupt = |what| CatalogError::Corrupt {
        name: name.clone(),
        what,
    };
    let size = u64::try_from(size).map_err(|_| corrupt("negative size"))?;
    let hash = Hash::from_hex(&hash).ok_or_else(|| corrupt("malformed hash"))?;
    Ok(CatalogEntry {
        name,
        sent_name,
        size,
        hash,
        added_at,
        owner,
        modified_ns,
    })
}

/// Inserts or replaces `records` in one transaction; the time recorded.
fn insert_all(conn: &mut Connection, records: &[NewRecord]) -> Result<String, CatalogError> {
    let added_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let transaction = conn.transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO files (stored_name, sent_name, size, blake3, added_at, client_addr, owner,
                                modified_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (stored_name) DO UPDATE SET
                sent_name = excluded.sent_name, size = excluded.size, blake3 = excluded.blake3,
                added_at = excluded.added_at, client_addr = excluded.client_addr,
                owner = excluded.owner, modified_ns = excluded.modified_ns",
        )?;
        // A group's files usually all come from one client: its address is written out once.
        let mut client: Option<(SocketAddr, String)> = None;
        for record in records {
            let size = i64::try_from(record.size).map_err(|_| CatalogError::Corrupt {
                name: record.stored_name.clone(),
                what: "size does not fit the database",
            })?;
            let client_addr = match &client {
                Some((addr, text)) if *addr == record.client => text,
                _ => &client.insert((record.client, record.client.to_string())).1,
            };
            insert.execute(params![
                record.stored_name,
                record.sent_name,
                size,
                record.hash.to_hex(),
                added_at,
                client_addr,
                record.owner,
                record.modified_ns,
            ])?;
        }
    }
    transaction.commit()?;
    Ok(added_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, content: &[u8]) -> NewRecord {
        NewRecord {
            stored_name: name.into(),
            sent_name: "sent".into(),
            size: content.len() as u64,
            hash: blake3::hash(content).into(),
            client: "127.0.0.1:4000".parse().unwrap(),
            owner: "tester".into(),
            modified_ns: Some(7),
        }
    }

    #[test]
    fn versions_of_a_page_of_names_are_found_in_one_query() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let mut copy = record("u/a (1).txt", b"22");
        copy.sent_name = "u/a.txt".into();
        let mut quoted = record("u/say \"hi\"\\.txt", b"3");
        quoted.sent_name = quoted.stored_name.clone();
        for one in [record("u/a.txt", b"1"), copy, quoted] {
            catalog.record(&one).unwrap();
        }
        let found = catalog
            .versions_of_many(&[
                ("u/a.txt", true),
                ("u/say \"hi\"\\.txt", true),
                ("u/none", true),
            ])
            .unwrap();
        let mut names: Vec<&str> = found["u/a.txt"]
            .iter()
            .map(|v| v.stored_name.as_str())
            .collect();
        names.sort();
        assert_eq!(names, ["u/a (1).txt", "u/a.txt"]);
        assert_eq!(found["u/say \"hi\"\\.txt"].len(), 1);
        assert!(!found.contains_key("u/none"));
        // Overwrite compares with the name itself only.
        let own = catalog.versions_of_many(&[("u/a.txt", false)]).unwrap();
        assert_eq!(own["u/a.txt"].len(), 1);
    }

    #[test]
    fn namespaces_confine_lists_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        for name in ["alice/a", "alice/b/c", "alice0", "alicex/d", "bob/e"] {
            catalog.record(&record(name, b"12")).unwrap();
        }
        let names = |within| -> Vec<String> {
            catalog
                .scan(within, "", None, 10)
                .unwrap()
                .into_iter()
                .map(|entry| entry.name)
                .collect()
        };
        assert_eq!(names(Within::Namespace("alice")), ["alice/a", "alice/b/c"]);
        assert_eq!(names(Within::All).len(), 5);
        assert_eq!(catalog.totals(Within::Namespace("alice")).unwrap(), (2, 4));
        assert_eq!(catalog.totals(Within::Namespace("carol")).unwrap(), (0, 0));
    }

    #[test]
    fn a_catalog_made_before_namespaces_is_upgraded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema of the version before namespaces, with one row.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE files (id INTEGER PRIMARY KEY, stored_name TEXT NOT NULL UNIQUE,
                    sent_name TEXT NOT NULL, size INTEGER NOT NULL, blake3 TEXT NOT NULL,
                    added_at TEXT NOT NULL, client_addr TEXT NOT NULL);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO files (stored_name, sent_name, size, blake3, added_at, client_addr)
                 VALUES ('x/y.txt', 'y.txt', 3, ?1, '2026-01-01T00:00:00Z', '127.0.0.1:1')",
                [blake3::hash(b"abc").to_hex().as_str()],
            )
            .unwrap();
        }
        let catalog = Catalog::open(&path).unwrap();
        assert!(catalog.needs_namespace_upgrade().unwrap());
        catalog.finish_namespace_upgrade("admin").unwrap();
        catalog.finish_namespace_upgrade("admin").unwrap(); // a rerun changes nothing
        assert!(!catalog.needs_namespace_upgrade().unwrap());
        let entry = catalog.get("admin/x/y.txt").unwrap().unwrap();
        assert_eq!(
            (entry.sent_name.as_str(), entry.owner.as_str()),
            ("admin/y.txt", "admin")
        );
        let fresh = Catalog::open(&dir.path().join("new.db")).unwrap();
        assert!(
            !fresh.needs_namespace_upgrade().unwrap(),
            "a new catalog needs nothing"
        );
    }

    #[test]
    fn records_survive_reopening_and_list_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CATALOG_FILE);
        {
            let catalog = Catalog::open(&path).unwrap();
            catalog.record(&record("b", b"bee")).unwrap();
            let added = catalog.record(&record("a", b"a")).unwrap();
            assert!(humantime::parse_rfc3339(&added).is_ok(), "{added}");
        }
        let entries = Catalog::open(&path)
            .unwrap()
            .scan(Within::All, "", None, 10)
            .unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(entries[1].size, 3);
        assert_eq!(entries[1].hash, Hash::from(blake3::hash(b"bee")));
    }

    #[test]
    fn pages_continue_after_the_last_name_seen() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        for name in ["c", "a", "e", "b", "d"] {
            catalog.record(&record(name, name.as_bytes())).unwrap();
        }
        let first = catalog.scan(Within::All, "", None, 2).unwrap();
        let second = catalog.scan(Within::All, "", Some("b"), 2).unwrap();
        let last = catalog.scan(Within::All, "", Some("d"), 2).unwrap();
        let names = |page: &[CatalogEntry]| page.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(names(&last), ["e"]);
    }

    #[test]
    fn scans_from_a_start_totals_lookup_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        for name in ["photos/a.jpg", "photos/b.png", "notes.txt"] {
            catalog.record(&record(name, name.as_bytes())).unwrap();
        }
        let from_photos = catalog.scan(Within::All, "photos/", None, 10).unwrap();
        let names: Vec<_> = from_photos
            .iter()
            .map(|entry| entry.name.as_str())
            .collect();
        assert_eq!(names, ["photos/a.jpg", "photos/b.png"]);
        let after_a = catalog
            .scan(Within::All, "photos/", Some("photos/a.jpg"), 1)
            .unwrap();
        assert_eq!(after_a[0].name, "photos/b.png");
        assert_eq!(catalog.totals(Within::All).unwrap(), (3, 12 + 12 + 9));
        assert_eq!(catalog.get("notes.txt").unwrap().unwrap().size, 9);
        assert!(catalog.remove("notes.txt").unwrap());
        assert!(!catalog.remove("notes.txt").unwrap());
        assert!(catalog.get("notes.txt").unwrap().is_none());
    }

    #[test]
    fn a_group_is_recorded_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        let mut group: Vec<_> = ["x", "y", "z"]
            .iter()
            .map(|n| record(n, n.as_bytes()))
            .collect();
        group[1].client = "[::1]:5000".parse().unwrap();
        catalog.record_all(&group).unwrap();
        assert_eq!(catalog.totals(Within::All).unwrap(), (3, 3));
        // Each row names its own client, also where the client changes within the group.
        let conn = catalog.conn.lock().unwrap();
        let clients: Vec<String> = conn
            .prepare("SELECT client_addr FROM files ORDER BY stored_name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(clients, ["127.0.0.1:4000", "[::1]:5000", "127.0.0.1:4000"]);
    }

    #[test]
    fn records_are_removed_together() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        let group: Vec<_> = ["a", "b", "c"].iter().map(|n| record(n, b"z")).collect();
        catalog.record_all(&group).unwrap();
        assert_eq!(catalog.remove_all(["a", "c", "missing"]).unwrap(), 2);
        let left = catalog.scan(Within::All, "", None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "b");
    }

    #[test]
    fn recording_a_name_again_replaces_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join(CATALOG_FILE)).unwrap();
        catalog.record(&record("a", b"old")).unwrap();
        catalog.record(&record("a", b"newer")).unwrap();
        let entries = catalog.scan(Within::All, "", None, 10).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].size, 5);
    }
}
