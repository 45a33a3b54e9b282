//! Local files chosen for upload, checked before any connection is made.

use std::{
    fs::Metadata,
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
    /// Modification time, nanoseconds since the Unix epoch: kept with the stored file, and
    /// what tells an unchanged file on a re-run (with the size).
    pub modified_ns: Option<i64>,
}

/// A file's modification time in nanoseconds since the Unix epoch (none past the year 2262).
pub(crate) fn modified_ns(meta: &Metadata) -> Option<i64> {
    meta.mtime()
        .checked_mul(1_000_000_000)?
        .checked_add(meta.mtime_nsec())
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

/// Everything one `send` will do: files to upload, empty folders to create, and what was
/// left out (with why).
#[derive(Debug, Default)]
pub struct UploadPlan {
    /// Files, in a stable order (arguments in order, folder contents sorted by name).
    pub files: Vec<LocalFile>,
    /// Folders with nothing to send inside, created on the server so the tree is kept.
    pub folders: Vec<String>,
    /// Entries inside folders that are not sent.
    pub skipped: Vec<Skipped>,
    /// Entries inside folders that could not be read: not sent, reported as failures
    /// (empty unless planned with `strict: false`; strict planning refuses them all).
    pub unreadable: Vec<LocalFileError>,
}

/// An entry inside a sent folder that is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry.
    pub path: PathBuf,
    /// Why.
    pub reason: &'static str,
}

/// Checks every path and plans the upload, or returns every problem found at once.
///
/// A file is sent under its own file name. A folder is sent with its structure under its own
/// name: `photos/` becomes `photos/...` on the server. Inside folders, symbolic links are
/// never followed (so nothing outside the tree is sent) and other special files are skipped;
/// both are listed in [`UploadPlan::skipped`]. A path named on the command line is followed
/// even if it is a link: the user chose it. An entry inside a folder that cannot be read is
/// listed in [`UploadPlan::unreadable`] and the rest is sent, unless `strict`: then it is a
/// problem like any other and nothing is planned.
pub fn plan_uploads(paths: &[PathBuf], strict: bool) -> Result<UploadPlan, ClientError> {
    let mut plan = UploadPlan::default();
    let mut problems = Vec::new();
    for (part, part_problems) in plan_each(paths) {
        plan.files.extend(part.files);
        plan.folders.extend(part.folders);
        plan.skipped.extend(part.skipped);
        if strict {
            problems.extend(part.unreadable);
        } else {
            plan.unreadable.extend(part.unreadable);
        }
        problems.extend(part_problems);
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(ClientError::LocalFiles(problems))
    }
}

/// Arguments per planning thread at least: below this a thread costs more than it saves.
const PLAN_ARGS_PER_THREAD: usize = 8;

/// Plans each argument on its own, in order. Checking a file costs a few system calls, and no
/// byte can leave before the whole plan is made, so many arguments (`ftc send host dir/*`)
/// are spread over the cores.
fn plan_each(paths: &[PathBuf]) -> Vec<(UploadPlan, Vec<LocalFileError>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let per_thread = paths.len().div_ceil(threads).max(PLAN_ARGS_PER_THREAD);
    if paths.len() <= per_thread {
        return paths.iter().map(plan_one).collect();
    }
    std::thread::scope(|scope| {
        // A chunk whose thread cannot be started (a process limit) is planned here instead.
        let parts: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| {
                let thread = std::thread::Builder::new().spawn_scoped(scope, move || {
                    chunk.iter().map(plan_one).collect::<Vec<_>>()
                });
                (chunk, thread.ok())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(chunk, thread)| match thread {
                Some(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                None => chunk.iter().map(plan_one).collect(),
            })
            .collect::<Vec<_>>()
    })
}

/// Plans one command-line argument: a file, or a folder and everything in it.
fn plan_one(path: &PathBuf) -> (UploadPlan, Vec<LocalFileError>) {
    let mut plan = UploadPlan::default();
    let mut problems = Vec::new();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match folder_name(path) {
            Ok(name) => {
                // What cannot be read inside a folder is the plan's to report; a named
                // argument that cannot be read is bad input.
                let mut inside = Vec::new();
                walk(path, &name, &mut plan, &mut inside);
                plan.unreadable = inside;
            }
            Err(problem) => problems.push(problem),
        },
        Ok(meta) => match inspect(path, None, Some(meta), None) {
            Ok(file) => plan.files.push(file),
            Err(problem) => problems.push(problem),
        },
        Err(source) => problems.push(LocalFileError::Unreadable {
            path: path.clone(),
            source,
        }),
    }
    (plan, problems)
}

/// The name a folder argument is sent under: its own last component (`.` resolves to the
/// current folder's name).
fn folder_name(path: &Path) -> Result<String, LocalFileError> {
    let resolved = path
        .canonicalize()
        .map_err(|source| LocalFileError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    resolved
        .file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .ok_or_else(|| LocalFileError::NonUtf8Name {
            path: path.to_path_buf(),
        })
}

/// Adds the contents of folder `dir` (sent as `name`). Returns whether anything inside will
/// be sent; an empty folder is recorded to be created as such.
fn walk(dir: &Path, name: &str, plan: &mut UploadPlan, problems: &mut Vec<LocalFileError>) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            problems.push(LocalFileError::UnreadableFolder {
                path: dir.to_path_buf(),
                source,
            });
            return true;
        }
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_cached_key(|entry| entry.file_name());
    // Permission checks relative to the folder, not by walking each file's whole path again.
    let folder = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok();
    let mut has_content = false;
    for entry in entries {
        let path = entry.path();
        let Some(child) = entry
            .file_name()
            .to_str()
            .map(|child| format!("{name}/{child}"))
        else {
            problems.push(LocalFileError::NonUtf8Name { path });
            continue;
        };
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(source) => {
                problems.push(LocalFileError::Unreadable { path, source });
                continue;
            }
        };
        if kind.is_symlink() {
            plan.skipped.push(Skipped {
                path,
                reason: "symbolic link, not followed",
            });
        } else if kind.is_dir() {
            walk(&path, &child, plan, problems);
            has_content = true;
        } else if kind.is_file() {
            // The entry's own metadata is a stat relative to the open folder, cheaper than
            // walking the whole path again; it is a regular file, so no link to follow.
            let meta = entry.metadata();
            match meta
                .map_err(|source| LocalFileError::Unreadable {
                    path: path.clone(),
                    source,
                })
                .and_then(|meta| {
                    let within = folder.as_ref().map(|fd| (fd, entry.file_name()));
                    inspect(&path, Some(child), Some(meta), within)
                }) {
                Ok(file) => {
                    plan.files.push(file);
                    has_content = true;
                }
                Err(problem) => problems.push(problem),
            }
        } else {
            plan.skipped.push(Skipped {
                path,
                reason: "not a regular file",
            });
        }
    }
    if !has_content {
        plan.folders.push(name.to_owned());
    }
    has_content
}

/// Checks one regular file whose metadata was just read (`None`: read it now); `name`
/// defaults to its file name.
///
/// `within`: the open folder holding the file and its name there, for a cheaper check.
fn inspect(
    path: &Path,
    name: Option<String>,
    meta: Option<Metadata>,
    within: Option<(&std::os::fd::OwnedFd, std::ffi::OsString)>,
) -> Result<LocalFile, LocalFileError> {
    let unreadable = |source| LocalFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = match meta {
        Some(meta) => meta,
        None => std::fs::metadata(path).map_err(unreadable)?,
    };
    if !meta.is_file() {
        return Err(LocalFileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    // Proves read permission now rather than halfway through a batch; one system call where
    // opening and closing would take two.
    let readable = match within {
        Some((folder, leaf)) => rustix::fs::accessat(
            folder,
            leaf.as_os_str(),
            rustix::fs::Access::READ_OK,
            rustix::fs::AtFlags::empty(),
        ),
        None => rustix::fs::access(path, rustix::fs::Access::READ_OK),
    };
    readable.map_err(|errno| unreadable(std::io::Error::from(errno)))?;
    let name = match name {
        Some(name) => name,
        None => path
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_owned)
            .ok_or_else(|| LocalFileError::NonUtf8Name {
                path: path.to_path_buf(),
            })?,
    };
    Ok(LocalFile {
        path: path.to_path_buf(),
        key: upload_key(&name, &meta),
        name,
        size: meta.len(),
        modified_ns: modified_ns(&meta),
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
        let planned = plan_uploads(std::slice::from_ref(&good), true).unwrap();
        assert_eq!(planned.files[0].name, "good.txt");
        assert_eq!(planned.files[0].size, 5);

        let missing = dir.path().join("missing");
        let err = plan_uploads(
            &[good, missing.clone(), dir.path().join("also-missing")],
            true,
        )
        .unwrap_err();
        let ClientError::LocalFiles(problems) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(problems.len(), 2);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn folders_keep_their_structure_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("2024/empty")).unwrap();
        std::fs::create_dir_all(root.join("nothing")).unwrap();
        std::fs::write(root.join("2024/b.jpg"), b"b").unwrap();
        std::fs::write(root.join("a.jpg"), b"a").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();

        let plan = plan_uploads(&[root], true).unwrap();
        let names: Vec<_> = plan.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["photos/2024/b.jpg", "photos/a.jpg"]);
        assert_eq!(plan.folders, ["photos/2024/empty", "photos/nothing"]);
        assert_eq!(plan.skipped.len(), 1);
        assert!(plan.skipped[0].path.ends_with("escape"));
    }
}
