//! Reading local files for an upload: small files in one go, large ones chunk by chunk on a
//! blocking thread, a resume's prefix verified first. Every read checks that the file is
//! still the version that was planned.

use std::io::{Read, SeekFrom};

use ft_protocol::{FilePlan, Hash, CHUNK_SIZE};
use tokio::{
    io::{AsyncReadExt, AsyncSeekExt},
    sync::mpsc,
};

use crate::{
    chunk_pool::ChunkPool,
    compress::{Compressor, Piece},
    local::{upload_key, LocalFile},
};

/// Files up to this size are read in one go on the sending task: a thread hand-off per file
/// costs more than reading a few kilobytes from the page cache.
pub(crate) const SMALL_FILE_BYTES: u64 = 64 * 1024;

/// Chunks read ahead of the socket per file.
pub(crate) const READ_AHEAD_CHUNKS: usize = 4;

/// Reads a whole small file, checking it is still the version that was planned.
///
/// Four system calls: open, one read (asking for a byte more than planned, so a file that
/// grew shows), fstat (a same-size rewrite shows in the modification time, part of the
/// key), close.
pub(crate) fn read_small(
    file: &LocalFile,
    folder: &mut OpenFolder,
) -> Result<bytes::Bytes, String> {
    let unreadable = |err: std::io::Error| format!("cannot read {}: {err}", file.path.display());
    let mut handle = folder.open(&file.path).map_err(unreadable)?;
    let want = file.size as usize + 1;
    let mut data = vec![0u8; want];
    let mut filled = 0;
    // A regular file reads short only at its end; loop anyway for filesystems that do not
    // promise it, until the planned size is reached or the file ends.
    while filled < file.size as usize {
        match handle.read(&mut data[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(unreadable(err)),
        }
    }
    let meta = handle.metadata().map_err(unreadable)?;
    let unchanged = filled as u64 == file.size
        && meta.len() == file.size
        && upload_key(&file.name, &meta) == file.key;
    if !unchanged {
        return Err(format!(
            "{} changed since it was checked",
            file.path.display()
        ));
    }
    data.truncate(filled);
    Ok(bytes::Bytes::from(data))
}

/// The folder of the last small file read, kept open: files are planned folder by folder, so
/// the next one is usually opened relative to it instead of walking its whole path again.
#[derive(Default)]
pub(crate) struct OpenFolder {
    open: Option<(std::path::PathBuf, std::os::fd::OwnedFd)>,
}

impl OpenFolder {
    /// Opens `path` for reading.
    fn open(&mut self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use rustix::fs::{Mode, OFlags};
        let (Some(parent), Some(leaf)) = (path.parent(), path.file_name()) else {
            return std::fs::File::open(path);
        };
        if !matches!(&self.open, Some((open, _)) if open == parent) {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            self.open = match rustix::fs::open(parent, flags, Mode::empty()) {
                Ok(fd) => Some((parent.to_path_buf(), fd)),
                Err(_) => return std::fs::File::open(path),
            };
        }
        let Some((_, folder)) = &self.open else {
            return std::fs::File::open(path);
        };
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(folder, leaf, flags, Mode::empty())?;
        Ok(std::fs::File::from(fd))
    }
}

/// For a resume plan, hashes the local prefix the server offers to continue from: the
/// server resumes only if this hash matches the bytes it holds. A file shorter than the
/// offer is sent from the start. Returns the offset to send from and the hash state of
/// everything before it.
pub(crate) async fn local_prefix(
    handle: &mut tokio::fs::File,
    plan: &FilePlan,
) -> std::io::Result<(u64, blake3::Hasher)> {
    let FilePlan::Resume { offset } = plan else {
        return Ok((0, blake3::Hasher::new()));
    };
    let mut hasher = blake3::Hasher::new();
    let mut remaining = *offset;
    let mut buffer = vec![0u8; CHUNK_SIZE];
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
        let read = handle.read(&mut buffer[..want]).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        remaining -= read as u64;
    }
    if remaining == 0 {
        return Ok((*offset, hasher));
    }
    handle.seek(SeekFrom::Start(0)).await?;
    Ok((0, blake3::Hasher::new()))
}

/// BLAKE3 of a whole local file, to ask the server whether it holds the same content
/// ([`FilePlan::Compare`]); `None` if the file no longer has its planned size (it changed
/// and will simply be sent). Blocking.
pub(crate) fn hash_whole(file: &LocalFile) -> std::io::Result<Option<Hash>> {
    use std::io::Read as _;
    let mut handle = std::fs::File::open(&file.path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 4 * CHUNK_SIZE];
    let mut total = 0u64;
    loop {
        let read = handle.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
        if total > file.size {
            return Ok(None);
        }
    }
    Ok((total == file.size).then(|| hasher.finalize().into()))
}

/// How a file's content ended.
pub(crate) enum Streamed {
    /// Every byte was read, with this hash of the whole file.
    Complete(Hash),
    /// The upload of this file stops, for this reason.
    Cancelled(String),
}

/// Reads `file` from `offset` to its planned size in chunks, hashing each, and reports how
/// the content ended: complete with its hash, or cancelled because the file shrank, grew,
/// changed or could not be read. Blocking.
pub(crate) fn read_content(
    mut handle: std::fs::File,
    file: &LocalFile,
    offset: u64,
    mut hasher: blake3::Hasher,
    compress: bool,
    chunks: &mpsc::Sender<Piece>,
) -> Streamed {
    let mut compressor = Compressor::new(compress);
    // The read-ahead, the chunk being sent and the one being read.
    let pool = ChunkPool::new(READ_AHEAD_CHUNKS + 2);
    let mut position = offset;
    while position < file.size {
        let want =
            usize::try_from(file.size - position).map_or(CHUNK_SIZE, |left| left.min(CHUNK_SIZE));
        let mut buffer = pool.take(want);
        let window = buffer.window(want);
        let mut filled = 0;
        while filled < want {
            match handle.read(&mut window[filled..]) {
                Ok(0) => {
                    return Streamed::Cancelled(format!(
                        "{} shrank while being sent",
                        file.path.display()
                    ))
                }
                Ok(read) => filled += read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Streamed::Cancelled(format!(
                        "cannot read {}: {err}",
                        file.path.display()
                    ))
                }
            }
        }
        let chunk = buffer.freeze(want);
        hasher.update(&chunk);
        position += want as u64;
        // Compression runs here too, beside reading and hashing, off the sending task.
        if chunks.blocking_send(compressor.piece(chunk)).is_err() {
            return Streamed::Cancelled("the upload was abandoned".into());
        }
    }
    let mut probe = [0u8; 1];
    let grew = !matches!(handle.read(&mut probe), Ok(0));
    // A same-size rewrite shows in the modification time, which is part of the key.
    let changed = grew
        || handle
            .metadata()
            .map_or(true, |meta| upload_key(&file.name, &meta) != file.key);
    if changed {
        return Streamed::Cancelled(format!("{} changed while being sent", file.path.display()));
    }
    Streamed::Complete(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(path: &std::path::Path) -> LocalFile {
        let plan = crate::local::plan_uploads(&[path.to_path_buf()], true).unwrap();
        plan.files[0].clone()
    }

    #[test]
    fn small_files_are_read_whole_and_changes_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        std::fs::write(&path, b"four").unwrap();
        let file = planned(&path);
        let mut folder = OpenFolder::default();
        let mut read_small = |file: &LocalFile| read_small(file, &mut folder);
        assert_eq!(read_small(&file).unwrap(), &b"four"[..]);

        std::fs::write(&path, b"fourteen").unwrap();
        let grown = read_small(&file).unwrap_err();
        assert!(grown.contains("changed since it was checked"), "{grown}");

        std::fs::write(&path, b"fo").unwrap();
        assert!(read_small(&file).is_err());

        // Same size, new content: the modification time tells.
        std::fs::write(&path, b"FOUR").unwrap();
        let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        handle
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(read_small(&file).is_err());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_small(&planned(&empty)).unwrap().is_empty());
    }
}
