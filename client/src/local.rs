//! Local files chosen for upload, checked before any connection is made.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
