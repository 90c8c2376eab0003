//! Arbitrary token streams against a small fixed table: the matcher agrees with
//! a naive longest-suffix lookup.
#![no_main]
use std::sync::OnceLock;

use engine::{BuildConfig, Dtype, SuffixMatcher, Table, TableBuilder};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static Table {
    static T: OnceLock<(tempfile::TempDir, Table)> = OnceLock::new();
    &T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.scone");
        let mut b = TableBuilder::create(&path, BuildConfig::new(2, Dtype::F32, 4, 8)).unwrap();
        let mut n = 0;
        for a in 0..8u32 {
            for c in 0..8u32 {
                if (a * 3 + c) % 4 != 0 {
                    b.push(&[a, c], &[a as f32, c as f32], None).unwrap();
                    n += 1;
                }
                if (a + c) % 5 == 0 {
                    b.push(&[a, c, (a + c) % 8], &[0.0, 1.0], None).unwrap();
                    b.push(&[c, a, c, a], &[1.0, 0.0], None).unwrap();
                    n += 2;
                }
            }
        }
        assert!(n > 0);
        b.finish().unwrap();
        let t = Table::open(&path).unwrap();
        (dir, t)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let tokens: Vec<u32> = data.iter().map(|&b| (b % 10) as u32).collect();
    let hits = SuffixMatcher::new(t).match_tokens(&tokens);
    for (p, h) in hits.iter().enumerate() {
        let want = (2..=4.min(p + 1)).rev().find_map(|len| t.lookup(&tokens[p + 1 - len..=p]).map(|s| (s, len)));
        assert_eq!(h.slot().map(|s| (s, h.len as usize)), want);
    }
});
