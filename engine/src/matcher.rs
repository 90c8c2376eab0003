//! The longest-suffix matcher: for every token position, the slot of the longest
//! f-gram (n_max down to 2 tokens) that ends there.
//!
//! Suffix keys come from one incremental hash step per extra token (`key.rs`).
//! Probes go shortest-first and stop at the first suffix with no index entry,
//! which the builder's suffix markers make exact. Positions flow through a
//! software pipeline (see [`SuffixMatcher::match_into`]) so that the dependent
//! cache misses of one position overlap with the work on others.

use crate::format::{MAX_N, TOKEN_PAD};
use crate::index::IndexView;
use crate::key::{first, step, suffix_keys};
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
const CHUNK: usize = 32;
/// Chunks between one stage and the next: how far ahead each prefetch is issued.
const DISTANCE: usize = 1;
const NONE: u32 = u32::MAX;

/// One chunk of positions on its way through the pipeline. Small, so that
/// short calls (a decode step, a verse) pay little to set the ring up.
#[derive(Clone, Copy)]
struct Chunk {
    start: usize,
    len: usize,
    /// Key of the next suffix length to probe at each position; each stage
    /// extends it by one token (`key::step`), so dead positions cost no hashing.
    key: [u64; CHUNK],
    /// Suffix lengths available at each position (fewer near the start).
    avail: [u8; CHUNK],
    /// Still extending: every suffix probed so far has an index entry.
    alive: [bool; CHUNK],
    /// Longest length with an f-gram candidate so far, and that candidate.
    best_len: [u8; CHUNK],
    best_slot: [u32; CHUNK],
}

impl Chunk {
    const EMPTY: Chunk = Chunk {
        start: 0,
        len: 0,
        key: [0; CHUNK],
        avail: [0; CHUNK],
        alive: [false; CHUNK],
        best_len: [0; CHUNK],
        best_slot: [NONE; CHUNK],
    };
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
    /// Every proper suffix of an f-gram has an index entry (an f-gram or a marker,
    /// see docs/FORMAT.md), so a position stops extending at the first length
    /// whose suffix has no entry. The work is a software pipeline over chunks of
    /// positions: stage 0 hashes a chunk and prefetches the index lines of its
    /// 2-token suffixes; stage n - 1 probes length n for the positions still
    /// alive and prefetches length n + 1 for those that stay alive; then one
    /// stage prefetches the stored n-gram of each position's longest candidate
    /// and the last verifies it. Consecutive stages are DISTANCE chunks apart,
    /// so each access was requested that many chunks earlier.
    pub fn match_into(&self, tokens: &[u32], start: usize, out: &mut Vec<Hit>) {
        let nm = self.n_max;
        let n_chunks = tokens.len().saturating_sub(start).div_ceil(CHUNK);
        out.reserve(tokens.len().saturating_sub(start));
        // Stages: hash, probe lengths 2..=nm, prefetch n-grams, verify.
        let stages = nm + 2;
        // A chunk is reused only after it left the last stage; short inputs need
        // no more slots than chunks.
        let ring_len = ((stages - 1) * DISTANCE + 1).min(n_chunks.max(1));
        let mut ring = vec![Chunk::EMPTY; ring_len];
        for i in 0..n_chunks + (stages - 1) * DISTANCE {
            for stage in 0..stages {
                let Some(c) = i.checked_sub(stage * DISTANCE).filter(|&c| c < n_chunks) else { continue };
                let ch = &mut ring[c % ring_len];
                match stage {
                    0 => {
                        let first = start + c * CHUNK;
                        self.hash_and_prefetch(tokens, first, CHUNK.min(tokens.len() - first), ch);
                    }
                    s if s < nm => self.probe_length(tokens, ch, s + 1),
                    s if s == nm => self.prefetch_best(ch),
                    _ => self.verify_chunk(tokens, ch, out),
                }
            }
        }
    }

    /// Stage 0: keys of the 2-token suffixes; their index lines prefetched.
    #[inline]
    fn hash_and_prefetch(&self, tokens: &[u32], start: usize, len: usize, ch: &mut Chunk) {
        ch.start = start;
        ch.len = len;
        for j in 0..len {
            let p = start + j;
            let avail = (p + 1).min(self.n_max);
            ch.avail[j] = avail as u8;
            ch.alive[j] = avail >= 2;
            ch.best_len[j] = 0;
            ch.best_slot[j] = NONE;
            if avail >= 2 {
                ch.key[j] = step(first(tokens[p], self.seed), tokens[p - 1], 2, self.seed);
                self.index.prefetch(ch.key[j]);
            }
        }
    }

    /// Stage len - 1: probe the suffix of length `len` of each live position; for
    /// those that stay alive, hash the next length and prefetch its line.
    #[inline]
    fn probe_length(&self, tokens: &[u32], ch: &mut Chunk, len: usize) {
        for j in 0..ch.len {
            if !ch.alive[j] {
                continue;
            }
            let scan = self.index.scan(ch.key[j]);
            if let Some(slot) = scan.first {
                ch.best_len[j] = len as u8;
                ch.best_slot[j] = slot;
            }
            ch.alive[j] = scan.present && (ch.avail[j] as usize) > len;
            if ch.alive[j] {
                let p = ch.start + j;
                ch.key[j] = step(ch.key[j], tokens[p - len], len as u32 + 1, self.seed);
                self.index.prefetch(ch.key[j]);
            }
        }
    }

    /// Stage n_max: prefetch the stored n-gram of each position's best candidate.
    #[inline]
    fn prefetch_best(&self, ch: &Chunk) {
        for &s in &ch.best_slot[..ch.len] {
            if let Some(w) = self.words.get(s as usize * self.n_max) {
                prefetch_read(w);
            }
        }
    }

    /// Last stage: verify the best candidate of each position. If it fails (a
    /// fingerprint or key collision), probe every length from there down with
    /// full verification.
    #[inline]
    fn verify_chunk(&self, tokens: &[u32], ch: &Chunk, out: &mut Vec<Hit>) {
        for j in 0..ch.len {
            let p = ch.start + j;
            let best = ch.best_len[j] as usize;
            let hit = if best == 0 {
                Hit::MISS
            } else if self.verify(ch.best_slot[j], &tokens[p + 1 - best..=p]) {
                Hit { slot: ch.best_slot[j], len: best as u32 }
            } else {
                // Rare: recompute the suffix keys and verify every candidate.
                let mut keys = [0u64; MAX_N];
                suffix_keys(&tokens[p + 1 - best..=p], self.seed, &mut keys[..best]);
                (2..=best)
                    .rev()
                    .find_map(|len| {
                        let suffix = &tokens[p + 1 - len..=p];
                        let slot = self.index.probe(keys[len - 1], |s| self.verify(s, suffix))?;
                        Some(Hit { slot, len: len as u32 })
                    })
                    .unwrap_or(Hit::MISS)
            };
            out.push(hit);
        }
    }

    /// Matches several sequences (e.g. a prefill batch), each from its start.
    pub fn match_batch(&self, sequences: &[&[u32]]) -> Vec<Vec<Hit>> {
        sequences.iter().map(|s| self.match_tokens(s)).collect()
    }
}
