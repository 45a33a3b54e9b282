//! `known_servers`: the fingerprint each server showed the first time (trust on first use),
//! one `HOST:PORT SHA256:...` line per server, like SSH's `known_hosts`.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use ft_protocol::Fingerprint;

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KnownServersError {
    /// Reading or writing failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// A line is not `HOST:PORT SHA256:...`.
    #[error("{path}, line {line}: expected `HOST:PORT SHA256:<64 hex digits>`")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
}

/// The known servers file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    /// The file at `path` (which need not exist yet).
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint recorded for `server` (`HOST:PORT`), if any.
    pub fn lookup(&self, server: &str) -> Result<Option<Fingerprint>, KnownServersError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                return Err(KnownServersError::Io {
                    action: "read",
                    path: self.path.clone(),
                    cause,
                })
            }
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || KnownServersError::Malformed {
                path: self.path.clone(),
                line: index + 1,
            };
            let (name, fingerprint) = line.split_once(char::is_whitespace).ok_or_else(malformed)?;
            if name == server {
                let fingerprint = fingerprint.trim().parse().map_err(|_| malformed())?;
                return Ok(Some(fingerprint));
            }
        }
        Ok(None)
    }

    /// Records `fingerprint` for `server`, creating the file (and its folder) if needed.
    pub fn add(&self, server: &str, fingerprint: Fingerprint) -> Result<(), KnownServersError> {
        let io = |action| {
            move |cause| KnownServersError::Io {
                action,
                path: self.path.clone(),
                cause,
            }
        };
        if let Some(folder) = self.path.parent() {
            fs::create_dir_all(folder).map_err(io("create the folder of"))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io("open"))?;
        // One write of the whole line: with `O_APPEND` two clients meeting a new server at
        // once each add a whole line (`writeln!` wrote it in pieces, which interleaved).
        let line = format!("{server} {fingerprint}\n");
        file.write_all(line.as_bytes()).map_err(io("write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_recorded_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownServers::at(dir.path().join("ftc/known_servers"));
        assert_eq!(known.lookup("a:1").unwrap(), None);
        let fingerprint = Fingerprint([9; 32]);
        known.add("a:1", fingerprint).unwrap();
        known.add("[::1]:7878", Fingerprint([1; 32])).unwrap();
        assert_eq!(known.lookup("a:1").unwrap(), Some(fingerprint));
        assert_eq!(
            known.lookup("[::1]:7878").unwrap(),
            Some(Fingerprint([1; 32]))
        );
        assert_eq!(known.lookup("a:2").unwrap(), None);
        // Many processes adding at once still leave whole lines.
        let adders: Vec<_> = (0..16u8)
            .map(|n| {
                let known = KnownServers::at(known.path().to_path_buf());
                std::thread::spawn(move || {
                    for round in 0..20u8 {
                        known
                            .add(&format!("h{n}:{round}"), Fingerprint([n; 32]))
                            .unwrap();
                    }
                })
            })
            .collect();
        for adder in adders {
            adder.join().unwrap();
        }
        assert_eq!(known.lookup("h15:19").unwrap(), Some(Fingerprint([15; 32])));
        // Every line is read (and must parse) looking for a server not there.
        assert_eq!(known.lookup("nowhere:1").unwrap(), None);
        let lines = fs::read_to_string(known.path()).unwrap().lines().count();
        assert_eq!(lines, 2 + 16 * 20);
        fs::write(known.path(), "garbage\n").unwrap();
        assert!(matches!(
            known.lookup("a:1"),
            Err(KnownServersError::Malformed { line: 1, .. })
        ));
    }
}
