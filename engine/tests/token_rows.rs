//! The dense per-token block: one row per token id, served where no f-gram matches.

mod common;

use common::*;
use engine::{
    gather, gather_with_token_rows, BuildError, Dtype, GatherError, GatherOptions, OpenError, OpenOptions,
    SuffixMatcher, Table, TableBuilder, MISS_SLOT,
};

const VOCAB: u32 = 20;
const DIM: usize = 5;

fn token_row(t: u32) -> Vec<f32> {
    (0..DIM).map(|c| (t as f32) * 0.5 - c as f32 * 0.125).collect()
}

fn build_with_token_rows(path: &std::path::Path, dtype: Dtype, token_rows: u32) -> Result<(), BuildError> {
    let spec = random_spec(11, 40, VOCAB, 3, DIM, true);
    let mut b = TableBuilder::create(path, config(DIM, dtype, 3, VOCAB)).unwrap();
    for (i, (g, r)) in spec.ngrams.iter().zip(&spec.rows).enumerate() {
        b.push(g, r, spec.counts.as_ref().map(|c| c[i]))?;
    }
    for t in 0..token_rows {
        assert_eq!(b.token_rows_pushed(), t as u64);
        b.push_token_row(&token_row(t))?;
    }
    b.finish().map(|_| ())
}

#[test]
fn misses_get_their_tokens_row_in_every_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let path = dir.path().join(format!("{dtype}.scone"));
        build_with_token_rows(&path, dtype, VOCAB).unwrap();
        let t = Table::open_with(&path, OpenOptions { verify_rows: true, ..Default::default() }).unwrap();
        assert!(t.has_token_rows());
        assert!(t.token_row_bytes(VOCAB).is_none());
        let tokens: Vec<u32> = (0..200u32).map(|i| (i * 7 + i / 3) % VOCAB).collect();
        let slots: Vec<u32> = SuffixMatcher::new(&t).match_tokens(&tokens).iter().map(|h| h.slot).collect();
        assert!(slots.contains(&MISS_SLOT) && slots.iter().any(|&s| s != MISS_SLOT), "test needs hits and misses");
        let opts = GatherOptions { dtype: Dtype::F32, max_threads: 1 };
        let row = DIM * 4;
        let mut plain = vec![0u8; tokens.len() * row];
        gather(&t, &slots, opts, &mut plain).unwrap();
        let mut out = vec![0u8; tokens.len() * row];
        gather_with_token_rows(&t, &slots, &tokens, opts, &mut out).unwrap();
        for (i, (&s, &tok)) in slots.iter().zip(&tokens).enumerate() {
            let got: Vec<f32> = out[i * row..(i + 1) * row]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            if s == MISS_SLOT {
                assert_eq!(got, token_row(tok), "{dtype}: position {i}"); // values exact in f16/bf16
            } else {
                assert_eq!(&out[i * row..(i + 1) * row], &plain[i * row..(i + 1) * row]);
            }
        }
        let e = gather_with_token_rows(&t, &slots[..3], &tokens[..2], opts, &mut out[..3 * row]).unwrap_err();
        assert!(matches!(e, GatherError::TokensLength { slots: 3, tokens: 2 }), "{e}");
        let e = gather_with_token_rows(&t, &[MISS_SLOT], &[VOCAB], opts, &mut out[..row]).unwrap_err();
        assert!(matches!(e, GatherError::TokenOutOfRange { position: 0, token: VOCAB, .. }), "{e}");
    }
}

#[test]
fn a_partial_block_is_refused_and_leaves_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let e = build_with_token_rows(&path, Dtype::F32, VOCAB - 1).unwrap_err();
    assert!(e.to_string().contains("19 token rows pushed"), "{e}");
    assert!(!path.exists());
    assert_eq!(dir_entries(dir.path()), Vec::<String>::new());
    let e = build_with_token_rows(&path, Dtype::F32, VOCAB + 1).unwrap_err();
    assert!(matches!(e, BuildError::BadTokenRow { token: 20, .. }), "{e}");
}

#[test]
fn without_the_block_misses_stay_zero_and_damage_to_it_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.scone");
    build_with_token_rows(&plain, Dtype::F32, 0).unwrap();
    let t = Table::open(&plain).unwrap();
    assert!(!t.has_token_rows());
    let mut out = vec![1u8; DIM * 4];
    gather_with_token_rows(&t, &[MISS_SLOT], &[3], GatherOptions { dtype: Dtype::F32, max_threads: 1 }, &mut out)
        .unwrap();
    assert!(out.iter().all(|&b| b == 0));

    let path = dir.path().join("t.scone");
    build_with_token_rows(&path, Dtype::F32, VOCAB).unwrap();
    let section = *Table::open(&path).unwrap().header().section(engine::format::SectionKind::TokenRows).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[section.offset as usize + 7] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let t = Table::open(&path).unwrap(); // like rows, checked by verify(), not at every open
    let e = t.verify().unwrap_err();
    assert!(matches!(e, OpenError::Checksum { .. }) && e.to_string().contains("token rows"), "{e}");
}
