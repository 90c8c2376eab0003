//! Transformer building blocks: pre-norm blocks of causal self-attention and
//! a GELU MLP. Written on candle tensors directly so that every parameter
//! comes from [`Params`] (seeded) and every op has a backward pass.

use candle_core::{DType, Device, Result, Tensor, D};

use super::params::Params;

pub struct LayerNorm {
    gain: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub fn new(p: &mut Params, name: &str, dim: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gain: p.constant(&format!("{name}.gain"), &[dim], 1.0)?,
            bias: p.constant(&format!("{name}.bias"), &[dim], 0.0)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle_nn::ops::layer_norm has no backward pass; the slow one does.
        candle_nn::ops::layer_norm_slow(x, &self.gain, &self.bias, 1e-5)
    }
}

pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn new(p: &mut Params, name: &str, d_in: usize, d_out: usize, std: f64) -> Result<Linear> {
        Ok(Linear {
            weight: p.normal(&format!("{name}.weight"), &[d_in, d_out], std)?,
            bias: p.constant(&format!("{name}.bias"), &[d_out], 0.0)?,
        })
    }

    /// `x`: [.., d_in] -> [.., d_out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = dims[dims.len() - 1];
        let rows = x.elem_count() / d_in;
        let y = x.reshape((rows, d_in))?.matmul(&self.weight)?.broadcast_add(&self.bias)?;
        let mut out = dims;
        *out.last_mut().expect("rank >= 1") = self.weight.dim(1)?;
        y.reshape(out)
    }
}

/// Shapes of one transformer stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
}

impl StackConfig {
    /// Parameters of the stack: its blocks (attention, MLP, norms) and the
    /// final norm.
    pub fn block_params(&self) -> usize {
        let d = self.d_model;
        self.n_layers * (4 * d * d + 4 * d + 2 * d * self.d_ff + self.d_ff + d + 4 * d) + 2 * d
    }

    /// Multiply-adds x2 per token through the blocks at sequence length `t`
    /// (matmuls plus attention scores and mixing), the usual 2N + 2·L·t·d count.
    pub fn flops_per_token(&self, t: usize) -> u64 {
        let d = self.d_model as u64;
        let matmul = 2 * self.n_layers as u64 * (4 * d * d + 2 * d * self.d_ff as u64);
        let attention = 2 * 2 * self.n_layers as u64 * t as u64 * d;
        matmul + attention
    }
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    out: Linear,
    ln2: LayerNorm,
    up: Linear,
    down: Linear,
}

/// A stack of pre-norm blocks, with a final norm or without one (then its
/// output is the residual stream).
pub struct Stack {
    cfg: StackConfig,
    blocks: Vec<Block>,
    ln_f: Option<LayerNorm>,
}

impl Stack {
    /// With a final norm.
    pub fn new(p: &mut Params, name: &str, cfg: StackConfig) -> Result<Stack> {
        Self::with_final_norm(p, name, cfg, true)
    }

    pub fn with_final_norm(p: &mut Params, name: &str, cfg: StackConfig, final_norm: bool) -> Result<Stack> {
        if cfg.n_heads == 0 || !cfg.d_model.is_multiple_of(cfg.n_heads) {
            candle_core::bail!("{name}: d_model {} is not a multiple of n_heads {}", cfg.d_model, cfg.n_heads);
        }
        let d = cfg.d_model;
        let std = 0.02;
        // GPT-2's scaled init for the projections that feed the residual stream.
        let resid_std = std / (2.0 * cfg.n_layers.max(1) as f64).sqrt();
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let b = format!("{name}.block{l}");
            blocks.push(Block {
                ln1: LayerNorm::new(p, &format!("{b}.ln1"), d)?,
                qkv: Linear::new(p, &format!("{b}.qkv"), d, 3 * d, std)?,
                out: Linear::new(p, &format!("{b}.attn_out"), d, d, resid_std)?,
                ln2: LayerNorm::new(p, &format!("{b}.ln2"), d)?,
                up: Linear::new(p, &format!("{b}.mlp_up"), d, cfg.d_ff, std)?,
                down: Linear::new(p, &format!("{b}.mlp_down"), cfg.d_ff, d, resid_std)?,
            });
        }
        let ln_f = if final_norm { Some(LayerNorm::new(p, &format!("{name}.ln_f"), d)?) } else { None };
        Ok(Stack { cfg, blocks, ln_f })
    }

    /// `x`: [B, T, d] -> [B, T, d], causal.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        let mask = causal_mask(t, x.device())?;
        let mut x = x.clone();
        for b in &self.blocks {
            x = (&x + self.attention(b, &b.ln1.forward(&x)?, &mask)?)?;
            let h = b.up.forward(&b.ln2.forward(&x)?)?.gelu()?;
            x = (&x + b.down.forward(&h)?)?;
        }
        match &self.ln_f {
            Some(ln) => ln.forward(&x),
            None => Ok(x),
        }
    }

    fn attention(&self, b: &Block, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (bs, t, d) = x.dims3()?;
        let h = self.cfg.n_heads;
        let hd = d / h;
        let qkv = b.qkv.forward(x)?.reshape((bs, t, 3, h, hd))?;
        let head = |i: usize| -> Result<Tensor> { qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous() };
        let (q, k, v) = (head(0)?, head(1)?, head(2)?);
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(mask)?;
        let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((bs, t, d))?;
        b.out.forward(&y)
    }
}

/// [t, t] with 0 on and below the diagonal and -inf above it.
fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(v, (t, t), dev)?.to_dtype(DType::F32)
}
