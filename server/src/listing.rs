//! A `List` answered page by page, each page a bounded slice of work: at most
//! [`MAX_SCANNED_ROWS_PER_PAGE`] catalog rows are read for it (through the name index, from
//! the pattern's literal prefix on) and matched against the pattern, whatever the pattern
//! and however few names match. A page may then hold fewer entries than it could, even none,
//! with more to come; the client reads pages until the last.

use ft_protocol::CatalogEntry;

use crate::{
    catalog::{Catalog, CatalogError, Within},
    pattern::Pattern,
};

/// Rows read from the catalog at once (the listing connection's lock is held for one read).
const SCAN_BATCH_ROWS: usize = 256;

/// Most rows read and matched for one page.
const MAX_SCANNED_ROWS_PER_PAGE: usize = 4096;

/// What one listing covers: whose files, which pattern, and where the scan starts.
pub(crate) struct Query {
    /// The caller's namespace; `None` for an admin, who sees every file.
    pub(crate) namespace: Option<String>,
    /// The pattern over stored names (`None`: everything).
    pub(crate) pattern: Option<Pattern>,
    /// Every match starts with this.
    pub(crate) prefix: String,
}

/// One page's entries, where the next page goes on from, and whether this is the last.
pub(crate) struct Page {
    /// Matching entries, in name order, at most the page size.
    pub(crate) entries: Vec<CatalogEntry>,
    /// The last stored name looked at.
    pub(crate) cursor: Option<String>,
    /// No more names can match.
    pub(crate) last: bool,
}

/// The next page of `query` after `cursor`, with at most `size` entries. Blocking.
pub(crate) fn next_page(
    catalog: &Catalog,
    query: &Query,
    mut cursor: Option<String>,
    size: usize,
) -> Result<Page, CatalogError> {
    let within = query
        .namespace
        .as_deref()
        .map_or(Within::All, Within::Namespace);
    let mut entries = Vec::new();
    let mut scanned = 0;
    while scanned < MAX_SCANNED_ROWS_PER_PAGE {
        let batch = catalog.scan(within, &query.prefix, cursor.as_deref(), SCAN_BATCH_ROWS)?;
        let complete = batch.len() < SCAN_BATCH_ROWS;
        for entry in batch {
            if !entry.name.starts_with(&query.prefix) {
                return Ok(Page {
                    entries,
                    cursor,
                    last: true,
                });
            }
            scanned += 1;
            cursor = Some(entry.name.clone());
            let matched = match &query.pattern {
                Some(pattern) => pattern.matches(&entry.name),
                None => true,
            };
            if matched {
                entries.push(entry);
                if entries.len() == size {
                    return Ok(Page {
                        entries,
                        cursor,
                        last: false,
                    });
                }
            }
        }
        if complete {
            return Ok(Page {
                entries,
                cursor,
                last: true,
            });
        }
    }
    Ok(Page {
        entries,
        cursor,
        last: false,
    })
}
