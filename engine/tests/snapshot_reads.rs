//! Snapshot consistency: a reader opened on a table reads that table's file,
//! whatever its path names by then. Two versions of one table (same n-grams,
//! rows that say which version they are) replace each other by rename as fast
//! as the file system allows while readers in every mode open, read and check
//! that every row of every answer comes from the version they opened.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::read::{BackendKind, ReadMode, ReaderOptions, RowReader};
use engine::{Dtype, OpenOptions, Table};

const ROWS: usize = 512;
const DIM: usize = 64;

/// Row `i` of version `v`: `[v, i / 8, i / 8, ...]` (exact in f16).
fn build_version(path: &Path, v: u32) {
    let spec = random_spec(11, ROWS, 50, 4, DIM, false);
    let rows: Vec<Vec<f32>> = (0..ROWS)
        .map(|i| std::iter::once(v as f32).chain(std::iter::repeat_n((i % 512) as f32 / 8.0, DIM - 1)).collect())
        .collect();
    let spec = Spec { ngrams: spec.ngrams, rows, counts: None };
    build(path, &spec, config(DIM, Dtype::F16, 4, 50));
}

fn f16_at(bytes: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
}

/// The version a table holds, read from its mapping (the table's own file).
fn version_of(t: &Table) -> f32 {
    f16_at(t.row_bytes(0).unwrap(), 0)
}

struct Outcome {
    reads: u64,
    mixed: u64,
    versions_seen: [u64; 2],
}

fn read_under_swaps(
    mode: ReadMode,
    opts: ReaderOptions,
    open: OpenOptions,
    stop: &AtomicBool,
    target: &Path,
) -> Outcome {
    let slots: Vec<u32> = (0..ROWS as u32).rev().collect();
    let mut out = Outcome { reads: 0, mixed: 0, versions_seen: [0; 2] };
    let rb = DIM * 2;
    let mut buf = vec![0u8; ROWS * rb];
    while !stop.load(Ordering::Relaxed) {
        let t = Table::open_with(target, open).expect("a table is always at the path");
        let v = version_of(&t);
        out.versions_seen[v as usize] += 1;
        let r = RowReader::open_with(&t, mode, opts).expect("reader opens");
        for _ in 0..2 {
            r.read_rows(&slots, &mut buf).expect("read");
            out.reads += 1;
            for (k, &s) in slots.iter().enumerate() {
                let row = &buf[k * rb..(k + 1) * rb];
                if f16_at(row, 0) != v || f16_at(row, 1) != (s % 512) as f32 / 8.0 {
                    out.mixed += 1;
                }
            }
        }
    }
    out
}

#[test]
fn every_mode_reads_the_version_it_opened_while_the_path_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, target) = (dir.path().join("a.scone"), dir.path().join("b.scone"), dir.path().join("t.scone"));
    build_version(&a, 0);
    build_version(&b, 1);
    std::fs::hard_link(&a, &target).unwrap();
    let uring = uring_available(&a);

    let mut cases: Vec<(&str, ReadMode, ReaderOptions, OpenOptions)> = vec![
        ("mmap", ReadMode::Mmap, ReaderOptions::default(), OpenOptions::default()),
        ("resident", ReadMode::Resident, ReaderOptions::default(), OpenOptions::default()),
        (
            "resident (rows resident at open)",
            ReadMode::Resident,
            ReaderOptions::default(),
            OpenOptions { resident_rows: true, ..OpenOptions::default() },
        ),
        (
            "direct pread",
            ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 8 },
            ReaderOptions::default(),
            OpenOptions::default(),
        ),
        (
            "direct pread buffered, hot prefix",
            ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 4 },
            ReaderOptions { o_direct: false, hot_bytes: 64 * 128, ..ReaderOptions::default() },
            OpenOptions::default(),
        ),
        (
            "direct auto",
            ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 32 },
            ReaderOptions::default(),
            OpenOptions::default(),
        ),
    ];
    if uring {
        cases.push((
            "direct io_uring",
            ReadMode::Direct { backend: BackendKind::Uring, queue_depth: 32 },
            ReaderOptions::default(),
            OpenOptions::default(),
        ));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, dir) = (stop.clone(), swaps.clone(), dir.path().to_path_buf());
        let (a, b, target) = (a.clone(), b.clone(), target.clone());
        std::thread::spawn(move || {
            let tmp = dir.join("next.scone");
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(3) {
                let n = swaps.fetch_add(1, Ordering::Relaxed);
                let src = if n % 2 == 0 { &b } else { &a };
                let _ = std::fs::remove_file(&tmp);
                std::fs::hard_link(src, &tmp).unwrap();
                std::fs::rename(&tmp, &target).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let results: Vec<(&str, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, mode, opts, open)| {
                let (stop, target) = (&stop, &target);
                (*name, s.spawn(move || read_under_swaps(*mode, *opts, *open, stop, target)))
            })
            .collect();
        handles.into_iter().map(|(n, h)| (n, h.join().unwrap())).collect()
    });
    swapper.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    assert!(swaps > 100, "only {swaps} swaps: the test did not exercise replacement");
    for (name, o) in &results {
        eprintln!(
            "{name}: {} reads of {ROWS} rows, versions opened {:?}, mixed rows {}",
            o.reads, o.versions_seen, o.mixed
        );
    }
    for (name, o) in &results {
        assert!(o.reads > 0, "{name}: no read ran");
        assert_eq!(o.mixed, 0, "{name}: {} rows came from another version than the one opened", o.mixed);
    }
    // Both versions were opened across the cases: the readers saw the swaps.
    let seen: [u64; 2] =
        results.iter().fold([0, 0], |acc, (_, o)| [acc[0] + o.versions_seen[0], acc[1] + o.versions_seen[1]]);
    assert!(seen[0] > 0 && seen[1] > 0, "versions opened {seen:?}: the swaps were never observed");
}

#[test]
fn a_fifo_is_refused_at_open_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fifo.scone");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = Table::open(&p).unwrap_err().to_string();
    assert!(e.contains("FIFO") && e.contains("fifo.scone"), "{e}");
    let e = Table::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("directory"), "{e}");
}
