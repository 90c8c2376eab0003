//! Shared helpers for the engine's integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use engine::{BuildConfig, BuildSummary, Dtype, TableBuilder};
use rand::{Rng, SeedableRng};

pub struct Spec {
    pub ngrams: Vec<Vec<u32>>,
    pub rows: Vec<Vec<f32>>,
    pub counts: Option<Vec<u64>>,
}

impl Spec {
    pub fn clone_spec(&self) -> Spec {
        Spec { ngrams: self.ngrams.clone(), rows: self.rows.clone(), counts: self.counts.clone() }
    }
}

/// Distinct random n-grams with rows whose values are exact in f16/bf16 (small
/// multiples of 1/8), so round trips compare exactly.
pub fn random_spec(seed: u64, n: usize, vocab: u32, n_max: usize, dim: usize, counts: bool) -> Spec {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut ngrams = Vec::new();
    let mut tries = 0;
    while ngrams.len() < n && tries < n * 50 {
        tries += 1;
        let len = rng.gen_range(2..=n_max);
        let g: Vec<u32> = (0..len).map(|_| rng.gen_range(0..vocab)).collect();
        if seen.insert(g.clone()) {
            ngrams.push(g);
        }
    }
    let rows = (0..ngrams.len()).map(|_| (0..dim).map(|_| rng.gen_range(-64i32..64) as f32 / 8.0).collect()).collect();
    let counts = counts.then(|| (0..ngrams.len()).map(|_| rng.gen_range(1..1000u64)).collect());
    Spec { ngrams, rows, counts }
}

pub fn build(path: &Path, spec: &Spec, cfg: BuildConfig) -> BuildSummary {
    let mut b = TableBuilder::create(path, cfg).unwrap();
    for (i, (g, r)) in spec.ngrams.iter().zip(&spec.rows).enumerate() {
        b.push(g, r, spec.counts.as_ref().map(|c| c[i])).unwrap();
    }
    b.finish().unwrap()
}

pub fn config(dim: usize, dtype: Dtype, n_max: usize, vocab: u32) -> BuildConfig {
    BuildConfig::new(dim as u32, dtype, n_max as u32, vocab)
}

/// The reference a naive user would write: a map from n-gram to input record.
pub fn naive_map(spec: &Spec) -> HashMap<Vec<u32>, usize> {
    spec.ngrams.iter().cloned().enumerate().map(|(i, g)| (g, i)).collect()
}

/// Files in a directory (to check that failed builds leave nothing behind).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Builds a table of `n` random f-grams (vocabulary 50, n_max 4) at `dir/name`.
pub fn make_table(dir: &Path, name: &str, seed: u64, n: usize, dim: usize, dtype: Dtype) -> std::path::PathBuf {
    let path = dir.join(name);
    let spec = random_spec(seed, n, 50, 4, dim, false);
    assert_eq!(spec.ngrams.len(), n);
    build(&path, &spec, config(dim, dtype, 4, 50));
    path
}

/// What `gather` returns for `slots`, in the stored dtype: the reference every read mode must match.
pub fn reference(t: &engine::Table, slots: &[u32]) -> Vec<u8> {
    let mut out = vec![0u8; slots.len() * t.dim() * t.dtype().size()];
    engine::gather(t, slots, engine::GatherOptions { dtype: t.dtype(), max_threads: 0 }, &mut out).unwrap();
    out
}

/// Whether io_uring can be set up here; says so on stderr when it cannot.
pub fn uring_available(path: &Path) -> bool {
    let ok = engine::read::UringBackend::new(std::fs::File::open(path).unwrap(), 4).is_ok();
    if !ok {
        eprintln!("io_uring is not available here: uring cases are skipped");
    }
    ok
}

/// Builds at `path` a table of 40 fixed f-grams (vocabulary 50, n_max 3) whose
/// every value is `value`, so a reader can tell which version answered.
pub fn build_valued(path: &Path, value: f32, dim: usize, overwrite: bool) -> BuildSummary {
    let mut cfg = config(dim, Dtype::F32, 3, 50);
    cfg.overwrite = overwrite;
    let mut b = TableBuilder::create(path, cfg).unwrap();
    for i in 0..40u32 {
        b.push(&[i, i + 1], &vec![value; dim], None).unwrap();
    }
    b.finish().unwrap()
}

/// The single value every row of a table built by [`build_valued`] holds;
/// panics if two rows or two values differ (a mix of versions).
pub fn table_value(t: &engine::Table) -> f32 {
    let mut seen = None;
    for slot in 0..t.rows() as u32 {
        for v in t.row_bytes(slot).unwrap().chunks_exact(4) {
            let v = f32::from_le_bytes(v.try_into().unwrap());
            assert!(seen.is_none_or(|s| s == v), "rows of two versions in one table: {seen:?} and {v}");
            seen = Some(v);
        }
    }
    seen.unwrap()
}

/// Every file under `dir`, recursively, relative to it.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
