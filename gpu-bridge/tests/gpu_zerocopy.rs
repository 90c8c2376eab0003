//! GPU tests of the zero-copy gather (`GatherMode::ZeroCopy`): device rows
//! must equal `engine::gather`'s CPU output. Skips (passes, with a note on
//! stderr) without a CUDA driver or device; `SCONE_REQUIRE_GPU=1` turns a
//! skip into a failure.

mod common;

use common::*;
use engine::{Dtype, OpenOptions};
use gpu_bridge::{GatherMode, LookupPipeline, PipelineConfig, ZeroCopySource};

#[test]
fn zero_copy_rows_equal_cpu_gather() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    // d = 64 f32 (256 B rows), 200 f16 (400 B: 16-byte path), 1024 bf16
    // (2048 B); one table mapped from the file (pinned copy), the others
    // resident (registered in place), and a 5-byte-row table (byte path).
    let cases = [
        (64, Dtype::F32, true),
        (200, Dtype::F16, true),
        (1024, Dtype::BF16, true),
        (200, Dtype::F16, false),
        (3, Dtype::F16, true),
    ];
    for (i, &(dim, dtype, resident)) in cases.iter().enumerate() {
        let vocab = 40;
        let table = build_table(
            &dir.path().join(format!("t{i}.scone")),
            dim,
            dtype,
            3,
            vocab,
            600,
            7 + i as u64,
            OpenOptions { resident_rows: resident, ..OpenOptions::default() },
        );
        let max = 700;
        let cfg = PipelineConfig { mode: GatherMode::ZeroCopy, ..PipelineConfig::new(max) };
        let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
        assert_eq!(pipe.mode(), GatherMode::ZeroCopy);
        let source = pipe.zero_copy_source().unwrap();
        eprintln!("d={dim} {dtype:?} resident={resident}: rows {source:?}");
        if !resident {
            assert_eq!(source, ZeroCopySource::PinnedCopy);
        }
        assert_eq!(GatherMode::auto(&table), if resident { GatherMode::ZeroCopy } else { GatherMode::CpuGather });
        let mut rng = Rng(99 + i as u64);
        let sizes = [0usize, 1, 17, max, 333, 512, 64, max];
        let batches: Vec<Vec<u32>> = sizes.iter().map(|&len| random_tokens(&mut rng, len, vocab)).collect();
        // Submit all before checking any (ring of 3: back-pressure).
        let handles: Vec<_> = batches.iter().map(|t| pipe.submit(t).unwrap()).collect();
        for (tokens, h) in batches.iter().zip(handles) {
            let (rows, mask) = h.copy_back_for_tests().unwrap();
            let (want_rows, want_mask) = expected(&table, tokens, 0);
            assert_eq!(mask, want_mask, "mask d={dim} len={}", tokens.len());
            assert!(rows == want_rows, "rows differ: d={dim} {dtype:?} len={}", tokens.len());
            assert_eq!(h.hit_count(), want_mask.iter().filter(|&&m| m == 1).count());
            pipe.recycle(h);
        }
        // Oversize batches are refused; the pipeline keeps working.
        assert!(pipe.submit(&vec![1; max + 1]).is_err());
        let t = &batches[2];
        let (rows, _) = pipe.submit(t).unwrap().copy_back_for_tests().unwrap();
        assert_eq!(rows, expected(&table, t, 0).0);
    }
}

/// GPU hot cache (`PipelineConfig::gpu_cache_bytes`): the first rows live in
/// device memory; device rows must still equal the CPU gather, and
/// `cache_hits` must count the positions whose slot is below the cached rows.
#[test]
fn zero_copy_with_gpu_cache_equals_cpu_gather() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    // (dim, dtype, resident, cache fraction of the rows in %): 16-byte path
    // registered and pinned-copy, byte path, a cache larger than the table.
    let cases = [
        (200, Dtype::F16, true, 30),
        (64, Dtype::F32, false, 30),
        (3, Dtype::F16, true, 30),
        (128, Dtype::BF16, true, 150),
    ];
    for (i, &(dim, dtype, resident, pct)) in cases.iter().enumerate() {
        let (vocab, records) = (40u32, 600usize);
        let table = build_table(
            &dir.path().join(format!("c{i}.scone")),
            dim,
            dtype,
            3,
            vocab,
            records,
            31 + i as u64,
            OpenOptions { resident_rows: resident, ..OpenOptions::default() },
        );
        let stride = table.header().row_stride as usize;
        let want_cached = (records * pct / 100).min(table.rows() as usize);
        let max = 700;
        let cfg = PipelineConfig {
            mode: GatherMode::ZeroCopy,
            gpu_cache_bytes: want_cached * stride + stride / 2,
            ..PipelineConfig::new(max)
        };
        let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
        assert_eq!(pipe.gpu_cached_rows(), want_cached, "d={dim}");
        eprintln!(
            "d={dim} {dtype:?} resident={resident}: rows {:?}, {} of {} rows cached",
            pipe.zero_copy_source().unwrap(),
            want_cached,
            table.rows()
        );
        let mut rng = Rng(7 + i as u64);
        let sizes = [0usize, 1, 17, max, 333, 512, 64, max];
        let batches: Vec<Vec<u32>> = sizes.iter().map(|&len| random_tokens(&mut rng, len, vocab)).collect();
        let handles: Vec<_> = batches.iter().map(|t| pipe.submit(t).unwrap()).collect();
        let (mut total_cached, mut total_hits) = (0, 0);
        for (tokens, h) in batches.iter().zip(handles) {
            let (rows, mask) = h.copy_back_for_tests().unwrap();
            let (want_rows, want_mask) = expected(&table, tokens, 0);
            assert_eq!(mask, want_mask, "mask d={dim} len={}", tokens.len());
            assert!(rows == want_rows, "rows differ: d={dim} {dtype:?} len={}", tokens.len());
            let mut hits = Vec::new();
            engine::SuffixMatcher::new(&table).match_into(tokens, 0, &mut hits);
            let want_cache_hits = hits.iter().filter_map(|h| h.slot()).filter(|&s| (s as usize) < want_cached).count();
            assert_eq!(h.cache_hits(), want_cache_hits, "cache hits d={dim} len={}", tokens.len());
            assert_eq!(h.hit_count(), want_mask.iter().filter(|&&m| m == 1).count());
            total_cached += h.cache_hits();
            total_hits += h.hit_count();
            pipe.recycle(h);
        }
        eprintln!("  {total_cached} of {total_hits} hits served from the GPU cache");
        assert!(total_cached > 0, "some positions must hit the cache");
        if pct < 100 {
            assert!(total_cached < total_hits, "some positions must cross the bus");
        } else {
            assert_eq!(total_cached, total_hits);
        }
    }
    // No cache (the default) and the CPU gather report 0 cached rows.
    let table = build_table(&dir.path().join("n.scone"), 8, Dtype::F32, 2, 10, 50, 5, OpenOptions::default());
    let pipe = LookupPipeline::new(&table, &gpu, PipelineConfig::new(8)).unwrap();
    assert_eq!(pipe.gpu_cached_rows(), 0);
    let cfg = PipelineConfig { mode: GatherMode::ZeroCopy, ..PipelineConfig::new(8) };
    let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
    assert_eq!(pipe.gpu_cached_rows(), 0);
    assert_eq!(pipe.submit(&[1, 2, 3]).unwrap().cache_hits(), 0);
}
