//! Token ids from the command line: ids given directly, or text through the
//! tokenizer embedded in the table (the word tokenizer of hand-built tables,
//! or the byte-level BPE of trained ones).

use anyhow::{bail, Context, Result};
use engine::Table;
use trainer::{BpeTokenizer, WordTokenizer};

pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().with_context(|| format!("`{p}` is not a token id (a non-negative integer)")))
        .collect()
}

/// A tokenizer a table may embed.
pub enum TextTokenizer {
    Word(WordTokenizer),
    Bpe(Box<BpeTokenizer>),
}

impl TextTokenizer {
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

/// The table's embedded tokenizer, if it has one this build understands.
pub fn tokenizer(table: &Table) -> Result<Option<TextTokenizer>> {
    let Some((kind, bytes)) = table.tokenizer() else { return Ok(None) };
    let path = table.path().display();
    let tok = if kind == trainer::tokenizer::KIND {
        TextTokenizer::Word(
            WordTokenizer::from_bytes(bytes).with_context(|| format!("{path}: embedded tokenizer is malformed"))?,
        )
    } else if kind == BpeTokenizer::KIND {
        TextTokenizer::Bpe(Box::new(
            BpeTokenizer::from_bytes(bytes).with_context(|| format!("{path}: embedded tokenizer is malformed"))?,
        ))
    } else {
        bail!("{path}: embedded tokenizer `{kind}` is not supported by this build");
    };
    if tok.vocab_size() != table.header().vocab_size {
        bail!(
            "{path}: embedded tokenizer has {} tokens but the table's vocabulary size is {}",
            tok.vocab_size(),
            table.header().vocab_size
        );
    }
    Ok(Some(tok))
}

pub fn require_tokenizer(table: &Table) -> Result<TextTokenizer> {
    tokenizer(table)?.with_context(|| {
        format!("{}: the table has no embedded tokenizer; pass token ids instead of --text", table.path().display())
    })
}

/// Token ids and their printable pieces.
pub fn resolve(table: &Table, ids: &[String], text: Option<&str>) -> Result<(Vec<u32>, Vec<String>)> {
    let (ids, tok) = match text {
        Some(t) => {
            let tok = require_tokenizer(table)?;
            (tok.encode(t), Some(tok))
        }
        None => (parse_ids(&ids.join(" "))?, tokenizer(table)?),
    };
    let pieces = ids.iter().map(|&i| tok.as_ref().and_then(|t| t.piece(i)).unwrap_or_default()).collect();
    Ok((ids, pieces))
}
