//! `scone build`: ingest files into a new table.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{BuildConfig, BuildError, BuildPhase, Dtype, TableBuilder};

use crate::progress::bar;

#[derive(Args)]
pub struct BuildArgs {
    /// Embeddings: .npy (<f4, <f2, <f8) or .safetensors (F32, F16, BF16, F64), shape [rows, dim].
    #[arg(long)]
    pub embeddings: PathBuf,
    /// The tensor to read from a .safetensors file (default: its only tensor).
    #[arg(long)]
    pub tensor: Option<String>,
    /// N-grams, one line per row: token ids separated by spaces, optionally a tab and a count.
    #[arg(long)]
    pub ngrams: PathBuf,
    /// Where to write the table.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Token ids must be below this.
    #[arg(long)]
    pub vocab_size: u32,
    /// Longest n-gram the table holds.
    #[arg(long, default_value_t = 4)]
    pub n_max: u32,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f16", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Memory for sort buffers, e.g. 512M, 4G. Larger inputs spill to --temp-dir.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,
    /// Directory for spilled sort runs (default: the system temporary directory).
    #[arg(long)]
    pub temp_dir: Option<PathBuf>,
    /// A word-tokenizer file (`scone-word-tokenizer v1`) to embed, for `scone match --text`.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Replace an existing table.
    #[arg(long)]
    pub force: bool,
}

pub fn parse_dtype(s: &str) -> Result<Dtype, String> {
    Dtype::parse(s).ok_or_else(|| format!("unknown dtype `{s}`; use f32, f16 or bf16"))
}

pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult: usize = match s[i..].to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                other => return Err(format!("unknown size unit `{other}` in `{s}`; use K, M, G or T")),
            };
            (&s[..i], mult)
        }
        None => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("`{s}` is not a size such as 512M or 4G"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("`{s}` is not a size"));
    }
    Ok((n * mult as f64) as usize)
}

pub fn run(a: BuildArgs) -> Result<()> {
    let mut records = engine::ingest::records(&a.embeddings, &a.ngrams, a.tensor.as_deref())?;
    let (rows, dim) = (records.rows(), records.dim());
    // open_embeddings refuses more than MAX_DIM (< u32::MAX) values a row.
    let dim = u32::try_from(dim).context("the embedding dimension does not fit 32 bits")?;
    let mut cfg = BuildConfig::new(dim, a.dtype, a.n_max, a.vocab_size);
    cfg.memory_budget = a.memory_budget;
    cfg.temp_dir = a.temp_dir.clone();
    cfg.overwrite = a.force;
    cfg.source = format!("scone build --embeddings {} --ngrams {}", a.embeddings.display(), a.ngrams.display());
    cfg.source.truncate(1024);
    if let Some(tp) = &a.tokenizer {
        let bytes = std::fs::read(tp).with_context(|| format!("{}: cannot read tokenizer", tp.display()))?;
        let tok = scone_tokenizer::WordTokenizer::from_bytes(&bytes).with_context(|| format!("{}", tp.display()))?;
        if tok.vocab_size() != a.vocab_size {
            bail!("{}: tokenizer has {} tokens but --vocab-size is {}", tp.display(), tok.vocab_size(), a.vocab_size);
        }
        cfg.tokenizer = Some((scone_tokenizer::word::KIND.to_string(), bytes));
    }
    let mut builder = TableBuilder::create(&a.out, cfg)?;
    let pb = bar(rows, "ingest");
    let ngrams_path = a.ngrams.clone();
    let at_line = |e: BuildError| -> anyhow::Error {
        match e {
            BuildError::BadRecord { record, reason } => anyhow::anyhow!(
                "{}: line {} (embedding row {record}): {reason}; no table was written",
                ngrams_path.display(),
                record + 1
            ),
            BuildError::DuplicateNgram { first, second, ngram } => anyhow::anyhow!(
                "{}: line {}: duplicate n-gram {ngram:?} (first at line {}); no table was written",
                ngrams_path.display(),
                second + 1,
                first + 1
            ),
            other => anyhow::Error::new(other).context("no table was written"),
        }
    };
    for rec in records.by_ref() {
        let rec = rec.context("no table was written")?;
        builder.push(&rec.ngram, &rec.row, rec.count).map_err(at_line)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let (mut rows_pb, mut index_pb) = (None, None);
    let summary = builder
        .finish_with_progress(&mut |phase, done, total| {
            let slot = if phase == BuildPhase::Rows { &mut rows_pb } else { &mut index_pb };
            let pb =
                slot.get_or_insert_with(|| bar(total, if phase == BuildPhase::Rows { "lay out" } else { "index" }));
            pb.set_position(done);
        })
        .map_err(at_line)?;
    for pb in [rows_pb, index_pb].into_iter().flatten() {
        pb.finish_and_clear();
    }
    outln!(
        "built {}: {} rows of {dim} {} ({} bytes), {} suffix markers, {} key collisions, {} sort runs spilled",
        summary.path.display(),
        summary.rows,
        a.dtype,
        summary.file_bytes,
        summary.markers,
        summary.key_collisions,
        summary.spilled_runs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("lots").is_err());
    }
}
