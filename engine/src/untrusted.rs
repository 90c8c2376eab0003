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
