//! One upload in progress: its content is written to a staging file and hashed on a blocking
//! thread, so disk and hashing overlap with reading the network.
//!
//! The session pushes chunks into a bounded queue ([`WRITE_QUEUE_CHUNKS`] deep), which is
//! what keeps server memory independent of file size: a slow disk slows the client down
//! through TCP flow control instead of filling RAM.

use std::{io::Write, time::Instant};

use bytes::Bytes;
use ft_protocol::{BeginFile, ConflictPolicy, Hash};
use tempfile::NamedTempFile;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    names::ValidName,
    store::{Store, StoreError},
};

/// Chunks queued between the session and the writer thread, per upload.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// Why an upload could not continue.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
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
        /// Bytes actually received.
        received: u64,
    },
    /// Writing the staging file failed.
    #[error("writing the file failed: {0}")]
    Write(#[source] std::io::Error),
    /// The writer thread panicked or was cancelled.
    #[error("the writer task failed: {0}")]
    Writer(#[from] tokio::task::JoinError),
}

/// The verified-so-far result of writing an upload's content.
#[derive(Debug)]
pub struct Written {
    /// The staging file, complete; removed if dropped uncommitted.
    pub file: NamedTempFile,
    /// BLAKE3 of everything written.
    pub hash: Hash,
}

/// An open upload.
#[derive(Debug)]
pub struct Upload {
    /// The client's id for this file.
    pub id: u32,
    /// The validated name.
    pub name: ValidName,
    /// Declared size.
    pub size: u64,
    /// What to do if the name is taken.
    pub conflict: ConflictPolicy,
    /// When BeginFile arrived.
    pub started: Instant,
    received: u64,
    chunks: mpsc::Sender<Bytes>,
    writer: JoinHandle<std::io::Result<Written>>,
}

impl Upload {
    /// Opens a staging file and starts its writer thread.
    pub fn start(store: &Store, begin: &BeginFile, name: ValidName) -> Result<Self, StoreError> {
        let file = store.new_staged_file()?;
        let (chunks, queue) = mpsc::channel(WRITE_QUEUE_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || write_chunks(file, queue));
        Ok(Self {
            id: begin.id,
            name,
            size: begin.size,
            conflict: begin.conflict,
            started: Instant::now(),
            received: 0,
            chunks,
            writer,
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Queues a chunk for writing; waits while the queue is full.
    pub async fn push(&mut self, data: Bytes) -> Result<(), UploadError> {
        let len = data.len() as u64;
        if self.received.saturating_add(len) > self.size {
            return Err(UploadError::ExcessBytes {
                declared: self.size,
            });
        }
        self.received += len;
        if self.chunks.send(data).await.is_err() {
            // The writer stopped early: it can only have failed. Report its error.
            return match (&mut self.writer).await? {
                Err(err) => Err(UploadError::Write(err)),
                Ok(_) => Err(UploadError::Write(std::io::Error::other(
                    "writer stopped early",
                ))),
            };
        }
        Ok(())
    }

    /// Ends the content: waits for the writer to flush everything and returns the file and
    /// the hash of what was written.
    pub async fn finish(self) -> Result<Written, UploadError> {
        if self.received != self.size {
            return Err(UploadError::MissingBytes {
                declared: self.size,
                received: self.received,
            });
        }
        drop(self.chunks);
        self.writer.await?.map_err(UploadError::Write)
    }
}

/// Runs on a blocking thread until the session closes the queue.
fn write_chunks(
    mut file: NamedTempFile,
    mut queue: mpsc::Receiver<Bytes>,
) -> std::io::Result<Written> {
    let mut hasher = blake3::Hasher::new();
    while let Some(chunk) = queue.blocking_recv() {
        file.write_all(&chunk)?;
        hasher.update(&chunk);
    }
    Ok(Written {
        file,
        hash: hasher.finalize().into(),
    })
}
