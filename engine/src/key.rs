//! n-gram keys: a seeded xxh3-64 chain over the n-gram's tokens, last token first.
//!
//! `key([t1..tn]) = step(...step(step(first(tn), t(n-1), 2), t(n-2), 3)..., t1, n)` where
//! `first(t) = xxh3_64_seed(le(t) ++ le(1u32))` and
//! `step(k, t, len) = xxh3_64_seed(le(k) ++ le(t) ++ le(len as u32))`.
//!
//! Hashing from the end lets the matcher extend the key of the suffix of length n
//! ending at a position into the key of the suffix of length n+1 with one more
//! 16-byte hash, instead of rehashing every suffix from scratch. The length is
//! part of every step's input, so suffixes of different lengths never share a chain
//! value by construction. See docs/FORMAT.md.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed a new table uses unless the builder is told otherwise.
pub const DEFAULT_KEY_SEED: u64 = 0x5C0E_F6A4_1D2B_9E37;

/// Key of the 1-gram `[token]`: the start of every chain.
#[inline]
pub fn first(token: u32, seed: u64) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&token.to_le_bytes());
    b[4..].copy_from_slice(&1u32.to_le_bytes());
    xxh3_64_with_seed(&b, seed)
}

/// Extends the key of a suffix of length `len - 1` by one token on its left.
#[inline]
pub fn step(prev: u64, token: u32, len: u32, seed: u64) -> u64 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&prev.to_le_bytes());
    b[8..12].copy_from_slice(&token.to_le_bytes());
    b[12..].copy_from_slice(&len.to_le_bytes());
    xxh3_64_with_seed(&b, seed)
}

/// The key of a whole n-gram (n >= 1). Returns 0 for an empty slice, which no
/// table stores (n-grams have at least two tokens).
pub fn ngram_key(tokens: &[u32], seed: u64) -> u64 {
    let Some((&last, rest)) = tokens.split_last() else {
        return 0;
    };
    let mut k = first(last, seed);
    for (i, &t) in rest.iter().rev().enumerate() {
        k = step(k, t, i as u32 + 2, seed);
    }
    k
}

/// Keys of the suffixes of lengths 1..=out.len() that end at `tokens.last()`;
/// `out[n-1]` is the key of the suffix of length n. Only as many entries as there
/// are tokens are written; the number written is returned.
#[inline]
pub fn suffix_keys(tokens: &[u32], seed: u64, out: &mut [u64]) -> usize {
    let n = out.len().min(tokens.len());
    if n == 0 {
        return 0;
    }
    let end = tokens.len() - 1;
    let mut k = first(tokens[end], seed);
    out[0] = k;
    for len in 2..=n {
        k = step(k, tokens[end + 1 - len], len as u32, seed);
        out[len - 1] = k;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keys_equal_whole_keys() {
        let toks = [5u32, 9, 1, 77, 3];
        let mut out = [0u64; 4];
        assert_eq!(suffix_keys(&toks, 7, &mut out), 4);
        for n in 1..=4 {
            assert_eq!(out[n - 1], ngram_key(&toks[toks.len() - n..], 7));
        }
        // Short context: only as many keys as tokens.
        assert_eq!(suffix_keys(&toks[..2], 7, &mut out), 2);
        assert_eq!(out[1], ngram_key(&toks[..2], 7));
    }

    #[test]
    fn order_length_and_seed_matter() {
        assert_ne!(ngram_key(&[1, 2], 0), ngram_key(&[2, 1], 0));
        assert_ne!(ngram_key(&[1, 2], 0), ngram_key(&[1, 2], 1));
        assert_ne!(ngram_key(&[0, 0], 0), ngram_key(&[0, 0, 0], 0));
    }
}
