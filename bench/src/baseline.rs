//! The baseline a user would write without scone: a std `HashMap<Vec<u32>, u32>`
//! (SipHash) from n-gram to row index, a `Vec<f16>` of rows, a longest-suffix
//! matcher that slices and looks up every suffix, and a row-by-row gather.

use std::collections::HashMap;

use engine::Hit;
use half::f16;

use crate::synth::{fgram, row, Spec, N_MAX};

pub struct Baseline {
    pub map: HashMap<Vec<u32>, u32>,
    /// `rows[i * dim..(i + 1) * dim]` is row i; rows are in rank order, the same
    /// order as the table's slots, so both gather the same bytes for the same ids.
    pub rows: Vec<f16>,
    pub dim: usize,
}

impl Baseline {
    pub fn build(spec: &Spec) -> Self {
        let n = spec.fgrams as usize;
        // Sizes are known up front; reserving is what a careful user does.
        let mut map = HashMap::with_capacity(n);
        let mut rows = Vec::with_capacity(n * spec.dim);
        let mut buf = vec![0f32; spec.dim];
        for i in 0..spec.fgrams {
            row(spec, i, &mut buf);
            rows.extend(buf.iter().map(|&v| f16::from_f32(v)));
            map.insert(fgram(spec, i).as_slice().to_vec(), i as u32);
        }
        Baseline { map, rows, dim: spec.dim }
    }

    #[inline]
    pub fn lookup(&self, ngram: &[u32]) -> Option<u32> {
        self.map.get(ngram).copied()
    }

    /// For each position, the longest suffix of length n_max..=2 in the map.
    pub fn match_into(&self, tokens: &[u32], out: &mut Vec<Hit>) {
        for p in 0..tokens.len() {
            let mut hit = Hit::MISS;
            for n in (2..=N_MAX.min(p + 1)).rev() {
                if let Some(&r) = self.map.get(&tokens[p + 1 - n..=p]) {
                    hit = Hit { slot: r, len: n as u32 };
                    break;
                }
            }
            out.push(hit);
        }
    }

    /// Appends the rows of `ids` to `out`, one slice copy per row.
    pub fn gather(&self, ids: &[u32], out: &mut Vec<f16>) {
        out.clear();
        for &i in ids {
            let i = i as usize;
            out.extend_from_slice(&self.rows[i * self.dim..(i + 1) * self.dim]);
        }
    }
}
