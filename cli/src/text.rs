//! Token ids from the command line: ids given directly, or text through the
//! tokenizer embedded in the table (the word tokenizer of hand-built tables,
//! or the byte-level BPE of trained ones).

use anyhow::{Context, Result};
use engine::Table;
use scone_tokenizer::TextTokenizer;

pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().with_context(|| format!("`{p}` is not a token id (a non-negative integer)")))
        .collect()
}

/// The table's embedded tokenizer, if it has one this build understands.
pub fn tokenizer(table: &Table) -> Result<Option<TextTokenizer>> {
    Ok(TextTokenizer::from_table(table)?)
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
