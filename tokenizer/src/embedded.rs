//! The tokenizer embedded in a table: the table's header names its kind and
//! the tokenizer section holds its serialized bytes; [`TextTokenizer`] is
//! whichever of this crate's tokenizers that kind names.

use std::path::PathBuf;

use engine::Table;
use thiserror::Error;

use crate::{bpe, word, BpeError, BpeTokenizer, TokenizerError, WordTokenizer};

/// Why a table's embedded tokenizer cannot be used. Each names the table file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    #[error("{path}: embedded tokenizer is malformed", path = .path.display())]
    MalformedWord {
        path: PathBuf,
        #[source]
        source: TokenizerError,
    },
    #[error("{path}: embedded tokenizer is malformed", path = .path.display())]
    MalformedBpe {
        path: PathBuf,
        #[source]
        source: BpeError,
    },
    #[error("{path}: embedded tokenizer `{kind}` is not supported by this build", path = .path.display())]
    UnsupportedKind { path: PathBuf, kind: String },
    #[error(
        "{path}: embedded tokenizer has {tokenizer} tokens but the table's vocabulary size is {table}",
        path = .path.display()
    )]
    VocabMismatch { path: PathBuf, tokenizer: u32, table: u32 },
}

/// A tokenizer a table may embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextTokenizer {
    Word(WordTokenizer),
    // Boxed: a BPE tokenizer is far larger than a word tokenizer.
    Bpe(Box<BpeTokenizer>),
}

impl TextTokenizer {
    /// The tokenizer a table embeds, or `None` when it embeds none. Errors when
    /// the bytes do not parse as the recorded kind, when the kind is unknown to
    /// this build, or when the tokenizer's vocabulary is not the table's.
    pub fn from_table(table: &Table) -> Result<Option<Self>, EmbeddedError> {
        let Some((kind, bytes)) = table.tokenizer() else { return Ok(None) };
        let path = || table.path().to_path_buf();
        let tok = if kind == word::KIND {
            TextTokenizer::Word(
                WordTokenizer::from_bytes(bytes)
                    .map_err(|source| EmbeddedError::MalformedWord { path: path(), source })?,
            )
        } else if kind == bpe::KIND {
            TextTokenizer::Bpe(Box::new(
                BpeTokenizer::from_bytes(bytes)
                    .map_err(|source| EmbeddedError::MalformedBpe { path: path(), source })?,
            ))
        } else {
            return Err(EmbeddedError::UnsupportedKind { path: path(), kind: kind.to_owned() });
        };
        let table_vocab = table.header().vocab_size;
        if tok.vocab_size() != table_vocab {
            return Err(EmbeddedError::VocabMismatch { path: path(), tokenizer: tok.vocab_size(), table: table_vocab });
        }
        Ok(Some(tok))
    }

    /// The kind string a table records for this tokenizer.
    pub fn kind(&self) -> &'static str {
        match self {
            TextTokenizer::Word(_) => word::KIND,
            TextTokenizer::Bpe(_) => bpe::KIND,
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            TextTokenizer::Word(t) => t.encode(text),
            TextTokenizer::Bpe(t) => t.encode(text),
        }
    }

    /// Printable form of one token (BPE pieces may be partial characters).
    pub fn piece(&self, id: u32) -> Option<String> {
        match self {
            TextTokenizer::Word(t) => t.token(id).map(str::to_string),
            TextTokenizer::Bpe(t) => t.token_bytes(id).map(|b| String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// Number of ids; every id is below it.
    pub fn vocab_size(&self) -> u32 {
        match self {
            TextTokenizer::Word(t) => t.vocab_size(),
            TextTokenizer::Bpe(t) => t.vocab_size(),
        }
    }

    /// An n-gram as text: words joined by spaces, BPE pieces concatenated.
    pub fn ngram_text(&self, g: &[u32]) -> String {
        let pieces = g.iter().map(|&i| self.piece(i).unwrap_or_else(|| "?".into()));
        match self {
            TextTokenizer::Word(_) => pieces.collect::<Vec<_>>().join(" "),
            TextTokenizer::Bpe(_) => pieces.collect(),
        }
    }
}
