//! Whether an announced file is already stored: the decision that lets a re-run of the same
//! `ftc send` skip what arrived before instead of storing copies.
//!
//! The candidates are the stored versions of the announced name (see
//! [`Catalog::versions`](crate::catalog::Catalog::versions)): the file under the name
//! itself and, unless the upload overwrites, the keep-both variants stored from it. Like
//! rsync's quick check, equal size and modification time mean the same content; unlike it,
//! an equal size with another time (a `touch`, a copy) is settled by comparing BLAKE3: the
//! client hashes its file and the server compares with the recorded hash, so the file is
//! not sent again. The stored hash never leaves the server.

use ft_protocol::{ConflictPolicy, FileIntent};

use crate::catalog::StoredVersion;

/// What the catalog says about an announced file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sameness {
    /// A stored version holds this content: don't send it. `retime` is set when it matched
    /// by hash with another modification time, which the record should take.
    Unchanged {
        /// The stored name holding it.
        stored_name: String,
        /// The sender's time to record, when it differs from the recorded one.
        retime: Option<i64>,
    },
    /// A version has the same size; only the content hash can tell.
    Compare,
    /// The name is taken by other content and the upload skips taken names.
    Taken,
    /// Nothing stored holds this content: send it.
    New,
}

/// Decides for `intent` (its name already in the server's terms) among `versions`, newest
/// first. Pure: the catalog lookup is the caller's.
pub(crate) fn judge(intent: &FileIntent, versions: &[StoredVersion]) -> Sameness {
    let same_size = versions.iter().filter(|v| v.size == intent.size);
    if let Some(hash) = intent.content_hash {
        if let Some(version) = same_size.clone().find(|v| v.hash == hash) {
            let retime = intent
                .modified_ns
                .filter(|ns| version.modified_ns != Some(*ns));
            return Sameness::Unchanged {
                stored_name: version.stored_name.clone(),
                retime,
            };
        }
    } else if same_size.clone().next().is_some() {
        // Equal size and time is not proof: files from different machines (clones,
        // automation) often share a name, a size and a time. Only the hash decides, so a
        // stored file is never mistaken for another's content; the client hashes only files
        // whose size matches a stored version.
        return Sameness::Compare;
    }
    let name_taken = versions.iter().any(|v| v.stored_name == intent.name);
    if intent.conflict == ConflictPolicy::Skip && name_taken {
        Sameness::Taken
    } else {
        Sameness::New
    }
}

/// Whether an announced file is compared with the copies stored from its name too: not when
/// it overwrites (the file under the name is the one it would replace).
pub(crate) fn with_variants(intent: &FileIntent) -> bool {
    intent.conflict != ConflictPolicy::Overwrite
}

#[cfg(test)]
mod tests {
    use ft_protocol::Hash;

    use super::*;

    fn intent(size: u64, modified_ns: Option<i64>, conflict: ConflictPolicy) -> FileIntent {
        FileIntent {
            name: "a.txt".into(),
            size,
            key: Hash([0; 32]),
            conflict,
            modified_ns,
            quick_check: true,
            content_hash: None,
        }
    }

    fn version(name: &str, size: u64, content: u8, modified_ns: Option<i64>) -> StoredVersion {
        StoredVersion {
            stored_name: name.into(),
            size,
            hash: Hash([content; 32]),
            modified_ns,
        }
    }

    #[test]
    fn equal_size_and_time_still_asks_for_the_hash() {
        let versions = [
            version("a (1).txt", 5, 2, Some(9)),
            version("a.txt", 5, 1, Some(7)),
        ];
        let judged = judge(&intent(5, Some(7), ConflictPolicy::KeepBoth), &versions);
        assert_eq!(judged, Sameness::Compare);
    }

    #[test]
    fn equal_size_with_another_time_or_checksum_asks_for_the_hash() {
        let versions = [version("a.txt", 5, 1, Some(7))];
        let touched = intent(5, Some(8), ConflictPolicy::KeepBoth);
        assert_eq!(judge(&touched, &versions), Sameness::Compare);
        let checksum = FileIntent {
            quick_check: false,
            ..intent(5, Some(7), ConflictPolicy::KeepBoth)
        };
        assert_eq!(judge(&checksum, &versions), Sameness::Compare);
        // No recorded time (stored before times were kept): the hash decides too.
        let untimed = [version("a.txt", 5, 1, None)];
        assert_eq!(judge(&touched, &untimed), Sameness::Compare);
    }

    #[test]
    fn the_hash_settles_it_and_retimes_the_record() {
        let versions = [version("a.txt", 5, 1, Some(7))];
        let same = FileIntent {
            content_hash: Some(Hash([1; 32])),
            ..intent(5, Some(8), ConflictPolicy::KeepBoth)
        };
        assert_eq!(
            judge(&same, &versions),
            Sameness::Unchanged {
                stored_name: "a.txt".into(),
                retime: Some(8)
            }
        );
        let other = FileIntent {
            content_hash: Some(Hash([3; 32])),
            ..same
        };
        assert_eq!(judge(&other, &versions), Sameness::New);
    }

    #[test]
    fn other_sizes_are_new_unless_taken_names_are_skipped() {
        let versions = [version("a.txt", 5, 1, Some(7))];
        assert_eq!(
            judge(&intent(6, Some(7), ConflictPolicy::KeepBoth), &versions),
            Sameness::New
        );
        assert_eq!(
            judge(&intent(6, Some(7), ConflictPolicy::Skip), &versions),
            Sameness::Taken
        );
        assert_eq!(
            judge(&intent(6, Some(7), ConflictPolicy::Skip), &[]),
            Sameness::New
        );
        // A variant holding other content does not make the name itself taken.
        let variant = [version("a (1).txt", 5, 1, Some(7))];
        assert_eq!(
            judge(&intent(6, Some(7), ConflictPolicy::Skip), &variant),
            Sameness::New
        );
    }
}
