//! `ftc list` for people: human sizes, local times to the minute, short hashes, natural
//! name order, and a folder summary. Scripts get every exact value from `--json`.

use std::cmp::Ordering;

use ft_protocol::CatalogEntry;
use indicatif::BinaryBytes;

use crate::cli::SortKey;

/// How the listing is shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListStyle {
    /// Exact byte counts.
    pub(crate) bytes: bool,
    /// UTC instead of local time.
    pub(crate) utc: bool,
    /// Full hashes and modification times.
    pub(crate) long: bool,
    /// Order of the rows.
    pub(crate) sort: SortKey,
    /// One row per top-level folder.
    pub(crate) folders: bool,
    /// An admin's listing: who stored each file.
    pub(crate) owners: bool,
}

/// Digits of the hash shown without `--long`: enough to tell files apart by eye.
const SHORT_HASH_DIGITS: usize = 12;

/// Sorts `entries` as asked: natural name order breaks every tie.
pub(crate) fn sort(entries: &mut [CatalogEntry], key: SortKey) {
    entries.sort_by(|a, b| {
        let first = match key {
            SortKey::Name => Ordering::Equal,
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Time => a.added_at.cmp(&b.added_at),
        };
        first.then_with(|| natural_cmp(&a.name, &b.name))
    });
}

/// Compares names as people count: runs of digits by value (`part2` before `part10`), and
/// a name before its keep-both variants (`part1.bin` before `part1 (1).bin`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a_stem, a_copy) = split_copy_number(a);
    let (b_stem, b_copy) = split_copy_number(b);
    compare_runs(&a_stem, &b_stem)
        .then(a_copy.cmp(&b_copy))
        .then_with(|| a.cmp(b))
}

/// `name (3).ext` → (`name.ext`-like stem, Some(3)) as a key: the stem is the name with the
/// copy number taken out, so copies sort right after their original.
fn split_copy_number(name: &str) -> (std::borrow::Cow<'_, str>, Option<u64>) {
    let (folder, leaf) = match name.rfind('/') {
        Some(at) => (&name[..=at], &name[at + 1..]),
        None => ("", name),
    };
    let (stem, ext) = match leaf.rfind('.') {
        Some(at) if at > 0 => (&leaf[..at], &leaf[at..]),
        _ => (leaf, ""),
    };
    if let Some(open) = stem.rfind(" (") {
        if let Some(number) = stem[open + 2..].strip_suffix(')') {
            if let Ok(n) = number.parse::<u64>() {
                let original = format!("{folder}{}{ext}", &stem[..open]);
                return (std::borrow::Cow::Owned(original), Some(n));
            }
        }
    }
    (std::borrow::Cow::Borrowed(name), None)
}

/// Compares text with digit runs compared by value.
fn compare_runs(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let a_len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                let b_len = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
                let (a_num, b_num) = (
                    a[..a_len].trim_start_matches('0'),
                    b[..b_len].trim_start_matches('0'),
                );
                let order = a_num.len().cmp(&b_num.len()).then(a_num.cmp(b_num));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (&a[a_len..], &b[b_len..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

/// A catalog time (RFC 3339, UTC) shown to the minute, in local time unless `utc`.
pub(crate) fn show_time(rfc3339: &str, utc: bool) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) if utc => time
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%MZ")
            .to_string(),
        Ok(time) => time
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// A modification time in nanoseconds since the epoch, shown like [`show_time`].
fn show_modified(modified_ns: Option<i64>, utc: bool) -> String {
    let Some(ns) = modified_ns else {
        return "-".to_owned();
    };
    let time = chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0);
    match time {
        Some(time) => show_time(&time.to_rfc3339(), utc),
        None => "-".to_owned(),
    }
}

fn size_text(size: u64, exact: bool) -> String {
    if exact {
        size.to_string()
    } else {
        BinaryBytes(size).to_string()
    }
}

/// The rows of a listing, header first, as text lines.
pub(crate) fn lines(entries: &[CatalogEntry], style: ListStyle) -> Vec<String> {
    if style.folders {
        return folder_lines(entries, style);
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            let hash = entry.hash.to_hex();
            let hash = if style.long {
                hash
            } else {
                hash[..SHORT_HASH_DIGITS].to_owned()
            };
            let modified = if style.long {
                show_modified(entry.modified_ns, style.utc)
            } else {
                String::new()
            };
            [
                size_text(entry.size, style.bytes),
                show_time(&entry.added_at, style.utc),
                modified,
                hash,
                entry.owner.clone(),
            ]
        })
        .collect();
    let header = ["SIZE", "ADDED", "MODIFIED", "BLAKE3", "OWNER"];
    let shown = |column: usize| match column {
        2 => style.long,
        4 => style.owners,
        _ => true,
    };
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5], name: &str| {
        let mut text = String::new();
        for column in (0..5).filter(|c| shown(*c)) {
            let width = widths[column];
            if column == 0 {
                text.push_str(&format!("{:>width$}  ", cells[column]));
            } else {
                text.push_str(&format!("{:<width$}  ", cells[column]));
            }
        }
        text.push_str(name);
        text
    };
    let mut out = vec![line(header, "NAME")];
    for (entry, row) in entries.iter().zip(&rows) {
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        ];
        out.push(line(cells, &entry.name));
    }
    out
}

/// One row per top-level folder (and per file at the top): files, total size, newest.
fn folder_lines(entries: &[CatalogEntry], style: ListStyle) -> Vec<String> {
    let mut groups: std::collections::BTreeMap<String, (usize, u64, String)> =
        std::collections::BTreeMap::new();
    for entry in entries {
        let key = match entry.name.find('/') {
            Some(at) => entry.name[..=at].to_owned(),
            None => entry.name.clone(),
        };
        let group = groups.entry(key).or_default();
        group.0 += 1;
        group.1 += entry.size;
        if entry.added_at > group.2 {
            group.2 = entry.added_at.clone();
        }
    }
    let mut keys: Vec<&String> = groups.keys().collect();
    keys.sort_by(|a, b| natural_cmp(a, b));
    let mut out = vec![format!(
        "{:>9}  {:>10}  {:<16}  NAME",
        "FILES", "SIZE", "NEWEST"
    )];
    for key in keys {
        let (files, size, newest) = &groups[key];
        out.push(format!(
            "{files:>9}  {:>10}  {:<16}  {key}",
            size_text(*size, style.bytes),
            show_time(newest, style.utc)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_counts_digits_and_puts_copies_after_their_original() {
        let mut names = vec![
            "part10.bin",
            "part1 (1).bin",
            "part2.bin",
            "part1.bin",
            "part1 (10).bin",
            "part1 (2).bin",
            "a/x.txt",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "a/x.txt",
                "part1.bin",
                "part1 (1).bin",
                "part1 (2).bin",
                "part1 (10).bin",
                "part2.bin",
                "part10.bin"
            ]
        );
    }

    #[test]
    fn times_are_shown_to_the_minute() {
        assert_eq!(
            show_time("2026-12-04T16:02:30.853Z", true),
            "2026-12-04 16:02Z"
        );
        assert_eq!(show_time("not a time", true), "not a time");
        assert_eq!(
            show_modified(Some(981_173_106_789_000_000), true),
            "2001-02-03 04:05Z"
        );
    }
}
