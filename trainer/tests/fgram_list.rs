//! The f-gram list file: round trip, damage, bad lines, truncation.

use std::path::Path;

use trainer::{read_fgram_list, write_fgram_list, FgramList, FgramListError, NgramCount};

const FP: u64 = 0x0123_4567_89ab_cdef;

fn sample() -> Vec<NgramCount> {
    vec![
        NgramCount { tokens: vec![5, 9], count: 1000 },
        NgramCount { tokens: vec![5, 9, 12, 0], count: 700 },
        NgramCount { tokens: vec![u32::MAX, 3], count: 700 },
        NgramCount { tokens: vec![1, 2, 3], count: 3 },
        NgramCount { tokens: vec![42], count: u64::MAX },
    ]
}

/// Writes `text` followed by its checksum trailer, as a well-formed writer would.
fn write_with_trailer(path: &Path, text: &str) {
    let sum = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    std::fs::write(path, format!("{text}# xxh3={sum:016x}\n")).unwrap();
}

#[test]
fn roundtrip_keeps_order_counts_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fgrams.txt");
    write_fgram_list(&path, FP, 4, &sample()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "# scone-fgrams v1 tokenizer=0123456789abcdef n_max=4 count=5");
    assert_eq!(lines.next().unwrap(), "1000\t5 9");
    assert!(text.lines().last().unwrap().starts_with("# xxh3="));
    let back = read_fgram_list(&path).unwrap();
    assert_eq!(back, FgramList { tokenizer_fingerprint: FP, n_max: 4, fgrams: sample() });
    // Only the list is left in the directory (the temporary file was renamed).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn empty_list_roundtrips_and_overwrite_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    write_fgram_list(&path, FP, 4, &sample()[..2]).unwrap();
    write_fgram_list(&path, 7, 2, &[]).unwrap();
    let back = read_fgram_list(&path).unwrap();
    assert_eq!(back, FgramList { tokenizer_fingerprint: 7, n_max: 2, fgrams: vec![] });
}

#[test]
fn writer_refuses_what_the_reader_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    let too_long = [NgramCount { tokens: vec![1, 2, 3], count: 1 }];
    let err = write_fgram_list(&path, FP, 2, &too_long).unwrap_err();
    assert!(matches!(err, FgramListError::BadInput { index: 0, .. }), "{err:?}");
    let dup = [NgramCount { tokens: vec![1, 2], count: 5 }, NgramCount { tokens: vec![1, 2], count: 4 }];
    let err = write_fgram_list(&path, FP, 2, &dup).unwrap_err();
    assert!(matches!(err, FgramListError::BadInput { index: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("bad.txt"), "{err}");
    assert!(!path.exists(), "nothing is written on error");
}

#[test]
fn every_damaged_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fgrams.txt");
    write_fgram_list(&path, FP, 4, &sample()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let damaged = dir.path().join("damaged.txt");
    for i in 0..good.len() {
        let mut bad = good.clone();
        // Swap a digit for another digit, so the file still parses: only the checksum can tell.
        bad[i] = match bad[i] {
            b'0'..=b'8' => bad[i] + 1,
            b'9' => b'0',
            b => b ^ 0x20,
        };
        std::fs::write(&damaged, &bad).unwrap();
        let err = read_fgram_list(&damaged).expect_err(&format!("damage at byte {i} went unnoticed"));
        assert!(err.to_string().contains("damaged.txt"), "{err}");
    }
    // A digit changed in a row is reported as a checksum mismatch.
    let row_digit = good.iter().position(|&b| b == b'\t').unwrap() - 1;
    let mut bad = good.clone();
    bad[row_digit] = if bad[row_digit] == b'9' { b'1' } else { bad[row_digit] + 1 };
    std::fs::write(&damaged, &bad).unwrap();
    let err = read_fgram_list(&damaged).unwrap_err();
    assert!(matches!(err, FgramListError::Checksum { .. }), "{err:?}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn bad_lines_are_named_with_their_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.txt");
    let header = format!("# scone-fgrams v1 tokenizer={FP:016x} n_max=3 count=3\n");
    let cases: &[(&str, usize, &str)] = &[
        ("10\t1 2\n9\t1 x\n8\t4 5\n", 3, "token id \"x\""),
        ("10\t1 2\n9 1 3\n8\t4 5\n", 3, "count<TAB>"),
        ("10\t1 2\n9\t1 2 3 4\n8\t4 5\n", 3, "n_max"),
        ("10\t1 2\n9\t1  3\n8\t4 5\n", 3, "token id \"\""),
        ("10\t1 2\n-9\t1 3\n8\t4 5\n", 3, "count \"-9\""),
        ("10\t1 2\n9\t3 4\n8\t1 2\n", 4, "duplicate f-gram [1, 2] (first on line 2)"),
        ("10\t1 2\n9\t3 4\n", 4, "announces 3 f-grams, the file has 2"),
        ("10\t1 2\n9\t99999999999\n8\t4 5\n", 3, "not a u32"),
    ];
    for (rows, line, reason) in cases {
        write_with_trailer(&path, &format!("{header}{rows}"));
        let err = read_fgram_list(&path).unwrap_err();
        match &err {
            FgramListError::BadLine { line: l, reason: r, .. } => {
                assert_eq!(l, line, "{err}");
                assert!(r.contains(reason), "{err}");
            }
            e => panic!("expected a bad line for {rows:?}, got {e:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&format!("hand.txt:{line}:")), "{msg}");
    }
    // Header problems are line 1.
    for header in [
        "# scone-fgrams v2 tokenizer=0000000000000000 n_max=3 count=0\n",
        "# scone-fgrams v1 tokenizer=00000000 n_max=3 count=0\n",
        "# scone-fgrams v1 tokenizer=0000000000000000 n_max=0 count=0\n",
        "# scone-fgrams v1 tokenizer=0000000000000000 count=0\n",
        "1000\t5 9\n",
    ] {
        write_with_trailer(&path, header);
        let err = read_fgram_list(&path).unwrap_err();
        assert!(matches!(err, FgramListError::BadLine { line: 1, .. }), "{header:?}: {err:?}");
    }
}

#[test]
fn truncated_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fgrams.txt");
    write_fgram_list(&path, FP, 4, &sample()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.txt");
    for len in 0..good.len() {
        std::fs::write(&cut, &good[..len]).unwrap();
        let err = read_fgram_list(&cut).expect_err(&format!("cut at {len} went unnoticed"));
        assert!(err.to_string().contains("cut.txt"), "{err}");
        // Once past the header, a cut shows as truncation (no trailer) or a damaged trailer.
        let header_len = good.iter().position(|&b| b == b'\n').unwrap() + 1;
        if len >= header_len {
            assert!(
                matches!(err, FgramListError::Truncated { .. } | FgramListError::BadLine { .. }),
                "cut at {len}: {err:?}"
            );
        }
    }
    // Cut right after the last row: the trailer is missing.
    let trailer_start = good[..good.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&cut, &good[..trailer_start]).unwrap();
    let err = read_fgram_list(&cut).unwrap_err();
    assert!(matches!(err, FgramListError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = read_fgram_list(dir.path().join("nope.txt")).unwrap_err();
    assert!(matches!(err, FgramListError::Io { .. }) && err.to_string().contains("nope.txt"), "{err}");
}
