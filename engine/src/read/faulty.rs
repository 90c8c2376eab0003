//! A backend that injects faults, for tests of the error paths.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::backend::{fill_with, Backend, BatchError, ReadReq};

/// Wraps another backend and misbehaves on request:
/// - [`fail_after`](Self::fail_after): every read after the first `n` fails
///   with an I/O error;
/// - [`short_reads`](Self::short_reads): no read returns more than `cap` bytes,
///   and the batch either resumes short reads (as real backends do) or, with
///   `retry = false`, reports them as they are (a broken backend);
/// - [`report_len`](Self::report_len): claims the file is `len` bytes long (a file
///   truncated after it was opened).
pub struct FaultyBackend {
    inner: Box<dyn Backend>,
    fail_after: Option<u64>,
    short_cap: Option<usize>,
    retry_short: bool,
    len: Option<u64>,
    reads: AtomicU64,
}

impl FaultyBackend {
    pub fn new(inner: Box<dyn Backend>) -> FaultyBackend {
        FaultyBackend {
            inner,
            fail_after: None,
            short_cap: None,
            retry_short: true,
            len: None,
            reads: AtomicU64::new(0),
        }
    }

    pub fn fail_after(mut self, reads: u64) -> Self {
        self.fail_after = Some(reads);
        self
    }

    pub fn short_reads(mut self, cap: usize, retry: bool) -> Self {
        self.short_cap = Some(cap.max(1));
        self.retry_short = retry;
        self
    }

    pub fn report_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// Reads issued so far (each `read_at`, including the retries of a batch).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl Backend for FaultyBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(limit) = self.fail_after {
            if n >= limit {
                return Err(io::Error::other(format!("injected fault: read {} (after {limit} good reads)", n + 1)));
            }
        }
        let cap = self.short_cap.map_or(buf.len(), |c| c.min(buf.len()));
        self.inner.read_at(&mut buf[..cap], offset)
    }

    fn read_batch(&self, reqs: &mut [ReadReq<'_>]) -> Result<(), BatchError> {
        for r in reqs.iter_mut() {
            r.filled = 0;
            if self.retry_short {
                fill_with(r, |b, off| self.read_at(b, off))?;
            } else if r.need > 0 {
                r.filled = self.read_at(r.buf, r.offset).map_err(|source| BatchError { offset: r.offset, source })?;
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.unwrap_or_else(|| self.inner.len())
    }

    fn name(&self) -> &'static str {
        "faulty"
    }
}
