//! Seeded synthetic rows for the demo, until the trainer exports trained ones.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A reproducible pseudo-random row in [-1, 1) for an n-gram: the same n-gram
/// always gets the same row, whatever order the table is built in.
pub fn row_for(ngram: &[u32], dim: usize, seed: u64) -> Vec<f32> {
    let bytes: Vec<u8> = ngram.iter().flat_map(|t| t.to_le_bytes()).collect();
    let mut state = xxh3_64_with_seed(&bytes, seed);
    (0..dim)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
