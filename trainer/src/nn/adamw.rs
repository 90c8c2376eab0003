//! AdamW with decoupled weight decay and global-norm gradient clipping. Its
//! moments are plain tensors so a checkpoint can hold them beside the weights
//! and a resumed run continues bit for bit.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

use super::params::Params;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are scaled down so that their global L2 norm is at most this.
    pub clip_norm: f64,
    /// Learning-rate multiplier for the f-gram model's own parameters (names
    /// `fgram.*`); T, which it reads, belongs to the LM and takes the LM's rate.
    #[serde(default = "default_fgram_lr_scale")]
    pub fgram_lr_scale: f64,
}

/// The f-gram model's learning-rate scale of configurations written before
/// the field existed: they trained at the LM's rate.
pub fn default_fgram_lr_scale() -> f64 {
    1.0
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.01, clip_norm: 1.0, fgram_lr_scale: 1.0 }
    }
}

pub struct AdamW {
    cfg: AdamWConfig,
    /// Updates applied so far.
    pub step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig, params: &Params) -> Result<AdamW> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in params.iter() {
            m.insert(name.clone(), var.as_tensor().zeros_like()?);
            v.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(AdamW { cfg, step: 0, m, v })
    }

    /// One update at learning rate `lr`; returns the gradient norm before clipping.
    pub fn update(&mut self, params: &Params, grads: &GradStore, lr: f64) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in params.iter() {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > self.cfg.clip_norm { self.cfg.clip_norm / norm } else { 1.0 };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (name, var) in params.iter() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            // Gradients and moments are detached: a gradient computed from the
            // forward graph keeps that graph alive, and a moment built from it
            // would chain every step's graph to the next (memory grew ~40 MB
            // per step until the OOM killer stopped a run).
            let g = (g.detach() * scale)?;
            let m = self.m.get_mut(name).expect("moment for every parameter");
            *m = ((&*m * b1)? + (&g * (1.0 - b1))?)?.detach();
            let v = self.v.get_mut(name).expect("moment for every parameter");
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let m_hat = (&*m / bc1)?;
            let v_hat = (&*v / bc2)?;
            let step = (m_hat / (v_hat.sqrt()? + self.cfg.eps)?)?;
            let theta = var.as_tensor();
            // Weight decay applies to matrices only, not to norms' gains and biases.
            let decay = if theta.rank() >= 2 { self.cfg.weight_decay } else { 0.0 };
            let lr = if name.starts_with("fgram.") { lr * self.cfg.fgram_lr_scale } else { lr };
            let new = ((theta * (1.0 - lr * decay))? - (step * lr)?)?;
            var.set(&new.detach())?;
        }
        Ok(norm)
    }

    /// The moments, named `m.<param>` and `v.<param>`, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let m = self.m.iter().map(|(k, t)| (format!("m.{k}"), t.clone()));
        let v = self.v.iter().map(|(k, t)| (format!("v.{k}"), t.clone()));
        m.chain(v).collect()
    }

    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (name, t) in map.iter_mut() {
                let key = format!("{prefix}.{name}");
                let s = saved
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state {key} is missing")))?;
                if s.shape() != t.shape() {
                    candle_core::bail!("optimizer state {key}: shape {:?} saved, {:?} expected", s.shape(), t.shape());
                }
                *t = s.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}
