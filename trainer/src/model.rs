//! A trainable model: the baseline LM, or SCONE (LM + f-gram model + the
//! f-gram set that decides which n-gram feeds each position).

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::fgram_set::{BatchNgrams, FgramSet};
use crate::nn::{FgramConfig, FgramModel, Lm, LmConfig, Params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub lm: LmConfig,
    /// Present for SCONE; the LM then has no token embedding.
    pub fgram: Option<FgramConfig>,
}

impl ModelConfig {
    pub fn is_scone(&self) -> bool {
        self.fgram.is_some()
    }
}

pub struct Model {
    pub cfg: ModelConfig,
    pub params: Params,
    pub lm: Lm,
    pub fgram: Option<FgramModel>,
    pub fgrams: Option<Arc<FgramSet>>,
    device: Device,
}

impl Model {
    /// A freshly initialised model; the same seed gives the same weights.
    pub fn new(cfg: ModelConfig, fgrams: Option<Arc<FgramSet>>, seed: u64, device: &Device) -> Result<Model> {
        if cfg.lm.token_embedding == cfg.fgram.is_some() {
            candle_core::bail!("a model has either a token embedding (baseline) or an f-gram model (SCONE)");
        }
        if let Some(f) = &cfg.fgram {
            if f.out_dim != cfg.lm.stack.d_model || f.vocab != cfg.lm.vocab {
                candle_core::bail!("f-gram model output {} / vocab {} do not fit the LM", f.out_dim, f.vocab);
            }
            match &fgrams {
                Some(set) if set.n_max() <= f.n_max => {}
                Some(set) => candle_core::bail!("f-grams up to {} tokens, f-gram model up to {}", set.n_max(), f.n_max),
                None => candle_core::bail!("a SCONE model needs its f-gram set"),
            }
        }
        let mut params = Params::new(seed, device);
        let lm = Lm::new(&mut params, cfg.lm)?;
        let fgram = match cfg.fgram {
            Some(f) => Some(FgramModel::new(&mut params, f)?),
            None => None,
        };
        Ok(Model { cfg, params, lm, fgram, fgrams, device: device.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Input embeddings [B, T, d] of `windows` (all the same length), as the
    /// model computes them: token embeddings, or the f-gram model run on the
    /// longest f-gram ending at each position (each distinct n-gram once).
    pub fn embed(&self, windows: &[&[u32]]) -> Result<Tensor> {
        let (b, t) = (windows.len(), windows.first().map_or(0, |w| w.len()));
        match (&self.fgram, &self.fgrams) {
            (Some(fm), Some(set)) => {
                let batch = BatchNgrams::new(set, windows);
                let rows = fm.forward(&batch.unique, &self.device)?;
                let index = Tensor::from_vec(batch.index, b * t, &self.device)?;
                rows.index_select(&index, 0)?.reshape((b, t, self.cfg.lm.stack.d_model))
            }
            _ => {
                let ids: Vec<u32> = windows.iter().flat_map(|w| w.iter().copied()).collect();
                self.lm.embed(&Tensor::from_vec(ids, (b, t), &self.device)?)
            }
        }
    }

    /// Mean next-token cross-entropy over windows of T+1 tokens, inputs from [`Model::embed`].
    pub fn loss(&self, windows: &[&[u32]]) -> Result<Tensor> {
        let inputs: Vec<&[u32]> = windows.iter().map(|w| &w[..w.len() - 1]).collect();
        self.loss_with_inputs(&self.embed(&inputs)?, windows)
    }

    /// Mean next-token cross-entropy given the input embeddings [B, T, d] of
    /// windows of T+1 tokens (the engine supplies them at inference).
    pub fn loss_with_inputs(&self, inputs: &Tensor, windows: &[&[u32]]) -> Result<Tensor> {
        let logits = self.lm.forward_embeds(inputs)?;
        let (b, t, v) = logits.dims3()?;
        let targets: Vec<u32> = windows.iter().flat_map(|w| w[1..].iter().copied()).collect();
        let targets = Tensor::from_vec(targets, b * t, &self.device)?;
        candle_nn::loss::cross_entropy(&logits.reshape((b * t, v))?, &targets)
    }
}

/// Perplexity over `stream`, cut into consecutive windows of `context`+1
/// tokens that overlap by one, so every token after the first is predicted
/// exactly once (with the context since its window began). `inputs` maps
/// windows of T tokens to their input embeddings [B, T, d].
pub fn perplexity(
    model: &Model,
    stream: &[u32],
    context: usize,
    batch: usize,
    mut inputs: impl FnMut(&[&[u32]]) -> Result<Tensor>,
) -> Result<f64> {
    let windows: Vec<&[u32]> = (0..)
        .map(|i| i * context)
        .take_while(|&s| s + context < stream.len())
        .map(|s| &stream[s..=s + context])
        .collect();
    if windows.is_empty() {
        candle_core::bail!("held-out stream of {} tokens is shorter than one window of {}", stream.len(), context + 1);
    }
    let (mut nll, mut n) = (0f64, 0usize);
    for chunk in windows.chunks(batch.max(1)) {
        let ins: Vec<&[u32]> = chunk.iter().map(|w| &w[..context]).collect();
        let loss = model.loss_with_inputs(&inputs(&ins)?, chunk)?.to_scalar::<f32>()? as f64;
        nll += loss * (chunk.len() * context) as f64;
        n += chunk.len() * context;
    }
    Ok((nll / n as f64).exp())
}
