//! `Table::check_tokenizer`: a table is served only with the tokenizer it was built with.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use engine::{Dtype, Error, OpenError, Table};

const KIND: &str = "test-tokenizer v1";
const TOKENIZER: &[u8] = b"test tokenizer bytes: the vocabulary would go here\n";

fn build_table(dir: &Path, name: &str, tokenizer: Option<(&str, &[u8])>) -> PathBuf {
    let path = dir.join(name);
    let spec = random_spec(3, 50, 20, 3, 4, false);
    let mut cfg = config(4, Dtype::F32, 3, 20);
    cfg.tokenizer = tokenizer.map(|(k, b)| (k.to_owned(), b.to_vec()));
    build(&path, &spec, cfg);
    path
}

fn fingerprint(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[test]
fn matching_tokenizer_passes_and_fingerprint_is_xxh3_of_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_table(dir.path(), "t.scone", Some((KIND, TOKENIZER)));
    let t = Table::open(&path).unwrap();
    let info = t.header().tokenizer.as_ref().unwrap();
    assert_eq!(info.fingerprint, fingerprint(TOKENIZER));
    assert_eq!(t.tokenizer(), Some((KIND, TOKENIZER)));
    t.check_tokenizer(KIND, fingerprint(TOKENIZER)).unwrap();
}

#[test]
fn wrong_fingerprint_is_refused_naming_file_and_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_table(dir.path(), "t.scone", Some((KIND, TOKENIZER)));
    let t = Table::open(&path).unwrap();
    let other = fingerprint(b"another tokenizer");
    let err = t.check_tokenizer(KIND, other).unwrap_err();
    match &err {
        OpenError::TokenizerMismatch { path: p, expected_kind, expected_fingerprint, found } => {
            assert_eq!(p, &path);
            assert_eq!(expected_kind, KIND);
            assert_eq!(*expected_fingerprint, other);
            assert_eq!(found, &Some((KIND.to_owned(), fingerprint(TOKENIZER))));
        }
        e => panic!("unexpected error {e:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("{other:016x}")), "{msg}");
    assert!(msg.contains(&format!("{:016x}", fingerprint(TOKENIZER))), "{msg}");
    assert!(msg.contains(KIND), "{msg}");
    // It converts into the umbrella error like every open error.
    let umbrella: Error = err.into();
    assert!(umbrella.to_string().contains("tokenizer mismatch"));
}

#[test]
fn wrong_kind_is_refused_even_with_the_same_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_table(dir.path(), "t.scone", Some((KIND, TOKENIZER)));
    let t = Table::open(&path).unwrap();
    let err = t.check_tokenizer("scone-bpe-bytelevel v1", fingerprint(TOKENIZER)).unwrap_err();
    assert!(matches!(err, OpenError::TokenizerMismatch { ref found, .. } if found.as_ref().unwrap().0 == KIND));
    let msg = err.to_string();
    assert!(msg.contains("scone-bpe-bytelevel v1") && msg.contains(KIND), "{msg}");
}

#[test]
fn table_without_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_table(dir.path(), "bare.scone", None);
    let t = Table::open(&path).unwrap();
    assert!(t.header().tokenizer.is_none());
    let err = t.check_tokenizer(KIND, fingerprint(TOKENIZER)).unwrap_err();
    assert!(matches!(err, OpenError::TokenizerMismatch { found: None, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("no tokenizer"), "{msg}");
    assert!(msg.contains(&format!("{:016x}", fingerprint(TOKENIZER))), "{msg}");
}

#[test]
fn tables_with_different_tokenizers_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let other: &[u8] = b"test tokenizer bytes: the vocabulary would go here!\n";
    let a = Table::open(build_table(dir.path(), "a.scone", Some((KIND, TOKENIZER)))).unwrap();
    let b = Table::open(build_table(dir.path(), "b.scone", Some((KIND, other)))).unwrap();
    a.check_tokenizer(KIND, fingerprint(TOKENIZER)).unwrap();
    b.check_tokenizer(KIND, fingerprint(other)).unwrap();
    assert!(a.check_tokenizer(KIND, fingerprint(other)).is_err());
    assert!(b.check_tokenizer(KIND, fingerprint(TOKENIZER)).is_err());
}
