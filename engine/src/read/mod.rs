//! Reading rows in three modes: from the memory map (`Mmap`), from a resident
//! huge-page copy (`Resident`), or straight from storage (`Direct`: `O_DIRECT`
//! reads through io_uring or a pread thread pool, bypassing the page cache), the
//! first step towards tables larger than DRAM. See docs/READ_PATH.md.

pub mod backend;
pub mod faulty;
pub mod uring;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use memmap2::{MmapMut, MmapOptions};

use crate::error::{GatherError, OpenError};
use crate::format::SectionKind;
use crate::gather::{gather, GatherOptions, MISS_SLOT};
use crate::table::{OpenOptions, Table};

pub use backend::{open_file, Backend, BatchError, PreadBackend, ReadReq};
pub use faulty::FaultyBackend;
pub use uring::{UringBackend, MAX_QUEUE_DEPTH};

/// Alignment of offsets, lengths and buffer addresses for `O_DIRECT` reads.
pub const DIRECT_ALIGN: u64 = 4096;
/// Largest single read after coalescing.
pub const MAX_SPAN: u64 = 1 << 20;
/// Most pread threads a reader starts, whatever the queue depth.
pub const MAX_PREAD_THREADS: usize = 64;

/// Which backend the direct mode reads through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring; opening fails where it is unavailable.
    Uring,
    /// A pool of threads issuing `pread(2)`.
    Pread,
    /// io_uring, falling back to pread (with one log line) where its setup fails.
    Auto,
}

/// Where [`RowReader::read_rows`] takes rows from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Copy from the table's file mapping (what [`gather`] does): the page cache
    /// holds the rows, faulted in on demand.
    Mmap,
    /// Copy from the rows copied at open into huge-page anonymous memory
    /// ([`OpenOptions::resident_rows`]); the table is reopened that way if needed.
    Resident,
    /// Read from the file on every call, `O_DIRECT`, through `backend` with up
    /// to `queue_depth` reads in flight (pread: that many threads, at most
    /// [`MAX_PREAD_THREADS`]).
    Direct { backend: BackendKind, queue_depth: u32 },
}

/// Less common knobs of a [`RowReader`].
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Open the file with `O_DIRECT` (falls back to buffered where refused). Default: on.
    pub o_direct: bool,
    /// Size of the aligned bounce buffer: a batch's reads go out in groups of at
    /// most this many bytes. Default 8 MiB (never less than [`MAX_SPAN`]).
    pub bounce_bytes: usize,
    /// Tests only: make io_uring setup fail as on a kernel without it.
    #[doc(hidden)]
    pub simulate_uring_setup_failure: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions { o_direct: true, bounce_bytes: 8 << 20, simulate_uring_setup_failure: false }
    }
}

/// What a call to [`RowReader::read_rows`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Slots in the batch, misses included.
    pub rows_requested: usize,
    /// [`MISS_SLOT`] entries (zero-filled).
    pub misses: usize,
    /// Distinct slots other than misses.
    pub unique_rows: usize,
    /// Rows taken from storage: the unique rows for `Direct` and `Mmap` (whether
    /// the page cache had them is not known), 0 for `Resident`.
    pub rows_read: usize,
    /// Bytes read from storage (`Direct`: whole aligned spans) or copied out of
    /// the mapping (`Mmap`: unique rows' bytes); 0 for `Resident`.
    pub bytes_read: u64,
    /// Reads submitted to the backend after coalescing (`Direct` only).
    pub reads_submitted: usize,
}

/// Reading rows failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{path}: read at offset {offset} failed: {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot open for reading: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Table(#[from] OpenError),
    #[error("slot {slot} at batch position {position} is out of range (table has {rows} rows)")]
    SlotOutOfRange { position: usize, slot: u32, rows: u64 },
    #[error("output buffer holds {got} bytes; {need} needed for {rows} rows of {row_bytes} bytes")]
    BufferSize { got: usize, need: usize, rows: usize, row_bytes: usize },
}

/// The direct mode's state.
struct Direct {
    backend: Box<dyn Backend>,
    o_direct: bool,
    rows_offset: u64,
    stride: u64,
    bounce: Mutex<Option<MmapMut>>,
    bounce_bytes: usize,
}

/// Reads rows of a table in one of the [`ReadMode`]s. `Sync`: calls from several
/// threads are allowed (a direct reader serializes them on its bounce buffer).
pub struct RowReader<'t> {
    table: &'t Table,
    mode: ReadMode,
    /// The table reopened with resident rows (Resident mode, when `table` is not).
    resident: Option<Table>,
    direct: Option<Direct>,
}

impl<'t> RowReader<'t> {
    pub fn open(table: &'t Table, mode: ReadMode) -> Result<RowReader<'t>, ReadError> {
        Self::open_with(table, mode, ReaderOptions::default())
    }

    pub fn open_with(table: &'t Table, mode: ReadMode, opts: ReaderOptions) -> Result<RowReader<'t>, ReadError> {
        let mut r = RowReader { table, mode, resident: None, direct: None };
        match mode {
            ReadMode::Mmap => {}
            ReadMode::Resident => {
                if !table.rows_are_resident() {
                    let o = OpenOptions { resident_rows: true, ..OpenOptions::default() };
                    r.resident = Some(Table::open_with(table.path(), o)?);
                }
            }
            ReadMode::Direct { backend, queue_depth } => {
                let path = table.path();
                let open_err = |source| ReadError::Open { path: path.to_path_buf(), source };
                let (file, o_direct) = open_file(path, opts.o_direct).map_err(open_err)?;
                let qd = queue_depth.max(1);
                let uring = |file| {
                    if opts.simulate_uring_setup_failure {
                        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
                    }
                    UringBackend::new(file, qd)
                };
                let pread = |file| PreadBackend::new(file, (qd as usize).min(MAX_PREAD_THREADS));
                let b: Box<dyn Backend> = match backend {
                    BackendKind::Pread => Box::new(pread(file).map_err(open_err)?),
                    BackendKind::Uring => Box::new(uring(file).map_err(open_err)?),
                    BackendKind::Auto => {
                        let spare = file.try_clone().map_err(open_err)?;
                        match uring(file) {
                            Ok(u) => Box::new(u),
                            Err(e) => {
                                static LOGGED: AtomicBool = AtomicBool::new(false);
                                if !LOGGED.swap(true, Ordering::Relaxed) {
                                    eprintln!(
                                        "scone: io_uring unavailable ({e}); reading rows with a pread thread pool"
                                    );
                                }
                                Box::new(pread(spare).map_err(open_err)?)
                            }
                        }
                    }
                };
                r.direct = Some(Direct::new(table, b, o_direct, opts));
            }
        }
        Ok(r)
    }

    /// A direct reader over a backend of the caller's (fault injection, other
    /// storage). Offsets are the table file's. [`mode`](Self::mode) reports
    /// `Direct { backend: Auto, queue_depth: 0 }` for such a reader.
    pub fn with_backend(table: &'t Table, backend: Box<dyn Backend>, opts: ReaderOptions) -> RowReader<'t> {
        let mode = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 0 };
        let direct = Some(Direct::new(table, backend, false, opts));
        RowReader { table, mode, resident: None, direct }
    }

    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    /// The backend's name ("io_uring", "pread", ...), for direct readers.
    pub fn backend_name(&self) -> Option<&'static str> {
        self.direct.as_ref().map(|d| d.backend.name())
    }

    /// Whether a direct reader's file is open with `O_DIRECT`.
    pub fn is_o_direct(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.o_direct)
    }

    /// Bytes of one output row: `dim * dtype.size()` in the stored dtype.
    pub fn row_bytes(&self) -> usize {
        self.table.dim() * self.table.dtype().size()
    }

    /// Writes row `slots[i]` (stored dtype) to `out[i * row_bytes ..]`.
    /// [`MISS_SLOT`] rows are zero; any other slot beyond the table is an error,
    /// and so is every failed read (never a zero row in its place). On error
    /// nothing is promised of `out`.
    pub fn read_rows(&self, slots: &[u32], out: &mut [u8]) -> Result<ReadStats, ReadError> {
        let row_bytes = self.row_bytes();
        let need = slots.len() * row_bytes;
        if out.len() != need {
            return Err(ReadError::BufferSize { got: out.len(), need, rows: slots.len(), row_bytes });
        }
        let rows = self.table.rows();
        if let Some((position, &slot)) = slots.iter().enumerate().find(|(_, &s)| s != MISS_SLOT && s as u64 >= rows) {
            return Err(ReadError::SlotOutOfRange { position, slot, rows });
        }
        let misses = slots.iter().filter(|&&s| s == MISS_SLOT).count();
        let mut stats = ReadStats { rows_requested: slots.len(), misses, ..ReadStats::default() };
        if let Some(d) = &self.direct {
            d.read(self.table, slots, row_bytes, out, &mut stats)?;
            return Ok(stats);
        }
        let table = self.resident.as_ref().unwrap_or(self.table);
        let opts = GatherOptions { dtype: table.dtype(), max_threads: 0 };
        gather(table, slots, opts, out).map_err(|e| match e {
            GatherError::SlotOutOfRange { position, slot, rows } => ReadError::SlotOutOfRange { position, slot, rows },
            GatherError::BufferSize { got, need, rows, row_bytes } => {
                ReadError::BufferSize { got, need, rows, row_bytes }
            }
        })?;
        let mut uniq: Vec<u32> = slots.iter().copied().filter(|&s| s != MISS_SLOT).collect();
        uniq.sort_unstable();
        uniq.dedup();
        stats.unique_rows = uniq.len();
        if self.mode == ReadMode::Mmap {
            stats.rows_read = uniq.len();
            stats.bytes_read = (uniq.len() * row_bytes) as u64;
        }
        Ok(stats)
    }
}

/// One coalesced read: the aligned file range `start..end`, of which
/// `start..need_end` must be read (the tail may lie past the end of the file),
/// holding the unique rows `runs[first..last]`.
struct Span {
    start: u64,
    end: u64,
    need_end: u64,
    first: usize,
    last: usize,
}

fn align_down(x: u64) -> u64 {
    x & !(DIRECT_ALIGN - 1)
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
}

impl Direct {
    fn new(table: &Table, backend: Box<dyn Backend>, o_direct: bool, opts: ReaderOptions) -> Direct {
        // check_layout guarantees a rows section; 0 would only misplace reads.
        let rows_offset = table.header().section(SectionKind::Rows).map_or(0, |s| s.offset);
        Direct {
            backend,
            o_direct,
            rows_offset,
            stride: table.header().row_stride,
            bounce: Mutex::new(None),
            bounce_bytes: opts.bounce_bytes.max(MAX_SPAN as usize),
        }
    }

    fn read(
        &self,
        table: &Table,
        slots: &[u32],
        row_bytes: usize,
        out: &mut [u8],
        stats: &mut ReadStats,
    ) -> Result<(), ReadError> {
        let io_err = |offset, source| ReadError::Io { path: table.path().to_path_buf(), offset, source };
        // (slot, output position), sorted: equal slots form runs, runs are in file order.
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(slots.len());
        for (i, &s) in slots.iter().enumerate() {
            if s == MISS_SLOT {
                out[i * row_bytes..(i + 1) * row_bytes].fill(0);
            } else {
                order.push((s, i as u32));
            }
        }
        order.sort_unstable();
        // runs[k] = index in `order` where the k-th unique slot starts.
        let mut runs: Vec<usize> = Vec::new();
        for (k, &(s, _)) in order.iter().enumerate() {
            if k == 0 || order[k - 1].0 != s {
                runs.push(k);
            }
        }
        let file_len = self.backend.len();
        let mut spans: Vec<Span> = Vec::new();
        for (u, &k) in runs.iter().enumerate() {
            let off = self.rows_offset + order[k].0 as u64 * self.stride;
            let row_end = off + row_bytes as u64;
            if row_end > file_len {
                let msg = format!(
                    "row {} needs bytes up to {row_end}; the file is {file_len} bytes (truncated after open?)",
                    order[k].0
                );
                return Err(io_err(off, io::Error::new(io::ErrorKind::UnexpectedEof, msg)));
            }
            let (a0, a1) = (align_down(off), align_up(row_end));
            match spans.last_mut() {
                Some(sp) if a0 <= sp.end && a1.max(sp.end) - sp.start <= MAX_SPAN => {
                    sp.end = sp.end.max(a1);
                    sp.need_end = row_end;
                    sp.last = u + 1;
                }
                _ => spans.push(Span { start: a0, end: a1, need_end: row_end, first: u, last: u + 1 }),
            }
        }
        stats.unique_rows = runs.len();
        stats.rows_read = runs.len();
        stats.reads_submitted = spans.len();
        runs.push(order.len());

        let mut bounce = self.bounce.lock().unwrap_or_else(|p| p.into_inner());
        let mut g0 = 0;
        while g0 < spans.len() {
            // A group of spans that fits the bounce buffer.
            let mut total = 0u64;
            let mut g1 = g0;
            while g1 < spans.len()
                && (g1 == g0 || total + (spans[g1].end - spans[g1].start) <= self.bounce_bytes as u64)
            {
                total += spans[g1].end - spans[g1].start;
                g1 += 1;
            }
            let group = &spans[g0..g1];
            if bounce.as_ref().is_none_or(|b| (b.len() as u64) < total) {
                *bounce = None;
                let len = total.max(self.bounce_bytes as u64) as usize;
                // Anonymous mappings are page-aligned: every span starts 4096-aligned.
                let m = MmapOptions::new().len(len).map_anon().map_err(|e| io_err(group[0].start, e))?;
                *bounce = Some(m);
            }
            let buf: &mut [u8] = bounce.as_mut().map_or(&mut [], |b| &mut b[..]);
            let mut reqs: Vec<ReadReq<'_>> = Vec::with_capacity(group.len());
            let mut rest = buf;
            for sp in group {
                let (head, tail) = rest.split_at_mut((sp.end - sp.start) as usize);
                reqs.push(ReadReq::new(sp.start, head, (sp.need_end - sp.start) as usize));
                rest = tail;
            }
            self.backend.read_batch(&mut reqs).map_err(|e| io_err(e.offset, e.source))?;
            for r in &reqs {
                if r.filled < r.need {
                    let msg = format!("backend returned {} of {} bytes", r.filled, r.need);
                    return Err(io_err(r.offset + r.filled as u64, io::Error::new(io::ErrorKind::UnexpectedEof, msg)));
                }
                stats.bytes_read += r.filled as u64;
            }
            drop(reqs);
            let buf: &[u8] = bounce.as_ref().map_or(&[], |b| &b[..]);
            let mut base = 0usize;
            for sp in group {
                for u in sp.first..sp.last {
                    let slot = order[runs[u]].0;
                    let at = base + (self.rows_offset + slot as u64 * self.stride - sp.start) as usize;
                    let src = &buf[at..at + row_bytes];
                    for &(_, pos) in &order[runs[u]..runs[u + 1]] {
                        let p = pos as usize * row_bytes;
                        out[p..p + row_bytes].copy_from_slice(src);
                    }
                }
                base += (sp.end - sp.start) as usize;
            }
            g0 = g1;
        }
        Ok(())
    }
}
