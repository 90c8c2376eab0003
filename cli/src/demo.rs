//! `scone demo`: the whole flow on the bundled King James Bible.
//!
//! Tokenize, count 2..4-grams with bounded memory, select f-grams as SCONE does
//! (most frequent, with a minimum count), build a table, show the matches on a
//! passage, and measure match and gather rates. The rows are seeded synthetic
//! vectors until the trainer exports trained ones; the demo says so.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use engine::{gather, BuildConfig, Dtype, GatherOptions, SuffixMatcher, Table, TableBuilder, MISS_SLOT};
use trainer::{CountConfig, NgramCounter, WordTokenizer};

use crate::build_cmd::{parse_dtype, parse_size};
use crate::match_cmd::print_matches;
use crate::progress::{bar, spinner};
use crate::synthetic::row_for;

const DEFAULT_PASSAGE: &str =
    "In the beginning God created the heaven and the earth. And God said, Let there be light: and there was light.";

#[derive(Args)]
pub struct DemoArgs {
    /// Directory for the table.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Keep at most this many f-grams (the most frequent).
    #[arg(long, default_value_t = 100_000)]
    pub top_k: usize,
    /// Minimum count of an f-gram.
    #[arg(long, default_value_t = 3)]
    pub min_count: u64,
    /// Longest n-gram counted and stored.
    #[arg(long, default_value_t = 4)]
    pub n_max: usize,
    /// Embedding width of the (synthetic) rows.
    #[arg(long, default_value_t = 256)]
    pub dim: u32,
    #[arg(long, default_value = "f16", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Memory for n-gram counting and for the build's sort buffers.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub memory_budget: usize,
    /// Text whose matches are shown.
    #[arg(long, default_value = DEFAULT_PASSAGE)]
    pub passage: String,
}

pub fn run(a: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create directory", a.out.display()))?;
    let table_path = a.out.join("kjv.scone");

    let t0 = Instant::now();
    let verses = trainer::kjv()?;
    let tok = WordTokenizer::train(verses.iter().map(|v| v.text.as_str()), 1 << 20, 1);
    let docs: Vec<Vec<u32>> = verses.iter().map(|v| tok.encode(&v.text)).collect();
    let total_tokens: usize = docs.iter().map(|d| d.len()).sum();
    outln!(
        "1. corpus      King James Bible (bundled): {} verses, {} tokens, vocabulary {} words  [{:.2} s]",
        verses.len(),
        total_tokens,
        tok.vocab_size(),
        t0.elapsed().as_secs_f64()
    );
    outln!("               tokenizer: lowercase words and single punctuation marks (docs/TOKENIZER.md)");

    let t0 = Instant::now();
    let mut counter = NgramCounter::new(CountConfig {
        n_min: 2,
        n_max: a.n_max,
        memory_budget_bytes: a.memory_budget / 2,
        temp_dir: None,
    })?;
    let pb = bar(docs.len() as u64, "count");
    for d in &docs {
        counter.add_doc(d)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let merged = counter.finish()?;
    let mut distinct = 0u64;
    let fgrams = trainer::try_select_fgrams(merged.inspect(|_| distinct += 1), a.top_k, a.min_count)?;
    outln!("2. count       {distinct} distinct 2..{}-grams counted  [{:.2} s]", a.n_max, t0.elapsed().as_secs_f64());
    let mut by_len = vec![0usize; a.n_max + 1];
    for f in &fgrams {
        by_len[f.tokens.len()] += 1;
    }
    let lens: Vec<String> = (2..=a.n_max).map(|n| format!("{} {n}-grams", by_len[n])).collect();
    outln!(
        "3. select      {} f-grams: the most frequent with count >= {} (top-k {}): {}",
        fgrams.len(),
        a.min_count,
        a.top_k,
        lens.join(", ")
    );

    let t0 = Instant::now();
    let mut cfg = BuildConfig::new(a.dim, a.dtype, a.n_max as u32, tok.vocab_size());
    cfg.memory_budget = a.memory_budget / 2;
    cfg.overwrite = true;
    cfg.source = "scone demo: King James Bible, synthetic rows".into();
    cfg.tokenizer = Some((trainer::tokenizer::KIND.to_string(), tok.to_bytes()));
    let mut b = TableBuilder::create(&table_path, cfg)?;
    let pb = bar(fgrams.len() as u64, "build");
    for f in &fgrams {
        b.push(&f.tokens, &row_for(&f.tokens, a.dim as usize, 42), Some(f.count))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let summary = b.finish()?;
    outln!(
        "4. build       {} ({} rows x {} {}, hottest first, {:.1} MB)  [{:.2} s]",
        table_path.display(),
        summary.rows,
        a.dim,
        a.dtype,
        summary.file_bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    outln!("               NOTE: rows are seeded synthetic vectors, not trained embeddings; the trainer will export real ones.");

    let t = Table::open(&table_path)?;
    outln!(
        "               index {:.2} bytes/key, {} suffix markers (suffixes of f-grams that are not f-grams), {} key collisions",
        t.index_bytes() as f64 / t.rows() as f64,
        t.header().index.markers,
        t.header().build.key_collisions
    );

    outln!("\n5. match       longest f-gram ending at each token of the passage:");
    let m = SuffixMatcher::new(&t);
    let tokens = tok.encode(&a.passage);
    let pieces = tok.pieces(&a.passage);
    let hits = m.match_tokens(&tokens);
    let ngram_text = |g: &[u32]| -> Option<String> {
        Some(g.iter().map(|&i| tok.token(i).unwrap_or("?")).collect::<Vec<_>>().join(" "))
    };
    print_matches(&t, &tokens, &pieces, &hits, &ngram_text)?;

    // Rates over the whole corpus, one thread.
    outln!(
        "\n6. rates       over the whole corpus ({total_tokens} tokens), this machine, median of 3 after a warm-up:"
    );
    // One warm-up pass (page faults, caches), then the median of three timed ones.
    let sp = spinner("match");
    let mut all = Vec::with_capacity(total_tokens);
    let match_secs = median_secs(|| {
        all.clear();
        for d in &docs {
            m.match_into(d, 0, &mut all);
        }
    });
    sp.finish_and_clear();
    let matched: Vec<u32> = all.iter().map(|h| h.slot().unwrap_or(MISS_SLOT)).collect();
    let hit = all.iter().filter(|h| h.is_hit()).count();
    let mut len_hist = vec![0usize; a.n_max + 1];
    for h in &all {
        len_hist[h.len as usize] += 1;
    }
    outln!(
        "               match   {:.2} M tokens/s on one thread; {:.1}% of positions hit an f-gram ({})",
        total_tokens as f64 / match_secs / 1e6,
        100.0 * hit as f64 / total_tokens as f64,
        (2..=a.n_max).map(|n| format!("{n}: {}", len_hist[n])).collect::<Vec<_>>().join(", ")
    );
    let slots: Vec<u32> = matched.into_iter().filter(|&s| s != MISS_SLOT).collect();
    let batch = 4096;
    let row_out = a.dim as usize * a.dtype.size();
    let mut out = vec![0u8; batch * row_out];
    let opts = GatherOptions { dtype: a.dtype, max_threads: 0 };
    let mut failed = None;
    let gather_secs = median_secs(|| {
        for chunk in slots.chunks(batch) {
            if let Err(e) = gather(&t, chunk, opts, &mut out[..chunk.len() * row_out]) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    // Ceiling: copying the same number of bytes from a contiguous buffer as large
    // as the rows section, walked in order (no cache advantage over the gather).
    let src = vec![1u8; (t.rows() as usize * row_out).max(batch * row_out)];
    let mut at = 0;
    let copy_secs = median_secs(|| {
        for chunk in slots.chunks(batch) {
            let n = chunk.len() * row_out;
            if at + n > src.len() {
                at = 0;
            }
            out[..n].copy_from_slice(&src[at..at + n]);
            at += n;
            std::hint::black_box(&out);
        }
    });
    let bytes = (slots.len() * row_out) as f64;
    outln!(
        "               gather  {:.2} M rows/s, {:.2} GB/s in batches of {batch} (contiguous memcpy of the same bytes: {:.2} GB/s)",
        slots.len() as f64 / gather_secs / 1e6,
        bytes / gather_secs / 1e9,
        bytes / copy_secs / 1e9
    );
    outln!(
        "\nnext: scone info {0} | scone match {0} --text \"...\" | scone get {0} --text \"the lord\"",
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
