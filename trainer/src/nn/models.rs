//! The two models: the main LM (baseline, or SCONE's with its input
//! embeddings supplied from outside) and the f-gram model.

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{Linear, Stack, StackConfig};
use super::params::Params;

/// The main language model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmConfig {
    pub vocab: usize,
    /// Longest sequence (learned positions).
    pub context: usize,
    pub stack: StackConfig,
    /// Baseline: the LM owns a token embedding table. SCONE: it does not; its
    /// inputs come from the f-gram model (training) or the engine (inference).
    pub token_embedding: bool,
    /// Baseline only: the output head's weight is the token embedding
    /// (transposed), one matrix serving both ends, so the LM has exactly the
    /// SCONE LM's accelerator-resident parameters. Absent in checkpoints and
    /// results written before it existed: untied.
    #[serde(default)]
    pub tie_embeddings: bool,
}

impl LmConfig {
    /// Parameters that live on the accelerator at inference: everything the
    /// LM owns (for SCONE the input embeddings are off-accelerator rows). A
    /// tied token embedding and output head are one matrix, counted once.
    pub fn accelerator_params(&self) -> usize {
        let d = self.stack.d_model;
        let emb = if self.token_embedding { self.vocab * d } else { 0 };
        let head_weight = if self.tie_embeddings { 0 } else { d * self.vocab };
        emb + self.context * d + self.stack.block_params() + head_weight + self.vocab
    }

    /// Inference FLOPs per token at full context: blocks plus the output
    /// head (embedding lookups are memory reads, not FLOPs).
    pub fn flops_per_token(&self) -> u64 {
        self.stack.flops_per_token(self.context) + 2 * (self.stack.d_model * self.vocab) as u64
    }
}

pub struct Lm {
    pub cfg: LmConfig,
    tok_emb: Option<Tensor>,
    pos_emb: Tensor,
    stack: Stack,
    head: Head,
}

/// The output projection: its own weight, or the token embedding's transpose.
enum Head {
    Own(Linear),
    /// Logits are `x · tok_embᵀ + bias`; the embedding is the same tensor (the
    /// same parameter) that [`Lm::embed`] reads, so backprop sums both uses'
    /// gradients into it.
    Tied {
        bias: Tensor,
    },
}

impl Lm {
    pub fn new(p: &mut Params, cfg: LmConfig) -> Result<Lm> {
        let d = cfg.stack.d_model;
        if cfg.tie_embeddings && !cfg.token_embedding {
            candle_core::bail!("tied embeddings need the LM's own token embedding (a baseline, not SCONE)");
        }
        let tok_emb = if cfg.token_embedding { Some(p.normal("lm.tok_emb", &[cfg.vocab, d], 0.02)?) } else { None };
        let pos_emb = p.normal("lm.pos_emb", &[cfg.context, d], 0.01)?;
        let stack = Stack::new(p, "lm", cfg.stack)?;
        let head = if cfg.tie_embeddings {
            Head::Tied { bias: p.constant("lm.head.bias", &[cfg.vocab], 0.0)? }
        } else {
            Head::Own(Linear::new(p, "lm.head", d, cfg.vocab, 0.02)?)
        };
        Ok(Lm { cfg, tok_emb, pos_emb, stack, head })
    }

    /// Token embeddings of `ids` [B, T] (baseline only).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let Some(emb) = &self.tok_emb else { candle_core::bail!("this LM has no token embedding (SCONE)") };
        let (b, t) = ids.dims2()?;
        emb.embedding(&ids.flatten_all()?)?.reshape((b, t, self.cfg.stack.d_model))
    }

    /// Logits [B, T, vocab] from input embeddings [B, T, d].
    pub fn forward_embeds(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        if t > self.cfg.context {
            candle_core::bail!("sequence of {t} tokens is longer than the context {}", self.cfg.context);
        }
        let x = x.broadcast_add(&self.pos_emb.narrow(0, 0, t)?)?;
        let h = self.stack.forward(&x)?;
        match (&self.head, &self.tok_emb) {
            (Head::Own(head), _) => head.forward(&h),
            (Head::Tied { bias }, Some(emb)) => {
                let (b, t, d) = h.dims3()?;
                let logits = h.reshape((b * t, d))?.matmul(&emb.t()?)?.broadcast_add(bias)?;
                logits.reshape((b, t, self.cfg.vocab))
            }
            (Head::Tied { .. }, None) => unreachable!("Lm::new refuses tied embeddings without a token embedding"),
        }
    }
}

/// SCONE's f-gram model: a small causal transformer over an n-gram's tokens;
/// its output at the last position, projected to the LM's width, is the
/// n-gram's embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FgramConfig {
    pub vocab: usize,
    pub n_max: usize,
    pub stack: StackConfig,
    /// Width of the output (the LM's d_model, the engine table's dim).
    pub out_dim: usize,
}

impl FgramConfig {
    pub fn params(&self) -> usize {
        let d = self.stack.d_model;
        self.vocab * d + self.n_max * d + self.stack.block_params() + d * self.out_dim + self.out_dim
    }
}

pub struct FgramModel {
    pub cfg: FgramConfig,
    tok_emb: Tensor,
    pos_emb: Tensor,
    stack: Stack,
    proj: Linear,
}

impl FgramModel {
    pub fn new(p: &mut Params, cfg: FgramConfig) -> Result<FgramModel> {
        let d = cfg.stack.d_model;
        Ok(FgramModel {
            cfg,
            tok_emb: p.normal("fgram.tok_emb", &[cfg.vocab, d], 0.02)?,
            pos_emb: p.normal("fgram.pos_emb", &[cfg.n_max, d], 0.01)?,
            stack: Stack::new(p, "fgram", cfg.stack)?,
            proj: Linear::new(p, "fgram.proj", d, cfg.out_dim, 0.02)?,
        })
    }

    /// Embeddings [N, out_dim] of `ngrams`, in order. N-grams are grouped by
    /// length so no padding is needed; each group is one batched forward.
    pub fn forward(&self, ngrams: &[&[u32]], dev: &Device) -> Result<Tensor> {
        let mut by_len: Vec<Vec<usize>> = vec![Vec::new(); self.cfg.n_max + 1];
        for (i, g) in ngrams.iter().enumerate() {
            if g.is_empty() || g.len() > self.cfg.n_max {
                candle_core::bail!("n-gram of {} tokens; the f-gram model takes 1..={}", g.len(), self.cfg.n_max);
            }
            by_len[g.len()].push(i);
        }
        let mut outs = Vec::new();
        let mut order = Vec::with_capacity(ngrams.len());
        for (len, members) in by_len.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let ids: Vec<u32> = members.iter().flat_map(|&i| ngrams[i].iter().copied()).collect();
            let ids = Tensor::from_vec(ids, (members.len(), len), dev)?;
            let x =
                self.tok_emb.embedding(&ids.flatten_all()?)?.reshape((members.len(), len, self.cfg.stack.d_model))?;
            let x = x.broadcast_add(&self.pos_emb.narrow(0, 0, len)?)?;
            let h = self.stack.forward(&x)?.narrow(1, len - 1, 1)?.squeeze(1)?;
            outs.push(self.proj.forward(&h)?);
            order.extend_from_slice(members);
        }
        if outs.is_empty() {
            return Tensor::zeros((0, self.cfg.out_dim), candle_core::DType::F32, dev);
        }
        let grouped = Tensor::cat(&outs, 0)?;
        // grouped row j holds ngrams[order[j]]; invert to put row i at i.
        let mut inverse = vec![0u32; order.len()];
        for (j, &i) in order.iter().enumerate() {
            inverse[i] = j as u32;
        }
        grouped.index_select(&Tensor::from_vec(inverse, order.len(), dev)?, 0)
    }
}
