//! GPU tests of deduplicated transfer (`PipelineConfig::dedup`, the
//! `scatter_rows` kernel) and of the GPU hot cache on both gather modes:
//! device rows and mask must equal `engine::gather`'s CPU output for every
//! combination of mode, dedup on/off and cache off/on, with heavy duplicates
//! and misses, all dtypes and odd row sizes; the per-batch counters
//! (`hit_count`, `cache_hits`, `bus_rows`, `bus_bytes`) must match the batch.
//! Skips (passes, with a note on stderr) without a CUDA driver or device;
//! `SCONE_REQUIRE_GPU=1` turns a skip into a failure.

mod common;

use std::collections::HashSet;

use common::*;
use engine::{Dtype, OpenOptions, SuffixMatcher, Table, MISS_SLOT};
use gpu_bridge::{BatchHandle, BridgeError, GatherMode, LookupPipeline, PipelineConfig};

/// Tokens drawn from a handful of ids (so the same n-grams repeat many
/// times), with misses.
fn duplicate_heavy_tokens(rng: &mut Rng, len: usize, vocab: u32) -> Vec<u32> {
    let few: Vec<u32> = (0..3).map(|_| rng.below(u64::from(vocab)) as u32).collect();
    (0..len)
        .map(|_| match rng.below(25) {
            0 => u32::MAX,
            1 => vocab + 1,
            _ => few[rng.below(few.len() as u64) as usize],
        })
        .collect()
}

fn slots_of(table: &Table, tokens: &[u32], start: usize) -> Vec<u32> {
    let mut hits = Vec::new();
    SuffixMatcher::new(table).match_into(tokens, start, &mut hits);
    hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect()
}

/// Checks the handle's counters against `slots`.
fn check_counters(h: &BatchHandle, slots: &[u32], cached: usize, dedup: bool, mode: GatherMode, row_bytes: usize) {
    let hits: Vec<u32> = slots.iter().copied().filter(|&s| s != MISS_SLOT).collect();
    let cache_hits = hits.iter().filter(|&&s| (s as usize) < cached).count();
    let bus: Vec<u32> = hits.iter().copied().filter(|&s| s as usize >= cached).collect();
    let distinct = bus.iter().collect::<HashSet<_>>().len();
    assert_eq!(h.hit_count(), hits.len());
    assert_eq!(h.cache_hits(), cache_hits);
    let n = slots.len();
    let (rows, bytes) = match (mode, dedup, cached > 0) {
        (GatherMode::CpuGather, false, false) => (n, n * row_bytes + n),
        (GatherMode::CpuGather, false, true) => (bus.len(), bus.len() * row_bytes + 4 * n),
        (GatherMode::CpuGather, true, _) => (distinct, distinct * row_bytes + 4 * n),
        (GatherMode::ZeroCopy, false, _) => (bus.len(), bus.len() * row_bytes + 5 * n),
        (GatherMode::ZeroCopy, true, _) => (distinct, distinct * (row_bytes + 4) + 4 * n),
    };
    assert_eq!(h.bus_rows(), rows, "{mode:?} dedup={dedup} cached={cached}");
    assert_eq!(h.bus_bytes(), bytes, "{mode:?} dedup={dedup} cached={cached}");
}

#[test]
fn dedup_and_cache_equal_cpu_gather_on_both_modes() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    // (dim, dtype, n_max, resident): 256 B rows, 400 B (not a multiple of
    // 64: 16-byte path), 6 B and 4 B (byte path), 2 KiB, one file-mapped.
    let tables = [
        (64usize, Dtype::F32, 3usize, true),
        (200, Dtype::F16, 4, false),
        (3, Dtype::F16, 3, true),
        (1, Dtype::F32, 2, true),
        (1024, Dtype::BF16, 3, true),
        (96, Dtype::BF16, 2, true),
    ];
    for (t, &(dim, dtype, n_max, resident)) in tables.iter().enumerate() {
        let (vocab, records) = (30u32, 500usize);
        let table = build_table(
            &dir.path().join(format!("d{t}.scone")),
            dim,
            dtype,
            n_max,
            vocab,
            records,
            500 + t as u64,
            OpenOptions { resident_rows: resident, ..OpenOptions::default() },
        );
        let row_bytes = dim * dtype.size();
        let stride = table.header().row_stride as usize;
        let n_rows = table.rows() as usize;
        for mode in [GatherMode::CpuGather, GatherMode::ZeroCopy] {
            for dedup in [false, true] {
                for pct in [0usize, 30, 150] {
                    let want_cached = (n_rows * pct / 100).min(n_rows);
                    let max = 600;
                    let cfg = PipelineConfig {
                        mode,
                        dedup,
                        gpu_cache_bytes: want_cached * stride + stride / 2,
                        ..PipelineConfig::new(max)
                    };
                    let what = format!("d={dim} {dtype:?} resident={resident} {mode:?} dedup={dedup} cache={pct}%");
                    let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
                    assert_eq!(pipe.gpu_cached_rows(), want_cached, "{what}");
                    let mut rng = Rng(9000 + t as u64 * 31 + pct as u64);
                    let sizes = [max, 0, 1, 2, 333, max, 64, 17, max];
                    let batches: Vec<Vec<u32>> = sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &len)| {
                            if i % 2 == 0 {
                                duplicate_heavy_tokens(&mut rng, len, vocab)
                            } else {
                                random_tokens(&mut rng, len, vocab)
                            }
                        })
                        .collect();
                    // All submitted before any is checked (ring of 3: the
                    // shared index / distinct-row device buffers must be
                    // ordered by the stream, not overwritten early).
                    let handles: Vec<_> = batches.iter().map(|b| pipe.submit(b).unwrap()).collect();
                    let (mut positions, mut bus_rows) = (0, 0);
                    for (tokens, h) in batches.iter().zip(handles) {
                        let (rows, mask) = h.copy_back_for_tests().unwrap();
                        let (want_rows, want_mask) = expected(&table, tokens, 0);
                        assert_eq!(mask, want_mask, "mask: {what} len={}", tokens.len());
                        assert!(rows == want_rows, "rows differ: {what} len={}", tokens.len());
                        check_counters(&h, &slots_of(&table, tokens, 0), want_cached, dedup, mode, row_bytes);
                        positions += h.positions();
                        bus_rows += h.bus_rows();
                        pipe.recycle(h);
                    }
                    // With context, and through submit_slots.
                    let tokens = duplicate_heavy_tokens(&mut rng, max, vocab);
                    let h = pipe.submit_with_context(&tokens, 5).unwrap();
                    assert!(h.copy_back_for_tests().unwrap() == expected(&table, &tokens, 5), "context: {what}");
                    pipe.recycle(h);
                    let slots = duplicate_heavy_slots(&mut rng, max, 3, n_rows);
                    let h = pipe.submit_slots(&slots).unwrap();
                    assert_slots_delivered(&h, &table, &slots, dtype, &what);
                    check_counters(&h, &slots, want_cached, dedup, mode, row_bytes);
                    pipe.recycle(h);
                    // Errors leave the pipeline usable.
                    assert!(matches!(pipe.submit_slots(&[0, n_rows as u32]), Err(BridgeError::InvalidArgument(_))));
                    assert!(matches!(pipe.submit(&vec![1; max + 1]), Err(BridgeError::InvalidArgument(_))));
                    let h = pipe.submit(&batches[4]).unwrap();
                    assert!(
                        h.copy_back_for_tests().unwrap() == expected(&table, &batches[4], 0),
                        "after errors: {what}"
                    );
                    eprintln!("{what}: {positions} positions, {bus_rows} rows over the bus");
                    if dedup && pct == 0 {
                        assert!(bus_rows * 2 < positions, "{what}: dedup must cut the rows sent");
                    }
                }
            }
        }
    }
}
