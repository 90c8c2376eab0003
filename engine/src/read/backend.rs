//! The storage-backend seam: positional reads of one file, single or batched.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{unbounded, Sender};

/// One read of a batch: fill `buf` from `offset`, at least `need` bytes of it
/// (the rest may lie past the end of the file: the tail of an aligned span).
/// The backend sets `filled`.
#[derive(Debug)]
pub struct ReadReq<'a> {
    pub offset: u64,
    pub buf: &'a mut [u8],
    pub need: usize,
    pub filled: usize,
}

impl<'a> ReadReq<'a> {
    pub fn new(offset: u64, buf: &'a mut [u8], need: usize) -> ReadReq<'a> {
        let need = need.min(buf.len());
        ReadReq { offset, buf, need, filled: 0 }
    }
}

/// A failed read of a batch: the file offset where it failed, and why.
#[derive(Debug)]
pub struct BatchError {
    pub offset: u64,
    pub source: io::Error,
}

/// Where rows come from. Implementations are shared across threads.
pub trait Backend: Send + Sync {
    /// One positional read, like `pread(2)`: may return fewer bytes than asked
    /// (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Reads every request until `filled >= need`, retrying short reads from where
    /// they stopped and interrupted reads. Returns the first error; a request that
    /// hits the end of the file before `need` bytes is an `UnexpectedEof` error at
    /// the offset where data ran out. On error, `filled` of other requests is
    /// unspecified. The default issues the reads one by one.
    fn read_batch(&self, reqs: &mut [ReadReq<'_>]) -> Result<(), BatchError> {
        for r in reqs.iter_mut() {
            fill_with(r, |buf, off| self.read_at(buf, off))?;
        }
        Ok(())
    }

    /// [`read_batch`](Self::read_batch), running `work` while the reads are in
    /// flight where the backend reads asynchronously (io_uring: the batch goes
    /// to the ring's thread first), else before them. `work` must not touch the
    /// requests' buffers (it cannot: they are borrowed by `reqs`). `work` runs
    /// exactly once, even when the batch fails.
    fn read_batch_while(&self, reqs: &mut [ReadReq<'_>], work: &mut dyn FnMut()) -> Result<(), BatchError> {
        work();
        self.read_batch(reqs)
    }

    /// The file's length in bytes (as seen at open, or as reported).
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name for logs and stats ("pread", "io_uring", ...).
    fn name(&self) -> &'static str;

    /// For io_uring backends: whether a kernel thread polls the submission
    /// queue (SQPOLL). `None` for others.
    fn sqpoll(&self) -> Option<bool> {
        None
    }

    /// For io_uring backends: how the ring is set up, for logs
    /// (`defer_taskrun, poll 100 us`). `None` for others.
    fn ring_setup(&self) -> Option<String> {
        None
    }

    /// Offers `buf` for reads into it; io_uring registers it (a fixed buffer:
    /// pages pinned once, `READ_FIXED`). Returns whether it was registered. The
    /// caller must [`unregister_buffer`](Self::unregister_buffer) it, or drop
    /// the backend, before freeing or reusing the memory for anything else
    /// (otherwise later reads into that address range could land in the old
    /// pinned pages). The default registers nothing.
    fn register_buffer(&self, _buf: &mut [u8]) -> bool {
        false
    }

    /// Forgets a buffer given to [`register_buffer`](Self::register_buffer)
    /// (same address and length); a no-op for one never registered.
    fn unregister_buffer(&self, _buf: &[u8]) {}

    /// Buffers registered now.
    fn registered_buffers(&self) -> usize {
        0
    }
}

/// Fills one request with repeated positional reads (short reads resume where
/// they stopped; EINTR and EAGAIN retry).
pub(crate) fn fill_with(
    r: &mut ReadReq<'_>,
    mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
) -> Result<(), BatchError> {
    while r.filled < r.need {
        let at = r.offset + r.filled as u64;
        match read(&mut r.buf[r.filled..], at) {
            Ok(0) => return Err(eof(at, r)),
            Ok(n) => r.filled += n,
            Err(e) if retryable(&e) => continue,
            Err(source) => return Err(BatchError { offset: at, source }),
        }
    }
    Ok(())
}

pub(crate) fn eof(at: u64, r: &ReadReq<'_>) -> BatchError {
    BatchError {
        offset: at,
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "end of file after {} of {} bytes read from offset {} (file truncated?)",
                r.filled, r.need, r.offset
            ),
        ),
    }
}

pub(crate) fn retryable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) || e.kind() == io::ErrorKind::Interrupted
}

/// Opens `path` for reading with `O_DIRECT` when `direct` is set, falling back
/// (with one log line) to a buffered descriptor when the file system refuses it
/// (tmpfs on older kernels, some FUSE and overlay mounts). Returns the file and
/// whether it is in direct mode.
pub fn open_file(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    if direct {
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                static LOGGED: AtomicBool = AtomicBool::new(false);
                if !LOGGED.swap(true, Ordering::Relaxed) {
                    eprintln!("scone: {}: O_DIRECT refused ({e}); reading through the page cache", path.display());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((File::open(path)?, false))
}

/// A job for the pread pool: a raw view of a caller's buffer (see the SAFETY note
/// in [`PreadBackend::read_batch`]), plus where to send the result.
struct Job {
    ptr: usize,
    len: usize,
    need: usize,
    offset: u64,
    index: usize,
    reply: Sender<(usize, Result<usize, BatchError>)>,
}

/// Positional reads on a fixed pool of threads: a batch's reads run
/// `threads` at a time (the pool's queue depth).
pub struct PreadBackend {
    file: Arc<File>,
    len: u64,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl PreadBackend {
    /// Starts `threads` (at least 1) reader threads over `file`.
    pub fn new(file: File, threads: usize) -> io::Result<PreadBackend> {
        let len = file.metadata()?.len();
        let file = Arc::new(file);
        let (tx, rx) = unbounded::<Job>();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let file = Arc::clone(&file);
            let w = std::thread::Builder::new().name(format!("scone-pread-{i}")).spawn(move || {
                for job in rx.iter() {
                    // SAFETY: `ptr..ptr + len` is a live, exclusively borrowed part of
                    // a `ReadReq::buf` of the batch that sent this job: read_batch
                    // gives each job a disjoint request and does not return (ending
                    // the borrow) until every job has been dropped, which happens
                    // only after this slice's last use below. No other reference to
                    // these bytes exists meanwhile.
                    let buf = unsafe { std::slice::from_raw_parts_mut(job.ptr as *mut u8, job.len) };
                    let mut r = ReadReq { offset: job.offset, buf, need: job.need, filled: 0 };
                    let res = fill_with(&mut r, |b, off| file.read_at(b, off)).map(|()| r.filled);
                    let _ = job.reply.send((job.index, res));
                }
            })?;
            workers.push(w);
        }
        Ok(PreadBackend { file, len, jobs: Some(tx), workers })
    }

    /// Number of reader threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }
}

impl Backend for PreadBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn read_batch(&self, reqs: &mut [ReadReq<'_>]) -> Result<(), BatchError> {
        let jobs = self.jobs.as_ref().expect("pool runs until drop");
        let (reply, replies) = unbounded();
        for (index, r) in reqs.iter_mut().enumerate() {
            r.filled = 0;
            let job = Job {
                ptr: r.buf.as_mut_ptr() as usize,
                len: r.buf.len(),
                need: r.need,
                offset: r.offset,
                index,
                reply: reply.clone(),
            };
            if let Err(e) = jobs.send(job) {
                // No worker left: the job comes back and is dropped here, unused.
                drop(e);
                break;
            }
        }
        drop(reply);
        // Every job holds a reply sender, so the channel disconnects only when all
        // of them have been dropped: no worker touches a buffer after this loop.
        let mut first: Option<BatchError> = None;
        let mut done = 0;
        for (index, res) in replies.iter() {
            done += 1;
            match res {
                Ok(n) => reqs[index].filled = n,
                Err(e) => {
                    if first.is_none() {
                        first = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if done < reqs.len() {
            return Err(BatchError { offset: reqs[done].offset, source: io::Error::other("pread pool has stopped") });
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> &'static str {
        "pread"
    }
}

impl Drop for PreadBackend {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
