//! SCONE f-gram selection: the most frequent n-grams become the f-grams
//! that get precomputed embeddings.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::ngram_count::NgramCount;

/// Heap entry ordered by rank, *worse ranks greater*: count descending,
/// then shorter n first, then tokens ascending. A max-heap of these keeps
/// the worst kept candidate on top, ready to be evicted.
struct Ranked(NgramCount);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        b.count.cmp(&a.count).then_with(|| a.tokens.len().cmp(&b.tokens.len())).then_with(|| a.tokens.cmp(&b.tokens))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// Selects the f-grams: n-grams with `count >= min_count`, the `top_k` most
/// frequent, hottest first. Ties are broken deterministically by shorter n
/// first, then tokens ascending, so the result does not depend on input
/// order.
///
/// As in the SCONE paper, n-grams of all lengths (2..=n_max there) compete
/// in one global ranking by frequency; there is no per-length quota.
///
/// Streams its input keeping only `top_k` candidates, so it can consume a
/// [`MergedCounts`](crate::ngram_count::MergedCounts) stream directly (see
/// [`try_select_fgrams`]).
pub fn select_fgrams(counts: impl IntoIterator<Item = NgramCount>, top_k: usize, min_count: u64) -> Vec<NgramCount> {
    match try_select_fgrams(counts.into_iter().map(Ok::<_, std::convert::Infallible>), top_k, min_count) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// [`select_fgrams`] over a fallible stream; stops at the first error.
pub fn try_select_fgrams<E>(
    counts: impl IntoIterator<Item = Result<NgramCount, E>>,
    top_k: usize,
    min_count: u64,
) -> Result<Vec<NgramCount>, E> {
    let mut heap: BinaryHeap<Ranked> = BinaryHeap::new();
    for item in counts {
        let item = item?;
        if top_k == 0 || item.count < min_count {
            continue;
        }
        let cand = Ranked(item);
        if heap.len() < top_k {
            heap.push(cand);
        } else if let Some(mut worst) = heap.peek_mut() {
            if cand < *worst {
                *worst = cand;
            }
        }
    }
    Ok(heap.into_sorted_vec().into_iter().map(|r| r.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ng(tokens: &[u32], count: u64) -> NgramCount {
        NgramCount { tokens: tokens.to_vec(), count }
    }

    #[test]
    fn ranks_by_count_then_length_then_tokens() {
        let input =
            vec![ng(&[5, 1], 3), ng(&[1, 2, 3], 7), ng(&[2, 2], 7), ng(&[1, 9], 7), ng(&[0, 0], 1), ng(&[4, 4, 4], 3)];
        let want = vec![ng(&[1, 9], 7), ng(&[2, 2], 7), ng(&[1, 2, 3], 7), ng(&[5, 1], 3)];
        assert_eq!(select_fgrams(input.clone(), 4, 2), want);
        let mut reversed = input.clone();
        reversed.reverse();
        assert_eq!(select_fgrams(reversed, 4, 2), want);
        assert_eq!(select_fgrams(input.clone(), 100, 2).len(), 5);
        assert!(select_fgrams(input.clone(), 0, 0).is_empty());
        assert!(select_fgrams(input, 3, 8).is_empty());
    }

    #[test]
    fn try_select_stops_at_error() {
        let items = vec![Ok(ng(&[1, 2], 3)), Err("boom"), Ok(ng(&[3, 4], 9))];
        assert_eq!(try_select_fgrams(items, 2, 1), Err("boom"));
    }
}
