//! The tokenizer embedded in a table: each kind is found, and each way a table's
//! tokenizer can be unusable is an error naming the table.

use std::error::Error as _;
use std::path::{Path, PathBuf};

use engine::{BuildConfig, Dtype, Table, TableBuilder};
use scone_tokenizer::{bpe, word, BpeTokenizer, EmbeddedError, TextTokenizer, WordTokenizer};

/// A one-row table of vocabulary `vocab` at `dir/name` embedding `tokenizer`.
fn table(dir: &Path, name: &str, vocab: u32, tokenizer: Option<(&str, Vec<u8>)>) -> (PathBuf, Table) {
    let path = dir.join(name);
    let mut cfg = BuildConfig::new(2, Dtype::F32, 2, vocab);
    cfg.tokenizer = tokenizer.map(|(kind, bytes)| (kind.to_owned(), bytes));
    let mut b = TableBuilder::create(&path, cfg).unwrap();
    b.push(&[1, 2], &[0.5, -0.5], None).unwrap();
    b.finish().unwrap();
    let t = Table::open(&path).unwrap();
    (path, t)
}

fn word_tokenizer() -> WordTokenizer {
    WordTokenizer::train(["in the beginning god created the heaven and the earth"], 100, 1)
}

#[test]
fn a_word_tokenizer_is_found_and_joins_pieces_with_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let w = word_tokenizer();
    let (_, t) = table(dir.path(), "w.scone", w.vocab_size(), Some((word::KIND, w.to_bytes())));
    let tok = TextTokenizer::from_table(&t).unwrap().expect("the table embeds a tokenizer");
    assert_eq!(tok, TextTokenizer::Word(w.clone()));
    assert_eq!(tok.kind(), "scone-word-tokenizer v1");
    assert_eq!(tok.vocab_size(), w.vocab_size());
    let ids = tok.encode("The heaven and the EARTH, unseen");
    assert_eq!(ids, w.encode("The heaven and the EARTH, unseen"));
    assert_eq!(tok.ngram_text(&ids[..5]), "the heaven and the earth");
    assert_eq!(tok.piece(0).as_deref(), Some("<unk>"));
    assert_eq!(tok.piece(w.vocab_size()), None);
    assert_eq!(tok.ngram_text(&[ids[0], w.vocab_size()]), "the ?", "an unknown id prints as `?`");
}

#[test]
fn a_bpe_tokenizer_is_found_and_concatenates_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let b = BpeTokenizer::train(["the heaven and the earth", "and the earth was without form"], 300, 2).unwrap();
    let (_, t) = table(dir.path(), "b.scone", b.vocab_size(), Some((bpe::KIND, b.to_bytes())));
    let tok = TextTokenizer::from_table(&t).unwrap().expect("the table embeds a tokenizer");
    assert_eq!(tok.kind(), "scone-bpe-bytelevel v1");
    assert_eq!(tok.vocab_size(), b.vocab_size());
    let text = "And the earth was void";
    let ids = tok.encode(text);
    assert_eq!(ids, b.encode(text));
    assert_eq!(tok.ngram_text(&ids), text, "BPE pieces concatenate back to the text");
    assert!(ids.len() < text.len(), "merges were learned and used");
}

#[test]
fn a_table_without_a_tokenizer_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let (_, t) = table(dir.path(), "none.scone", 10, None);
    assert!(TextTokenizer::from_table(&t).unwrap().is_none());
}

#[test]
fn unusable_tokenizers_are_errors_naming_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let w = word_tokenizer();

    let (path, t) = table(dir.path(), "other.scone", 10, Some(("sentencepiece v9", b"whatever".to_vec())));
    let err = TextTokenizer::from_table(&t).unwrap_err();
    assert!(matches!(&err, EmbeddedError::UnsupportedKind { kind, .. } if kind == "sentencepiece v9"), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: embedded tokenizer `sentencepiece v9` is not supported by this build", path.display())
    );

    let (path, t) = table(dir.path(), "size.scone", w.vocab_size() + 1, Some((word::KIND, w.to_bytes())));
    let err = TextTokenizer::from_table(&t).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: embedded tokenizer has {} tokens but the table's vocabulary size is {}",
            path.display(),
            w.vocab_size(),
            w.vocab_size() + 1
        )
    );

    let (path, t) = table(dir.path(), "badword.scone", 10, Some((word::KIND, b"scone-word-tokenizer v2\n".to_vec())));
    let err = TextTokenizer::from_table(&t).unwrap_err();
    assert!(matches!(err, EmbeddedError::MalformedWord { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: embedded tokenizer is malformed", path.display()));
    let cause = err.source().expect("the parse error is the source").to_string();
    assert!(cause.contains("line 1") && cause.contains("scone-word-tokenizer v2"), "{cause}");

    let (path, t) = table(dir.path(), "badbpe.scone", 300, Some((bpe::KIND, b"{ not json".to_vec())));
    let err = TextTokenizer::from_table(&t).unwrap_err();
    assert!(matches!(err, EmbeddedError::MalformedBpe { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: embedded tokenizer is malformed", path.display()));
}
