//! Which stored files a command's arguments mean: `get` and `rm` take plain names, folder
//! names (`photos/` or `photos`) and glob patterns (`'photos/*.jpg'`, the same as `list`).
//! Patterns and folders are expanded with a listing, which also gives every size up front.

use ft_client::{ClientError, Session};

/// A stored file chosen by the arguments, with its size when a listing gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// The stored name.
    pub(crate) name: String,
    /// Its size, if known.
    pub(crate) size: Option<u64>,
    /// Its BLAKE3, if a listing gave it (to recognise a copy saved earlier).
    pub(crate) hash: Option<ft_protocol::Hash>,
}

/// What the arguments chose: files, and the arguments that matched nothing.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// Stored files, in argument order, each once.
    pub(crate) files: Vec<Selected>,
    /// Patterns and folders that matched no stored file.
    pub(crate) unmatched: Vec<String>,
    /// Whether any argument was a pattern or a folder (a mass operation).
    pub(crate) expanded: bool,
}

/// Whether `arg` is a glob pattern (`*`, `?` or a `[...]` set).
pub(crate) fn is_pattern(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

/// A pattern that matches `name` only: each of `*`, `?` and `[` in a one-character set.
pub(crate) fn literal_pattern(name: &str) -> String {
    let mut pattern = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '*' | '?' | '[' => {
                pattern.push('[');
                pattern.push(c);
                pattern.push(']');
            }
            _ => pattern.push(c),
        }
    }
    pattern
}

/// Expands `args` against the server's catalog. A plain name is looked up too: a stored
/// file of that name is taken as is, otherwise a folder of that name is expanded; a name
/// that is neither is kept, so the command reports it as not found.
pub(crate) async fn select(
    session: &mut Session,
    args: &[String],
) -> Result<Selection, ClientError> {
    let mut selection = Selection::default();
    let mut seen = std::collections::HashSet::new();
    let client = session.client().await?;
    for arg in args {
        let folder = arg.trim_end_matches('/');
        // A stored name may itself hold `*`, `?` or `[` (`photo [1].jpg`): such a name is
        // taken as it is, and only otherwise as a pattern.
        if is_pattern(arg) {
            // A name too long for a pattern is left to the pattern path (and its error).
            let literal = match client.list(Some(literal_pattern(arg))).await {
                Ok(entries) => entries,
                Err(ClientError::Failed { .. }) => Vec::new(),
                Err(err) => return Err(err),
            };
            if let Some(entry) = literal.into_iter().find(|entry| entry.name == *arg) {
                if seen.insert(entry.name.clone()) {
                    selection.files.push(Selected {
                        name: entry.name,
                        size: Some(entry.size),
                        hash: Some(entry.hash),
                    });
                }
                continue;
            }
        }
        let (pattern, exact) = if is_pattern(arg) {
            (arg.clone(), false)
        } else if arg.ends_with('/') && !folder.is_empty() {
            (format!("{folder}/*"), false)
        } else {
            (arg.clone(), true)
        };
        let mut entries = client.list(Some(pattern)).await?;
        if exact {
            entries.retain(|entry| entry.name == *arg);
            if entries.is_empty() && !is_pattern(folder) {
                entries = client.list(Some(format!("{folder}/*"))).await?;
                selection.expanded |= !entries.is_empty();
            }
            if entries.is_empty() {
                // Not found: the command itself says so, as for any unknown name.
                if seen.insert(arg.clone()) {
                    selection.files.push(Selected {
                        name: arg.clone(),
                        size: None,
                        hash: None,
                    });
                }
                continue;
            }
        } else {
            selection.expanded = true;
            if entries.is_empty() {
                selection.unmatched.push(arg.clone());
            }
        }
        for entry in entries {
            if seen.insert(entry.name.clone()) {
                selection.files.push(Selected {
                    name: entry.name,
                    size: Some(entry.size),
                    hash: Some(entry.hash),
                });
            }
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_told_from_names() {
        assert!(is_pattern("photos/*.jpg"));
        assert!(is_pattern("a?.txt"));
        assert!(is_pattern("[ab].txt"));
        assert!(!is_pattern("photos/2024/a.jpg"));
        assert!(!is_pattern("photos/"));
    }

    #[test]
    fn a_literal_pattern_sets_each_special_character_apart() {
        assert_eq!(literal_pattern("photo [1].jpg"), "photo [[]1].jpg");
        assert_eq!(literal_pattern("what?*.txt"), "what[?][*].txt");
        assert_eq!(literal_pattern("plain.txt"), "plain.txt");
    }
}
