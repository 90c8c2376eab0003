//! GPU tests of the pipeline's `RowReader` row source
//! (`PipelineConfig::read_mode`, `LookupPipeline::with_reader`): rows read
//! from the table file (`O_DIRECT` through io_uring or the pread pool) or
//! the mapping straight into pinned staging memory, copied and scattered,
//! must equal `engine::gather` for 4 KiB rows (read with no bounce copy) and
//! odd rows, with duplicates and misses, dedup on/off, GPU cache on/off;
//! reader I/O errors come back from `submit` naming file and offset and
//! leave the pipeline usable. Skips (passes, with a note on stderr) without
//! a CUDA driver or device; `SCONE_REQUIRE_GPU=1` turns a skip into a
//! failure.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use engine::read::{open_file, Backend, BackendKind, PreadBackend, ReadMode, ReaderOptions, RowReader};
use engine::{Dtype, OpenOptions, MISS_SLOT};
use gpu_bridge::{BridgeError, GatherMode, LookupPipeline, PipelineConfig};

#[test]
fn read_sources_equal_cpu_gather() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut refused = Vec::new();
    // 4 KiB rows (row == stride, read straight into pinned memory), 400 B
    // rows (bounce buffer), 8 KiB rows, 6 B rows.
    let tables = [(2048usize, Dtype::F16), (100, Dtype::F32), (2048, Dtype::F32), (3, Dtype::F16)];
    let modes = [
        ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 32 },
        ReadMode::Direct { backend: BackendKind::Pread, queue_depth: 4 },
        ReadMode::Mmap,
    ];
    for (t, &(dim, dtype)) in tables.iter().enumerate() {
        let (vocab, records) = (30u32, 400usize);
        let table = build_table(
            &dir.path().join(format!("r{t}.scone")),
            dim,
            dtype,
            3,
            vocab,
            records,
            700 + t as u64,
            OpenOptions::default(),
        );
        let row_bytes = dim * dtype.size();
        let stride = table.header().row_stride as usize;
        let n_rows = table.rows() as usize;
        for mode in modes {
            for dedup in [false, true] {
                for pct in [0usize, 30] {
                    let max = 500;
                    let cfg = PipelineConfig {
                        dedup,
                        gpu_cache_bytes: n_rows * pct / 100 * stride,
                        read_mode: Some(mode),
                        ..PipelineConfig::new(max)
                    };
                    let what = format!("d={dim} {dtype:?} {mode:?} dedup={dedup} cache={pct}%");
                    let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
                    eprintln!("{what}: {}", pipe.reader().expect("reader").describe());
                    let mut rng = Rng(40 + t as u64 * 13 + pct as u64);
                    let sizes = [max, 0, 1, 333, max, 64];
                    let batches: Vec<Vec<u32>> = sizes.iter().map(|&n| random_tokens(&mut rng, n, vocab)).collect();
                    // All in flight before any is checked.
                    let handles: Vec<_> = batches.iter().map(|b| pipe.submit(b).unwrap()).collect();
                    for (tokens, h) in batches.iter().zip(handles) {
                        let (rows, mask) = h.copy_back_for_tests().unwrap();
                        let (want_rows, want_mask) = expected(&table, tokens, 0);
                        assert_eq!(mask, want_mask, "mask: {what} len={}", tokens.len());
                        assert!(rows == want_rows, "rows differ: {what} len={}", tokens.len());
                        pipe.recycle(h);
                    }
                    // Slots with heavy duplicates, misses and the last row.
                    let slots = duplicate_heavy_slots(&mut rng, max, 4, n_rows);
                    let h = pipe.submit_slots(&slots).unwrap();
                    assert_slots_delivered(&h, &table, &slots, dtype, &what);
                    pipe.recycle(h);
                    let st = pipe.take_read_stats();
                    assert!(st.rows_requested > 0, "{what}");
                    if matches!(mode, ReadMode::Direct { .. }) {
                        assert!(st.rows_read > 0, "{what}");
                        // Pinned staging memory is page-aligned: rows whose
                        // size is a multiple of the file's direct-I/O
                        // alignment (statx; 4 KiB where unknown) are read
                        // into it with no bounce copy.
                        let align = pipe.reader().and_then(|r| r.direct_alignment()).expect("direct reader");
                        let straight = row_bytes == stride
                            && (row_bytes as u64).is_multiple_of(align.offset)
                            && (row_bytes as u64).is_multiple_of(align.mem);
                        assert_eq!(st.bounce_bytes == 0, straight, "{what}: {st:?} {align:?}");
                    }
                    assert_eq!(pipe.take_read_stats(), Default::default());
                    if !pipe.reads_into_pinned() {
                        refused.push(what);
                    }
                }
            }
        }
        // Zero-copy with a read mode is refused.
        let cfg =
            PipelineConfig { mode: GatherMode::ZeroCopy, read_mode: Some(ReadMode::Mmap), ..PipelineConfig::new(8) };
        assert!(matches!(LookupPipeline::new(&table, &gpu, cfg), Err(BridgeError::InvalidArgument(_))));
    }
    // Rows were right either way; this checks that the kernel let O_DIRECT
    // reads land in cuMemHostAlloc memory (no detour through a copy).
    assert!(refused.is_empty(), "direct reads into pinned staging were refused (EFAULT) for: {refused:?}");
}

/// A pread backend that fails every read while `fail` is set.
struct Flaky {
    inner: PreadBackend,
    fail: Arc<AtomicBool>,
}

impl Backend for Flaky {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected device error"));
        }
        self.inner.read_at(buf, offset)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn name(&self) -> &'static str {
        "flaky"
    }
}

#[test]
fn read_errors_name_file_and_offset_and_leave_the_pipeline_usable() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (dim, dtype) in [(2048usize, Dtype::F16), (100, Dtype::F32)] {
        let table =
            build_table(&dir.path().join(format!("e{dim}.scone")), dim, dtype, 2, 20, 150, 99, OpenOptions::default());
        let fail = Arc::new(AtomicBool::new(false));
        for dedup in [false, true] {
            let cfg = PipelineConfig { dedup, ..PipelineConfig::new(64) };
            let (file, _) = open_file(table.path(), true).unwrap();
            let backend = Flaky { inner: PreadBackend::new(file, 2).unwrap(), fail: Arc::clone(&fail) };
            let reader = RowReader::with_backend(&table, Box::new(backend), ReaderOptions::default());
            let mut pipe = LookupPipeline::with_reader(&table, &gpu, cfg, reader).unwrap();
            let slots = [3u32, MISS_SLOT, 7, 3, 100];
            let mut want = vec![0u8; slots.len() * dim * dtype.size()];
            engine::gather(&table, &slots, engine::GatherOptions { dtype, max_threads: 1 }, &mut want).unwrap();
            let ok = pipe.submit_slots(&slots).unwrap();
            fail.store(true, Ordering::SeqCst);
            for _ in 0..4 {
                match pipe.submit_slots(&slots) {
                    Err(BridgeError::Read(m)) => {
                        assert!(m.contains(&table.path().display().to_string()) && m.contains("offset"), "{m}")
                    }
                    other => panic!("d={dim} dedup={dedup}: expected a read error, got {other:?}"),
                }
            }
            fail.store(false, Ordering::SeqCst);
            // The batch submitted before the errors is intact, and the
            // pipeline takes batches again.
            assert!(ok.copy_back_for_tests().unwrap().0 == want, "d={dim} dedup={dedup}");
            for _ in 0..4 {
                let h = pipe.submit_slots(&slots).unwrap();
                assert!(h.copy_back_for_tests().unwrap().0 == want, "after errors: d={dim} dedup={dedup}");
                pipe.recycle(h);
            }
        }
    }
}
