//! The two models: the main LM, which owns the token embedding T (tied to
//! its output head or not), and SCONE's f-gram model, which reads T.

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{Linear, Stack, StackConfig};
use super::params::Params;

/// The main language model: token embedding T, learned positions, blocks,
/// output head. The baselines read their inputs from T; SCONE's LM takes its
/// input embeddings from outside (the f-gram model or T in training, the
/// engine table at inference) and still owns T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmConfig {
    pub vocab: usize,
    /// Longest sequence (learned positions).
    pub context: usize,
    pub stack: StackConfig,
    /// The output head's weight is the token embedding T (transposed), one
    /// matrix serving both ends (`baseline-tied` and every SCONE LM). Absent
    /// in checkpoints and results written before it existed: untied.
    #[serde(default)]
    pub tie_embeddings: bool,
}

impl LmConfig {
    /// Parameters that live on the accelerator at inference: everything the
    /// LM owns, T included (it is the output head when tied, and the
    /// baselines' input embedding). A tied T and head are one matrix, counted
    /// once. SCONE's f-gram embeddings are off-accelerator table rows.
    pub fn accelerator_params(&self) -> usize {
        let d = self.stack.d_model;
        let head_weight = if self.tie_embeddings { 0 } else { d * self.vocab };
        self.vocab * d + self.context * d + self.stack.block_params() + head_weight + self.vocab
    }

    /// Inference FLOPs per token at full context: blocks plus the output
    /// head (embedding lookups are memory reads, not FLOPs).
    pub fn flops_per_token(&self) -> u64 {
        self.stack.flops_per_token(self.context) + 2 * (self.stack.d_model * self.vocab) as u64
    }
}

pub struct Lm {
    pub cfg: LmConfig,
    tok_emb: Tensor,
    pos_emb: Tensor,
    stack: Stack,
    head: Head,
}

/// The output projection: its own weight, or the token embedding's transpose.
enum Head {
    Own(Linear),
    /// Logits are `x · Tᵀ + bias`; T is the same tensor (the same parameter)
    /// that [`Lm::embed`] and SCONE's f-gram model read, so backprop sums
    /// every use's gradients into it.
    Tied {
        bias: Tensor,
    },
}

impl Lm {
    pub fn new(p: &mut Params, cfg: LmConfig) -> Result<Lm> {
        let d = cfg.stack.d_model;
        let tok_emb = p.normal("lm.tok_emb", &[cfg.vocab, d], 0.02)?;
        let pos_emb = p.normal("lm.pos_emb", &[cfg.context, d], 0.01)?;
        let stack = Stack::new(p, "lm", cfg.stack)?;
        let head = if cfg.tie_embeddings {
            Head::Tied { bias: p.constant("lm.head.bias", &[cfg.vocab], 0.0)? }
        } else {
            Head::Own(Linear::new(p, "lm.head", d, cfg.vocab, 0.02)?)
        };
        Ok(Lm { cfg, tok_emb, pos_emb, stack, head })
    }

    /// The token embedding T [vocab, d] (the trainable parameter itself).
    pub fn token_embedding(&self) -> &Tensor {
        &self.tok_emb
    }

    /// Token embeddings T(ids) of `ids` [B, T].
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.tok_emb.embedding(&ids.flatten_all()?)?.reshape((b, t, self.cfg.stack.d_model))
    }

    /// Logits [B, T, vocab] from input embeddings [B, T, d].
    pub fn forward_embeds(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        if t > self.cfg.context {
            candle_core::bail!("sequence of {t} tokens is longer than the context {}", self.cfg.context);
        }
        let x = x.broadcast_add(&self.pos_emb.narrow(0, 0, t)?)?;
        let h = self.stack.forward(&x)?;
        match &self.head {
            Head::Own(head) => head.forward(&h),
            Head::Tied { bias } => {
                let (b, t, d) = h.dims3()?;
                let logits = h.reshape((b * t, d))?.matmul(&self.tok_emb.t()?)?.broadcast_add(bias)?;
                logits.reshape((b, t, self.cfg.vocab))
            }
        }
    }
}

/// SCONE's f-gram model `A_f-gram` (Yu et al. 2025, Sec. 3 and Appendix F):
/// the main model's architecture without a token embedding layer. Its input
/// is the LM's token embedding T of the f-gram's tokens plus its own learned
/// positions 0..n-1; its blocks run causally, and the residual stream at the
/// last position, of the LM's width, is the f-gram's embedding. It has no
/// final norm: its output is then T(last token) plus what the blocks add, on
/// T's scale, so matched and unmatched positions (which get T's row) enter
/// the LM alike; with a final norm (rows of norm ~sqrt(d) against T's ~0.2)
/// the quick preset's perplexity was 127.4 instead of 122.0. Its size is set
/// by its number of layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FgramConfig {
    /// Longest f-gram (learned positions 0..n_max-1).
    pub n_max: usize,
    /// Its blocks; `d_model` must be the LM's (it reads T and feeds the LM).
    pub stack: StackConfig,
}

impl FgramConfig {
    /// Parameters the f-gram model owns: positions and blocks (no final
    /// norm). T, which it reads, belongs to the LM.
    pub fn params(&self) -> usize {
        self.n_max * self.stack.d_model + self.stack.block_params() - 2 * self.stack.d_model
    }
}

pub struct FgramModel {
    pub cfg: FgramConfig,
    /// The LM's T (the same parameter, so gradients from here land on it).
    tok_emb: Tensor,
    pos_emb: Tensor,
    stack: Stack,
}

impl FgramModel {
    /// A new f-gram model reading `token_embedding` ([vocab, d], the LM's T).
    pub fn new(p: &mut Params, cfg: FgramConfig, token_embedding: &Tensor) -> Result<FgramModel> {
        let (_, d) = token_embedding.dims2()?;
        if cfg.stack.d_model != d {
            candle_core::bail!(
                "f-gram model width {} differs from the token embedding's {d}: the f-gram model reads the LM's token \
                 embedding and its output is the LM's input, so its d_model must be the LM's",
                cfg.stack.d_model
            );
        }
        if cfg.n_max < 2 {
            candle_core::bail!("the f-gram model embeds f-grams of 2..=n_max tokens; n_max is {}", cfg.n_max);
        }
        Ok(FgramModel {
            cfg,
            tok_emb: token_embedding.clone(),
            pos_emb: p.normal("fgram.pos_emb", &[cfg.n_max, d], 0.01)?,
            stack: Stack::with_final_norm(p, "fgram", cfg.stack, false)?,
        })
    }

    /// Embeddings [N, d] of `ngrams` (each of 2..=n_max tokens; a single
    /// token's embedding is T's row, not this model's), in order. N-grams are
    /// grouped by length so no padding is needed; each group is one batched
    /// forward.
    pub fn forward(&self, ngrams: &[&[u32]], dev: &Device) -> Result<Tensor> {
        let d = self.cfg.stack.d_model;
        let mut by_len: Vec<Vec<usize>> = vec![Vec::new(); self.cfg.n_max + 1];
        for (i, g) in ngrams.iter().enumerate() {
            if g.len() < 2 || g.len() > self.cfg.n_max {
                candle_core::bail!("n-gram of {} tokens; the f-gram model takes 2..={}", g.len(), self.cfg.n_max);
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
            let ids = Tensor::from_vec(ids, members.len() * len, dev)?;
            let x = self.tok_emb.embedding(&ids)?.reshape((members.len(), len, d))?;
            let x = x.broadcast_add(&self.pos_emb.narrow(0, 0, len)?)?;
            outs.push(self.stack.forward(&x)?.narrow(1, len - 1, 1)?.squeeze(1)?.contiguous()?);
            order.extend_from_slice(members);
        }
        if outs.is_empty() {
            return Tensor::zeros((0, d), candle_core::DType::F32, dev);
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
