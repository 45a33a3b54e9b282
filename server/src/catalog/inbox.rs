//! The inbox table: which file in the store's inbox area waits for whom, from whom, under
//! what name. A row is written only once its file is durable, in a transaction that flushes
//! the log before it returns (the catalog's `synchronous = FULL`), so a recorded inbox file
//! survives a crash; removing the row comes before removing the file.

use ft_protocol::Hash;
use rusqlite::params;

use super::{Catalog, CatalogError};

/// A file left for a user, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRecord {
    /// The row's number.
    pub id: i64,
    /// Who it waits for.
    pub recipient: String,
    /// Who left it.
    pub sender: String,
    /// Its relative name, as offered.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the content, checked when it was left.
    pub hash: Hash,
    /// Its file's name in the inbox area.
    pub blob: String,
    /// When it was left, nanoseconds since the Unix epoch.
    pub left_ns: i64,
    /// The files one `Leave` left for one recipient share this number (they are offered
    /// together).
    pub batch: i64,
}

impl Catalog {
    /// Records a file left for a user (its file is durable already); returns the row's
    /// number. Blocking.
    pub fn inbox_add(&self, record: &InboxRecord) -> Result<i64, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        conn.execute(
            "INSERT INTO inbox (recipient, sender, name, size, blake3, blob, left_ns, batch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.recipient,
                record.sender,
                record.name,
                i64::try_from(record.size).unwrap_or(i64::MAX),
                record.hash.to_hex(),
                record.blob,
                record.left_ns,
                record.batch,
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Up to `limit` rows waiting for `recipient` after row `after` (0: from the first),
    /// oldest first; expired rows too (the caller drops them). A page at a time, so that a
    /// crowded inbox never has to be held in memory whole. Blocking.
    pub fn inbox_page(
        &self,
        recipient: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, CatalogError> {
        self.inbox_query(
            "SELECT id, recipient, sender, name, size, blake3, blob, left_ns, batch FROM inbox
             WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            params![recipient, after, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// Rows left before `before_ns` (nanoseconds since the Unix epoch). Blocking.
    pub fn inbox_left_before(&self, before_ns: i64) -> Result<Vec<InboxRecord>, CatalogError> {
        self.inbox_query(
            "SELECT id, recipient, sender, name, size, blake3, blob, left_ns, batch FROM inbox
             WHERE left_ns < ?1 ORDER BY id",
            params![before_ns],
        )
    }

    /// Files and bytes waiting for `recipient`, left at `since_ns` or later. Blocking.
    pub fn inbox_used(&self, recipient: &str, since_ns: i64) -> Result<(u64, u64), CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let (files, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM inbox
             WHERE recipient = ?1 AND left_ns >= ?2",
            params![recipient, since_ns],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok((
            u64::try_from(files).unwrap_or(0),
            u64::try_from(bytes).unwrap_or(0),
        ))
    }

    /// Whether a row names the inbox file `blob` (the start-up sweep removes files without
    /// one). Blocking.
    pub fn inbox_names(&self, blob: &str) -> Result<bool, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        Ok(conn.query_row(
            "SELECT COUNT(*) > 0 FROM inbox WHERE blob = ?1",
            [blob],
            |row| row.get(0),
        )?)
    }

    /// Removes row `id`; true if it was there. Blocking.
    pub fn inbox_remove(&self, id: i64) -> Result<bool, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        Ok(conn.execute("DELETE FROM inbox WHERE id = ?1", [id])? > 0)
    }

    fn inbox_query(
        &self,
        sql: &str,
        parameters: impl rusqlite::Params,
    ) -> Result<Vec<InboxRecord>, CatalogError> {
        let conn = self.conn.lock().map_err(|_| CatalogError::Poisoned)?;
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map(parameters, |row| {
            Ok((
                InboxRecord {
                    id: row.get(0)?,
                    recipient: row.get(1)?,
                    sender: row.get(2)?,
                    name: row.get(3)?,
                    size: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                    hash: Hash([0; 32]),
                    blob: row.get(6)?,
                    left_ns: row.get(7)?,
                    batch: row.get(8)?,
                },
                row.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (mut record, hash) = row?;
            record.hash = Hash::from_hex(&hash).ok_or_else(|| CatalogError::Corrupt {
                name: record.name.clone(),
                what: "malformed hash in the inbox",
            })?;
            Ok(record)
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recipient: &str, name: &str, size: u64, left_ns: i64) -> InboxRecord {
        InboxRecord {
            id: 0,
            recipient: recipient.into(),
            sender: "alice".into(),
            name: name.into(),
            size,
            hash: Hash([3; 32]),
            blob: format!("blob-{name}"),
            left_ns,
            batch: 1,
        }
    }

    #[test]
    fn rows_are_found_per_recipient_counted_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let first = catalog.inbox_add(&record("bob", "a", 10, 100)).unwrap();
        catalog.inbox_add(&record("bob", "b", 5, 200)).unwrap();
        catalog.inbox_add(&record("carol", "c", 7, 300)).unwrap();
        let bobs = catalog.inbox_page("bob", 0, 10).unwrap();
        assert_eq!(
            catalog.inbox_page("bob", bobs[0].id, 10).unwrap(),
            bobs[1..]
        );
        assert_eq!(catalog.inbox_page("bob", 0, 1).unwrap(), bobs[..1]);
        assert_eq!(
            bobs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(bobs[0].hash, Hash([3; 32]));
        assert_eq!(catalog.inbox_used("bob", 0).unwrap(), (2, 15));
        assert_eq!(catalog.inbox_used("bob", 150).unwrap(), (1, 5));
        assert_eq!(catalog.inbox_used("dave", 0).unwrap(), (0, 0));
        let old = catalog.inbox_left_before(250).unwrap();
        assert_eq!(old.len(), 2);
        assert!(catalog.inbox_names("blob-c").unwrap());
        assert!(catalog.inbox_remove(first).unwrap());
        assert!(!catalog.inbox_remove(first).unwrap());
        assert!(!catalog.inbox_names("blob-a").unwrap());
        assert_eq!(catalog.inbox_used("bob", 0).unwrap(), (1, 5));
    }
}
