//! `count_ngrams` must equal a naive counter, with and without spilling.

use std::collections::HashMap;

use proptest::prelude::*;
use trainer::{count_ngrams_with_stats, CountConfig, NgramCount};

fn naive(docs: &[Vec<u32>], n_min: usize, n_max: usize) -> Vec<NgramCount> {
    let mut map: HashMap<Vec<u32>, u64> = HashMap::new();
    for doc in docs {
        for n in n_min..=n_max {
            for w in doc.windows(n) {
                *map.entry(w.to_vec()).or_default() += 1;
            }
        }
    }
    let mut out: Vec<NgramCount> = map.into_iter().map(|(tokens, count)| NgramCount { tokens, count }).collect();
    out.sort_by(|a, b| a.tokens.cmp(&b.tokens));
    out
}

/// Random corpora over a vocabulary of 1..20 tokens. The first document has
/// at least 6 tokens, so every n_max <= 5 yields at least two occurrences.
fn corpus() -> impl Strategy<Value = (Vec<Vec<u32>>, usize, usize)> {
    (1u32..20, 2usize..=5).prop_flat_map(|(vocab, n_max)| {
        let doc = |min| prop::collection::vec(0..vocab, min..30);
        (doc(6), prop::collection::vec(doc(0), 0..6), 1..=n_max, Just(n_max)).prop_map(
            |(first, mut rest, n_min, n_max)| {
                rest.insert(0, first);
                (rest, n_min, n_max)
            },
        )
    })
}

fn config(n_min: usize, n_max: usize, budget: usize, dir: &std::path::Path) -> CountConfig {
    CountConfig { n_min, n_max, memory_budget_bytes: budget, temp_dir: Some(dir.to_path_buf()) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_naive_in_memory((docs, n_min, n_max) in corpus()) {
        let dir = tempfile::tempdir().unwrap();
        let (got, stats) =
            count_ngrams_with_stats(&docs, &config(n_min, n_max, usize::MAX, dir.path())).unwrap();
        prop_assert_eq!(stats.spilled_runs, 0);
        prop_assert_eq!(got, naive(&docs, n_min, n_max));
    }

    #[test]
    fn matches_naive_when_spilling((docs, n_min, n_max) in corpus(), budget in 0usize..200) {
        // Any budget below one entry still holds one entry, so every new
        // n-gram spills: guaranteed several runs.
        let dir = tempfile::tempdir().unwrap();
        let (got, stats) =
            count_ngrams_with_stats(&docs, &config(n_min, n_max, budget, dir.path())).unwrap();
        prop_assert!(stats.spilled_runs > 1, "{:?}", stats);
        prop_assert_eq!(got, naive(&docs, n_min, n_max));
        // Run files are temporary.
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
