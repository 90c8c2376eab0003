//! Token ids from the command line: ids given directly, or text through the
//! tokenizer embedded in the table.

use anyhow::{bail, Context, Result};
use engine::Table;
use trainer::WordTokenizer;

pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().with_context(|| format!("`{p}` is not a token id (a non-negative integer)")))
        .collect()
}

/// The table's embedded tokenizer, if it has one this build understands.
pub fn tokenizer(table: &Table) -> Result<Option<WordTokenizer>> {
    let Some((kind, bytes)) = table.tokenizer() else { return Ok(None) };
    if kind != trainer::tokenizer::KIND {
        bail!("{}: embedded tokenizer `{kind}` is not supported by this build", table.path().display());
    }
    let tok = WordTokenizer::from_bytes(bytes)
        .with_context(|| format!("{}: embedded tokenizer is malformed", table.path().display()))?;
    if tok.vocab_size() != table.header().vocab_size {
        bail!(
            "{}: embedded tokenizer has {} tokens but the table's vocabulary size is {}",
            table.path().display(),
            tok.vocab_size(),
            table.header().vocab_size
        );
    }
    Ok(Some(tok))
}

pub fn require_tokenizer(table: &Table) -> Result<WordTokenizer> {
    tokenizer(table)?.with_context(|| {
        format!("{}: the table has no embedded tokenizer; pass token ids instead of --text", table.path().display())
    })
}

/// Token ids and their printable pieces.
pub fn resolve(table: &Table, ids: &[String], text: Option<&str>) -> Result<(Vec<u32>, Vec<String>)> {
    match text {
        Some(t) => {
            let tok = require_tokenizer(table)?;
            Ok((tok.encode(t), tok.pieces(t)))
        }
        None => {
            let ids = parse_ids(&ids.join(" "))?;
            let tok = tokenizer(table)?;
            let pieces = ids.iter().map(|&i| tok.as_ref().and_then(|t| t.token(i)).unwrap_or("").to_string()).collect();
            Ok((ids, pieces))
        }
    }
}
