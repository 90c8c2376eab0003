//! The io_uring backend: one ring per reader, the file registered with it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::sync::MutexGuard;

use io_uring::{opcode, types, IoUring};

use super::backend::{retryable, Backend, BatchError, ReadReq};

/// Largest queue depth accepted (the kernel's own limit is 32768 entries).
pub const MAX_QUEUE_DEPTH: u32 = 4096;

/// Reads through an io_uring: a batch is pushed onto the submission queue, at
/// most `in_flight_limit` requests at a time (no more than the completion queue
/// holds, so completions never overflow), and completions are reaped as they
/// come; short reads are resubmitted for the remainder, EINTR/EAGAIN retried.
pub struct UringBackend {
    ring: Mutex<Ring>,
    // Kept open for the ring's registered-file slot 0.
    _file: File,
    len: u64,
    in_flight_limit: usize,
    /// Why a requested SQPOLL ring was refused (the ring runs without it).
    sqpoll_refused: Option<String>,
    /// Slots of the sparse registered-buffer table (0: none set up).
    buffer_slots: u32,
    /// READ_FIXED submissions so far.
    fixed_reads: AtomicU64,
    /// Callers blocked on `ring`'s lock.
    waiting: AtomicUsize,
}

/// The ring and, under the same lock, the buffers registered with it and the
/// batches being read. Every batch's reads share the ring: one queue, in
/// order, topped up by whichever caller drives next, so the ring stays full
/// across batch boundaries when several batches (prefetch tickets) are in flight.
struct Ring {
    ring: IoUring,
    /// `(address, length, table index)` of each registered buffer.
    registered: Vec<(usize, usize, u16)>,
    /// The batches being read, by id.
    batches: HashMap<u32, BatchState>,
    /// `(batch, request)` reads waiting for room in the ring, in order.
    queue: VecDeque<(u32, u32)>,
    /// Reads submitted and not yet completed, all batches together.
    in_flight: usize,
    next_id: u32,
    hard_failures: u32,
}

/// One request of a batch: where its buffer is (an address, so `Ring` stays
/// `Send`; the buffer is borrowed by the `read_batch` call that owns the batch),
/// what to read, and how much has been.
struct Op {
    addr: usize,
    len: usize,
    offset: u64,
    need: usize,
    filled: usize,
    fixed: Option<u16>,
}

struct BatchState {
    ops: Vec<Op>,
    /// This batch's reads in the ring, and in `Ring::queue`.
    in_flight: usize,
    queued: usize,
    first: Option<BatchError>,
}

impl Ring {
    /// One step: tops the ring up from the queue (up to `limit` in flight),
    /// waits for at least one completion and applies every completion to its
    /// batch (short and interrupted reads go back on the queue; a batch's
    /// first error drops its queued reads).
    fn drive(&mut self, limit: usize, fixed_reads: &AtomicU64) {
        {
            let mut sq = self.ring.submission();
            while self.in_flight < limit {
                let Some((id, i)) = self.queue.pop_front() else { break };
                let Some(b) = self.batches.get_mut(&id) else { continue };
                let op = &b.ops[i as usize];
                let len = (op.len - op.filled).min(u32::MAX as usize) as u32;
                let ptr = (op.addr + op.filled) as *mut u8;
                let at = op.offset + op.filled as u64;
                let ud = ((id as u64) << 32) | i as u64;
                let sqe = match op.fixed {
                    Some(index) => {
                        opcode::ReadFixed::new(types::Fixed(0), ptr, len, index).offset(at).build().user_data(ud)
                    }
                    None => opcode::Read::new(types::Fixed(0), ptr, len).offset(at).build().user_data(ud),
                };
                // SAFETY: `ptr..ptr + len` is the unread rest of one request buffer of
                // batch `id`, exclusively borrowed by the `read_batch` call that owns
                // the batch. That call neither touches the buffer nor returns while
                // the batch has a read in flight or queued (it loops until both
                // counts are 0; on error its queued reads are dropped unsubmitted),
                // and a read is resubmitted only after its completion, so no two
                // reads target the same bytes at once. Requests of a batch are
                // distinct `&mut` slices, so batches never share bytes either. Fixed
                // file 0 was registered at setup and `UringBackend::_file` keeps it
                // open. For READ_FIXED the request buffer lies wholly inside
                // registered buffer `index` (`fixed_index`), which stays registered
                // while we hold the ring's lock.
                if unsafe { sq.push(&sqe) }.is_err() {
                    self.queue.push_front((id, i));
                    break;
                }
                b.queued -= 1;
                b.in_flight += 1;
                self.in_flight += 1;
                if op.fixed.is_some() {
                    fixed_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.in_flight == 0 {
            return;
        }
        match self.ring.submit_and_wait(1) {
            Ok(_) => self.hard_failures = 0,
            // EBUSY: completions must be reaped first; EINTR/EAGAIN: try again.
            Err(e) if retryable(&e) || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                // Reads may still be in flight into callers' buffers, so giving up
                // now would be unsound. Keep waiting; a ring that keeps failing is
                // beyond repair and the process cannot continue safely.
                self.hard_failures += 1;
                if self.hard_failures > 1000 {
                    eprintln!("scone: io_uring_enter keeps failing with reads in flight ({e}); aborting");
                    std::process::abort();
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let done: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (ud, res) in done {
            self.in_flight -= 1;
            let (id, i) = ((ud >> 32) as u32, (ud & 0xffff_ffff) as usize);
            let Some(b) = self.batches.get_mut(&id) else { continue };
            b.in_flight -= 1;
            let op = &mut b.ops[i];
            let at = op.offset + op.filled as u64;
            let err = if res < 0 {
                let e = io::Error::from_raw_os_error(-res);
                if retryable(&e) {
                    None
                } else {
                    Some(BatchError { offset: at, source: e })
                }
            } else if res == 0 {
                let msg = format!(
                    "end of file after {} of {} bytes read from offset {} (file truncated?)",
                    op.filled, op.need, op.offset
                );
                Some(BatchError { offset: at, source: io::Error::new(io::ErrorKind::UnexpectedEof, msg) })
            } else {
                op.filled += res as usize;
                None
            };
            let again = err.is_none() && op.filled < op.need;
            match err {
                Some(e) if b.first.is_none() => {
                    b.first = Some(e);
                    if b.queued > 0 {
                        self.queue.retain(|q| q.0 != id);
                        b.queued = 0;
                    }
                }
                Some(_) => {}
                None if again && b.first.is_none() => {
                    self.queue.push_back((id, i as u32));
                    b.queued += 1;
                }
                None => {}
            }
        }
    }

    /// The registered buffer wholly holding `buf`, if any.
    fn fixed_index(&self, buf: &[u8]) -> Option<u16> {
        let (a, n) = (buf.as_ptr() as usize, buf.len());
        self.registered.iter().find(|&&(ra, rn, _)| a >= ra && a + n <= ra + rn).map(|r| r.2)
    }
}

impl UringBackend {
    /// Sets up a ring of `queue_depth` entries (1..=[`MAX_QUEUE_DEPTH`]) and
    /// registers `file` with it. Fails where io_uring is unavailable (old kernel,
    /// seccomp, `io_uring_disabled`).
    pub fn new(file: File, queue_depth: u32) -> io::Result<UringBackend> {
        Self::with_sqpoll(file, queue_depth, None)
    }

    /// [`new`](Self::new), with a kernel submission-queue polling thread
    /// (`IORING_SETUP_SQPOLL`) that sleeps after `sqpoll_idle_ms` of idleness
    /// when `sqpoll_idle_ms` is set. Where the kernel refuses SQPOLL (before 5.11
    /// it needs privileges; seccomp, limits) the ring is set up without it, with
    /// one log line on stderr (once per process); [`sqpoll_refused`](Self::sqpoll_refused)
    /// says why.
    pub fn with_sqpoll(file: File, queue_depth: u32, sqpoll_idle_ms: Option<u32>) -> io::Result<UringBackend> {
        Self::with_sqpoll_on_cpu(file, queue_depth, sqpoll_idle_ms, None)
    }

    /// [`with_sqpoll`](Self::with_sqpoll), the polling thread bound to `cpu`
    /// when given (`IORING_SETUP_SQ_AFF`; a CPU that is not online is refused,
    /// and the ring falls back as for any refusal).
    pub fn with_sqpoll_on_cpu(
        file: File,
        queue_depth: u32,
        sqpoll_idle_ms: Option<u32>,
        cpu: Option<u32>,
    ) -> io::Result<UringBackend> {
        if queue_depth == 0 || queue_depth > MAX_QUEUE_DEPTH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("io_uring queue depth {queue_depth} not in 1..={MAX_QUEUE_DEPTH}"),
            ));
        }
        let len = file.metadata()?.len();
        let mut sqpoll_refused = None;
        let ring = match sqpoll_idle_ms {
            Some(idle) => match sqpoll_ring(queue_depth, idle, cpu) {
                Ok(r) => r,
                Err(e) => {
                    static LOGGED: AtomicBool = AtomicBool::new(false);
                    if !LOGGED.swap(true, Ordering::Relaxed) {
                        eprintln!("scone: io_uring SQPOLL refused ({e}); submitting with io_uring_enter");
                    }
                    sqpoll_refused = Some(e.to_string());
                    IoUring::builder().build(queue_depth)?
                }
            },
            None => plain_ring(queue_depth)?,
        };
        ring.submitter().register_files(&[file.as_raw_fd()])?;
        let p = ring.params();
        let in_flight_limit = p.sq_entries().min(p.cq_entries()).min(queue_depth).max(1) as usize;
        Ok(UringBackend {
            ring: Mutex::new(Ring {
                ring,
                registered: Vec::new(),
                batches: HashMap::new(),
                queue: VecDeque::new(),
                in_flight: 0,
                next_id: 0,
                hard_failures: 0,
            }),
            _file: file,
            len,
            in_flight_limit,
            sqpoll_refused,
            buffer_slots: 0,
            fixed_reads: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Sets up a sparse table of `slots` registered buffers (Linux 5.13+), so
    /// that buffers offered through [`Backend::register_buffer`] are read into
    /// with `IORING_OP_READ_FIXED` (their pages pinned once, not on every read).
    /// Fails where the kernel lacks sparse tables; the backend then reads as before.
    pub fn enable_registered_buffers(&mut self, slots: u32) -> io::Result<()> {
        let slots = slots.clamp(1, u16::MAX as u32);
        let g = self.ring.get_mut().unwrap_or_else(|p| p.into_inner());
        g.ring.submitter().register_buffers_sparse(slots)?;
        self.buffer_slots = slots;
        Ok(())
    }

    /// The ring's lock, counted in `waiting` while blocked on it.
    fn lock(&self) -> MutexGuard<'_, Ring> {
        if let Ok(g) = self.ring.try_lock() {
            return g;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        g
    }

    /// Reads submitted as `READ_FIXED` (into a registered buffer) so far.
    pub fn fixed_reads(&self) -> u64 {
        self.fixed_reads.load(Ordering::Relaxed)
    }

    /// Whether a kernel thread polls the submission queue (SQPOLL is on).
    pub fn sqpoll(&self) -> bool {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).ring.params().is_setup_sqpoll()
    }

    /// Why SQPOLL was asked for and refused; `None` when on or not asked for.
    pub fn sqpoll_refused(&self) -> Option<&str> {
        self.sqpoll_refused.as_deref()
    }

    /// How many reads may be in flight at once.
    pub fn in_flight_limit(&self) -> usize {
        self.in_flight_limit
    }
}

/// A ring without SQPOLL, set up with `IORING_SETUP_COOP_TASKRUN` (Linux
/// 5.19+): completion task work runs when the reading thread next enters the
/// kernel, which it always does to wait for completions, instead of
/// interrupting it. Measured on a CPU-bound loop device at queue depth 32
/// (docs/PERFORMANCE.md): a median of 127 K against 113 K reads/s without it,
/// over three alternations each with overlapping ranges. Where the kernel
/// refuses the flag (EINVAL), a plain ring.
fn plain_ring(queue_depth: u32) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_coop_taskrun();
    match b.build(queue_depth) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder().build(queue_depth),
        r => r,
    }
}

/// A ring with a submission-queue polling thread (bound to `cpu` if given).
fn sqpoll_ring(queue_depth: u32, idle_ms: u32, cpu: Option<u32>) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_sqpoll(idle_ms);
    if let Some(cpu) = cpu {
        b.setup_sqpoll_cpu(cpu);
    }
    b.build(queue_depth)
}

impl Backend for UringBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let need = buf.len().min(1);
        let mut reqs = [ReadReq::new(offset, buf, need)];
        match self.read_batch(&mut reqs) {
            Ok(()) => Ok(reqs[0].filled),
            // The end of the file is a 0-byte read here, as for pread.
            Err(e) if e.source.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e.source),
        }
    }

    fn read_batch(&self, reqs: &mut [ReadReq<'_>]) -> Result<(), BatchError> {
        let mut g = self.lock();
        let mut id = g.next_id;
        while g.batches.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        g.next_id = id.wrapping_add(1);
        let mut ops = Vec::with_capacity(reqs.len());
        for r in reqs.iter_mut() {
            r.filled = 0;
            let fixed = g.fixed_index(r.buf);
            ops.push(Op {
                addr: r.buf.as_mut_ptr() as usize,
                len: r.buf.len(),
                offset: r.offset,
                need: r.need,
                filled: 0,
                fixed,
            });
        }
        let mut queued = 0;
        for (i, op) in ops.iter().enumerate() {
            if op.need > 0 {
                g.queue.push_back((id, i as u32));
                queued += 1;
            }
        }
        g.batches.insert(id, BatchState { ops, in_flight: 0, queued, first: None });
        // Drive the ring (every batch's reads, in order) until this batch is done.
        while g.batches.get(&id).is_some_and(|b| b.in_flight > 0 || b.queued > 0) {
            g.drive(self.in_flight_limit, &self.fixed_reads);
            // Let a caller waiting for the lock in (to queue its batch, or to
            // collect one that is done) have it, so batches overlap; whoever
            // holds it drives every batch's reads.
            let w = self.waiting.load(Ordering::Acquire);
            if w > 0 {
                drop(g);
                for _ in 0..64 {
                    if self.waiting.load(Ordering::Acquire) < w {
                        break;
                    }
                    std::thread::yield_now();
                }
                g = self.lock();
            }
        }
        let Some(st) = g.batches.remove(&id) else { return Ok(()) };
        drop(g);
        for (r, op) in reqs.iter_mut().zip(&st.ops) {
            r.filled = op.filled;
        }
        match st.first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn sqpoll(&self) -> Option<bool> {
        Some(UringBackend::sqpoll(self))
    }

    fn register_buffer(&self, buf: &mut [u8]) -> bool {
        if self.buffer_slots == 0 || buf.is_empty() {
            return false;
        }
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let Some(index) = (0..self.buffer_slots as u16).find(|i| g.registered.iter().all(|r| r.2 != *i)) else {
            return false;
        };
        let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: `buf` is valid for `buf.len()` bytes now; the kernel pins its
        // pages at registration. The contract of `register_buffer` has the caller
        // unregister it (or drop this backend, closing the ring) before the memory
        // is freed, so no READ_FIXED targets it afterwards; READ_FIXED is only
        // issued for a request buffer lying inside a buffer registered here.
        // Even a stale registration could only make the kernel write into the
        // pages it pinned, never into memory Rust has handed to someone else.
        match unsafe { g.ring.submitter().register_buffers_update(index as u32, &[iov], None) } {
            Ok(_) => {
                g.registered.push((buf.as_ptr() as usize, buf.len(), index));
                true
            }
            Err(_) => false,
        }
    }

    fn unregister_buffer(&self, buf: &[u8]) {
        let mut g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let key = (buf.as_ptr() as usize, buf.len());
        let Some(at) = g.registered.iter().position(|r| (r.0, r.1) == key) else { return };
        let (_, _, index) = g.registered.swap_remove(at);
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: an empty iovec clears the slot (sparse tables); nothing is read
        // into the slot from here on (the entry is gone and we hold the ring lock,
        // so no batch is in flight).
        let _ = unsafe { g.ring.submitter().register_buffers_update(index as u32, &[empty], None) };
    }

    fn registered_buffers(&self) -> usize {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).registered.len()
    }
}
