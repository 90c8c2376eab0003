//! The io_uring backend: one ring per reader, the file registered with it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Mutex;

use io_uring::{opcode, types, IoUring};

use super::backend::{eof, retryable, Backend, BatchError, ReadReq};

/// Largest queue depth accepted (the kernel's own limit is 32768 entries).
pub const MAX_QUEUE_DEPTH: u32 = 4096;

/// Reads through an io_uring: a batch is pushed onto the submission queue, at
/// most `in_flight_limit` requests at a time (no more than the completion queue
/// holds, so completions never overflow), and completions are reaped as they
/// come; short reads are resubmitted for the remainder, EINTR/EAGAIN retried.
pub struct UringBackend {
    ring: Mutex<IoUring>,
    // Kept open for the ring's registered-file slot 0.
    _file: File,
    len: u64,
    in_flight_limit: usize,
}

impl UringBackend {
    /// Sets up a ring of `queue_depth` entries (1..=[`MAX_QUEUE_DEPTH`]) and
    /// registers `file` with it. Fails where io_uring is unavailable (old kernel,
    /// seccomp, `io_uring_disabled`).
    pub fn new(file: File, queue_depth: u32) -> io::Result<UringBackend> {
        if queue_depth == 0 || queue_depth > MAX_QUEUE_DEPTH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("io_uring queue depth {queue_depth} not in 1..={MAX_QUEUE_DEPTH}"),
            ));
        }
        let len = file.metadata()?.len();
        let ring = IoUring::builder().build(queue_depth)?;
        ring.submitter().register_files(&[file.as_raw_fd()])?;
        let p = ring.params();
        let in_flight_limit = p.sq_entries().min(p.cq_entries()).min(queue_depth).max(1) as usize;
        Ok(UringBackend { ring: Mutex::new(ring), _file: file, len, in_flight_limit })
    }

    /// How many reads may be in flight at once.
    pub fn in_flight_limit(&self) -> usize {
        self.in_flight_limit
    }
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
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending: VecDeque<usize> = VecDeque::with_capacity(reqs.len());
        for (i, r) in reqs.iter_mut().enumerate() {
            r.filled = 0;
            if r.need > 0 {
                pending.push_back(i);
            }
        }
        let mut in_flight = 0usize;
        let mut first: Option<BatchError> = None;
        let mut hard_failures = 0u32;
        loop {
            if first.is_none() {
                let mut sq = ring.submission();
                while in_flight < self.in_flight_limit {
                    let Some(&i) = pending.front() else { break };
                    let r = &mut reqs[i];
                    let rest = &mut r.buf[r.filled..];
                    let len = rest.len().min(u32::MAX as usize) as u32;
                    let sqe = opcode::Read::new(types::Fixed(0), rest.as_mut_ptr(), len)
                        .offset(r.offset + r.filled as u64)
                        .build()
                        .user_data(i as u64);
                    // SAFETY: the entry points at `rest`, part of a request buffer that
                    // is exclusively borrowed for this whole call; this function does
                    // not return while any pushed entry is uncompleted (`in_flight`
                    // counts them and the loop only ends at zero), and no other
                    // reference reads or writes that part while the read is in
                    // flight (a request is resubmitted only after its completion).
                    // Fixed file 0 was registered in `new` and `self._file` keeps it open.
                    if unsafe { sq.push(&sqe) }.is_err() {
                        break;
                    }
                    pending.pop_front();
                    in_flight += 1;
                }
            }
            if in_flight == 0 {
                break;
            }
            match ring.submit_and_wait(1) {
                Ok(_) => hard_failures = 0,
                // EBUSY: completions must be reaped first; EINTR/EAGAIN: try again.
                Err(e) if retryable(&e) || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => {
                    // Reads may still be in flight into the caller's buffers, so
                    // returning now would be unsound. Keep waiting; a ring that keeps
                    // failing is beyond repair and the process cannot continue safely.
                    hard_failures += 1;
                    if hard_failures > 1000 {
                        eprintln!("scone: io_uring_enter keeps failing with reads in flight ({e}); aborting");
                        std::process::abort();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            for cqe in ring.completion() {
                in_flight -= 1;
                let i = cqe.user_data() as usize;
                let r = &mut reqs[i];
                let at = r.offset + r.filled as u64;
                let res = cqe.result();
                if res < 0 {
                    let e = io::Error::from_raw_os_error(-res);
                    if retryable(&e) {
                        pending.push_back(i);
                    } else if first.is_none() {
                        first = Some(BatchError { offset: at, source: e });
                    }
                } else if res == 0 {
                    if first.is_none() {
                        first = Some(eof(at, r));
                    }
                } else {
                    r.filled += res as usize;
                    if r.filled < r.need {
                        pending.push_back(i);
                    }
                }
            }
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
}
