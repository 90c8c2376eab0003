//! The read modes return exactly what `gather` returns; the direct path's faults
//! surface as errors naming the file and offset.

mod common;

use std::io;
use std::path::{Path, PathBuf};

use common::*;
use engine::format::SectionKind;
use engine::read::{
    open_file, Backend, BackendKind, FaultyBackend, PreadBackend, ReadError, ReadMode, ReaderOptions, RowReader,
    UringBackend, MAX_QUEUE_DEPTH,
};
use engine::{Dtype, Table, MISS_SLOT};
use rand::{Rng, SeedableRng};

fn rows_offset(t: &Table) -> u64 {
    t.header().section(SectionKind::Rows).unwrap().offset
}

/// Random batches: some over a small slot range (many duplicates, adjacent rows),
/// some over the whole table, with misses.
fn batches(seed: u64, rows: u32) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<Vec<u32>> = vec![vec![], vec![MISS_SLOT], vec![0], vec![rows - 1], (0..rows).collect()];
    for b in 0..12 {
        let len = rng.gen_range(1..700);
        let hi = if b % 3 == 0 { rows.min(rng.gen_range(1..20)) } else { rows };
        let miss = rng.gen_range(0.0..0.3);
        v.push((0..len).map(|_| if rng.gen_bool(miss) { MISS_SLOT } else { rng.gen_range(0..hi) }).collect());
    }
    v
}

fn modes(uring: bool) -> Vec<ReadMode> {
    let mut m = vec![ReadMode::Mmap, ReadMode::Resident];
    let mut kinds = vec![BackendKind::Pread, BackendKind::Auto];
    if uring {
        kinds.push(BackendKind::Uring);
    }
    for backend in kinds {
        for queue_depth in [1, 32, 256] {
            m.push(ReadMode::Direct { backend, queue_depth });
        }
    }
    m
}

#[test]
fn every_mode_matches_gather_at_odd_dims() {
    let dir = tempfile::tempdir().unwrap();
    for (dim, dtype, n) in [(3, Dtype::F16, 700), (100, Dtype::BF16, 400), (1000, Dtype::F32, 300)] {
        let path = make_table(dir.path(), &format!("t{dim}.scone"), dim as u64 * 7 + n as u64, n, dim, dtype);
        let t = Table::open(&path).unwrap();
        let uring = uring_available(&path);
        let all = batches(dim as u64, t.rows() as u32);
        for mode in modes(uring) {
            let r = RowReader::open(&t, mode).unwrap();
            if let ReadMode::Direct { backend: BackendKind::Uring, .. } = mode {
                assert_eq!(r.backend_name(), Some("io_uring"));
            }
            for slots in &all {
                let want = reference(&t, slots);
                let mut got = vec![0xa5u8; want.len()];
                let st = r.read_rows(slots, &mut got).unwrap();
                assert!(got == want, "{mode:?} dim {dim}: output differs for a batch of {}", slots.len());
                let mut u: Vec<u32> = slots.iter().copied().filter(|&s| s != MISS_SLOT).collect();
                u.sort_unstable();
                u.dedup();
                assert_eq!(st.rows_requested, slots.len());
                assert_eq!(st.misses, slots.iter().filter(|&&s| s == MISS_SLOT).count());
                assert_eq!(st.unique_rows, u.len(), "{mode:?}");
                if let ReadMode::Direct { .. } = mode {
                    assert_eq!(st.rows_read, u.len());
                    assert!(st.reads_submitted <= u.len());
                    assert!(st.bytes_read >= (u.len() * r.row_bytes()) as u64);
                    let align = r.direct_alignment().unwrap().offset;
                    assert!(st.bytes_read.is_multiple_of(align), "aligned spans: {} ({align})", st.bytes_read);
                }
            }
            // Rows adjacent on disk coalesce: a run of 40 consecutive slots is one read.
            if let ReadMode::Direct { .. } = mode {
                let run: Vec<u32> = (10..50).rev().collect();
                let mut got = vec![0u8; run.len() * r.row_bytes()];
                let st = r.read_rows(&run, &mut got).unwrap();
                assert_eq!(st.reads_submitted, 1);
                assert_eq!(got, reference(&t, &run));
            }
        }
    }
}

#[test]
fn small_bounce_buffer_and_no_o_direct_still_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "b.scone", 7600, 600, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let uring = uring_available(&path);
    let slots: Vec<u32> = (0..600).rev().chain(0..600).chain([MISS_SLOT, 3, 3]).collect();
    let want = reference(&t, &slots);
    for o_direct in [true, false] {
        for mode in modes(uring).into_iter().skip(2) {
            let opts = ReaderOptions { o_direct, bounce_bytes: 0, ..ReaderOptions::default() };
            let r = RowReader::open_with(&t, mode, opts).unwrap();
            if !o_direct {
                assert!(!r.is_o_direct());
            }
            let mut got = vec![1u8; want.len()];
            let st = r.read_rows(&slots, &mut got).unwrap();
            assert!(got == want, "{mode:?} o_direct {o_direct}");
            // 600 rows of 4032 bytes, 1 MiB spans.
            assert!(st.reads_submitted >= 3, "{st:?}");
        }
    }
}

#[test]
fn resident_mode_on_a_resident_table_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "r.scone", 71, 50, 3, Dtype::F16);
    let o = engine::OpenOptions { resident_rows: true, ..Default::default() };
    let t = Table::open_with(&path, o).unwrap();
    for mode in modes(uring_available(&path)) {
        let r = RowReader::open(&t, mode).unwrap();
        let slots = [4, MISS_SLOT, 4, 49];
        let mut got = vec![0u8; 4 * 6];
        r.read_rows(&slots, &mut got).unwrap();
        assert_eq!(got, reference(&t, &slots));
        let e = r.read_rows(&[1, 50], &mut [0u8; 12]).unwrap_err();
        assert!(matches!(e, ReadError::SlotOutOfRange { position: 1, slot: 50, rows: 50 }), "{e}");
        let e = r.read_rows(&[1], &mut [0u8; 5]).unwrap_err();
        assert!(matches!(e, ReadError::BufferSize { got: 5, need: 6, .. }), "{e}");
    }
}

#[test]
fn auto_falls_back_to_pread_when_uring_setup_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "a.scone", 800, 100, 100, Dtype::BF16);
    let t = Table::open(&path).unwrap();
    let opts = ReaderOptions { simulate_uring_setup_failure: true, ..ReaderOptions::default() };
    let auto = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 32 };
    let r = RowReader::open_with(&t, auto, opts).unwrap();
    assert_eq!(r.backend_name(), Some("pread"));
    let slots = [7, 7, MISS_SLOT, 99, 0];
    let mut got = vec![0u8; 5 * 200];
    r.read_rows(&slots, &mut got).unwrap();
    assert_eq!(got, reference(&t, &slots));
    // Forcing io_uring where it cannot start is an error, not a silent fallback.
    let forced = ReadMode::Direct { backend: BackendKind::Uring, queue_depth: 32 };
    let e = RowReader::open_with(&t, forced, opts).err().unwrap();
    assert!(matches!(&e, ReadError::Open { path: p, .. } if p == &path), "{e}");
    // Queue depths outside the ring's range are refused at setup.
    for qd in [0, MAX_QUEUE_DEPTH + 1] {
        let e = UringBackend::new(std::fs::File::open(&path).unwrap(), qd).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
    if uring_available(&path) {
        let r = RowReader::open(&t, auto).unwrap();
        assert_eq!(r.backend_name(), Some("io_uring"));
    }
}

/// The backends a fault wraps: pread (O_DIRECT and buffered), io_uring where it runs.
fn inner_backends(path: &Path, o_direct: bool) -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> =
        vec![Box::new(PreadBackend::new(open_file(path, o_direct).unwrap().0, 4).unwrap())];
    if uring_available(path) {
        v.push(Box::new(UringBackend::new(open_file(path, o_direct).unwrap().0, 8).unwrap()));
    }
    v
}

fn io_error(e: ReadError) -> (PathBuf, u64, io::Error) {
    match e {
        ReadError::Io { path, offset, source } => (path, offset, source),
        other => panic!("expected an I/O error, got {other}"),
    }
}

#[test]
fn injected_error_after_n_reads_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "f.scone", 7400, 400, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let base = rows_offset(&t);
    let stride = t.header().row_stride;
    // Rows 0, 100, 200, 300: four separate spans.
    let slots = [300, 0, 200, 100];
    for n in [0u64, 2] {
        for inner in inner_backends(&path, true) {
            let fb = FaultyBackend::new(inner).fail_after(n);
            let r = RowReader::with_backend(&t, Box::new(fb), ReaderOptions::default());
            let mut got = vec![0u8; 4 * 4000];
            let (p, offset, source) = io_error(r.read_rows(&slots, &mut got).unwrap_err());
            assert_eq!(p, path);
            // Spans go out in file order; the (n+1)-th fails.
            let row = [0u64, 100, 200, 300][n as usize];
            assert_eq!(offset, (base + row * stride) & !4095);
            assert!(source.to_string().contains("injected fault"), "{source}");
            let e = r.read_rows(&slots, &mut got).unwrap_err();
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }
}

#[test]
fn short_reads_are_resumed_or_surfaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "s.scone", 1000, 300, 100, Dtype::BF16);
    let t = Table::open(&path).unwrap();
    let slots: Vec<u32> = (0..300).step_by(7).chain([5, 5, MISS_SLOT]).collect();
    let want = reference(&t, &slots);
    // Resumed: any cap on a buffered file, a 4096-byte cap under O_DIRECT.
    for (o_direct, cap) in [(false, 100), (false, 1), (true, 4096)] {
        for inner in inner_backends(&path, o_direct) {
            let fb = FaultyBackend::new(inner).short_reads(cap, true);
            let r = RowReader::with_backend(&t, Box::new(fb), ReaderOptions::default());
            let mut got = vec![0u8; want.len()];
            let st = r.read_rows(&slots, &mut got).unwrap();
            assert!(got == want, "cap {cap}");
            assert!(st.bytes_read > 0);
        }
    }
    // Surfaced: a backend that hands a short read back is an error, not a zero row.
    for inner in inner_backends(&path, false) {
        let fb = FaultyBackend::new(inner).short_reads(100, false);
        let r = RowReader::with_backend(&t, Box::new(fb), ReaderOptions::default());
        let mut got = vec![0u8; want.len()];
        let (p, offset, source) = io_error(r.read_rows(&slots, &mut got).unwrap_err());
        assert_eq!(p, path);
        assert_eq!(offset, rows_offset(&t) + 100);
        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof);
    }
}

#[test]
fn io_uring_resumes_its_own_short_reads_at_end_of_file() {
    // A plain file whose length is not a multiple of the read: the ring returns
    // short, resumes, then reports the end of the file at the right offset.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    if !uring_available(&path) {
        return;
    }
    let u = UringBackend::new(std::fs::File::open(&path).unwrap(), 2).unwrap();
    let mut a = vec![0u8; 8192];
    let mut b = vec![0u8; 4096];
    let mut c = vec![0u8; 100];
    let mut reqs = [
        engine::read::ReadReq::new(4096, &mut a, 10_000 - 4096),
        engine::read::ReadReq::new(0, &mut b, 4096),
        engine::read::ReadReq::new(9_990, &mut c, 10),
    ];
    u.read_batch(&mut reqs).unwrap();
    assert_eq!(reqs[0].filled, 10_000 - 4096);
    assert_eq!(&a[..10_000 - 4096], &data[4096..]);
    assert_eq!(b, data[..4096]);
    assert_eq!(&c[..10], &data[9_990..]);
    let mut d = vec![0u8; 64];
    assert_eq!(u.read_at(&mut d, 9_980).unwrap(), 20);
    assert_eq!(u.read_at(&mut d, 20_000).unwrap(), 0);
    let mut reqs = [engine::read::ReadReq::new(9_970, &mut d, 64)];
    let e = u.read_batch(&mut reqs).unwrap_err();
    assert_eq!(e.offset, 10_000);
    assert_eq!(e.source.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn truncated_file_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "tr.scone", 900, 200, 100, Dtype::BF16);
    let t = Table::open(&path).unwrap();
    let base = rows_offset(&t);
    let stride = t.header().row_stride;
    // Reported length: the backend says the file ends inside row 20.
    for inner in inner_backends(&path, true) {
        let fb = FaultyBackend::new(inner).report_len(base + 20 * stride + 10);
        let r = RowReader::with_backend(&t, Box::new(fb), ReaderOptions::default());
        let mut got = vec![0u8; 2 * 200];
        r.read_rows(&[19, 3], &mut got).unwrap();
        assert_eq!(got, reference(&t, &[19, 3]));
        let (p, offset, source) = io_error(r.read_rows(&[3, 20], &mut got).unwrap_err());
        assert_eq!(p, path);
        assert_eq!(offset, base + 20 * stride);
        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof);
    }
    // A real truncation after the reader opened: reads hit the end of the file.
    let copy = dir.path().join("copy.scone");
    std::fs::copy(&path, &copy).unwrap();
    let t2 = Table::open(&copy).unwrap();
    let mut kinds = vec![BackendKind::Pread];
    if uring_available(&copy) {
        kinds.push(BackendKind::Uring);
    }
    let readers: Vec<RowReader> = kinds
        .iter()
        .map(|&backend| RowReader::open(&t2, ReadMode::Direct { backend, queue_depth: 8 }).unwrap())
        .collect();
    std::fs::OpenOptions::new().write(true).open(&copy).unwrap().set_len(base + 5 * stride + 100).unwrap();
    for r in &readers {
        let mut got = vec![0u8; 2 * 200];
        let (p, offset, source) = io_error(r.read_rows(&[1, 150], &mut got).unwrap_err());
        assert_eq!(p, copy);
        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof, "{source}");
        // The read of the span holding row 150 starts at the row, aligned down.
        let align = r.direct_alignment().unwrap().offset;
        assert_eq!(offset, (base + 150 * stride) & !(align - 1), "{:?}", r.backend_name());
        // Rows before the cut still read.
        r.read_rows(&[1, 2], &mut got).unwrap();
    }
}

#[test]
fn a_reader_is_shared_across_threads() {
    fn sync<T: Sync + Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "mt.scone", 1200, 500, 100, Dtype::BF16);
    let t = Table::open(&path).unwrap();
    for mode in modes(uring_available(&path)) {
        let r = RowReader::open(&t, mode).unwrap();
        sync(&r);
        std::thread::scope(|s| {
            for k in 0..4u32 {
                let (r, t) = (&r, &t);
                s.spawn(move || {
                    for b in batches(k as u64, 500).iter().take(6) {
                        let mut got = vec![0u8; b.len() * 200];
                        r.read_rows(b, &mut got).unwrap();
                        assert!(got == reference(t, b), "{mode:?}");
                    }
                });
            }
        });
    }
}
