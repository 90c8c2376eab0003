//! The training loop: seeded batches, AdamW with warmup and cosine decay,
//! a progress bar with loss and tokens/s, and checkpoints that a later run
//! resumes from, landing on the same weights as an uninterrupted run.
//!
//! A checkpoint is a directory holding `state-<step>.safetensors` (weights
//! and optimizer moments) and `checkpoint.json` (configs, step, loss history,
//! the f-gram list's fingerprint, the state file's xxh3, and an xxh3 of the
//! JSON itself). The JSON is replaced by rename after the state file is
//! synced, so a run killed at any moment leaves the previous checkpoint whole.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fgram_set::FgramSet;
use crate::model::{Model, ModelConfig};
use crate::nn::{AdamW, AdamWConfig};

const CHECKPOINT_FORMAT: &str = "scone-checkpoint v1";
const META_FILE: &str = "checkpoint.json";

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: checkpoint {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error("training data: {0}")]
    Data(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimizer steps of the schedule.
    pub steps: u64,
    /// Windows per step; each window is the LM's context + 1 tokens.
    pub batch_size: usize,
    pub lr: f64,
    /// Linear warm-up steps, then cosine decay to 10 % of `lr` at `steps`.
    pub warmup: u64,
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    pub adamw: AdamWConfig,
}

impl TrainConfig {
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }
}

/// One logged step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogPoint {
    pub step: u64,
    pub loss: f32,
    pub lr: f64,
    /// Global gradient norm before clipping.
    #[serde(default)]
    pub grad_norm: f64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    model: ModelConfig,
    train: TrainConfig,
    step: u64,
    fgram_fingerprint: Option<u64>,
    state_file: String,
    state_xxh3: u64,
    history: Vec<LogPoint>,
}

/// `checkpoint.json` is `{"xxh3":"<16 hex>","meta":<JSON of Meta>}` with the
/// hash taken over the exact bytes of the `meta` value as written, so checking
/// it never depends on a float surviving a parse and re-encode.
const META_PREFIX: &str = "{\"xxh3\":\"";
const META_MIDDLE: &str = "\",\"meta\":";

pub struct Trainer {
    pub model: Model,
    pub cfg: TrainConfig,
    pub history: Vec<LogPoint>,
    opt: AdamW,
}

impl Trainer {
    pub fn new(model: Model, cfg: TrainConfig) -> Result<Trainer, TrainError> {
        let opt = AdamW::new(cfg.adamw, &model.params)?;
        Ok(Trainer { model, cfg, history: Vec::new(), opt })
    }

    /// Steps taken so far.
    pub fn step(&self) -> u64 {
        self.opt.step
    }

    /// The windows of step `step`: drawn from a generator seeded by the run's
    /// seed and the step alone, so a resumed run draws the same ones.
    pub fn batch<'d>(&self, data: &'d [u32], step: u64) -> Vec<&'d [u32]> {
        let w = self.model.cfg.lm.context + 1;
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..self.cfg.batch_size)
            .map(|_| {
                let s = rng.gen_range(0..=data.len() - w);
                &data[s..s + w]
            })
            .collect()
    }

    /// One optimizer step; returns the batch's loss.
    pub fn train_step(&mut self, data: &[u32]) -> Result<f32, TrainError> {
        let step = self.opt.step;
        let batch = self.batch(data, step);
        let loss = self.model.loss(&batch)?;
        let grads = loss.backward()?;
        let lr = self.cfg.lr_at(step);
        let grad_norm = self.opt.update(&self.model.params, &grads, lr)?;
        let loss = loss.to_scalar::<f32>()?;
        self.history.push(LogPoint { step, loss, lr, grad_norm });
        Ok(loss)
    }

    /// Trains until `until` steps (at most `cfg.steps`), checkpointing into
    /// `checkpoint_dir` every `cfg.checkpoint_every` steps and at the end.
    pub fn run(
        &mut self,
        data: &[u32],
        until: u64,
        checkpoint_dir: Option<&Path>,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<(), TrainError> {
        let need = self.model.cfg.lm.context + 1;
        if data.len() < need {
            return Err(TrainError::Data(format!("{} tokens, fewer than one window of {need}", data.len())));
        }
        let until = until.min(self.cfg.steps);
        let tokens_per_step = (self.cfg.batch_size * self.model.cfg.lm.context) as f64;
        let started = Instant::now();
        let first = self.opt.step;
        let mut smooth = None::<f32>;
        while self.opt.step < until {
            let loss = self.train_step(data)?;
            let s = smooth.map_or(loss, |s| 0.9 * s + 0.1 * loss);
            smooth = Some(s);
            if let Some(pb) = progress {
                let rate = (self.opt.step - first) as f64 * tokens_per_step / started.elapsed().as_secs_f64();
                pb.set_position(self.opt.step);
                pb.set_message(format!("loss {s:.3}  {:.0} tok/s", rate));
            }
            let every = self.cfg.checkpoint_every;
            if let Some(dir) = checkpoint_dir {
                if (every > 0 && self.opt.step.is_multiple_of(every)) || self.opt.step == until {
                    self.save(dir)?;
                }
            }
        }
        Ok(())
    }

    /// Writes a checkpoint into `dir` (created if needed), replacing the previous one.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let state_name = format!("state-{}.safetensors", self.opt.step);
        let state_path = dir.join(&state_name);
        let tmp = dir.join(format!("{state_name}.tmp"));
        let mut tensors: HashMap<String, Tensor> =
            self.model.params.tensors().into_iter().map(|(k, t)| (format!("param.{k}"), t)).collect();
        tensors.extend(self.opt.state().into_iter().map(|(k, t)| (format!("adamw.{k}"), t)));
        candle_core::safetensors::save(&tensors, &tmp)?;
        let bytes = std::fs::read(&tmp).map_err(io_err(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &state_path).map_err(io_err(&state_path))?;

        let previous = read_meta(dir).ok().map(|m| m.state_file);
        let meta = Meta {
            format: CHECKPOINT_FORMAT.into(),
            model: self.model.cfg,
            train: self.cfg,
            step: self.opt.step,
            fgram_fingerprint: self.model.fgrams.as_ref().map(|s| s.fingerprint()),
            state_file: state_name.clone(),
            state_xxh3: xxhash_rust::xxh3::xxh3_64(&bytes),
            history: self.history.clone(),
        };
        let json = serde_json::to_string(&meta).expect("meta serializes");
        let file = format!("{META_PREFIX}{:016x}{META_MIDDLE}{json}}}\n", xxhash_rust::xxh3::xxh3_64(json.as_bytes()));
        let meta_path = dir.join(META_FILE);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(file.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &meta_path).map_err(io_err(&meta_path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        if let Some(old) = previous.filter(|p| *p != state_name) {
            let _ = std::fs::remove_file(dir.join(old));
        }
        Ok(())
    }

    /// The model and training configurations of the checkpoint in `dir`, read
    /// without building the model, so a caller can refuse a checkpoint of
    /// another configuration before loading it.
    pub fn checkpoint_configs(dir: &Path) -> Result<(ModelConfig, TrainConfig), TrainError> {
        let meta = read_meta(dir)?;
        Ok((meta.model, meta.train))
    }

    /// Continues the run checkpointed in `dir`. `fgrams` must be the f-gram
    /// list the run was started with (checked by fingerprint).
    pub fn resume(dir: &Path, fgrams: Option<Arc<FgramSet>>, device: &Device) -> Result<Trainer, TrainError> {
        let meta = read_meta(dir)?;
        let bad = |reason: String| TrainError::Checkpoint { path: dir.to_path_buf(), reason };
        if meta.fgram_fingerprint != fgrams.as_ref().map(|s| s.fingerprint()) {
            return Err(bad("was trained with a different f-gram list (fingerprints differ)".into()));
        }
        let state_path = dir.join(&meta.state_file);
        let bytes = std::fs::read(&state_path).map_err(io_err(&state_path))?;
        if xxhash_rust::xxh3::xxh3_64(&bytes) != meta.state_xxh3 {
            return Err(TrainError::Checkpoint { path: state_path, reason: "state file checksum mismatch".into() });
        }
        let saved = candle_core::safetensors::load_buffer(&bytes, device)?;
        let strip = |prefix: &str| -> HashMap<String, Tensor> {
            saved.iter().filter_map(|(k, t)| k.strip_prefix(prefix).map(|k| (k.to_string(), t.clone()))).collect()
        };
        let model = Model::new(meta.model, fgrams, meta.train.seed, device)?;
        model.params.load(&strip("param.")).map_err(|e| bad(e.to_string()))?;
        let mut opt = AdamW::new(meta.train.adamw, &model.params)?;
        opt.load_state(&strip("adamw."), meta.step).map_err(|e| bad(e.to_string()))?;
        Ok(Trainer { model, cfg: meta.train, history: meta.history, opt })
    }
}

fn read_meta(dir: &Path) -> Result<Meta, TrainError> {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let bad = |reason: String| TrainError::Checkpoint { path: path.clone(), reason };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not UTF-8".into()))?;
    let body = text.trim_end().strip_prefix(META_PREFIX).and_then(|r| r.strip_suffix('}'));
    let (hex, json) = body
        .and_then(|b| Some((b.get(..16)?, b.get(16..)?.strip_prefix(META_MIDDLE)?)))
        .ok_or_else(|| bad("is not a scone checkpoint file (unexpected layout)".into()))?;
    let stored = u64::from_str_radix(hex, 16).map_err(|_| bad(format!("checksum `{hex}` is not hex")))?;
    if xxhash_rust::xxh3::xxh3_64(json.as_bytes()) != stored {
        return Err(bad("checksum mismatch (edited or damaged)".into()));
    }
    let meta: Meta =
        serde_json::from_str(json).map_err(|e| bad(format!("unreadable (another trainer version?): {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(bad(format!("format {:?}, expected {CHECKPOINT_FORMAT:?}", meta.format)));
    }
    Ok(meta)
}
