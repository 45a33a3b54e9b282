//! One upload in progress: its content is appended to the partial file for its key and
//! hashed on a blocking thread, so disk and hashing overlap with reading the network.
//!
//! The session pushes chunks into a bounded queue ([`WRITE_QUEUE_CHUNKS`] deep), which is
//! what keeps server memory independent of file size: a slow disk slows the client down
//! through TCP flow control instead of filling RAM.
//!
//! If the upload is abandoned without a verdict (the client vanished, a newer connection
//! took the key over, the server shuts down), the writer still drains what was queued and
//! the partial file stays for resume. It is removed only on a verdict against its content:
//! hash mismatch, write error, or cancellation by the client.

use std::{fs::File, sync::Arc, time::Instant};

use bytes::Bytes;
use ft_protocol::{BeginFile, ConflictPolicy, Hash};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    leases::{Lease, Leases},
    memory::Reserved,
    names::ValidName,
    store::{PartialQuota, Store, StoreError},
};

/// Chunks queued between the session and the writer thread, per upload. With the writer's
/// own two 512 KiB buffers (one filling while the other is written), an upload holds at
/// most about 1.5 MiB.
const WRITE_QUEUE_CHUNKS: usize = 2;

/// Memory an upload streamed through a writer thread holds at most: its queue of chunks and
/// the writer's two buffers (reserved from the server's budget for as long as it runs).
pub(crate) const STREAMED_UPLOAD_MEMORY: u64 =
    (WRITE_QUEUE_CHUNKS * ft_protocol::CHUNK_SIZE) as u64 + ft_disk::MEMORY_BYTES as u64;

/// Why an upload could not continue.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// The client sent more bytes than it declared (a protocol violation).
    #[error("received more than the {declared} bytes declared in BeginFile")]
    ExcessBytes {
        /// Size from BeginFile.
        declared: u64,
    },
    /// The client ended the file early (a protocol violation).
    #[error("EndFile after {received} of the {declared} bytes declared in BeginFile")]
    MissingBytes {
        /// Size from BeginFile.
        declared: u64,
        /// Bytes actually held.
        received: u64,
    },
    /// Writing the partial file failed.
    #[error("writing the file failed: {0}")]
    Write(std::io::Error),
    /// The writer thread panicked or was cancelled.
    #[error("the writer task failed: {0}")]
    Writer(tokio::task::JoinError),
}

/// Where a complete upload's bytes are.
#[derive(Debug)]
pub(crate) enum Content {
    /// In its partial file.
    Partial(File),
    /// In memory: a small fresh upload, written at commit time (see commit.rs).
    Memory(Vec<u8>),
}

/// The complete content of an upload, hashed.
#[derive(Debug)]
pub(crate) struct Written {
    /// The bytes.
    pub(crate) content: Content,
    /// BLAKE3 of the whole content (kept prefix and new bytes).
    pub(crate) hash: Hash,
    /// The right to the partial file, held until it is committed or discarded.
    pub(crate) lease: Lease,
    /// The memory of content kept in memory, reserved from the server's budget.
    pub(crate) memory: Option<Reserved>,
}

/// Fresh uploads of at most this many bytes are gathered in memory and written by the group
/// commit, straight into their folder: for a small file, a thread hand-off per step and a
/// file in the shared partial area cost more than the write itself (measured: thread
/// switches, then inode allocation in one hot folder, were the largest costs when receiving
/// 10,000 files of 4 KiB).
pub(crate) const SMALL_UPLOAD_BYTES: u64 = 64 * 1024;

/// An open upload.
#[derive(Debug)]
pub(crate) struct Upload {
    /// The client's id for this file.
    pub(crate) id: u32,
    /// The validated name.
    pub(crate) name: ValidName,
    /// The upload key, naming the partial file.
    pub(crate) key: Hash,
    /// Declared size of the whole file.
    pub(crate) size: u64,
    /// What to do if the name is taken.
    pub(crate) conflict: ConflictPolicy,
    /// The sender's modification time (nanoseconds since the Unix epoch).
    pub(crate) modified_ns: Option<i64>,
    /// When BeginFile arrived.
    pub(crate) started: Instant,
    /// Where this session's bytes started (non-zero when resumed).
    pub(crate) offset: u64,
    /// Cancelled when another connection takes this key over.
    pub(crate) superseded: CancellationToken,
    held: u64,
    sink: Sink,
    /// A gathered upload's memory, reserved from the server's budget (a streamed one uses
    /// its connection's working set).
    memory: Option<Reserved>,
}

/// Whose partial upload a streamed upload writes, and the bound on that user's.
#[derive(Debug)]
pub(crate) struct PartialOwner {
    /// The user.
    pub(crate) name: String,
    /// Their bound.
    pub(crate) quota: PartialQuota,
    /// Which partial uploads are in progress (never removed to make room).
    pub(crate) leases: Arc<Leases>,
}

/// How an upload's bytes are to be held, with the memory reserved for it.
#[derive(Debug)]
pub(crate) enum Holding {
    /// Gathered in memory (a small fresh upload) in `buffer`; the reservation covers its
    /// size.
    Gathered {
        /// The budget's reservation.
        memory: Reserved,
        /// Room for the whole file (see buffers.rs).
        buffer: Vec<u8>,
    },
    /// Streamed to the partial file, within the connection's working set (see memory.rs).
    Streamed,
}

/// Where an upload's bytes go until it ends.
#[derive(Debug)]
enum Sink {
    /// A writer thread appending to the partial file.
    Threaded {
        chunks: mpsc::Sender<Bytes>,
        /// Taken once awaited (a JoinHandle must not be polled after it completed).
        writer: Option<JoinHandle<std::io::Result<Written>>>,
    },
    /// A small fresh upload (nothing kept from an earlier attempt), gathered in memory (at
    /// most [`SMALL_UPLOAD_BYTES`]) and hashed in one go at its end.
    Gathered { bytes: Vec<u8>, lease: Lease },
}

impl Upload {
    /// Prepares the upload at `begin.offset`: a small one is gathered in memory (as `holding`
    /// says), a larger one gets its partial file opened, in `owner`'s folder, and a writer
    /// thread. `prefix` is the hash state of the bytes kept before the offset (`None` for a
    /// fresh upload).
    pub(crate) async fn start(
        store: Arc<Store>,
        begin: &BeginFile,
        name: ValidName,
        lease: Lease,
        prefix: Option<Box<blake3::Hasher>>,
        holding: Holding,
        owner: PartialOwner,
    ) -> Result<Self, StoreError> {
        let (key, offset) = (begin.key, begin.offset);
        let superseded = lease.superseded();
        let gathered = offset == 0 && begin.size <= SMALL_UPLOAD_BYTES;
        let (sink, memory) = match holding {
            // Fresh: there is no prefix to hash.
            Holding::Gathered { memory, buffer } if gathered => (
                Sink::Gathered {
                    bytes: buffer,
                    lease,
                },
                Some(memory),
            ),
            Holding::Gathered { .. } | Holding::Streamed => {
                let opener = Arc::clone(&store);
                let size = begin.size;
                let file = tokio::task::spawn_blocking(move || {
                    let in_use = |other: &Hash| *other != key && owner.leases.is_held(other);
                    if offset > 0 {
                        return opener.open_partial_within_quota(
                            &key,
                            offset,
                            &owner.name,
                            size,
                            owner.quota,
                            in_use,
                        );
                    }
                    opener.open_fresh_partial(&key, &owner.name, size, owner.quota, in_use)
                })
                .await
                .map_err(|join| StoreError::Io {
                    action: "open",
                    path: store.partial_path(&key),
                    cause: std::io::Error::other(join.to_string()),
                })??;
                let (chunks, queue) = mpsc::channel(WRITE_QUEUE_CHUNKS);
                // The lease moves into the writer, so the key is released only once every queued
                // byte is written (or, when complete, once the file is committed).
                let writer = tokio::task::spawn_blocking(move || {
                    let hasher = prefix.map_or_else(blake3::Hasher::new, |prefix| *prefix);
                    write_chunks(file, offset, hasher, queue, lease)
                });
                (
                    Sink::Threaded {
                        chunks,
                        writer: Some(writer),
                    },
                    None,
                )
            }
        };
        Ok(Self {
            id: begin.id,
            name,
            key,
            size: begin.size,
            conflict: begin.conflict,
            modified_ns: begin.modified_ns,
            started: Instant::now(),
            offset,
            superseded,
            held: offset,
            sink,
            memory,
        })
    }

    /// Bytes of the file held so far, including a resumed prefix.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Queues a chunk for writing; waits while the queue is full.
    pub(crate) async fn push(&mut self, data: Bytes) -> Result<(), UploadError> {
        let len = data.len() as u64;
        if self.held.saturating_add(len) > self.size {
            return Err(UploadError::ExcessBytes {
                declared: self.size,
            });
        }
        self.held += len;
        match &mut self.sink {
            // Copied rather than taken over: the chunk's own buffer is freed right here, on
            // the thread that allocates the next one (see buffers.rs).
            Sink::Gathered { bytes, .. } => {
                bytes.extend_from_slice(&data);
                Ok(())
            }
            Sink::Threaded { chunks, writer } => {
                if chunks.send(data).await.is_err() {
                    // The writer stopped early: it can only have failed. Report its error.
                    let Some(writer) = writer.take() else {
                        return Err(UploadError::Write(std::io::Error::other("writer gone")));
                    };
                    return match writer.await.map_err(UploadError::Writer)? {
                        Err(err) => Err(UploadError::Write(err)),
                        Ok(_) => Err(UploadError::Write(std::io::Error::other(
                            "writer stopped early",
                        ))),
                    };
                }
                Ok(())
            }
        }
    }

    /// Stops the upload and waits until its writer has let go of the partial file.
    pub(crate) async fn stop(self) {
        if let Sink::Threaded { chunks, writer } = self.sink {
            drop(chunks);
            if let Some(writer) = writer {
                let _ = writer.await;
            }
        }
    }

    /// Ends the content: writes or flushes everything and returns the file and the hash of
    /// the whole content.
    pub(crate) async fn finish(self) -> Result<Written, UploadError> {
        if self.held != self.size {
            return Err(UploadError::MissingBytes {
                declared: self.size,
                received: self.held,
            });
        }
        match self.sink {
            // The queue and the writer's buffer are freed once the writer is done.
            Sink::Threaded { chunks, writer } => {
                drop(chunks);
                match writer {
                    Some(writer) => writer
                        .await
                        .map_err(UploadError::Writer)?
                        .map_err(UploadError::Write),
                    None => Err(UploadError::Write(std::io::Error::other("writer gone"))),
                }
            }
            // A few kilobytes: kept in memory and written by the group commit.
            Sink::Gathered { bytes, lease } => Ok(Written {
                hash: blake3::hash(&bytes).into(),
                content: Content::Memory(bytes),
                lease,
                memory: self.memory,
            }),
        }
    }
}

/// Runs on a blocking thread until the session closes the queue.
fn write_chunks(
    file: File,
    offset: u64,
    mut hasher: blake3::Hasher,
    mut queue: mpsc::Receiver<Bytes>,
    lease: Lease,
) -> std::io::Result<Written> {
    let mut writer = ft_disk::DirectWriter::new(file, offset);
    while let Some(chunk) = queue.blocking_recv() {
        hasher.update(&chunk);
        writer.write(&chunk)?;
    }
    Ok(Written {
        content: Content::Partial(writer.finish()?),
        hash: hasher.finalize().into(),
        lease,
        memory: None,
    })
}
