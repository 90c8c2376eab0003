//! The hot prefix returns what `gather` returns and counts its hits; prefetch
//! tickets return what `read_rows` returns, errors included.

mod common;

use std::path::Path;

use common::*;
use engine::read::{
    open_file, Backend, BackendKind, FaultyBackend, PreadBackend, ReadError, ReadMode, ReaderOptions, RowReader, Ticket,
};
use engine::{Dtype, Table, MISS_SLOT};
use rand::{Rng, SeedableRng};

fn batches(seed: u64, rows: u32) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<Vec<u32>> = vec![vec![], vec![MISS_SLOT], vec![0], vec![rows - 1], (0..rows).collect()];
    for b in 0..12 {
        let len = rng.gen_range(1..700);
        let hi = if b % 3 == 0 { rows.min(rng.gen_range(1..40)) } else { rows };
        let miss = rng.gen_range(0.0..0.3);
        v.push((0..len).map(|_| if rng.gen_bool(miss) { MISS_SLOT } else { rng.gen_range(0..hi) }).collect());
    }
    v
}

fn direct_modes(uring: bool) -> Vec<ReadMode> {
    let mut kinds = vec![BackendKind::Pread, BackendKind::Auto];
    if uring {
        kinds.push(BackendKind::Uring);
    }
    let mut m = Vec::new();
    for backend in kinds {
        for queue_depth in [1, 32] {
            m.push(ReadMode::Direct { backend, queue_depth });
        }
    }
    m
}

#[test]
fn hot_prefix_matches_gather_and_counts_hits() {
    let dir = tempfile::tempdir().unwrap();
    for (dim, dtype, n) in [(3, Dtype::F16, 700), (100, Dtype::BF16, 400), (1000, Dtype::F32, 300)] {
        let path = make_table(dir.path(), &format!("h{dim}.scone"), dim as u64 * 13 + n as u64, n, dim, dtype);
        let t = Table::open(&path).unwrap();
        let stride = t.header().row_stride;
        let all = batches(dim as u64, t.rows() as u32);
        for mode in direct_modes(uring_available(&path)) {
            // No prefix, a partial one (not a whole number of rows), all rows, more than all.
            for hot_bytes in [0, 37 * stride + stride / 2, t.rows() * stride, 10 * t.rows() * stride] {
                let opts = ReaderOptions { hot_bytes, ..ReaderOptions::default() };
                let r = RowReader::open_with(&t, mode, opts).unwrap();
                let hot = (hot_bytes / stride).min(t.rows());
                assert_eq!(r.hot_rows(), hot, "{mode:?} hot_bytes {hot_bytes}");
                assert!(r.hot_bytes() as u64 >= hot * r.row_bytes() as u64);
                for slots in &all {
                    let want = reference(&t, slots);
                    let mut got = vec![0xa5u8; want.len()];
                    let st = r.read_rows(slots, &mut got).unwrap();
                    assert!(got == want, "{mode:?} dim {dim} hot {hot}: output differs ({} slots)", slots.len());
                    let present: Vec<u32> = slots.iter().copied().filter(|&s| s != MISS_SLOT).collect();
                    let hits = present.iter().filter(|&&s| (s as u64) < hot).count();
                    let mut cold: Vec<u32> = present.iter().copied().filter(|&s| s as u64 >= hot).collect();
                    cold.sort_unstable();
                    cold.dedup();
                    let mut u = present.clone();
                    u.sort_unstable();
                    u.dedup();
                    assert_eq!(st.hot_hits, hits, "{mode:?}");
                    assert_eq!(st.cold_rows, present.len() - hits);
                    assert_eq!(st.unique_rows, u.len());
                    assert_eq!(st.rows_read, cold.len());
                    assert!(st.reads_submitted <= cold.len());
                    assert_eq!(st.bytes_read == 0, cold.is_empty());
                    if !present.is_empty() {
                        assert_eq!(st.hit_ratio(), hits as f64 / present.len() as f64);
                    } else {
                        assert_eq!(st.hit_ratio(), 0.0);
                    }
                }
            }
        }
        // Other modes: Resident serves everything from DRAM, Mmap counts it cold.
        let slots: Vec<u32> = vec![0, 1, MISS_SLOT, 1, 5];
        let mut got = vec![0u8; slots.len() * t.dim() * t.dtype().size()];
        let st = RowReader::open(&t, ReadMode::Resident).unwrap().read_rows(&slots, &mut got).unwrap();
        assert_eq!((st.hot_hits, st.cold_rows, st.hit_ratio()), (4, 0, 1.0));
        let st = RowReader::open(&t, ReadMode::Mmap).unwrap().read_rows(&slots, &mut got).unwrap();
        assert_eq!((st.hot_hits, st.cold_rows, st.hit_ratio()), (0, 4, 0.0));
    }
}

fn pread(path: &Path) -> Box<dyn Backend> {
    Box::new(PreadBackend::new(open_file(path, true).unwrap().0, 4).unwrap())
}

#[test]
fn hot_rows_never_touch_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "f.scone", 13400, 400, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let stride = t.header().row_stride;
    let opts = ReaderOptions { hot_bytes: 100 * stride, ..ReaderOptions::default() };
    // The prefix (400 KB) is one read; every later read fails.
    let fb = FaultyBackend::new(pread(&path)).fail_after(1);
    let r = RowReader::try_with_backend(&t, Box::new(fb), opts).unwrap();
    assert_eq!(r.hot_rows(), 100);
    let hot: Vec<u32> = vec![99, 0, 50, 50, MISS_SLOT];
    let mut got = vec![0u8; hot.len() * 4000];
    let st = r.read_rows(&hot, &mut got).unwrap();
    assert_eq!(got, reference(&t, &hot));
    assert_eq!((st.hot_hits, st.cold_rows, st.reads_submitted, st.bytes_read), (4, 0, 0, 0));
    let mixed: Vec<u32> = vec![1, 100];
    let mut got = vec![0u8; 2 * 4000];
    match r.read_rows(&mixed, &mut got).unwrap_err() {
        ReadError::Io { path: p, offset, source } => {
            assert_eq!(p, path);
            let base = t.header().section(engine::format::SectionKind::Rows).unwrap().offset;
            assert_eq!(offset, (base + 100 * stride) & !4095);
            assert!(source.to_string().contains("injected fault"), "{source}");
        }
        e => panic!("expected an I/O error, got {e}"),
    }
    // A prefix that cannot be read fails the open, naming the file.
    let fb = FaultyBackend::new(pread(&path)).fail_after(0);
    let e = RowReader::try_with_backend(&t, Box::new(fb), opts).err().expect("open fails");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    // with_backend ignores hot_bytes (it cannot fail).
    let fb = FaultyBackend::new(pread(&path)).fail_after(0);
    assert_eq!(RowReader::with_backend(&t, Box::new(fb), opts).hot_rows(), 0);
}

#[test]
fn several_tickets_in_flight_match_read_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "p.scone", 1900, 600, 100, Dtype::F16);
    let t = Table::open(&path).unwrap();
    let stride = t.header().row_stride;
    let all = batches(9, t.rows() as u32);
    let mut modes = vec![ReadMode::Mmap, ReadMode::Resident];
    modes.extend(direct_modes(uring_available(&path)));
    for mode in modes {
        for hot_bytes in [0, 200 * stride] {
            for workers in [1, 4] {
                let opts = ReaderOptions { hot_bytes, prefetch_workers: workers, ..ReaderOptions::default() };
                let r = RowReader::open_with(&t, mode, opts).unwrap();
                // Every batch in flight at once (more than the workers), waited in reverse order.
                let tickets: Vec<Ticket> = all.iter().map(|s| r.prefetch(s.clone())).collect();
                for (slots, ticket) in all.iter().zip(tickets).rev() {
                    let (rows, st) = ticket.wait().unwrap();
                    let mut want = vec![0u8; slots.len() * r.row_bytes()];
                    let want_st = r.read_rows(slots, &mut want).unwrap();
                    assert!(rows == want, "{mode:?}: ticket rows differ ({} slots)", slots.len());
                    assert_eq!(st, want_st, "{mode:?}");
                }
            }
        }
    }
}

#[test]
fn ticket_errors_come_back_through_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "e.scone", 13300, 300, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let r = RowReader::with_backend(&t, Box::new(FaultyBackend::new(pread(&path)).fail_after(0)), Default::default());
    let a = r.prefetch(vec![3, 7]);
    let b = r.prefetch(vec![MISS_SLOT]);
    let c = r.prefetch(vec![1, 300]);
    match a.wait().unwrap_err() {
        ReadError::Io { path: p, source, .. } => {
            assert_eq!(p, path);
            assert!(source.to_string().contains("injected fault"), "{source}");
        }
        e => panic!("expected an I/O error, got {e}"),
    }
    // Nothing to read: no read, no error.
    let (rows, st) = b.wait().unwrap();
    assert!(rows.iter().all(|&x| x == 0) && rows.len() == 4000 && st.misses == 1);
    assert!(matches!(c.wait().unwrap_err(), ReadError::SlotOutOfRange { position: 1, slot: 300, .. }));
    // Non-direct modes report errors the same way.
    let m = RowReader::open(&t, ReadMode::Mmap).unwrap();
    assert!(matches!(m.prefetch(vec![999]).wait().unwrap_err(), ReadError::SlotOutOfRange { .. }));
}

#[test]
fn dropped_tickets_and_readers_are_safe() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "d.scone", 13500, 500, 1000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    let slots: Vec<u32> = (0..500).rev().collect();
    let want = reference(&t, &slots);
    let mode = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 8 };
    let r = RowReader::open(&t, mode).unwrap();
    // Dropped unwaited, some before their read even starts.
    for _ in 0..16 {
        drop(r.prefetch(slots.clone()));
    }
    let kept = r.prefetch(slots.clone());
    send(&kept);
    // The reader goes first: its workers finish the queued reads, the ticket keeps its rows.
    drop(r);
    let (rows, st) = kept.wait().unwrap();
    assert!(rows == want);
    assert_eq!(st.rows_read, 500);
    // A ticket waited on another thread.
    let r = RowReader::open(&t, mode).unwrap();
    let ticket = r.prefetch(vec![42]);
    let rows = std::thread::spawn(move || ticket.wait().unwrap().0).join().unwrap();
    assert_eq!(rows, reference(&t, &[42]));
}
