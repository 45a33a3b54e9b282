//! File names are untrusted input: the rules that decide which names may be stored.
//!
//! A name is a relative path with `/` separators. It is refused, never rewritten, when it
//! could escape the storage directory, collide with the server's own files, or mean
//! different things on different systems. Refusing keeps the rule easy to state and the
//! catalog honest: what the client sent is exactly what is stored (up to a conflict suffix).

use std::path::{Path, PathBuf};

use ft_protocol::{MAX_NAME_COMPONENT_LEN, MAX_NAME_DEPTH, MAX_NAME_LEN};

/// The directory inside the storage root that belongs to the server (catalog, partials).
pub const PRIVATE_DIR: &str = ".fts";

/// Why a name was refused. The message is sent to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing to store under.
    #[error("the name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("the name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// One `/`-separated part is longer than [`MAX_NAME_COMPONENT_LEN`].
    #[error("a part of the name is longer than {MAX_NAME_COMPONENT_LEN} bytes")]
    ComponentTooLong,
    /// Starts with `/`.
    #[error("absolute names are not allowed")]
    Absolute,
    /// Contains `.` or `..` as a part.
    #[error("'.' and '..' are not allowed in names")]
    DotComponent,
    /// Contains `//` or ends with `/`.
    #[error("the name has an empty part ('//' or a trailing '/')")]
    EmptyComponent,
    /// NUL, newline or another control character.
    #[error("control characters (including NUL) are not allowed in names")]
    ControlCharacter,
    /// A backslash, which is a separator on Windows and would be ambiguous.
    #[error("backslashes are not allowed in names; use '/' between folders")]
    Backslash,
    /// More than [`MAX_NAME_DEPTH`] folders.
    #[error("a name has at most {MAX_NAME_DEPTH} folders (counting the user's own)")]
    TooDeep,
    /// The server's private directory.
    #[error("names starting with '{PRIVATE_DIR}' (in any case) are reserved for the server")]
    Reserved,
    /// A bidirectional override, embedding, isolate or mark, which makes a name display as
    /// another (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`).
    #[error("bidirectional control characters are not allowed in names")]
    BidiControl,
}

/// Whether `c` changes how the text around it is displayed (Unicode's bidirectional
/// controls).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A name that passed every rule: safe to join onto the storage root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidName(String);

impl ValidName {
    /// Checks `name` against the rules in this module's docs.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        if name.chars().any(is_bidi_control) {
            return Err(NameError::BidiControl);
        }
        if name.contains('\\') {
            return Err(NameError::Backslash);
        }
        if name.starts_with('/') {
            return Err(NameError::Absolute);
        }
        if name.matches('/').count() > MAX_NAME_DEPTH {
            return Err(NameError::TooDeep);
        }
        for (index, component) in name.split('/').enumerate() {
            match component {
                "" => return Err(NameError::EmptyComponent),
                "." | ".." => return Err(NameError::DotComponent),
                // Any case: on a case-folding filesystem `.FTS` is the private folder.
                _ if index == 0 && component.eq_ignore_ascii_case(PRIVATE_DIR) => {
                    return Err(NameError::Reserved)
                }
                _ if component.len() > MAX_NAME_COMPONENT_LEN => {
                    return Err(NameError::ComponentTooLong)
                }
                _ => {}
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as text, `/`-separated, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The last part: the file's own name within its folder.
    pub fn leaf(&self) -> &str {
        self.0
            .rsplit_once('/')
            .map_or(self.0.as_str(), |(_, leaf)| leaf)
    }

    /// The path of this name under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        // A valid name is relative and `/`-separated, exactly a relative Unix path.
        root.join(&self.0)
    }

    /// The `n`-th alternative used when the name is taken: `dir/report (n).pdf`.
    /// The suffix goes before the last extension; a leading dot is not an extension.
    pub fn numbered(&self, n: u32) -> Result<Self, NameError> {
        let (dir, file) = match self.0.rsplit_once('/') {
            Some((dir, file)) => (Some(dir), file),
            None => (None, self.0.as_str()),
        };
        let numbered_file = match file.rfind('.') {
            Some(dot) if dot > 0 => format!("{} ({n}){}", &file[..dot], &file[dot..]),
            _ => format!("{file} ({n})"),
        };
        match dir {
            Some(dir) => Self::parse(&format!("{dir}/{numbered_file}")),
            None => Self::parse(&numbered_file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "a",
            "report.pdf",
            "photos/2024/ça va.jpg",
            ".bashrc",
            "a..b",
            "...",
        ] {
            assert_eq!(ValidName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        let cases = [
            ("", NameError::Empty),
            ("/etc/passwd", NameError::Absolute),
            ("..", NameError::DotComponent),
            ("../x", NameError::DotComponent),
            ("a/../../x", NameError::DotComponent),
            ("./x", NameError::DotComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a\0b", NameError::ControlCharacter),
            ("line\nbreak", NameError::ControlCharacter),
            ("..\\..\\x", NameError::Backslash),
            (".fts", NameError::Reserved),
            (".fts/catalog.db", NameError::Reserved),
            (".FTS/catalog.db", NameError::Reserved),
            (".Fts", NameError::Reserved),
            ("invoice\u{202e}fdp.exe", NameError::BidiControl),
            ("a/\u{2067}b", NameError::BidiControl),
        ];
        for (name, expected) in cases {
            assert_eq!(ValidName::parse(name), Err(expected), "{name:?}");
        }
        assert_eq!(
            ValidName::parse(&"x".repeat(256)),
            Err(NameError::ComponentTooLong)
        );
        let long = vec!["y".repeat(200); 30].join("/");
        assert_eq!(ValidName::parse(&long), Err(NameError::TooLong));
        let deep = "d/".repeat(MAX_NAME_DEPTH + 1) + "f";
        assert_eq!(ValidName::parse(&deep), Err(NameError::TooDeep));
        assert!(ValidName::parse(&("d/".repeat(MAX_NAME_DEPTH) + "f")).is_ok());
        // Only the top-level private directory is reserved.
        assert!(ValidName::parse("sub/.fts").is_ok());
    }

    #[test]
    fn numbered_names_keep_the_extension_and_folder() {
        let n = |name: &str, i| ValidName::parse(name).unwrap().numbered(i).unwrap();
        assert_eq!(n("report.pdf", 1).as_str(), "report (1).pdf");
        assert_eq!(
            n("a/b/archive.tar.gz", 2).as_str(),
            "a/b/archive.tar (2).gz"
        );
        assert_eq!(n(".bashrc", 3).as_str(), ".bashrc (3)");
        assert_eq!(n("dir.d/README", 1).as_str(), "dir.d/README (1)");
    }

    #[test]
    fn under_joins_each_part() {
        let name = ValidName::parse("a/b/c.txt").unwrap();
        assert_eq!(
            name.under(Path::new("/srv")),
            PathBuf::from("/srv/a/b/c.txt")
        );
    }
}
