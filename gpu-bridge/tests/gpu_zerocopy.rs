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
        let batches: Vec<Vec<u32>> = sizes
            .iter()
            .map(|&len| {
                (0..len)
                    .map(|_| match rng.below(20) {
                        0 => vocab + rng.below(5) as u32,
                        1 => u32::MAX,
                        _ => rng.below(u64::from(vocab)) as u32,
                    })
                    .collect()
            })
            .collect();
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
