//! Direct reads straight into a 4096-aligned caller buffer (no bounce copy)
//! return exactly what the bounce path and `gather` return.

mod common;

use common::*;
use engine::format::SectionKind;
use engine::read::{
    open_file, AlignedBuf, BackendKind, FaultyBackend, PreadBackend, ReadError, ReadMode, ReaderOptions, RowReader,
};
use engine::{Dtype, Table, MISS_SLOT};
use rand::{Rng, SeedableRng};

fn batches(seed: u64, rows: u32) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<Vec<u32>> = vec![vec![MISS_SLOT], vec![0], vec![rows - 1], (0..rows).collect()];
    v.push((0..rows).rev().collect());
    v.push((5..60).chain(5..60).chain([MISS_SLOT, 7, 7]).collect());
    for b in 0..8 {
        let len = rng.gen_range(1..400);
        let hi = if b % 2 == 0 { rows.min(rng.gen_range(1..20)) } else { rows };
        v.push((0..len).map(|_| if rng.gen_bool(0.1) { MISS_SLOT } else { rng.gen_range(0..hi) }).collect());
    }
    v
}

fn kinds(uring: bool) -> Vec<BackendKind> {
    let mut k = vec![BackendKind::Pread, BackendKind::Auto];
    if uring {
        k.push(BackendKind::Uring);
    }
    k
}

#[test]
fn aligned_buf_is_aligned_and_zeroed() {
    for len in [0, 1, 4096, 10_000, 3 << 20] {
        let mut b = AlignedBuf::new(len).unwrap();
        assert_eq!(b.len(), len);
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert!(b.iter().all(|&x| x == 0));
        b.advise_huge_pages();
        if len > 0 {
            b[len - 1] = 7;
            assert_eq!(b[len - 1], 7);
        }
    }
}

#[test]
fn aligned_rows_are_read_into_the_callers_buffer_with_no_bounce_copy() {
    let dir = tempfile::tempdir().unwrap();
    // 4096- and 8192-byte rows: row_bytes == stride, page multiples.
    for (dim, dtype, n) in [(2048, Dtype::F16, 300), (1024, Dtype::F32, 260), (4096, Dtype::BF16, 90)] {
        let path = make_table(dir.path(), &format!("a{dim}.scone"), dim as u64 + n as u64, n, dim, dtype);
        let t = Table::open(&path).unwrap();
        assert_eq!(t.header().row_stride as usize, dim * dtype.size());
        assert_eq!(t.header().section(SectionKind::Rows).unwrap().offset % 4096, 0);
        let uring = uring_available(&path);
        let all = batches(dim as u64, t.rows() as u32);
        for backend in kinds(uring) {
            for queue_depth in [1, 32] {
                for hot_bytes in [0, 37 * 4096 + 100] {
                    let mode = ReadMode::Direct { backend, queue_depth };
                    let opts = ReaderOptions { hot_bytes, ..ReaderOptions::default() };
                    let r = RowReader::open_with(&t, mode, opts).unwrap();
                    for slots in &all {
                        let want = reference(&t, slots);
                        let mut got = AlignedBuf::new(want.len()).unwrap();
                        got.fill(0xa5);
                        let st = r.read_rows(slots, &mut got).unwrap();
                        assert!(got[..] == want[..], "{mode:?} hot {hot_bytes} dim {dim}: output differs");
                        assert_eq!(st.bounce_bytes, 0, "{mode:?}: {st:?}");
                        assert_eq!(st.bytes_read, (st.rows_read * r.row_bytes()) as u64, "exact rows: {st:?}");
                        // The bounce path (an unaligned view) agrees, stats and all but the copy.
                        let mut big = AlignedBuf::new(want.len() + 4096).unwrap();
                        let unaligned = &mut big[64..64 + want.len()];
                        let sb = r.read_rows(slots, unaligned).unwrap();
                        assert!(unaligned[..] == want[..], "{mode:?} bounce path differs");
                        let cold = st.rows_read > 0;
                        assert_eq!(sb.bounce_bytes > 0, cold, "{sb:?}");
                        assert_eq!(sb.bounce_bytes, sb.bytes_read);
                        let strip = |s: engine::ReadStats| engine::ReadStats {
                            bounce_bytes: 0,
                            bytes_read: 0,
                            reads_submitted: 0,
                            ..s
                        };
                        assert_eq!(strip(st), strip(sb));
                    }
                    // Rows adjacent in the file and in the output are one read; reversed, one each.
                    let h = r.hot_rows() as u32;
                    let run: Vec<u32> = (h..h + 40).collect();
                    let mut got = AlignedBuf::new(run.len() * r.row_bytes()).unwrap();
                    let st = r.read_rows(&run, &mut got).unwrap();
                    assert_eq!((st.reads_submitted, st.bounce_bytes), (1, 0));
                    assert!(got[..] == reference(&t, &run)[..]);
                    let rev: Vec<u32> = run.iter().rev().copied().collect();
                    let st = r.read_rows(&rev, &mut got).unwrap();
                    assert_eq!((st.reads_submitted, st.bounce_bytes), (40, 0));
                    assert!(got[..] == reference(&t, &rev)[..]);
                }
            }
        }
    }
}

#[test]
fn unaligned_rows_use_the_bounce_buffer_even_into_an_aligned_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "u.scone", 9, 200, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let r = RowReader::open(&t, ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 8 }).unwrap();
    let slots: Vec<u32> = (0..200).chain([MISS_SLOT, 3]).collect();
    let want = reference(&t, &slots);
    let mut got = AlignedBuf::new(want.len()).unwrap();
    let st = r.read_rows(&slots, &mut got).unwrap();
    assert!(got[..] == want[..]);
    assert!(st.bounce_bytes > 0 && st.bounce_bytes == st.bytes_read, "{st:?}");
}

#[test]
fn faults_surface_when_reading_into_the_callers_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "f.scone", 11, 100, 2048, Dtype::F16);
    let t = Table::open(&path).unwrap();
    let rows_offset = t.header().section(SectionKind::Rows).unwrap().offset;
    let pread = || Box::new(PreadBackend::new(open_file(&path, false).unwrap().0, 4).unwrap());
    let slots: Vec<u32> = (0..100).step_by(3).collect();
    let mut out = AlignedBuf::new(slots.len() * 4096).unwrap();
    // Every read after the first fails.
    let b = FaultyBackend::new(pread()).fail_after(1);
    let r = RowReader::with_backend(&t, Box::new(b), ReaderOptions::default());
    match r.read_rows(&slots, &mut out) {
        Err(ReadError::Io { offset, .. }) => assert!(offset >= rows_offset, "{offset}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // Short reads resumed by the backend still give the rows; handed back, they are an error.
    let want = reference(&t, &slots);
    let b = FaultyBackend::new(pread()).short_reads(1000, true);
    let r = RowReader::with_backend(&t, Box::new(b), ReaderOptions::default());
    let st = r.read_rows(&slots, &mut out).unwrap();
    assert!(out[..] == want[..]);
    assert_eq!(st.bounce_bytes, 0);
    let b = FaultyBackend::new(pread()).short_reads(1000, false);
    let r = RowReader::with_backend(&t, Box::new(b), ReaderOptions::default());
    assert!(matches!(r.read_rows(&slots, &mut out), Err(ReadError::Io { .. })));
    // A file truncated after open: the row past the end is an error before any read.
    let b = FaultyBackend::new(pread()).report_len(rows_offset + 50 * 4096);
    let r = RowReader::with_backend(&t, Box::new(b), ReaderOptions::default());
    match r.read_rows(&slots, &mut out) {
        Err(ReadError::Io { offset, .. }) => assert_eq!(offset, rows_offset + 51 * 4096),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}
