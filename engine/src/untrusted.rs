//! Drives every read path over a table file that may be damaged or crafted.
//! Used by the fuzz targets (fuzz/) and by the tests: whatever the bytes, this
//! must return without panicking, and whatever it reads must be consistent.

use std::path::Path;

use crate::{gather, Dtype, GatherOptions, SuffixMatcher, Table, MISS_SLOT};

/// Opens the file and, if it opens, looks up every stored n-gram, matches a
/// token stream made of them, and gathers rows in every dtype. Returns whether
/// the table opened. Panics only on an inconsistency (a bug), never on bad bytes.
pub fn open_and_exercise(path: &Path) -> bool {
    let Ok(t) = Table::open(path) else { return false };
    let _ = t.verify();
    let rows = t.rows().min(4096) as u32;
    let mut stream = Vec::new();
    for slot in 0..rows {
        let Some(g) = t.ngram(slot).map(<[u32]>::to_vec) else { continue };
        if let Some(found) = t.lookup(&g) {
            // A hit always verifies against the stored n-gram.
            assert_eq!(t.ngram(found), Some(g.as_slice()));
        }
        stream.extend_from_slice(&g);
    }
    let hits = SuffixMatcher::new(&t).match_tokens(&stream);
    assert_eq!(hits.len(), stream.len());
    for (p, h) in hits.iter().enumerate() {
        if let Some(s) = h.slot() {
            let g = t.ngram(s).expect("a hit's slot has a stored n-gram");
            assert!(g.len() == h.len as usize && stream[..=p].ends_with(g), "hit must be a suffix");
        }
    }
    let mut slots: Vec<u32> = (0..rows.min(64)).collect();
    slots.push(MISS_SLOT);
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let mut out = vec![0u8; slots.len() * t.dim() * dtype.size()];
        let _ = gather(&t, &slots, GatherOptions { dtype, max_threads: 1 }, &mut out);
    }
    true
}

/// Arbitrary bytes as the builder's n-gram text file (the `ngram_lines`
/// target): every line parses or fails with an error.
pub fn exercise_ngram_lines(data: &[u8]) {
    let lines = crate::ingest::NgramLines::from_reader("fuzz.txt", std::io::Cursor::new(data));
    for (tokens, _count) in lines.flatten() {
        assert!(!tokens.is_empty());
    }
}

/// Arbitrary bytes as an embeddings file, .npy and .safetensors (the
/// `npy_file` target): open and read every row without panicking.
pub fn exercise_embeddings(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    for name in ["e.npy", "e.safetensors"] {
        let path = dir.path().join(name);
        if std::fs::write(&path, data).is_err() {
            return;
        }
        if let Ok(src) = crate::ingest::open_embeddings(&path, None) {
            let mut row = vec![0f32; src.dim()];
            for r in 0..src.rows().min(1024) {
                let _ = src.read_row_f32(r, &mut row);
            }
        }
    }
}

/// Arbitrary bytes as a table file (the `table_file` target).
pub fn exercise_table_bytes(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("t.scone");
    if std::fs::write(&path, data).is_ok() {
        open_and_exercise(&path);
    }
}

/// The model-based check (the `model_table` target): the bytes describe a
/// table (shape, dtype, key bits, n-grams, counts); it is built, opened and
/// verified, and every answer is compared with a `HashMap` reference: each
/// stored n-gram's row and count, the presence of every n-gram of a probe
/// stream, and the longest f-gram the matcher finds at each position.
/// Panics on any disagreement (a bug).
pub fn model_check(data: &[u8]) {
    use std::collections::HashMap;
    if data.len() < 6 {
        return;
    }
    let n_max = 2 + data[0] as usize % 3;
    let vocab = 2 + data[1] as u32 % 20;
    let dim = 1 + data[2] as usize % 5;
    let dtype = [Dtype::F32, Dtype::F16, Dtype::BF16][data[3] as usize % 3];
    // Few key bits force colliding keys, which must all stay retrievable.
    let key_bits = if data[4] & 1 == 1 { 64 } else { 3 + data[4] as u32 % 8 };
    let with_counts = data[5] & 1 == 1;
    let body = &data[6..];

    // Records: a length byte, then that many token bytes; duplicates skipped.
    let mut model: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut ngrams: Vec<Vec<u32>> = Vec::new();
    let mut at = 0;
    while at < body.len() && ngrams.len() < 200 {
        let len = 2 + body[at] as usize % (n_max - 1);
        let Some(toks) = body.get(at + 1..at + 1 + len) else { break };
        at += 1 + len;
        let g: Vec<u32> = toks.iter().map(|&b| b as u32 % vocab).collect();
        if !model.contains_key(&g) {
            model.insert(g.clone(), ngrams.len());
            ngrams.push(g);
        }
    }
    // Exact in every dtype: multiples of 1/8 below 32.
    let row = |i: usize| -> Vec<f32> { (0..dim).map(|j| ((i * 7 + j) % 256) as f32 / 8.0).collect() };
    let count = |i: usize| (i as u64 * 2_654_435_761) % 1000;

    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("model.scone");
    let mut cfg = crate::BuildConfig::new(dim as u32, dtype, n_max as u32, vocab);
    cfg.key_bits = key_bits;
    let mut b = crate::TableBuilder::create(&path, cfg).expect("create");
    for (i, g) in ngrams.iter().enumerate() {
        b.push(g, &row(i), with_counts.then(|| count(i))).expect("push a valid record");
    }
    if ngrams.is_empty() {
        assert!(matches!(b.finish(), Err(crate::BuildError::Empty)));
        return;
    }
    b.finish().expect("finish");
    let t = Table::open(&path).expect("a table the builder wrote opens");
    t.verify().expect("and verifies");

    let mut out = vec![0u8; dim * 4];
    for (i, g) in ngrams.iter().enumerate() {
        let slot = t.lookup(g).expect("every stored n-gram is found");
        assert_eq!(t.ngram(slot), Some(g.as_slice()));
        gather(&t, &[slot], GatherOptions { dtype: Dtype::F32, max_threads: 1 }, &mut out).expect("gather");
        let got: Vec<f32> = out.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, row(i), "row of record {i}");
        assert_eq!(t.count(slot), with_counts.then(|| count(i)));
    }
    // The probe stream: the body's bytes as tokens.
    let stream: Vec<u32> = body.iter().map(|&b| b as u32 % vocab).collect();
    let hits = SuffixMatcher::new(&t).match_tokens(&stream);
    assert_eq!(hits.len(), stream.len());
    for (p, h) in hits.iter().enumerate() {
        let want = (2..=n_max.min(p + 1)).rev().find(|&len| model.contains_key(&stream[p + 1 - len..=p]));
        match want {
            Some(len) => {
                let g = &stream[p + 1 - len..=p];
                assert_eq!((h.len as usize, h.slot().and_then(|s| t.ngram(s))), (len, Some(g)), "position {p}");
            }
            None => assert!(!h.is_hit(), "position {p}: the matcher found an f-gram the model has not"),
        }
        for len in 2..=n_max.min(p + 1) {
            let g = &stream[p + 1 - len..=p];
            assert_eq!(t.lookup(g).is_some(), model.contains_key(g), "lookup of {g:?}");
        }
    }
}

/// Arbitrary bytes as a token stream (ids 0..10) against a small fixed table
/// (the `match_tokens` target): the matcher agrees with a naive
/// longest-suffix lookup.
pub fn exercise_match_tokens(data: &[u8]) {
    use std::sync::OnceLock;
    static T: OnceLock<Option<(tempfile::TempDir, Table)>> = OnceLock::new();
    let Some((_, t)) = T.get_or_init(match_table) else { return };
    let tokens: Vec<u32> = data.iter().map(|&b| (b % 10) as u32).collect();
    let hits = SuffixMatcher::new(t).match_tokens(&tokens);
    for (p, h) in hits.iter().enumerate() {
        let want = (2..=4.min(p + 1)).rev().find_map(|len| t.lookup(&tokens[p + 1 - len..=p]).map(|s| (s, len)));
        assert_eq!(h.slot().map(|s| (s, h.len as usize)), want);
    }
}

fn match_table() -> Option<(tempfile::TempDir, Table)> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("t.scone");
    let mut b = crate::TableBuilder::create(&path, crate::BuildConfig::new(2, Dtype::F32, 4, 8)).ok()?;
    for a in 0..8u32 {
        for c in 0..8u32 {
            if (a * 3 + c) % 4 != 0 {
                b.push(&[a, c], &[a as f32, c as f32], None).ok()?;
            }
            if (a + c) % 5 == 0 {
                b.push(&[a, c, (a + c) % 8], &[0.0, 1.0], None).ok()?;
                b.push(&[c, a, c, a], &[1.0, 0.0], None).ok()?;
            }
        }
    }
    b.finish().ok()?;
    let t = Table::open(&path).ok()?;
    Some((dir, t))
}
