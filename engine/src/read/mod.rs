//! Reading rows in three modes: from the memory map (`Mmap`), from a resident
//! huge-page copy (`Resident`), or straight from storage (`Direct`: `O_DIRECT`
//! reads through io_uring or a pread thread pool, bypassing the page cache), the
//! first step towards tables larger than DRAM. See docs/READ_PATH.md.

mod aligned;
pub mod backend;
mod dio;
pub mod faulty;
mod hot;
mod reopen;
mod ticket;
pub mod uring;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::{MmapMut, MmapOptions};

use crate::error::{GatherError, OpenError};
use crate::format::SectionKind;
use crate::gather::{gather, GatherOptions, MISS_SLOT};
use crate::table::{OpenOptions, Table};

pub use aligned::AlignedBuf;
pub use backend::{
    open_file, Backend, BatchError, BufferRegistration, PreadBackend, ReadReq, RegisteredBuf, StableBuf,
};
use dio::{align_down, align_up};
pub use dio::{statx_dio_align, AlignSource, DirectAlign, MIN_DIRECT_ALIGN};
pub use faulty::FaultyBackend;
use hot::HotPrefix;
pub(crate) use reopen::{reopen_same_file, ReopenError};
pub use ticket::Ticket;
use ticket::TicketPool;
pub use uring::{RingSetup, UringBackend, DEFAULT_SPIN_US, MAX_QUEUE_DEPTH};

/// The largest alignment of offsets, lengths and buffer addresses a direct
/// reader keeps to, and the one it uses where the file system does not say
/// (see [`DirectAlign`]): every device accepts it. A reader of an `O_DIRECT`
/// file uses the file's own alignment (`statx` `STATX_DIOALIGN`, at least
/// [`MIN_DIRECT_ALIGN`]); [`RowReader::direct_alignment`] reports it.
pub const DIRECT_ALIGN: u64 = 4096;
/// Largest single read after coalescing.
pub const MAX_SPAN: u64 = 1 << 20;
/// Slots of an io_uring reader's registered-buffer table (one bounce buffer each).
pub const REGISTERED_BUFFER_SLOTS: u32 = 64;
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
    /// ([`OpenOptions::resident_rows`]); the table's file is reopened that way
    /// if needed (through the table's handle: the same file, whatever its path
    /// names now).
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
    /// Hot prefix (`Direct` only; other modes ignore it): at open, the first
    /// `floor(hot_bytes / row_stride)` rows (the hottest, as the builder lays rows
    /// out by descending count) are read once into huge-page anonymous memory and
    /// served from there; only the other rows are read from storage. Default 0 (off).
    pub hot_bytes: u64,
    /// Background workers serving [`RowReader::prefetch`] tickets (started on the
    /// first prefetch; at least 1). Default 4.
    pub prefetch_workers: usize,
    /// io_uring only: a kernel thread polls the submission queue
    /// (`IORING_SETUP_SQPOLL`), sleeping after this many idle milliseconds;
    /// where the kernel refuses, the ring runs without it (one log line).
    /// Default `None` (off).
    pub sqpoll: Option<u32>,
    /// io_uring only: register the bounce buffers with the ring (fixed
    /// buffers, read with `IORING_OP_READ_FIXED`: their pages are pinned once,
    /// not on every read). Where the kernel refuses (before 5.13, or
    /// `RLIMIT_MEMLOCK`), buffers are read into unregistered. Default off.
    pub registered_buffers: bool,
    /// io_uring only (without SQPOLL): how long the ring's I/O thread polls for
    /// completions before it sleeps, while reads are in flight, in
    /// microseconds; 0 sleeps at once. Default [`DEFAULT_SPIN_US`].
    pub uring_spin_us: u32,
    /// Tests only: make io_uring setup fail as on a kernel without it.
    #[doc(hidden)]
    pub simulate_uring_setup_failure: bool,
    /// Tests only: use this `(offset, memory)` alignment instead of the
    /// file's (checked and raised as [`DirectAlign::from_values`] does; also
    /// for a caller's backend). With `O_DIRECT` on, a value below the
    /// device's makes reads fail with `EINVAL`.
    #[doc(hidden)]
    pub force_direct_align: Option<(u64, u64)>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            o_direct: true,
            bounce_bytes: 8 << 20,
            hot_bytes: 0,
            prefetch_workers: 4,
            sqpoll: None,
            registered_buffers: false,
            uring_spin_us: DEFAULT_SPIN_US,
            simulate_uring_setup_failure: false,
            force_direct_align: None,
        }
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
    /// Batch positions (misses excluded, duplicates counted) served from DRAM:
    /// the hot prefix for `Direct`, every one for `Resident`, none for `Mmap`.
    pub hot_hits: usize,
    /// Batch positions (misses excluded, duplicates counted) served from
    /// storage: `Direct` rows beyond the hot prefix, every one for `Mmap`.
    pub cold_rows: usize,
    /// Bytes read into the bounce buffer and copied out of it (`Direct`); 0
    /// when the cold rows were read straight into the caller's buffer (see
    /// [`RowReader::read_rows`]).
    pub bounce_bytes: u64,
}

impl ReadStats {
    /// `hot_hits / (hot_hits + cold_rows)`; 0 when the batch held only misses.
    pub fn hit_ratio(&self) -> f64 {
        let n = self.hot_hits + self.cold_rows;
        if n == 0 {
            0.0
        } else {
            self.hot_hits as f64 / n as f64
        }
    }

    /// Adds another call's counts to these (totals over many batches).
    pub fn add(&mut self, o: &ReadStats) {
        self.rows_requested += o.rows_requested;
        self.misses += o.misses;
        self.unique_rows += o.unique_rows;
        self.rows_read += o.rows_read;
        self.bytes_read += o.bytes_read;
        self.reads_submitted += o.reads_submitted;
        self.hot_hits += o.hot_hits;
        self.cold_rows += o.cold_rows;
        self.bounce_bytes += o.bounce_bytes;
    }
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

/// How a [`RowReader`] was resolved at open: what [`RowReader::mode_info`]
/// reports (and `scone info --mode` prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeInfo {
    /// "mmap", "resident" or "direct".
    pub mode: &'static str,
    /// The direct backend's name ("io_uring", "pread", or a caller's backend).
    pub backend: Option<&'static str>,
    /// The queue depth asked for (direct readers opened with a [`ReadMode`]).
    pub queue_depth: Option<u32>,
    /// Reader threads of a pread pool.
    pub pread_threads: Option<usize>,
    /// Why `BackendKind::Auto` fell back to the pread pool (io_uring setup's error).
    pub fallback: Option<String>,
    /// Whether the direct reader's file is open with `O_DIRECT` (false: buffered).
    pub o_direct: bool,
    /// Rows in the hot prefix, and the bytes of memory it holds.
    pub hot_rows: u64,
    pub hot_bytes: usize,
    /// io_uring: whether a kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// io_uring: how the ring was set up, e.g. `defer_taskrun, poll 100 us`.
    pub ring: Option<String>,
    /// The direct reader's alignment (direct mode only).
    pub align: Option<DirectAlign>,
}

impl std::fmt::Display for ModeInfo {
    /// `direct (io_uring, queue depth 128, defer_taskrun, poll 100 us, O_DIRECT, align 512/512 (statx), hot prefix 0 rows)`,
    /// `direct (pread pool fallback: <reason>, 32 threads, ...)`, `mmap (page cache)`,
    /// `resident (rows in huge-page memory)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            "mmap" => return write!(f, "mmap (page cache)"),
            "resident" => return write!(f, "resident (rows in huge-page memory)"),
            _ => {}
        }
        write!(f, "{} (", self.mode)?;
        match (self.backend, &self.fallback) {
            (Some("pread"), Some(reason)) => write!(f, "pread pool fallback: {reason}")?,
            (Some("pread"), None) => write!(f, "pread pool")?,
            (Some(b), _) => write!(f, "{b}")?,
            (None, _) => write!(f, "no backend")?,
        }
        if self.sqpoll {
            write!(f, " with SQPOLL")?;
        }
        if let Some(n) = self.pread_threads {
            write!(f, ", {n} threads")?;
        } else if let Some(qd) = self.queue_depth {
            write!(f, ", queue depth {qd}")?;
        }
        if let Some(r) = &self.ring {
            write!(f, ", {r}")?;
        }
        let io = if self.o_direct { "O_DIRECT" } else { "buffered" };
        write!(f, ", {io}")?;
        if let Some(a) = &self.align {
            write!(f, ", align {}/{} ({})", a.offset, a.mem, a.source.as_str())?;
        }
        write!(f, ", hot prefix {} rows", self.hot_rows)?;
        if self.hot_rows > 0 {
            write!(f, " in {} bytes", self.hot_bytes)?;
        }
        write!(f, ")")
    }
}

/// The direct mode's state; shared (`Arc`) with the prefetch workers, so it
/// holds what it needs of the table by value.
struct Direct {
    backend: Box<dyn Backend>,
    o_direct: bool,
    /// What reads keep to: offsets and lengths, buffer addresses.
    align: DirectAlign,
    path: PathBuf,
    rows: u64,
    row_bytes: usize,
    rows_offset: u64,
    stride: u64,
    /// Idle bounce buffers: a call takes one (or maps a new one) and puts it back,
    /// so concurrent calls (prefetch workers) do not wait on each other's copies.
    /// Each owns its registration with `backend` (if any), which ends before
    /// the buffer is unmapped, whichever of the two is dropped first.
    bounces: Mutex<Vec<RegisteredBuf<MmapMut>>>,
    bounce_bytes: usize,
    hot: Option<HotPrefix>,
    /// Set when `BackendKind::Auto` fell back to pread: io_uring setup's error.
    fallback: Option<String>,
    /// The queue depth opened with (None: a caller's backend).
    queue_depth: Option<u32>,
}

/// Reads rows of a table in one of the [`ReadMode`]s. `Sync`: calls from several
/// threads are allowed (a direct reader's backend serializes their reads when
/// it has one ring).
pub struct RowReader<'t> {
    table: &'t Table,
    mode: ReadMode,
    /// The table reopened with resident rows (Resident mode, when `table` is not).
    resident: Option<Table>,
    direct: Option<Arc<Direct>>,
    prefetch_workers: usize,
    pool: OnceLock<TicketPool>,
}

impl<'t> RowReader<'t> {
    pub fn open(table: &'t Table, mode: ReadMode) -> Result<RowReader<'t>, ReadError> {
        Self::open_with(table, mode, ReaderOptions::default())
    }

    pub fn open_with(table: &'t Table, mode: ReadMode, opts: ReaderOptions) -> Result<RowReader<'t>, ReadError> {
        let mut r = RowReader {
            table,
            mode,
            resident: None,
            direct: None,
            prefetch_workers: opts.prefetch_workers.max(1),
            pool: OnceLock::new(),
        };
        match mode {
            ReadMode::Mmap => {}
            ReadMode::Resident => {
                if !table.rows_are_resident() {
                    let o = OpenOptions { resident_rows: true, ..OpenOptions::default() };
                    r.resident = Some(table.reopen_with(o)?);
                }
            }
            ReadMode::Direct { backend, queue_depth } => {
                let path = table.path();
                let open_err = |source| ReadError::Open { path: path.to_path_buf(), source };
                // The table's own file, never `path` again (snapshot consistency).
                let (file, o_direct) = table.reopen_file(opts.o_direct)?;
                let align = DirectAlign::resolve(&file, o_direct, opts.force_direct_align);
                let qd = queue_depth.max(1);
                let uring = |file| {
                    if opts.simulate_uring_setup_failure {
                        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
                    }
                    let mut u = UringBackend::with_sqpoll(file, qd, opts.sqpoll)?;
                    u.set_spin_us(opts.uring_spin_us);
                    if opts.registered_buffers {
                        // Optional: without the table, buffers are read into unregistered.
                        let _ = u.enable_registered_buffers(REGISTERED_BUFFER_SLOTS);
                    }
                    Ok(u)
                };
                let pread = |file| PreadBackend::new(file, (qd as usize).min(MAX_PREAD_THREADS));
                let mut fallback = None;
                let b: Box<dyn Backend> = match backend {
                    BackendKind::Pread => Box::new(pread(file).map_err(open_err)?),
                    BackendKind::Uring => Box::new(uring(file).map_err(open_err)?),
                    BackendKind::Auto => {
                        let spare = file.try_clone().map_err(open_err)?;
                        match uring(file) {
                            Ok(u) => Box::new(u),
                            Err(e) => {
                                fallback = Some(format!("io_uring unavailable ({e})"));
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
                let mut d = Direct::new(table, b, o_direct, align, opts);
                d.fallback = fallback;
                d.queue_depth = Some(qd);
                d.hot = HotPrefix::load(&d, opts.hot_bytes)?;
                r.direct = Some(Arc::new(d));
            }
        }
        Ok(r)
    }

    /// A direct reader over a backend of the caller's (fault injection, other
    /// storage). Offsets are the table file's. [`mode`](Self::mode) reports
    /// `Direct { backend: Auto, queue_depth: 0 }` for such a reader.
    /// `opts.hot_bytes` is ignored (see [`try_with_backend`](Self::try_with_backend)).
    pub fn with_backend(table: &'t Table, backend: Box<dyn Backend>, opts: ReaderOptions) -> RowReader<'t> {
        let opts = ReaderOptions { hot_bytes: 0, ..opts };
        match Self::try_with_backend(table, backend, opts) {
            Ok(r) => r,
            Err(_) => unreachable!("without a hot prefix nothing is read at open"),
        }
    }

    /// [`with_backend`](Self::with_backend), loading a hot prefix of
    /// `opts.hot_bytes` through `backend` (which may fail).
    pub fn try_with_backend(
        table: &'t Table,
        backend: Box<dyn Backend>,
        opts: ReaderOptions,
    ) -> Result<RowReader<'t>, ReadError> {
        let mode = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 0 };
        let align = DirectAlign::for_backend(opts.force_direct_align);
        let mut d = Direct::new(table, backend, false, align, opts);
        d.hot = HotPrefix::load(&d, opts.hot_bytes)?;
        Ok(RowReader {
            table,
            mode,
            resident: None,
            direct: Some(Arc::new(d)),
            prefetch_workers: opts.prefetch_workers.max(1),
            pool: OnceLock::new(),
        })
    }

    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    /// How this reader was resolved at open: mode, backend (and why `Auto` fell
    /// back to pread), queue depth, `O_DIRECT` or buffered, hot prefix. Its
    /// `Display` is the one-line description `scone info --mode` prints.
    pub fn mode_info(&self) -> ModeInfo {
        let mut m = ModeInfo {
            mode: match self.mode {
                ReadMode::Mmap => "mmap",
                ReadMode::Resident => "resident",
                ReadMode::Direct { .. } => "direct",
            },
            backend: self.backend_name(),
            queue_depth: None,
            pread_threads: None,
            fallback: None,
            o_direct: self.is_o_direct(),
            hot_rows: self.hot_rows(),
            hot_bytes: self.hot_bytes(),
            sqpoll: self.direct.as_ref().and_then(|d| d.backend.sqpoll()).unwrap_or(false),
            ring: self.direct.as_ref().and_then(|d| d.backend.ring_setup()),
            align: self.direct_alignment(),
        };
        if let Some(d) = &self.direct {
            if let Some(qd) = d.queue_depth {
                m.queue_depth = Some(qd);
                if d.backend.name() == "pread" {
                    m.pread_threads = Some((qd as usize).min(MAX_PREAD_THREADS));
                }
            }
            m.fallback = d.fallback.clone();
        }
        m
    }

    /// [`mode_info`](Self::mode_info) as one line, e.g.
    /// `direct (io_uring, queue depth 128, O_DIRECT, hot prefix 0 rows)`.
    pub fn describe(&self) -> String {
        self.mode_info().to_string()
    }

    /// Bounce buffers registered with a direct reader's io_uring now
    /// (`ReaderOptions::registered_buffers`); 0 otherwise.
    pub fn registered_buffers(&self) -> usize {
        self.direct.as_ref().map_or(0, |d| d.backend.registered_buffers())
    }

    /// The backend's name ("io_uring", "pread", ...), for direct readers.
    pub fn backend_name(&self) -> Option<&'static str> {
        self.direct.as_ref().map(|d| d.backend.name())
    }

    /// A direct reader's alignment: reads' file offsets and lengths are
    /// multiples of `offset`, their buffers start at multiples of `mem`. From
    /// the file system (`statx` `STATX_DIOALIGN`) for an `O_DIRECT` file,
    /// [`DIRECT_ALIGN`] otherwise; `None` for other modes.
    pub fn direct_alignment(&self) -> Option<DirectAlign> {
        self.direct.as_ref().map(|d| d.align)
    }

    /// Whether a direct reader's file is open with `O_DIRECT`.
    pub fn is_o_direct(&self) -> bool {
        self.direct.as_ref().is_some_and(|d| d.o_direct)
    }

    /// Rows served from the hot prefix (slots `0..hot_rows()`); 0 without one.
    pub fn hot_rows(&self) -> u64 {
        self.direct.as_ref().and_then(|d| d.hot.as_ref()).map_or(0, |h| h.rows)
    }

    /// Bytes of memory the hot prefix holds.
    pub fn hot_bytes(&self) -> usize {
        self.direct.as_ref().and_then(|d| d.hot.as_ref()).map_or(0, |h| h.map.len())
    }

    /// Bytes of one output row: `dim * dtype.size()` in the stored dtype.
    pub fn row_bytes(&self) -> usize {
        self.table.dim() * self.table.dtype().size()
    }

    /// Writes row `slots[i]` (stored dtype) to `out[i * row_bytes ..]`.
    /// [`MISS_SLOT`] rows are zero; any other slot beyond the table is an error,
    /// and so is every failed read (never a zero row in its place). On error
    /// nothing is promised of `out`.
    ///
    /// A direct reader reads cold rows straight into `out`, with no bounce copy
    /// (`ReadStats::bounce_bytes == 0`), when `out` starts at a multiple of the
    /// reader's memory alignment (an [`AlignedBuf`], or pinned host memory, is
    /// page-aligned) and the table's rows are aligned too: `row_bytes ==
    /// row_stride`, a multiple of both alignments ([`direct_alignment`](Self::direct_alignment):
    /// typically 512, so 512 B, 1 KiB, 2 KiB, 3 KiB ... rows; 4096 where the file
    /// system does not say). Rows adjacent in the file and in `out` go in one
    /// read; a duplicate is read once and copied to its other positions.
    /// Otherwise rows go through the aligned bounce buffer.
    pub fn read_rows(&self, slots: &[u32], out: &mut [u8]) -> Result<ReadStats, ReadError> {
        if let Some(d) = &self.direct {
            return d.read_rows(slots, out);
        }
        let row_bytes = self.row_bytes();
        let mut stats = validate(self.table.rows(), row_bytes, slots, out)?;
        let table = self.resident.as_ref().unwrap_or(self.table);
        let opts = GatherOptions { dtype: table.dtype(), max_threads: 0 };
        gather(table, slots, opts, out).map_err(|e| match e {
            GatherError::SlotOutOfRange { position, slot, rows } => ReadError::SlotOutOfRange { position, slot, rows },
            GatherError::BufferSize { got, need, rows, row_bytes } => {
                ReadError::BufferSize { got, need, rows, row_bytes }
            }
            e @ (GatherError::TokensLength { .. } | GatherError::TokenOutOfRange { .. }) => {
                unreachable!("gather() takes no tokens: {e}")
            }
        })?;
        let mut uniq: Vec<u32> = slots.iter().copied().filter(|&s| s != MISS_SLOT).collect();
        let present = uniq.len();
        uniq.sort_unstable();
        uniq.dedup();
        stats.unique_rows = uniq.len();
        if self.mode == ReadMode::Mmap {
            stats.rows_read = uniq.len();
            stats.bytes_read = (uniq.len() * row_bytes) as u64;
            stats.cold_rows = present;
        } else {
            stats.hot_hits = present;
        }
        Ok(stats)
    }

    /// Starts reading `slots` and returns at once; [`Ticket::wait`] hands back the
    /// rows (as [`read_rows`](Self::read_rows) would write them) and the stats.
    /// A direct reader reads on a background worker (`prefetch_workers` of them,
    /// so that many tickets read at once; more wait in line); `Mmap` and
    /// `Resident` readers copy the rows before returning (they borrow the table
    /// and are memory-speed). Errors come back through `wait`; a ticket dropped
    /// unwaited is safe (its rows are read and discarded).
    pub fn prefetch(&self, slots: Vec<u32>) -> Ticket {
        match &self.direct {
            Some(d) => {
                let pool = self.pool.get_or_init(|| TicketPool::new(self.prefetch_workers));
                pool.submit(Arc::clone(d), slots)
            }
            None => {
                let mut out = vec![0u8; slots.len() * self.row_bytes()];
                Ticket::ready(self.read_rows(&slots, &mut out).map(|st| (out, st)))
            }
        }
    }
}

/// Checks the buffer size and slot range; returns the stats so far.
fn validate(rows: u64, row_bytes: usize, slots: &[u32], out: &[u8]) -> Result<ReadStats, ReadError> {
    let need = slots.len() * row_bytes;
    if out.len() != need {
        return Err(ReadError::BufferSize { got: out.len(), need, rows: slots.len(), row_bytes });
    }
    if let Some((position, &slot)) = slots.iter().enumerate().find(|(_, &s)| s != MISS_SLOT && s as u64 >= rows) {
        return Err(ReadError::SlotOutOfRange { position, slot, rows });
    }
    let misses = slots.iter().filter(|&&s| s == MISS_SLOT).count();
    Ok(ReadStats { rows_requested: slots.len(), misses, ..ReadStats::default() })
}

/// One coalesced read: the aligned file range `start..end`, of which
/// `start..need_end` must be read (the tail may lie past the end of the file),
/// holding the cold unique rows `cold[first..last]`.
struct Span {
    start: u64,
    end: u64,
    need_end: u64,
    first: usize,
    last: usize,
}

impl Direct {
    fn new(
        table: &Table,
        backend: Box<dyn Backend>,
        o_direct: bool,
        align: DirectAlign,
        opts: ReaderOptions,
    ) -> Direct {
        // check_layout guarantees a rows section; 0 would only misplace reads.
        let rows_offset = table.header().section(SectionKind::Rows).map_or(0, |s| s.offset);
        Direct {
            backend,
            o_direct,
            align,
            path: table.path().to_path_buf(),
            rows: table.rows(),
            row_bytes: table.dim() * table.dtype().size(),
            rows_offset,
            stride: table.header().row_stride,
            bounces: Mutex::new(Vec::new()),
            bounce_bytes: opts.bounce_bytes.max(MAX_SPAN as usize),
            hot: None,
            fallback: None,
            queue_depth: None,
        }
    }

    fn io_err(&self, offset: u64, source: io::Error) -> ReadError {
        ReadError::Io { path: self.path.clone(), offset, source }
    }

    /// File offset of row `slot`.
    fn offset(&self, slot: u32) -> u64 {
        self.rows_offset + slot as u64 * self.stride
    }

    fn read_rows(&self, slots: &[u32], out: &mut [u8]) -> Result<ReadStats, ReadError> {
        let row_bytes = self.row_bytes;
        let mut stats = validate(self.rows, row_bytes, slots, out)?;
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
        // Runs of equal slots as `order[a..b]`: hot ones are copied from the
        // prefix while the cold ones are being read (or before, see below).
        let hot_rows = self.hot.as_ref().map_or(0, |h| h.rows);
        let mut hot: Vec<(usize, usize)> = Vec::new();
        let mut cold: Vec<(usize, usize)> = Vec::new();
        let mut a = 0;
        while a < order.len() {
            let s = order[a].0;
            let mut b = a + 1;
            while b < order.len() && order[b].0 == s {
                b += 1;
            }
            stats.unique_rows += 1;
            match &self.hot {
                Some(_) if (s as u64) < hot_rows => {
                    hot.push((a, b));
                    stats.hot_hits += b - a;
                }
                _ => {
                    cold.push((a, b));
                    stats.cold_rows += b - a;
                }
            }
            a = b;
        }
        let file_len = self.backend.len();
        let mut spans: Vec<Span> = Vec::new();
        for (u, &(k, _)) in cold.iter().enumerate() {
            let off = self.offset(order[k].0);
            let row_end = off + row_bytes as u64;
            if row_end > file_len {
                let msg = format!(
                    "row {} needs bytes up to {row_end}; the file is {file_len} bytes (truncated after open?)",
                    order[k].0
                );
                return Err(self.io_err(off, io::Error::new(io::ErrorKind::UnexpectedEof, msg)));
            }
            let a = self.align.offset;
            let (a0, a1) = (align_down(off, a), align_up(row_end, a));
            match spans.last_mut() {
                Some(sp) if a0 <= sp.end && a1.max(sp.end) - sp.start <= MAX_SPAN => {
                    sp.end = sp.end.max(a1);
                    sp.need_end = row_end;
                    sp.last = u + 1;
                }
                _ => spans.push(Span { start: a0, end: a1, need_end: row_end, first: u, last: u + 1 }),
            }
        }
        stats.rows_read = cold.len();
        stats.reads_submitted = spans.len();
        let copy_hot = |out: &mut [u8]| {
            let Some(h) = &self.hot else { return };
            for &(a, b) in &hot {
                let at = (self.offset(order[a].0) - h.base) as usize;
                let src = &h.map[at..at + row_bytes];
                for &(_, pos) in &order[a..b] {
                    let p = pos as usize * row_bytes;
                    out[p..p + row_bytes].copy_from_slice(src);
                }
            }
        };
        if spans.is_empty() || self.reads_into(out) {
            // Cold rows read into `out` itself borrow it during the reads, so
            // the hot copies go first here.
            copy_hot(out);
            if !spans.is_empty() {
                self.read_into_out(&order, &cold, out, &mut stats)?;
            }
            return Ok(stats);
        }

        let mut bounce = self.bounces.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let res = self.read_spans(&spans, &order, &cold, &mut bounce, out, &mut stats, copy_hot);
        if let Some(b) = bounce {
            self.bounces.lock().unwrap_or_else(|p| p.into_inner()).push(b);
        }
        res.map(|()| stats)
    }

    /// Whether cold rows can be read straight into `out`: every row's file
    /// range is offset-aligned and as long as its place in `out`, which starts
    /// memory-aligned (`out` does, and rows are a multiple of both alignments).
    fn reads_into(&self, out: &[u8]) -> bool {
        let DirectAlign { offset, mem, .. } = self.align;
        let rb = self.row_bytes as u64;
        rb > 0
            && rb == self.stride
            && rb.is_multiple_of(offset)
            && rb.is_multiple_of(mem)
            && self.rows_offset.is_multiple_of(offset)
            && (out.as_ptr() as u64).is_multiple_of(mem)
    }

    /// Bytes a span takes in the bounce buffer: its length (a multiple of the
    /// offset alignment) rounded up to the memory alignment, so the next span
    /// starts memory-aligned too (the buffer itself is page-aligned).
    fn bounce_len(&self, sp: &Span) -> u64 {
        align_up(sp.end - sp.start, self.align.mem)
    }

    /// Reads each cold unique row into its first output position (runs adjacent
    /// both in the file and in `out` as one read, up to [`MAX_SPAN`]), then
    /// copies it to its other positions. Needs [`reads_into`](Self::reads_into).
    fn read_into_out(
        &self,
        order: &[(u32, u32)],
        cold: &[(usize, usize)],
        out: &mut [u8],
        stats: &mut ReadStats,
    ) -> Result<(), ReadError> {
        let rb = self.row_bytes;
        // (first output position, rows, file offset): one read each.
        let mut runs: Vec<(usize, usize, u64)> = Vec::new();
        for &(a, _) in cold {
            let (slot, pos) = (order[a].0, order[a].1 as usize);
            match runs.last_mut() {
                Some((p, n, off))
                    if *p + *n == pos
                        && *off + (*n * rb) as u64 == self.offset(slot)
                        && ((*n + 1) * rb) as u64 <= MAX_SPAN =>
                {
                    *n += 1
                }
                _ => runs.push((pos, 1, self.offset(slot))),
            }
        }
        stats.reads_submitted = runs.len();
        // Disjoint slices of `out`, taken in output order.
        runs.sort_unstable_by_key(|r| r.0);
        let mut reqs: Vec<ReadReq<'_>> = Vec::with_capacity(runs.len());
        let mut rest: &mut [u8] = &mut out[..];
        let mut at = 0usize;
        for &(pos, n, off) in &runs {
            let (_, tail) = rest.split_at_mut(pos * rb - at);
            let (head, tail) = tail.split_at_mut(n * rb);
            reqs.push(ReadReq::new(off, head, n * rb));
            rest = tail;
            at = (pos + n) * rb;
        }
        stats.bytes_read += self.submit(&mut reqs)?;
        drop(reqs);
        for &(a, b) in cold {
            let src = order[a].1 as usize * rb;
            for &(_, pos) in &order[a + 1..b] {
                out.copy_within(src..src + rb, pos as usize * rb);
            }
        }
        Ok(())
    }

    /// Runs one batch of reads on the backend; a read that came back short is an
    /// error at the first byte missing. Returns the bytes read.
    fn submit(&self, reqs: &mut [ReadReq<'_>]) -> Result<u64, ReadError> {
        self.submit_while(reqs, &mut || {})
    }

    /// [`submit`](Self::submit), running `work` while the reads are in flight
    /// (`Backend::read_batch_while`).
    fn submit_while(&self, reqs: &mut [ReadReq<'_>], work: &mut dyn FnMut()) -> Result<u64, ReadError> {
        self.backend.read_batch_while(reqs, work).map_err(|e| self.io_err(e.offset, e.source))?;
        let mut bytes = 0;
        for r in reqs.iter() {
            if r.filled < r.need {
                let msg = format!("backend returned {} of {} bytes", r.filled, r.need);
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, msg);
                return Err(self.io_err(r.offset + r.filled as u64, e));
            }
            bytes += r.filled as u64;
        }
        Ok(bytes)
    }

    /// Reads `spans` through the bounce buffer, group by group, and copies their
    /// rows out; `while_reading` runs on `out` while the first group's reads are
    /// in flight (the hot rows' copies: they and the reads touch disjoint memory).
    #[allow(clippy::too_many_arguments)]
    fn read_spans(
        &self,
        spans: &[Span],
        order: &[(u32, u32)],
        cold: &[(usize, usize)],
        bounce: &mut Option<RegisteredBuf<MmapMut>>,
        out: &mut [u8],
        stats: &mut ReadStats,
        while_reading: impl FnOnce(&mut [u8]),
    ) -> Result<(), ReadError> {
        let mut while_reading = Some(while_reading);
        let row_bytes = self.row_bytes;
        let mut g0 = 0;
        while g0 < spans.len() {
            // A group of spans that fits the bounce buffer.
            let mut total = 0u64;
            let mut g1 = g0;
            while g1 < spans.len() && (g1 == g0 || total + self.bounce_len(&spans[g1]) <= self.bounce_bytes as u64) {
                total += self.bounce_len(&spans[g1]);
                g1 += 1;
            }
            let group = &spans[g0..g1];
            if bounce.as_ref().is_none_or(|b| (b.len() as u64) < total) {
                // Dropping it unregisters it, then unmaps it (RegisteredBuf).
                drop(bounce.take());
                let len = total.max(self.bounce_bytes as u64) as usize;
                // Anonymous mappings are page-aligned (at least DIRECT_ALIGN): with
                // `bounce_len` every span starts memory-aligned.
                let m = MmapOptions::new().len(len).map_anon().map_err(|e| self.io_err(group[0].start, e))?;
                // Kept registered while pooled.
                *bounce = Some(RegisteredBuf::new(&*self.backend, m));
            }
            let buf: &mut [u8] = bounce.as_mut().map_or(&mut [], |b| &mut b[..]);
            let mut reqs: Vec<ReadReq<'_>> = Vec::with_capacity(group.len());
            let mut rest = buf;
            for sp in group {
                let (slot, tail) = rest.split_at_mut(self.bounce_len(sp) as usize);
                let head = &mut slot[..(sp.end - sp.start) as usize];
                reqs.push(ReadReq::new(sp.start, head, (sp.need_end - sp.start) as usize));
                rest = tail;
            }
            let mut work = || {
                if let Some(f) = while_reading.take() {
                    f(&mut *out)
                }
            };
            let bytes = self.submit_while(&mut reqs, &mut work)?;
            stats.bytes_read += bytes;
            stats.bounce_bytes += bytes;
            drop(reqs);
            let buf: &[u8] = bounce.as_ref().map_or(&[], |b| &b[..]);
            let mut base = 0usize;
            for sp in group {
                for &(a, b) in &cold[sp.first..sp.last] {
                    let at = base + (self.offset(order[a].0) - sp.start) as usize;
                    let src = &buf[at..at + row_bytes];
                    for &(_, pos) in &order[a..b] {
                        let p = pos as usize * row_bytes;
                        out[p..p + row_bytes].copy_from_slice(src);
                    }
                }
                base += self.bounce_len(sp) as usize;
            }
            g0 = g1;
        }
        Ok(())
    }
}
