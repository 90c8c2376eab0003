mod common;

use common::Spec;
use common::*;
use engine::dtype::decode_row;
use engine::{BuildError, Dtype, OpenError, OpenOptions, SuffixMatcher, Table, TableBuilder};

#[test]
fn every_ngram_is_found_with_its_row_in_every_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for (i, dtype) in [Dtype::F32, Dtype::F16, Dtype::BF16].into_iter().enumerate() {
        let spec = random_spec(i as u64, 500, 50, 4, 13, false);
        let path = dir.path().join(format!("t{i}.scone"));
        let summary = build(&path, &spec, config(13, dtype, 4, 50));
        assert_eq!(summary.rows, 500);
        let t = Table::open(&path).unwrap();
        assert_eq!(t.header().row_stride % 64, 0);
        assert!(!t.header().hottest_first);
        for (rec, g) in spec.ngrams.iter().enumerate() {
            let slot = t.lookup(g).expect("stored n-gram must be found");
            assert_eq!(slot as usize, rec, "without counts rows keep input order");
            assert_eq!(t.ngram(slot).unwrap(), g.as_slice());
            assert_eq!(decode_row(t.row_bytes(slot).unwrap(), dtype), spec.rows[rec]);
        }
        // Absent n-grams (not in the naive map) are never found.
        let map = naive_map(&spec);
        let mut probes: Vec<Vec<u32>> = Vec::new();
        for a in 0..50u32 {
            for b in 0..50u32 {
                let g = vec![a, b];
                assert_eq!(t.lookup(&g).is_some(), map.contains_key(&g));
                probes.push(g);
            }
        }
        // The batched lookup agrees with single lookups, stored n-grams and odd lengths included.
        probes.extend(spec.ngrams.iter().cloned());
        probes.push(vec![1]);
        probes.push(vec![1, 2, 3, 4, 5]);
        let refs: Vec<&[u32]> = probes.iter().map(Vec::as_slice).collect();
        let mut batch = Vec::new();
        t.lookup_batch(&refs, &mut batch);
        let single: Vec<Option<u32>> = refs.iter().map(|g| t.lookup(g)).collect();
        assert_eq!(batch, single);
        // Probing the file mapping directly gives the same answers as the resident copy.
        assert!(t.index_is_resident());
        let mapped =
            Table::open_with(&path, OpenOptions { verify_rows: true, resident_index: false, resident_rows: false })
                .unwrap();
        assert!(!mapped.index_is_resident());
        // Resident rows read the same bytes as mapped ones.
        let rows_in_ram =
            Table::open_with(&path, OpenOptions { verify_rows: true, resident_index: true, resident_rows: true })
                .unwrap();
        assert!(rows_in_ram.rows_are_resident() && !t.rows_are_resident());
        for slot in 0..t.rows() as u32 {
            assert_eq!(rows_in_ram.row_bytes(slot), mapped.row_bytes(slot));
        }
        rows_in_ram.verify().unwrap();
        let mut batch2 = Vec::new();
        mapped.lookup_batch(&refs, &mut batch2);
        assert_eq!(batch2, single);
        let stream: Vec<u32> = spec.ngrams.iter().flatten().copied().collect();
        assert_eq!(SuffixMatcher::new(&mapped).match_tokens(&stream), SuffixMatcher::new(&t).match_tokens(&stream));
        t.verify().unwrap();
    }
}

#[test]
fn counts_lay_rows_out_hottest_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = random_spec(7, 300, 30, 3, 8, true);
    let path = dir.path().join("hot.scone");
    build(&path, &spec, config(8, Dtype::F32, 3, 30));
    let t = Table::open(&path).unwrap();
    assert!(t.header().hottest_first);
    let counts: Vec<u64> = (0..300u32).map(|s| t.count(s).unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "counts must be non-increasing by slot");
    for (rec, g) in spec.ngrams.iter().enumerate() {
        let slot = t.lookup(g).unwrap();
        assert_eq!(t.count(slot), Some(spec.counts.as_ref().unwrap()[rec]));
        assert_eq!(decode_row(t.row_bytes(slot).unwrap(), Dtype::F32), spec.rows[rec]);
    }
}

#[test]
fn a_tiny_memory_budget_spills_and_builds_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let spec = random_spec(11, 3000, 40, 4, 16, true);
    let big = dir.path().join("big.scone");
    let small = dir.path().join("small.scone");
    let s_big = build(&big, &spec, config(16, Dtype::F16, 4, 40));
    let mut cfg = config(16, Dtype::F16, 4, 40);
    cfg.memory_budget = 8 << 10; // far below the ~200 KB of input
    cfg.temp_dir = Some(dir.path().to_path_buf());
    let s_small = build(&small, &spec, cfg);
    assert_eq!(s_big.spilled_runs, 0);
    assert!(s_small.spilled_runs > 10, "expected many runs, got {}", s_small.spilled_runs);
    let (a, b) = (Table::open(&big).unwrap(), Table::open(&small).unwrap());
    for g in &spec.ngrams {
        let (sa, sb) = (a.lookup(g).unwrap(), b.lookup(g).unwrap());
        assert_eq!(sa, sb);
        assert_eq!(a.row_bytes(sa), b.row_bytes(sb));
    }
    // Same bytes except the build timestamp in the header.
    let (fa, fb) = (std::fs::read(&big).unwrap(), std::fs::read(&small).unwrap());
    assert_eq!(fa[4096..], fb[4096..]);
    assert_eq!(dir_entries(dir.path()), vec!["big.scone", "small.scone"], "no spill files left");
}

#[test]
fn colliding_keys_are_detected_and_all_stay_retrievable() {
    let dir = tempfile::tempdir().unwrap();
    let spec = random_spec(5, 400, 20, 4, 4, false);
    let path = dir.path().join("coll.scone");
    let mut cfg = config(4, Dtype::F32, 4, 20);
    cfg.key_bits = 6; // 64 distinct keys for 400 n-grams: many collisions
    let s = build(&path, &spec, cfg);
    assert!(s.key_collisions > 300, "collisions {}", s.key_collisions);
    let t = Table::open(&path).unwrap();
    assert_eq!(t.header().build.key_collisions, s.key_collisions);
    for (rec, g) in spec.ngrams.iter().enumerate() {
        assert_eq!(t.lookup(g), Some(rec as u32));
    }
    let refs: Vec<&[u32]> = spec.ngrams.iter().map(Vec::as_slice).collect();
    let mut batch = Vec::new();
    t.lookup_batch(&refs, &mut batch);
    assert_eq!(batch, (0..400).map(Some).collect::<Vec<_>>());
    assert_eq!(t.lookup(&[19, 19, 19, 19, 19]), None);
}

fn expect_bad(push: impl FnOnce(&mut TableBuilder) -> Result<(), BuildError>, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.scone");
    let mut b = TableBuilder::create(&path, config(3, Dtype::F16, 3, 10)).unwrap();
    let good = b.push(&[1, 2], &[0.0, 1.0, 2.0], None);
    good.unwrap();
    let err = push(&mut b).and_then(|_| b.finish().map(|_| ())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(want), "error {msg:?} should mention {want:?}");
    assert!(dir_entries(dir.path()).is_empty(), "a failed build must leave nothing: {:?}", dir_entries(dir.path()));
}

#[test]
fn bad_records_are_rejected_by_number_and_leave_no_table() {
    expect_bad(|b| b.push(&[1, 2, 3], &[0.0, 1.0], None), "record 1: row has 2 values; the table's dim is 3");
    expect_bad(|b| b.push(&[1, 2], &[0.0, f32::NAN, 1.0], None), "record 1: value NaN at column 1 is not finite");
    expect_bad(|b| b.push(&[1, 3], &[f32::INFINITY, 0.0, 1.0], None), "record 1: value inf at column 0");
    expect_bad(|b| b.push(&[1, 3], &[1e9, 0.0, 1.0], None), "overflows f16");
    expect_bad(|b| b.push(&[4, 10], &[0.0; 3], None), "token id 10 at position 1 is not below the vocabulary size 10");
    expect_bad(|b| b.push(&[4], &[0.0; 3], None), "n-gram has 1 tokens; tables hold 2..=3");
    expect_bad(|b| b.push(&[1, 2, 3, 4], &[0.0; 3], None), "n-gram has 4 tokens");
    expect_bad(|b| b.push(&[1, 3], &[0.0; 3], Some(4)), "has a count, but earlier records had none");
    expect_bad(
        |b| {
            b.push(&[5, 6], &[0.0; 3], None)?;
            b.push(&[1, 2], &[0.0; 3], None)
        },
        "record 2: duplicate n-gram [1, 2] (first seen at record 0)",
    );
}

#[test]
fn an_interrupted_build_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.scone");
    let mut b = TableBuilder::create(&path, config(3, Dtype::F32, 3, 10)).unwrap();
    b.push(&[1, 2], &[0.0; 3], None).unwrap();
    assert_eq!(dir_entries(dir.path()).len(), 1, "the build writes a hidden temporary file");
    assert!(dir_entries(dir.path())[0].starts_with(".t.scone.tmp-"));
    assert!(!path.exists());
    drop(b); // as if the process stopped here
    assert!(dir_entries(dir.path()).is_empty());
    // An existing table is not replaced unless asked.
    let spec = random_spec(1, 10, 10, 3, 3, false);
    build(&path, &spec, config(3, Dtype::F32, 3, 10));
    assert!(matches!(TableBuilder::create(&path, config(3, Dtype::F32, 3, 10)), Err(BuildError::Exists { .. })));
    let mut cfg = config(3, Dtype::F32, 3, 10);
    cfg.overwrite = true;
    build(&path, &random_spec(2, 5, 10, 3, 3, false), cfg);
    assert_eq!(Table::open(&path).unwrap().rows(), 5);
}

#[test]
fn damage_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = random_spec(3, 200, 30, 3, 8, true);
    let path = dir.path().join("t.scone");
    build(&path, &spec, config(8, Dtype::F16, 3, 30));
    let good = std::fs::read(&path).unwrap();
    let t = Table::open(&path).unwrap();
    let sections = t.header().sections.clone();
    drop(t);
    let damaged = dir.path().join("d.scone");
    for s in &sections {
        let mut bytes = good.clone();
        bytes[(s.offset + s.len / 2) as usize] ^= 0x40;
        std::fs::write(&damaged, &bytes).unwrap();
        let err = match Table::open(&damaged) {
            Err(e) => e,
            Ok(t) => t.verify().unwrap_err(), // rows are checked by verify
        };
        match &err {
            OpenError::Checksum { section, .. } => assert_eq!(*section, s.kind),
            other => panic!("section {}: expected checksum error, got {other}", s.kind),
        }
        assert!(err.to_string().contains(&format!("section {}", s.kind)));
        assert!(err.to_string().contains("d.scone"));
    }
    // Header damage, truncation, foreign files, empty files.
    let mut bytes = good.clone();
    bytes[40] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(matches!(Table::open(&damaged), Err(OpenError::BadHeader { .. })));
    std::fs::write(&damaged, &good[..good.len() - 4096]).unwrap();
    let e = Table::open(&damaged).unwrap_err();
    assert!(e.to_string().contains("run past the end"), "{e}");
    std::fs::write(&damaged, b"hello world, not a table").unwrap();
    assert!(matches!(Table::open(&damaged), Err(OpenError::BadMagic { .. })));
    std::fs::write(&damaged, b"").unwrap();
    assert!(matches!(Table::open(&damaged), Err(OpenError::BadMagic { .. })));
    let mut bytes = good.clone();
    bytes[8] = 99;
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(matches!(Table::open(&damaged), Err(OpenError::UnsupportedVersion { found: 99, .. })));
    assert!(matches!(Table::open(dir.path().join("missing")), Err(OpenError::Io { .. })));
}

#[test]
fn presorted_and_shuffled_input_build_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = random_spec(31, 2000, 60, 4, 6, true);
    // Distinct counts, so the hottest-first order does not depend on input order.
    for (i, c) in spec.counts.as_mut().unwrap().iter_mut().enumerate() {
        *c = (i as u64 * 7919) % 1_000_003 + 1;
    }
    let mut order: Vec<usize> = (0..spec.ngrams.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(spec.counts.as_ref().unwrap()[i]));
    let sorted = Spec {
        ngrams: order.iter().map(|&i| spec.ngrams[i].clone()).collect(),
        rows: order.iter().map(|&i| spec.rows[i].clone()).collect(),
        counts: Some(order.iter().map(|&i| spec.counts.as_ref().unwrap()[i]).collect()),
    };
    // Out of order only at the very end: everything is read back and sorted.
    let mut late = sorted.clone_spec();
    let last = late.ngrams.len() - 1;
    late.counts.as_mut().unwrap()[last] = 2_000_000;
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let mut small = config(6, Dtype::F32, 4, 60);
    small.memory_budget = 16 << 10;
    let sa = build(&a, &spec, small.clone());
    let sb = build(&b, &sorted, small.clone());
    build(&c, &late, small);
    assert!(sa.rows_sorted && sa.spilled_runs > 0);
    assert!(!sb.rows_sorted, "presorted input needs no row sort");
    let (fa, fb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(fa[4096..], fb[4096..]);
    let t = Table::open(&c).unwrap();
    assert_eq!(t.ngram(0), Some(late.ngrams[last].as_slice()), "the late hottest row moves to slot 0");
    for (i, g) in late.ngrams.iter().enumerate() {
        let slot = t.lookup(g).unwrap();
        assert_eq!(decode_row(t.row_bytes(slot).unwrap(), Dtype::F32), late.rows[i]);
        assert_eq!(t.count(slot), Some(late.counts.as_ref().unwrap()[i]));
    }
}

#[test]
fn markers_cover_exactly_the_missing_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = random_spec(41, 500, 25, 5, 2, false);
    let path = dir.path().join("m.scone");
    build(&path, &spec, config(2, Dtype::F32, 5, 25));
    let t = Table::open(&path).unwrap();
    let present = naive_map(&spec);
    let mut missing = std::collections::HashSet::new();
    for g in &spec.ngrams {
        for len in 2..g.len() {
            let suffix = g[g.len() - len..].to_vec();
            if !present.contains_key(&suffix) {
                missing.insert(suffix);
            }
        }
    }
    assert!(!missing.is_empty());
    assert_eq!(t.header().index.markers, missing.len() as u64);
    // Markers are never returned as rows.
    for m in &missing {
        assert_eq!(t.lookup(m), None);
    }
}
