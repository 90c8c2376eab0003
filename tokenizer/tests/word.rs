//! The word tokenizer: round trips, encoding, fingerprints, malformed input.

use scone_tokenizer::{TokenizerError, WordTokenizer};

fn sample() -> WordTokenizer {
    WordTokenizer::train(
        [
            "In the beginning God created the heaven and the earth.",
            "And God said, Let there be light: and there was light.",
            "The LORD's word.",
        ],
        1000,
        1,
    )
}

#[test]
fn round_trip() {
    let tok = sample();
    let bytes = tok.to_bytes();
    assert!(bytes.starts_with(b"scone-word-tokenizer v1\n<unk>\n"));
    let back = WordTokenizer::from_bytes(&bytes).unwrap();
    assert_eq!(back, tok);
    assert_eq!(back.fingerprint(), tok.fingerprint());
    let text = "And the LORD's light, unseen!";
    assert_eq!(back.encode(text), tok.encode(text));
    // The final newline is optional.
    let trimmed = WordTokenizer::from_bytes(&bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(trimmed, tok);
}

#[test]
fn encode_pieces_and_lookup() {
    let tok = sample();
    let text = "The LORD's light, unseen!";
    let pieces = tok.pieces(text);
    let ids = tok.encode(text);
    assert_eq!(pieces, ["the", "lord's", "light", ",", "unseen", "!"]);
    assert_eq!(ids.len(), pieces.len());
    assert_eq!(ids[4], 0, "unseen is unknown");
    assert_eq!(tok.token(ids[1]), Some("lord's"));
    assert_eq!(tok.token(0), Some("<unk>"));
    assert_eq!(tok.token(tok.vocab_size()), None);
    // Most frequent piece gets id 1: "the" occurs 4 times.
    assert_eq!(tok.token(1), Some("the"));
}

#[test]
fn fingerprint_tracks_vocabulary() {
    let a = sample();
    let b = WordTokenizer::train(["something else entirely"], 1000, 1);
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[test]
fn malformed_bytes_name_the_line() {
    let cases: &[(&[u8], TokenizerError)] = &[
        (b"scone-word-tokenizer v2\n<unk>\n", TokenizerError::BadHeader { found: "scone-word-tokenizer v2".into() }),
        (b"", TokenizerError::BadHeader { found: "".into() }),
        (b"scone-word-tokenizer v1\n", TokenizerError::MissingUnk { found: "".into() }),
        (b"scone-word-tokenizer v1\nthe\n<unk>\n", TokenizerError::MissingUnk { found: "the".into() }),
        (
            b"scone-word-tokenizer v1\n<unk>\nthe\nof\nthe\n",
            TokenizerError::Duplicate { line: 5, token: "the".into(), first_line: 3 },
        ),
        (b"scone-word-tokenizer v1\n<unk>\nthe\n\nof\n", TokenizerError::EmptyToken { line: 4 }),
        (b"scone-word-tokenizer v1\n<unk>\na b\n", TokenizerError::Whitespace { line: 3, token: "a b".into() }),
        (b"scone-word-tokenizer v1\n<unk>\nok\n\xff\n", TokenizerError::NotUtf8 { line: 4 }),
    ];
    for (bytes, want) in cases {
        let err = WordTokenizer::from_bytes(bytes).unwrap_err();
        assert_eq!(&err, want, "input {:?}", String::from_utf8_lossy(bytes));
    }
    let msg = WordTokenizer::from_bytes(b"scone-word-tokenizer v1\n<unk>\nthe\nthe\n").unwrap_err().to_string();
    assert!(msg.starts_with("line 4:"), "{msg}");
}
