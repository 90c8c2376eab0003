//! Deterministic synthetic f-gram tables. Every f-gram, row and count is a pure
//! function of (seed, rank), so 10 M f-grams never have to be held in memory: the
//! builder, the baseline and the query generators all regenerate them by index.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::{BuildConfig, BuildSummary, Dtype, TableBuilder};

/// Token ids are below this.
pub const VOCAB: u32 = 50_000;
/// Longest f-gram in the synthetic tables.
pub const N_MAX: usize = 4;
/// Exponent of the popularity law, for counts and for queries.
pub const ZIPF_S: f64 = 1.1;
/// Count of the hottest f-gram; rank r (1-based) gets about `COUNT_TOP / r^1.1`.
const COUNT_TOP: f64 = 1e12;
/// Multiplier of the per-length bijection; odd and not a multiple of 5, so it is
/// coprime with 50_000^n = 2^(4n) * 5^(5n) and the map below is a bijection.
const PERM_MUL: u128 = 11_400_714_819_323_198_487;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub fgrams: u64,
    pub dim: usize,
    pub seed: u64,
}

impl Spec {
    pub fn new(fgrams: u64, dim: usize) -> Self {
        Spec { fgrams, dim, seed: 0x5C0E_BE7C_2025_0001 }
    }

    pub fn row_bytes(&self) -> usize {
        self.dim * 2
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash of a u64.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A short n-gram held inline (no allocation per f-gram).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gram {
    tokens: [u32; N_MAX],
    len: u8,
}

impl Gram {
    pub fn new(tokens: &[u32]) -> Self {
        let mut t = [0u32; N_MAX];
        t[..tokens.len()].copy_from_slice(tokens);
        Gram { tokens: t, len: tokens.len() as u8 }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        &self.tokens[..self.len as usize]
    }
}

/// Left extensions per shorter f-gram: each bigram is the suffix of 3 trigrams,
/// each trigram the suffix of 2 4-grams (those whose index allows it).
const TRI_PER_BI: u64 = 3;
const QUAD_PER_TRI: u64 = 2;
/// Spreads the extending tokens of one suffix over the vocabulary.
const EXT_STRIDE: u64 = 16_661;

/// The f-gram of 0-based popularity rank `i`.
///
/// Real f-gram sets are suffix-closed: they are the most frequent n-grams, and an
/// n-gram's suffix is at least as frequent as the n-gram. So is this one. Ranks
/// come in blocks of 20: 8 bigrams, 7 trigrams, 5 4-grams (40/35/25%). The k-th
/// trigram is a token followed by bigram k / 3, the m-th 4-gram a token followed
/// by trigram m / 2; the suffix always has a smaller rank (a larger count).
/// Bigrams are a bijection of their index over 50 000^2 pairs, and extensions of
/// one suffix differ in their first token, so all f-grams are distinct.
pub fn fgram(spec: &Spec, i: u64) -> Gram {
    let (block, r) = (i / 20, i % 20);
    match r {
        0..8 => bigram(spec, 8 * block + r),
        8..15 => trigram(spec, 7 * block + r - 8),
        _ => {
            let m = 5 * block + r - 15;
            extend(spec, trigram(spec, m / QUAD_PER_TRI), m / QUAD_PER_TRI, m % QUAD_PER_TRI, 4)
        }
    }
}

fn bigram(spec: &Spec, q: u64) -> Gram {
    let m = (VOCAB as u128).pow(2);
    let b = mix(spec.seed.wrapping_add(2)) as u128 % m;
    let code = (PERM_MUL % m * q as u128 + b) % m;
    Gram::new(&[(code % VOCAB as u128) as u32, (code / VOCAB as u128) as u32])
}

fn trigram(spec: &Spec, k: u64) -> Gram {
    extend(spec, bigram(spec, k / TRI_PER_BI), k / TRI_PER_BI, k % TRI_PER_BI, 3)
}

/// `suffix` with one token in front: the `which`-th extension of suffix `id`.
fn extend(spec: &Spec, suffix: Gram, id: u64, which: u64, len: u64) -> Gram {
    let first = ((mix(spec.seed ^ (id << 8) ^ len) + which * EXT_STRIDE) % VOCAB as u64) as u32;
    let mut t = [0u32; N_MAX];
    t[0] = first;
    t[1..len as usize].copy_from_slice(suffix.as_slice());
    Gram::new(&t[..len as usize])
}

/// Count of rank `i`: Zipf(1.1)-shaped and non-increasing in `i`, so a counted
/// build lays rows out in rank order (ties keep push order).
pub fn count(i: u64) -> u64 {
    ((COUNT_TOP / ((i + 1) as f64).powf(ZIPF_S)) as u64).max(1)
}

/// Row of rank `i`: pseudo-random values in [-1, 1), two per 64-bit draw.
pub fn row(spec: &Spec, i: u64, out: &mut [f32]) {
    let mut s = mix(spec.seed.rotate_left(17) ^ i);
    // 24-bit integers scaled by 2^-23 are exact in f32, so values stay below 1.
    let unit = |u: u64| u as f32 * (1.0 / (1u32 << 23) as f32) - 1.0;
    for pair in out.chunks_mut(2) {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = mix(s);
        pair[0] = unit(z >> 40);
        if let Some(v) = pair.get_mut(1) {
            *v = unit((z >> 16) & 0xFF_FFFF);
        }
    }
}

/// Wall time of generating every f-gram and row without storing them: the share
/// of both build times that is synthetic data, not engine or baseline work.
pub fn generation_time(spec: &Spec) -> Duration {
    let t = Instant::now();
    let mut buf = vec![0f32; spec.dim];
    let mut acc = 0u64;
    for i in 0..spec.fgrams {
        row(spec, i, &mut buf);
        acc = acc.wrapping_add(fgram(spec, i).as_slice()[0] as u64 ^ buf[0].to_bits() as u64);
    }
    std::hint::black_box(acc);
    t.elapsed()
}

/// Builder settings for a synthetic table.
pub fn build_config(spec: &Spec, memory_budget: usize, temp_dir: Option<&Path>) -> BuildConfig {
    let mut cfg = BuildConfig::new(spec.dim as u32, Dtype::F16, N_MAX as u32, VOCAB);
    cfg.memory_budget = memory_budget;
    cfg.temp_dir = temp_dir.map(Path::to_path_buf);
    cfg.overwrite = true;
    cfg.source = format!("scone-bench synthetic: {} f-grams, seed {:#x}", spec.fgrams, spec.seed);
    cfg
}

/// Builds the table at `path`, pushing f-grams in rank order with their counts.
/// Returns the builder's summary and the wall time (generation included).
pub fn build_table(spec: &Spec, path: &Path, cfg: BuildConfig) -> anyhow::Result<(BuildSummary, Duration)> {
    anyhow::ensure!(spec.fgrams <= (VOCAB as u64).pow(2), "at most 50_000^2 distinct synthetic f-grams");
    let t = Instant::now();
    let mut b = TableBuilder::create(path, cfg)?;
    let mut buf = vec![0f32; spec.dim];
    for i in 0..spec.fgrams {
        row(spec, i, &mut buf);
        b.push(fgram(spec, i).as_slice(), &buf, Some(count(i)))?;
    }
    let summary = b.finish()?;
    Ok((summary, t.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fgrams_are_distinct_and_in_vocab() {
        let spec = Spec::new(200_000, 8);
        let mut seen = std::collections::HashSet::new();
        let mut lens = [0usize; 5];
        for i in 0..spec.fgrams {
            let g = fgram(&spec, i);
            assert!(g.as_slice().iter().all(|&t| t < VOCAB));
            lens[g.as_slice().len()] += 1;
            assert!(seen.insert(g), "rank {i} repeats an f-gram");
        }
        assert!(lens[2] > lens[3] && lens[3] > lens[4] && lens[4] > 0);
    }

    #[test]
    fn rows_are_deterministic_and_in_range() {
        let spec = Spec::new(10, 7);
        let (mut a, mut b) = (vec![0f32; 7], vec![0f32; 7]);
        row(&spec, 3, &mut a);
        row(&spec, 3, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        row(&spec, 4, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn counts_do_not_increase() {
        assert!((0..100_000u64).all(|i| count(i) >= count(i + 1)));
    }
}
