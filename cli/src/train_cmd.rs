//! `scone train`: the trainer's whole flow (tokenize, count, select, train
//! the baseline and SCONE models, export tables, evaluate), from a preset
//! with optional overrides. `scone demo` runs it with the quick preset.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use trainer::experiment::{self, ExperimentConfig, Outcome, Report};

use crate::progress::bar;

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// `quick` (minutes on 2 cores) or `full` (the scaling curves of docs/TRAINING.md).
    #[arg(long, default_value = "full")]
    pub preset: String,
    /// Output directory: tokenizer, f-gram list, checkpoints (resumed if present), tables, results.json.
    #[arg(long, default_value = "out/train")]
    pub out: PathBuf,
    /// Override the preset's optimizer steps per model.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Override the preset's table sizes (comma-separated K values).
    #[arg(long, value_delimiter = ',')]
    pub top_k: Option<Vec<usize>>,
    /// Override the seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override the gradient-norm clip.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Override the f-gram model's learning rate, as a multiple of the peak
    /// learning rate (its own parameters; T takes the LM's rate).
    #[arg(long)]
    pub fgram_lr_scale: Option<f64>,
    /// Train and evaluate only these runs (comma-separated names, e.g.
    /// `baseline-tied`); the others' rows are kept from the results.json
    /// already under --out, which must hold the same configuration.
    #[arg(long, value_delimiter = ',')]
    pub runs: Option<Vec<String>>,
}

impl TrainArgs {
    pub fn config(&self) -> Result<ExperimentConfig> {
        let Some(mut cfg) = ExperimentConfig::preset(&self.preset) else {
            bail!("unknown preset `{}`; use quick or full", self.preset)
        };
        if let Some(s) = self.steps {
            if s == 0 {
                bail!("--steps must be at least 1");
            }
            cfg.steps = s;
            cfg.warmup = cfg.warmup.min(s / 2);
        }
        if let Some(k) = &self.top_k {
            if k.is_empty() || k.contains(&0) {
                bail!("--top-k needs positive table sizes");
            }
            cfg.top_k = k.clone();
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(lr) = self.lr {
            if lr.is_nan() || lr <= 0.0 || lr.is_infinite() {
                bail!("--lr must be a positive number");
            }
            cfg.lr = lr;
        }
        if let Some(c) = self.clip_norm {
            if c.is_nan() || c <= 0.0 {
                bail!("--clip-norm must be positive");
            }
            cfg.clip_norm = c;
        }
        if let Some(s) = self.fgram_lr_scale {
            if s.is_nan() || s < 0.0 || s.is_infinite() {
                bail!("--fgram-lr-scale must be a number >= 0");
            }
            cfg.fgram_lr_scale = s;
        }
        Ok(cfg)
    }
}

/// Prints lines on stdout and draws progress bars on stderr.
pub struct Console;

impl Report for Console {
    fn line(&self, s: &str) {
        use std::io::Write as _;
        // A closed stdout must not stop training; the results still land in files.
        let _ = writeln!(std::io::stdout().lock(), "{s}");
    }

    fn bar(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        bar(len, what)
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let cfg = a.config()?;
    let outcome = experiment::run_selected(&cfg, &a.out, a.runs.as_deref(), &Console)?;
    print_results(&cfg, &outcome)?;
    outln!("\nresults: {}", a.out.join("results.json").display());
    Ok(())
}

pub fn print_results(cfg: &ExperimentConfig, o: &Outcome) -> Result<()> {
    outln!(
        "\nheld-out perplexity ({} tokens of {} held-out verses; LM d={} layers={} context={})",
        if cfg.eval_tokens == 0 { o.prepared.held_out.len() } else { cfg.eval_tokens.min(o.prepared.held_out.len()) },
        o.prepared.held_out_verses,
        cfg.lm.d_model,
        cfg.lm.n_layers,
        cfg.context
    );
    outln!(
        "{:<16} {:>8} {:>12} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "run",
        "K",
        "f-gram par.",
        "accel. par.",
        "FLOPs/token",
        "(a)/(b)",
        "(c) table",
        "table MB"
    );
    for r in &o.results {
        outln!(
            "{:<16} {:>8} {:>12} {:>12} {:>12} {:>10.2} {:>12} {:>12}",
            r.name,
            r.k,
            r.fgram_params,
            r.accelerator_params,
            r.inference_flops_per_token,
            r.ppl_model,
            r.ppl_table.map_or("-".into(), |p| format!("{p:.2}")),
            r.table_bytes.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1e6))
        );
    }
    outln!(
        "(a) baseline, (b) SCONE computing f-gram embeddings on the fly, (c) SCONE reading them from the engine table"
    );
    if o.results.iter().any(|r| r.name == "baseline-tied") {
        outln!("baseline-tied: (a) with the token embedding tied to the output head (SCONE's accelerator params)");
    }
    Ok(())
}
