//! `scone match`: the longest f-gram that ends at each position.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use engine::{SuffixMatcher, Table};
use serde_json::json;

use crate::json_num::opt_u64_str;

use crate::text::{require_tokenizer, resolve};

#[derive(Args)]
pub struct MatchArgs {
    pub table: PathBuf,
    /// Token ids (e.g. `12 7 93 4`).
    pub ids: Vec<String>,
    /// Text, tokenized with the table's embedded tokenizer.
    #[arg(long, conflicts_with = "ids")]
    pub text: Option<String>,
    /// Print JSON (format in docs/CLI.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: MatchArgs) -> Result<()> {
    let t = Table::open(&a.table)?;
    let (tokens, pieces) = resolve(&t, &a.ids, a.text.as_deref())?;
    let hits = SuffixMatcher::new(&t).match_tokens(&tokens);
    let tok = if a.text.is_some() { Some(require_tokenizer(&t)?) } else { crate::text::tokenizer(&t)? };
    let ngram_text = |g: &[u32]| -> Option<String> { Some(tok.as_ref()?.ngram_text(g)) };
    if a.json {
        let positions: Vec<_> = hits
            .iter()
            .enumerate()
            .map(|(p, h)| {
                let g = h.slot().and_then(|s| t.ngram(s));
                json!({
                    "pos": p,
                    "token": tokens[p],
                    "piece": pieces[p],
                    "hit": h.is_hit(),
                    "len": h.len,
                    "slot": h.slot(),
                    "ngram": g,
                    "ngram_text": g.and_then(ngram_text),
                    "count": opt_u64_str(h.slot().and_then(|s| t.count(s))),
                })
            })
            .collect();
        let v = json!({
            "tokens": tokens.len(),
            "hits": hits.iter().filter(|h| h.is_hit()).count(),
            "positions": positions,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_matches(&t, &tokens, &pieces, &hits, &ngram_text)
}

/// The human-readable match listing, shared with the demo.
pub fn print_matches(
    t: &Table,
    tokens: &[u32],
    pieces: &[String],
    hits: &[engine::Hit],
    ngram_text: &dyn Fn(&[u32]) -> Option<String>,
) -> Result<()> {
    outln!("{:>4}  {:>7}  {:<14} {:>3}  {:>8}  longest f-gram ending here", "pos", "token", "piece", "n", "slot");
    for (p, h) in hits.iter().enumerate() {
        let (n, slot, what) = match h.slot().and_then(|s| t.ngram(s).map(|g| (s, g))) {
            Some((s, g)) => {
                let text = ngram_text(g).map(|x| format!("\"{x}\"")).unwrap_or_else(|| format!("{g:?}"));
                let count = t.count(s).map(|c| format!("  (count {c})")).unwrap_or_default();
                (h.len.to_string(), s.to_string(), format!("{text}{count}"))
            }
            None => ("-".into(), "-".into(), "miss: falls back to the token embedding".into()),
        };
        outln!("{p:>4}  {:>7}  {:<14} {n:>3}  {slot:>8}  {what}", tokens[p], pieces[p]);
    }
    let hit = hits.iter().filter(|h| h.is_hit()).count();
    outln!("{hit} of {} positions matched an f-gram", hits.len());
    Ok(())
}
