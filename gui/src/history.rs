//! What was sent, received and downloaded, in this and earlier runs: one JSON line per file
//! in `history.jsonl` beside the config file (at most [`MAX_RECORDS_SHOWN`] are loaded).

use std::{
    io::{BufRead as _, Write as _},
    path::PathBuf,
};

use ft_protocol::Hash;
use serde::{Deserialize, Serialize};

/// Most records loaded at start-up (the newest).
const MAX_RECORDS_SHOWN: usize = 1000;

/// One file's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// When (UTC, seconds since the epoch).
    pub(crate) at: u64,
    /// "sent", "received", "downloaded", "sent to".
    pub(crate) kind: String,
    pub(crate) name: String,
    /// "verified", "unchanged ...", "failed: ...", or the recipient.
    pub(crate) outcome: String,
    /// BLAKE3, when known.
    pub(crate) hash: Option<String>,
}

impl Record {
    pub(crate) fn new(kind: &str, name: &str, outcome: &str, hash: Option<Hash>) -> Self {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            at,
            kind: kind.to_owned(),
            name: name.to_owned(),
            outcome: outcome.to_owned(),
            hash: hash.map(|hash| hash.to_hex()),
        }
    }
}

/// The history file (none: history is kept for this run only).
#[derive(Debug, Clone)]
pub struct History {
    path: Option<PathBuf>,
}

impl History {
    /// The history file in the config folder ftc uses.
    pub fn in_config_dir() -> Self {
        Self {
            path: ft_client::config_files::config_dir().map(|dir| dir.join("history.jsonl")),
        }
    }

    /// A history kept in `path` (tests).
    pub fn at(path: PathBuf) -> Self {
        Self { path: Some(path) }
    }

    /// The newest records, oldest first; unreadable lines are skipped.
    pub(crate) fn load(&self) -> Vec<Record> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let Ok(file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect();
        let excess = records.len().saturating_sub(MAX_RECORDS_SHOWN);
        records.drain(..excess);
        records
    }

    /// Appends a record (best effort: history is a convenience, never a reason to fail).
    pub(crate) fn append(&self, record: &Record) {
        let Some(path) = &self.path else {
            return;
        };
        if let Some(folder) = path.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}
