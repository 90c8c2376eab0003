//! `scone demo`: the whole flow on the bundled King James Bible, quickly.
//!
//! Trains a byte-level BPE, counts 2..3-grams with bounded memory, selects
//! f-grams as SCONE does, trains a small baseline LM and the SCONE model
//! (LM + f-gram model) jointly for a few hundred steps, exports the f-gram
//! model's outputs into an engine table, prints the three perplexities, then
//! shows the table at work: the longest match at each token of a passage and
//! the engine's match and gather rates.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use engine::{gather_with_token_rows, Dtype, GatherOptions, SuffixMatcher, Table, MISS_SLOT};

use crate::match_cmd::print_matches;
use crate::text::require_tokenizer;
use crate::train_cmd::{print_results, Console, TrainArgs};

const DEFAULT_PASSAGE: &str =
    "In the beginning God created the heaven and the earth. And God said, Let there be light: and there was light.";

#[derive(Args)]
pub struct DemoArgs {
    /// Output directory (tokenizer, f-gram list, checkpoints, table).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Optimizer steps per model (the quick preset's default when omitted).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Text whose matches are shown.
    #[arg(long, default_value = DEFAULT_PASSAGE)]
    pub passage: String,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let args = TrainArgs {
        preset: "quick".into(),
        out: a.out.clone(),
        steps: a.steps,
        top_k: None,
        seed: None,
        lr: None,
        clip_norm: None,
        fgram_lr_scale: None,
        runs: None,
    };
    let cfg = args.config()?;
    outln!(
        "scone demo: the SCONE flow on the bundled King James Bible (quick preset; `scone train` runs the full one)"
    );
    let outcome = trainer::experiment::run(&cfg, &a.out, &Console)?;
    print_results(&cfg, &outcome)?;

    let table_path =
        outcome.results.iter().find_map(|r| r.table.clone()).context("the quick preset trains one SCONE model")?;
    let t = Table::open(&table_path)?;
    let tok = require_tokenizer(&t)?;
    outln!("\nlongest f-gram ending at each token of the passage, read from {}:", table_path.display());
    let tokens = tok.encode(&a.passage);
    let pieces: Vec<String> = tokens.iter().map(|&i| tok.piece(i).unwrap_or_default()).collect();
    let hits = SuffixMatcher::new(&t).match_tokens(&tokens);
    print_matches(&t, &tokens, &pieces, &hits, &|g| Some(tok.ngram_text(g)))?;

    // The engine's own rates over the training split, one thread.
    let stream = &outcome.prepared.train;
    let m = SuffixMatcher::new(&t);
    let mut hits = Vec::with_capacity(stream.len());
    let match_secs = median_secs(|| {
        hits.clear();
        m.match_into(stream, 0, &mut hits);
    });
    let slots: Vec<u32> = hits.iter().map(|h| h.slot).collect();
    let batch = 4096;
    let row_out = t.dim() * Dtype::F16.size();
    let mut out = vec![0u8; batch * row_out];
    let opts = GatherOptions { dtype: Dtype::F16, max_threads: 1 };
    let mut failed = None;
    let gather_secs = median_secs(|| {
        for (s, tk) in slots.chunks(batch).zip(stream.chunks(batch)) {
            if let Err(e) = gather_with_token_rows(&t, s, tk, opts, &mut out[..s.len() * row_out]) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let hit = slots.iter().filter(|&&s| s != MISS_SLOT).count();
    outln!(
        "\nengine rates over the training split ({} tokens, one thread, median of 3): match {:.1} M tokens/s ({:.0}% hit an f-gram); rows for every position (f-gram or token row, f16) {:.1} M rows/s",
        stream.len(),
        stream.len() as f64 / match_secs / 1e6,
        100.0 * hit as f64 / stream.len() as f64,
        stream.len() as f64 / gather_secs / 1e6
    );
    outln!(
        "\nnext: scone info {0} | scone match {0} --text \"...\" | scone get {0} --text \" the LORD\"",
        table_path.display()
    );
    Ok(())
}

/// Median wall time of three runs of `f`, after one untimed warm-up run.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[1]
}
