//! The longest-suffix matcher: for every token position, the slot of the longest
//! f-gram (n_max down to 2 tokens) that ends there.
//!
//! Positions are processed in chunks through a three-stage software pipeline:
//! compute every suffix key (one incremental hash step per extra token, see
//! `key.rs`) and prefetch its index line; read the first candidate of each key
//! and prefetch its stored n-gram; verify longest-first. The stages work on
//! different chunks, so the two dependent cache misses of each probe overlap
//! with the work on other chunks instead of stalling it.

use crate::format::{MAX_N, TOKEN_PAD};
use crate::index::IndexView;
use crate::key::suffix_keys;
use crate::prefetch::prefetch_read;
use crate::table::Table;

/// The match at one position: the f-gram's slot and length, or a miss (len 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Hit {
    pub slot: u32,
    /// Tokens in the matched f-gram (2..=n_max), or 0 for a miss.
    pub len: u32,
}

impl Hit {
    pub const MISS: Hit = Hit { slot: u32::MAX, len: 0 };

    pub fn is_hit(&self) -> bool {
        self.len != 0
    }

    pub fn slot(&self) -> Option<u32> {
        self.is_hit().then_some(self.slot)
    }
}

/// Positions per pipeline step.
const CHUNK: usize = 8;
/// Chunks between hashing (index prefetch) and reading candidates.
const AHEAD_B: usize = 2;
/// Chunks between reading candidates (n-gram prefetch) and verifying.
const AHEAD_C: usize = 1;
const NO_CANDIDATE: u32 = u32::MAX;

/// One chunk of positions on its way through the pipeline.
#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    len: usize,
    keys: [[u64; MAX_N]; CHUNK],
    nkeys: [usize; CHUNK],
    cand: [[u32; MAX_N]; CHUNK],
}

impl Chunk {
    const EMPTY: Chunk =
        Chunk { start: 0, len: 0, keys: [[0; MAX_N]; CHUNK], nkeys: [0; CHUNK], cand: [[NO_CANDIDATE; MAX_N]; CHUNK] };
}

/// Matches token streams against one table. Cheap to create; holds no buffers.
pub struct SuffixMatcher<'t> {
    index: IndexView<'t>,
    words: &'t [u32],
    n_max: usize,
    seed: u64,
}

impl<'t> SuffixMatcher<'t> {
    pub fn new(table: &'t Table) -> Self {
        SuffixMatcher {
            index: table.index(),
            words: table.ngram_words(),
            n_max: table.n_max(),
            seed: table.header().key_seed,
        }
    }

    /// True if the n-gram stored at `slot` is exactly `suffix`.
    #[inline]
    fn verify(&self, slot: u32, suffix: &[u32]) -> bool {
        let n = self.n_max;
        let Some(rec) = self.words.get(slot as usize * n..slot as usize * n + n) else {
            return false;
        };
        // An element loop, not a slice comparison: for a few u32s a memcmp call costs more.
        suffix.iter().zip(rec).all(|(a, b)| a == b) && rec.get(suffix.len()).is_none_or(|&t| t == TOKEN_PAD)
    }

    /// All positions of `tokens`.
    pub fn match_tokens(&self, tokens: &[u32]) -> Vec<Hit> {
        let mut out = Vec::with_capacity(tokens.len());
        self.match_into(tokens, 0, &mut out);
        out
    }

    /// Appends the hits of positions `start..tokens.len()` to `out`; the tokens
    /// before `start` serve as context only (a decode step passes the last
    /// n_max - 1 tokens of the sequence as context and the new token after them).
    ///
    /// A three-stage software pipeline over chunks of positions: stage A hashes
    /// chunk i and prefetches its index lines, stage B reads the first candidates
    /// of chunk i - 1 and prefetches their stored n-grams, stage C verifies chunk
    /// i - 2. Each memory access is issued a whole stage before it is needed.
    pub fn match_into(&self, tokens: &[u32], start: usize, out: &mut Vec<Hit>) {
        let n_chunks = tokens.len().saturating_sub(start).div_ceil(CHUNK);
        out.reserve(tokens.len().saturating_sub(start));
        const RING: usize = AHEAD_B + AHEAD_C + 1;
        let mut ring = [Chunk::EMPTY; RING];
        for i in 0..n_chunks + AHEAD_B + AHEAD_C {
            if i < n_chunks {
                let c = start + i * CHUNK;
                self.hash_and_prefetch(tokens, c, CHUNK.min(tokens.len() - c), &mut ring[i % RING]);
            }
            if let Some(b) = i.checked_sub(AHEAD_B).filter(|&b| b < n_chunks) {
                self.candidates_and_prefetch(&mut ring[b % RING]);
            }
            if let Some(c) = i.checked_sub(AHEAD_B + AHEAD_C).filter(|&c| c < n_chunks) {
                self.verify_chunk(tokens, &ring[c % RING], out);
            }
        }
    }

    /// Stage A: suffix keys of every position, index lines prefetched.
    #[inline]
    fn hash_and_prefetch(&self, tokens: &[u32], start: usize, len: usize, ch: &mut Chunk) {
        let nm = self.n_max;
        ch.start = start;
        ch.len = len;
        for j in 0..len {
            let p = start + j;
            let window = &tokens[(p + 1).saturating_sub(nm)..=p];
            ch.nkeys[j] = suffix_keys(window, self.seed, &mut ch.keys[j][..nm]);
            for &k in &ch.keys[j][1..ch.nkeys[j].max(1)] {
                self.index.prefetch(k);
            }
        }
    }

    /// Stage B: first candidate of every key, stored n-grams prefetched.
    #[inline]
    fn candidates_and_prefetch(&self, ch: &mut Chunk) {
        let nm = self.n_max;
        for j in 0..ch.len {
            for len in 2..=ch.nkeys[j] {
                let s = self.index.first_candidate(ch.keys[j][len - 1]).unwrap_or(NO_CANDIDATE);
                ch.cand[j][len - 1] = s;
                if let Some(w) = self.words.get(s as usize * nm) {
                    prefetch_read(w);
                }
            }
        }
    }

    /// Stage C: the longest verified candidate of every position.
    #[inline]
    fn verify_chunk(&self, tokens: &[u32], ch: &Chunk, out: &mut Vec<Hit>) {
        for j in 0..ch.len {
            let p = ch.start + j;
            let mut hit = Hit::MISS;
            for len in (2..=ch.nkeys[j]).rev() {
                let s = ch.cand[j][len - 1];
                if s == NO_CANDIDATE {
                    continue;
                }
                let suffix = &tokens[p + 1 - len..=p];
                let found = if self.verify(s, suffix) {
                    Some(s)
                } else {
                    // A fingerprint or key collision: walk all candidates.
                    self.index.probe(ch.keys[j][len - 1], |slot| self.verify(slot, suffix))
                };
                if let Some(slot) = found {
                    hit = Hit { slot, len: len as u32 };
                    break;
                }
            }
            out.push(hit);
        }
    }

    /// Matches several sequences (e.g. a prefill batch), each from its start.
    pub fn match_batch(&self, sequences: &[&[u32]]) -> Vec<Vec<Hit>> {
        sequences.iter().map(|s| self.match_tokens(s)).collect()
    }
}
