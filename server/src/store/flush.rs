//! Flushes of our own files only, many at once. `syncfs` would flush every dirty page of the
//! filesystem, other programs' included: on a disk that others write to, one group commit
//! then waits for their gigabytes. Flushing each of our files (`fdatasync`) and folders
//! (`fsync`) touches only our data, but one after the other each waits for its own disk
//! round trip; issued together from a pool of threads, the filesystem merges them into a
//! few journal commits, as fast as one `syncfs` on a quiet disk (measured; see
//! docs/performance.md).

use std::{
    fs::File,
    io,
    sync::{mpsc, Arc, Mutex},
};

/// Threads flushing at once. Enough for the filesystem to see a whole group's flushes
/// together; an idle thread costs only its small stack.
const FLUSH_THREADS: usize = 64;

/// Stack of a flushing thread: it only makes one system call at a time.
const FLUSH_STACK_BYTES: usize = 64 * 1024;

/// What to flush of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Its data and what is needed to read it back (`fdatasync`).
    Data,
    /// Everything, as for a folder whose entries changed (`fsync`).
    All,
}

struct Job {
    file: File,
    flush: Flush,
    index: usize,
    done: mpsc::Sender<(usize, io::Result<()>)>,
}

/// A pool of threads that flush files, started once per store.
#[derive(Debug)]
pub(crate) struct Flusher {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Flusher {
    /// Starts the pool, every thread at once, so that no flush waits for a thread to be made.
    pub(crate) fn start() -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..FLUSH_THREADS {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("flush-{n}"))
                .stack_size(FLUSH_STACK_BYTES)
                .spawn(move || run_worker(&queue))?;
        }
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
        })
    }

    /// Flushes every file of `files` (each a descriptor of its own), all at once, and waits
    /// for all of them. Returns the first failure, with the index of the file that failed.
    /// Blocking.
    pub(crate) fn flush_all(
        &self,
        files: Vec<File>,
        flush: Flush,
    ) -> Result<(), (usize, io::Error)> {
        let count = files.len();
        if count == 1 {
            // No hand-off for a lone file.
            let file = files.into_iter().next().map(|file| flush_one(&file, flush));
            return file.unwrap_or(Ok(())).map_err(|err| (0, err));
        }
        let (done, results) = mpsc::channel();
        {
            let jobs = self
                .jobs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(jobs) = jobs.as_ref() else {
                return Err((0, io::Error::other("the flushing threads are gone")));
            };
            for (index, file) in files.into_iter().enumerate() {
                let job = Job {
                    file,
                    flush,
                    index,
                    done: done.clone(),
                };
                if jobs.send(job).is_err() {
                    return Err((index, io::Error::other("the flushing threads are gone")));
                }
            }
        }
        drop(done);
        let mut first_failure = None;
        for _ in 0..count {
            match results.recv() {
                Ok((_, Ok(()))) => {}
                Ok((index, Err(err))) => {
                    first_failure.get_or_insert((index, err));
                }
                Err(_) => {
                    return Err((0, io::Error::other("a flushing thread ended early")));
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the queue ends the threads.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

fn run_worker(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv()
        {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = flush_one(&job.file, job.flush);
        let _ = job.done.send((job.index, result));
    }
}

fn flush_one(file: &File, flush: Flush) -> io::Result<()> {
    match flush {
        Flush::Data => file.sync_data(),
        Flush::All => file.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn many_files_are_flushed_together_and_a_failure_names_its_file() {
        let flusher = Flusher::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..200)
            .map(|n| {
                let mut file = File::create(dir.path().join(format!("f{n}"))).unwrap();
                file.write_all(b"data").unwrap();
                file
            })
            .collect();
        flusher.flush_all(files, Flush::Data).unwrap();
        flusher.flush_all(Vec::new(), Flush::All).unwrap();
        let folder = File::open(dir.path()).unwrap();
        flusher.flush_all(vec![folder], Flush::All).unwrap();
        // A pipe cannot be flushed: EINVAL, reported with its index.
        let (reader, _writer) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(reader));
        let good = File::create(dir.path().join("good")).unwrap();
        let failed = flusher
            .flush_all(vec![good, pipe], Flush::Data)
            .unwrap_err();
        assert_eq!(failed.0, 1);
    }
}
