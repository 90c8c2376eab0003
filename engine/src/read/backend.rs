//! The storage-backend seam: positional reads of one file, single or batched.

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{unbounded, Sender};
use memmap2::MmapMut;

use super::aligned::AlignedBuf;

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

    /// Registers `buf`'s pages for reads into it where the backend can
    /// (io_uring: a fixed buffer, pages pinned once, `READ_FIXED`); the
    /// registration ends when the returned handle is dropped. `None`: not
    /// registered (the default). Safe code uses [`RegisteredBuf::new`], which
    /// owns the buffer for as long as it is registered.
    ///
    /// # Safety
    /// The memory of `buf` must stay allocated at the same address (not freed,
    /// moved or remapped) until the returned [`BufferRegistration`] is dropped
    /// or this backend is (which closes the ring). Otherwise a later read into
    /// other memory at that address would be matched to the stale
    /// registration, and the kernel would write into the pages it pinned then.
    unsafe fn register_buffer(&self, _buf: &mut [u8]) -> Option<BufferRegistration> {
        None
    }

    /// Buffers registered now.
    fn registered_buffers(&self) -> usize {
        0
    }
}

/// One buffer registration with a backend; dropping it unregisters the
/// buffer (a no-op once the backend is gone: closing the ring released it).
pub struct BufferRegistration {
    unregister: Option<Box<dyn FnOnce() + Send>>,
}

impl BufferRegistration {
    /// A registration that `unregister` ends (it runs once, on drop).
    pub fn new(unregister: impl FnOnce() + Send + 'static) -> BufferRegistration {
        BufferRegistration { unregister: Some(Box::new(unregister)) }
    }
}

impl Drop for BufferRegistration {
    fn drop(&mut self) {
        if let Some(f) = self.unregister.take() {
            f();
        }
    }
}

impl std::fmt::Debug for BufferRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BufferRegistration")
    }
}

/// Owned memory whose bytes stay at one address for as long as the value
/// lives, however the value itself moves (a heap allocation or a mapping).
///
/// # Safety
/// Every `deref_mut` (and `deref`) returns the same address and length, and
/// that memory is neither freed nor remapped before the value is dropped.
pub unsafe trait StableBuf: DerefMut<Target = [u8]> + Send {}

// SAFETY: a mapping's address and length are fixed from `map_anon`/`map_mut`
// until `munmap` in its `Drop`.
unsafe impl StableBuf for MmapMut {}
// SAFETY: as for `MmapMut`: `AlignedBuf` derefs to a fixed prefix of its own
// mapping.
unsafe impl StableBuf for AlignedBuf {}
// SAFETY: a boxed slice cannot grow or shrink; its heap block is freed only
// on drop.
unsafe impl StableBuf for Box<[u8]> {}

/// A buffer together with its registration with a backend (see
/// [`Backend::register_buffer`]): the registration cannot outlive the memory,
/// because this value owns both and drops the registration first.
pub struct RegisteredBuf<B: StableBuf> {
    // Declared before `buf`: dropped (unregistered) before the memory is freed.
    registration: Option<BufferRegistration>,
    buf: B,
}

impl<B: StableBuf> RegisteredBuf<B> {
    /// Registers `buf` with `backend` where it can (see [`is_registered`](Self::is_registered)).
    pub fn new<K: Backend + ?Sized>(backend: &K, mut buf: B) -> RegisteredBuf<B> {
        // SAFETY: the memory belongs to `buf`, which the returned value owns
        // and hands out only as `&[u8]`/`&mut [u8]`; `StableBuf` keeps it at
        // one address until `buf` is dropped, and field order drops the
        // registration first (`into_inner` drops it before giving `buf` back).
        let registration = unsafe { backend.register_buffer(&mut buf) };
        RegisteredBuf { registration, buf }
    }

    /// A buffer that is not registered (for backends that cannot).
    pub fn unregistered(buf: B) -> RegisteredBuf<B> {
        RegisteredBuf { registration: None, buf }
    }

    /// Whether the backend registered the buffer.
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// Ends the registration and gives the buffer back.
    pub fn into_inner(self) -> B {
        let RegisteredBuf { registration, buf } = self;
        drop(registration);
        buf
    }
}

impl<B: StableBuf> Deref for RegisteredBuf<B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl<B: StableBuf> DerefMut for RegisteredBuf<B> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl<B: StableBuf> std::fmt::Debug for RegisteredBuf<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredBuf")
            .field("len", &self.buf.len())
            .field("registered", &self.is_registered())
            .finish()
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
