//! Local files chosen for upload, checked before any connection is made.

use std::{
    fs::{File, Metadata},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use ft_protocol::Hash;

use crate::error::{ClientError, LocalFileError};

/// A readable regular file and the name it will be sent under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Where the file is on this machine.
    pub path: PathBuf,
    /// The name sent to the server: the file's own name, without folders.
    pub name: String,
    /// Size when checked. If the file changes before it is sent, the upload is cancelled.
    pub size: u64,
    /// Identity and version of the file (see [`upload_key`]); names its resumable upload.
    pub key: Hash,
}

/// The resume key of a file: BLAKE3 over the name it is sent under and the file's identity
/// and version (device, inode, size, modification time). Sending the same unchanged file
/// again yields the same key, so an interrupted upload continues; a modified file yields a
/// new key and starts from zero.
pub fn upload_key(name: &str, meta: &Metadata) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"ft upload key v1\0");
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    for field in [meta.dev(), meta.ino(), meta.len()] {
        hasher.update(&field.to_le_bytes());
    }
    hasher.update(&meta.mtime().to_le_bytes());
    hasher.update(&meta.mtime_nsec().to_le_bytes());
    hasher.finalize().into()
}

/// Checks every path and returns the files to send, or every problem found at once.
pub fn plan_uploads(paths: &[PathBuf]) -> Result<Vec<LocalFile>, ClientError> {
    let mut files = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for path in paths {
        match inspect(path) {
            Ok(file) => files.push(file),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(ClientError::LocalFiles(problems))
    }
}

fn inspect(path: &Path) -> Result<LocalFile, LocalFileError> {
    let unreadable = |source| LocalFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(LocalFileError::IsFolder {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(LocalFileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    // Opening proves read permission now rather than halfway through a batch.
    File::open(path).map_err(unreadable)?;
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| LocalFileError::NonUtf8Name {
            path: path.to_path_buf(),
        })?;
    Ok(LocalFile {
        path: path.to_path_buf(),
        name: name.to_owned(),
        size: meta.len(),
        key: upload_key(name, &meta),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_content_version_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!(
            upload_key("f", &before),
            upload_key("f", &std::fs::metadata(&path).unwrap())
        );
        assert_ne!(upload_key("f", &before), upload_key("g", &before));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_ne!(
            upload_key("f", &before),
            upload_key("f", &std::fs::metadata(&path).unwrap())
        );
    }

    #[test]
    fn every_problem_is_reported_and_good_files_are_planned() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.txt");
        std::fs::write(&good, b"12345").unwrap();
        let planned = plan_uploads(std::slice::from_ref(&good)).unwrap();
        assert_eq!(planned[0].name, "good.txt");
        assert_eq!(planned[0].size, 5);

        let missing = dir.path().join("missing");
        let err = plan_uploads(&[good, missing.clone(), dir.path().to_path_buf()]).unwrap_err();
        let ClientError::LocalFiles(problems) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(problems.len(), 2);
        let text = err.to_string();
        assert!(text.contains("missing"), "{text}");
        assert!(text.contains("is a folder"), "{text}");
    }
}
