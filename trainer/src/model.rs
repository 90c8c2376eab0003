//! A trainable model: the baseline LM, or SCONE (Yu et al. 2025, Algorithm
//! 1): the LM, which owns the token embedding T, plus an f-gram model that
//! reads T, plus the f-gram set that decides what feeds each position: the
//! f-gram model's output for the longest f-gram of 2+ tokens ending there,
//! or T(token) where none does.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::fgram_set::{BatchNgrams, FgramSet};
use crate::nn::{FgramConfig, FgramModel, Lm, LmConfig, Params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub lm: LmConfig,
    /// Present for SCONE: the f-gram model, at the LM's width, reading the
    /// LM's token embedding T (the LM is tied in the experiments).
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
        if let Some(f) = &cfg.fgram {
            if f.stack.d_model != cfg.lm.stack.d_model {
                candle_core::bail!(
                    "f-gram model width {} differs from the LM's d_model {}: the f-gram model reads the LM's token \
                     embedding and its output is the LM's input, so it runs at the LM's width",
                    f.stack.d_model,
                    cfg.lm.stack.d_model
                );
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
            Some(f) => Some(FgramModel::new(&mut params, f, lm.token_embedding())?),
            None => None,
        };
        Ok(Model { cfg, params, lm, fgram, fgrams, device: device.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Input embeddings [B, T, d] of `windows` (all the same length), as the
    /// model computes them. Baseline: T(token). SCONE: the f-gram model's
    /// output for the longest f-gram of 2+ tokens ending at each position
    /// (each distinct f-gram run once), T(token) where none ends there.
    pub fn embed(&self, windows: &[&[u32]]) -> Result<Tensor> {
        let (b, t) = (windows.len(), windows.first().map_or(0, |w| w.len()));
        let d = self.cfg.lm.stack.d_model;
        match (&self.fgram, &self.fgrams) {
            (Some(fm), Some(set)) => {
                let batch = BatchNgrams::new(set, windows);
                let mut parts = Vec::with_capacity(2);
                if !batch.fgrams.is_empty() {
                    parts.push(fm.forward(&batch.fgrams, &self.device)?);
                }
                if !batch.tokens.is_empty() {
                    let ids = Tensor::from_vec(batch.tokens.clone(), batch.tokens.len(), &self.device)?;
                    parts.push(self.lm.token_embedding().embedding(&ids)?);
                }
                if parts.is_empty() {
                    return Tensor::zeros((b, t, d), candle_core::DType::F32, &self.device);
                }
                let rows = Tensor::cat(&parts, 0)?;
                let index = Tensor::from_vec(batch.index, b * t, &self.device)?;
                rows.index_select(&index, 0)?.reshape((b, t, d))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ngram_count::NgramCount;
    use crate::nn::layers::StackConfig;

    const VOCAB: usize = 20;

    fn stack(d: usize) -> StackConfig {
        StackConfig { d_model: d, n_layers: 1, n_heads: 2, d_ff: 2 * d }
    }

    fn config(fgram_width: usize) -> ModelConfig {
        ModelConfig {
            lm: LmConfig { vocab: VOCAB, context: 8, stack: stack(8), tie_embeddings: true },
            fgram: Some(FgramConfig { n_max: 3, stack: stack(fgram_width) }),
        }
    }

    fn set() -> Arc<FgramSet> {
        let f = |tokens: &[u32], count| NgramCount { tokens: tokens.to_vec(), count };
        Arc::new(FgramSet::new(&[f(&[6, 7], 9), f(&[2, 3, 4], 5)], 3))
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
    }

    #[test]
    fn unmatched_positions_take_the_token_embedding_and_matched_ones_the_fgram_model() {
        let m = Model::new(config(8), Some(set()), 3, &Device::Cpu).unwrap();
        let tok = m.lm.token_embedding().to_vec2::<f32>().unwrap();
        let fm = m.fgram.as_ref().unwrap();
        let fgram_row = |g: &[u32]| fm.forward(&[g], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap().remove(0);
        // [6, 7] and [2, 3, 4] are f-grams, [3, 4] and [9, 3, 4] are not;
        // the second window starts inside a [6, 7], which does not count there.
        let stream: &[u32] = &[5, 6, 7, 2, 3, 4, 6, 7, 6, 7, 9, 3, 4, 6];
        let (w1, w2) = (&stream[..7], &stream[7..]);
        let got = m.embed(&[w1, w2]).unwrap();
        let (g1, g2) = (rows(&got.narrow(0, 0, 1).unwrap()), rows(&got.narrow(0, 1, 1).unwrap()));
        let want1 = [
            tok[5].clone(),
            tok[6].clone(),
            fgram_row(&[6, 7]),
            tok[2].clone(),
            tok[3].clone(),
            fgram_row(&[2, 3, 4]),
            tok[6].clone(),
        ];
        let want2 = [
            tok[7].clone(),
            tok[6].clone(),
            fgram_row(&[6, 7]),
            tok[9].clone(),
            tok[3].clone(),
            tok[4].clone(),
            tok[6].clone(),
        ];
        assert_eq!(g1, want1);
        assert_eq!(g2, want2);
        // A matched position's input is not T's row of its last token.
        assert_ne!(g1[2], tok[7]);
    }

    #[test]
    fn a_fgram_model_of_another_width_is_refused() {
        let e = Model::new(config(16), Some(set()), 3, &Device::Cpu).err().expect("width 16 against an LM of 8");
        assert!(e.to_string().contains("f-gram model width 16 differs from the LM's d_model 8"), "{e}");
        let mut p = crate::nn::Params::new(1, &Device::Cpu);
        let t = p.normal("t", &[VOCAB, 8], 0.02).unwrap();
        let f = FgramConfig { n_max: 3, stack: stack(16) };
        assert!(FgramModel::new(&mut p, f, &t).is_err());
    }

    #[test]
    fn the_fgram_model_reads_the_lms_token_embedding() {
        let m = Model::new(config(8), Some(set()), 3, &Device::Cpu).unwrap();
        // It owns positions and blocks only; T is the LM's.
        assert!(m.params.iter().all(|(k, _)| !k.starts_with("fgram.") || !k.contains("tok_emb")));
        assert_eq!(m.params.count("fgram."), m.cfg.fgram.unwrap().params());
        // The gradient of its output lands on T's rows of the f-gram's tokens, and only there.
        let out = m.fgram.as_ref().unwrap().forward(&[&[2, 3, 4]], &Device::Cpu).unwrap();
        let grads = out.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(m.params.get("lm.tok_emb").unwrap()).expect("T gets a gradient");
        let norms: Vec<f32> = g.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
        for (tok, n) in norms.iter().enumerate() {
            assert_eq!(*n > 0.0, (2..=4).contains(&tok), "token {tok}: |grad|^2 {n}");
        }
        // Single tokens are T's business, not the f-gram model's.
        assert!(m.fgram.as_ref().unwrap().forward(&[&[2]], &Device::Cpu).is_err());
    }
}
