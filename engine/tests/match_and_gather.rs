mod common;

use common::*;
use engine::dtype::{convert_row, decode_row};
use engine::{gather, Dtype, GatherError, GatherOptions, Hit, SuffixMatcher, Table, MISS_SLOT};
use proptest::prelude::*;

/// The reference matcher: at each position try every length from n_max down,
/// looking the suffix up in a plain HashMap.
fn naive_match(
    map: &std::collections::HashMap<Vec<u32>, usize>,
    n_max: usize,
    tokens: &[u32],
) -> Vec<Option<(usize, usize)>> {
    (0..tokens.len())
        .map(|p| (2..=n_max.min(p + 1)).rev().find_map(|len| map.get(&tokens[p + 1 - len..=p]).map(|&rec| (rec, len))))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn matcher_equals_naive_reference(
        seed in 0u64..1000,
        n in 1usize..300,
        vocab in 2u32..12,
        n_max in 2usize..6,
        key_bits in prop_oneof![Just(64u32), Just(5u32)],
        stream in proptest::collection::vec(0u32..14, 0..400),
        start_frac in 0.0f64..1.0,
    ) {
        let spec = random_spec(seed, n, vocab, n_max, 2, false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.scone");
        let mut cfg = config(2, Dtype::F32, n_max, vocab);
        cfg.key_bits = key_bits;
        build(&path, &spec, cfg);
        let t = Table::open(&path).unwrap();
        let m = SuffixMatcher::new(&t);
        let map = naive_map(&spec);
        // Tokens >= vocab appear in the stream too: they must simply never match.
        let want = naive_match(&map, n_max, &stream);
        let got = m.match_tokens(&stream);
        prop_assert_eq!(got.len(), stream.len());
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            match w {
                None => prop_assert_eq!(*g, Hit::MISS, "position {}", p),
                Some((rec, len)) => {
                    prop_assert_eq!(g.len as usize, *len, "position {}", p);
                    prop_assert_eq!(t.ngram(g.slot).unwrap(), spec.ngrams[*rec].as_slice());
                }
            }
        }
        // Matching a tail with the head as context gives the same hits.
        let start = (stream.len() as f64 * start_frac) as usize;
        let mut tail = Vec::new();
        m.match_into(&stream, start, &mut tail);
        prop_assert_eq!(&tail[..], &got[start..]);
    }
}

#[test]
fn gather_matches_rows_in_every_dtype_with_misses_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    for (i, stored) in [Dtype::F32, Dtype::F16, Dtype::BF16].into_iter().enumerate() {
        // dim 300 f32 output = 1200 B a row; 4000 slots = 4.8 MB takes the threaded path.
        let spec = random_spec(20 + i as u64, 700, 100, 3, 300, true);
        let path = dir.path().join(format!("g{i}.scone"));
        build(&path, &spec, config(300, stored, 3, 100));
        let t = Table::open(&path).unwrap();
        let mut slots: Vec<u32> = (0..4000u32).map(|k| (k * 7919) % 700).collect();
        slots[5] = MISS_SLOT;
        slots[3999] = MISS_SLOT;
        slots[10] = slots[11];
        for out_dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            for max_threads in [1, 0] {
                let row_out = 300 * out_dt.size();
                let mut out = vec![0xAAu8; slots.len() * row_out];
                gather(&t, &slots, GatherOptions { dtype: out_dt, max_threads }, &mut out).unwrap();
                for (k, &s) in slots.iter().enumerate() {
                    let got = &out[k * row_out..(k + 1) * row_out];
                    if s == MISS_SLOT {
                        assert!(got.iter().all(|&b| b == 0), "miss rows are zero");
                        continue;
                    }
                    let mut want = vec![0u8; row_out];
                    convert_row(t.row_bytes(s).unwrap(), stored, &mut want, out_dt);
                    assert_eq!(got, &want[..], "slot {s} stored {stored} out {out_dt}");
                }
                // And the values are the input's (they are exact in every dtype).
                let rec = spec.ngrams.iter().position(|g| t.lookup(g) == Some(slots[0])).unwrap();
                assert_eq!(decode_row(&out[..row_out], out_dt), spec.rows[rec]);
            }
        }
        let mut small = vec![0u8; 10];
        assert!(matches!(
            gather(&t, &[1], GatherOptions { dtype: Dtype::F32, max_threads: 1 }, &mut small),
            Err(GatherError::BufferSize { .. })
        ));
        let mut out = vec![0u8; 2 * 1200];
        let e = gather(&t, &[1, 700], GatherOptions { dtype: Dtype::F32, max_threads: 1 }, &mut out).unwrap_err();
        assert!(matches!(e, GatherError::SlotOutOfRange { position: 1, slot: 700, rows: 700 }));
    }
}
