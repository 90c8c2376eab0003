//! Direct reads keep to the file's own direct-I/O alignment (statx
//! `STATX_DIOALIGN`, typically 512) instead of a fixed 4096: rows whose size
//! is a multiple of it are read straight into an aligned caller buffer with no
//! read amplification, other rows go through the bounce buffer in
//! alignment-sized blocks, and every read the reader issues is aligned.
//! Alignments are forced (`ReaderOptions::force_direct_align`) so that this
//! runs the same on any file system; the real statx value is used where the
//! test directory takes `O_DIRECT`.

mod common;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use engine::format::SectionKind;
use engine::read::{
    open_file, AlignSource, AlignedBuf, Backend, BackendKind, BatchError, DirectAlign, PreadBackend, ReadMode, ReadReq,
    ReaderOptions, RowReader, UringBackend, DIRECT_ALIGN,
};
use engine::{Dtype, ReadStats, Table, MISS_SLOT};
use rand::{Rng, SeedableRng};

/// Row sizes of 512, 1024, 2048 and 3072 bytes (row == stride), and 200 bytes
/// (stride 256). 300 rows: every rows section is under `MAX_SPAN`.
const TABLES: [(usize, Dtype); 5] =
    [(128, Dtype::F32), (512, Dtype::F16), (1024, Dtype::F16), (1536, Dtype::BF16), (100, Dtype::F16)];
const ROWS: usize = 300;

/// A directory on the crate's target file system (not tmpfs), so `O_DIRECT` is likely honoured.
fn test_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("dio-align").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn tables(dir: &Path) -> Vec<(PathBuf, Table)> {
    TABLES
        .iter()
        .enumerate()
        .map(|(i, &(dim, dtype))| {
            let path = make_table(dir, &format!("t{dim}.scone"), 500 + i as u64, ROWS, dim, dtype);
            let t = Table::open(&path).unwrap();
            assert!((t.header().row_stride as usize * ROWS) < engine::read::MAX_SPAN as usize);
            (path, t)
        })
        .collect()
}

/// Batches with misses, duplicates, runs, the first and last rows.
fn batches(seed: u64, rows: u32) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<Vec<u32>> = vec![vec![MISS_SLOT], vec![0], vec![rows - 1], (0..rows).collect()];
    v.push((0..rows).rev().step_by(3).collect());
    v.push((5..60).chain(5..60).chain([MISS_SLOT, 7, 7, rows - 1]).collect());
    for b in 0..8 {
        let len = rng.gen_range(1..300);
        let hi = if b % 2 == 0 { rows.min(rng.gen_range(1..20)) } else { rows };
        v.push((0..len).map(|_| if rng.gen_bool(0.1) { MISS_SLOT } else { rng.gen_range(0..hi) }).collect());
    }
    v
}

/// A backend that refuses, as `O_DIRECT` does (`EINVAL`), any read whose
/// offset, length or buffer address breaks `align`; it counts the reads.
struct Checker {
    inner: Box<dyn Backend>,
    offset: u64,
    mem: u64,
    reads: AtomicU64,
}

impl Checker {
    fn new(inner: Box<dyn Backend>, (offset, mem): (u64, u64)) -> Checker {
        Checker { inner, offset, mem, reads: AtomicU64::new(0) }
    }

    fn check(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let addr = buf.as_ptr() as u64;
        if !offset.is_multiple_of(self.offset)
            || !(buf.len() as u64).is_multiple_of(self.offset)
            || !addr.is_multiple_of(self.mem)
        {
            let msg = format!(
                "misaligned read: offset {offset}, length {}, address {addr:#x} (alignment {}/{})",
                buf.len(),
                self.offset,
                self.mem
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        Ok(())
    }
}

impl Backend for Checker {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.check(buf, offset)?;
        self.inner.read_at(buf, offset)
    }

    fn read_batch(&self, reqs: &mut [ReadReq<'_>]) -> Result<(), BatchError> {
        for r in reqs.iter() {
            self.check(r.buf, r.offset).map_err(|source| BatchError { offset: r.offset, source })?;
        }
        self.inner.read_batch(reqs)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn name(&self) -> &'static str {
        "checker"
    }
}

/// Bytes the bounce path reads for `slots`: the union of each cold row's
/// `offset`-aligned block range, cut at the end of the file.
fn bounce_bytes_expected(t: &Table, file_len: u64, slots: &[u32], hot_rows: u64, offset: u64) -> u64 {
    let base = t.header().section(SectionKind::Rows).unwrap().offset;
    let (stride, rb) = (t.header().row_stride, (t.dim() * t.dtype().size()) as u64);
    let mut blocks = BTreeSet::new();
    for &s in slots.iter().filter(|&&s| s != MISS_SLOT && s as u64 >= hot_rows) {
        let off = base + s as u64 * stride;
        blocks.extend(off / offset..(off + rb).div_ceil(offset));
    }
    blocks.iter().map(|&b| (b * offset + offset).min(file_len) - b * offset).sum()
}

/// Reads every batch with `r` into a page-aligned buffer and into views of
/// one at `+64` (never memory-aligned) and `+512`, checking the output against
/// `gather` and the bytes against the alignment: rows that are a multiple of
/// it go straight into an aligned buffer and read exactly their bytes; others
/// (and every unaligned buffer) go through the bounce buffer, reading whole
/// aligned blocks. Returns the stats summed over the aligned reads.
fn check_reader(what: &str, t: &Table, file_len: u64, r: &RowReader<'_>) -> ReadStats {
    let a = r.direct_alignment().expect("a direct reader");
    let rb = r.row_bytes() as u64;
    let aligned_rows = rb == t.header().row_stride && rb.is_multiple_of(a.offset) && rb.is_multiple_of(a.mem);
    let hot = r.hot_rows();
    let mut total = ReadStats::default();
    for slots in batches(rb, t.rows() as u32) {
        let want = reference(t, &slots);
        let expect_bounce = bounce_bytes_expected(t, file_len, &slots, hot, a.offset);
        let mut big = AlignedBuf::new(want.len() + 1024).unwrap();
        for shift in [0usize, 64, 512] {
            let out = &mut big[shift..shift + want.len()];
            out.fill(0xa5);
            let st = r.read_rows(&slots, out).unwrap_or_else(|e| panic!("{what} +{shift}: {e}"));
            assert!(out[..] == want[..], "{what} +{shift}: output differs for a batch of {}", slots.len());
            let rows_bytes = st.rows_read as u64 * rb;
            let straight = aligned_rows && (shift as u64).is_multiple_of(a.mem);
            if st.rows_read == 0 {
                assert_eq!((st.bytes_read, st.bounce_bytes, st.reads_submitted), (0, 0, 0), "{what}: {st:?}");
            } else if straight {
                assert_eq!(st.bounce_bytes, 0, "{what} +{shift}: straight into the buffer: {st:?}");
                assert_eq!(st.bytes_read, rows_bytes, "{what} +{shift}: no read amplification: {st:?}");
            } else {
                assert_eq!(st.bounce_bytes, st.bytes_read, "{what} +{shift}: {st:?}");
                assert_eq!(st.bytes_read, expect_bounce, "{what} +{shift}: aligned blocks: {st:?}");
                if aligned_rows {
                    assert_eq!(st.bytes_read, rows_bytes, "{what} +{shift}: aligned rows, bounced: {st:?}");
                }
            }
            if shift == 0 {
                total.add(&st);
            }
        }
    }
    total
}

/// Makes a backend over a buffered descriptor of the file.
type MakeBackend = fn(&Path) -> Box<dyn Backend>;

fn pread(path: &Path) -> Box<dyn Backend> {
    Box::new(PreadBackend::new(open_file(path, false).unwrap().0, 4).unwrap())
}

fn uring(path: &Path) -> Box<dyn Backend> {
    Box::new(UringBackend::new(open_file(path, false).unwrap().0, 16).unwrap())
}

/// Forced alignments over a buffered file: the reader's own backends (pread,
/// io_uring) with and without a hot prefix, and both wrapped in a checker
/// that fails any read breaking the alignment (hot prefix loads included).
#[test]
fn forced_alignments_read_exactly_and_stay_aligned() {
    let dir = test_dir();
    let all = tables(dir.path());
    let uring_ok = uring_available(&all[0].0);
    for (path, t) in &all {
        let file_len = std::fs::metadata(path).unwrap().len();
        let stride = t.header().row_stride;
        for force in [(512, 512), (512, 4096), (1024, 512), (4096, 4096)] {
            let mut kinds = vec![BackendKind::Pread];
            if uring_ok {
                kinds.push(BackendKind::Uring);
            }
            for backend in kinds {
                for (queue_depth, hot_bytes) in [(1, 0), (32, 0), (8, 37 * stride + 100)] {
                    let mode = ReadMode::Direct { backend, queue_depth };
                    let opts = ReaderOptions {
                        o_direct: false,
                        hot_bytes,
                        force_direct_align: Some(force),
                        ..ReaderOptions::default()
                    };
                    let r = RowReader::open_with(t, mode, opts).unwrap();
                    let a = r.direct_alignment().unwrap();
                    assert_eq!((a.offset, a.mem, a.source), (force.0, force.1, AlignSource::Forced));
                    let what = format!("{} B rows, {mode:?}, hot {hot_bytes}, align {force:?}", r.row_bytes());
                    check_reader(&what, t, file_len, &r);
                }
            }
            let inner: Vec<(&str, MakeBackend)> =
                if uring_ok { vec![("pread", pread), ("io_uring", uring)] } else { vec![("pread", pread)] };
            for (name, make) in inner {
                for hot_bytes in [0, 37 * stride + 100] {
                    let checker = Checker::new(make(path), force);
                    let opts = ReaderOptions { hot_bytes, force_direct_align: Some(force), ..ReaderOptions::default() };
                    let r = RowReader::try_with_backend(t, Box::new(checker), opts)
                        .unwrap_or_else(|e| panic!("hot prefix over a checked {name}: {e}"));
                    let what = format!("{} B rows, checked {name}, hot {hot_bytes}, align {force:?}", r.row_bytes());
                    let st = check_reader(&what, t, file_len, &r);
                    assert!(st.reads_submitted > 0, "{what}");
                }
            }
        }
    }
}

/// 512 against 4096: sparse 2 KiB rows read 2 KiB each instead of 4 KiB,
/// straight into the caller's buffer instead of through the bounce buffer.
#[test]
fn a_512_alignment_halves_the_bytes_of_sparse_2k_rows() {
    let dir = test_dir();
    let path = make_table(dir.path(), "h.scone", 9, ROWS, 1024, Dtype::F16);
    let t = Table::open(&path).unwrap();
    let slots: Vec<u32> = (0..ROWS as u32).step_by(4).collect();
    let want = reference(&t, &slots);
    let mode = ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 8 };
    let mut stats = Vec::new();
    for force in [(512, 512), (4096, 4096)] {
        let opts = ReaderOptions { o_direct: false, force_direct_align: Some(force), ..ReaderOptions::default() };
        let r = RowReader::open_with(&t, mode, opts).unwrap();
        let mut out = AlignedBuf::new(want.len()).unwrap();
        stats.push(r.read_rows(&slots, &mut out).unwrap());
        assert!(out[..] == want[..]);
    }
    let n = slots.len() as u64;
    assert_eq!((stats[0].bytes_read, stats[0].bounce_bytes), (n * 2048, 0), "{:?}", stats[0]);
    assert_eq!((stats[1].bytes_read, stats[1].bounce_bytes), (n * 4096, n * 4096), "{:?}", stats[1]);
}

/// The file system's own alignment, on a directory that takes `O_DIRECT`
/// (skipped with a note where it is refused): every direct backend returns
/// `gather`'s bytes, aligned rows straight and exact.
#[test]
fn the_statx_alignment_of_an_o_direct_file_reads_exactly() {
    let dir = test_dir();
    let all = tables(dir.path());
    let probe = RowReader::open(&all[0].1, ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 1 }).unwrap();
    if !probe.is_o_direct() {
        eprintln!("{}: O_DIRECT refused here; the statx case is skipped", dir.path().display());
        return;
    }
    let a = probe.direct_alignment().unwrap();
    let reported = engine::read::statx_dio_align(&open_file(&all[0].0, true).unwrap().0).unwrap();
    eprintln!("{}: statx reports {reported:?} (offset, memory); the reader uses {a:?}", dir.path().display());
    assert!(a.offset.is_power_of_two() && (512..=DIRECT_ALIGN).contains(&a.offset), "{a:?}");
    assert!(a.mem.is_power_of_two() && (512..=DIRECT_ALIGN).contains(&a.mem), "{a:?}");
    match reported {
        Some((o, m)) => assert_eq!(a, DirectAlign::from_values(o as u64, m as u64, AlignSource::Statx)),
        None => assert_eq!(a, DirectAlign::fallback(AlignSource::NotReported)),
    }
    assert!(probe.describe().contains(&format!(", align {}/{} (", a.offset, a.mem)), "{}", probe.describe());
    let uring_ok = uring_available(&all[0].0);
    for (path, t) in &all {
        let file_len = std::fs::metadata(path).unwrap().len();
        let mut kinds = vec![BackendKind::Pread, BackendKind::Auto];
        if uring_ok {
            kinds.push(BackendKind::Uring);
        }
        for backend in kinds {
            for (queue_depth, hot_bytes) in [(1, 0), (32, 0), (8, 37 * t.header().row_stride + 100)] {
                let mode = ReadMode::Direct { backend, queue_depth };
                let r = RowReader::open_with(t, mode, ReaderOptions { hot_bytes, ..ReaderOptions::default() }).unwrap();
                assert!(r.is_o_direct());
                assert_eq!(r.direct_alignment(), Some(a));
                let what = format!("{} B rows, {mode:?}, hot {hot_bytes}, statx {a:?}", r.row_bytes());
                check_reader(&what, t, file_len, &r);
            }
        }
    }
}

/// Where the alignment comes from, and how it is described.
#[test]
fn alignment_sources_and_description() {
    let dir = test_dir();
    let path = make_table(dir.path(), "d.scone", 3, 40, 256, Dtype::F16);
    let t = Table::open(&path).unwrap();
    let direct = ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 2 };
    let open = |opts: ReaderOptions| RowReader::open_with(&t, direct, opts).unwrap();
    // Buffered: the worst case.
    let r = open(ReaderOptions { o_direct: false, ..ReaderOptions::default() });
    assert_eq!(r.direct_alignment(), Some(DirectAlign::fallback(AlignSource::NotDirect)));
    assert!(
        r.describe().contains(", buffered, align 4096/4096 (default: not O_DIRECT), hot prefix"),
        "{}",
        r.describe()
    );
    // Forced: checked and raised to 512.
    let force = |f| open(ReaderOptions { o_direct: false, force_direct_align: Some(f), ..ReaderOptions::default() });
    let r = force((512, 512));
    assert_eq!(r.mode_info().align, Some(DirectAlign { offset: 512, mem: 512, source: AlignSource::Forced }));
    assert!(r.describe().contains(", align 512/512 (forced), "), "{}", r.describe());
    let a = force((256, 64)).direct_alignment().unwrap();
    assert_eq!((a.offset, a.mem, a.source), (512, 512, AlignSource::Forced));
    for bad in [(3000, 512), (512, 8192), (0, 512)] {
        let a = force(bad).direct_alignment().unwrap();
        assert_eq!((a.offset, a.mem), (DIRECT_ALIGN, DIRECT_ALIGN), "{bad:?}");
        assert_ne!(a.source, AlignSource::Forced);
    }
    // A caller's backend: the worst case unless forced.
    let r = RowReader::with_backend(&t, pread(&path), ReaderOptions::default());
    assert_eq!(r.direct_alignment(), Some(DirectAlign::fallback(AlignSource::NotDirect)));
    let opts = ReaderOptions { force_direct_align: Some((1024, 512)), ..ReaderOptions::default() };
    let r = RowReader::with_backend(&t, pread(&path), opts);
    assert_eq!(r.direct_alignment(), Some(DirectAlign { offset: 1024, mem: 512, source: AlignSource::Forced }));
    // Other modes have none.
    for mode in [ReadMode::Mmap, ReadMode::Resident] {
        let r = RowReader::open(&t, mode).unwrap();
        assert_eq!(r.direct_alignment(), None);
        assert!(!r.describe().contains("align"), "{}", r.describe());
    }
    // tmpfs, where it takes O_DIRECT: statx reports no alignment there (6.18), the reader keeps 4096.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            let p = d.path().join("s.scone");
            std::fs::copy(&path, &p).unwrap();
            let ts = Table::open(&p).unwrap();
            let r = RowReader::open(&ts, direct).unwrap();
            eprintln!("/dev/shm: {}", r.describe());
            let a = r.direct_alignment().unwrap();
            if !r.is_o_direct() {
                assert_eq!(a.source, AlignSource::NotDirect);
            }
            if a.source != AlignSource::Statx {
                assert_eq!((a.offset, a.mem), (DIRECT_ALIGN, DIRECT_ALIGN));
            }
            let slots: Vec<u32> = (0..40).rev().chain([MISS_SLOT, 3]).collect();
            let want = reference(&ts, &slots);
            let mut out = AlignedBuf::new(want.len()).unwrap();
            r.read_rows(&slots, &mut out).unwrap();
            assert!(out[..] == want[..]);
        }
    }
}
