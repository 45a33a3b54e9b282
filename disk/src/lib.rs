//! Writing received content to disk, shared by the server (uploads) and the client (relayed
//! files it receives): both write large files once and read them back only to verify, so
//! both bypass the page cache the same way.

mod direct_write;

pub use direct_write::{DirectWriter, BUFFER_BYTES, MEMORY_BYTES};
