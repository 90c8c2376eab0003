//! The whole SCONE flow on a corpus, as one call: tokenizer, counting,
//! selection, training the baseline and SCONE models, export into engine
//! tables, and the three perplexities of docs/TRAINING.md:
//! (a) the baseline, (b) SCONE computing f-gram embeddings on the fly,
//! (c) SCONE reading them from the engine table. (a) is also measured for
//! `baseline-tied`, whose token embedding doubles as its output head: it is
//! exactly the SCONE runs' main model (same accelerator-resident parameters
//! and FLOPs per token), fed with T(token) alone.
//!
//! Presets: `quick` (the README's demo, a few minutes on 2 cores) and `full`
//! (the scaling curves: three table sizes K by two f-gram model sizes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use engine::{Dtype, Table};
use serde::{Deserialize, Serialize};

use crate::bpe::BpeTokenizer;
use crate::export::{export_table, table_inputs, ExportConfig};
use crate::fgram_list::write_fgram_list;
use crate::fgram_set::FgramSet;
use crate::model::{perplexity, Model, ModelConfig};
use crate::ngram_count::{CountConfig, NgramCount, NgramCounter};
use crate::nn::layers::StackConfig;
use crate::nn::{AdamWConfig, FgramConfig, LmConfig};
use crate::select::try_select_fgrams;
use crate::train::{TrainConfig, TrainError, Trainer};

/// Every `HELD_OUT_EVERY`-th verse (index % 20 == 19 in corpus order) is
/// held out: 5 % of the text, spread over every book.
pub const HELD_OUT_EVERY: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    pub name: String,
    pub bpe_vocab: usize,
    pub n_max: usize,
    pub min_count: u64,
    /// Table sizes: the top K f-grams, one SCONE run per K and f-gram model.
    pub top_k: Vec<usize>,
    pub context: usize,
    pub lm: StackConfig,
    /// SCONE's f-gram models, one run per model and K. Each reads the LM's
    /// token embedding and outputs the LM's input, so its `d_model` must be
    /// the LM's; its size is set by its layers (and heads, d_ff).
    pub fgram_models: Vec<StackConfig>,
    /// Also train `baseline-tied`: the baseline with its token embedding tied
    /// to the output head, at the SCONE LM's accelerator-resident parameters.
    #[serde(default)]
    pub tied_baseline: bool,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: u64,
    /// Global gradient-norm clip of AdamW.
    #[serde(default = "default_clip_norm")]
    pub clip_norm: f64,
    /// The f-gram model's learning rate as a multiple of `lr` (its own
    /// parameters; T takes `lr`). See docs/TRAINING.md for why it is below 1.
    #[serde(default = "crate::nn::adamw::default_fgram_lr_scale")]
    pub fgram_lr_scale: f64,
    pub seed: u64,
    pub table_dtype: Dtype,
    pub memory_budget: usize,
    /// Evaluate at most this many held-out tokens (0: all).
    pub eval_tokens: usize,
}

impl ExperimentConfig {
    pub fn quick() -> ExperimentConfig {
        ExperimentConfig {
            name: "quick".into(),
            bpe_vocab: 2048,
            n_max: 3,
            min_count: 2,
            top_k: vec![20_000],
            context: 32,
            lm: StackConfig { d_model: 64, n_layers: 2, n_heads: 2, d_ff: 256 },
            fgram_models: vec![StackConfig { d_model: 64, n_layers: 1, n_heads: 2, d_ff: 256 }],
            tied_baseline: true,
            steps: 600,
            batch_size: 16,
            lr: 3e-3,
            warmup: 20,
            clip_norm: 1.0,
            fgram_lr_scale: 0.03,
            seed: 1,
            table_dtype: Dtype::F16,
            memory_budget: 256 << 20,
            eval_tokens: 20_000,
        }
    }

    pub fn full() -> ExperimentConfig {
        ExperimentConfig {
            name: "full".into(),
            bpe_vocab: 2048,
            n_max: 4,
            min_count: 2,
            top_k: vec![4_000, 32_000, 256_000],
            context: 64,
            lm: StackConfig { d_model: 128, n_layers: 2, n_heads: 4, d_ff: 512 },
            // 0.5x and 2x the LM's layers, at its width (the paper varies the
            // f-gram model's size by its layers).
            fgram_models: vec![
                StackConfig { d_model: 128, n_layers: 1, n_heads: 4, d_ff: 512 },
                StackConfig { d_model: 128, n_layers: 4, n_heads: 4, d_ff: 512 },
            ],
            tied_baseline: true,
            steps: 600,
            batch_size: 16,
            lr: 2e-3,
            warmup: 50,
            clip_norm: 1.0,
            fgram_lr_scale: 0.03,
            seed: 1,
            table_dtype: Dtype::F16,
            memory_budget: 1 << 30,
            eval_tokens: 0,
        }
    }

    pub fn preset(name: &str) -> Option<ExperimentConfig> {
        match name {
            "quick" => Some(Self::quick()),
            "full" => Some(Self::full()),
            _ => None,
        }
    }

    /// Refuses a configuration whose f-gram models are not at the LM's width.
    pub fn validate(&self) -> Result<(), TrainError> {
        if let Some((i, f)) = self.fgram_models.iter().enumerate().find(|(_, f)| f.d_model != self.lm.d_model) {
            return Err(TrainError::Data(format!(
                "f-gram model f{i} has width {}, the LM's d_model is {}: the f-gram model reads the LM's token \
                 embedding and its output is the LM's input, so it runs at the LM's width (size it by its layers)",
                f.d_model, self.lm.d_model
            )));
        }
        Ok(())
    }

    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup: self.warmup,
            seed: self.seed,
            checkpoint_every: (self.steps / 10).max(1),
            adamw: AdamWConfig {
                clip_norm: self.clip_norm,
                fgram_lr_scale: self.fgram_lr_scale,
                ..AdamWConfig::default()
            },
        }
    }
}

fn default_clip_norm() -> f64 {
    1.0
}

/// The corpus after tokenization and the train / held-out split.
pub struct Prepared {
    pub tokenizer: BpeTokenizer,
    pub train: Vec<u32>,
    pub held_out: Vec<u32>,
    pub train_verses: usize,
    pub held_out_verses: usize,
}

/// Trains the BPE on the training verses only, then encodes both splits
/// (each verse followed by a newline) into one stream each.
pub fn prepare_kjv(bpe_vocab: usize) -> Result<Prepared, TrainError> {
    let verses = crate::corpus::kjv().map_err(|e| TrainError::Data(e.to_string()))?;
    let text = |i: usize| format!("{}\n", verses[i].text);
    let (held, train): (Vec<usize>, Vec<usize>) =
        (0..verses.len()).partition(|i| i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1);
    let train_text: Vec<String> = train.iter().map(|&i| text(i)).collect();
    let tokenizer = BpeTokenizer::train(train_text.iter().map(|s| s.as_str()), bpe_vocab, 2)
        .map_err(|e| TrainError::Data(format!("tokenizer: {e}")))?;
    let encode = |ids: &[usize]| -> Vec<u32> { ids.iter().flat_map(|&i| tokenizer.encode(&text(i))).collect() };
    Ok(Prepared {
        train: encode(&train),
        held_out: encode(&held),
        train_verses: train.len(),
        held_out_verses: held.len(),
        tokenizer,
    })
}

/// Counts 2..=n_max-grams of `stream` with bounded memory and keeps the
/// `top_k` most frequent with count >= `min_count`. Returns them with the
/// number of distinct n-grams seen.
pub fn select(
    stream: &[u32],
    n_max: usize,
    top_k: usize,
    min_count: u64,
    budget: usize,
) -> Result<(Vec<NgramCount>, u64), TrainError> {
    let data = |e: crate::ngram_count::CountError| TrainError::Data(format!("counting: {e}"));
    let mut c = NgramCounter::new(CountConfig { n_min: 2, n_max, memory_budget_bytes: budget, temp_dir: None })
        .map_err(data)?;
    c.add_doc(stream).map_err(data)?;
    let mut distinct = 0u64;
    let merged = c.finish().map_err(data)?;
    let fgrams = try_select_fgrams(merged.inspect(|_| distinct += 1), top_k, min_count).map_err(data)?;
    Ok((fgrams, distinct))
}

/// One row of the results table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    /// F-grams in the table (0 for the baseline).
    pub k: usize,
    pub fgram_model: Option<StackConfig>,
    /// Parameters the f-gram model owns (positions, blocks); the
    /// token embedding it reads is the LM's, in `accelerator_params`. Not
    /// needed at inference.
    pub fgram_params: usize,
    pub accelerator_params: usize,
    pub inference_flops_per_token: u64,
    /// Seconds and tokens/s of the steps this invocation ran (a resumed run
    /// counts only the steps after its checkpoint).
    pub train_seconds: f64,
    pub train_tokens_per_s: f64,
    pub final_train_loss: f32,
    /// (a) for the baseline, (b) for SCONE.
    pub ppl_model: f64,
    /// (c): SCONE reading its input embeddings from the engine table.
    pub ppl_table: Option<f64>,
    pub table: Option<PathBuf>,
    pub table_bytes: Option<u64>,
    /// Share of held-out positions whose longest match is an f-gram of 2+ tokens.
    pub fgram_coverage: Option<f64>,
}

/// Observer of an experiment's progress: lines of text and a progress bar per long step.
pub trait Report {
    fn line(&self, s: &str);
    fn bar(&self, len: u64, what: &str) -> indicatif::ProgressBar;
}

pub struct Outcome {
    pub prepared: Prepared,
    pub fgrams: Vec<NgramCount>,
    pub results: Vec<RunResult>,
}

/// One run of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// (a): the LM fed by its token embedding; `tied` shares it with the output head.
    Baseline { tied: bool },
    /// SCONE with the top `k` f-grams and f-gram model `fgram_model`, on the tied LM.
    Scone { k: usize, fgram_model: usize },
}

impl Plan {
    fn name(&self) -> String {
        match *self {
            Plan::Baseline { tied: false } => "baseline".into(),
            Plan::Baseline { tied: true } => "baseline-tied".into(),
            Plan::Scone { k, fgram_model } => format!("scone-k{k}-f{fgram_model}"),
        }
    }
}

/// The runs of `cfg` in the order they are trained and reported.
fn plans(cfg: &ExperimentConfig) -> Vec<Plan> {
    let mut v = vec![Plan::Baseline { tied: false }];
    if cfg.tied_baseline {
        v.push(Plan::Baseline { tied: true });
    }
    for &k in &cfg.top_k {
        v.extend((0..cfg.fgram_models.len()).map(|fgram_model| Plan::Scone { k, fgram_model }));
    }
    v
}

/// The names of the runs of `cfg` (`baseline`, `baseline-tied`, `scone-k<K>-f<i>`), in order.
pub fn run_names(cfg: &ExperimentConfig) -> Vec<String> {
    plans(cfg).iter().map(Plan::name).collect()
}

/// The model configuration of `plan` at vocabulary `vocab`.
fn model_config(cfg: &ExperimentConfig, vocab: usize, plan: Plan) -> ModelConfig {
    let lm = |tie_embeddings| LmConfig { vocab, context: cfg.context, stack: cfg.lm, tie_embeddings };
    match plan {
        Plan::Baseline { tied } => ModelConfig { lm: lm(tied), fgram: None },
        Plan::Scone { fgram_model, .. } => ModelConfig {
            lm: lm(true),
            fgram: Some(FgramConfig { n_max: cfg.n_max, stack: cfg.fgram_models[fgram_model] }),
        },
    }
}

/// Runs `cfg` with outputs under `out` (checkpoints are resumed if present).
pub fn run(cfg: &ExperimentConfig, out: &Path, report: &dyn Report) -> Result<Outcome, TrainError> {
    run_selected(cfg, out, None, report)
}

/// [`run`], training and evaluating only the runs named in `only` (all when
/// `None`). The other runs' rows are taken from `out/results.json` when it
/// holds the same configuration (their parameter and FLOP counts recomputed
/// from it; measured figures kept as they were), and the merged rows are
/// written back (a run neither selected nor found there is left out); a
/// results.json of another configuration is an error.
pub fn run_selected(
    cfg: &ExperimentConfig,
    out: &Path,
    only: Option<&[String]>,
    report: &dyn Report,
) -> Result<Outcome, TrainError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TrainError::Io { path: p, source }
    };
    cfg.validate()?;
    let plans = plans(cfg);
    let names = run_names(cfg);
    if let Some(only) = only {
        if only.is_empty() {
            return Err(TrainError::Data("no run selected".into()));
        }
        if let Some(n) = only.iter().find(|n| !names.contains(n)) {
            return Err(TrainError::Data(format!(
                "no run `{n}` in this configuration; its runs: {}",
                names.join(", ")
            )));
        }
    }
    let selected = |p: &Plan| only.is_none_or(|o| o.contains(&p.name()));
    let results_path = out.join("results.json");
    let previous: Vec<RunResult> = match only {
        Some(_) if results_path.exists() => {
            let bytes = std::fs::read(&results_path).map_err(io(&results_path))?;
            let (mut old_cfg, old): (ExperimentConfig, Vec<RunResult>) = serde_json::from_slice(&bytes)
                .map_err(|e| TrainError::Data(format!("{}: {e}", results_path.display())))?;
            // The tied baseline only adds a run; a file written before it existed merges.
            old_cfg.tied_baseline = cfg.tied_baseline;
            if old_cfg != *cfg {
                return Err(TrainError::Data(format!(
                    "{} holds another configuration; rerun every run or use another --out",
                    results_path.display()
                )));
            }
            old
        }
        _ => Vec::new(),
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let dev = Device::Cpu;

    let t0 = Instant::now();
    let prepared = prepare_kjv(cfg.bpe_vocab)?;
    let tok_path = out.join("tokenizer.json");
    prepared.tokenizer.save(&tok_path).map_err(|e| TrainError::Data(e.to_string()))?;
    report.line(&format!(
        "1. tokenize    byte-level BPE, {} tokens, trained on {} verses: train {} tokens, held out {} tokens ({} verses, every {HELD_OUT_EVERY}th)  [{:.1} s]",
        prepared.tokenizer.vocab_size(),
        prepared.train_verses,
        prepared.train.len(),
        prepared.held_out.len(),
        prepared.held_out_verses,
        t0.elapsed().as_secs_f64()
    ));

    let t0 = Instant::now();
    let k_max = cfg.top_k.iter().copied().max().unwrap_or(0);
    let (all_fgrams, distinct) = select(&prepared.train, cfg.n_max, k_max, cfg.min_count, cfg.memory_budget)?;
    let list_path = out.join("fgrams.txt");
    write_fgram_list(&list_path, prepared.tokenizer.fingerprint(), cfg.n_max, &all_fgrams)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    report.line(&format!(
        "2. count       {distinct} distinct 2..{}-grams in the training split; {} with count >= {} kept (top {k_max}) -> {}  [{:.1} s]",
        cfg.n_max,
        all_fgrams.len(),
        cfg.min_count,
        list_path.display(),
        t0.elapsed().as_secs_f64()
    ));

    let eval_stream: &[u32] = match cfg.eval_tokens {
        0 => &prepared.held_out,
        n => &prepared.held_out[..n.min(prepared.held_out.len())],
    };
    let vocab = prepared.tokenizer.vocab_size() as usize;
    let mut results = Vec::new();
    // The f-gram set of the last K trained (runs of one K are consecutive).
    let mut set_of_k: Option<(usize, Arc<FgramSet>)> = None;

    for &plan in &plans {
        let name = plan.name();
        let mcfg = model_config(cfg, vocab, plan);
        if !selected(&plan) {
            if let Some(mut r) = previous.iter().find(|r| r.name == name).cloned() {
                r.fgram_params = mcfg.fgram.map_or(0, |f| f.params());
                r.accelerator_params = mcfg.lm.accelerator_params();
                r.inference_flops_per_token = mcfg.lm.flops_per_token();
                results.push(r);
            }
            continue;
        }
        match plan {
            // (a) the baselines.
            Plan::Baseline { tied } => {
                let (trainer, secs, tokens_per_s) =
                    train_one(cfg, &name, mcfg, None, &prepared.train, out, &dev, report)?;
                let ppl = perplexity(&trainer.model, eval_stream, cfg.context, 16, |w| trainer.model.embed(w))?;
                results.push(RunResult {
                    name: name.clone(),
                    k: 0,
                    fgram_model: None,
                    fgram_params: 0,
                    accelerator_params: mcfg.lm.accelerator_params(),
                    inference_flops_per_token: mcfg.lm.flops_per_token(),
                    train_seconds: secs,
                    train_tokens_per_s: tokens_per_s,
                    final_train_loss: final_loss(&trainer),
                    ppl_model: ppl,
                    ppl_table: None,
                    table: None,
                    table_bytes: None,
                    fgram_coverage: None,
                });
                let tied_note = if tied {
                    format!(
                        " (token embedding tied to the output head: SCONE's LM, {} accelerator params)",
                        mcfg.lm.accelerator_params()
                    )
                } else {
                    String::new()
                };
                report.line(&format!("   {name:<12} held-out perplexity (a) {ppl:.2}{tied_note}"));
            }
            // SCONE runs: every K by every f-gram model size.
            Plan::Scone { k, fgram_model: fi } => {
                let fgrams = &all_fgrams[..k.min(all_fgrams.len())];
                let set = match &set_of_k {
                    Some((sk, set)) if *sk == k => set.clone(),
                    _ => {
                        let set = Arc::new(FgramSet::new(fgrams, cfg.n_max));
                        set_of_k = Some((k, set.clone()));
                        set
                    }
                };
                let fcfg = mcfg.fgram.expect("a SCONE run has an f-gram model");
                let (trainer, secs, tokens_per_s) =
                    train_one(cfg, &name, mcfg, Some(set.clone()), &prepared.train, out, &dev, report)?;
                let model = &trainer.model;
                let ppl_fly = perplexity(model, eval_stream, cfg.context, 16, |w| model.embed(w))?;

                let t0 = Instant::now();
                let table_path = out.join(format!("{name}.scone"));
                let pb = report.bar((fgrams.len() + vocab) as u64, "export");
                let export = ExportConfig {
                    dtype: cfg.table_dtype,
                    batch: 1024,
                    memory_budget: cfg.memory_budget,
                    tokenizer: Some((BpeTokenizer::KIND.to_string(), prepared.tokenizer.to_bytes())),
                    source: format!("scone trainer: {} experiment, run {name}, King James Bible", cfg.name),
                };
                let summary = export_table(model, fgrams, &table_path, export, |d, _| pb.set_position(d))?;
                pb.finish_and_clear();
                let table = Table::open(&table_path).map_err(engine::Error::from)?;
                table
                    .check_tokenizer(BpeTokenizer::KIND, prepared.tokenizer.fingerprint())
                    .map_err(engine::Error::from)?;
                let ppl_table = perplexity(model, eval_stream, cfg.context, 16, |w| {
                    table_inputs(&table, model, w).map_err(|e| candle_core::Error::Msg(e.to_string()))
                })?;
                let coverage = coverage(&set, eval_stream, cfg.context);
                report.line(&format!(
                    "   {name:<12} exported {} f-gram rows + {vocab} token rows (T) ({}, {:.1} MB) -> {}  [{:.1} s]",
                    summary.rows,
                    cfg.table_dtype,
                    summary.file_bytes as f64 / 1e6,
                    table_path.display(),
                    t0.elapsed().as_secs_f64()
                ));
                report.line(&format!(
                    "   {name:<12} held-out perplexity (b) on the fly {ppl_fly:.2}, (c) from the table {ppl_table:.2}; {:.0}% of positions use an f-gram",
                    100.0 * coverage
                ));
                results.push(RunResult {
                    name,
                    k: fgrams.len(),
                    fgram_model: Some(cfg.fgram_models[fi]),
                    fgram_params: fcfg.params(),
                    accelerator_params: mcfg.lm.accelerator_params(),
                    inference_flops_per_token: mcfg.lm.flops_per_token(),
                    train_seconds: secs,
                    train_tokens_per_s: tokens_per_s,
                    final_train_loss: final_loss(&trainer),
                    ppl_model: ppl_fly,
                    ppl_table: Some(ppl_table),
                    table: Some(table_path),
                    table_bytes: Some(summary.file_bytes),
                    fgram_coverage: Some(coverage),
                });
            }
        }
    }
    let json = serde_json::to_vec_pretty(&(cfg, &results)).expect("results serialize");
    std::fs::write(&results_path, json).map_err(io(&results_path))?;
    Ok(Outcome { prepared, fgrams: all_fgrams, results })
}

fn final_loss(t: &Trainer) -> f32 {
    let tail: Vec<f32> = t.history.iter().rev().take(20).map(|p| p.loss).collect();
    tail.iter().sum::<f32>() / tail.len().max(1) as f32
}

/// Share of positions (windows as in evaluation) with an f-gram of 2+ tokens.
fn coverage(set: &FgramSet, stream: &[u32], context: usize) -> f64 {
    let (mut hit, mut n) = (0usize, 0usize);
    for w in stream.chunks(context) {
        for t in 0..w.len() {
            n += 1;
            hit += (set.longest(w, t) >= 2) as usize;
        }
    }
    hit as f64 / n.max(1) as f64
}

/// Trains (or resumes, or finds finished) the run `name`; also writes its
/// loss curve as CSV. Returns the trainer, the seconds this call trained
/// and its tokens/s.
#[allow(clippy::too_many_arguments)]
fn train_one(
    cfg: &ExperimentConfig,
    name: &str,
    model_cfg: ModelConfig,
    fgrams: Option<Arc<FgramSet>>,
    train: &[u32],
    out: &Path,
    dev: &Device,
    report: &dyn Report,
) -> Result<(Trainer, f64, f64), TrainError> {
    let dir = out.join("runs").join(name);
    let mut trainer = if dir.join("checkpoint.json").exists() {
        // Compared before loading: a checkpoint of another model (another
        // configuration, or one written before the model changed) is refused
        // here rather than failing on its parameters.
        let (saved_model, saved_train) = Trainer::checkpoint_configs(&dir)?;
        if saved_model != model_cfg || saved_train != cfg.train_config() {
            return Err(TrainError::Checkpoint {
                path: dir,
                reason: "belongs to a different configuration or an earlier version of the model; remove it or \
                         use another --out"
                    .into(),
            });
        }
        let t = Trainer::resume(&dir, fgrams, dev)?;
        report.line(&format!("   {name:<12} resuming from step {}", t.step()));
        t
    } else {
        Trainer::new(Model::new(model_cfg, fgrams, cfg.seed, dev)?, cfg.train_config())?
    };
    let pb = report.bar(cfg.steps, name);
    pb.set_position(trainer.step());
    let (t0, first) = (Instant::now(), trainer.step());
    trainer.run(train, cfg.steps, Some(&dir), Some(&pb))?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let csv: String = std::iter::once("step,loss,lr,grad_norm\n".to_string())
        .chain(trainer.history.iter().map(|p| format!("{},{},{},{}\n", p.step, p.loss, p.lr, p.grad_norm)))
        .collect();
    let csv_path = dir.join("loss.csv");
    std::fs::write(&csv_path, csv).map_err(|source| TrainError::Io { path: csv_path, source })?;
    report.line(&format!(
        "   {name:<12} trained to step {} ({} this run, {} tokens/step), final loss {:.3}  [{secs:.1} s]",
        cfg.steps,
        trainer.step() - first,
        cfg.batch_size * cfg.context,
        final_loss(&trainer)
    ));
    let tokens = (trainer.step() - first) as f64 * (cfg.batch_size * cfg.context) as f64;
    Ok((trainer, secs, tokens / secs.max(1e-9)))
}
