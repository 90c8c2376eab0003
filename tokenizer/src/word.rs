//! The word-level tokenizer: what hand-built tables embed (`scone build
//! --tokenizer`), and the trainer's tokenizer in its small tests.
//!
//! # Normalisation and segmentation
//! Text is lowercased (Unicode `to_lowercase`), then split into pieces:
//! * a *word* is a maximal run of alphanumeric characters; an apostrophe
//!   (`'` or `’`) between two alphanumerics stays inside the word, so
//!   `Lord's` becomes `lord's` while a trailing `fathers'` splits into
//!   `fathers` and `'`;
//! * every other non-whitespace character is a piece of its own;
//! * whitespace only separates pieces.
//!
//! # Vocabulary
//! Id 0 is `<unk>`; ids 1.. are pieces by descending training frequency,
//! ties broken by the piece's UTF-8 bytes ascending, so training is
//! deterministic. `<unk>` can never collide with a real piece because `<`
//! is always split off on its own.
//!
//! # Serialised format (`to_bytes`)
//! UTF-8 text, `\n`-terminated lines: line 1 is `scone-word-tokenizer v1`,
//! line `id + 2` holds the token with that id (so line 2 is `<unk>`).
//! Tokens never contain whitespace, so no escaping is needed.

use std::collections::HashMap;

use thiserror::Error;

/// The unknown-token id.
pub const UNK_ID: u32 = 0;
/// The unknown-token surface form.
pub const UNK_TOKEN: &str = "<unk>";
/// First line of the serialized form; also the kind recorded in a table that embeds it.
pub const KIND: &str = "scone-word-tokenizer v1";
const HEADER: &str = KIND;

/// Errors from [`WordTokenizer::from_bytes`]. Line numbers are 1-based.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("line 1: expected header `{HEADER}`, found `{found}`")]
    BadHeader { found: String },
    #[error("line 2: id 0 must be `{UNK_TOKEN}`, found `{found}`")]
    MissingUnk { found: String },
    #[error("line {line}: empty token")]
    EmptyToken { line: usize },
    #[error("line {line}: token `{token}` contains whitespace")]
    Whitespace { line: usize, token: String },
    #[error("line {line}: duplicate token `{token}` (first on line {first_line})")]
    Duplicate { line: usize, token: String, first_line: usize },
    #[error("line {line}: vocabulary exceeds u32 ids")]
    TooManyTokens { line: usize },
}

/// Word-level tokenizer; see the module docs for the exact rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordTokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl WordTokenizer {
    /// Builds a vocabulary of at most `max_vocab` entries *including*
    /// `<unk>` (so at most `max_vocab - 1` words; `<unk>` is always present)
    /// from pieces seen at least `min_count` times.
    pub fn train<'a>(docs: impl IntoIterator<Item = &'a str>, max_vocab: usize, min_count: u64) -> WordTokenizer {
        let mut freq: HashMap<String, u64> = HashMap::new();
        for doc in docs {
            for_each_piece(doc, |p| {
                // Avoid allocating for pieces already counted.
                match freq.get_mut(p) {
                    Some(c) => *c += 1,
                    None => {
                        freq.insert(p.to_owned(), 1);
                    }
                }
            });
        }
        let mut words: Vec<(String, u64)> = freq.into_iter().filter(|&(_, c)| c >= min_count).collect();
        words.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        // Ids are u32, so the vocabulary can never exceed u32::MAX entries.
        let limit = max_vocab.min(u32::MAX as usize).saturating_sub(1);
        words.truncate(limit);
        let tokens = std::iter::once(UNK_TOKEN.to_owned()).chain(words.into_iter().map(|(w, _)| w)).collect();
        Self::from_tokens(tokens)
    }

    /// Assumes `tokens` is already validated (unique, `<unk>` first, fits u32).
    fn from_tokens(tokens: Vec<String>) -> Self {
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        WordTokenizer { tokens, ids }
    }

    /// Token ids of `text`; pieces outside the vocabulary map to [`UNK_ID`].
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for_each_piece(text, |p| out.push(self.ids.get(p).copied().unwrap_or(UNK_ID)));
        out
    }

    /// Normalised surface pieces of `text`, aligned one-to-one with `encode`.
    pub fn pieces(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_piece(text, |p| out.push(p.to_owned()));
        out
    }

    /// The token with this id, if any.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a normalised piece, if it is in the vocabulary.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    /// Number of ids, including `<unk>`.
    pub fn vocab_size(&self) -> u32 {
        // Construction guarantees the length fits in u32.
        self.tokens.len() as u32
    }

    /// Serialises to the text format described in the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(HEADER.len() + 1 + self.tokens.len() * 8);
        out.push_str(HEADER);
        out.push('\n');
        for t in &self.tokens {
            out.push_str(t);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Parses and validates the format written by [`Self::to_bytes`]. The
    /// final newline is optional.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let text = std::str::from_utf8(bytes).map_err(|e| TokenizerError::NotUtf8 {
            line: 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count(),
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = text.split('\n');
        let header = lines.next().unwrap_or_default();
        if header != HEADER {
            return Err(TokenizerError::BadHeader { found: header.to_owned() });
        }
        let mut tokens: Vec<String> = Vec::new();
        let mut first_line: HashMap<&str, usize> = HashMap::new();
        for (idx, tok) in lines.enumerate() {
            let line = idx + 2;
            if idx == 0 && tok != UNK_TOKEN {
                return Err(TokenizerError::MissingUnk { found: tok.to_owned() });
            }
            if tok.is_empty() {
                return Err(TokenizerError::EmptyToken { line });
            }
            if tok.chars().any(char::is_whitespace) {
                return Err(TokenizerError::Whitespace { line, token: tok.to_owned() });
            }
            if let Some(&first) = first_line.get(tok) {
                return Err(TokenizerError::Duplicate { line, token: tok.to_owned(), first_line: first });
            }
            if u32::try_from(idx).is_err() {
                return Err(TokenizerError::TooManyTokens { line });
            }
            first_line.insert(tok, line);
            tokens.push(tok.to_owned());
        }
        if tokens.is_empty() {
            return Err(TokenizerError::MissingUnk { found: String::new() });
        }
        Ok(Self::from_tokens(tokens))
    }

    /// xxh3-64 of [`Self::to_bytes`]: identifies the vocabulary, e.g. to
    /// check that stored n-gram ids were made with the same tokenizer.
    pub fn fingerprint(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.to_bytes())
    }
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

/// Calls `f` with each normalised piece of `text`, in order, without
/// allocating per piece.
fn for_each_piece(text: &str, mut f: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    let chars: Vec<(usize, char)> = lower.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(lower.len(), |&(b, _)| b);
    let mut i = 0;
    while let Some(&(start, c)) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if c.is_alphanumeric() {
            loop {
                match chars.get(j) {
                    Some(&(_, d)) if d.is_alphanumeric() => j += 1,
                    Some(&(_, d))
                        if is_apostrophe(d) && chars.get(j + 1).is_some_and(|&(_, e)| e.is_alphanumeric()) =>
                    {
                        j += 2
                    }
                    _ => break,
                }
            }
        }
        f(&lower[start..end_of(j)]);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_piece(text, |p| v.push(p.to_owned()));
        v
    }

    #[test]
    fn segmentation_rules() {
        assert_eq!(
            pieces("The LORD's house, O fathers' God!"),
            ["the", "lord's", "house", ",", "o", "fathers", "'", "god", "!"]
        );
        assert_eq!(pieces("  'tis  a''b x’y 12:3 "), ["'", "tis", "a", "'", "'", "b", "x’y", "12", ":", "3"]);
        assert!(pieces(" \t\n").is_empty());
        assert_eq!(pieces("ÆSIR Straße"), ["æsir", "straße"]);
    }

    #[test]
    fn train_orders_by_frequency_then_bytes() {
        let tok = WordTokenizer::train(["b a c a", "b a d"], 100, 1);
        let order: Vec<_> = (0..tok.vocab_size()).map(|i| tok.token(i).unwrap()).collect();
        assert_eq!(order, ["<unk>", "a", "b", "c", "d"]);
        let capped = WordTokenizer::train(["b a c a", "b a d"], 3, 1);
        assert_eq!(capped.vocab_size(), 3);
        assert_eq!(capped.encode("a b c z"), [1, 2, 0, 0]);
        let min2 = WordTokenizer::train(["b a c a", "b a d"], 100, 2);
        assert_eq!(min2.vocab_size(), 3);
        assert_eq!(WordTokenizer::train(["x"], 0, 1).vocab_size(), 1);
    }
}
