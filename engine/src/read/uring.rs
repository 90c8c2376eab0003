//! The io_uring backend: one ring per reader, owned by one I/O thread.
//!
//! The thread owning the ring lets it be set up with `IORING_SETUP_SINGLE_ISSUER`
//! and `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1+), as fio does: the kernel runs
//! completion work only when that thread asks for completions, in one batch,
//! instead of interrupting whichever thread is running. Callers hand their
//! batches to the thread over a channel and block until their reads are done;
//! batches from several callers (prefetch tickets) share the ring, so it stays
//! full across batch boundaries.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{bounded, unbounded, Receiver, Sender};
use io_uring::{opcode, types, IoUring};

use super::backend::{retryable, Backend, BatchError, BufferRegistration, ReadReq};

/// `IORING_ENTER_GETEVENTS` (the uapi value): wait for / collect completions.
const ENTER_GETEVENTS: u32 = 1;

/// Default completion polling before the I/O thread sleeps, in microseconds
/// ([`UringBackend::set_spin_us`]). Measured on the 2-core development VM
/// (docs/PERFORMANCE.md): at queue depth 32 it took scone from about 0.8 of
/// fio's IOPS to parity.
pub const DEFAULT_SPIN_US: u32 = 100;

/// Largest queue depth accepted (the kernel's own limit is 32768 entries).
pub const MAX_QUEUE_DEPTH: u32 = 4096;

/// How the ring was set up (the first the kernel accepted, best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSetup {
    /// A kernel thread polls the submission queue (`IORING_SETUP_SQPOLL`).
    Sqpoll,
    /// `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (Linux 6.1+).
    DeferTaskrun,
    /// `COOP_TASKRUN` (Linux 5.19+).
    CoopTaskrun,
    /// No setup flags.
    Plain,
}

impl RingSetup {
    pub fn name(self) -> &'static str {
        match self {
            RingSetup::Sqpoll => "sqpoll",
            RingSetup::DeferTaskrun => "defer_taskrun",
            RingSetup::CoopTaskrun => "coop_taskrun",
            RingSetup::Plain => "plain",
        }
    }
}

/// Reads through an io_uring: a batch is pushed onto the submission queue, at
/// most `in_flight_limit` requests at a time (no more than the completion queue
/// holds, so completions never overflow), and completions are reaped as they
/// come; short reads are resubmitted for the remainder, EINTR/EAGAIN retried.
pub struct UringBackend {
    /// Commands to the I/O thread; `None` once dropped (the thread then exits).
    /// Shared (weakly) with buffer registrations, which must not keep the
    /// thread alive but unregister through it while it runs.
    tx: Option<Arc<Sender<Cmd>>>,
    worker: Option<JoinHandle<()>>,
    // Kept open for the ring's registered-file slot 0 (dropped after the thread).
    _file: File,
    len: u64,
    in_flight_limit: usize,
    setup: RingSetup,
    /// Why a requested SQPOLL ring was refused (the ring runs without it).
    sqpoll_refused: Option<String>,
    /// Slots of the sparse registered-buffer table (0: none set up).
    buffer_slots: u32,
    /// READ_FIXED submissions so far.
    fixed_reads: Arc<AtomicU64>,
    /// Buffers registered now.
    registered: Arc<AtomicUsize>,
    spin_us: Arc<AtomicU32>,
}

/// What a caller asks of the I/O thread.
enum Cmd {
    Batch { ops: Vec<Op>, reply: Sender<Done> },
    SparseBuffers { slots: u32, reply: Sender<io::Result<()>> },
    Register { addr: usize, len: usize, reply: Sender<Option<u16>> },
    Unregister { index: u16, reply: Sender<()> },
}

/// A finished batch: its requests (with `filled`) and its first error.
type Done = (Vec<Op>, Option<BatchError>);

/// The ring and what only the I/O thread touches: the buffers registered with
/// it and the batches being read.
struct Ring {
    ring: IoUring,
    /// `(address, length, table index)` of each registered buffer.
    registered: Vec<(usize, usize, u16)>,
    buffer_slots: u32,
    /// The batches being read, by id.
    batches: HashMap<u32, BatchState>,
    /// `(batch, request)` reads waiting for room in the ring, in order.
    queue: VecDeque<(u32, u32)>,
    /// Reads submitted and not yet completed, all batches together.
    in_flight: usize,
    next_id: u32,
    hard_failures: u32,
    fixed_reads: Arc<AtomicU64>,
    registered_count: Arc<AtomicUsize>,
    /// Completion polling before sleeping, in microseconds (0: sleep at once).
    spin_us: Arc<AtomicU32>,
}

/// One request of a batch: where its buffer is (an address, so the request can
/// cross to the I/O thread; the buffer is borrowed by the `read_batch` call
/// that owns the batch), what to read, and how much has been.
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
    reply: Sender<Done>,
}

impl Ring {
    /// One step: tops the ring up from the queue (up to `limit` in flight),
    /// waits for at least one completion and applies every completion to its
    /// batch (short and interrupted reads go back on the queue; a batch's
    /// first error drops its queued reads).
    fn drive(&mut self, limit: usize) {
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
                // the batch. That call neither touches the buffer nor returns (or
                // unwinds: `BatchInFlight`) while the batch has a read in flight or
                // queued: it blocks until this thread replies, which `finish` does
                // only once both counts are 0 (on error the batch's queued reads are
                // dropped unsubmitted). A read is resubmitted only after its
                // completion, so no two reads target the same bytes at once; requests
                // are distinct `&mut` slices, so batches never share bytes either.
                // Fixed file 0 was registered at setup and `UringBackend::_file`
                // keeps it open. For READ_FIXED the request buffer lies wholly inside
                // registered buffer `index` (`fixed_index`); the memory registered
                // there belongs to a live `RegisteredBuf` (whose registration ends
                // before its memory is freed), so it is this request's own memory,
                // and it stays registered while the batch borrows it.
                if unsafe { sq.push(&sqe) }.is_err() {
                    self.queue.push_front((id, i));
                    break;
                }
                b.queued -= 1;
                b.in_flight += 1;
                self.in_flight += 1;
                if op.fixed.is_some() {
                    self.fixed_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.in_flight == 0 {
            return;
        }
        match self.enter() {
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

    /// The registered buffer wholly holding `a..a + n`, if any.
    fn fixed_index(&self, a: usize, n: usize) -> Option<u16> {
        self.registered.iter().find(|&&(ra, rn, _)| a >= ra && a + n <= ra + rn).map(|r| r.2)
    }

    /// Submits the queued reads and collects completions. A SQPOLL ring waits
    /// in `submit_and_wait(1)`. Otherwise, as fio does: submit and run the
    /// completion work without blocking (GETEVENTS with `min_complete` 0); if
    /// nothing completed, poll that way for up to `spin_us` microseconds, then
    /// sleep for one completion. Sleeping on every completion costs a wake-up
    /// each (on a VM, a halted vCPU, an IPI and often stolen time); polling
    /// keeps the thread running while reads are in flight (never while idle).
    fn enter(&mut self) -> io::Result<usize> {
        if self.ring.params().is_setup_sqpoll() {
            return self.ring.submit_and_wait(1);
        }
        let pending = self.ring.submission().len() as u32;
        // SAFETY: plain `io_uring_enter` calls without an argument pointer; the
        // SQEs they submit were pushed by `drive` under its own SAFETY argument.
        let n = unsafe { self.ring.submitter().enter::<libc::sigset_t>(pending, 0, ENTER_GETEVENTS, None) }?;
        if !self.ring.completion().is_empty() {
            return Ok(n);
        }
        let spin = self.spin_us.load(Ordering::Relaxed);
        if spin > 0 {
            let t = std::time::Instant::now();
            while t.elapsed().as_micros() < spin as u128 {
                // SAFETY: as above; nothing is submitted.
                unsafe { self.ring.submitter().enter::<libc::sigset_t>(0, 0, ENTER_GETEVENTS, None) }?;
                if !self.ring.completion().is_empty() {
                    return Ok(n);
                }
            }
        }
        // SAFETY: as above; nothing is submitted.
        unsafe { self.ring.submitter().enter::<libc::sigset_t>(0, 1, ENTER_GETEVENTS, None) }
    }

    /// Takes one command from a caller.
    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Batch { mut ops, reply } => {
                let mut id = self.next_id;
                while self.batches.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                self.next_id = id.wrapping_add(1);
                let mut queued = 0;
                for (i, op) in ops.iter_mut().enumerate() {
                    op.fixed = self.fixed_index(op.addr, op.len);
                    if op.need > 0 {
                        self.queue.push_back((id, i as u32));
                        queued += 1;
                    }
                }
                self.batches.insert(id, BatchState { ops, in_flight: 0, queued, first: None, reply });
            }
            Cmd::SparseBuffers { slots, reply } => {
                let r = self.ring.submitter().register_buffers_sparse(slots);
                if r.is_ok() {
                    self.buffer_slots = slots;
                }
                let _ = reply.send(r);
            }
            Cmd::Register { addr, len, reply } => {
                let _ = reply.send(self.register(addr, len));
            }
            Cmd::Unregister { index, reply } => {
                if let Some(at) = self.registered.iter().position(|r| r.2 == index) {
                    let (_, _, index) = self.registered.swap_remove(at);
                    self.registered_count.fetch_sub(1, Ordering::Relaxed);
                    let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
                    // SAFETY: an empty iovec clears the slot (sparse tables). Nothing is
                    // read into the slot from here on: the entry is gone, so no batch
                    // handled after this command uses it. No read into the buffer is
                    // pending: the registration is dropped by its owner
                    // (`RegisteredBuf`), which cannot be while a batch borrows it.
                    let _ = unsafe { self.ring.submitter().register_buffers_update(index as u32, &[empty], None) };
                }
                let _ = reply.send(());
            }
        }
    }

    fn register(&mut self, addr: usize, len: usize) -> Option<u16> {
        if self.buffer_slots == 0 || len == 0 {
            return None;
        }
        let index =
            (0..self.buffer_slots.min(u16::MAX as u32) as u16).find(|i| self.registered.iter().all(|r| r.2 != *i))?;
        let iov = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
        // SAFETY: `addr..addr + len` is the caller's `&mut [u8]`, valid now; the
        // kernel pins its pages at registration. `Backend::register_buffer`'s
        // contract (kept by `RegisteredBuf`, which owns the memory) has the
        // memory stay put until the registration is dropped, which sends
        // `Unregister`, or this backend is dropped, closing the ring; so no
        // READ_FIXED targets it afterwards. READ_FIXED is only issued for a
        // request buffer lying inside a buffer registered here.
        match unsafe { self.ring.submitter().register_buffers_update(index as u32, &[iov], None) } {
            Ok(_) => {
                self.registered.push((addr, len, index));
                self.registered_count.fetch_add(1, Ordering::Relaxed);
                Some(index)
            }
            Err(_) => None,
        }
    }

    /// Replies to every batch with nothing left in the ring or the queue.
    fn finish(&mut self) {
        let done: Vec<u32> =
            self.batches.iter().filter(|(_, b)| b.in_flight == 0 && b.queued == 0).map(|(id, _)| *id).collect();
        for id in done {
            if let Some(b) = self.batches.remove(&id) {
                // A caller gone (it cannot be: it blocks on this reply) loses nothing.
                let _ = b.reply.send((b.ops, b.first));
            }
        }
    }

    /// The I/O thread: takes commands (blocking only when no read is pending),
    /// drives the ring and replies to finished batches, until every sender is
    /// gone and nothing is in flight.
    fn run(mut self, rx: Receiver<Cmd>, limit: usize) {
        // Reads may be in flight into callers' buffers: if this thread unwound,
        // the ring would close while they land and their callers would return.
        let _guard = AbortOnUnwind;
        loop {
            // Every finished batch was answered at the end of the last round.
            if self.in_flight == 0 && self.queue.is_empty() {
                match rx.recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd);
            }
            self.drive(limit);
            self.finish();
        }
    }
}

/// The error of a command whose I/O thread has exited.
fn thread_gone() -> io::Error {
    io::Error::other("the io_uring thread is gone")
}

/// A batch handed to the I/O thread: [`wait`](Self::wait) takes its reply, and
/// dropping it unanswered (a caller's `work` panicked) blocks until the reply
/// comes, so the kernel is done with the batch's buffers before they can be
/// freed. The thread replies once nothing of the batch is in flight or
/// queued; a thread that is gone has nothing in flight (it exits only then,
/// or aborts the process).
struct BatchInFlight(Option<Receiver<Done>>);

impl BatchInFlight {
    fn wait(mut self) -> io::Result<Done> {
        self.0.take().ok_or_else(thread_gone)?.recv().map_err(|_| thread_gone())
    }
}

impl Drop for BatchInFlight {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            let _ = answer.recv();
        }
    }
}

/// Aborts the process if dropped while its thread panics.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scone: the io_uring thread panicked with reads possibly in flight; aborting");
            std::process::abort();
        }
    }
}

/// What the I/O thread reports once its ring is set up.
struct Started {
    setup: RingSetup,
    sqpoll_refused: Option<String>,
    in_flight_limit: usize,
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
        let fd = file.as_raw_fd();
        let fixed_reads = Arc::new(AtomicU64::new(0));
        let registered = Arc::new(AtomicUsize::new(0));
        let spin_us = Arc::new(AtomicU32::new(DEFAULT_SPIN_US));
        let (tx, rx) = unbounded::<Cmd>();
        let (started_tx, started_rx) = bounded::<io::Result<Started>>(1);
        let (f, r, spin) = (fixed_reads.clone(), registered.clone(), spin_us.clone());
        // The ring is created on the thread that will use it: a SINGLE_ISSUER
        // ring only accepts submissions and registrations from its creator.
        let worker = std::thread::Builder::new().name("scone-uring".into()).spawn(move || {
            let set_up = || -> io::Result<(IoUring, Started)> {
                let (ring, setup, sqpoll_refused) = build_ring(queue_depth, sqpoll_idle_ms, cpu)?;
                ring.submitter().register_files(&[fd])?;
                let p = ring.params();
                let in_flight_limit = p.sq_entries().min(p.cq_entries()).min(queue_depth).max(1) as usize;
                Ok((ring, Started { setup, sqpoll_refused, in_flight_limit }))
            };
            match set_up() {
                Ok((ring, started)) => {
                    let limit = started.in_flight_limit;
                    let _ = started_tx.send(Ok(started));
                    let ring = Ring {
                        ring,
                        registered: Vec::new(),
                        buffer_slots: 0,
                        batches: HashMap::new(),
                        queue: VecDeque::new(),
                        in_flight: 0,
                        next_id: 0,
                        hard_failures: 0,
                        fixed_reads: f,
                        registered_count: r,
                        spin_us: spin,
                    };
                    ring.run(rx, limit);
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            }
        })?;
        let started = started_rx
            .recv()
            .map_err(|_| io::Error::other("the io_uring thread exited before setting up its ring"))
            .and_then(|s| s);
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = worker.join();
                return Err(e);
            }
        };
        Ok(UringBackend {
            tx: Some(Arc::new(tx)),
            worker: Some(worker),
            _file: file,
            len,
            in_flight_limit: started.in_flight_limit,
            setup: started.setup,
            sqpoll_refused: started.sqpoll_refused,
            buffer_slots: 0,
            fixed_reads,
            registered,
            spin_us,
        })
    }

    /// Sets up a sparse table of `slots` registered buffers (Linux 5.13+), so
    /// that buffers offered through [`Backend::register_buffer`] are read into
    /// with `IORING_OP_READ_FIXED` (their pages pinned once, not on every read).
    /// Fails where the kernel lacks sparse tables; the backend then reads as before.
    pub fn enable_registered_buffers(&mut self, slots: u32) -> io::Result<()> {
        let slots = slots.clamp(1, u16::MAX as u32);
        self.ask(|reply| Cmd::SparseBuffers { slots, reply })??;
        self.buffer_slots = slots;
        Ok(())
    }

    /// Sends a command to the I/O thread; its answer comes on the receiver.
    fn send<T>(&self, cmd: impl FnOnce(Sender<T>) -> Cmd) -> io::Result<Receiver<T>> {
        let (reply, answer) = bounded(1);
        self.tx.as_ref().ok_or_else(thread_gone)?.send(cmd(reply)).map_err(|_| thread_gone())?;
        Ok(answer)
    }

    /// Sends a command to the I/O thread and waits for its answer.
    fn ask<T>(&self, cmd: impl FnOnce(Sender<T>) -> Cmd) -> io::Result<T> {
        self.send(cmd)?.recv().map_err(|_| thread_gone())
    }

    /// How long the I/O thread polls for completions before sleeping, while
    /// reads are in flight (default [`DEFAULT_SPIN_US`]; 0: sleep at once; no
    /// effect with SQPOLL). Polling costs CPU on that thread and saves a
    /// wake-up per completion.
    pub fn set_spin_us(&self, us: u32) {
        self.spin_us.store(us, Ordering::Relaxed);
    }

    /// See [`set_spin_us`](Self::set_spin_us).
    pub fn spin_us(&self) -> u32 {
        self.spin_us.load(Ordering::Relaxed)
    }

    /// Reads submitted as `READ_FIXED` (into a registered buffer) so far.
    pub fn fixed_reads(&self) -> u64 {
        self.fixed_reads.load(Ordering::Relaxed)
    }

    /// Whether a kernel thread polls the submission queue (SQPOLL is on).
    pub fn sqpoll(&self) -> bool {
        self.setup == RingSetup::Sqpoll
    }

    /// How the ring was set up.
    pub fn ring_setup(&self) -> RingSetup {
        self.setup
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

impl Drop for UringBackend {
    fn drop(&mut self) {
        // No batch is pending (`read_batch` borrows `self`), so the thread sees
        // the channel close, finds nothing in flight, and closes the ring.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The ring for these options and how it was set up: with SQPOLL when asked
/// (falling back to a plain ring, logged once, where refused); otherwise the
/// best of `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (6.1+),
/// `COOP_TASKRUN` (5.19+) and no flags that the kernel accepts.
///
/// Measured on a CPU-bound loop device at queue depth 32 (docs/PERFORMANCE.md):
/// COOP_TASKRUN raised the median from 113 K to 127 K reads/s over a plain ring;
/// DEFER_TASKRUN's figures are there too.
fn build_ring(
    queue_depth: u32,
    sqpoll_idle_ms: Option<u32>,
    cpu: Option<u32>,
) -> io::Result<(IoUring, RingSetup, Option<String>)> {
    if let Some(idle) = sqpoll_idle_ms {
        let mut b = IoUring::builder();
        b.setup_sqpoll(idle);
        if let Some(cpu) = cpu {
            b.setup_sqpoll_cpu(cpu);
        }
        return match b.build(queue_depth) {
            Ok(r) => Ok((r, RingSetup::Sqpoll, None)),
            Err(e) => {
                static LOGGED: AtomicBool = AtomicBool::new(false);
                if !LOGGED.swap(true, Ordering::Relaxed) {
                    eprintln!("scone: io_uring SQPOLL refused ({e}); submitting with io_uring_enter");
                }
                Ok((IoUring::builder().build(queue_depth)?, RingSetup::Plain, Some(e.to_string())))
            }
        };
    }
    let einval = |r: &io::Result<IoUring>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EINVAL));
    let r = IoUring::builder().setup_coop_taskrun().setup_single_issuer().setup_defer_taskrun().build(queue_depth);
    if !einval(&r) {
        return r.map(|r| (r, RingSetup::DeferTaskrun, None));
    }
    let r = IoUring::builder().setup_coop_taskrun().build(queue_depth);
    if !einval(&r) {
        return r.map(|r| (r, RingSetup::CoopTaskrun, None));
    }
    Ok((IoUring::builder().build(queue_depth)?, RingSetup::Plain, None))
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
        self.read_batch_while(reqs, &mut || {})
    }

    fn read_batch_while(&self, reqs: &mut [ReadReq<'_>], work: &mut dyn FnMut()) -> Result<(), BatchError> {
        let ops: Vec<Op> = reqs
            .iter_mut()
            .map(|r| {
                r.filled = 0;
                Op {
                    addr: r.buf.as_mut_ptr() as usize,
                    len: r.buf.len(),
                    offset: r.offset,
                    need: r.need,
                    filled: 0,
                    fixed: None,
                }
            })
            .collect();
        let first_offset = reqs.first().map_or(0, |r| r.offset);
        // From here the kernel may write into the requests' buffers until the
        // I/O thread replies. `in_flight` waits for that reply even if `work`
        // panics: unwinding would otherwise end the borrow of `reqs` and let
        // the caller free buffers that reads are still landing in.
        let in_flight = BatchInFlight(self.send(|reply| Cmd::Batch { ops, reply }).ok());
        // `work` runs once, whether or not the batch was accepted, and cannot
        // touch the buffers (`reqs` borrows them).
        work();
        let (ops, first) = in_flight.wait().map_err(|source| BatchError { offset: first_offset, source })?;
        for (r, op) in reqs.iter_mut().zip(&ops) {
            r.filled = op.filled;
        }
        match first {
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

    fn ring_setup(&self) -> Option<String> {
        match self.setup {
            // `describe()` already says "with SQPOLL"; the poll time does not apply.
            RingSetup::Sqpoll => None,
            s => Some(format!("{}, poll {} us", s.name(), self.spin_us())),
        }
    }

    unsafe fn register_buffer(&self, buf: &mut [u8]) -> Option<BufferRegistration> {
        if self.buffer_slots == 0 || buf.is_empty() {
            return None;
        }
        let (addr, len) = (buf.as_mut_ptr() as usize, buf.len());
        let tx = Arc::downgrade(self.tx.as_ref()?);
        let index = self.ask(|reply| Cmd::Register { addr, len, reply }).ok()??;
        Some(BufferRegistration::new(move || {
            // The backend gone (its ring closed) released the buffer already;
            // otherwise wait until the I/O thread has cleared the slot, so the
            // memory is not freed while still registered.
            if let Some(tx) = tx.upgrade() {
                let (reply, answer) = bounded(1);
                if tx.send(Cmd::Unregister { index, reply }).is_ok() {
                    let _ = answer.recv();
                }
            }
        }))
    }

    fn registered_buffers(&self) -> usize {
        self.registered.load(Ordering::Relaxed)
    }
}
