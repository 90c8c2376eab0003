//! GPU test of rows delivered in a requested dtype
//! (`PipelineConfig::out_dtype`, the `convert_rows` kernel): for every
//! stored dtype and every output dtype, on both gather modes, with dedup and
//! the GPU cache on and off, and through a `RowReader`, the device rows must
//! equal `engine::gather` with `GatherOptions::dtype` set to the output
//! dtype, bit for bit. Table values use the whole f32 mantissa (so narrowing
//! rounds), f16-subnormal magnitudes, and values beyond f16's range.
//! Skips (passes, with a note on stderr) without a CUDA driver or device;
//! `SCONE_REQUIRE_GPU=1` turns a skip into a failure.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use engine::read::{BackendKind, ReadMode};
use engine::{BuildConfig, Dtype, OpenOptions, Table, TableBuilder};
use gpu_bridge::{GatherMode, LookupPipeline, PipelineConfig};

/// A table of `records` random bigrams/trigrams whose values exercise
/// rounding: full-mantissa values in [-8, 8), tiny ones (f16 subnormals),
/// and a few beyond f16's largest finite value (infinite in f16).
fn rounding_table(path: &Path, dim: usize, dtype: Dtype, vocab: u32, records: usize, seed: u64) -> Table {
    let mut rng = Rng(seed | 1);
    let mut b = TableBuilder::create(path, BuildConfig::new(dim as u32, dtype, 3, vocab)).unwrap();
    let mut seen = HashSet::new();
    while seen.len() < records {
        let n = 2 + rng.below(2) as usize;
        let g: Vec<u32> = (0..n).map(|_| rng.below(u64::from(vocab)) as u32).collect();
        if !seen.insert(g.clone()) {
            continue;
        }
        let row: Vec<f32> = (0..dim)
            .map(|_| {
                let unit = (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                match rng.below(20) {
                    0 => unit * 1e-5,
                    1 if dtype != Dtype::F16 => unit * 4e5,
                    _ => unit * 16.0,
                }
            })
            .collect();
        b.push(&g, &row, None).unwrap();
    }
    b.finish().unwrap();
    Table::open_with(path, OpenOptions { resident_rows: true, ..OpenOptions::default() }).unwrap()
}

#[test]
fn rows_arrive_in_the_requested_dtype() {
    let Some(gpu) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dtypes = [Dtype::F32, Dtype::F16, Dtype::BF16];
    // 512 values (16-byte paths of the gather/scatter kernels for every
    // dtype), 3 and 200 values (byte paths for some dtypes).
    let dims = [512usize, 3, 200];
    for (t, (&stored, &dim)) in dtypes.iter().flat_map(|d| dims.iter().map(move |m| (d, m))).enumerate() {
        let vocab = 40u32;
        let table = rounding_table(&dir.path().join(format!("c{t}.scone")), dim, stored, vocab, 400, 77 + t as u64);
        let n_rows = table.rows() as usize;
        let stride = table.header().row_stride as usize;
        for &out in &dtypes {
            let mut configs: Vec<(String, PipelineConfig)> = Vec::new();
            for mode in [GatherMode::CpuGather, GatherMode::ZeroCopy] {
                for (dedup, pct) in [(false, 0usize), (true, 0), (false, 30), (true, 30)] {
                    let cfg = PipelineConfig {
                        mode,
                        dedup,
                        gpu_cache_bytes: n_rows * pct / 100 * stride,
                        out_dtype: Some(out),
                        ..PipelineConfig::new(300)
                    };
                    configs.push((format!("{mode:?} dedup={dedup} cache={pct}%"), cfg));
                }
            }
            let direct = ReadMode::Direct { backend: BackendKind::Auto, queue_depth: 16 };
            let cfg = PipelineConfig { read_mode: Some(direct), out_dtype: Some(out), ..PipelineConfig::new(300) };
            configs.push(("direct reader".into(), cfg));
            for (name, cfg) in configs {
                let what = format!("stored {stored:?} d={dim} -> {out:?}, {name}");
                let mut pipe = LookupPipeline::new(&table, &gpu, cfg).unwrap();
                assert_eq!(pipe.out_dtype(), out, "{what}");
                assert_eq!(pipe.row_bytes(), dim * out.size(), "{what}");
                let mut rng = Rng(5000 + t as u64);
                // Several batches in flight before any is checked (the
                // intermediate stored-dtype buffer is shared and must be
                // ordered by the stream).
                let batches: Vec<Vec<u32>> = [300usize, 1, 0, 173, 300]
                    .iter()
                    .map(|&len| duplicate_heavy_slots(&mut rng, len, 4, n_rows))
                    .collect();
                let handles: Vec<_> = batches.iter().map(|s| pipe.submit_slots(s).unwrap()).collect();
                for (slots, h) in batches.iter().zip(handles) {
                    assert_eq!(h.row_bytes(), dim * out.size(), "{what}");
                    assert_slots_delivered(&h, &table, slots, out, &what);
                    // The bus carries the stored dtype.
                    assert!(h.bus_bytes() <= slots.len() * (dim * stored.size() + 5) + 4, "{what}");
                    pipe.recycle(h);
                }
                // Through matching too.
                let tokens = random_tokens(&mut rng, 300, vocab);
                let h = pipe.submit(&tokens).unwrap();
                let (rows, _) = h.copy_back_for_tests().unwrap();
                let (stored_rows, _) = expected(&table, &tokens, 0);
                let mut want = vec![0u8; tokens.len() * dim * out.size()];
                for (src, dst) in
                    stored_rows.chunks_exact(dim * stored.size()).zip(want.chunks_exact_mut(dim * out.size()))
                {
                    engine::dtype::convert_row(src, stored, dst, out);
                }
                assert!(rows == want, "matched rows differ: {what}");
            }
        }
    }
}
