//! The byte-level BPE tokenizer: training, round trips, determinism, persistence.

use std::sync::OnceLock;

use proptest::prelude::*;
use scone_tokenizer::{bpe, BpeError, BpeTokenizer};

/// The text of every verse of the bundled KJV (`data/kjv.txt.lz4`: one
/// `reference<TAB>text` line per verse), read here rather than through the
/// trainer's corpus module so that these tests need no trainer.
fn kjv() -> Vec<String> {
    let lz4 = include_bytes!("../../data/kjv.txt.lz4");
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut lz4_flex::frame::FrameDecoder::new(&lz4[..]), &mut raw).unwrap();
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("reference<TAB>text").1.trim().to_owned())
        .collect()
}

/// The first few thousand KJV verses: enough for real merges, quick to train on.
fn verses() -> &'static [String] {
    static V: OnceLock<Vec<String>> = OnceLock::new();
    V.get_or_init(|| kjv().into_iter().take(3000).collect())
}

fn small() -> &'static BpeTokenizer {
    static T: OnceLock<BpeTokenizer> = OnceLock::new();
    T.get_or_init(|| BpeTokenizer::train(verses().iter().map(String::as_str), 600, 2).unwrap())
}

#[test]
fn trains_a_vocabulary_of_the_requested_size() {
    let t = small();
    assert_eq!(t.vocab_size(), 600);
    assert_eq!(BpeTokenizer::KIND, "scone-bpe-bytelevel v1");
    assert_eq!(bpe::KIND, BpeTokenizer::KIND);
    // Merges compress: frequent words become single tokens.
    let text = "And God said, Let there be light: and there was light.";
    let ids = t.encode(text);
    assert!(ids.len() < text.len() / 2, "{} ids for {} bytes", ids.len(), text.len());
    assert!(ids.iter().all(|&id| id < t.vocab_size()));
    assert_eq!(t.decode(&ids).unwrap(), text);
    // A frequent mid-sentence word is one token, its leading space included.
    assert_eq!(t.encode(" the").len(), 1);
    assert_eq!(t.encode(" and").len(), 1);
}

#[test]
fn training_is_deterministic() {
    let docs = || verses().iter().map(String::as_str);
    let a = BpeTokenizer::train(docs(), 600, 2).unwrap();
    let b = BpeTokenizer::train(docs(), 600, 2).unwrap();
    assert_eq!(a.to_bytes(), b.to_bytes());
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.to_bytes(), small().to_bytes());
    // A different corpus gives a different tokenizer, and so a different fingerprint.
    let c = BpeTokenizer::train(verses()[..1000].iter().map(String::as_str), 600, 2).unwrap();
    assert_ne!(a.fingerprint(), c.fingerprint());
}

#[test]
fn min_frequency_stops_merging_and_small_vocab_is_refused() {
    // "ab" occurs twice, nothing else repeats: with min_frequency 3 no merge is learned.
    let t = BpeTokenizer::train(["ab ab"], 1000, 3).unwrap();
    assert_eq!(t.vocab_size(), 256);
    let t = BpeTokenizer::train(["ab ab"], 1000, 2).unwrap();
    assert!(t.vocab_size() > 256);
    assert!(matches!(BpeTokenizer::train(["x"], 255, 1), Err(BpeError::Config(_))));
}

#[test]
fn every_text_encodes_even_with_an_empty_training_corpus() {
    let t = BpeTokenizer::train(std::iter::empty(), 300, 1).unwrap();
    assert_eq!(t.vocab_size(), 256);
    for s in ["", "\u{0}\u{7f}", "héllo wörld ✝ 日本語 🙂", "\t\n\r  x  "] {
        let ids = t.encode(s);
        assert_eq!(ids.len(), s.len(), "one id per byte without merges");
        assert_eq!(t.decode(&ids).unwrap(), s);
    }
}

#[test]
fn bytes_roundtrip_and_fingerprint_is_xxh3_of_the_bytes() {
    let t = small();
    let bytes = t.to_bytes();
    assert_eq!(t.fingerprint(), xxhash_rust::xxh3::xxh3_64(&bytes));
    let u = BpeTokenizer::from_bytes(&bytes).unwrap();
    assert_eq!(&u, t);
    assert_eq!(u.fingerprint(), t.fingerprint());
    let s = "In the beginning God created the heaven and the earth.";
    assert_eq!(u.encode(s), t.encode(s));
}

#[test]
fn save_and_load_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    small().save(&path).unwrap();
    let t = BpeTokenizer::load(&path).unwrap();
    assert_eq!(&t, small());

    let missing = dir.path().join("missing.json");
    let err = BpeTokenizer::load(&missing).unwrap_err();
    assert!(matches!(err, BpeError::Io { .. }));
    assert!(err.to_string().contains("missing.json"), "{err}");

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{ not json").unwrap();
    let err = BpeTokenizer::load(&junk).unwrap_err();
    assert!(matches!(err, BpeError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.json"), "{err}");

    // A valid tokenizers JSON of another kind (a normalizer added) is refused.
    let mut v: String = String::from_utf8(small().to_bytes()).unwrap();
    v = v.replacen("\"normalizer\":null", "\"normalizer\":{\"type\":\"Lowercase\"}", 1);
    let other = dir.path().join("other.json");
    std::fs::write(&other, v).unwrap();
    let err = BpeTokenizer::load(&other).unwrap_err();
    assert!(matches!(err, BpeError::WrongKind { .. }), "{err:?}");
    assert!(err.to_string().contains("other.json") && err.to_string().contains("normalizer"), "{err}");
}

#[test]
fn decode_refuses_bad_ids_and_split_characters() {
    let t = small();
    let err = t.decode(&[1, t.vocab_size()]).unwrap_err();
    assert!(matches!(err, BpeError::IdOutOfRange { position: 1, .. }), "{err:?}");
    // "é" is two bytes; its first byte alone is not UTF-8.
    let ids = t.encode("é");
    assert_eq!(ids.len(), 2, "a rare character stays as its bytes");
    assert!(matches!(t.decode(&ids[..1]), Err(BpeError::NotUtf8 { .. })));
    assert_eq!(t.decode(&ids).unwrap(), "é");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode_for_any_text(s in any::<String>()) {
        let t = small();
        let ids = t.encode(&s);
        prop_assert!(ids.iter().all(|&id| id < t.vocab_size()));
        prop_assert_eq!(t.decode(&ids).unwrap(), s);
    }

    #[test]
    fn decode_inverts_encode_for_verse_like_text(s in "[A-Za-z ,.;:'!?\\n\\t0-9]{0,200}") {
        let t = small();
        prop_assert_eq!(t.decode(&t.encode(&s)).unwrap(), s);
    }

    #[test]
    fn token_bytes_concatenate_to_the_text(s in "\\PC{0,64}") {
        let t = small();
        let bytes: Vec<u8> = t.encode(&s).iter().flat_map(|&id| t.token_bytes(id).unwrap().to_vec()).collect();
        prop_assert_eq!(bytes, s.as_bytes().to_vec());
    }
}

/// Training on the whole KJV at vocabulary 4096, timed. Run it twice and compare
/// the fingerprints to check determinism across processes.
#[test]
#[ignore = "slow in debug; run: cargo test --release -p scone-tokenizer --test bpe -- --ignored --nocapture"]
fn train_on_all_kjv_at_vocab_4096() {
    let verses = kjv();
    let start = std::time::Instant::now();
    let t = BpeTokenizer::train(verses.iter().map(String::as_str), 4096, 2).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let ids: usize = verses.iter().map(|v| t.encode(v).len()).sum();
    let bytes: usize = verses.iter().map(String::len).sum();
    println!(
        "{} verses, vocab {}: trained in {secs:.2} s; fingerprint {:016x}; {ids} ids for {bytes} bytes ({:.2} bytes/id)",
        verses.len(),
        t.vocab_size(),
        t.fingerprint(),
        bytes as f64 / ids as f64
    );
    assert_eq!(t.vocab_size(), 4096);
}
