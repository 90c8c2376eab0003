//! The f-grams as the trainer sees them: a hash set queried for the longest
//! f-gram ending at each position, the same answer the engine's matcher gives
//! (its suffix markers make it equal to this naive longest match).

use std::collections::HashMap;

use crate::ngram_count::NgramCount;

pub struct FgramSet {
    map: HashMap<Vec<u32>, u32>,
    n_max: usize,
    fingerprint: u64,
}

impl FgramSet {
    /// F-grams of 2..=n_max tokens; `n_max` is the longest allowed length.
    pub fn new(fgrams: &[NgramCount], n_max: usize) -> FgramSet {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut map = HashMap::with_capacity(fgrams.len());
        for (i, f) in fgrams.iter().enumerate() {
            h.update(&(f.tokens.len() as u32).to_le_bytes());
            for t in &f.tokens {
                h.update(&t.to_le_bytes());
            }
            map.insert(f.tokens.clone(), i as u32);
        }
        FgramSet { map, n_max, fingerprint: h.digest() }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn n_max(&self) -> usize {
        self.n_max
    }

    /// xxh3 over the f-grams in order: ties a checkpoint to its f-gram list.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Length of the longest f-gram that ends at `window[t]` and starts inside
    /// the window; 1 when none does (the position then takes the token's
    /// embedding T(token)).
    pub fn longest(&self, window: &[u32], t: usize) -> usize {
        let max = self.n_max.min(t + 1);
        (2..=max).rev().find(|&n| self.map.contains_key(&window[t + 1 - n..=t])).unwrap_or(1)
    }
}

/// What a batch of windows needs: the distinct f-grams (2+ tokens) ending at
/// its positions, the distinct tokens at positions where none ends, and per
/// position which of the two. The rows of a batch are laid out as
/// `[f-gram embeddings of fgrams..., T rows of tokens...]`, and `index`
/// points into that.
pub struct BatchNgrams<'a> {
    pub fgrams: Vec<&'a [u32]>,
    pub tokens: Vec<u32>,
    /// Row-major [windows, positions] indices into `fgrams ++ tokens`.
    pub index: Vec<u32>,
}

impl<'a> BatchNgrams<'a> {
    pub fn new(set: &FgramSet, windows: &[&'a [u32]]) -> BatchNgrams<'a> {
        // Ids are handed out in one pass, f-grams as even numbers and tokens
        // as odd ones, then mapped onto the final layout.
        let mut ids: HashMap<&'a [u32], u32> = HashMap::new();
        let (mut fgrams, mut tokens) = (Vec::new(), Vec::new());
        let mut index = Vec::with_capacity(windows.iter().map(|w| w.len()).sum());
        for w in windows {
            for t in 0..w.len() {
                let n = set.longest(w, t);
                let g = &w[t + 1 - n..=t];
                let id = *ids.entry(g).or_insert_with(|| {
                    if n >= 2 {
                        fgrams.push(g);
                        2 * (fgrams.len() as u32 - 1)
                    } else {
                        tokens.push(g[0]);
                        2 * (tokens.len() as u32 - 1) + 1
                    }
                });
                index.push(id);
            }
        }
        let n_fgrams = fgrams.len() as u32;
        for i in &mut index {
            *i = if *i % 2 == 0 { *i / 2 } else { n_fgrams + *i / 2 };
        }
        BatchNgrams { fgrams, tokens, index }
    }
}
