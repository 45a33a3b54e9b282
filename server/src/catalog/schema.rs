//! The catalog's tables, and their upgrades from earlier versions, keyed by SQLite's
//! `user_version`.

use rusqlite::Connection;

use super::CatalogError;

/// The first schema with users and file owners (files live in namespaces from then on).
pub const NAMESPACED_SCHEMA: i64 = 2;

/// Creates the tables of a new catalog, or upgrades an old one, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), CatalogError> {
    let transaction = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let existed: bool = transaction.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'files'",
        [],
        |row| row.get(0),
    )?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS files (
            id          INTEGER PRIMARY KEY,
            stored_name TEXT NOT NULL UNIQUE,
            sent_name   TEXT NOT NULL,
            size        INTEGER NOT NULL,
            blake3      TEXT NOT NULL,
            added_at    TEXT NOT NULL,
            client_addr TEXT NOT NULL
        );",
    )?;
    if version < NAMESPACED_SCHEMA {
        // Rows of a store made before namespaces keep their names here; moving the files
        // into the admin's namespace (and renaming the rows) is the store's upgrade.
        let has_owner: bool = transaction.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('files') WHERE name = 'owner'",
            [],
            |row| row.get(0),
        )?;
        if !has_owner {
            transaction
                .execute_batch("ALTER TABLE files ADD COLUMN owner TEXT NOT NULL DEFAULT '';")?;
        }
        transaction.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                name       TEXT PRIMARY KEY,
                role       TEXT NOT NULL,
                token_hash TEXT NOT NULL,
                created_at TEXT NOT NULL
            );",
        )?;
    }
    // Protocol 9: the sender's modification time, and the index that finds every stored
    // version of a sent name (re-runs skip unchanged files). Idempotent, any schema version.
    let has_modified: bool = transaction.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('files') WHERE name = 'modified_ns'",
        [],
        |row| row.get(0),
    )?;
    if !has_modified {
        transaction.execute_batch("ALTER TABLE files ADD COLUMN modified_ns INTEGER;")?;
    }
    transaction
        .execute_batch("CREATE INDEX IF NOT EXISTS files_by_sent_name ON files (sent_name);")?;
    // Protocol 11: files left for users who were not online (their bytes are in the
    // store's inbox area).
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS inbox (
            id        INTEGER PRIMARY KEY,
            recipient TEXT NOT NULL,
            sender    TEXT NOT NULL,
            name      TEXT NOT NULL,
            size      INTEGER NOT NULL,
            blake3    TEXT NOT NULL,
            blob      TEXT NOT NULL,
            left_ns   INTEGER NOT NULL,
            batch     INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS inbox_by_recipient ON inbox (recipient);",
    )?;
    if !existed {
        // A new catalog has nothing to upgrade.
        transaction.pragma_update(None, "user_version", NAMESPACED_SCHEMA)?;
    }
    transaction.commit()?;
    Ok(())
}

/// Moves every row of a catalog made before namespaces into `namespace` (stored and sent
/// names gain its folder, the owner is set), and records the new schema: one transaction,
/// so a crash leaves either the old rows or the new ones.
pub(super) fn finish_namespace_upgrade(
    conn: &mut Connection,
    namespace: &str,
) -> Result<(), CatalogError> {
    let transaction = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if version(&transaction)? < NAMESPACED_SCHEMA {
        transaction.execute(
            "UPDATE files SET stored_name = ?1 || '/' || stored_name,
                              sent_name = ?1 || '/' || sent_name, owner = ?1",
            [namespace],
        )?;
        transaction.pragma_update(None, "user_version", NAMESPACED_SCHEMA)?;
    }
    transaction.commit()?;
    Ok(())
}

/// The schema version of the catalog (0 for one made before versions were recorded).
pub(super) fn version(conn: &Connection) -> Result<i64, CatalogError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}
