//! GPU tests of the zero-copy gather (`GatherMode::ZeroCopy`): device rows
//! must equal `engine::gather`'s CPU output. Skips (passes, with a note on
//! stderr) without a CUDA driver or device; `SCONE_REQUIRE_GPU=1` turns a
//! skip into a failure.

use std::collections::HashSet;
use std::path::Path;

use engine::{gather, BuildConfig, Dtype, GatherOptions, OpenOptions, SuffixMatcher, Table, TableBuilder, MISS_SLOT};
use gpu_bridge::{BridgeError, GatherMode, Gpu, LookupPipeline, PipelineConfig, ZeroCopySource};

fn gpu_or_skip() -> Option<Gpu> {
    match Gpu::open(0) {
        Ok(gpu) => Some(gpu),
        Err(e @ (BridgeError::NoDriver(_) | BridgeError::NoDevice { .. })) => {
            if std::env::var("SCONE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("SCONE_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("skipped: no CUDA driver/device ({e})");
            None
        }
        Err(e) => panic!("Gpu::open(0) failed: {e}"),
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn build_table(path: &Path, dim: usize, dtype: Dtype, vocab: u32, records: usize, seed: u64, resident: bool) -> Table {
    let mut rng = Rng(seed | 1);
    let mut b = TableBuilder::create(path, BuildConfig::new(dim as u32, dtype, 3, vocab)).unwrap();
    let mut seen = HashSet::new();
    while seen.len() < records {
        let n = 2 + rng.below(2) as usize;
        let g: Vec<u32> = (0..n).map(|_| rng.below(u64::from(vocab)) as u32).collect();
        if !seen.insert(g.clone()) {
            continue;
        }
        let row: Vec<f32> = (0..dim).map(|_| (rng.below(2001) as f32 - 1000.0) / 64.0).collect();
        b.push(&g, &row, None).unwrap();
    }
    b.finish().unwrap();
    Table::open_with(path, OpenOptions { resident_rows: resident, ..OpenOptions::default() }).unwrap()
}

fn expected(table: &Table, tokens: &[u32]) -> (Vec<u8>, Vec<u8>) {
    let hits = SuffixMatcher::new(table).match_tokens(tokens);
    let slots: Vec<u32> = hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect();
    let mut rows = vec![0u8; slots.len() * table.dim() * table.dtype().size()];
    gather(table, &slots, GatherOptions { dtype: table.dtype(), max_threads: 1 }, &mut rows).unwrap();
    (rows, hits.iter().map(|h| u8::from(h.is_hit())).collect())
}

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
        let table =
            build_table(&dir.path().join(format!("t{i}.scone")), dim, dtype, vocab, 600, 7 + i as u64, resident);
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
            let (want_rows, want_mask) = expected(&table, tokens);
            assert_eq!(mask, want_mask, "mask d={dim} len={}", tokens.len());
            assert!(rows == want_rows, "rows differ: d={dim} {dtype:?} len={}", tokens.len());
            assert_eq!(h.hit_count(), want_mask.iter().filter(|&&m| m == 1).count());
            pipe.recycle(h);
        }
        // Oversize batches are refused; the pipeline keeps working.
        assert!(pipe.submit(&vec![1; max + 1]).is_err());
        let t = &batches[2];
        let (rows, _) = pipe.submit(t).unwrap().copy_back_for_tests().unwrap();
        assert_eq!(rows, expected(&table, t).0);
    }
}
