//! The longest-suffix matcher: for every token position, the slot of the longest
//! f-gram (n_max down to 2 tokens) that ends there.
//!
//! Positions are processed in chunks. For each chunk the matcher first computes
//! every suffix key (one incremental hash step per extra token, see `key.rs`) and
//! prefetches their index lines, then reads the first candidate of each key and
//! prefetches its stored n-gram, then verifies longest-first. The three passes
//! turn the two dependent cache misses per probe into many misses in flight.

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

const CHUNK: usize = 16;
const NO_CANDIDATE: u32 = u32::MAX;

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
        rec[..suffix.len()] == *suffix && rec.get(suffix.len()).is_none_or(|&t| t == TOKEN_PAD)
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
    pub fn match_into(&self, tokens: &[u32], start: usize, out: &mut Vec<Hit>) {
        let nm = self.n_max;
        let mut keys = [[0u64; MAX_N]; CHUNK];
        let mut nkeys = [0usize; CHUNK];
        let mut cand = [[NO_CANDIDATE; MAX_N]; CHUNK];
        let mut c = start;
        while c < tokens.len() {
            let m = CHUNK.min(tokens.len() - c);
            // Pass 1: suffix keys, prefetch their index lines.
            for j in 0..m {
                let p = c + j;
                let window = &tokens[(p + 1).saturating_sub(nm)..=p];
                nkeys[j] = suffix_keys(window, self.seed, &mut keys[j][..nm]);
                for &k in &keys[j][1..nkeys[j].max(1)] {
                    self.index.prefetch(k);
                }
            }
            // Pass 2: first candidates, prefetch their stored n-grams.
            for j in 0..m {
                for len in 2..=nkeys[j] {
                    let s = self.index.first_candidate(keys[j][len - 1]).unwrap_or(NO_CANDIDATE);
                    cand[j][len - 1] = s;
                    if let Some(w) = self.words.get(s as usize * nm) {
                        prefetch_read(w);
                    }
                }
            }
            // Pass 3: verify, longest first.
            for j in 0..m {
                let p = c + j;
                let mut hit = Hit::MISS;
                for len in (2..=nkeys[j]).rev() {
                    let s = cand[j][len - 1];
                    if s == NO_CANDIDATE {
                        continue;
                    }
                    let suffix = &tokens[p + 1 - len..=p];
                    let found = if self.verify(s, suffix) {
                        Some(s)
                    } else {
                        // A fingerprint or key collision: walk all candidates.
                        self.index.probe(keys[j][len - 1], |slot| self.verify(slot, suffix))
                    };
                    if let Some(slot) = found {
                        hit = Hit { slot, len: len as u32 };
                        break;
                    }
                }
                out.push(hit);
            }
            c += m;
        }
    }

    /// Matches several sequences (e.g. a prefill batch), each from its start.
    pub fn match_batch(&self, sequences: &[&[u32]]) -> Vec<Vec<Hit>> {
        sequences.iter().map(|s| self.match_tokens(s)).collect()
    }
}
