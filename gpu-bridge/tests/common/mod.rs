//! Helpers shared by the GPU tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;

use engine::{gather, BuildConfig, Dtype, GatherOptions, OpenOptions, SuffixMatcher, Table, TableBuilder, MISS_SLOT};
use gpu_bridge::{BatchHandle, BridgeError, Gpu};

/// Opens device 0, or explains on stderr why GPU tests are skipped.
/// Driver failures other than "no driver"/"no device" are real failures;
/// `SCONE_REQUIRE_GPU=1` turns a skip into a failure.
pub fn gpu_or_skip() -> Option<Gpu> {
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

/// xorshift64: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random table: distinct n-grams of 2..=n_max tokens over `vocab`, opened with `opts`.
#[allow(clippy::too_many_arguments)]
pub fn build_table(
    path: &Path,
    dim: usize,
    dtype: Dtype,
    n_max: usize,
    vocab: u32,
    records: usize,
    seed: u64,
    opts: OpenOptions,
) -> Table {
    let mut rng = Rng(seed | 1);
    let mut b = TableBuilder::create(path, BuildConfig::new(dim as u32, dtype, n_max as u32, vocab)).unwrap();
    let mut seen = HashSet::new();
    while seen.len() < records {
        let n = 2 + rng.below(n_max as u64 - 1) as usize;
        let g: Vec<u32> = (0..n).map(|_| rng.below(u64::from(vocab)) as u32).collect();
        if !seen.insert(g.clone()) {
            continue;
        }
        let row: Vec<f32> = (0..dim).map(|_| (rng.below(2001) as f32 - 1000.0) / 64.0).collect();
        b.push(&g, &row, None).unwrap();
    }
    b.finish().unwrap();
    Table::open_with(path, opts).unwrap()
}

/// What the GPU must hold for `tokens[start..]`: the CPU gather of the matched
/// rows (stored dtype) and the hit mask (1 hit, 0 miss).
pub fn expected(table: &Table, tokens: &[u32], start: usize) -> (Vec<u8>, Vec<u8>) {
    let mut hits = Vec::new();
    SuffixMatcher::new(table).match_into(tokens, start, &mut hits);
    let slots: Vec<u32> = hits.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect();
    let mut rows = vec![0u8; slots.len() * table.dim() * table.dtype().size()];
    gather(table, &slots, GatherOptions { dtype: table.dtype(), max_threads: 1 }, &mut rows).unwrap();
    (rows, hits.iter().map(|h| u8::from(h.is_hit())).collect())
}

/// Tokens mostly from the vocabulary (duplicates and hits), some outside it
/// (misses).
pub fn random_tokens(rng: &mut Rng, len: usize, vocab: u32) -> Vec<u32> {
    (0..len)
        .map(|_| match rng.below(20) {
            0 => vocab + rng.below(5) as u32,
            1 => u32::MAX,
            _ => rng.below(u64::from(vocab)) as u32,
        })
        .collect()
}

/// `len` slots for `submit_slots`: 10 % misses, half among the first `hot`
/// rows (heavy duplicates), the rest uniform over `n_rows`; position 0 holds
/// the last row (when `len > 0`).
pub fn duplicate_heavy_slots(rng: &mut Rng, len: usize, hot: u64, n_rows: usize) -> Vec<u32> {
    let mut slots: Vec<u32> = (0..len)
        .map(|_| match rng.below(10) {
            0 => MISS_SLOT,
            1..=5 => rng.below(hot) as u32,
            _ => rng.below(n_rows as u64) as u32,
        })
        .collect();
    if let Some(first) = slots.first_mut() {
        *first = n_rows as u32 - 1;
    }
    slots
}

/// Copies batch `h` back and asserts that its rows equal `engine::gather` of
/// `slots` in `dtype` and that its mask marks the hits.
pub fn assert_slots_delivered(h: &BatchHandle, table: &Table, slots: &[u32], dtype: Dtype, what: &str) {
    let (rows, mask) = h.copy_back_for_tests().unwrap();
    let mut want = vec![0u8; slots.len() * table.dim() * dtype.size()];
    gather(table, slots, GatherOptions { dtype, max_threads: 1 }, &mut want).unwrap();
    assert!(rows == want, "submit_slots rows differ: {what}, {} positions", slots.len());
    assert_eq!(mask, slots.iter().map(|&s| u8::from(s != MISS_SLOT)).collect::<Vec<_>>(), "mask: {what}");
}
